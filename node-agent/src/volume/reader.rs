//! The one interface enumeration and copying use to read a volume, whichever way it is attached:
//! a directory tree (kernel or FUSE mount) or The Sleuth Kit reading the image directly.
//!
//! Rules: a walk never crosses into another filesystem (a mount below the volume root is not
//! part of the volume); paths are the exact bytes below the volume root; an entry or directory
//! that cannot be read is reported as a [`WalkItem::Error`] with its cause and the walk goes on.
//! This is the serial reference walk; enumeration parallelises over directories on top of it.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::tsk::{TskError, TskVolume};

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

/// What a walk yields.
#[derive(Debug)]
pub enum WalkItem {
    /// An entry.
    Entry(Entry),
    /// An entry or directory that could not be read.
    Error {
        /// Its path below the volume root.
        path: Vec<u8>,
        /// Why.
        error: std::io::Error,
    },
}

/// Why reading a volume failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The volume root cannot be read at all.
    #[error("cannot read the volume root {root}")]
    Root {
        /// The mount point.
        root: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file cannot be opened.
    #[error("cannot open {path} on the volume")]
    Open {
        /// The path (lossy, for people).
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The Sleuth Kit failed.
    #[error(transparent)]
    Tsk(#[from] TskError),
}

/// A readable volume.
#[derive(Debug)]
pub enum VolumeReader {
    /// A mounted filesystem (kernel or FUSE) at this directory.
    Mounted {
        /// The mount point.
        root: PathBuf,
    },
    /// The Sleuth Kit reading the image directly.
    SleuthKit(TskVolume),
}

impl VolumeReader {
    /// Visits every entry below the root (the root itself excluded). Blocking.
    pub fn walk(&self, visit: &mut dyn FnMut(WalkItem)) -> Result<(), ReadError> {
        match self {
            Self::Mounted { root } => walk_tree(root, visit),
            Self::SleuthKit(volume) => {
                for entry in volume.list()? {
                    visit(WalkItem::Entry(entry));
                }
                Ok(())
            }
        }
    }

    /// Opens a regular file's content for reading. Blocking.
    pub fn open(&self, entry: &Entry) -> Result<Box<dyn Read + Send>, ReadError> {
        match self {
            Self::Mounted { root } => {
                let path = root.join(OsStr::from_bytes(&entry.path));
                // O_NOFOLLOW: the entry was a regular file when listed; never follow a link that
                // replaced it out of the volume.
                let file = fs_err::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|source| ReadError::Open {
                        path: String::from_utf8_lossy(&entry.path).into_owned(),
                        source,
                    })?;
                Ok(Box::new(file))
            }
            Self::SleuthKit(volume) => Ok(Box::new(volume.open(entry.ino)?)),
        }
    }
}

use fs_err::os::unix::fs::OpenOptionsExt;

fn walk_tree(root: &Path, visit: &mut dyn FnMut(WalkItem)) -> Result<(), ReadError> {
    let root_meta = fs_err::symlink_metadata(root).map_err(|source| ReadError::Root {
        root: root.to_owned(),
        source,
    })?;
    let device = root_meta.dev();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let dir_path = root.join(OsStr::from_bytes(&dir));
        let reading = match fs_err::read_dir(&dir_path) {
            Ok(reading) => reading,
            Err(source) if first => {
                return Err(ReadError::Root {
                    root: root.to_owned(),
                    source,
                });
            }
            Err(error) => {
                visit(WalkItem::Error { path: dir, error });
                continue;
            }
        };
        first = false;
        for item in reading {
            let dirent = match item {
                Ok(dirent) => dirent,
                Err(error) => {
                    visit(WalkItem::Error {
                        path: dir.clone(),
                        error,
                    });
                    continue;
                }
            };
            let mut path = dir.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(dirent.file_name().as_bytes());
            let full = dirent.path();
            let meta = match fs_err::symlink_metadata(&full) {
                Ok(meta) => meta,
                Err(error) => {
                    visit(WalkItem::Error { path, error });
                    continue;
                }
            };
            let entry = match entry_from_metadata(path.clone(), &full, &meta) {
                Ok(entry) => entry,
                Err(error) => {
                    visit(WalkItem::Error { path, error });
                    continue;
                }
            };
            // A directory on another device is a mount below the volume: not ours.
            if entry.kind == EntryKind::Dir && meta.dev() == device {
                stack.push(path);
            }
            visit(WalkItem::Entry(entry));
        }
    }
    Ok(())
}

fn entry_from_metadata(
    path: Vec<u8>,
    full: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<Entry> {
    let file_type = meta.file_type();
    let kind = if file_type.is_file() {
        EntryKind::File
    } else if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_symlink() {
        EntryKind::Symlink
    } else if file_type.is_block_device() {
        EntryKind::Block
    } else if file_type.is_char_device() {
        EntryKind::Char
    } else if file_type.is_fifo() {
        EntryKind::Fifo
    } else {
        EntryKind::Socket
    };
    let target = if kind == EntryKind::Symlink {
        Some(
            fs_err::read_link(full)?
                .into_os_string()
                .into_encoded_bytes(),
        )
    } else {
        None
    };
    let nanos = |secs: i64, nsec: i64| secs.checked_mul(1_000_000_000)?.checked_add(nsec);
    Ok(Entry {
        path,
        ino: meta.ino(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
        nlink: meta.nlink(),
        size: meta.size(),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        atime_ns: nanos(meta.atime(), meta.atime_nsec()),
        birth_ns: meta.created().ok().and_then(|t| {
            let since = t.duration_since(std::time::UNIX_EPOCH).ok()?;
            i64::try_from(since.as_nanos()).ok()
        }),
        target,
    })
}
