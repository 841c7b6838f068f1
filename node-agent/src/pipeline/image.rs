//! Stage 1: identify and image a device, register an image file, or register a directory.

use std::path::{Path, PathBuf};

use ntt_crds::MediumHash;
use tokio_util::sync::CancellationToken;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::{self, MediumKind, MediumRecord, NewMedium};
use crate::catalog::volumes;
use crate::imaging::passes::{PassLimits, Profile};
use crate::imaging::{self, ImageReport, ImageRequest, ImagingConfig};

/// How to image (or register) a medium.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// The catalog name [default: model and serial for devices, the file or directory name].
    pub name: Option<String>,
    /// Free text recorded with the medium.
    pub description: Option<String>,
    /// Which ddrescue passes to run.
    pub profile: Profile,
    /// Limits of every pass.
    pub limits: PassLimits,
    /// Override of the device's logical sector size.
    pub sector_size: Option<u32>,
    /// Read devices through the page cache instead of direct I/O.
    pub buffered: bool,
    /// The ddrescue mapfile of a raw image rescued elsewhere.
    pub mapfile: Option<PathBuf>,
    /// Where the latest rescue summary is left while ddrescue runs (the agent's heartbeats
    /// read it into the job's progress).
    pub watch: Option<RescueWatch>,
}

/// The latest rescue summary of a running imaging, shared with whoever reports progress.
pub type RescueWatch =
    std::sync::Arc<std::sync::Mutex<Option<crate::imaging::mapfile::RescueSummary>>>;

/// Images a device or registers an image file, showing ddrescue's progress (a bar on a
/// terminal, a log line every 10 s otherwise). A cancelled run returns its report with
/// [`imaging::ImageEnd::Cancelled`]: the mapfile is saved and the next run resumes.
pub async fn image(
    catalog: &Catalog,
    host: &Host,
    source: &Path,
    options: &ImageOptions,
    cancel: &CancellationToken,
) -> Result<ImageReport> {
    let config = ImagingConfig {
        data_dir: host.data_dir.clone(),
        lock_dir: host.lock_dir.clone(),
        profile: options.profile,
        limits: options.limits,
        thresholds: host.thresholds,
        sector_size: options.sector_size,
        direct: !options.buffered,
    };
    let request = ImageRequest {
        source: source.to_owned(),
        name: options.name.clone(),
        description: options.description.clone(),
        mapfile: options.mapfile.clone(),
    };
    let mut display = crate::progress::ImagingDisplay::new();
    let report = imaging::image(catalog, &config, &request, cancel, &mut |p| {
        if let Some(watch) = &options.watch
            && let Ok(mut latest) = watch.lock()
        {
            *latest = Some(p.summary.clone());
        }
        display.update(p);
    })
    .await;
    display.finish();
    Ok(report?)
}

/// Where the machine's identity is read: systemd's machine id, which survives host renames and
/// reboots; the chart mounts the node's into the agent pod, whose host name changes with every
/// restart.
pub const MACHINE_ID: &str = "/etc/machine-id";

/// The machine's id from `path` (trimmed; an empty file is an error).
///
/// # Errors
///
/// [`imaging::ImagingError::MachineId`] when it cannot be read or is empty.
pub fn machine_id(path: &Path) -> Result<String> {
    let error = |source| {
        PipelineError::Imaging(imaging::ImagingError::MachineId {
            path: path.to_owned(),
            source,
        })
    };
    let text = fs_err::read_to_string(path).map_err(error)?;
    let id = text.trim();
    if id.is_empty() {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        )));
    }
    Ok(id.to_owned())
}

/// The identity of a directory medium: the machine and the canonical path (pure). The machine
/// is its id, not its host name (a pod's name changes with every restart); catalogs written
/// before this was so are found by the host name (`legacy_directory_hash`).
pub fn directory_hash(machine: &str, canonical: &Path) -> String {
    path_hash(b"DIRECTORY|machine-id|", machine, canonical)
}

/// The identity older versions gave a directory: the host name and the canonical path (pure).
fn legacy_directory_hash(host: &str, canonical: &Path) -> String {
    path_hash(b"DIRECTORY|", host, canonical)
}

/// `prefix`, `place`, `|`, the path's bytes, `|`, hashed: the first 32 hex characters (pure).
fn path_hash(prefix: &[u8], place: &str, canonical: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prefix);
    hasher.update(place.as_bytes());
    hasher.update(b"|");
    hasher.update(std::os::unix::ffi::OsStrExt::as_bytes(
        canonical.as_os_str(),
    ));
    hasher.update(b"|");
    hasher.finalize().to_hex()[..32].to_owned()
}

/// The name of a filesystem from its `statfs` magic number (pure).
fn fs_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683E => "btrfs".to_owned(),
        0x0102_1994 => "tmpfs".to_owned(),
        0x6573_5546 => "fuse".to_owned(),
        0x4d44 => "vfat".to_owned(),
        0x7371_7368 => "squashfs".to_owned(),
        0x6969 => "nfs".to_owned(),
        0x794c_7630 => "overlay".to_owned(),
        other => format!("unknown-{other:#x}"),
    }
}

/// Records (once) a directory as a medium with one volume.
///
/// # Panics
///
/// Never: a directory hash is 32 lowercase hex characters by construction.
pub async fn register_directory(
    catalog: &Catalog,
    directory: &Path,
    options: &ImageOptions,
) -> Result<MediumRecord> {
    let canonical = fs_err::canonicalize(directory).map_err(|source| {
        PipelineError::Imaging(imaging::ImagingError::Source(
            imaging::source::SourceError::Open {
                path: directory.to_owned(),
                source,
            },
        ))
    })?;
    let parse = |hash: String| -> MediumHash {
        hash.parse()
            .expect("invariant: a directory hash is 32 lowercase hex characters")
    };
    let hash = parse(directory_hash(
        &machine_id(Path::new(MACHINE_ID))?,
        &canonical,
    ));
    let legacy = parse(legacy_directory_hash(&crate::host_name(), &canonical));
    let pool = catalog.pool();
    let medium = if let Some(known) = media::find_medium_by_hash(pool, &hash).await? {
        known
    } else if let Some(known) = media::find_medium_by_hash(pool, &legacy).await? {
        known
    } else {
        let name = options.name.clone().unwrap_or_else(|| {
            canonical
                .file_name()
                .map_or_else(|| "root".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        let new = NewMedium {
            hash: hash.clone(),
            name: name.clone(),
            kind: MediumKind::Directory,
            source: canonical.display().to_string(),
            description: options.description.clone(),
            size_bytes: None,
            model: None,
            serial: None,
        };
        match media::insert_medium(pool, &new).await {
            Ok(_) => {}
            Err(error)
                if error.constraint() == Some(crate::catalog::Constraint::MediumNameTaken) =>
            {
                return Err(imaging::ImagingError::NameTaken { name }.into());
            }
            Err(error) => return Err(error.into()),
        }
        super::medium_by_hash(catalog, &hash).await?
    };
    let fs_type = nix::sys::statfs::statfs(&canonical)
        .map_or_else(|_| "unknown".to_owned(), |s| fs_name(s.filesystem_type().0));
    volumes::insert_directory_volume(pool, medium.id, &fs_type).await?;
    media::record_volumes_found(pool, medium.id).await?;
    Ok(medium)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_identified_by_machine_and_path() {
        let a = directory_hash("3d1219c7", Path::new("/mnt/photorec/out"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            a,
            directory_hash("3d1219c7", Path::new("/mnt/photorec/out"))
        );
        assert_ne!(
            a,
            directory_hash("9a00e1f2", Path::new("/mnt/photorec/out"))
        );
        assert_ne!(
            a,
            directory_hash("3d1219c7", Path::new("/mnt/photorec/out2"))
        );
        assert_ne!(
            a,
            legacy_directory_hash("3d1219c7", Path::new("/mnt/photorec/out")),
            "the machine id cannot pass for a host name"
        );
    }

    #[test]
    fn the_machine_id_is_read_trimmed_and_an_empty_or_missing_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("ntt-machine-id-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let path = dir.join("machine-id");
        fs_err::write(&path, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(
            machine_id(&path).unwrap(),
            "3d1219c7c4c5404aaa1f6d2a48adfda4"
        );
        fs_err::write(&path, "\n").unwrap();
        let empty = machine_id(&path).unwrap_err().to_string();
        assert!(empty.contains("machine id"), "{empty}");
        let missing = machine_id(&dir.join("none")).unwrap_err().to_string();
        assert!(missing.contains("systemd-machine-id-setup"), "{missing}");
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
