//! Unreadable units of a volume The Sleuth Kit reads: free (blkls), structures, or the entries
//! owning them (ifind, istat) with their content ranges.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use super::{VolumeMap, clip, merge, total};
use crate::volume::tsk::{TskError, TskVolume, UnitOwner};

/// `ifind` lookups per volume at most (each scans the filesystem's metadata); the bytes of
/// units beyond are counted as unattributed.
pub const MAX_LOOKUPS: usize = 4096;
/// Units per volume examined at most (a huge non-tried area of a barely imaged medium).
const MAX_UNITS: u64 = 1 << 20;
/// Structure lines kept per volume.
const MAX_METADATA_LINES: usize = 200;

/// An entry The Sleuth Kit named as the owner of unreadable units, before the catalog says
/// whether it is a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its metadata address (`12`, `64-128-2`).
    pub address: String,
    /// Its name relative to the volume root, if The Sleuth Kit knows one.
    pub name: Option<Vec<u8>>,
    /// Damaged ranges of its content (file offsets).
    pub content: Vec<Range<u64>>,
    /// Unreadable bytes in its content.
    pub content_bytes: u64,
    /// Unreadable bytes in its units that are not content (an index, indirect blocks).
    pub other_bytes: u64,
    /// The unreadable byte ranges of the volume in its content.
    pub content_hit: Vec<Range<u64>>,
    /// The unreadable byte ranges of the volume in its other units.
    pub other_hit: Vec<Range<u64>>,
}

/// A filesystem structure hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureHit {
    /// What it is.
    pub what: String,
    /// The unreadable bytes of the volume in it.
    pub range: Range<u64>,
}

/// Classifies the unreadable ranges `bad` of a volume with The Sleuth Kit: free units,
/// structures, and the entries owning the rest (with their content ranges).
pub fn classify(tsk: &TskVolume, bad: &[Range<u64>]) -> Result<VolumeMap, TskError> {
    let unit = tsk.unit_size()?;
    let mut map = VolumeMap {
        bad_bytes: total(bad),
        ..VolumeMap::default()
    };
    // Each unit touched, with the unreadable bytes in it.
    let mut units: BTreeMap<u64, Vec<Range<u64>>> = BTreeMap::new();
    for range in bad {
        let mut u = range.start / unit;
        while u * unit < range.end {
            if units.len() as u64 >= MAX_UNITS {
                let rest = clip(bad, &(u * unit..u64::MAX));
                map.unattributed_bytes += total(&rest);
                break;
            }
            let part = clip(std::slice::from_ref(range), &(u * unit..(u + 1) * unit));
            units.entry(u).or_default().extend(part);
            u += 1;
        }
    }
    let mut allocated: HashSet<u64> = HashSet::new();
    for run in consecutive(units.keys().copied()) {
        for (u, used) in tsk.allocation(run.start, run.end - 1)? {
            if used {
                allocated.insert(u);
            }
        }
    }
    let mut owned: HashSet<u64> = HashSet::new();
    let mut lookups = 0;
    for (&u, parts) in &units {
        let bytes = total(parts);
        if !allocated.contains(&u) {
            map.free_bytes += bytes;
            continue;
        }
        if owned.contains(&u) {
            continue;
        }
        if lookups >= MAX_LOOKUPS {
            map.unattributed_bytes += bytes;
            continue;
        }
        lookups += 1;
        match tsk.owner(u)? {
            UnitOwner::Metadata | UnitOwner::Nobody => {
                map.structures
                    .extend(parts.iter().map(|range| StructureHit {
                        what: "filesystem structures".to_owned(),
                        range: range.clone(),
                    }));
            }
            UnitOwner::Entry(address) => {
                let mut found = Owner {
                    name: tsk.name_of(&address)?,
                    address: address.clone(),
                    content: Vec::new(),
                    content_bytes: 0,
                    other_bytes: 0,
                    content_hit: Vec::new(),
                    other_hit: Vec::new(),
                };
                // Unit 0 is never content on these filesystems (boot sector, superblock); The
                // Sleuth Kit lists sparse runs as 0.
                for (index, content_unit) in tsk.content_units(&address)?.into_iter().enumerate() {
                    if content_unit == 0 || owned.contains(&content_unit) {
                        continue;
                    }
                    let Some(hits) = units.get(&content_unit) else {
                        continue;
                    };
                    if !allocated.contains(&content_unit) {
                        continue;
                    }
                    owned.insert(content_unit);
                    let base = index as u64 * unit;
                    for hit in hits {
                        let start = base + (hit.start - content_unit * unit);
                        found.content.push(start..start + (hit.end - hit.start));
                        found.content_bytes += hit.end - hit.start;
                        found.content_hit.push(hit.clone());
                    }
                }
                if owned.insert(u) {
                    found.other_bytes += bytes;
                    found.other_hit.extend(parts.iter().cloned());
                }
                found.content = merge(found.content);
                map.owners.push(found);
            }
        }
    }
    Ok(map)
}

/// Consecutive runs of sorted numbers.
fn consecutive(numbers: impl Iterator<Item = u64>) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for n in numbers {
        match runs.last_mut() {
            Some(run) if run.end == n => run.end += 1,
            _ => runs.push(n..n + 1),
        }
    }
    runs
}

/// Structure lines for the catalog: consecutive hits of the same structure merged, at most
/// [`MAX_METADATA_LINES`] (the last says how many more).
pub fn structure_lines(hits: &[StructureHit]) -> Vec<String> {
    let mut merged: Vec<StructureHit> = Vec::new();
    let mut sorted = hits.to_vec();
    sorted.sort_by_key(|a| a.range.start);
    for hit in sorted {
        match merged.last_mut() {
            Some(last) if last.what == hit.what && last.range.end >= hit.range.start => {
                last.range.end = last.range.end.max(hit.range.end);
            }
            _ => merged.push(hit),
        }
    }
    let mut lines: Vec<String> = merged
        .iter()
        .take(MAX_METADATA_LINES)
        .map(|h| {
            format!(
                "{}: bytes {}-{} of the volume",
                h.what, h.range.start, h.range.end
            )
        })
        .collect();
    if merged.len() > MAX_METADATA_LINES {
        lines.push(format!(
            "... and {} more ranges",
            merged.len() - MAX_METADATA_LINES
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_lines_merge_and_stop() {
        let hits = [
            StructureHit {
                what: "filesystem structures".into(),
                range: 4096..8192,
            },
            StructureHit {
                what: "filesystem structures".into(),
                range: 0..4096,
            },
            StructureHit {
                what: "directory docs".into(),
                range: 8192..9000,
            },
        ];
        assert_eq!(
            structure_lines(&hits),
            [
                "filesystem structures: bytes 0-8192 of the volume",
                "directory docs: bytes 8192-9000 of the volume"
            ]
        );
        let many: Vec<StructureHit> = (0..250)
            .map(|i| StructureHit {
                what: format!("s{i}"),
                range: i * 10..i * 10 + 1,
            })
            .collect();
        let lines = structure_lines(&many);
        assert_eq!(lines.len(), MAX_METADATA_LINES + 1);
        assert_eq!(lines.last().unwrap(), "... and 50 more ranges");
    }
}
