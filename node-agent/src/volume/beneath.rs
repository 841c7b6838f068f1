//! Opening a path from a medium below a volume's root, never anywhere else, at any depth.
//!
//! Rules: every open is `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` relative to a
//! directory descriptor (a name from a medium is never a path out of the volume, even when a
//! directory of a live tree was swapped for a link); a path longer than one call takes
//! (`PATH_MAX`, 4096 bytes) is opened piece by piece, each piece below the directory the
//! previous one opened, so a deep tree is read like a shallow one.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// Longest piece of a path handed to one `openat2` (below the kernel's 4096, with room).
const PIECE: usize = 3072;

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
}

/// Opens the directory `root` itself (trusted: the mount point or the source the operator
/// named) as a handle to open below.
///
/// # Errors
///
/// What `open` says.
pub fn open_root(root: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Opens `path` (relative bytes; empty: `dir` itself) below `dir` with `flags`; see the module
/// rules. `O_NOATIME` is dropped when refused (it needs the owner or `CAP_FOWNER`, and a FUSE
/// driver may refuse it).
///
/// # Errors
///
/// What `openat2` says: `ELOOP`/`EXDEV` for a link or a climb on the way, `ENOENT`, ...
pub fn open(dir: &impl AsFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let pieces = pieces(path);
    let Some((last, parents)) = pieces.split_last() else {
        return open_one(dir, b".", flags);
    };
    let mut held: Option<OwnedFd> = None;
    for piece in parents {
        let next = match &held {
            Some(fd) => open_one(fd, piece, OFlag::O_PATH | OFlag::O_DIRECTORY)?,
            None => open_one(dir, piece, OFlag::O_PATH | OFlag::O_DIRECTORY)?,
        };
        held = Some(next);
    }
    match &held {
        Some(fd) => open_one(fd, last, flags),
        None => open_one(dir, last, flags),
    }
}

fn open_one(dir: &impl AsFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let name = OsStr::from_bytes(path);
    match openat2(dir, name, how(flags)) {
        Err(Errno::EPERM) if flags.contains(OFlag::O_NOATIME) => {
            openat2(dir, name, how(flags - OFlag::O_NOATIME))
        }
        opened => opened,
    }
}

/// `path` cut at slashes into pieces of at most [`PIECE`] bytes (a single component longer
/// than that, which no filesystem allows, is left whole for the kernel to refuse) (pure).
fn pieces(path: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = path;
    while rest.len() > PIECE {
        let cut = rest[..=PIECE]
            .iter()
            .rposition(|&b| b == b'/')
            .or_else(|| rest.iter().position(|&b| b == b'/'));
        let Some(cut) = cut else { break };
        if cut > 0 {
            pieces.push(&rest[..cut]);
        }
        rest = &rest[cut + 1..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// A path the standard library can open that names exactly the file `fd` holds, however deep
/// it is: its `/proc/self/fd` entry (the kernel resolves it to the open file, not by name).
pub fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_at_slashes_into_short_pieces() {
        assert!(pieces(b"").is_empty());
        assert_eq!(pieces(b"a/b"), vec![&b"a/b"[..]]);
        let component = "x".repeat(250);
        let deep = vec![component.as_str(); 40].join("/");
        let cut = pieces(deep.as_bytes());
        assert!(cut.len() >= 4, "{}", cut.len());
        assert!(cut.iter().all(|p| p.len() <= PIECE));
        assert_eq!(cut.join(&b'/'), deep.as_bytes(), "nothing lost at the cuts");
    }

    #[test]
    fn deep_trees_open_and_links_on_the_way_are_refused() {
        let base = std::env::temp_dir().join(format!("ntt-beneath-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&base);
        fs_err::create_dir_all(&base).unwrap();
        let root = open_root(&base).unwrap();
        // 24 levels of 200 bytes: 4 800 bytes, beyond what one call takes.
        let name = "d".repeat(200);
        let mut at = open(&root, b"", OFlag::O_PATH | OFlag::O_DIRECTORY).unwrap();
        for _ in 0..24 {
            nix::sys::stat::mkdirat(&at, name.as_str(), nix::sys::stat::Mode::S_IRWXU).unwrap();
            at = open(&at, name.as_bytes(), OFlag::O_PATH | OFlag::O_DIRECTORY).unwrap();
        }
        let deep = vec![name.as_str(); 24].join("/");
        assert!(deep.len() > 4096);
        let opened = open(&root, deep.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY);
        assert!(opened.is_ok(), "{opened:?}");
        // A directory swapped for a link to elsewhere is never followed.
        std::os::unix::fs::symlink("/etc", base.join("link")).unwrap();
        assert_eq!(
            open(&root, b"link", OFlag::O_RDONLY | OFlag::O_DIRECTORY).unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            open(&root, b"link/passwd", OFlag::O_RDONLY).unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            open(&root, b"../x", OFlag::O_RDONLY).unwrap_err(),
            Errno::EXDEV,
            "no climbing out"
        );
        let listed = fs_err::read_dir(proc_path(&root)).unwrap().count();
        assert_eq!(listed, 2, "the root read through its descriptor");
        std::process::Command::new("rm")
            .arg("-rf")
            .arg(&base)
            .status()
            .unwrap();
    }
}
