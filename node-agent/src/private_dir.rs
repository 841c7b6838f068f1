//! Directories that hold evidence (images, the store, mounts) are nobody else's business.
//!
//! Rule: such a root is created mode 0700; an existing one loses any access for others (an
//! operator may still give a group read access, 0750, to let an auditing account in), so a
//! file of a medium is never world-readable through it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Creates `dir` (and its parents) if missing and takes every permission for others away
/// from it.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        fs_err::create_dir_all(dir)?;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        return Ok(());
    }
    restrict(dir)
}

/// Takes every permission for others away from the existing directory `dir` (never creates
/// it: a root that is missing must be initialised, see [`crate::roots`]).
pub fn restrict(dir: &Path) -> std::io::Result<()> {
    let mode = fs_err::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o007))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_roots_are_0700_and_old_ones_lose_what_others_had() {
        let base = std::env::temp_dir().join(format!("ntt-private-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&base);
        let new = base.join("a/b");
        ensure_private_dir(&new).unwrap();
        let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&new), 0o700);
        let old = base.join("old");
        fs_err::create_dir_all(&old).unwrap();
        fs_err::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&old).unwrap();
        assert_eq!(
            mode(&old),
            0o750,
            "the group keeps what the operator gave it"
        );
        fs_err::remove_dir_all(&base).unwrap();
    }
}
