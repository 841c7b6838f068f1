//! One directory entry of a volume with its inode's metadata: what every reader (a mount, The
//! Sleuth Kit) reports and what a load records.

use serde::Serialize;

/// What kind of entry a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A block device node.
    Block,
    /// A character device node.
    Char,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

/// One directory entry of a volume with its inode's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The path below the volume root, exact bytes, without a leading `/`.
    pub path: Vec<u8>,
    /// The inode number (the metadata address for The Sleuth Kit).
    pub ino: u64,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (and set-id/sticky bits), without the type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Hard links to the inode (1 where the reader does not know).
    pub nlink: u64,
    /// Size in bytes.
    pub size: u64,
    /// Device number of a block or character device node.
    pub rdev: Option<u64>,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: Option<i64>,
    /// Status change time.
    pub ctime_ns: Option<i64>,
    /// Access time.
    pub atime_ns: Option<i64>,
    /// Birth time, where the filesystem has one.
    pub birth_ns: Option<i64>,
    /// A symlink's target, exact bytes.
    pub target: Option<Vec<u8>>,
}
