//! Writing a medium's tree beneath a directory (`ntt export-tree`).
//!
//! The rules in this module: a path from a medium is data, never a path to follow, and `ntt`
//! runs as root. So every write is made relative to an open directory descriptor, one
//! component at a time: each parent is opened with `O_DIRECTORY | O_NOFOLLOW` from the one
//! above it, starting at the target directory, and the last component is created with
//! `mkdirat`, `linkat` or `symlinkat` in that parent. A path with an empty, `.` or `..`
//! component (a crafted FAT long name such as `../../x` or `/etc/x`, as The Sleuth Kit prints
//! it) is refused, and so is one whose parent on the export is a symlink or a file (a symlink
//! entry `a -> /root` and a file `a/b`): nothing is ever created outside the target directory,
//! whatever the catalog holds. Refused entries are reported, never silently dropped.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{linkat, symlinkat};

/// Why an entry was not written (data about the entry, not a failure of the export).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The path has an empty, `.` or `..` component, or is empty: following it could leave
    /// the target directory; or it holds a NUL byte (which no name can: the catalog lists a
    /// second entry of one name so).
    #[error("its path has an empty, '.' or '..' component, or a NUL byte")]
    UnsafeName,
    /// A parent of the entry is, on the export, a symlink or a file (both can come from a
    /// medium whose names contain '/'); it is never followed.
    #[error("a parent on the export is a symlink or a file, not a directory")]
    ParentNotDirectory,
    /// Something of that name already exists on the export (two entries whose names differ
    /// only where the target's filesystem does not tell them apart).
    #[error("the name already exists on the export")]
    Exists,
}

/// An export that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The target directory could not be created, opened or listed.
    #[error("cannot use {path} as the export directory")]
    Target {
        /// The target directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The target directory holds something already.
    #[error("{0} is not empty")]
    NotEmpty(PathBuf),
    /// The target directory is on another filesystem than the store.
    #[error(
        "{dir} is not on the store's filesystem ({store}): hard links cannot cross filesystems"
    )]
    CrossDevice {
        /// The target directory.
        dir: PathBuf,
        /// The store's root.
        store: PathBuf,
    },
    /// A write under the target directory failed for a reason other than the entry's name.
    #[error("cannot write {path} under {dir}")]
    Write {
        /// The target directory.
        dir: PathBuf,
        /// The entry's path below it, escaped.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the writer did with one entry.
pub type Outcome = Result<(), Refusal>;

/// Writes entries beneath one directory, never outside it.
#[derive(Debug)]
pub struct TreeWriter {
    dir: PathBuf,
    root: OwnedFd,
    /// The last parent opened, by its components, so a directory's files reuse it.
    parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
}

/// The components of `path`, or `None` when one of them is empty, `.` or `..` or holds a NUL
/// byte (pure).
pub fn components(path: &[u8]) -> Option<Vec<&[u8]>> {
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    parts
        .iter()
        .all(|part| !matches!(*part, b"" | b"." | b"..") && !part.contains(&0))
        .then_some(parts)
}

fn io(errno: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno as i32)
}

impl TreeWriter {
    /// Creates `dir` if missing and opens it; it must be empty.
    pub fn create(dir: &Path) -> Result<Self, ExportError> {
        let target = |source| ExportError::Target {
            path: dir.to_path_buf(),
            source,
        };
        fs_err::create_dir_all(dir).map_err(target)?;
        if fs_err::read_dir(dir).map_err(target)?.next().is_some() {
            return Err(ExportError::NotEmpty(dir.to_path_buf()));
        }
        // The target itself is the operator's choice and may be reached through a symlink;
        // everything below it comes from the medium and is never followed.
        let root = openat(
            AT_FDCWD,
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| target(io(errno)))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            root,
            parent: None,
        })
    }

    fn write_error(&self, path: &[u8], errno: Errno) -> ExportError {
        ExportError::Write {
            dir: self.dir.clone(),
            path: path.escape_ascii().to_string(),
            source: io(errno),
        }
    }

    /// The open parent directory of `parts` (all but the last), created as needed, one
    /// component at a time without following symlinks.
    fn parent_of(
        &mut self,
        path: &[u8],
        parts: &[&[u8]],
    ) -> Result<Result<(), Refusal>, ExportError> {
        let wanted = &parts[..parts.len() - 1];
        if let Some((open, _)) = &self.parent
            && open.len() == wanted.len()
            && open.iter().zip(wanted).all(|(a, b)| a.as_slice() == *b)
        {
            return Ok(Ok(()));
        }
        self.parent = None;
        let mut current: Option<OwnedFd> = None;
        for part in wanted {
            let name = OsStr::from_bytes(part);
            let next = {
                let at = current.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
                match mkdirat(at, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(errno) => return Err(self.write_error(path, errno)),
                }
                match openat(
                    at,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::ELOOP | Errno::ENOTDIR) => {
                        return Ok(Err(Refusal::ParentNotDirectory));
                    }
                    Err(errno) => return Err(self.write_error(path, errno)),
                }
            };
            current = Some(next);
        }
        let fd = match current {
            Some(fd) => fd,
            None => self.root.try_clone().map_err(|source| ExportError::Write {
                dir: self.dir.clone(),
                path: path.escape_ascii().to_string(),
                source,
            })?,
        };
        self.parent = Some((wanted.iter().map(|part| part.to_vec()).collect(), fd));
        Ok(Ok(()))
    }

    /// Runs `create` with the parent's descriptor and the entry's last component.
    fn create_in(
        &mut self,
        path: &[u8],
        create: impl FnOnce(&OwnedFd, &OsStr) -> Result<(), Errno>,
    ) -> Result<Outcome, ExportError> {
        let Some(parts) = components(path) else {
            return Ok(Err(Refusal::UnsafeName));
        };
        if let Err(refusal) = self.parent_of(path, &parts)? {
            return Ok(Err(refusal));
        }
        let Some((_, parent)) = &self.parent else {
            return Ok(Err(Refusal::ParentNotDirectory));
        };
        let name = OsStr::from_bytes(parts[parts.len() - 1]);
        match create(parent, name) {
            Ok(()) => Ok(Ok(())),
            Err(Errno::EEXIST) => Ok(Err(Refusal::Exists)),
            Err(errno) => Err(self.write_error(path, errno)),
        }
    }

    /// A directory at `path` (relative to the target, bytes as on the medium).
    pub fn dir(&mut self, path: &[u8]) -> Result<Outcome, ExportError> {
        let outcome = self.create_in(path, |parent, name| {
            match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
                // A directory created earlier as some child's parent.
                Err(Errno::EEXIST) => Ok(()),
                other => other,
            }
        })?;
        Ok(outcome)
    }

    /// A hard link at `path` to `source` (a blob in the store, on the same filesystem).
    pub fn link(
        &mut self,
        path: &[u8],
        source: &Path,
        store: &Path,
    ) -> Result<Outcome, ExportError> {
        match self.create_in(path, |parent, name| {
            linkat(AT_FDCWD, source, parent, name, AtFlags::empty())
        }) {
            Err(ExportError::Write { source: error, .. })
                if error.raw_os_error() == Some(Errno::EXDEV as i32) =>
            {
                Err(ExportError::CrossDevice {
                    dir: self.dir.clone(),
                    store: store.to_path_buf(),
                })
            }
            other => other,
        }
    }

    /// A symlink at `path` whose target is `target`, byte for byte (never followed here).
    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<Outcome, ExportError> {
        self.create_in(path, |parent, name| {
            symlinkat(OsStr::from_bytes(target), parent, name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ntt-export-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn components_refuse_empty_dot_dot_dot_and_nul() {
        assert_eq!(components(b"a/b"), Some(vec![&b"a"[..], b"b"]));
        assert_eq!(
            components(b"new\nline/\xff"),
            Some(vec![&b"new\nline"[..], b"\xff"])
        );
        for bad in [
            &b""[..],
            b"/abs",
            b"a//b",
            b"a/",
            b".",
            b"a/./b",
            b"..",
            b"../../x",
            b"a/..",
            b"dup name.txt\0duplicate 2",
            b"a\0/b",
        ] {
            assert_eq!(components(bad), None, "{}", bad.escape_ascii());
        }
        // Dots inside a name are ordinary bytes.
        assert!(components(b"...").is_some());
        assert!(components(b"..a/b..").is_some());
    }

    #[test]
    fn nothing_is_written_outside_the_target() {
        let base = scratch("outside");
        let target = base.join("export");
        let outside = base.join("outside");
        fs_err::create_dir_all(&outside).unwrap();
        let source = base.join("blob");
        fs_err::write(&source, b"content").unwrap();
        let mut writer = TreeWriter::create(&target).unwrap();

        // Names that climb or are absolute are refused.
        assert_eq!(
            writer.link(b"0/../../outside/x", &source, &base).unwrap(),
            Err(Refusal::UnsafeName)
        );
        let absolute = format!("0/{}/y", outside.display());
        assert_eq!(
            writer.link(absolute.as_bytes(), &source, &base).unwrap(),
            Err(Refusal::UnsafeName)
        );
        // A symlink entry pointing out, then entries below it: the symlink is written as data,
        // the entries below it are refused and nothing appears where it points.
        assert_eq!(
            writer
                .symlink(b"0/a", outside.as_os_str().as_bytes())
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            writer.link(b"0/a/authorized_keys", &source, &base).unwrap(),
            Err(Refusal::ParentNotDirectory)
        );
        assert_eq!(
            writer.dir(b"0/a/sub").unwrap(),
            Err(Refusal::ParentNotDirectory)
        );
        assert_eq!(
            writer.symlink(b"0/a/sub/link", b"/etc").unwrap(),
            Err(Refusal::ParentNotDirectory)
        );
        // A relative symlink that climbs, then a file through it.
        assert_eq!(writer.symlink(b"0/up", b"../..").unwrap(), Ok(()));
        assert_eq!(
            writer.link(b"0/up/outside/z", &source, &base).unwrap(),
            Err(Refusal::ParentNotDirectory)
        );
        // A file then a file below it.
        assert_eq!(writer.link(b"0/file", &source, &base).unwrap(), Ok(()));
        assert_eq!(
            writer.link(b"0/file/x", &source, &base).unwrap(),
            Err(Refusal::ParentNotDirectory)
        );
        assert_eq!(fs_err::read_dir(&outside).unwrap().count(), 0);
        assert!(!base.join("x").exists());

        // Ordinary entries land where they should, parents created on the way.
        assert_eq!(writer.dir(b"0/d").unwrap(), Ok(()));
        assert_eq!(
            writer.link(b"0/d/e/f\nname", &source, &base).unwrap(),
            Ok(())
        );
        assert_eq!(writer.link(b"0/d/e/g", &source, &base).unwrap(), Ok(()));
        assert_eq!(writer.dir(b"0/d/e").unwrap(), Ok(()));
        assert_eq!(
            writer.link(b"0/d/e/g", &source, &base).unwrap(),
            Err(Refusal::Exists)
        );
        assert_eq!(
            fs_err::read(target.join("0/d/e/f\nname")).unwrap(),
            b"content"
        );
        assert_eq!(
            fs_err::read_link(target.join("0/a")).unwrap(),
            outside.as_path()
        );
        fs_err::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_target_must_be_empty() {
        let base = scratch("empty");
        fs_err::write(base.join("something"), b"").unwrap();
        assert!(matches!(
            TreeWriter::create(&base),
            Err(ExportError::NotEmpty(_))
        ));
        fs_err::remove_dir_all(&base).unwrap();
    }
}
