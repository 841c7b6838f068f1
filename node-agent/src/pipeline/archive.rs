//! `ntt archive MEDIUM --to ROOT`: a medium's raw image kept compressed, checked before the raw
//! image goes.
//!
//! Rules:
//! - The medium's lock is held throughout (attaching takes it too): no mount reads the raw
//!   image and no other archive run writes while one works. Re-imaging a docked drive takes
//!   the device's lock, not this one: do not archive a medium while its drive is re-imaged.
//! - Only images NTT made (under the data directory) are archived and removed; a registered
//!   image file is the evidence itself and is never touched.
//! - The bytes compressed must hash to the digest recorded at imaging (else nothing is
//!   archived); the archive is then read back end to end from its disk and its digest compared
//!   before the catalog records it, and again before any run removes the raw image, so an
//!   archive damaged in between stops the removal.
//! - The mapfile stays where it is (`ntt map` and re-imaging read it); a compressed copy goes
//!   beside the archive. Stages that need the raw image restore it first
//!   ([`crate::imaging::restore_archived_image`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::{self, MediumRecord};
use crate::imaging::archive::{self, Archive, ArchiveError};

/// Options of `ntt archive`.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveOptions {
    /// Keep the raw image after archiving.
    pub keep_raw: bool,
    /// zstd level.
    pub level: i32,
    /// Frames compressed at once.
    pub jobs: usize,
}

/// What archiving a medium did.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    /// The medium.
    pub medium: String,
    /// The archive.
    pub archive: PathBuf,
    /// The image's size.
    pub image_bytes: u64,
    /// The archive's size.
    pub archive_bytes: u64,
    /// Image bytes per archive byte.
    pub ratio: f64,
    /// Whether this run wrote the archive (`false`: an archive recorded earlier was checked).
    pub written: bool,
    /// Whether the raw image was removed by this run.
    pub raw_removed: bool,
    /// The compressed copy of the mapfile, if the medium has one.
    pub mapfile: Option<PathBuf>,
}

fn archive_error(medium: &MediumRecord) -> impl Fn(ArchiveError) -> PipelineError {
    let name = medium.name.clone();
    move |source| PipelineError::Archive {
        medium: name.clone(),
        source,
    }
}

/// Archives the medium's image under `root` (see the module's rules).
///
/// # Errors
///
/// Not imaged, not NTT's image, the image no longer matches its digest, the archive does not
/// read back right (the raw image is kept), file and catalog errors.
pub async fn archive(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    root: &Path,
    options: ArchiveOptions,
) -> Result<ArchiveReport> {
    let pool = catalog.pool();
    let not_imaged = || PipelineError::NotImaged {
        medium: medium.name.clone(),
    };
    let image = PathBuf::from(medium.image_path.as_deref().ok_or_else(not_imaged)?);
    if !image.starts_with(&host.data_dir) {
        return Err(PipelineError::NotOurImage {
            medium: medium.name.clone(),
            path: image,
        });
    }
    let (digest, recorded) = media::image_archive(pool, medium.id).await?;
    let digest = digest.ok_or_else(not_imaged)?;
    if !root.is_dir() {
        return Err(PipelineError::ArchiveRoot {
            path: root.to_owned(),
        });
    }
    // The medium's lock (the one attaching takes): no mount reads the raw image, and no
    // other archive run writes, while this one works.
    let lock = crate::lock::HostLock::try_acquire(
        &host.lock_dir,
        &format!("medium-{}.lock", medium.hash),
        &format!("medium {}", medium.hash),
        "ntt archive",
    )
    .map_err(|source| PipelineError::Busy {
        medium: medium.name.clone(),
        source,
    })?;
    let fail = archive_error(medium);
    let existing = recorded.filter(|r| Path::new(&r.path).is_file());
    let (path, written) = match existing {
        Some(existing) => (PathBuf::from(&existing.path), false),
        None => (write(medium, &image, root, &digest, options).await?, true),
    };
    // Read back from its disk, whoever wrote it and when.
    let checked = path.clone();
    let (opened, read_back) = tokio::task::spawn_blocking(move || {
        let opened = Archive::open(&checked)?;
        let digest = opened.digest()?;
        Ok::<_, ArchiveError>((opened, digest))
    })
    .await?
    .map_err(&fail)?;
    if read_back.as_slice() != digest.as_slice() {
        return Err(PipelineError::ArchiveCorrupt { path });
    }
    let archive_bytes = opened.index().compressed();
    let image_bytes = opened.index().size;
    let text = path
        .to_str()
        .ok_or_else(|| PipelineError::ArchiveRoot { path: path.clone() })?;
    media::record_archive(
        pool,
        medium.id,
        text,
        i64::try_from(archive_bytes).unwrap_or(i64::MAX),
    )
    .await?;
    let mapfile = match medium.mapfile_path.as_deref().map(PathBuf::from) {
        Some(map) if map.is_file() => {
            let out = root.join(format!("{}.map.zst", medium.hash));
            let (from, to) = (map.clone(), out.clone());
            tokio::task::spawn_blocking(move || archive::compress_whole(&from, &to))
                .await?
                .map_err(&fail)?;
            Some(out)
        }
        _ => None,
    };
    let mut raw_removed = false;
    if !options.keep_raw && image.exists() {
        fs_err::remove_file(&image).map_err(|source| PipelineError::Remove {
            path: image.clone(),
            source,
        })?;
        raw_removed = true;
    }
    drop(lock);
    #[expect(
        clippy::cast_precision_loss,
        reason = "a ratio for people, two decimals"
    )]
    let ratio = image_bytes as f64 / archive_bytes.max(1) as f64;
    Ok(ArchiveReport {
        medium: medium.name.clone(),
        archive: path,
        image_bytes,
        archive_bytes,
        ratio,
        written,
        raw_removed,
        mapfile,
    })
}

/// Writes the archive of `image` under `root`; refused (and nothing left) when the bytes
/// compressed do not hash to `digest`.
async fn write(
    medium: &MediumRecord,
    image: &Path,
    root: &Path,
    digest: &[u8],
    options: ArchiveOptions,
) -> Result<PathBuf> {
    let path = root.join(format!("{}.img.zst", medium.hash));
    let (raw, out, level, jobs) = (image.to_owned(), path.clone(), options.level, options.jobs);
    let index = tokio::task::spawn_blocking(move || archive::compress(&raw, &out, level, jobs))
        .await?
        .map_err(archive_error(medium))?;
    if index.digest != hex::encode(digest) {
        let _ = fs_err::remove_file(&path);
        let _ = fs_err::remove_file(archive::index_path(&path));
        return Err(PipelineError::ImageChanged {
            medium: medium.name.clone(),
            path: image.to_owned(),
        });
    }
    Ok(path)
}
