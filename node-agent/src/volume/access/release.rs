//! Taking a medium's volumes down (`ntt unmount`): its mounts, then its image's loop devices.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{AccessError, Settings, take_lock};
use crate::volume::{attach, host};

/// What `release_medium` took down.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Released {
    /// Mount points unmounted.
    pub unmounted: Vec<PathBuf>,
    /// Loop devices detached explicitly (auto-clearing ones go with their mount).
    pub detached: Vec<PathBuf>,
}

/// Unmounts every mount under the medium's directory and releases the loop devices of its
/// image, under the medium lock (`ntt unmount`). Idempotent.
pub async fn release_medium(
    image: &Path,
    hash: &str,
    settings: &Settings,
) -> Result<Released, AccessError> {
    let lock = take_lock(settings, hash, "releasing volumes").await?;
    let (image, dir) = (image.to_owned(), settings.medium_dir(hash));
    let what = format!("medium {hash}");
    let released =
        tokio::task::spawn_blocking(move || release_blocking(&image, &dir, &what)).await??;
    lock.release()?;
    Ok(released)
}

fn release_blocking(image: &Path, dir: &Path, what: &str) -> Result<Released, AccessError> {
    let mut released = Released::default();
    for _ in 0..64 {
        // Deepest (last mounted) first, so overmounts come off in order.
        let Some(mount) = host::mounts()?
            .into_iter()
            .rev()
            .find(|m| m.target.starts_with(dir))
        else {
            break;
        };
        let lazy = !host::answers(&mount.target);
        host::unmount(&mount.target, lazy)?;
        if !released.unmounted.contains(&mount.target) {
            released.unmounted.push(mount.target);
        }
    }
    // Auto-clearing loops go away once their mount or FUSE driver is gone; the others were
    // left by an interrupted attach.
    for device in host::loops_of(&host::loops()?, image) {
        if !device.autoclear {
            attach::detach(&device.name)?;
            released.detached.push(device.name);
        }
    }
    let left = host::wait_for_loops_gone(image, Duration::from_secs(30))?;
    if !left.is_empty() {
        return Err(AccessError::StillAttached {
            what: what.to_owned(),
            detail: left
                .iter()
                .map(|l| l.name.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Ok(entries) = fs_err::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Only empty mount points go; anything else is left for a person to look at.
                let _ = fs_err::remove_dir(&path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let _ = fs_err::remove_file(&path);
            }
        }
        let _ = fs_err::remove_dir(dir);
    }
    Ok(released)
}
