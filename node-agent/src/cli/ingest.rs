//! `ntt ingest SOURCE`: identify → image → volumes → enumerate → copy → verify (sample) →
//! report, skipping what is done, so a rerun after a crash or Ctrl-C continues where it stopped.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::copy::{CopyArgs, StoreArgs, VerifyArgs};
use super::enumerate::EnumerateArgs;
use super::image::{HostArgs, ImageArgs};
use crate::catalog::Catalog;
use crate::catalog::load;
use crate::catalog::media::{self, MediumKind, NewMedium};
use crate::catalog::volumes;
use crate::env;
use crate::volume::access::Settings;

/// How far to take the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Target {
    /// Imaged (or registered) only.
    Imaged,
    /// Imaged and every entry loaded into the catalog.
    Enumerated,
    /// Imaged, enumerated and every file copied into the store.
    Copied,
}

/// Options of `ntt ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Imaging options (SOURCE is a block device, an image file or a directory)
    #[command(flatten)]
    pub image: ImageArgs,

    /// How far to take the medium
    #[arg(long, env = env::TARGET, value_enum, default_value = "copied")]
    pub target: Target,

    /// A named preset of ignore patterns for the enumeration (`predecessor`)
    #[arg(long, value_name = "NAME", env = env::IGNORE_PRESET)]
    pub ignore_preset: Option<String>,

    /// Another ignore pattern for this medium (recorded with it)
    #[arg(long = "ignore", value_name = "REGEX", env = env::IGNORE, value_delimiter = '\n')]
    pub ignore: Vec<String>,

    /// Concurrent copy workers
    #[arg(long, env = env::WORKERS, default_value_t = 4)]
    pub workers: usize,

    /// Directory readers per volume
    #[arg(long, env = env::WALK_THREADS, default_value_t = 4)]
    pub threads: usize,

    /// MiB of rows the load may hold to send them in key order (cheaper index builds); a
    /// medium with more rows is sent as walked
    #[arg(long, value_name = "MIB", env = env::SORT_MEMORY, default_value_t = crate::catalog::load::DEFAULT_SORT_MEMORY_MIB)]
    pub sort_memory: usize,

    /// Blobs of the medium re-hashed after copying (a sample; `ntt verify` checks all)
    #[arg(long, default_value_t = 100)]
    pub verify_sample: i64,

    /// Go on with a medium whose health is `failed`
    #[arg(long, env = env::FORCE)]
    pub force: bool,
}

/// The identity of a directory medium: the host and the canonical path (pure).
pub(super) fn directory_hash(host: &str, canonical: &Path) -> String {
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

/// Records (once) a directory as a medium with one volume; returns its name.
async fn register_directory(catalog: &Catalog, args: &ImageArgs) -> anyhow::Result<String> {
    let canonical = fs_err::canonicalize(&args.source)?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let hash: ntt_crds::MediumHash = directory_hash(&host, &canonical)
        .parse()
        .context("a directory hash is malformed")?;
    let pool = catalog.pool();
    let medium = if let Some(known) = media::find_medium_by_hash(pool, &hash).await? {
        known
    } else {
        let name = args.name.clone().unwrap_or_else(|| {
            canonical
                .file_name()
                .map_or_else(|| "root".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        media::insert_medium(
            pool,
            &NewMedium {
                hash: hash.clone(),
                name,
                kind: MediumKind::Directory,
                source: canonical.display().to_string(),
                description: args.description.clone(),
                size_bytes: None,
                model: None,
                serial: None,
            },
        )
        .await
        .context("record the directory as a medium (pass --name if the name is taken)")?;
        media::find_medium_by_hash(pool, &hash)
            .await?
            .context("the directory medium vanished")?
    };
    let fs_type = nix::sys::statfs::statfs(&canonical)
        .map_or_else(|_| "unknown".to_owned(), |s| fs_name(s.filesystem_type().0));
    volumes::insert_directory_volume(pool, medium.id, &fs_type).await?;
    media::record_volumes_found(pool, medium.id).await?;
    Ok(medium.name)
}

/// `ntt ingest`; `Ok(false)` when cancelled (run it again to continue).
pub(super) async fn run_ingest(
    catalog: &Catalog,
    host: &HostArgs,
    settings: &Settings,
    store: &StoreArgs,
    args: IngestArgs,
    cancel: &CancellationToken,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    let json = args.image.json;
    let name = if args.image.source.is_dir() {
        register_directory(catalog, &args.image).await?
    } else {
        tracing::info!(source = %args.image.source.display(), "stage 1/5: identify and image");
        let image_args = ImageArgs {
            json: false,
            ..args.image.clone()
        };
        let report =
            super::image::run(catalog, host, image_args, cancel, &mut std::io::sink()).await?;
        if report.end == crate::imaging::ImageEnd::Cancelled {
            return Ok(false);
        }
        report.name
    };
    let medium = media::resolve_medium(catalog.pool(), &name).await?;
    if args.target >= Target::Enumerated
        && !enumerate_stage(catalog, settings, &args, &medium, cancel).await?
    {
        return Ok(false);
    }
    if args.target >= Target::Copied
        && !copy_stage(catalog, settings, store, &args, &medium, cancel).await?
    {
        return Ok(false);
    }
    let report = super::copy::ReportArgs {
        medium: medium.hash.clone(),
        json,
    };
    super::copy::run_report(catalog, report, stdout).await?;
    if !json {
        writeln!(
            stdout,
            "next     ntt ls {0} | ntt cat {0} PATH | ntt report {0} --json | ntt verify --medium {0}",
            medium.name
        )?;
    }
    Ok(true)
}

/// Stages 2-3: volumes, enumeration and the damage map; `Ok(false)` when cancelled.
async fn enumerate_stage(
    catalog: &Catalog,
    settings: &Settings,
    args: &IngestArgs,
    medium: &media::MediumRecord,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    if load::published_entries(catalog.pool(), medium.id)
        .await?
        .is_none()
    {
        tracing::info!(medium = %medium.name, "stage 2-3/5: volumes and enumeration");
        let enumerate = EnumerateArgs {
            medium: medium.hash.clone(),
            replace: false,
            ignore: args.ignore.clone(),
            ignore_preset: args.ignore_preset.clone(),
            threads: args.threads,
            sort_memory: args.sort_memory,
            force: args.force,
            json: false,
        };
        if super::enumerate::run_enumerate(
            catalog,
            settings,
            enumerate,
            cancel,
            &mut std::io::sink(),
        )
        .await?
        .is_none()
        {
            return Ok(false);
        }
    }
    if super::damage::map_is_stale(catalog, medium).await? {
        // A later rescue changed the unreadable areas (or the load predates damage maps).
        tracing::info!(medium = %medium.name, "stage 3/5: map unreadable areas onto files again");
        let damage = super::damage::DamageArgs {
            medium: medium.hash.clone(),
            force: args.force,
            json: false,
        };
        if super::damage::run_damage(catalog, settings, damage, cancel, &mut std::io::sink())
            .await?
            .is_none()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stages 4-5: copy, then verify a sample; `Ok(false)` when cancelled.
async fn copy_stage(
    catalog: &Catalog,
    settings: &Settings,
    store: &StoreArgs,
    args: &IngestArgs,
    medium: &media::MediumRecord,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    tracing::info!(medium = %medium.name, "stage 4/5: copy");
    let copy = CopyArgs {
        medium: medium.hash.clone(),
        workers: args.workers,
        max_attempts: 3,
        retry_delay: 2.0,
        batch_files: crate::copy::DEFAULT_BATCH_FILES,
        batch_mib: crate::copy::DEFAULT_BATCH_MIB,
        force: args.force,
        json: false,
    };
    if super::copy::run_copy(catalog, settings, store, copy, cancel, &mut std::io::sink())
        .await?
        .is_none()
    {
        return Ok(false);
    }
    tracing::info!(medium = %medium.name, sample = args.verify_sample, "stage 5/5: verify a sample");
    let verify = VerifyArgs {
        medium: Some(medium.hash.clone()),
        all: false,
        sample: Some(args.verify_sample.max(1)),
        json: false,
    };
    let mut verified = Vec::new();
    let good = super::copy::run_verify(catalog, store, verify, &mut verified).await?;
    anyhow::ensure!(
        good,
        "verification of the stored blobs failed: {}",
        String::from_utf8_lossy(&verified).trim()
    );
    Ok(true)
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

    #[test]
    fn targets_are_ordered_like_the_stages() {
        assert!(Target::Imaged < Target::Enumerated && Target::Enumerated < Target::Copied);
    }
}
