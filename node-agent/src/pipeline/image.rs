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
}

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
        display.update(p);
    })
    .await;
    display.finish();
    Ok(report?)
}

/// The identity of a directory medium: the host and the canonical path (pure).
pub fn directory_hash(host: &str, canonical: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"DIRECTORY|");
    hasher.update(host.as_bytes());
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
    let hash: MediumHash = directory_hash(&crate::host_name(), &canonical)
        .parse()
        .expect("invariant: a directory hash is 32 lowercase hex characters");
    let pool = catalog.pool();
    let medium = if let Some(known) = media::find_medium_by_hash(pool, &hash).await? {
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
    fn a_directory_is_identified_by_host_and_path() {
        let a = directory_hash("lab1", Path::new("/mnt/photorec/out"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, directory_hash("lab1", Path::new("/mnt/photorec/out")));
        assert_ne!(a, directory_hash("lab2", Path::new("/mnt/photorec/out")));
        assert_ne!(a, directory_hash("lab1", Path::new("/mnt/photorec/out2")));
    }
}
