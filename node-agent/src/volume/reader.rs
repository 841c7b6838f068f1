//! The one interface enumeration and copying use to read a volume, whichever way it is attached:
//! a directory tree (kernel or FUSE mount) or The Sleuth Kit reading the image directly.
//!
//! Rules: a walk never crosses into another filesystem (a mount below the volume root is not
//! part of the volume); paths are the exact bytes below the volume root; an entry or directory
//! that cannot be read is reported as a [`WalkItem::Error`] with its cause and the walk goes on.
//! This is the serial reference walk; enumeration parallelises over directories on top of it.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::beneath;
pub use super::entry::{Entry, EntryKind};
use super::tsk::{TskError, TskVolume};
use super::watchdog::{Clock, Target, Watchdog, Watched};

/// What a walk yields.
#[derive(Debug)]
pub enum WalkItem {
    /// An entry.
    Entry(Entry),
    /// An entry recorded as excluded: its content is not copied, for this reason.
    Excluded {
        /// The entry.
        entry: Entry,
        /// Why its content is not copied.
        reason: String,
    },
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
    /// What is at a file's path is not the file that was listed (a live directory source
    /// changed: a FIFO, a device, a directory or another file took its place).
    #[error("{path} changed since it was listed: {what}")]
    Changed {
        /// The path (lossy, for people).
        path: String,
        /// What is there now.
        what: String,
    },
    /// A call to the volume's filesystem stopped answering and was aborted.
    #[error(
        "reading {root} stopped answering for {}s and was aborted (a hung driver?)",
        timeout.as_secs()
    )]
    Stalled {
        /// The volume root.
        root: PathBuf,
        /// The read timeout.
        timeout: Duration,
    },
    /// The Sleuth Kit failed.
    #[error(transparent)]
    Tsk(#[from] TskError),
}

/// Most items handed over at once by [`VolumeReader::walk_batches`].
pub const BATCH: usize = 1024;

impl ReadError {
    /// The underlying OS error, for classification (The Sleuth Kit's failures have none).
    pub fn into_io(self) -> std::io::Error {
        match self {
            Self::Root { source, .. } | Self::Open { source, .. } => source,
            Self::Changed { .. } | Self::Stalled { .. } => std::io::Error::other(self.to_string()),
            Self::Tsk(error) => std::io::Error::other(error.to_string()),
        }
    }
}

/// A readable volume.
#[derive(Debug, Clone)]
pub enum VolumeReader {
    /// A mounted filesystem (kernel or FUSE) at this directory.
    Mounted {
        /// The mount point.
        root: PathBuf,
    },
    /// A live directory tree read where it is (a directory source): it can change between
    /// listing and copying, so a file opened is also checked to be the inode listed.
    Directory {
        /// The tree's root.
        root: PathBuf,
    },
    /// The Sleuth Kit reading the image directly.
    SleuthKit(TskVolume),
}

impl VolumeReader {
    /// Visits every entry below the root (the root itself excluded), one at a time. Blocking.
    pub fn walk(&self, visit: &mut (dyn FnMut(WalkItem) + Send)) -> Result<(), ReadError> {
        let visit = std::sync::Mutex::new(visit);
        self.walk_parallel(1, &|item| {
            let mut visit = visit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (*visit)(item);
        })
    }

    /// Visits every entry below the root with `threads` directory readers at once (a mounted
    /// volume; The Sleuth Kit lists in one stream). `visit` may block: that is the back pressure
    /// that keeps memory bounded. Blocking.
    pub fn walk_parallel(
        &self,
        threads: usize,
        visit: &(dyn Fn(WalkItem) + Sync),
    ) -> Result<(), ReadError> {
        self.walk_batches(threads, &|batch| batch.into_iter().for_each(visit))
    }

    /// Like [`VolumeReader::walk_parallel`], in batches of up to [`BATCH`] items (a directory's
    /// entries, or part of a big one): one hand-over per batch instead of per entry.
    pub fn walk_batches(
        &self,
        threads: usize,
        visit: &(dyn Fn(Vec<WalkItem>) + Sync),
    ) -> Result<(), ReadError> {
        self.walk_watched(threads, Duration::MAX, visit)
    }

    /// [`VolumeReader::walk_batches`] with a watchdog on a directory tree: a call to its
    /// filesystem that takes longer than `timeout` is aborted
    /// ([`crate::volume::watchdog`]), and the walk then fails as [`ReadError::Stalled`] (what
    /// it listed says nothing about the volume). The Sleuth Kit's listing is not watched.
    pub fn walk_watched(
        &self,
        threads: usize,
        timeout: Duration,
        visit: &(dyn Fn(Vec<WalkItem>) + Sync),
    ) -> Result<(), ReadError> {
        match self {
            Self::Mounted { root } | Self::Directory { root } => {
                let watchdog = std::sync::Arc::new(Watchdog::new(timeout));
                let watching = (timeout < Duration::MAX).then(|| watchdog.clone().watch());
                let walked = walk_tree(root, threads.max(1), visit, &watchdog);
                drop(watching);
                if watchdog.fired() {
                    return Err(ReadError::Stalled {
                        root: root.clone(),
                        timeout,
                    });
                }
                walked
            }
            Self::SleuthKit(volume) => {
                let watchdog = std::sync::Arc::new(Watchdog::new(timeout));
                let clock = watchdog.clock();
                let watching = (timeout < Duration::MAX).then(|| watchdog.clone().watch());
                let mut batch = Vec::with_capacity(BATCH);
                let streamed = volume.stream_watched(Some(&clock), &mut |item| {
                    batch.push(item);
                    if batch.len() == BATCH {
                        visit(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    }
                });
                drop(watching);
                if watchdog.fired() {
                    return Err(ReadError::Stalled {
                        root: volume.image().to_owned(),
                        timeout,
                    });
                }
                streamed?;
                if !batch.is_empty() {
                    visit(batch);
                }
                Ok(())
            }
        }
    }

    /// Opens a regular file's content for reading: by its path (exact bytes below the root) on
    /// a mounted volume or directory ([`open_beneath`]), by its inode number on The Sleuth
    /// Kit. Blocking.
    pub fn open(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + Send>, ReadError> {
        match self {
            Self::Mounted { root } => Ok(Box::new(open_beneath(root, path, None)?)),
            Self::Directory { root } => Ok(Box::new(open_beneath(root, path, Some(ino))?)),
            Self::SleuthKit(volume) => Ok(Box::new(volume.open(ino)?)),
        }
    }

    /// [`VolumeReader::open`] with every blocking call timed on `clock`, so that a watchdog
    /// can abort one that stalls: the open and the reads of a tree on its filesystem's FUSE
    /// connection, the reads of The Sleuth Kit on its `icat` process.
    pub fn open_watched(
        &self,
        path: &[u8],
        ino: u64,
        clock: &std::sync::Arc<Clock>,
    ) -> Result<Box<dyn Read + Send>, ReadError> {
        match self {
            Self::Mounted { root } | Self::Directory { root } => {
                clock.begin(Target::Tree(root.clone()));
                let opened = self.open(path, ino);
                clock.end();
                Ok(Box::new(Watched::new(opened?, clock.clone())))
            }
            Self::SleuthKit(volume) => {
                let reader = volume.open(ino)?;
                if let Some(pid) = reader.pid() {
                    clock.aim(Target::Process(pid));
                }
                Ok(Box::new(Watched::new(reader, clock.clone())))
            }
        }
    }

    /// The directory the volume is read from, unless The Sleuth Kit reads it.
    pub fn root(&self) -> Option<&Path> {
        match self {
            Self::Mounted { root } | Self::Directory { root } => Some(root),
            Self::SleuthKit(_) => None,
        }
    }
}

/// Opens the regular file at `path` below `root`: beneath the root without following any
/// symbolic link on the way (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: a name
/// from a medium is never a path out of it, even when a directory was swapped for a link),
/// non-blocking (a FIFO that took a file's place cannot hang the copy), without updating its
/// access time where the kernel allows (`O_NOATIME`); then checks that it is a regular file
/// and, with `ino`, the inode that was listed.
///
/// std's error, not `fs_err`'s: the copier classifies failures by their errno, which `fs_err`'s
/// wrapping hides; the path is in the error.
fn open_beneath(root: &Path, path: &[u8], ino: Option<u64>) -> Result<std::fs::File, ReadError> {
    use nix::fcntl::OFlag;
    let lossy = || String::from_utf8_lossy(path).into_owned();
    let dir = beneath::open_root(root).map_err(|errno| ReadError::Root {
        root: root.to_owned(),
        source: errno.into(),
    })?;
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_NOATIME;
    let fd = beneath::open(&dir, path, flags).map_err(|errno| ReadError::Open {
        path: lossy(),
        source: errno.into(),
    })?;
    let file = std::fs::File::from(fd);
    let metadata = file.metadata().map_err(|source| ReadError::Open {
        path: lossy(),
        source,
    })?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(ReadError::Changed {
            path: lossy(),
            what: format!("it is {what} now"),
        });
    }
    if let Some(listed) = ino
        && metadata.ino() != listed
    {
        return Err(ReadError::Changed {
            path: lossy(),
            what: format!(
                "it is inode {} now, listed as inode {listed}",
                metadata.ino()
            ),
        });
    }
    Ok(file)
}

/// Directories waiting to be read, how many readers are busy and how many wait for work.
struct Queue {
    pending: Vec<Vec<u8>>,
    busy: usize,
    waiting: usize,
}

/// Walks the tree below `root` with `threads` readers sharing a stack of directories.
///
/// Each reader gathers the items of the directories it reads into its own batch and hands it
/// over full ([`BATCH`] items) or when the walk ends, and a reader only wakes the others when
/// some of them wait: per directory (most hold a dozen entries) a hand-over and a wake-up cost
/// more than reading it (measured: 49 000 futex calls for 18 000 directories).
#[expect(
    clippy::disallowed_methods,
    reason = "std::fs keeps the OS error (errno) that entry errors record; the path is recorded beside it"
)]
fn walk_tree(
    root: &Path,
    threads: usize,
    visit: &(dyn Fn(Vec<WalkItem>) + Sync),
    watchdog: &Watchdog,
) -> Result<(), ReadError> {
    let first = watchdog.clock();
    first.begin(Target::Tree(root.to_owned()));
    let root_meta = std::fs::symlink_metadata(root).map_err(|source| ReadError::Root {
        root: root.to_owned(),
        source,
    });
    let listed = std::fs::read_dir(root).map_err(|source| ReadError::Root {
        root: root.to_owned(),
        source,
    });
    let root_fd = beneath::open_root(root).map_err(|errno| ReadError::Root {
        root: root.to_owned(),
        source: errno.into(),
    });
    first.end();
    let root_meta = root_meta?;
    listed?;
    let root_fd = root_fd?;
    let device = root_meta.dev();
    // A stack, so the walk goes depth first and the pending list stays short.
    let queue = std::sync::Mutex::new(Queue {
        pending: vec![Vec::new()],
        busy: 0,
        waiting: 0,
    });
    let ready = std::sync::Condvar::new();
    let worker = || {
        let clock = watchdog.clock();
        clock.aim(Target::Tree(root.to_owned()));
        let mut batch = Vec::with_capacity(BATCH);
        let mut found = Vec::new();
        let mut reading = false;
        loop {
            let dir = {
                let mut state = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if reading {
                    state.pending.append(&mut found);
                    state.busy -= 1;
                    if state.waiting > 0 && (!state.pending.is_empty() || state.busy == 0) {
                        ready.notify_all();
                    }
                }
                loop {
                    if let Some(dir) = state.pending.pop() {
                        state.busy += 1;
                        break Some(dir);
                    }
                    if state.busy == 0 {
                        break None;
                    }
                    state.waiting += 1;
                    state = ready
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    state.waiting -= 1;
                }
            };
            let Some(dir) = dir else {
                break;
            };
            read_one_dir(
                &root_fd,
                &dir,
                device,
                (&mut batch, &mut found),
                visit,
                &clock,
            );
            // Whichever way it returned, nothing is in flight now.
            clock.end();
            reading = true;
        }
        if !batch.is_empty() {
            visit(batch);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    Ok(())
}

/// Reads one directory: adds its entries to `batch` (handing it to `visit` whenever it is full)
/// and its subdirectories on the same device to `subdirs`.
#[expect(
    clippy::disallowed_methods,
    reason = "std::fs keeps the OS error (errno) that entry errors record; the path is recorded beside it"
)]
fn read_one_dir(
    root_fd: &std::os::fd::OwnedFd,
    dir: &[u8],
    device: u64,
    (batch, subdirs): (&mut Vec<WalkItem>, &mut Vec<Vec<u8>>),
    visit: &(dyn Fn(Vec<WalkItem>) + Sync),
    clock: &Clock,
) {
    // The clock runs while the filesystem is asked (every call restarts it) and stops while
    // a batch waits for the loader: back pressure is not a stall.
    clock.resume();
    let mut emit = |item: WalkItem| {
        batch.push(item);
        if batch.len() == BATCH {
            clock.end();
            visit(std::mem::replace(batch, Vec::with_capacity(BATCH)));
        }
        clock.resume();
    };
    // Opened below the root without following a link (a directory of a live tree swapped for
    // a link to elsewhere is an error, not a walk out of the tree), at any depth, then read
    // through its descriptor; `handle` stays open while the entries are read, since their
    // paths (for `read_link`) go through it.
    let handle = match beneath::open(
        root_fd,
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
    ) {
        Ok(handle) => handle,
        Err(errno) => {
            emit(WalkItem::Error {
                path: dir.to_vec(),
                error: errno.into(),
            });
            return;
        }
    };
    let reading = match std::fs::read_dir(beneath::proc_path(&handle)) {
        Ok(reading) => reading,
        Err(error) => {
            emit(WalkItem::Error {
                path: dir.to_vec(),
                error,
            });
            return;
        }
    };
    for item in reading {
        let dirent = match item {
            Ok(dirent) => dirent,
            Err(error) => {
                emit(WalkItem::Error {
                    path: dir.to_vec(),
                    error,
                });
                continue;
            }
        };
        let name = dirent.file_name();
        let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
        path.extend_from_slice(dir);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        // Relative to the open directory (fstatat), not a lookup of the whole path again.
        let meta = match dirent.metadata() {
            Ok(meta) => meta,
            Err(error) => {
                emit(WalkItem::Error { path, error });
                continue;
            }
        };
        let target = if meta.file_type().is_symlink() {
            match std::fs::read_link(dirent.path()) {
                Ok(target) => Some(target.into_os_string().into_encoded_bytes()),
                Err(error) => {
                    emit(WalkItem::Error { path, error });
                    continue;
                }
            }
        } else {
            None
        };
        // A directory on another device is a mount below the volume: not ours.
        if meta.is_dir() && meta.dev() == device {
            subdirs.push(path.clone());
        }
        emit(WalkItem::Entry(entry_from_metadata(path, &meta, target)));
    }
}

fn entry_from_metadata(path: Vec<u8>, meta: &std::fs::Metadata, target: Option<Vec<u8>>) -> Entry {
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
    let nanos = |secs: i64, nsec: i64| secs.checked_mul(1_000_000_000)?.checked_add(nsec);
    Entry {
        path,
        ino: meta.ino(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
        nlink: meta.nlink(),
        size: meta.size(),
        rdev: matches!(kind, EntryKind::Block | EntryKind::Char).then(|| meta.rdev()),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        atime_ns: nanos(meta.atime(), meta.atime_nsec()),
        birth_ns: meta.created().ok().and_then(|t| {
            let since = t.duration_since(std::time::UNIX_EPOCH).ok()?;
            i64::try_from(since.as_nanos()).ok()
        }),
        target,
    }
}
