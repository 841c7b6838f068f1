//! Deleted files' recovered content, checked: the units The Sleuth Kit recovers a deleted file
//! from (`istat`) may since have been allocated to live files (`blkls`), or lie on sectors that
//! were never read (the mapfile). Those byte ranges are recorded on the file
//! (`overwritten_ranges`, `damaged_ranges`), so that content is flagged, never passed off as
//! the deleted file's.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{PipelineError, Result};
use crate::catalog::Catalog;
pub use crate::catalog::deleted::Checked;
use crate::catalog::media::MediumRecord;
use crate::volume::access::AttachedMedium;
use crate::volume::reader::VolumeReader;
use crate::volume::tsk::{TskError, TskVolume};

/// The byte ranges of a file of `size` bytes whose units (in file order, each `unit` bytes)
/// satisfy `hit`, merged (pure).
pub fn ranges_hit(
    units: &[u64],
    unit: u64,
    size: u64,
    hit: impl Fn(u64) -> bool,
) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for (index, &address) in (0_u64..).zip(units) {
        let start = index.saturating_mul(unit);
        if start >= size {
            break;
        }
        if !hit(address) {
            continue;
        }
        let end = start.saturating_add(unit).min(size);
        match out.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => out.push(start..end),
        }
    }
    out
}

/// Checks the recovered content of every deleted file of the attached medium's deleted volumes
/// not checked yet for the current load against the live filesystem's allocation and the
/// medium's unreadable areas, records the ranges that are not the file's, then marks the volume
/// checked. Copying calls it before it reads anything, so a run killed between publishing a
/// load and checking it copies nothing unchecked.
pub async fn check_attached(
    catalog: &Catalog,
    medium: &MediumRecord,
    attached: &AttachedMedium,
    cancel: &CancellationToken,
) -> Result<Vec<Checked>> {
    let unreadable = unreadable_areas(medium)?;
    let unreadable = unreadable.as_slice();
    let rows = crate::catalog::volumes::medium_volumes(catalog.pool(), medium.id).await?;
    let checked = crate::catalog::deleted::checked_volumes(catalog.pool(), medium.id).await?;
    let mut reports = Vec::new();
    for volume in &attached.volumes {
        let VolumeReader::SleuthKit(reader) = &volume.reader else {
            continue;
        };
        if !reader.is_deleted() || checked.contains(&volume.volume_no) {
            continue;
        }
        let Some(offset) = rows
            .iter()
            .find(|r| r.volume_no == volume.volume_no)
            .and_then(|r| u64::try_from(r.offset_bytes).ok())
        else {
            continue;
        };
        let files =
            crate::catalog::deleted::files(catalog.pool(), medium.id, volume.volume_no).await?;
        let mut report = Checked {
            volume_no: volume.volume_no,
            ..Checked::default()
        };
        // Without the unit size no file can be checked: each fails alone, with the reason.
        let unit = reader.unit_size().map_err(|error| error.to_string());
        for (ino, size) in files {
            if cancel.is_cancelled() {
                // Not marked checked: the next run checks this volume again.
                return Err(PipelineError::Interrupted);
            }
            let (tsk, areas) = (reader.clone(), unreadable.to_vec());
            let size = u64::try_from(size).unwrap_or(0);
            let address = u64::from_ne_bytes(ino.to_ne_bytes());
            let checked = match &unit {
                Ok(unit) => {
                    let unit = *unit;
                    tokio::task::spawn_blocking(move || {
                        check_file(&tsk, address, size, unit, offset, &areas)
                            .map_err(|error| error.to_string())
                    })
                    .await?
                }
                Err(error) => Err(error.clone()),
            };
            let (overwritten, damaged) = match checked {
                Ok(ranges) => ranges,
                Err(error) => {
                    // One file The Sleuth Kit cannot answer for (crafted, damaged metadata)
                    // fails alone; the others go on.
                    tracing::warn!(volume = volume.volume_no, ino, %error, "cannot check a deleted file's recovered content");
                    crate::catalog::deleted::record_unchecked(
                        catalog.pool(),
                        medium.id,
                        volume.volume_no,
                        ino,
                        &error,
                    )
                    .await?;
                    report.files += 1;
                    report.unchecked += 1;
                    continue;
                }
            };
            report.files += 1;
            report.overwritten += u64::from(!overwritten.is_empty());
            report.unreadable += u64::from(!damaged.is_empty());
            crate::catalog::deleted::record_ranges(
                catalog.pool(),
                medium.id,
                volume.volume_no,
                ino,
                &overwritten,
                &damaged,
            )
            .await?;
        }
        crate::catalog::deleted::record_checked(catalog.pool(), medium.id, volume.volume_no)
            .await?;
        if report.overwritten > 0 || report.unreadable > 0 {
            tracing::warn!(
                medium = %medium.name,
                volume = report.volume_no,
                overwritten = report.overwritten,
                unreadable = report.unreadable,
                "deleted files whose recovered content is partly not theirs: \
                 `ntt ls --deleted` shows the ranges"
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Byte ranges of a file.
type Ranges = Vec<Range<u64>>;

/// The overwritten and unreadable byte ranges of one deleted file. Blocking.
fn check_file(
    reader: &TskVolume,
    address: u64,
    size: u64,
    unit: u64,
    offset: u64,
    unreadable: &[Range<u64>],
) -> std::result::Result<(Ranges, Ranges), TskError> {
    let units = reader.content_units(&address.to_string())?;
    if units.is_empty() {
        // Resident in its metadata entry, or nothing left to recover from.
        return Ok((Vec::new(), Vec::new()));
    }
    let allocated: HashSet<u64> = reader.allocated_among(&units)?;
    let overwritten = ranges_hit(&units, unit, size, |u| allocated.contains(&u));
    let damaged = ranges_hit(&units, unit, size, |u| {
        let start = offset.saturating_add(u.saturating_mul(unit));
        let end = start.saturating_add(unit);
        unreadable.iter().any(|a| a.start < end && start < a.end)
    });
    Ok((overwritten, damaged))
}

/// The medium's unreadable areas, for [`check_attached`].
pub fn unreadable_areas(medium: &MediumRecord) -> Result<Vec<Range<u64>>> {
    let mapfile = medium.mapfile_path.as_ref().map(PathBuf::from);
    crate::damage::unreadable_areas(mapfile.as_deref()).map_err(|source| PipelineError::Damage {
        medium: medium.name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::single_range_in_vec_init,
        reason = "one byte range is the expected answer"
    )]
    fn hit_units_become_merged_byte_ranges_clipped_to_the_size() {
        // Units 10, 11, 50, 12 in file order, 512 bytes each, a 1800-byte file.
        let units = [10, 11, 50, 12];
        assert_eq!(
            ranges_hit(&units, 512, 1800, |u| u == 11 || u == 50),
            [512..1536]
        );
        assert_eq!(ranges_hit(&units, 512, 1800, |u| u == 12), [1536..1800]);
        assert_eq!(
            ranges_hit(&units, 512, 1800, |u| u == 10 || u == 12),
            [0..512, 1536..1800]
        );
        assert!(ranges_hit(&units, 512, 1800, |_| false).is_empty());
        // Units past the file's size (istat lists whole clusters) are not the file's.
        assert_eq!(ranges_hit(&units, 512, 1000, |_| true), [0..1000]);
    }
}
