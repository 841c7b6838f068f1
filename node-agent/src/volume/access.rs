//! Attaching a medium's volumes: per volume the first access method that works (kernel mount,
//! FUSE driver, The Sleuth Kit), behind one [`VolumeReader`], under the medium's host lock.
//!
//! Rules: one owner per medium per host: a `flock` in the lock directory, taken (waiting) before
//! anything is attached or released, and the state rechecked under it, so eight processes
//! mounting one medium end with one mount and one loop device per volume. What is attached is
//! read back from the kernel, never from our records: a healthy mount at the volume's mount point
//! is reused; an overmount or a FUSE mount whose driver died is unmounted first; a loop device of
//! the volume that is not auto-clearing (a crash between `losetup` and the mount) is released.
//! Loop devices are handed to the kernel (auto-clear) as soon as a mount holds them, so they go
//! away with the mount. The kernel's `/proc/filesystems` decides whether a kernel mount is tried.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::attach::{self, AttachError, LoopDevice, MountGuard};
use super::fuse::FuseMount;
use super::host;
use super::probe::FsType;
use super::reader::VolumeReader;
use super::sweep;
use super::tsk::TskVolume;
use crate::lock::{HostLock, LockError};

mod plan;
mod release;

pub use plan::{Attempt, Method, plan};
pub use release::{Released, release_medium};

/// Host settings for attaching.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Mount points are `<mount_root>/<medium hash>/<volume number>`.
    pub mount_root: PathBuf,
    /// Host locks.
    pub lock_dir: PathBuf,
    /// Our image root: loop devices of deleted images under it are swept.
    pub data_dir: PathBuf,
    /// What this kernel mounts (from `/proc/filesystems`).
    pub kernel_filesystems: Vec<String>,
    /// Deadline of one mount.
    pub mount_timeout: Duration,
    /// How long to wait for another process working on the same medium.
    pub lock_timeout: Duration,
}

impl Settings {
    /// Settings with this host's kernel filesystem list.
    pub fn for_host(
        mount_root: PathBuf,
        lock_dir: PathBuf,
        data_dir: PathBuf,
    ) -> Result<Self, AccessError> {
        let text =
            fs_err::read_to_string("/proc/filesystems").map_err(|source| AccessError::Host {
                what: "read /proc/filesystems",
                source,
            })?;
        Ok(Self {
            mount_root,
            lock_dir,
            data_dir,
            kernel_filesystems: attach::kernel_filesystems(&text),
            mount_timeout: Duration::from_mins(1),
            lock_timeout: Duration::from_mins(10),
        })
    }

    /// The directory holding a medium's mount points.
    pub fn medium_dir(&self, hash: &str) -> PathBuf {
        self.mount_root.join(hash)
    }

    /// The mount point of a volume.
    pub fn mount_point(&self, hash: &str, volume_no: i32) -> PathBuf {
        self.medium_dir(hash).join(volume_no.to_string())
    }
}

/// Why a medium's volumes could not be attached or released at all (a single volume's failure
/// is a [`VolumeFailure`], not this).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The medium lock was not obtained.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Listing or changing host state failed.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// A host file could not be used.
    #[error("cannot {what}")]
    Host {
        /// What we tried.
        what: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Releasing left something attached.
    #[error("{what} is still attached after unmounting: {detail}")]
    StillAttached {
        /// The medium.
        what: String,
        /// What is left.
        detail: String,
    },
    /// A blocking task died.
    #[error("an attach task panicked")]
    Task(#[from] tokio::task::JoinError),
}

/// A volume to attach.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    /// Number within the medium.
    pub volume_no: i32,
    /// Byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Probed type.
    pub fs_type: FsType,
    /// The filesystem's deleted entries, read with The Sleuth Kit (nothing is mounted).
    pub deleted: bool,
}

enum Hold {
    Nothing,
    Kernel(MountGuard),
    Fuse(FuseMount),
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nothing => "Nothing",
            Self::Kernel(_) => "Kernel",
            Self::Fuse(_) => "Fuse",
        })
    }
}

/// A readable volume.
#[derive(Debug)]
pub struct AttachedVolume {
    /// Number within the medium.
    pub volume_no: i32,
    /// How it is read.
    pub method: Method,
    /// The type it is read as.
    pub fs_type: FsType,
    /// Where it is mounted (kernel and FUSE).
    pub mount_point: Option<PathBuf>,
    /// Whether it was already attached (by `ntt mount`) and is left as found.
    pub reused: bool,
    /// The reader.
    pub reader: VolumeReader,
    hold: Hold,
}

impl AttachedVolume {
    /// Whether this is a filesystem's deleted entries (read with The Sleuth Kit, nothing
    /// mounted).
    pub fn is_deleted_view(&self) -> bool {
        matches!(&self.reader, VolumeReader::SleuthKit(tsk) if tsk.is_deleted())
    }
}

/// A volume no method could read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeFailure {
    /// Number within the medium.
    pub volume_no: i32,
    /// Every attempt and why it failed.
    pub error: String,
}

/// The attached volumes of a medium, holding the medium's host lock until released.
#[derive(Debug)]
pub struct AttachedMedium {
    /// The volumes that can be read.
    pub volumes: Vec<AttachedVolume>,
    /// The volumes that cannot.
    pub failures: Vec<VolumeFailure>,
    lock: Option<HostLock>,
}

fn lock_name(hash: &str) -> String {
    format!("medium-{hash}.lock")
}

async fn take_lock(
    settings: &Settings,
    hash: &str,
    purpose: &'static str,
) -> Result<HostLock, AccessError> {
    let dir = settings.lock_dir.clone();
    let name = lock_name(hash);
    let what = format!("medium {hash}");
    let timeout = settings.lock_timeout;
    Ok(tokio::task::spawn_blocking(move || {
        HostLock::acquire_waiting(&dir, &name, &what, purpose, timeout)
    })
    .await??)
}

/// Attaches every volume in `specs` of the medium `hash` whose image is `image`. On `cancel`
/// the step under way finishes (a mount in the kernel cannot be abandoned), everything attached
/// so far is released, and the result is `None`.
pub async fn attach_medium(
    image: &Path,
    hash: &str,
    specs: &[VolumeSpec],
    settings: &Settings,
    cancel: &CancellationToken,
) -> Result<Option<AttachedMedium>, AccessError> {
    let lock = take_lock(settings, hash, "attaching volumes").await?;
    // Mounted media are reachable only through this root: nobody else's.
    crate::private_dir::ensure_private_dir(&settings.mount_root).map_err(|source| {
        AccessError::Host {
            what: "make the mount directory private",
            source,
        }
    })?;
    let (data_dir, lock_dir) = (settings.data_dir.clone(), settings.lock_dir.clone());
    tokio::task::spawn_blocking(move || {
        sweep::sweep_deleted_images(&data_dir)?;
        sweep::sweep_orphans(&data_dir, &lock_dir)
    })
    .await??;
    let mut medium = AttachedMedium {
        volumes: Vec::new(),
        failures: Vec::new(),
        lock: Some(lock),
    };
    for spec in specs {
        if cancel.is_cancelled() {
            medium.release()?;
            return Ok(None);
        }
        match attach_volume(image, hash, spec, settings, medium.lock.as_ref()).await {
            Ok(volume) => medium.volumes.push(volume),
            Err(error) => medium.failures.push(VolumeFailure {
                volume_no: spec.volume_no,
                error,
            }),
        }
    }
    if cancel.is_cancelled() {
        medium.release()?;
        return Ok(None);
    }
    Ok(Some(medium))
}

/// Brings the volume's mount point to a known state: overmounts and dead FUSE mounts removed,
/// non-auto-clearing loop devices of the volume released. Returns the healthy mount left, if any.
fn repair(
    image: &Path,
    spec: &VolumeSpec,
    target: &Path,
) -> Result<Option<host::MountEntry>, AttachError> {
    let stacked = host::mounts_on(&host::mounts()?, target);
    if stacked.len() > 1 || (stacked.len() == 1 && !host::answers(target)) {
        tracing::warn!(
            target = %target.display(),
            mounts = stacked.len(),
            "removing an overmount or a dead FUSE mount before attaching"
        );
        for _ in 0..16 {
            if host::mounts_on(&host::mounts()?, target).is_empty() {
                break;
            }
            let lazy = !host::answers(target);
            host::unmount(target, lazy)?;
        }
    }
    // A loop device of this volume that is not auto-clearing was attached by a run that died
    // before handing it to its mount. `losetup -d` detaches it if idle, or makes it auto-clear
    // if a mount still holds it: right in both cases.
    for device in host::loops_of(&host::loops()?, image) {
        if device.offset == spec.offset && !device.autoclear {
            tracing::warn!(loop.device = %device.name.display(), "releasing a loop device left by an interrupted attach");
            attach::detach(&device.name)?;
        }
    }
    let mut stacked = host::mounts_on(&host::mounts()?, target);
    Ok((stacked.len() == 1 && host::answers(target))
        .then(|| stacked.pop())
        .flatten())
}

async fn attach_volume(
    image: &Path,
    hash: &str,
    spec: &VolumeSpec,
    settings: &Settings,
    lock: Option<&HostLock>,
) -> Result<AttachedVolume, String> {
    if spec.deleted {
        let (image, offset, fs_type) = (image.to_owned(), spec.offset, spec.fs_type);
        let reader =
            tokio::task::spawn_blocking(move || TskVolume::open_deleted(&image, offset, fs_type))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("userspace {}: {e}", spec.fs_type.as_str()))?;
        return Ok(AttachedVolume {
            volume_no: spec.volume_no,
            method: Method::Userspace,
            fs_type: spec.fs_type,
            mount_point: None,
            reused: false,
            reader: VolumeReader::SleuthKit(reader),
            hold: Hold::Nothing,
        });
    }
    let target = settings.mount_point(hash, spec.volume_no);
    let repaired = {
        let (image, spec, point) = (image.to_owned(), spec.clone(), target.clone());
        tokio::task::spawn_blocking(move || repair(&image, &spec, &point))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot clean up {}: {e}", target.display()))?
    };
    if let Some(existing) = repaired {
        let method = if existing.is_fuse() {
            Method::Fuse
        } else {
            Method::Kernel
        };
        tracing::info!(volume = spec.volume_no, target = %target.display(), "reusing the existing mount");
        return Ok(AttachedVolume {
            volume_no: spec.volume_no,
            method,
            fs_type: spec.fs_type,
            mount_point: Some(target.clone()),
            reused: true,
            reader: VolumeReader::Mounted { root: target },
            hold: Hold::Nothing,
        });
    }
    let attempts = plan(spec.fs_type, &settings.kernel_filesystems);
    if attempts.is_empty() {
        return Err(format!(
            "no way to read {} on this host (no kernel driver, FUSE driver or Sleuth Kit reader)",
            spec.fs_type.as_str()
        ));
    }
    let mut errors = Vec::new();
    for attempt in attempts {
        match try_attempt(image, spec, &target, attempt, settings, lock).await {
            Ok(volume) => {
                if !errors.is_empty() {
                    tracing::info!(volume = spec.volume_no, method = attempt.method.as_str(), earlier = %errors.join("; "), "read with a fallback method");
                }
                return Ok(volume);
            }
            Err(error) => errors.push(format!(
                "{} {}: {error}",
                attempt.method.as_str(),
                attempt.fs_type.as_str()
            )),
        }
    }
    Err(errors.join("; "))
}

async fn try_attempt(
    image: &Path,
    spec: &VolumeSpec,
    target: &Path,
    attempt: Attempt,
    settings: &Settings,
    lock: Option<&HostLock>,
) -> Result<AttachedVolume, String> {
    let volume = |method, mount_point: Option<PathBuf>, reader, hold| AttachedVolume {
        volume_no: spec.volume_no,
        method,
        fs_type: attempt.fs_type,
        mount_point,
        reused: false,
        reader,
        hold,
    };
    match attempt.method {
        Method::Userspace => {
            let (image, offset, fs_type) = (image.to_owned(), spec.offset, attempt.fs_type);
            let reader = tokio::task::spawn_blocking(move || {
                TskVolume::open_volume(&image, offset, fs_type)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok(volume(
                Method::Userspace,
                None,
                VolumeReader::SleuthKit(reader),
                Hold::Nothing,
            ))
        }
        Method::Kernel => {
            let device =
                LoopDevice::attach(image, spec.offset, spec.length).map_err(|e| e.to_string())?;
            let guard = MountGuard::mount(
                device.path(),
                attempt.fs_type,
                target,
                &settings.kernel_filesystems,
                settings.mount_timeout,
                lock,
            )
            .await
            .map_err(|e| e.to_string())?;
            if let Err(error) = root_readable(target).await {
                let _ = guard.unmount();
                return Err(error);
            }
            device.autoclear().map_err(|e| e.to_string())?;
            Ok(volume(
                Method::Kernel,
                Some(target.to_owned()),
                VolumeReader::Mounted {
                    root: target.to_owned(),
                },
                Hold::Kernel(guard),
            ))
        }
        Method::Fuse => {
            let device =
                LoopDevice::attach(image, spec.offset, spec.length).map_err(|e| e.to_string())?;
            let (fs_type, path, target_owned, timeout) = (
                attempt.fs_type,
                device.path().to_owned(),
                target.to_owned(),
                settings.mount_timeout,
            );
            let log = target.with_extension("log");
            let mounted = tokio::task::spawn_blocking(move || {
                FuseMount::mount(fs_type, &path, &target_owned, &log, timeout)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            if let Err(error) = root_readable(target).await {
                let _ = mounted.unmount();
                return Err(error);
            }
            device.autoclear().map_err(|e| e.to_string())?;
            Ok(volume(
                Method::Fuse,
                Some(target.to_owned()),
                VolumeReader::Mounted {
                    root: target.to_owned(),
                },
                Hold::Fuse(mounted),
            ))
        }
    }
}

/// A mount counts only if its root directory can be listed: some drivers mount a filesystem
/// whose metadata is destroyed and fail on the first read.
async fn root_readable(target: &Path) -> Result<(), String> {
    let root = target.to_owned();
    tokio::task::spawn_blocking(move || fs_err::read_dir(&root).map(drop))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("mounted, but the root directory cannot be read: {e}"))
}

impl AttachedVolume {
    /// Unmounts what this run mounted (a reused mount is left in place).
    pub fn release(self) -> Result<(), AccessError> {
        match self.hold {
            Hold::Nothing => Ok(()),
            Hold::Kernel(guard) => Ok(guard.unmount()?),
            Hold::Fuse(mount) => mount.unmount().map_err(|e| {
                AccessError::Attach(AttachError::Unmount {
                    target: self.mount_point.unwrap_or_default(),
                    stderr: e.to_string(),
                })
            }),
        }
    }

    fn persist(self) {
        match self.hold {
            Hold::Nothing => {}
            Hold::Kernel(guard) => guard.persist(),
            Hold::Fuse(mount) => mount.persist(),
        }
    }
}

impl AttachedMedium {
    /// A medium with no volume to read (all blank, encrypted, members, ...): nothing attached,
    /// no lock held.
    pub fn nothing() -> Self {
        Self {
            volumes: Vec::new(),
            failures: Vec::new(),
            lock: None,
        }
    }

    /// A directory medium: its tree is read where it is, nothing is attached or locked.
    pub fn directory(root: PathBuf) -> Self {
        Self {
            volumes: vec![AttachedVolume {
                volume_no: 0,
                method: Method::Kernel,
                fs_type: FsType::Unknown,
                mount_point: Some(root.clone()),
                reused: true,
                reader: VolumeReader::Directory { root },
                hold: Hold::Nothing,
            }],
            failures: Vec::new(),
            lock: None,
        }
    }

    /// Releases everything this run attached and the medium lock; reports the first error after
    /// trying every volume.
    pub fn release(mut self) -> Result<(), AccessError> {
        let mut first = None;
        for volume in self.volumes.drain(..) {
            if let Err(error) = volume.release() {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "volume left attached"
                );
                first.get_or_insert(error);
            }
        }
        if let Some(lock) = self.lock.take() {
            lock.release()?;
        }
        first.map_or(Ok(()), Err)
    }

    /// Leaves every mount in place for later commands (`ntt mount`) and releases the lock.
    pub fn persist(mut self) -> Result<(), AccessError> {
        for volume in self.volumes.drain(..) {
            volume.persist();
        }
        if let Some(lock) = self.lock.take() {
            lock.release()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_per_medium_and_volume() {
        let settings = Settings {
            mount_root: PathBuf::from("/run/ntt/mnt"),
            lock_dir: PathBuf::from("/run/ntt/lock"),
            data_dir: PathBuf::from("/var/lib/ntt/images"),
            kernel_filesystems: Vec::new(),
            mount_timeout: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(1),
        };
        assert_eq!(
            settings.mount_point("abcd", 2),
            Path::new("/run/ntt/mnt/abcd/2")
        );
    }
}
