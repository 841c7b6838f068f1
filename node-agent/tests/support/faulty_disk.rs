//! A failing drive for tests: a FUSE file that serves an in-memory disk and returns EIO for
//! chosen byte ranges, attached read-only to a loop device so the pipeline sees a real block
//! device.
//!
//! The file is opened with `FOPEN_DIRECT_IO`, so every read the loop device makes reaches the
//! handler with its exact offset and length (no page cache in between): a bad range fails
//! exactly the reads that touch it. Flaky ranges fail the first N reads of each of their
//! sectors, then succeed. An optional delay per read makes a rescue slow enough to interrupt.
//!
//! `Drop` detaches the loop device this fixture attached (and only that one), then unmounts the
//! FUSE file and waits for its thread.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
    ReplyOpen, Request,
};

/// Sector size the fixture counts flaky reads in.
pub(crate) const SECTOR: u64 = 512;

/// What the simulated drive does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// Ranges that always fail.
    pub(crate) bad: Vec<Range<u64>>,
    /// Ranges whose sectors fail their first `n` reads, then read fine.
    pub(crate) flaky: Vec<(Range<u64>, u32)>,
    /// Sleep this long in every read at first (to make a rescue slow enough to interrupt).
    pub(crate) delay_per_read: Option<Duration>,
    /// Reads at or past this offset return no data (a drive whose reads end early).
    pub(crate) ends_early_at: Option<u64>,
    /// Reads that touch these ranges never return (a driver that stopped answering) until the
    /// disk is dropped or its FUSE connection is aborted.
    pub(crate) hang: Option<Range<u64>>,
    /// Listing the root directory never returns (a driver stuck on a crafted directory) until
    /// the disk is dropped or its FUSE connection is aborted.
    pub(crate) hang_listing: bool,
    /// Reads go through the page cache (the file can be memory-mapped, and a bad range then
    /// fails the page it is in) instead of direct I/O.
    pub(crate) cached: bool,
}

/// Deterministic disk content: every 512-byte sector is different, so misplaced data shows.
pub(crate) fn disk_content(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut data = vec![0_u8; size];
    for chunk in data.chunks_mut(8) {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let value = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
    data
}

struct Disk {
    data: Vec<u8>,
    faults: Faults,
    released: Arc<AtomicBool>,
    delay_nanos: Arc<AtomicU64>,
    reads_by_sector: Mutex<HashMap<u64, u32>>,
    reads: AtomicU64,
    failed_reads: AtomicU64,
}

const FILE_INO: INodeNo = INodeNo(2);
const FILE_NAME: &str = "disk";

impl Disk {
    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = match ino {
            INodeNo::ROOT => (FileType::Directory, 0o555, 0, 2),
            FILE_INO => (FileType::RegularFile, 0o444, self.data.len() as u64, 1),
            _ => return None,
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 512,
        })
    }

    fn read_fails(&self, range: &Range<u64>) -> bool {
        let overlaps = |r: &Range<u64>| r.start < range.end && range.start < r.end;
        if self.faults.bad.iter().any(overlaps) {
            return true;
        }
        let mut failed = false;
        let mut counts = self.reads_by_sector.lock().unwrap();
        for (flaky, failures) in &self.faults.flaky {
            if !overlaps(flaky) {
                continue;
            }
            let first = range.start.max(flaky.start) / SECTOR;
            let last = (range.end.min(flaky.end) - 1) / SECTOR;
            for sector in first..=last {
                let count = counts.entry(sector).or_insert(0);
                *count += 1;
                if *count <= *failures {
                    failed = true;
                }
            }
        }
        failed
    }
}

impl Filesystem for Disk {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match (parent, name.to_str()) {
            (INodeNo::ROOT, Some(FILE_NAME)) => {
                reply.entry(
                    &Duration::from_mins(1),
                    &self.attr(FILE_INO).unwrap(),
                    fuser::Generation(0),
                );
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&Duration::from_mins(1), &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == FILE_INO {
            // Direct I/O: no page cache, every read arrives here exactly as issued.
            let flags = if self.faults.cached {
                FopenFlags::empty()
            } else {
                FopenFlags::FOPEN_DIRECT_IO
            };
            reply.opened(FileHandle(0), flags);
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != FILE_INO {
            reply.error(Errno::ENOENT);
            return;
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let delay = self.delay_nanos.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_nanos(delay));
        }
        let len = self
            .faults
            .ends_early_at
            .unwrap_or(u64::MAX)
            .min(self.data.len() as u64);
        let start = offset.min(len);
        let end = (offset + u64::from(size)).min(len);
        if self
            .faults
            .hang
            .iter()
            .any(|r| r.start < end && start < r.end)
        {
            while !self.released.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
            reply.error(Errno::EIO);
            return;
        }
        if start < end && self.read_fails(&(start..end)) {
            self.failed_reads.fetch_add(1, Ordering::Relaxed);
            reply.error(Errno::EIO);
            return;
        }
        reply.data(&self.data[start as usize..end as usize]);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        if self.faults.hang_listing {
            while !self.released.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
            reply.error(Errno::EIO);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted faulty disk, optionally attached to a loop device.
pub(crate) struct FaultyDisk {
    dir: PathBuf,
    released: Arc<AtomicBool>,
    session: Option<BackgroundSession>,
    loop_device: Option<PathBuf>,
    delay_nanos: Arc<AtomicU64>,
}

impl FaultyDisk {
    /// Serves `content` with `faults` from a fresh FUSE mount.
    pub(crate) fn start(content: Vec<u8>, faults: Faults) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ntt-faulty-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let delay_nanos = Arc::new(AtomicU64::new(
            faults
                .delay_per_read
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap()),
        ));
        let released = Arc::new(AtomicBool::new(false));
        let disk = Disk {
            data: content,
            faults,
            released: released.clone(),
            delay_nanos: Arc::clone(&delay_nanos),
            reads_by_sector: Mutex::new(HashMap::new()),
            reads: AtomicU64::new(0),
            failed_reads: AtomicU64::new(0),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::RO,
            MountOption::FSName("ntt-faulty-disk".into()),
        ];
        let session = fuser::spawn_mount(disk, &dir, &config)
            .expect("mount the FUSE disk (is /dev/fuse there?)");
        Self {
            dir,
            released,
            session: Some(session),
            loop_device: None,
            delay_nanos,
        }
    }

    /// Changes the delay of every read from now on (`Duration::ZERO`: full speed).
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay_nanos
            .store(u64::try_from(delay.as_nanos()).unwrap(), Ordering::Relaxed);
    }

    /// The FUSE mount (a directory holding the file).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The FUSE file.
    pub(crate) fn file(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Attaches the file read-only to a new loop device and returns the device.
    pub(crate) fn attach(&mut self) -> PathBuf {
        self.attach_with_sector_size(512)
    }

    /// Attaches with a logical sector size (2048 makes it look like optical media).
    pub(crate) fn attach_with_sector_size(&mut self, sector_size: u32) -> PathBuf {
        assert!(self.loop_device.is_none(), "already attached");
        let output = Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--read-only",
                "--sector-size",
                &sector_size.to_string(),
            ])
            .arg(self.file())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let device = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        self.loop_device = Some(device.clone());
        device
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl FaultyDisk {
    /// Detaches the loop device (the drive is undocked); the FUSE file stays until dropped.
    pub(crate) fn detach(&mut self) {
        if let Some(device) = self.loop_device.take() {
            detach(&device);
        }
    }
}

impl Drop for FaultyDisk {
    /// Takes the disk down; when something still holds its file (a loop device a killed
    /// process left), it is unmounted lazily, so that no mount outlives the test.
    fn drop(&mut self) {
        self.released.store(true, Ordering::Release);
        if let Some(device) = self.loop_device.take() {
            detach(&device);
        }
        if let Some(session) = self.session.take()
            && session.umount_and_join().is_err()
        {
            let _ = Command::new("umount").arg("--lazy").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn detach(device: &Path) {
    for _ in 0..50 {
        let status = Command::new("losetup").arg("-d").arg(device).status();
        if status.is_ok_and(|s| s.success()) {
            return;
        }
        // The device is busy for a moment after its last reader exits.
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("warning: could not detach {}", device.display());
}
