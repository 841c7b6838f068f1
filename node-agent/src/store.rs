//! The content-addressed store: every distinct content once, named by its BLAKE3-256 digest.
//!
//! ```text
//!   open(<root>/tmp, O_TMPFILE)           an anonymous file, written while hashed (one read)
//!   syncfs(root)                          the batch's data is durable
//!        └─ linkat ─▶ <root>/ab/cd/abcd…   (never replaces: EEXIST means the blob is there)
//!   syncfs(root)                          the links are durable; then the catalog commit
//! ```
//!
//! Rules: a blob appears under its final name only complete and durable (a link, made after a
//! `syncfs`, of a finished temp file), so a crash at any instant leaves no partial blob there;
//! one `syncfs` per batch instead of an fsync per file (200 000 fsyncs cost more than the copy);
//! an existing blob is never written again; blobs are read-only (0444); the directory entries
//! are made durable (`syncfs`) before the catalog records the blobs. A blob linked by a batch
//! whose commit never happened is adopted by the next copy of the same content (its link finds
//! it there).
//!
//! Temp files are anonymous (`O_TMPFILE`): they have no name to create, remove or sweep, a
//! crash leaves nothing behind, and writers do not contend for the lock of one temp directory
//! (measured: with named temp files, creating and unlinking them in `tmp/` took a quarter of
//! the copy's CPU). On a filesystem without `O_TMPFILE` (some network filesystems) the store
//! falls back to named temp files `tmp/<host>-<pid>-<n>.partial`, and those left by dead writers
//! on this host are removed at start-up.

use fs_err::File;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ntt_crds::BlobId;

/// How many bytes of each blob are kept to detect its content type.
const HEAD: usize = 8192;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's filesystem is full (or over quota).
    #[error("the store at {root} is full")]
    Full {
        /// The store root.
        root: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure in the store.
    #[error("cannot {what} {path}")]
    Io {
        /// What we tried.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store ran out of space.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }
}

/// A store root.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    root_dir: File,
    /// Cleared once the filesystem refused `O_TMPFILE`.
    anonymous: AtomicBool,
    /// The first `syncfs` failure, once there was one; held while a sync runs, so syncs of
    /// the workers sharing this store never overlap.
    sync_failed: std::sync::Mutex<Option<String>>,
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the store at `root`, which must exist (`ntt init` makes it; see
    /// [`crate::roots`]).
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let tmp = root.join("tmp");
        crate::private_dir::restrict(root)
            .and_then(|()| fs_err::create_dir_all(&tmp))
            .map_err(|source| StoreError::Io {
                what: "create the store directory",
                path: tmp.clone(),
                source,
            })?;
        let root_dir = File::open(root).map_err(|source| StoreError::Io {
            what: "open the store root",
            path: root.to_owned(),
            source,
        })?;
        Ok(Self {
            root: root.to_owned(),
            tmp,
            root_dir,
            anonymous: AtomicBool::new(true),
            sync_failed: std::sync::Mutex::new(None),
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `id` lives.
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    /// Whether the blob is in the store.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blob_path(id).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, id: &BlobId) -> Result<fs_err::File, StoreError> {
        let path = self.blob_path(id);
        fs_err::File::open(&path).map_err(|source| StoreError::Io {
            what: "open the blob",
            path,
            source,
        })
    }

    /// A new temp file to write a blob into: anonymous where the filesystem can, else named.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        if self.anonymous.load(Ordering::Relaxed) {
            match fs_err::OpenOptions::new()
                .write(true)
                .mode(0o440)
                .custom_flags(nix::libc::O_TMPFILE)
                .open(&self.tmp)
            {
                Ok(file) => return Ok(BlobWriter::new(file, Temp::Anonymous)),
                // EOPNOTSUPP: the filesystem has no O_TMPFILE; EISDIR: the kernel predates it.
                Err(error)
                    if matches!(
                        error.raw_os_error(),
                        Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR)
                    ) =>
                {
                    tracing::info!(store = %self.root.display(), "the store's filesystem has no O_TMPFILE: using named temp files");
                    self.anonymous.store(false, Ordering::Relaxed);
                }
                Err(source) => {
                    return Err(self.classify("create a temp file in", &self.tmp, source));
                }
            }
        }
        let name = format!(
            "{}-{}-{}.partial",
            crate::host_name(),
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.tmp.join(name);
        let file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o440)
            .open(&path)
            .map_err(|source| self.classify("create a temp file", &path, source))?;
        Ok(BlobWriter::new(file, Temp::Named(path)))
    }

    fn classify(&self, what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        match source.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StoreError::Full {
                    root: self.root.clone(),
                    source,
                }
            }
            _ => StoreError::Io {
                what,
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Makes every link and directory entry made so far durable (`syncfs` of the store's
    /// filesystem): call once per batch, before the catalog commit.
    ///
    /// A writeback error is reported by `syncfs` once per open file description, so of the
    /// workers sharing this store's root only the first to sync after it would hear of it, and
    /// another could link blobs whose data never reached the disk. So the first failure poisons
    /// the store: every later sync through it fails too (the run stops, its files stay pending,
    /// and a new run, with a store opened anew, copies them again), and syncs never overlap.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut failed = self
            .sync_failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = nix::unistd::syncfs(&self.root_dir);
        self.after_sync(&mut failed, result)
    }

    /// The outcome of a sync given what `failed` says of earlier ones.
    fn after_sync(
        &self,
        failed: &mut Option<String>,
        result: nix::Result<()>,
    ) -> Result<(), StoreError> {
        if let Err(errno) = result {
            let error = std::io::Error::from(errno);
            failed.get_or_insert_with(|| error.to_string());
            return Err(self.classify("sync", &self.root, error));
        }
        match failed {
            Some(first) => Err(StoreError::Io {
                what: "trust a sync of",
                path: self.root.clone(),
                source: std::io::Error::other(format!(
                    "an earlier sync of the store failed ({first}): data written since may not be on disk"
                )),
            }),
            None => Ok(()),
        }
    }

    /// Removes temp files that writers on this host left when they died (their pid is gone).
    /// Temp files of other hosts sharing the store are theirs to clean. Returns how many went.
    pub fn remove_stale_temp(&self) -> Result<u64, StoreError> {
        let host = crate::host_name();
        let entries = fs_err::read_dir(&self.tmp).map_err(|source| StoreError::Io {
            what: "list",
            path: self.tmp.clone(),
            source,
        })?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&host).and_then(|r| r.strip_prefix('-')) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if !alive && fs_err::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Where a blob's bytes wait until they are durable and linked.
#[derive(Debug)]
enum Temp {
    /// An `O_TMPFILE` file: no name; it vanishes with its last descriptor.
    Anonymous,
    /// A named temp file, removed when done with.
    Named(PathBuf),
}

impl Temp {
    fn describe(&self, store: &Store) -> PathBuf {
        match self {
            Self::Anonymous => store.tmp.join("(anonymous)"),
            Self::Named(path) => path.clone(),
        }
    }

    fn remove(&mut self) {
        if let Self::Named(path) = std::mem::replace(self, Self::Anonymous) {
            let _ = fs_err::remove_file(path);
        }
    }
}

/// A blob being written: hashed and written in one pass over the source.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    temp: Temp,
    hasher: blake3::Hasher,
    size: u64,
    head: Vec<u8>,
}

/// Why copying into the store failed: reading the source or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source could not be read.
    #[error("reading the source failed")]
    Source(#[source] std::io::Error),
    /// The store could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BlobWriter {
    fn new(file: File, temp: Temp) -> Self {
        Self {
            file: Some(file),
            temp,
            hasher: blake3::Hasher::new(),
            size: 0,
            head: Vec::with_capacity(HEAD),
        }
    }

    /// Copies everything `source` yields into the blob; returns the bytes copied.
    pub fn copy_from(
        &mut self,
        store: &Store,
        source: &mut dyn Read,
        buffer: &mut [u8],
    ) -> Result<u64, CopyError> {
        let mut copied = 0;
        loop {
            let n = match source.read(buffer) {
                Ok(0) => return Ok(copied),
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(CopyError::Source(error)),
            };
            let chunk = &buffer[..n];
            self.hasher.update(chunk);
            if self.head.len() < HEAD {
                let take = (HEAD - self.head.len()).min(n);
                self.head.extend_from_slice(&chunk[..take]);
            }
            if let Some(file) = self.file.as_mut() {
                file.write_all(chunk).map_err(|source| {
                    store.classify("write", &self.temp.describe(store), source)
                })?;
            }
            self.size += n as u64;
            copied += n as u64;
        }
    }

    /// Names the content; the blob is not in the store until [`Store::sync`] made the data
    /// durable and [`StagedBlob::publish`] linked it.
    pub fn finish(mut self, store: &Store) -> Result<StagedBlob, StoreError> {
        let Some(file) = self.file.take() else {
            return Err(StoreError::Io {
                what: "finish",
                path: self.temp.describe(store),
                source: std::io::Error::other("blob writer already finished"),
            });
        };
        let id = BlobId::from_bytes(*self.hasher.finalize().as_bytes());
        // Content the store has already: the temp file goes now, before any sync, so its data
        // never has to reach the disk (the dirty pages of a file without a name are dropped).
        // A blob under its final name had its data synced before it was linked; the caller's
        // sync before its commit makes that link durable if its batch has not yet.
        let file = if store.contains(&id) {
            drop(file);
            self.temp.remove();
            None
        } else {
            Some(file)
        };
        Ok(StagedBlob {
            id,
            size: self.size,
            mime: content_type(&self.head),
            file,
            temp: std::mem::replace(&mut self.temp, Temp::Anonymous),
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.temp.remove();
    }
}

/// A finished blob in a temp file, named by its digest but not yet in the store. It holds
/// the temp file open (an anonymous one lives only as long as its descriptor).
#[derive(Debug)]
pub struct StagedBlob {
    /// Its digest.
    pub id: BlobId,
    /// Its size.
    pub size: u64,
    /// Its content type, detected from its first bytes.
    pub mime: String,
    file: Option<File>,
    temp: Temp,
}

/// Whether publishing added the blob or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The store did not have it.
    New,
    /// The store had it already (deduplicated, or adopted from an interrupted batch).
    Existed,
}

impl StagedBlob {
    /// Links the blob into its place, never replacing one that is there. Call after
    /// [`Store::sync`], so the name never points at data that is not on disk.
    pub fn publish(mut self, store: &Store) -> Result<Published, StoreError> {
        let Some(file) = self.file.take() else {
            return Ok(Published::Existed);
        };
        let target = store.blob_path(&self.id);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)
                .map_err(|source| store.classify("create", parent, source))?;
        }
        let linked = match &self.temp {
            // linkat(2) of /proc/self/fd/N with AT_SYMLINK_FOLLOW: links the open anonymous
            // file without CAP_DAC_READ_SEARCH (which AT_EMPTY_PATH would need).
            Temp::Anonymous => nix::unistd::linkat(
                nix::fcntl::AT_FDCWD,
                Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())),
                nix::fcntl::AT_FDCWD,
                &target,
                nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(std::io::Error::from),
            Temp::Named(path) => fs_err::hard_link(path, &target),
        };
        drop(file);
        self.temp.remove();
        match linked {
            Ok(()) => Ok(Published::New),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(Published::Existed)
            }
            Err(source) => Err(store.classify("link", &target, source)),
        }
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        self.temp.remove();
    }
}

/// The content type of a blob whose first bytes are `head`.
pub fn content_type(head: &[u8]) -> String {
    if head.is_empty() {
        return "application/x-empty".to_owned();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    // Text if it decodes (allowing a character cut at the end of the sample) and has no NUL.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(error) => error.error_len().is_none() && error.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_sync_poisons_every_later_one() {
        let dir = scratch("poison");
        let store = Store::open(&dir).unwrap();
        store.sync().unwrap();
        let mut failed = store.sync_failed.lock().unwrap();
        let first = store
            .after_sync(&mut failed, Err(nix::errno::Errno::EIO))
            .unwrap_err();
        assert!(first.to_string().contains("sync"), "{first}");
        drop(failed);
        // The kernel would report the writeback error to one worker only: the next sync
        // succeeds at the syscall, and the store still refuses it.
        let later = store.sync().unwrap_err();
        let chain = format!("{later}: {}", std::error::Error::source(&later).unwrap());
        assert!(
            chain.contains("an earlier sync of the store failed"),
            "{chain}"
        );
        fs_err::remove_dir_all(&dir).unwrap();
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ntt-store-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        dir
    }

    struct Put {
        id: BlobId,
        size: u64,
    }

    fn put(store: &Store, bytes: &[u8]) -> (Put, Published) {
        let mut writer = store.writer().unwrap();
        let mut buffer = vec![0; 7];
        writer
            .copy_from(store, &mut &bytes[..], &mut buffer)
            .unwrap();
        let staged = writer.finish(store).unwrap();
        let (id, size) = (staged.id, staged.size);
        store.sync().unwrap();
        let published = staged.publish(store).unwrap();
        (Put { id, size }, published)
    }

    fn blob_is_named_by_its_digest_stored_once_and_read_only(store: &Store, root: &Path) {
        let (blob, first) = put(store, b"the same bytes");
        let (again, second) = put(store, b"the same bytes");
        assert_eq!((first, second), (Published::New, Published::Existed));
        assert_eq!(blob.id, again.id);
        assert_eq!(
            blob.id.as_bytes(),
            blake3::hash(b"the same bytes").as_bytes()
        );
        let path = store.blob_path(&blob.id);
        let hex = blob.id.to_hex();
        assert!(path.ends_with(format!("{}/{}/{hex}", &hex[..2], &hex[2..4])));
        assert_eq!(fs_err::read(&path).unwrap(), b"the same bytes");
        assert_eq!(
            fs_err::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o440
        );
        assert_eq!(
            fs_err::metadata(&path).unwrap().nlink(),
            1,
            "the temp file left no second name"
        );
        assert_eq!(
            fs_err::read_dir(root.join("tmp")).unwrap().count(),
            0,
            "no temp file is left"
        );
        // Content the store has is not staged: its temp file is gone once it is named.
        let mut writer = store.writer().unwrap();
        writer
            .copy_from(store, &mut &b"the same bytes"[..], &mut [0; 7])
            .unwrap();
        let staged = writer.finish(store).unwrap();
        assert!(staged.file.is_none(), "nothing left to sync or link");
        assert_eq!(fs_err::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert_eq!(staged.publish(store).unwrap(), Published::Existed);
        let (empty, _) = put(store, b"");
        assert_eq!(empty.size, 0);
        assert!(store.contains(&empty.id), "an empty file is a normal blob");
    }

    #[test]
    fn a_blob_is_named_by_its_digest_stored_once_and_read_only() {
        let root = scratch("once");
        let missing = Store::open(&root.join("absent")).unwrap_err();
        assert!(
            !root.join("absent").exists(),
            "a missing store is never created: {missing}"
        );
        let store = Store::open(&root).unwrap();
        blob_is_named_by_its_digest_stored_once_and_read_only(&store, &root);
        assert!(
            store.anonymous.load(Ordering::Relaxed),
            "the test filesystem has O_TMPFILE, so the anonymous path was the one tested"
        );
        fs_err::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn named_temp_files_where_the_filesystem_has_no_tmpfile() {
        let root = scratch("named");
        let store = Store::open(&root).unwrap();
        store.anonymous.store(false, Ordering::Relaxed);
        blob_is_named_by_its_digest_stored_once_and_read_only(&store, &root);
        fs_err::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_abandoned_writer_or_staged_blob_leaves_nothing() {
        let root = scratch("abandon");
        let store = Store::open(&root).unwrap();
        for anonymous in [true, false] {
            store.anonymous.store(anonymous, Ordering::Relaxed);
            let mut writer = store.writer().unwrap();
            let mut buffer = vec![0; 4];
            writer
                .copy_from(&store, &mut &b"partial"[..], &mut buffer)
                .unwrap();
            drop(writer);
            let mut writer = store.writer().unwrap();
            writer
                .copy_from(&store, &mut &b"staged, never linked"[..], &mut buffer)
                .unwrap();
            let staged = writer.finish(&store).unwrap();
            let id = staged.id;
            drop(staged);
            assert!(!store.contains(&id), "anonymous: {anonymous}");
            assert_eq!(
                fs_err::read_dir(root.join("tmp")).unwrap().count(),
                0,
                "anonymous: {anonymous}"
            );
        }
        // A temp file of a dead writer on this host is swept; a live one's is kept.
        let dead =
            root.join("tmp")
                .join(format!("{}-{}-0.partial", crate::host_name(), i32::MAX - 1));
        fs_err::write(&dead, b"x").unwrap();
        let live = store.writer().unwrap();
        assert_eq!(store.remove_stale_temp().unwrap(), 1);
        assert!(!dead.exists());
        let Temp::Named(live_path) = &live.temp else {
            panic!("the store was switched to named temp files");
        };
        assert!(live_path.exists());
        drop(live);
        fs_err::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn content_types_come_from_the_first_bytes() {
        assert_eq!(content_type(b""), "application/x-empty");
        assert_eq!(content_type(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(content_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(content_type("plain text, café".as_bytes()), "text/plain");
        assert_eq!(
            content_type(b"\x00\x01\x02\x03binary"),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(b"caf\xc3"),
            "text/plain",
            "a character cut at the end"
        );
    }
}
