//! What is attached on this host right now, read from the kernel (never from our own records):
//! mounts from `/proc/self/mountinfo`, loop devices from `losetup --json`.
//!
//! Rules: after a crash nothing but the kernel knows what is attached, so every decision about
//! reusing, repairing or releasing a volume starts from these two listings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Why attaching or mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A tool could not be run.
    #[error("cannot run {tool}")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// losetup failed.
    #[error("cannot attach {image} (offset {offset}, {length} bytes) to a loop device: {stderr}")]
    Attach {
        /// The image.
        image: PathBuf,
        /// Byte offset of the volume.
        offset: u64,
        /// Its length.
        length: u64,
        /// What losetup said.
        stderr: String,
    },
    /// The list of loop devices could not be read.
    #[error("cannot list loop devices: {reason}")]
    List {
        /// What went wrong.
        reason: String,
    },
    /// losetup -d failed.
    #[error("cannot detach {device}: {stderr}")]
    Detach {
        /// The loop device.
        device: PathBuf,
        /// What losetup said.
        stderr: String,
    },
    /// The kernel has no driver for this filesystem type.
    #[error("this kernel cannot mount {fs_type} (not in /proc/filesystems)")]
    NoKernelDriver {
        /// The type.
        fs_type: &'static str,
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
    /// mount failed.
    #[error("cannot mount {device} ({fs_type}) on {target}: {stderr}")]
    Mount {
        /// The loop device.
        device: PathBuf,
        /// The kernel type.
        fs_type: String,
        /// The mount point.
        target: PathBuf,
        /// What mount said.
        stderr: String,
    },
    /// mount did not return in time (the kernel may be stuck on a corrupt filesystem).
    #[error(
        "mounting {device} on {target} did not finish within {timeout:?}; the filesystem is probably damaged"
    )]
    MountTimeout {
        /// The loop device.
        device: PathBuf,
        /// The mount point.
        target: PathBuf,
        /// The deadline.
        timeout: Duration,
    },
    /// umount failed.
    #[error("cannot unmount {target}: {stderr}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// What umount said.
        stderr: String,
    },
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point.
    pub target: PathBuf,
    /// The filesystem type (`ext4`, `fuseblk`, `fuse.fuseiso`, ...).
    pub fs_type: String,
    /// The mount source (a device or what the FUSE driver named).
    pub source: String,
    /// The filesystem's device number, `major:minor` (a FUSE mount's minor names its
    /// connection in `/sys/fs/fuse/connections`).
    pub device: String,
}

impl MountEntry {
    /// Whether a FUSE driver serves it.
    pub fn is_fuse(&self) -> bool {
        self.fs_type == "fuseblk" || self.fs_type == "fuse" || self.fs_type.starts_with("fuse.")
    }
}

/// Parses `/proc/self/mountinfo` (pure). Octal escapes in paths are decoded.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                target: PathBuf::from(unescape_octal(fields.get(4)?)),
                fs_type: (*fields.get(separator + 1)?).to_owned(),
                source: unescape_octal(fields.get(separator + 2)?),
                device: (*fields.get(2)?).to_owned(),
            })
        })
        .collect()
}

/// Decodes mountinfo's `\ooo` escapes.
pub fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = u8::from_str_radix(&field[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts of this process's namespace now.
pub fn mounts() -> Result<Vec<MountEntry>, AttachError> {
    let text = fs_err::read_to_string("/proc/self/mountinfo").map_err(|e| AttachError::List {
        reason: e.to_string(),
    })?;
    Ok(parse_mountinfo(&text))
}

/// The mounts stacked on `target`, bottom first.
pub fn mounts_on(all: &[MountEntry], target: &Path) -> Vec<MountEntry> {
    all.iter().filter(|m| m.target == target).cloned().collect()
}

/// A loop device as `losetup --json --list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LoopEntry {
    /// The device node.
    pub name: PathBuf,
    /// The backing file (`(deleted)` appended when it was removed).
    #[serde(rename = "back-file")]
    pub back_file: Option<String>,
    /// Byte offset into the backing file.
    #[serde(default)]
    pub offset: u64,
    /// Byte limit (0: to the end).
    #[serde(default)]
    pub sizelimit: u64,
    /// Whether the device goes away by itself when its last user closes it.
    #[serde(default)]
    pub autoclear: bool,
}

#[derive(serde::Deserialize)]
struct LoopList {
    loopdevices: Vec<LoopEntry>,
}

/// Parses `losetup --json --list -O NAME,BACK-FILE,OFFSET,SIZELIMIT,AUTOCLEAR` (pure). Empty
/// output means no loop devices.
pub fn parse_losetup(json: &str) -> Result<Vec<LoopEntry>, serde_json::Error> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str::<LoopList>(json)?.loopdevices)
}

/// Runs a util-linux tool: its stdout, or what it said on stderr when it failed.
pub(crate) fn run_tool(
    tool: &'static str,
    command: &mut Command,
) -> Result<Result<String, String>, AttachError> {
    let output = command
        .output()
        .map_err(|source| AttachError::Spawn { tool, source })?;
    Ok(if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    })
}

/// The loop devices of this host now.
pub fn loops() -> Result<Vec<LoopEntry>, AttachError> {
    let json = run_tool(
        "losetup",
        Command::new("losetup").args([
            "--json",
            "--list",
            "-O",
            "NAME,BACK-FILE,OFFSET,SIZELIMIT,AUTOCLEAR",
        ]),
    )?
    .map_err(|reason| AttachError::List { reason })?;
    parse_losetup(&json).map_err(|e| AttachError::List {
        reason: e.to_string(),
    })
}

/// The loop devices backed by `image` (by path as the kernel reports it).
pub fn loops_of(all: &[LoopEntry], image: &Path) -> Vec<LoopEntry> {
    let wanted = image.display().to_string();
    all.iter()
        .filter(|l| l.back_file.as_deref() == Some(wanted.as_str()))
        .cloned()
        .collect()
}

/// Unmounts `target` once; `lazy` detaches a mount whose FUSE driver is gone.
pub fn unmount(target: &Path, lazy: bool) -> Result<(), AttachError> {
    let mut command = Command::new("umount");
    if lazy {
        command.arg("--lazy");
    }
    run_tool("umount", command.arg(target))?
        .map(drop)
        .map_err(|stderr| AttachError::Unmount {
            target: target.to_owned(),
            stderr,
        })
}

/// Whether a mounted directory answers (a FUSE mount whose driver died does not: ENOTCONN).
pub fn answers(target: &Path) -> bool {
    fs_err::read_dir(target).is_ok()
}

/// Waits until no loop device is backed by `image` any more (auto-clearing loops go away once
/// their last user, a mount or a FUSE driver, is gone). Returns those still there at the deadline.
pub fn wait_for_loops_gone(image: &Path, timeout: Duration) -> Result<Vec<LoopEntry>, AttachError> {
    let started = Instant::now();
    loop {
        let left = loops_of(&loops()?, image);
        if left.is_empty() || started.elapsed() >= timeout {
            return Ok(left);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_gives_target_type_and_source_with_escapes_decoded() {
        let text = "36 25 7:3 / /run/ntt/mnt/ab\\040c/0 ro,nosuid,nodev,noexec,noatime shared:1 - ext4 /dev/loop3 ro,norecovery\n\
                    41 25 0:44 / /run/ntt/mnt/abc/1 ro,nosuid,nodev - fuseblk /dev/loop4 ro,user_id=0\n\
                    42 41 0:45 / /run/ntt/mnt/abc/1 ro - fuse.fuseiso fuseiso ro\n";
        let all = parse_mountinfo(text);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].target, Path::new("/run/ntt/mnt/ab c/0"));
        assert_eq!(all[0].fs_type, "ext4");
        assert_eq!(
            (all[0].device.as_str(), all[1].device.as_str()),
            ("7:3", "0:44")
        );
        assert_eq!(all[0].source, "/dev/loop3");
        assert!(!all[0].is_fuse());
        assert!(all[1].is_fuse() && all[2].is_fuse());
        let stacked = mounts_on(&all, Path::new("/run/ntt/mnt/abc/1"));
        assert_eq!(stacked.len(), 2, "an overmount shows as two entries");
        assert_eq!(stacked[0].fs_type, "fuseblk");
    }

    #[test]
    fn losetup_json_lists_backing_files_offsets_and_autoclear() {
        let json = r#"{"loopdevices": [
            {"name": "/dev/loop0", "back-file": "/var/lib/ntt/images/x.img", "offset": 1048576, "sizelimit": 4096, "autoclear": true},
            {"name": "/dev/loop1", "back-file": "/var/lib/ntt/images/x.img", "offset": 0, "sizelimit": 0, "autoclear": false},
            {"name": "/dev/loop2", "back-file": "/other.img", "offset": 0, "sizelimit": 0, "autoclear": false}
        ]}"#;
        let all = parse_losetup(json).unwrap();
        let ours = loops_of(&all, Path::new("/var/lib/ntt/images/x.img"));
        assert_eq!(ours.len(), 2);
        assert!(ours[0].autoclear && !ours[1].autoclear);
        assert_eq!(ours[0].offset, 1_048_576);
        assert!(parse_losetup("").unwrap().is_empty());
        assert!(parse_losetup("{").is_err());
    }
}
