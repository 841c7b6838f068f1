//! Start-up hygiene: loop devices left behind by a crashed run.
//!
//! Rules: only loop devices whose backing file lies under one of our roots (the image data
//! directory) are ever touched, never anyone else's; of those, a device whose backing file was
//! deleted is detached (it can only pin disk space and confuse the next attach), and so is a
//! device of one of our images (`<root>/<hash>.img`) that is not auto-clearing and whose medium
//! has no live owner (its host lock is free): a run died between `losetup` and the mount that
//! would have held it. The decisions are pure ([`stale_loops`], [`orphan_candidates`]) over
//! `losetup --json` output; the sweeps carry them out.

use std::path::{Path, PathBuf};

use super::attach::{AttachError, detach};
use super::host::{self, LoopEntry};
use crate::lock::HostLock;

/// A loop device the sweep will detach, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleLoop {
    /// The device.
    pub device: PathBuf,
    /// Its backing file as the kernel reports it.
    pub backing_file: String,
}

/// The loop devices that are ours (backing file under `root`) and whose backing file was
/// deleted (pure).
pub fn stale_loops(loops: &[LoopEntry], root: &Path) -> Vec<StaleLoop> {
    loops
        .iter()
        .filter_map(|entry| {
            let backing = entry.back_file.as_deref()?;
            let path = backing.strip_suffix(" (deleted)")?;
            Path::new(path).starts_with(root).then(|| StaleLoop {
                device: entry.name.clone(),
                backing_file: backing.to_owned(),
            })
        })
        .collect()
}

/// Loop devices of our images (`<root>/<hash>.img`, still present) that are not auto-clearing,
/// with the medium hash each belongs to (pure).
pub fn orphan_candidates(loops: &[LoopEntry], root: &Path) -> Vec<(StaleLoop, String)> {
    loops
        .iter()
        .filter(|entry| !entry.autoclear)
        .filter_map(|entry| {
            let backing = entry.back_file.as_deref()?;
            let path = Path::new(backing);
            if backing.ends_with(" (deleted)") || path.parent() != Some(root) {
                return None;
            }
            let hash = path.file_name()?.to_str()?.strip_suffix(".img")?;
            let is_hash = hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            is_hash.then(|| {
                (
                    StaleLoop {
                        device: entry.name.clone(),
                        backing_file: backing.to_owned(),
                    },
                    hash.to_owned(),
                )
            })
        })
        .collect()
}

/// Releases loop devices of our images whose medium has no live owner (its host lock in
/// `lock_dir` is free: taken and released here). A medium whose lock is held, our own included,
/// is left to its owner, which repairs its volumes under that lock.
pub fn sweep_orphans(root: &Path, lock_dir: &Path) -> Result<Vec<StaleLoop>, AttachError> {
    let mut released = Vec::new();
    for (entry, hash) in orphan_candidates(&host::loops()?, root) {
        let name = format!("medium-{hash}.lock");
        let Ok(lock) = HostLock::try_acquire(lock_dir, &name, &hash, "sweeping loop devices")
        else {
            continue;
        };
        // `losetup -d` detaches an idle device and makes a busy one auto-clearing: right both ways.
        let result = detach(&entry.device);
        let _ = lock.release();
        result?;
        tracing::info!(loop.device = %entry.device.display(), backing = %entry.backing_file, "released a loop device left by a run that died");
        released.push(entry);
    }
    Ok(released)
}

/// Detaches our loop devices whose backing file was deleted; returns what it detached.
pub fn sweep_deleted_images(root: &Path) -> Result<Vec<StaleLoop>, AttachError> {
    let stale = stale_loops(&host::loops()?, root);
    for entry in &stale {
        detach(&entry.device)?;
        tracing::info!(loop.device = %entry.device.display(), backing = %entry.backing_file, "detached a loop device whose image was deleted");
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_our_images_loops_that_do_not_clear_themselves() {
        let json = r#"{"loopdevices": [
            {"name": "/dev/loop0", "back-file": "/var/lib/ntt/images/0123456789abcdef0123456789abcdef.img", "autoclear": false},
            {"name": "/dev/loop1", "back-file": "/var/lib/ntt/images/0123456789abcdef0123456789abcdef.img", "autoclear": true},
            {"name": "/dev/loop2", "back-file": "/var/lib/ntt/images/notahash.img", "autoclear": false},
            {"name": "/dev/loop3", "back-file": "/var/lib/ntt/images/sub/0123456789abcdef0123456789abcdef.img", "autoclear": false},
            {"name": "/dev/loop4", "back-file": "/home/x/0123456789abcdef0123456789abcdef.img", "autoclear": false},
            {"name": "/dev/loop5", "back-file": "/var/lib/ntt/images/fedcba9876543210fedcba9876543210.img (deleted)", "autoclear": false}
        ]}"#;
        let found = orphan_candidates(
            &host::parse_losetup(json).unwrap(),
            Path::new("/var/lib/ntt/images"),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.device, Path::new("/dev/loop0"));
        assert_eq!(found[0].1, "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn only_our_deleted_images_are_stale() {
        let json = r#"{"loopdevices": [
            {"name": "/dev/loop0", "back-file": "/var/lib/ntt/images/a.img (deleted)"},
            {"name": "/dev/loop1", "back-file": "/var/lib/ntt/images/b.img"},
            {"name": "/dev/loop2", "back-file": "/home/someone/else.img (deleted)"},
            {"name": "/dev/loop3", "back-file": "/var/lib/ntt/images-other/c.img (deleted)"},
            {"name": "/dev/loop4"}
        ]}"#;
        assert_eq!(
            stale_loops(
                &host::parse_losetup(json).unwrap(),
                Path::new("/var/lib/ntt/images")
            ),
            [StaleLoop {
                device: PathBuf::from("/dev/loop0"),
                backing_file: "/var/lib/ntt/images/a.img (deleted)".into()
            }]
        );
    }
}
