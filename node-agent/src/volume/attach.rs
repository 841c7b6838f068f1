//! Attaching a volume read-only: a loop device over its byte range, and a kernel mount with the
//! options that keep an untrusted filesystem from being written or trusted.
//!
//! Rules: loop devices are always read-only (`losetup --read-only`), so even a filesystem driver
//! that wants to replay a journal cannot write the evidence; mounts always carry
//! `ro,nodev,nosuid,noexec,noatime` plus the per-type options that skip journal/log replay
//! (ext3/4 `noload`, xfs `norecovery`, btrfs `rescue=nologreplay`). `mount` runs as a child
//! process with a deadline, because a mount of a corrupt filesystem can hang in the kernel and
//! a hung syscall in our own process could never be abandoned. Guards release on `Drop` as a
//! logged backstop; the happy path calls `detach`/`unmount`, which report errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::probe::FsType;

/// Options every mount of evidence carries.
pub const BASE_OPTIONS: &str = "ro,nodev,nosuid,noexec,noatime";

pub use super::host::AttachError;

/// The kernel filesystem type and mount options for a probed type (pure); `None` for types no
/// kernel driver reads (APFS, swap, unknown).
pub fn kernel_mount(fs_type: FsType) -> Option<(&'static str, String)> {
    let (kernel, extra) = match fs_type {
        FsType::Ext2 => ("ext2", ""),
        // Never replay the journal: the device is read-only, and replay would change the image.
        FsType::Ext3 => ("ext3", ",noload"),
        FsType::Ext4 => ("ext4", ",noload"),
        FsType::Xfs => ("xfs", ",norecovery"),
        FsType::Btrfs => ("btrfs", ",rescue=nologreplay"),
        FsType::Fat12 | FsType::Fat16 | FsType::Fat32 => ("vfat", ""),
        FsType::Exfat => ("exfat", ""),
        FsType::Ntfs => ("ntfs3", ""),
        FsType::Hfs => ("hfs", ""),
        FsType::Hfsplus => ("hfsplus", ""),
        FsType::Iso9660 => ("iso9660", ""),
        FsType::Udf => ("udf", ""),
        FsType::Squashfs => ("squashfs", ""),
        FsType::Erofs => ("erofs", ""),
        FsType::Apfs | FsType::Swap | FsType::Unknown => return None,
    };
    Some((kernel, format!("{BASE_OPTIONS}{extra}")))
}

/// The filesystem types this kernel can mount, from the text of `/proc/filesystems` (pure).
pub fn kernel_filesystems(proc_filesystems: &str) -> Vec<String> {
    proc_filesystems
        .lines()
        .filter(|line| !line.starts_with("nodev"))
        .filter_map(|line| line.split_whitespace().last())
        .map(str::to_owned)
        .collect()
}

/// A read-only loop device over a byte range of an image, detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    device: PathBuf,
    attached: bool,
}

impl LoopDevice {
    /// Attaches `length` bytes of `image` from `offset`, read-only, to a free loop device.
    pub fn attach(image: &Path, offset: u64, length: u64) -> Result<Self, AttachError> {
        let output = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .args([
                "--offset",
                &offset.to_string(),
                "--sizelimit",
                &length.to_string(),
            ])
            .arg(image)
            .output()
            .map_err(|source| AttachError::Spawn {
                tool: "losetup",
                source,
            })?;
        if !output.status.success() {
            return Err(AttachError::Attach {
                image: image.to_owned(),
                offset,
                length,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let device = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        Ok(Self {
            device,
            attached: true,
        })
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.device
    }

    /// Hands the device to the kernel once a mount or FUSE driver holds it open: `losetup -d`
    /// on a busy loop device marks it auto-clearing, so it disappears by itself when its last
    /// user (the mount, the driver) goes, and a crash can never leave it behind.
    pub fn autoclear(self) -> Result<(), AttachError> {
        self.detach()
    }

    /// Detaches it now, reporting failure.
    pub fn detach(mut self) -> Result<(), AttachError> {
        self.attached = false;
        detach(&self.device)
    }
}

/// Detaches a loop device (`losetup -d`).
pub(crate) fn detach(device: &Path) -> Result<(), AttachError> {
    super::host::run_tool("losetup", Command::new("losetup").arg("-d").arg(device))?
        .map(drop)
        .map_err(|stderr| AttachError::Detach {
            device: device.to_owned(),
            stderr,
        })
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if self.attached
            && let Err(error) = detach(&self.device)
        {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "loop device left attached"
            );
        }
    }
}

/// A kernel mount, unmounted on drop.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    /// Mounts `device` (a probed `fs_type`) read-only on `target`, giving up after `timeout`.
    pub async fn mount(
        device: &Path,
        fs_type: FsType,
        target: &Path,
        available: &[String],
        timeout: Duration,
        lock: Option<&crate::lock::HostLock>,
    ) -> Result<Self, AttachError> {
        let Some((kernel_type, options)) = kernel_mount(fs_type) else {
            return Err(AttachError::NoKernelDriver {
                fs_type: fs_type.as_str(),
            });
        };
        if !available.iter().any(|t| t == kernel_type) {
            return Err(AttachError::NoKernelDriver {
                fs_type: kernel_type,
            });
        }
        fs_err::create_dir_all(target).map_err(|source| AttachError::MountPoint {
            path: target.to_owned(),
            source,
        })?;
        let mut command = tokio::process::Command::new("mount");
        command
            .args(["-t", kernel_type, "-o", &options])
            .arg(device)
            .arg(target);
        if let Some(lock) = lock {
            // If we are killed while mount runs, it goes on; holding the medium lock makes
            // the next owner wait for it rather than mount a second time beside it.
            lock.share_with(&mut command);
        }
        let child = command.output();
        // On timeout the mount process is left to finish or hang on its own: a mount stuck in
        // the kernel cannot be killed, and we must not pretend it is gone.
        let output = tokio::time::timeout(timeout, child)
            .await
            .map_err(|_| AttachError::MountTimeout {
                device: device.to_owned(),
                target: target.to_owned(),
                timeout,
            })?
            .map_err(|source| AttachError::Spawn {
                tool: "mount",
                source,
            })?;
        if !output.status.success() {
            return Err(AttachError::Mount {
                device: device.to_owned(),
                fs_type: kernel_type.to_owned(),
                target: target.to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(Self {
            target: target.to_owned(),
            mounted: true,
        })
    }

    /// The mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Leaves the mount in place (for `ntt mount`); `ntt unmount` finds it again through
    /// `/proc/self/mountinfo`.
    pub fn persist(mut self) {
        self.mounted = false;
    }

    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> Result<(), AttachError> {
        self.mounted = false;
        unmount(&self.target)
    }
}

fn unmount(target: &Path) -> Result<(), AttachError> {
    super::host::unmount(target, false)
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted
            && let Err(error) = unmount(&self.target)
        {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "mount left in place"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_and_logs_are_never_replayed() {
        assert_eq!(
            kernel_mount(FsType::Ext4).unwrap(),
            ("ext4", format!("{BASE_OPTIONS},noload"))
        );
        assert_eq!(
            kernel_mount(FsType::Ext3).unwrap().1,
            format!("{BASE_OPTIONS},noload")
        );
        assert_eq!(
            kernel_mount(FsType::Xfs).unwrap().1,
            format!("{BASE_OPTIONS},norecovery")
        );
        assert_eq!(
            kernel_mount(FsType::Btrfs).unwrap().1,
            format!("{BASE_OPTIONS},rescue=nologreplay")
        );
        assert_eq!(kernel_mount(FsType::Fat16).unwrap().0, "vfat");
        assert_eq!(kernel_mount(FsType::Swap), None);
        assert_eq!(kernel_mount(FsType::Apfs), None);
        for fs in [FsType::Ext2, FsType::Iso9660, FsType::Hfsplus, FsType::Ntfs] {
            assert!(
                kernel_mount(fs)
                    .unwrap()
                    .1
                    .starts_with("ro,nodev,nosuid,noexec,noatime")
            );
        }
    }

    #[test]
    fn proc_filesystems_lists_block_filesystems_only() {
        let text =
            "nodev\tsysfs\nnodev\ttmpfs\n\text3\n\text2\n\text4\n\tsquashfs\nnodev\tfuse\n\txfs\n";
        assert_eq!(
            kernel_filesystems(text),
            ["ext3", "ext2", "ext4", "squashfs", "xfs"]
        );
    }
}
