//! FUSE drivers for filesystems the kernel cannot mount here (NTFS, ISO 9660 without the kernel
//! driver, squashfs, APFS, ext on hosts without it).
//!
//! Rules: every driver runs read-only and in the foreground as our child, so its exit can be
//! awaited after unmounting (a FUSE daemon left behind keeps the loop device busy); the mount
//! counts as up only once the kernel lists it in `/proc/self/mountinfo`, within a deadline; a
//! driver that exits before that is an error carrying what it printed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::probe::FsType;

/// Why a FUSE mount failed.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// No FUSE driver is known for the type.
    #[error("no FUSE driver for {fs_type}")]
    NoDriver {
        /// The type.
        fs_type: &'static str,
    },
    /// The driver could not be started.
    #[error("cannot run {program} (is it installed? `scripts/setup` installs it)")]
    Spawn {
        /// The driver.
        program: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The mount point could not be created.
    #[error("cannot create mount point {path}")]
    MountPoint {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The driver exited without mounting.
    #[error("{program} could not mount {device}: {output}")]
    Exited {
        /// The driver.
        program: &'static str,
        /// The device.
        device: PathBuf,
        /// What it printed.
        output: String,
    },
    /// The mount did not appear in time.
    #[error("{program} did not mount {device} within {timeout:?}")]
    Timeout {
        /// The driver.
        program: &'static str,
        /// The device.
        device: PathBuf,
        /// The deadline.
        timeout: Duration,
    },
    /// Unmounting failed.
    #[error("cannot unmount {target}: {stderr}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// What umount said.
        stderr: String,
    },
}

/// The FUSE driver command for a type (pure): program and arguments, device and target last.
/// Every driver mounts read-only, `nodev,nosuid,noexec` (a medium may be crafted).
pub fn fuse_driver(
    fs_type: FsType,
    device: &Path,
    target: &Path,
) -> Option<(&'static str, Vec<String>)> {
    let (program, mut args): (&'static str, Vec<&str>) = match fs_type {
        FsType::Ntfs => ("ntfs-3g", vec!["-o", "ro,no_detach,nodev,nosuid,noexec"]),
        // -n: no ~/.mtab.fuseiso bookkeeping; -f: foreground.
        FsType::Iso9660 => ("fuseiso", vec!["-n"]),
        FsType::Squashfs => ("squashfuse", vec!["-f", "-o", "ro,nodev,nosuid,noexec"]),
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => (
            "fuse2fs",
            vec!["-f", "-o", "ro,fakeroot,norecovery,nodev,nosuid,noexec"],
        ),
        // exfat-fuse has no foreground switch but debug; it daemonizes (see `daemonizes`).
        FsType::Exfat => ("mount.exfat-fuse", vec!["-o", "ro,nodev,nosuid,noexec"]),
        // libyal's APFS driver (read-only by design): every volume of the container, under
        // apfs1, apfs2, ... when it holds more than one. It daemonizes unless verbose.
        FsType::Apfs => ("fsapfsmount", vec!["-X", "ro,nodev,nosuid,noexec"]),
        _ => return None,
    };
    let mut all: Vec<String> = args.drain(..).map(str::to_owned).collect();
    all.push(device.display().to_string());
    all.push(target.display().to_string());
    if program == "fuseiso" {
        // fuseiso takes the FUSE options after the mount point.
        all.extend(["-f", "-o", "ro,nodev,nosuid,noexec"].map(str::to_owned));
    }
    Some((program, all))
}

/// Whether a driver forks into the background once mounted (then its start returns, and its
/// end is seen through its loop device going away).
pub fn daemonizes(program: &str) -> bool {
    matches!(program, "mount.exfat-fuse" | "fsapfsmount")
}

/// Whether `target` is a mount point now, per `/proc/self/mountinfo` text.
pub fn is_mounted(mountinfo: &str, target: &Path) -> bool {
    super::host::parse_mountinfo(mountinfo)
        .iter()
        .any(|m| m.target == target)
}

/// A FUSE mount with its driver process; unmounted (and the driver awaited) on drop.
#[derive(Debug)]
pub struct FuseMount {
    program: &'static str,
    target: PathBuf,
    driver: Option<Child>,
    mounted: bool,
}

impl FuseMount {
    /// Starts the driver for `fs_type` on `device` and waits until `target` is mounted. Blocks:
    /// call it from a blocking thread.
    pub fn mount(
        fs_type: FsType,
        device: &Path,
        target: &Path,
        log: &Path,
        timeout: Duration,
    ) -> Result<Self, FuseError> {
        let (program, args) = fuse_driver(fs_type, device, target).ok_or(FuseError::NoDriver {
            fs_type: fs_type.as_str(),
        })?;
        fs_err::create_dir_all(target).map_err(|source| FuseError::MountPoint {
            path: target.to_owned(),
            source,
        })?;
        // The driver's output goes to a log file, not a pipe: a driver of a persistent mount
        // (`ntt mount`) outlives us and must not die writing to a closed pipe. Its own process
        // group keeps a Ctrl-C meant for us away from it; we unmount it in order instead.
        let log_file = fs_err::File::create(log).map_err(|source| FuseError::MountPoint {
            path: log.to_owned(),
            source,
        })?;
        let log_err = log_file
            .try_clone()
            .map_err(|source| FuseError::MountPoint {
                path: log.to_owned(),
                source,
            })?;
        let mut driver = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.into_parts().0))
            .stderr(Stdio::from(log_err.into_parts().0))
            .process_group(0)
            .spawn()
            .map_err(|source| FuseError::Spawn { program, source })?;
        let read_log = || {
            fs_err::read_to_string(log)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let started = Instant::now();
        loop {
            let mountinfo = fs_err::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            if is_mounted(&mountinfo, target) {
                if daemonizes(program) {
                    // The starter has forked the daemon and exits (or has exited) by itself.
                    let _ = driver.wait();
                }
                return Ok(Self {
                    program,
                    target: target.to_owned(),
                    driver: (!daemonizes(program)).then_some(driver),
                    mounted: true,
                });
            }
            if let Ok(Some(status)) = driver.try_wait()
                && !(daemonizes(program) && status.success())
            {
                return Err(FuseError::Exited {
                    program,
                    device: device.to_owned(),
                    output: read_log(),
                });
            }
            if started.elapsed() >= timeout {
                // Not mounted in time: stop the driver (it has nothing mounted to lose).
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(FuseError::Timeout {
                    program,
                    device: device.to_owned(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Which driver serves it.
    pub fn program(&self) -> &'static str {
        self.program
    }

    /// Unmounts and waits for the driver to exit.
    pub fn unmount(mut self) -> Result<(), FuseError> {
        self.release()
    }

    /// Leaves the mount in place with its driver running (for `ntt mount`); `ntt unmount`
    /// finds it again through `/proc/self/mountinfo`.
    pub fn persist(mut self) {
        self.mounted = false;
        self.driver = None;
    }

    fn release(&mut self) -> Result<(), FuseError> {
        if !self.mounted {
            return Ok(());
        }
        let output = Command::new("umount").arg(&self.target).output();
        let result = match output {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(FuseError::Unmount {
                target: self.target.clone(),
                stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            }),
            Err(e) => Err(FuseError::Unmount {
                target: self.target.clone(),
                stderr: e.to_string(),
            }),
        };
        if result.is_ok() {
            self.mounted = false;
            // A foreground driver exits once its filesystem is unmounted.
            if let Some(mut driver) = self.driver.take() {
                let _ = driver.wait();
            }
        }
        result
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if let Err(error) = self.release() {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "FUSE mount left in place"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_are_read_only_and_in_the_foreground() {
        let (program, args) =
            fuse_driver(FsType::Ntfs, Path::new("/dev/loop3"), Path::new("/m")).unwrap();
        assert_eq!(program, "ntfs-3g");
        assert_eq!(
            args,
            ["-o", "ro,no_detach,nodev,nosuid,noexec", "/dev/loop3", "/m"]
        );
        let (program, args) =
            fuse_driver(FsType::Iso9660, Path::new("/dev/loop3"), Path::new("/m")).unwrap();
        assert_eq!(program, "fuseiso");
        assert_eq!(
            args,
            [
                "-n",
                "/dev/loop3",
                "/m",
                "-f",
                "-o",
                "ro,nodev,nosuid,noexec"
            ]
        );
        // Every driver mounts read-only without devices, set-id bits or execution.
        for fs_type in [
            FsType::Ntfs,
            FsType::Iso9660,
            FsType::Squashfs,
            FsType::Ext4,
            FsType::Exfat,
        ] {
            let (_, args) = fuse_driver(fs_type, Path::new("/dev/loop3"), Path::new("/m")).unwrap();
            let options = args
                .iter()
                .skip_while(|a| *a != "-o")
                .nth(1)
                .unwrap_or_else(|| panic!("{fs_type:?}: no -o"));
            for option in ["ro", "nodev", "nosuid", "noexec"] {
                assert!(
                    options.split(',').any(|o| o == option),
                    "{fs_type:?}: {options}"
                );
            }
        }
        assert!(fuse_driver(FsType::Hfsplus, Path::new("/d"), Path::new("/m")).is_none());
    }

    #[test]
    fn mountinfo_points_are_unescaped() {
        let info = "42 27 0:39 / /tmp/with\\040space ro,nosuid - fuse.fuseiso fuseiso ro\n";
        assert!(is_mounted(info, Path::new("/tmp/with space")));
        assert!(!is_mounted(info, Path::new("/tmp/with")));
    }
}
