//! Files of a kernel mount mapped by their extents (FIEMAP): the file offsets whose bytes are
//! unreadable.

use std::ops::Range;
use std::path::Path;

use super::{FileDamage, clip, fiemap, merge, total};

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

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "one-range lists read best as written"
)]
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
}
