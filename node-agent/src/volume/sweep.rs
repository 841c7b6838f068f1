//! Start-up hygiene: loop devices left behind by a crashed run.
//!
//! Rules: only loop devices whose backing file lies under one of our roots (the image data
//! directory) are ever touched, never anyone else's; of those, a device whose backing file was
//! deleted is detached (it can only pin disk space and confuse the next attach). The decision is
//! pure ([`stale_loops`]) over `losetup --json` output; the sweep carries it out.

use std::path::{Path, PathBuf};

use super::attach::{AttachError, detach};
use super::host::{self, LoopEntry};

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
