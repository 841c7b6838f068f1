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

mod extents;
pub mod fiemap;
mod ranges;
mod sleuthkit;

pub use extents::{extents_hit, file_damage, map_files};
pub use ranges::{areas_in_volume, clip, merge, subtract, total};
pub use sleuthkit::{MAX_LOOKUPS, Owner, StructureHit, classify, structure_lines};

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use crate::volume::probe::FsType;
use crate::volume::tsk::TskError;

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
mod tests {
    use super::*;

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
