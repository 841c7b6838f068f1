//! The rows a load holds in memory while the walk lasts, and their key order (so that the
//! index builds find them sorted).

/// A held row: the key it is sent in the order of, and where it lies in its table's rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeldRow<K> {
    pub(super) key: K,
    pub(super) start: usize,
    pub(super) len: usize,
}

/// Where a row lies in its table's rows: start and length.
pub(super) type Place = (usize, usize);

/// The inode key's order: inode number (as stored, signed), then volume.
pub(super) type InodeKey = (i64, i32);
/// The path key's order: volume, then the path's bytes (their start and length in the rows).
pub(super) type PathKey = (i32, usize, usize);

/// The places of the rows a load holds while the walk lasts.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) inodes: Vec<HeldRow<InodeKey>>,
    pub(super) paths: Vec<HeldRow<PathKey>>,
}

impl Held {
    /// Bytes the places take.
    pub(super) fn bytes(&self) -> usize {
        self.inodes.len() * std::mem::size_of::<HeldRow<InodeKey>>()
            + self.paths.len() * std::mem::size_of::<HeldRow<PathKey>>()
    }

    /// Where each row lies (start, length), inode rows and path rows, in the places' order.
    pub(super) fn places(self) -> (Vec<Place>, Vec<Place>) {
        (places(&self.inodes), places(&self.paths))
    }
}

/// Where each row lies (start, length).
pub(super) fn places<K>(rows: &[HeldRow<K>]) -> Vec<Place> {
    rows.iter().map(|row| (row.start, row.len)).collect()
}

/// Inode rows in key order.
pub(super) fn sort_inodes(mut rows: Vec<HeldRow<InodeKey>>) -> Vec<Place> {
    rows.sort_unstable_by_key(|row| row.key);
    places(&rows)
}

/// Path rows in key order: volume, then the path's bytes compared as PostgreSQL compares
/// `bytea` (bytewise, a prefix first).
pub(super) fn sort_paths(paths: &[u8], mut rows: Vec<HeldRow<PathKey>>) -> Vec<Place> {
    let bytes = |(_, start, len): PathKey| &paths[start..][..len];
    rows.sort_unstable_by(|a, b| {
        a.key
            .0
            .cmp(&b.key.0)
            .then_with(|| bytes(a.key).cmp(bytes(b.key)))
    });
    places(&rows)
}
