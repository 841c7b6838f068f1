//! Start-up hygiene: loop devices left behind by a crashed run.
//!
//! Rules: only loop devices whose backing file lies under one of our roots (the image data
//! directory) are ever touched, never anyone else's; of those, a device whose backing file was
//! deleted is detached (it can only pin disk space and confuse the next attach). The decision is
//! pure ([`stale_loops`]) over `losetup --json` output; the sweep carries it out.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::attach::{AttachError, detach};

#[derive(Debug, Deserialize)]
struct Listing {
    loopdevices: Vec<LoopEntry>,
}

#[derive(Debug, Deserialize)]
struct LoopEntry {
    name: PathBuf,
    #[serde(rename = "back-file")]
    back_file: Option<String>,
}

/// A loop device the sweep will detach, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleLoop {
    /// The device.
    pub device: PathBuf,
    /// Its backing file as the kernel reports it.
    pub backing_file: String,
}

/// The loop devices in `losetup --json --list` output that are ours (backing file under
/// `root`) and whose backing file was deleted (pure).
pub fn stale_loops(losetup_json: &str, root: &Path) -> Result<Vec<StaleLoop>, serde_json::Error> {
    if losetup_json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let listing: Listing = serde_json::from_str(losetup_json)?;
    Ok(listing
        .loopdevices
        .into_iter()
        .filter_map(|entry| {
            let backing = entry.back_file?;
            let path = backing.strip_suffix(" (deleted)")?;
            Path::new(path).starts_with(root).then(|| StaleLoop {
                device: entry.name,
                backing_file: backing.clone(),
            })
        })
        .collect())
}

/// Detaches our loop devices whose backing file was deleted; returns what it detached.
pub fn sweep_deleted_images(root: &Path) -> Result<Vec<StaleLoop>, AttachError> {
    let output = Command::new("losetup")
        .args(["--json", "--list", "--output", "NAME,BACK-FILE"])
        .output()
        .map_err(|source| AttachError::Spawn {
            tool: "losetup",
            source,
        })?;
    if !output.status.success() {
        return Err(AttachError::List {
            reason: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let stale = stale_loops(&String::from_utf8_lossy(&output.stdout), root).map_err(|error| {
        AttachError::List {
            reason: error.to_string(),
        }
    })?;
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
            stale_loops(json, Path::new("/var/lib/ntt/images")).unwrap(),
            [StaleLoop {
                device: PathBuf::from("/dev/loop0"),
                backing_file: "/var/lib/ntt/images/a.img (deleted)".into()
            }]
        );
        assert!(stale_loops("", Path::new("/x")).unwrap().is_empty());
        assert!(stale_loops("not json", Path::new("/x")).is_err());
    }
}
