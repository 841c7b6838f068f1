//! Volumes: find a medium's partitions and filesystems (once), attach them read-only, release
//! them.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::{HealthValue, MediumKind, MediumRecord};
use crate::catalog::volumes::{self, RoleValue, VolumeRow};
use crate::volume::access::{self, AttachedMedium, Released, VolumeSpec};
use crate::volume::partitions;
use crate::volume::probe::FsType;

/// The medium's image, or why it has none.
fn image_of(medium: &MediumRecord) -> Result<PathBuf> {
    medium
        .image_path
        .as_deref()
        .map(PathBuf::from)
        .ok_or_else(|| PipelineError::NotImaged {
            medium: medium.name.clone(),
        })
}

/// The medium's volume rows, discovering and recording them first if this is the first time.
pub async fn ensure_volumes(catalog: &Catalog, medium: &MediumRecord) -> Result<Vec<VolumeRow>> {
    let rows = volumes::medium_volumes(catalog.pool(), medium.id).await?;
    if !rows.is_empty() {
        return Ok(rows);
    }
    let image = image_of(medium)?;
    crate::imaging::restore_archived_image(catalog.pool(), medium.id, &image).await?;
    // Discovery reads the image (slow on big media): outside any transaction.
    let path = image.clone();
    let layout = tokio::task::spawn_blocking(move || partitions::discover(&path))
        .await?
        .map_err(|source| PipelineError::Discover {
            image: image.display().to_string(),
            source,
        })?;
    let mut found: Vec<volumes::NewVolume> = layout
        .volumes
        .iter()
        .map(crate::volume::partitions::FoundVolume::to_new_volume)
        .collect();
    // Each filesystem's deleted entries: a volume of their own, after the discovered ones.
    found.extend(
        layout
            .volumes
            .iter()
            .zip(0_u32..)
            .filter_map(|(volume, number)| volume.deleted_view(number)),
    );
    volumes::record_discovered(catalog.pool(), medium.id, layout.scheme.into(), &found).await?;
    Ok(volumes::medium_volumes(catalog.pool(), medium.id).await?)
}

/// Attaches the medium's filesystem volumes (discovering them first if needed), records in
/// the catalog how each is read or why it cannot be, and fails when none can be read. A
/// medium without any filesystem (blank, encrypted, a volume group member, ...) is attached as
/// nothing, with the medium problem `no_filesystem` naming what each volume is: a finished
/// medium, not a failure (reading it again finds the same). A directory medium is its
/// directory. [`PipelineError::Interrupted`] when cancelled (what was
/// attached so far is released).
pub async fn attach(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    force: bool,
    cancel: &CancellationToken,
) -> Result<AttachedMedium> {
    if medium.kind == MediumKind::Directory {
        let root = PathBuf::from(&medium.source);
        if !root.is_dir() {
            return Err(PipelineError::DirectoryGone {
                medium: medium.name.clone(),
                path: root,
            });
        }
        return Ok(AttachedMedium::directory(root));
    }
    if medium.health == Some(HealthValue::Failed) && !force {
        return Err(PipelineError::HealthFailed {
            medium: medium.name.clone(),
        });
    }
    let rows = ensure_volumes(catalog, medium).await?;
    let image = image_of(medium)?;
    // An archived medium's raw image comes back before anything reads it.
    crate::imaging::restore_archived_image(catalog.pool(), medium.id, &image).await?;
    let specs: Vec<VolumeSpec> = rows
        .iter()
        .filter(|row| matches!(row.role, RoleValue::Filesystem | RoleValue::Deleted))
        .map(|row| VolumeSpec {
            deleted: row.role == RoleValue::Deleted,
            volume_no: row.volume_no,
            offset: u64::try_from(row.offset_bytes).unwrap_or(0),
            length: u64::try_from(row.length_bytes).unwrap_or(0),
            fs_type: row
                .fs_type
                .as_deref()
                .and_then(FsType::from_name)
                .unwrap_or(FsType::Unknown),
        })
        .collect();
    if specs.is_empty() {
        record_no_filesystem(catalog, medium, &rows).await?;
        return Ok(AttachedMedium::nothing());
    }
    let attached = access::attach_medium(&image, &medium.hash, &specs, &host.volumes, cancel)
        .await
        .map_err(|source| PipelineError::Attach {
            medium: medium.name.clone(),
            source,
        })?
        .ok_or(PipelineError::Interrupted)?;
    for volume in &attached.volumes {
        volumes::record_ready(
            catalog.pool(),
            medium.id,
            volume.volume_no,
            volume.method.into(),
        )
        .await?;
    }
    for failure in &attached.failures {
        volumes::record_failed(catalog.pool(), medium.id, failure.volume_no, &failure.error)
            .await?;
        tracing::warn!(
            volume = failure.volume_no,
            error = %failure.error,
            "volume cannot be read"
        );
    }
    if attached.volumes.is_empty() {
        let reasons = attached
            .failures
            .iter()
            .map(|f| format!("volume {}: {}", f.volume_no, f.error))
            .collect::<Vec<_>>()
            .join("; ");
        // Nothing is attached; the release only drops the lock.
        release(medium, attached)?;
        return Err(PipelineError::NoVolumeReadable {
            medium: medium.name.clone(),
            reasons,
        });
    }
    if !attached.failures.is_empty() {
        tracing::warn!(
            readable = attached.volumes.len(),
            failed = attached.failures.len(),
            "continuing with the volumes that can be read"
        );
    }
    Ok(attached)
}

/// Records the medium problem `no_filesystem`: what each of its volumes is and why it is not
/// read.
async fn record_no_filesystem(
    catalog: &Catalog,
    medium: &MediumRecord,
    rows: &[VolumeRow],
) -> Result<()> {
    let volumes: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "volume {} ({}): {}",
                row.volume_no,
                row.fs_type.as_deref().unwrap_or("unknown"),
                row.problem.as_deref().unwrap_or("not a filesystem")
            )
        })
        .collect();
    tracing::warn!(volumes = %volumes.join("; "), "the medium holds no filesystem to read");
    crate::catalog::copying::record_problem(
        catalog.pool(),
        medium.id,
        "no_filesystem",
        serde_json::json!(volumes),
    )
    .await?;
    Ok(())
}

/// Releases what [`attach`] attached: the mounts and loop devices this run made go, those
/// `ntt mount` left in place stay.
pub fn release(medium: &MediumRecord, attached: AttachedMedium) -> Result<()> {
    attached.release().map_err(|source| PipelineError::Release {
        medium: medium.name.clone(),
        source,
    })
}

/// Keeps what [`attach`] attached in place for people to look at (`ntt mount`).
pub fn persist(medium: &MediumRecord, attached: AttachedMedium) -> Result<()> {
    attached.persist().map_err(|source| PipelineError::Release {
        medium: medium.name.clone(),
        source,
    })
}

/// Unmounts everything under the medium's mount directory (overmounts included) and detaches
/// its loop devices; safe to repeat.
pub async fn unmount(host: &Host, medium: &MediumRecord) -> Result<Released> {
    let image = medium
        .image_path
        .as_deref()
        .map_or_else(|| Path::new("/nonexistent").to_owned(), PathBuf::from);
    access::release_medium(&image, &medium.hash, &host.volumes)
        .await
        .map_err(|source| PipelineError::Release {
            medium: medium.name.clone(),
            source,
        })
}

/// Runs `work` on the attached medium, then releases it whatever happened (the work's error
/// wins over the release's, which is logged).
pub async fn with_attached<T>(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    force: bool,
    cancel: &CancellationToken,
    work: impl AsyncFnOnce(&AttachedMedium) -> Result<T>,
) -> Result<T> {
    let attached = attach(catalog, host, medium, force, cancel).await?;
    let result = work(&attached).await;
    let released = release(medium, attached);
    match (result, released) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(error)) => Err(error),
        (Err(error), released) => {
            if let Err(release) = released {
                tracing::warn!(error = %release, "releasing the volumes failed too");
            }
            Err(error)
        }
    }
}
