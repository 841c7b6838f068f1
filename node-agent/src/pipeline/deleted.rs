//! Deleted files' recovered content, checked: the units The Sleuth Kit recovers a deleted file
//! from (`istat`) may since have been allocated to live files (`blkls`), or lie on sectors that
//! were never read (the mapfile). Those byte ranges are recorded on the file
//! (`overwritten_ranges`, `damaged_ranges`), so that content is flagged, never passed off as
//! the deleted file's.

use std::collections::HashSet;
use std::ops::Range;

use tokio_util::sync::CancellationToken;

use super::{PipelineError, Result};
use crate::catalog::Catalog;
pub use crate::catalog::deleted::Checked;
use crate::catalog::media::MediumRecord;
use crate::volume::access::AttachedMedium;
use crate::volume::reader::VolumeReader;
use crate::volume::tsk::TskVolume;

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
    let unreadable = super::damage::medium_areas(medium)?;
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
        for batch in files.chunks(BATCH) {
            if cancel.is_cancelled() {
                // Not marked checked: the next run checks this volume again.
                return Err(PipelineError::Interrupted);
            }
            let results: Vec<(i64, FileCheck)> = match &unit {
                Ok(unit) => {
                    let (tsk, areas, unit) = (reader.clone(), unreadable.to_vec(), *unit);
                    let batch = batch.to_vec();
                    tokio::task::spawn_blocking(move || {
                        check_batch(&tsk, &batch, unit, offset, &areas)
                    })
                    .await?
                }
                Err(error) => batch
                    .iter()
                    .map(|&(ino, _)| (ino, Err(error.clone())))
                    .collect(),
            };
            let mut checked_ranges = Vec::with_capacity(results.len());
            for (ino, checked) in results {
                report.files += 1;
                match checked {
                    Ok((overwritten, damaged)) => {
                        report.overwritten += u64::from(!overwritten.is_empty());
                        report.unreadable += u64::from(!damaged.is_empty());
                        checked_ranges.push((ino, overwritten, damaged));
                    }
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
                        report.unchecked += 1;
                    }
                }
            }
            crate::catalog::deleted::record_ranges(
                catalog.pool(),
                medium.id,
                volume.volume_no,
                &checked_ranges,
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

/// A deleted file's overwritten and unreadable ranges, or why they could not be found.
type FileCheck = std::result::Result<(Ranges, Ranges), String>;

/// Deleted files checked per batch: their units are read one `istat` each (on every core),
/// then the allocation of all of them is asked of `blkls` at once.
const BATCH: usize = 256;

/// The overwritten and unreadable byte ranges of each of `files` (inode, size), or why it
/// could not be checked. Blocking.
fn check_batch(
    reader: &TskVolume,
    files: &[(i64, i64)],
    unit: u64,
    offset: u64,
    unreadable: &[Range<u64>],
) -> Vec<(i64, FileCheck)> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let per_thread = files.len().div_ceil(threads).max(1);
    let units: Vec<std::result::Result<Vec<u64>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(ino, _)| {
                            let address = u64::from_ne_bytes(ino.to_ne_bytes());
                            reader
                                .content_units(&address.to_string())
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| vec![Err("a checking thread failed".to_owned())])
            })
            .collect()
    });
    let all: Vec<u64> = units.iter().flatten().flatten().copied().collect();
    let allocated: std::result::Result<HashSet<u64>, String> =
        reader.allocated_among(&all).map_err(|e| e.to_string());
    files
        .iter()
        .zip(units)
        .map(|(&(ino, size), units)| {
            let size = u64::try_from(size).unwrap_or(0);
            let checked = units.and_then(|units| match &allocated {
                Ok(allocated) => Ok(file_ranges(
                    &units, unit, size, offset, allocated, unreadable,
                )),
                // One file's crafted unit can fail the batch's question: asked alone, only
                // that file fails.
                Err(_) => reader
                    .allocated_among(&units)
                    .map(|alone| file_ranges(&units, unit, size, offset, &alone, unreadable))
                    .map_err(|e| e.to_string()),
            });
            (ino, checked)
        })
        .collect()
}

/// A file's overwritten and unreadable byte ranges from its units (pure).
fn file_ranges(
    units: &[u64],
    unit: u64,
    size: u64,
    offset: u64,
    allocated: &HashSet<u64>,
    unreadable: &[Range<u64>],
) -> (Ranges, Ranges) {
    let overwritten = ranges_hit(units, unit, size, |u| allocated.contains(&u));
    let damaged = ranges_hit(units, unit, size, |u| {
        let start = offset.saturating_add(u.saturating_mul(unit));
        let end = start.saturating_add(unit);
        unreadable.iter().any(|a| a.start < end && start < a.end)
    });
    (overwritten, damaged)
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
