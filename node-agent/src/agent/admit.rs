//! What a `Medium` may make the privileged agent read: only what the cluster's admin allowed.
//!
//! Anyone who may create a `Medium` names a path on a node, and the agent reads it as root. So
//! the admin lists, in the chart's values, the device globs (for example
//! `/dev/disk/by-id/usb-*`) and the directories holding image files and directory sources the
//! agent may read; everything else is refused before anything is opened:
//!
//! ```text
//!   declared path ─ canonical path (links resolved) ─ file type
//!        └─────────── decide(allowlist, own roots) ──▶ admitted | refused (rule, reason)
//! ```
//!
//! Rules ([`decide`] is pure; [`admit`] gathers the facts):
//! - a device must be a block device whose declared or canonical path matches a device glob
//!   (a mounted, swapped or otherwise held device is refused later by imaging's exclusive
//!   open);
//! - an image must be a regular file and a directory a directory, each below an allowed root
//!   after links are resolved;
//! - nothing inside NTT's own directories (data, store, mounts, locks), and no directory that
//!   contains one of them, is ever a source (a `directory: /run/ntt/mnt` would ingest every
//!   other medium's mounted content).
//!
//! Refusals are permanent: the same `Medium` is refused the same way until a person changes it
//! or the allowlist.

use std::path::{Path, PathBuf};

/// The admin's allowlist.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    /// Globs a device's declared or canonical path must match (`*` does not cross `/`).
    pub devices: Vec<glob::Pattern>,
    /// Directories (canonical) below which image files and directory sources may lie.
    pub roots: Vec<PathBuf>,
}

/// What the `Medium` says its source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// `source.device`.
    Device,
    /// `source.image`.
    Image,
    /// `source.directory`.
    Directory,
}

impl Declared {
    const fn what(self) -> &'static str {
        match self {
            Self::Device => "a block device",
            Self::Image => "a regular file",
            Self::Directory => "a directory",
        }
    }
}

/// What is at the path, as found on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A block device.
    Block,
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// Anything else (a character device, a FIFO, a socket).
    Other,
}

impl FileKind {
    const fn what(self) -> &'static str {
        match self {
            Self::Block => "a block device",
            Self::Regular => "a regular file",
            Self::Directory => "a directory",
            Self::Other => "neither a block device, a regular file nor a directory",
        }
    }
}

/// Why a source was refused: the rule and the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the agent's allowlist ({rule}): {reason}")]
pub struct Refusal {
    /// The rule, stable for conditions and alerts.
    pub rule: &'static str,
    /// What was found.
    pub reason: String,
}

fn refuse(rule: &'static str, reason: String) -> Refusal {
    Refusal { rule, reason }
}

/// Decides whether the source may be read (pure). `own` are NTT's own directories, canonical.
///
/// # Errors
///
/// [`Refusal`] with the rule that refused it.
pub fn decide(
    allow: &Allowlist,
    own: &[PathBuf],
    declared: Declared,
    path: &Path,
    canonical: &Path,
    kind: FileKind,
) -> Result<(), Refusal> {
    let expected = match declared {
        Declared::Device => FileKind::Block,
        Declared::Image => FileKind::Regular,
        Declared::Directory => FileKind::Directory,
    };
    if kind != expected {
        return Err(refuse(
            "kind-mismatch",
            format!(
                "{} is declared as {} but is {}",
                path.display(),
                declared.what(),
                kind.what()
            ),
        ));
    }
    if let Some(root) = own
        .iter()
        .find(|root| canonical.starts_with(root) || root.starts_with(canonical))
    {
        return Err(refuse(
            "ntt-directory",
            format!(
                "{} is or holds NTT's own directory {}",
                canonical.display(),
                root.display()
            ),
        ));
    }
    if declared == Declared::Device {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let matches = |p: &Path| {
            allow
                .devices
                .iter()
                .any(|glob| glob.matches_path_with(p, options))
        };
        if !matches(path) && !matches(canonical) {
            return Err(refuse(
                "device-not-allowed",
                format!(
                    "{} ({}) matches none of the allowed devices [{}]",
                    path.display(),
                    canonical.display(),
                    allow
                        .devices
                        .iter()
                        .map(glob::Pattern::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        return Ok(());
    }
    if !allow.roots.iter().any(|root| canonical.starts_with(root)) {
        return Err(refuse(
            "outside-roots",
            format!(
                "{} ({}) is below none of the allowed roots [{}]",
                path.display(),
                canonical.display(),
                allow
                    .roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

/// Resolves the path and checks it against the allowlist; the canonical path is what is read.
///
/// # Errors
///
/// [`Refusal`] (`missing` when the path does not resolve) or what [`decide`] refuses.
pub fn admit(
    allow: &Allowlist,
    own: &[PathBuf],
    declared: Declared,
    path: &Path,
) -> Result<PathBuf, Refusal> {
    use std::os::unix::fs::FileTypeExt;
    let canonical = fs_err::canonicalize(path).map_err(|e| {
        refuse(
            "missing",
            format!("{} cannot be resolved on this node: {e}", path.display()),
        )
    })?;
    let file_type = fs_err::metadata(&canonical)
        .map_err(|e| refuse("missing", format!("{}: {e}", canonical.display())))?
        .file_type();
    let kind = if file_type.is_block_device() {
        FileKind::Block
    } else if file_type.is_file() {
        FileKind::Regular
    } else if file_type.is_dir() {
        FileKind::Directory
    } else {
        FileKind::Other
    };
    let own: Vec<PathBuf> = own
        .iter()
        .map(|dir| fs_err::canonicalize(dir).unwrap_or_else(|_| dir.clone()))
        .collect();
    decide(allow, &own, declared, path, &canonical, kind)?;
    Ok(canonical)
}

/// Parses the admin's device globs and canonicalises the roots (a root that does not exist on
/// this node allows nothing and is dropped with a warning).
///
/// # Errors
///
/// A glob that does not parse.
pub fn allowlist(devices: &[String], roots: &[PathBuf]) -> Result<Allowlist, glob::PatternError> {
    let devices = devices
        .iter()
        .map(|glob| glob::Pattern::new(glob))
        .collect::<Result<Vec<_>, _>>()?;
    let roots = roots
        .iter()
        .filter_map(|root| match fs_err::canonicalize(root) {
            Ok(root) => Some(root),
            Err(error) => {
                tracing::warn!(root = %root.display(), %error, "allowed root missing on this node: ignored");
                None
            }
        })
        .collect();
    Ok(Allowlist { devices, roots })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Allowlist {
        Allowlist {
            devices: vec![glob::Pattern::new("/dev/disk/by-id/usb-*").unwrap()],
            roots: vec![PathBuf::from("/srv/intake")],
        }
    }

    fn own() -> Vec<PathBuf> {
        ["/var/lib/ntt/images", "/var/lib/ntt/store", "/run/ntt/mnt"]
            .map(PathBuf::from)
            .to_vec()
    }

    fn check(
        declared: Declared,
        path: &str,
        canonical: &str,
        kind: FileKind,
    ) -> Result<(), &'static str> {
        decide(
            &allow(),
            &own(),
            declared,
            Path::new(path),
            Path::new(canonical),
            kind,
        )
        .map_err(|refusal| refusal.rule)
    }

    #[test]
    fn an_allowed_usb_drive_is_admitted_by_its_by_id_path() {
        assert_eq!(
            check(
                Declared::Device,
                "/dev/disk/by-id/usb-WD_Elements_123-0:0",
                "/dev/sdb",
                FileKind::Block
            ),
            Ok(())
        );
    }

    #[test]
    fn the_system_disk_and_other_devices_are_refused() {
        assert_eq!(
            check(
                Declared::Device,
                "/dev/nvme0n1",
                "/dev/nvme0n1",
                FileKind::Block
            ),
            Err("device-not-allowed")
        );
        assert_eq!(
            check(
                Declared::Device,
                "/dev/disk/by-id/ata-Samsung_SSD",
                "/dev/sda",
                FileKind::Block
            ),
            Err("device-not-allowed")
        );
        // `*` does not cross a slash.
        assert_eq!(
            check(
                Declared::Device,
                "/dev/disk/by-id/usb-x/../../../sda",
                "/dev/sda",
                FileKind::Block
            ),
            Err("device-not-allowed")
        );
    }

    #[test]
    fn the_declared_kind_must_be_what_is_there() {
        assert_eq!(
            check(
                Declared::Device,
                "/dev/disk/by-id/usb-x",
                "/dev/zero",
                FileKind::Other
            ),
            Err("kind-mismatch")
        );
        assert_eq!(
            check(
                Declared::Image,
                "/srv/intake/case",
                "/srv/intake/case",
                FileKind::Directory
            ),
            Err("kind-mismatch")
        );
        assert_eq!(
            check(
                Declared::Directory,
                "/srv/intake/a.img",
                "/srv/intake/a.img",
                FileKind::Regular
            ),
            Err("kind-mismatch")
        );
    }

    #[test]
    fn images_and_directories_only_below_the_roots_after_links() {
        assert_eq!(
            check(
                Declared::Image,
                "/srv/intake/a.e01",
                "/srv/intake/a.e01",
                FileKind::Regular
            ),
            Ok(())
        );
        assert_eq!(
            check(
                Declared::Directory,
                "/srv/intake/link",
                "/etc",
                FileKind::Directory
            ),
            Err("outside-roots"),
            "a link out of the root is judged where it leads"
        );
        assert_eq!(
            check(
                Declared::Directory,
                "/srv/intake-other",
                "/srv/intake-other",
                FileKind::Directory
            ),
            Err("outside-roots"),
            "a sibling with a common prefix is not below the root"
        );
    }

    #[test]
    fn ntt_directories_are_never_sources() {
        assert_eq!(
            check(
                Declared::Directory,
                "/run/ntt/mnt",
                "/run/ntt/mnt",
                FileKind::Directory
            ),
            Err("ntt-directory")
        );
        assert_eq!(
            check(
                Declared::Directory,
                "/var/lib",
                "/var/lib",
                FileKind::Directory
            ),
            Err("ntt-directory"),
            "a directory holding the store"
        );
        assert_eq!(
            check(
                Declared::Image,
                "/var/lib/ntt/images/x.img",
                "/var/lib/ntt/images/x.img",
                FileKind::Regular
            ),
            Err("ntt-directory")
        );
    }

    #[test]
    fn admit_resolves_links_and_refuses_what_is_missing() {
        let base = std::env::temp_dir().join(format!("ntt-admit-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&base);
        fs_err::create_dir_all(base.join("intake/case")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("intake/escape")).unwrap();
        let allow = allowlist(&[], &[base.join("intake"), base.join("absent")]).unwrap();
        assert_eq!(allow.roots.len(), 1, "a missing root is dropped");
        let admitted = admit(&allow, &[], Declared::Directory, &base.join("intake/case")).unwrap();
        assert_eq!(
            admitted,
            fs_err::canonicalize(base.join("intake/case")).unwrap()
        );
        let escape = admit(
            &allow,
            &[],
            Declared::Directory,
            &base.join("intake/escape"),
        );
        assert_eq!(escape.unwrap_err().rule, "outside-roots");
        let missing = admit(&allow, &[], Declared::Image, &base.join("intake/none.img"));
        assert_eq!(missing.unwrap_err().rule, "missing");
        assert!(allowlist(&["/dev/[".to_owned()], &[]).is_err());
        fs_err::remove_dir_all(&base).unwrap();
    }
}
