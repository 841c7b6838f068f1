//! Damaged files: the unreadable areas of a medium's image mapped onto the files they hit.
//!
//! ```text
//!   mapfile ─ unreadable areas (non-tried, non-trimmed, non-scraped, bad) of the image
//!     └─ per volume: the areas inside it, as volume offsets
//!          ├─ ext2/3/4 or xfs on a kernel mount: FIEMAP of every file ─ file ranges hit
//!          │     └─ what no file's extent covers ─┐
//!          ├─ other types The Sleuth Kit reads ───┴─ units: free (blkls) or owned (ifind):
//!          │                                        a file's content (istat) or structures
//!          └─ anything else: the bytes are known, their owners are not (unattributed)
//! ```
//!
//! Rules: a file is damaged exactly when its data extents intersect an unreadable area, and
//! its damaged ranges are the file offsets of those bytes (clipped to its size); free space
//! flags nothing; structures hit (superblock, tables, directories, journal, `$MFT`, a FAT)
//! are listed on the volume, because entries may be missing from the listing. Bytes whose
//! owner is not examined (no block map for the type, or past [`MAX_LOOKUPS`]) are counted as
//! unattributed, never dropped. The map is rebuilt whenever a rescue changes the areas; a
//! file whose damage shrank (or went) is copied again (the image holds more of it now).
//! Nothing here writes to the image: FIEMAP reads the mount's metadata, The Sleuth Kit reads
//! the image read-only.

pub mod fiemap;

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;

use crate::volume::probe::FsType;
use crate::volume::tsk::{TskError, TskVolume, UnitOwner};

/// `ifind` lookups per volume at most (each scans the filesystem's metadata); the bytes of
/// units beyond are counted as unattributed.
pub const MAX_LOOKUPS: usize = 4096;
/// Units per volume examined at most (a huge non-tried area of a barely imaged medium).
const MAX_UNITS: u64 = 1 << 20;
/// Structure lines kept per volume.
const MAX_METADATA_LINES: usize = 200;

pub use crate::catalog::damage::{DamageMethod, FileDamage};

/// How to map the damage of a volume of `fs_type` read with a kernel mount (`kernel`) or not
/// (pure).
pub const fn method_for(fs_type: FsType, kernel: bool) -> DamageMethod {
    // FIEMAP's physical offsets are device offsets on these; btrfs reports addresses in
    // its own logical space, which would need its chunk tree.
    let device_offsets = matches!(
        fs_type,
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Xfs
    );
    if kernel && device_offsets {
        DamageMethod::Fiemap
    } else if crate::volume::tsk::tsk_type(fs_type).is_some() {
        DamageMethod::Sleuthkit
    } else {
        DamageMethod::None
    }
}

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

/// What mapping one volume found, before owners are matched with the catalog.
#[derive(Debug, Clone, Default)]
pub struct VolumeMap {
    /// Unreadable bytes inside the volume.
    pub bad_bytes: u64,
    /// Files found by their extents (FIEMAP).
    pub files: Vec<FileDamage>,
    /// Owners found by The Sleuth Kit.
    pub owners: Vec<Owner>,
    /// Bytes in unallocated units.
    pub free_bytes: u64,
    /// Structures hit.
    pub structures: Vec<StructureHit>,
    /// Bytes not examined.
    pub unattributed_bytes: u64,
}

/// Merges overlapping and touching ranges; drops empty ones.
pub fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// Total length.
pub fn total(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

/// The parts of sorted, merged `ranges` inside `window`.
pub fn clip(ranges: &[Range<u64>], window: &Range<u64>) -> Vec<Range<u64>> {
    ranges
        .iter()
        .filter_map(|r| {
            let start = r.start.max(window.start);
            let end = r.end.min(window.end);
            (start < end).then_some(start..end)
        })
        .collect()
}

/// `ranges` minus `taken` (both sorted and merged).
pub fn subtract(ranges: &[Range<u64>], taken: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for range in ranges {
        let mut start = range.start;
        for cut in taken
            .iter()
            .filter(|c| c.end > range.start && c.start < range.end)
        {
            if cut.start > start {
                out.push(start..cut.start);
            }
            start = start.max(cut.end);
        }
        if start < range.end {
            out.push(start..range.end);
        }
    }
    out
}

/// The unreadable areas of the image inside the volume at `offset` of `length` bytes, as
/// volume offsets.
pub fn areas_in_volume(areas: &[Range<u64>], offset: u64, length: u64) -> Vec<Range<u64>> {
    clip(areas, &(offset..offset.saturating_add(length)))
        .into_iter()
        .map(|r| r.start - offset..r.end - offset)
        .collect()
}

/// The damage of one file from its extents: the file offsets whose bytes lie in `bad`, and
/// how many unreadable bytes its extents hold. An encoded (compressed) extent hit anywhere is
/// damaged whole.
pub fn file_damage(extents: &[fiemap::Extent], bad: &[Range<u64>]) -> (Vec<Range<u64>>, u64) {
    let mut ranges = Vec::new();
    let mut bad_bytes = 0;
    for extent in extents {
        let physical = extent.physical..extent.physical.saturating_add(extent.length);
        let hit = clip(bad, &physical);
        if hit.is_empty() {
            continue;
        }
        bad_bytes += total(&hit);
        if extent.encoded {
            ranges.push(extent.logical..extent.logical.saturating_add(extent.length));
            continue;
        }
        for part in hit {
            let start = extent.logical + (part.start - extent.physical);
            ranges.push(start..start + (part.end - part.start));
        }
    }
    (merge(ranges), bad_bytes)
}

/// The physical ranges of `extents` that lie in `bad` (what FIEMAP attributed to a file).
pub fn extents_hit(extents: &[fiemap::Extent], bad: &[Range<u64>]) -> Vec<Range<u64>> {
    extents
        .iter()
        .flat_map(|e| clip(bad, &(e.physical..e.physical.saturating_add(e.length))))
        .collect()
}

/// Maps files of a kernel mount at `mount` with FIEMAP: `files` are (inode, path relative to
/// the mount); returns the damaged ones and the unreadable ranges their extents cover. A file
/// that cannot be opened or mapped is skipped here; its bytes stay in the rest, which the
/// caller classifies.
pub fn map_files(
    mount: &Path,
    files: &[(i64, Vec<u8>)],
    bad: &[Range<u64>],
) -> (Vec<FileDamage>, Vec<Range<u64>>, u64) {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::os::unix::ffi::OsStrExt;
    let mut damaged = Vec::new();
    let mut covered = Vec::new();
    let mut unmappable = 0;
    for (ino, path) in files {
        let full = mount.join(std::ffi::OsStr::from_bytes(path));
        let file = match fs_err::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOATIME)
            .open(&full)
            .or_else(|_| {
                // O_NOATIME needs ownership; the mount is read-only anyway.
                fs_err::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                    .open(&full)
            }) {
            Ok(file) => file,
            Err(error) => {
                tracing::debug!(path = %full.display(), %error, "cannot open a file to map its extents");
                unmappable += 1;
                continue;
            }
        };
        let extents = match fiemap::extents(&file) {
            Ok(extents) => extents,
            Err(error) => {
                tracing::debug!(path = %full.display(), %error, "FIEMAP failed");
                unmappable += 1;
                continue;
            }
        };
        let (ranges, bad_bytes) = file_damage(&extents, bad);
        if !ranges.is_empty() {
            covered.extend(extents_hit(&extents, bad));
            damaged.push(FileDamage {
                ino: *ino,
                ranges,
                bad_bytes,
            });
        }
    }
    (damaged, merge(covered), unmappable)
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

/// Why mapping damage failed.
#[derive(Debug, thiserror::Error)]
pub enum DamageError {
    /// The mapfile could not be read or parsed.
    #[error("cannot read the mapfile {path}")]
    Mapfile {
        /// The mapfile.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The Sleuth Kit failed on a volume.
    #[error("mapping damage on volume {volume_no} with The Sleuth Kit failed")]
    Tsk {
        /// The volume.
        volume_no: i32,
        /// What failed.
        #[source]
        source: TskError,
    },
    /// A worker thread died.
    #[error("internal error: a damage-mapping thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// The unreadable areas of the image from its mapfile (none without one), merged.
pub fn unreadable_areas(mapfile: Option<&Path>) -> Result<Vec<Range<u64>>, DamageError> {
    let Some(path) = mapfile else {
        return Ok(Vec::new());
    };
    let text = fs_err::read_to_string(path).map_err(|source| DamageError::Mapfile {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let map =
        crate::imaging::mapfile::Mapfile::parse(&text).map_err(|source| DamageError::Mapfile {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    Ok(merge(
        map.unreadable_areas()
            .into_iter()
            .map(|a| a.pos..a.end())
            .collect(),
    ))
}

/// One volume's damage, as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeReport {
    /// The volume.
    pub volume_no: i32,
    /// How it was mapped.
    pub method: DamageMethod,
    /// Its counts.
    #[serde(flatten)]
    pub counts: crate::catalog::damage::VolumeCounts,
    /// Structures hit.
    pub structures: Vec<String>,
    /// Files damaged, and files to copy again.
    #[serde(flatten)]
    pub recorded: crate::catalog::damage::Recorded,
}

/// Where a volume of the medium lies in the image, and how it is attached.
#[derive(Debug)]
pub struct MappedVolume<'a> {
    /// The attached volume.
    pub attached: &'a crate::volume::access::AttachedVolume,
    /// Its byte offset in the image.
    pub offset: u64,
    /// Its length.
    pub length: u64,
}

/// Maps the unreadable `areas` of the medium's `image` onto the files of `volumes` and records
/// the map (and the areas it was built from).
pub async fn map_medium(
    pool: &sqlx::PgPool,
    medium: crate::catalog::media::MediumId,
    image: &Path,
    areas: &[Range<u64>],
    volumes: &[MappedVolume<'_>],
) -> Result<Vec<VolumeReport>, DamageError> {
    let mut reports = Vec::new();
    for volume in volumes {
        let bad = areas_in_volume(areas, volume.offset, volume.length);
        reports.push(map_volume(pool, medium, image, volume, bad).await?);
    }
    crate::catalog::damage::record_areas(pool, medium, areas).await?;
    Ok(reports)
}

async fn map_volume(
    pool: &sqlx::PgPool,
    medium: crate::catalog::media::MediumId,
    image: &Path,
    volume: &MappedVolume<'_>,
    bad: Vec<Range<u64>>,
) -> Result<VolumeReport, DamageError> {
    use crate::volume::access::Method;
    let attached = volume.attached;
    let volume_no = attached.volume_no;
    let kernel = attached.method == Method::Kernel;
    let method = method_for(attached.fs_type, kernel);
    let mut map = VolumeMap {
        bad_bytes: total(&bad),
        ..VolumeMap::default()
    };
    let mut rest = bad.clone();
    if !bad.is_empty()
        && method == DamageMethod::Fiemap
        && let Some(mount) = attached.mount_point.clone()
    {
        let mut after = i64::MIN;
        let mut covered = Vec::new();
        loop {
            let files =
                crate::catalog::damage::files_after(pool, medium, volume_no, after, 10_000).await?;
            let Some((last, _)) = files.last() else {
                break;
            };
            after = *last;
            let (mount, bad) = (mount.clone(), bad.clone());
            let (damaged, hit, unmappable) =
                tokio::task::spawn_blocking(move || map_files(&mount, &files, &bad)).await?;
            if unmappable > 0 {
                tracing::warn!(
                    volume = volume_no,
                    files = unmappable,
                    "files whose extents could not be read: their bytes count as unattributed unless The Sleuth Kit places them"
                );
            }
            map.files.extend(damaged);
            covered.extend(hit);
        }
        rest = subtract(&bad, &merge(covered));
    }
    if !rest.is_empty() && method != DamageMethod::None {
        let tsk =
            crate::volume::tsk::TskVolume::open_volume(image, volume.offset, attached.fs_type);
        match tsk {
            Ok(tsk) => {
                let found = tokio::task::spawn_blocking(move || classify(&tsk, &rest))
                    .await?
                    .map_err(|source| DamageError::Tsk { volume_no, source })?;
                map.owners = found.owners;
                map.free_bytes = found.free_bytes;
                map.structures = found.structures;
                map.unattributed_bytes = found.unattributed_bytes;
            }
            Err(error) => {
                tracing::warn!(volume = volume_no, %error, "The Sleuth Kit cannot read this volume: its unreadable bytes stay unattributed");
                map.unattributed_bytes = total(&rest);
            }
        }
    } else if !rest.is_empty() {
        map.unattributed_bytes = total(&rest);
    }
    let (files, counts, structures) = resolve(pool, medium, attached, map).await?;
    let recorded = crate::catalog::damage::record_volume(
        pool,
        medium,
        volume_no,
        method,
        &counts,
        &structures,
        &files,
    )
    .await?;
    Ok(VolumeReport {
        volume_no,
        method,
        counts,
        structures,
        recorded,
    })
}

/// Matches The Sleuth Kit's owners with the catalog: a regular file's content damage is file
/// damage; anything else it owns is a structure hit, named after its path.
async fn resolve(
    pool: &sqlx::PgPool,
    medium: crate::catalog::media::MediumId,
    attached: &crate::volume::access::AttachedVolume,
    map: VolumeMap,
) -> Result<
    (
        Vec<FileDamage>,
        crate::catalog::damage::VolumeCounts,
        Vec<String>,
    ),
    DamageError,
> {
    use crate::volume::access::Method;
    let volume_no = attached.volume_no;
    // The catalog's inode numbers are The Sleuth Kit's where it read the volume, and also
    // where the kernel or the FUSE driver numbers inodes like the filesystem (ext, NTFS);
    // elsewhere (exFAT, ISO 9660 drivers) an owner is found by its name.
    let same_numbers = attached.method == Method::Userspace
        || matches!(
            attached.fs_type,
            FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Ntfs
        );
    let mut files: BTreeMap<i64, FileDamage> = BTreeMap::new();
    let mut counts = crate::catalog::damage::VolumeCounts {
        bad_bytes: map.bad_bytes,
        free_bytes: map.free_bytes,
        unattributed_bytes: map.unattributed_bytes,
        ..Default::default()
    };
    for file in map.files {
        counts.file_bytes += file.bad_bytes;
        files.insert(file.ino, file);
    }
    let mut structures = map.structures;
    counts.metadata_bytes = structures.iter().map(|s| s.range.end - s.range.start).sum();
    for owner in map.owners {
        let number = owner
            .address
            .split('-')
            .next()
            .and_then(|n| n.parse::<i64>().ok());
        let entry = match (same_numbers, number, &owner.name) {
            (true, Some(ino), _) => {
                crate::catalog::damage::entry_by_inode(pool, medium, volume_no, ino).await?
            }
            (false, _, Some(name)) => {
                crate::catalog::damage::entry_by_path(pool, medium, volume_no, name).await?
            }
            _ => None,
        };
        let name = |path: Option<&[u8]>| {
            path.or(owner.name.as_deref()).map_or_else(
                || format!("entry {}", owner.address),
                |p| String::from_utf8_lossy(p).into_owned(),
            )
        };
        let mut hits = |what: &str, ranges: &[Range<u64>]| {
            structures.extend(ranges.iter().map(|range| StructureHit {
                what: what.to_owned(),
                range: range.clone(),
            }));
        };
        match entry {
            Some((ino, kind, path)) if kind == "file" => {
                if !owner.content.is_empty() {
                    counts.file_bytes += owner.content_bytes;
                    let file = files.entry(ino).or_insert_with(|| FileDamage {
                        ino,
                        ranges: Vec::new(),
                        bad_bytes: 0,
                    });
                    file.ranges = merge([file.ranges.clone(), owner.content.clone()].concat());
                    file.bad_bytes += owner.content_bytes;
                }
                counts.metadata_bytes += owner.other_bytes;
                hits(
                    &format!("block map of file {}", name(Some(&path))),
                    &owner.other_hit,
                );
            }
            Some((_, kind, path)) => {
                counts.metadata_bytes += owner.content_bytes + owner.other_bytes;
                let what = format!("{kind} {}", name(Some(&path)));
                hits(&what, &owner.content_hit);
                hits(&what, &owner.other_hit);
            }
            None => {
                counts.metadata_bytes += owner.content_bytes + owner.other_bytes;
                let what = name(None);
                hits(&what, &owner.content_hit);
                hits(&what, &owner.other_hit);
            }
        }
    }
    Ok((
        files.into_values().collect(),
        counts,
        structure_lines(&structures),
    ))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn extent(logical: u64, physical: u64, length: u64) -> fiemap::Extent {
        fiemap::Extent {
            logical,
            physical,
            length,
            encoded: false,
        }
    }

    #[test]
    fn range_arithmetic() {
        assert_eq!(merge(vec![5..7, 0..2, 2..3, 6..9, 4..4]), [0..3, 5..9]);
        assert_eq!(total(&[0..3, 5..9]), 7);
        assert_eq!(clip(&[0..10, 20..30], &(5..25)), [5..10, 20..25]);
        assert_eq!(
            subtract(&[0..10, 20..30], &[2..4, 8..22]),
            [0..2, 4..8, 22..30]
        );
        assert_eq!(subtract(&[0..10], &[]), [0..10]);
        assert_eq!(subtract(&[0..10], &[0..10]), Vec::<Range<u64>>::new());
        assert_eq!(
            areas_in_volume(
                &[0..512, 1_048_576..1_052_672, 9_000_000..9_000_512],
                1_048_576,
                4096
            ),
            [0..4096]
        );
    }

    #[test]
    fn a_file_is_damaged_where_its_extents_meet_bad_bytes() {
        // Two extents: file 0..8192 at 40960, file 8192..16384 at 81920.
        let extents = [extent(0, 40960, 8192), extent(8192, 81920, 8192)];
        let (ranges, bytes) = file_damage(&extents, &[45056..46080, 81920..82432]);
        assert_eq!(ranges, [4096..5120, 8192..8704]);
        assert_eq!(bytes, 1024 + 512);
        let (none, zero) = file_damage(&extents, &[0..40960, 49152..81920]);
        assert!(none.is_empty());
        assert_eq!(zero, 0);
        let encoded = [fiemap::Extent {
            encoded: true,
            ..extent(0, 40960, 8192)
        }];
        assert_eq!(file_damage(&encoded, &[41000..41001]).0, [0..8192]);
        assert_eq!(
            extents_hit(&extents, &[45056..46080, 90000..99000]),
            [45056..46080, 90000..90112]
        );
    }

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

    #[test]
    fn methods_follow_access_and_type() {
        assert_eq!(method_for(FsType::Ext4, true), DamageMethod::Fiemap);
        assert_eq!(method_for(FsType::Xfs, true), DamageMethod::Fiemap);
        assert_eq!(method_for(FsType::Ext4, false), DamageMethod::Sleuthkit);
        assert_eq!(method_for(FsType::Fat32, true), DamageMethod::Sleuthkit);
        assert_eq!(method_for(FsType::Btrfs, true), DamageMethod::None);
        assert_eq!(method_for(FsType::Squashfs, false), DamageMethod::None);
    }
}
