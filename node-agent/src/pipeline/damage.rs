//! The damage map: a medium's unreadable areas (from its mapfile) mapped onto its files.

use std::ops::Range;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::MediumRecord;
use crate::damage::{self, MappedVolume, VolumeReport};
use crate::volume::access::AttachedMedium;

/// The unreadable areas of the medium's image from its mapfile (none for a directory or a
/// registered image without one).
pub(super) fn medium_areas(medium: &MediumRecord) -> Result<Vec<Range<u64>>> {
    let mapfile = medium.mapfile_path.as_ref().map(PathBuf::from);
    damage::unreadable_areas(mapfile.as_deref()).map_err(|source| PipelineError::Damage {
        medium: medium.name.clone(),
        source,
    })
}

/// Maps the medium's damage onto its attached volumes and records it.
pub async fn map_attached(
    catalog: &Catalog,
    medium: &MediumRecord,
    attached: &AttachedMedium,
) -> Result<Vec<VolumeReport>> {
    let Some(image) = medium.image_path.as_ref().map(PathBuf::from) else {
        return Ok(Vec::new());
    };
    let areas = medium_areas(medium)?;
    let rows = crate::catalog::volumes::medium_volumes(catalog.pool(), medium.id).await?;
    let volumes: Vec<MappedVolume<'_>> = attached
        .volumes
        .iter()
        .filter_map(|volume| {
            // Deleted files' content is checked against the damage by pipeline::deleted.
            let row = rows
                .iter()
                .find(|r| r.volume_no == volume.volume_no)
                .filter(|r| r.role != crate::catalog::volumes::RoleValue::Deleted)?;
            Some(MappedVolume {
                attached: volume,
                offset: u64::try_from(row.offset_bytes).ok()?,
                length: u64::try_from(row.length_bytes).ok()?,
            })
        })
        .collect();
    let reports = damage::map_medium(catalog.pool(), medium.id, &image, &areas, &volumes)
        .await
        .map_err(|source| PipelineError::Damage {
            medium: medium.name.clone(),
            source,
        })?;
    for report in &reports {
        if report.recorded.damaged_files > 0 || report.counts.metadata_bytes > 0 {
            tracing::warn!(
                medium = %medium.name,
                volume = report.volume_no,
                damaged_files = report.recorded.damaged_files,
                structures_bytes = report.counts.metadata_bytes,
                "unreadable sectors hit files or filesystem structures: `ntt ls --damaged` lists the files"
            );
        }
    }
    Ok(reports)
}

/// Whether the medium's damage map is missing or was built from other areas than its mapfile
/// now has (a later rescue read more).
pub async fn map_is_stale(catalog: &Catalog, medium: &MediumRecord) -> Result<bool> {
    if medium.image_path.is_none() {
        return Ok(false);
    }
    let areas = medium_areas(medium)?;
    Ok(!crate::catalog::damage::map_is_current(catalog.pool(), medium.id, &areas).await?)
}

/// Maps the damage of an enumerated medium again (after a later rescue), attaching it for
/// the time it takes.
pub async fn damage(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    force: bool,
    cancel: &CancellationToken,
) -> Result<Vec<VolumeReport>> {
    if crate::catalog::load::published_entries(catalog.pool(), medium.id)
        .await?
        .is_none()
    {
        return Err(PipelineError::NotEnumerated {
            medium: medium.name.clone(),
        });
    }
    super::attach::with_attached(catalog, host, medium, force, cancel, async |attached| {
        map_attached(catalog, medium, attached).await
    })
    .await
}
