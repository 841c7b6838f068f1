//! Markers of the store and data directories: a root is NTT's only once `ntt init` wrote a
//! `.ntt-root` file naming the catalog it belongs to.
//!
//! Why: with the archive disk not mounted, a store or data directory is just an empty
//! directory of the root filesystem; creating it again silently let a terabyte image or blob
//! set fill the system disk, and the real store then reported those blobs missing. So no
//! command creates a root; every command that reads or writes one first reads its marker
//! ([`inspect`]), and the rules of what `ntt init` may do are in [`crate::pipeline::roots`].
//!
//! The marker is JSON, written once (`O_EXCL`), fsynced, mode 0440:
//! `{"format":"ntt-root/1","kind":"store","id":"…","catalog":"…","created":"…"}`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs_err::os::unix::fs::OpenOptionsExt;

/// The marker's file name inside a root.
pub const MARKER: &str = ".ntt-root";

/// The marker format this binary writes and reads.
const FORMAT: &str = "ntt-root/1";

/// Largest marker read (a marker is about 200 bytes; anything larger is not ours).
const MAX_MARKER: u64 = 64 * 1024;

/// Entries a fresh filesystem holds that do not make a root "not empty".
const FRESH_FILESYSTEM: &[&str] = &["lost+found"];

/// Which root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKind {
    /// The content-addressed store.
    Store,
    /// The directory of images and mapfiles.
    Data,
    /// A second copy of the store (`ntt replicate`).
    Replica,
}

impl RootKind {
    /// The kind as the catalog records it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Data => "data",
            Self::Replica => "replica",
        }
    }

    /// The kind in a sentence.
    pub const fn what(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Data => "data directory",
            Self::Replica => "replica",
        }
    }

    /// The flag (and `NTT_*` variable) that names this root.
    pub const fn flag(self) -> &'static str {
        match self {
            Self::Store => "--store (NTT_STORE)",
            Self::Data => "--data-dir (NTT_DATA_DIR)",
            Self::Replica => "ntt replicate --to",
        }
    }
}

impl std::fmt::Display for RootKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what())
    }
}

/// A root's marker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// Always [`FORMAT`].
    pub format: String,
    /// Store or data directory.
    pub kind: RootKind,
    /// The root's own id (recorded by the catalog).
    pub id: String,
    /// The id of the catalog the root belongs to.
    pub catalog: String,
    /// When it was written.
    pub created: DateTime<Utc>,
}

impl Marker {
    /// A new marker of `kind` with `id`, for `catalog`.
    pub fn new(kind: RootKind, id: String, catalog: String) -> Self {
        Self {
            format: FORMAT.to_owned(),
            kind,
            id,
            catalog,
            created: Utc::now(),
        }
    }
}

/// What a root directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The directory does not exist.
    Missing,
    /// It exists and holds nothing (or only what a fresh filesystem holds), no marker.
    Empty,
    /// It holds files but no marker (a root from before markers, or not NTT's at all).
    Unmarked,
    /// Its marker.
    Marked(Marker),
}

/// Why a root cannot be used or initialised.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The directory does not exist.
    #[error(
        "the {kind} {path} does not exist: if the archive disk holding it is not mounted, mount \
         it; for a new archive run `ntt init`"
    )]
    Missing {
        /// Store or data directory.
        kind: RootKind,
        /// The directory.
        path: PathBuf,
    },
    /// The directory exists without a marker.
    #[error(
        "the {kind} {path} is not initialised (no {MARKER} in it): if the archive disk holding \
         it is not mounted, mount it; for a new archive run `ntt init`"
    )]
    NotInitialised {
        /// Store or data directory.
        kind: RootKind,
        /// The directory.
        path: PathBuf,
    },
    /// The marker names another catalog.
    #[error(
        "the {kind} {path} belongs to another catalog ({theirs}; this catalog is {ours}): check \
         {flag} and NTT_DATABASE_URL",
        flag = kind.flag()
    )]
    Foreign {
        /// Store or data directory.
        kind: RootKind,
        /// The directory.
        path: PathBuf,
        /// The catalog its marker names.
        theirs: String,
        /// This catalog.
        ours: String,
    },
    /// The marker is of the other kind (a data directory given as the store, or the reverse).
    #[error("{path} is a {found}, not a {kind}: check {flag}", flag = kind.flag())]
    WrongKind {
        /// What was expected.
        kind: RootKind,
        /// What the marker says.
        found: RootKind,
        /// The directory.
        path: PathBuf,
    },
    /// The marker cannot be parsed, or is of a format this binary does not know.
    #[error("the marker {path} is not one this ntt can read: {reason}")]
    Malformed {
        /// The marker file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The catalog recorded a root here, and the directory does not hold it.
    #[error(
        "the catalog recorded a {kind} at {path} (id {id}, initialised {since}), and the \
         directory holds no marker: if the archive disk holding it is not mounted, mount it; \
         if that {kind} is lost for good, `ntt init --replace` starts a new one",
        since = since.format("%Y-%m-%d %H:%M UTC")
    )]
    Lost {
        /// Store or data directory.
        kind: RootKind,
        /// The directory.
        path: PathBuf,
        /// The id recorded.
        id: String,
        /// When it was recorded.
        since: DateTime<Utc>,
    },
    /// A directory that holds files but no marker is taken only when asked.
    #[error(
        "the {kind} {path} holds files but no {MARKER}: if it is an NTT {kind} from before \
         markers, `ntt init --adopt` takes it over; otherwise check {flag}",
        flag = kind.flag()
    )]
    NotEmpty {
        /// Store or data directory.
        kind: RootKind,
        /// The directory.
        path: PathBuf,
    },
    /// The path is not absolute and cannot be made so.
    #[error("cannot make the {kind} path {path} absolute")]
    Path {
        /// Store or data directory.
        kind: RootKind,
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the root failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What we tried.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootError + 'a {
    move |source| RootError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The root's path made absolute (not resolved: a symlinked root stays as the operator named
/// it, and the catalog records it so).
///
/// # Errors
///
/// [`RootError::Path`] when the working directory cannot be read.
pub fn absolute(kind: RootKind, dir: &Path) -> Result<PathBuf, RootError> {
    std::path::absolute(dir).map_err(|source| RootError::Path {
        kind,
        path: dir.to_owned(),
        source,
    })
}

/// What `dir` holds: missing, empty, files without a marker, or its marker.
///
/// # Errors
///
/// [`RootError::Malformed`] for a marker this binary cannot read; [`RootError::Io`] when the
/// directory or marker cannot be read.
pub fn inspect(dir: &Path) -> Result<Found, RootError> {
    let marker = dir.join(MARKER);
    match fs_err::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(io("read", dir)(e)),
        Ok(_) => {}
    }
    // The marker is opened without following a symlink: a root is the operator's directory,
    // but a marker that is a link to elsewhere is not a marker.
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&marker);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut entries = fs_err::read_dir(dir).map_err(io("list", dir))?;
            let busy = entries.try_fold(false, |busy, entry| {
                let entry = entry.map_err(io("list", dir))?;
                let fresh = FRESH_FILESYSTEM
                    .iter()
                    .any(|name| entry.file_name() == std::ffi::OsStr::new(name));
                Ok::<_, RootError>(busy || !fresh)
            })?;
            return Ok(if busy { Found::Unmarked } else { Found::Empty });
        }
        Err(_) if fs_err::symlink_metadata(&marker).is_ok_and(|m| m.is_symlink()) => {
            return Err(RootError::Malformed {
                path: marker,
                reason: "it is a symbolic link".to_owned(),
            });
        }
        Err(e) => return Err(io("open", &marker)(e)),
    };
    let metadata = file.metadata().map_err(io("read", &marker))?;
    if !metadata.is_file() {
        return Err(RootError::Malformed {
            path: marker,
            reason: "it is not a regular file".to_owned(),
        });
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_MARKER + 1), &mut text)
        .map_err(io("read", &marker))?;
    if text.len() as u64 > MAX_MARKER {
        return Err(RootError::Malformed {
            path: marker,
            reason: format!("it is larger than {MAX_MARKER} bytes"),
        });
    }
    let parsed: Marker = serde_json::from_slice(&text).map_err(|e| RootError::Malformed {
        path: marker.clone(),
        reason: e.to_string(),
    })?;
    if parsed.format != FORMAT {
        return Err(RootError::Malformed {
            path: marker,
            reason: format!("format {:?}, this ntt reads {FORMAT:?}", parsed.format),
        });
    }
    Ok(Found::Marked(parsed))
}

/// Creates `dir` if missing, makes it mode 0700 when `fresh` (a new root: a fresh
/// filesystem's root directory is 0755) or takes others' access away otherwise (an adopted
/// root keeps what its group had), and writes its marker (never over an existing one),
/// durably: the file and the directory are fsynced.
///
/// # Errors
///
/// [`RootError::Io`] when the directory or the marker cannot be made (an existing marker, for
/// example written by a concurrent `ntt init`, is `EEXIST`).
pub fn write_marker(dir: &Path, marker: &Marker, fresh: bool) -> Result<(), RootError> {
    crate::private_dir::ensure_private_dir(dir).map_err(io("create", dir))?;
    if fresh {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set the mode of", dir))?;
    }
    let path = dir.join(MARKER);
    let mut text = serde_json::to_vec(marker).map_err(|e| RootError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.push(b'\n');
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o440)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io("create the marker", &path))?;
    file.write_all(&text).map_err(io("write", &path))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o440))
        .map_err(io("set the mode of", &path))?;
    file.sync_all().map_err(io("fsync", &path))?;
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

/// Checks that `dir` is an initialised root of `kind` belonging to the catalog `catalog`.
///
/// # Errors
///
/// [`RootError::Missing`], [`RootError::NotInitialised`] (also for a directory with files but
/// no marker), [`RootError::WrongKind`], [`RootError::Foreign`], or what [`inspect`] returns.
pub fn check(kind: RootKind, dir: &Path, catalog: &str) -> Result<Marker, RootError> {
    judge(kind, dir, inspect(dir)?, catalog)
}

/// [`check`] of what [`inspect`] found in `dir` already (pure).
///
/// # Errors
///
/// As [`check`].
pub fn judge(kind: RootKind, dir: &Path, found: Found, catalog: &str) -> Result<Marker, RootError> {
    let path = || dir.to_owned();
    match found {
        Found::Missing => Err(RootError::Missing { kind, path: path() }),
        Found::Empty | Found::Unmarked => Err(RootError::NotInitialised { kind, path: path() }),
        Found::Marked(marker) if marker.kind != kind => Err(RootError::WrongKind {
            kind,
            found: marker.kind,
            path: path(),
        }),
        Found::Marked(marker) if marker.catalog != catalog => Err(RootError::Foreign {
            kind,
            path: path(),
            theirs: marker.catalog,
            ours: catalog.to_owned(),
        }),
        Found::Marked(marker) => Ok(marker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ntt-roots-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_root_is_missing_empty_unmarked_or_marked() {
        let dir = scratch("states");
        assert_eq!(inspect(&dir).unwrap(), Found::Missing);
        fs_err::create_dir_all(dir.join("lost+found")).unwrap();
        assert_eq!(
            inspect(&dir).unwrap(),
            Found::Empty,
            "a fresh filesystem is empty"
        );
        fs_err::write(dir.join("ab"), b"").unwrap();
        assert_eq!(inspect(&dir).unwrap(), Found::Unmarked);
        let marker = Marker::new(RootKind::Store, "r1".to_owned(), "c1".to_owned());
        write_marker(&dir, &marker, true).unwrap();
        assert_eq!(inspect(&dir).unwrap(), Found::Marked(marker.clone()));
        let mode = fs_err::metadata(dir.join(MARKER))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o440);
        let again = write_marker(&dir, &marker, true).unwrap_err();
        assert!(
            matches!(&again, RootError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{again}"
        );
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_refuses_missing_unmarked_foreign_and_wrong_kind_roots() {
        let dir = scratch("check");
        let message = |e: RootError| e.to_string();
        let missing = message(check(RootKind::Store, &dir, "c1").unwrap_err());
        assert!(
            missing.contains("does not exist") && missing.contains("mount"),
            "{missing}"
        );
        fs_err::create_dir_all(&dir).unwrap();
        let bare = message(check(RootKind::Store, &dir, "c1").unwrap_err());
        assert!(
            bare.contains("not initialised") && bare.contains("ntt init"),
            "{bare}"
        );
        let marker = Marker::new(RootKind::Data, "r1".to_owned(), "c1".to_owned());
        write_marker(&dir, &marker, true).unwrap();
        assert!(matches!(
            check(RootKind::Store, &dir, "c1").unwrap_err(),
            RootError::WrongKind {
                found: RootKind::Data,
                ..
            }
        ));
        assert!(matches!(
            check(RootKind::Data, &dir, "c2").unwrap_err(),
            RootError::Foreign { theirs, ours, .. } if theirs == "c1" && ours == "c2"
        ));
        assert_eq!(check(RootKind::Data, &dir, "c1").unwrap(), marker);
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_marker_that_is_a_link_garbage_or_unknown_is_refused() {
        let dir = scratch("malformed");
        fs_err::create_dir_all(&dir).unwrap();
        let target = dir.join("elsewhere");
        let good = Marker::new(RootKind::Store, "r1".to_owned(), "c1".to_owned());
        fs_err::write(&target, serde_json::to_vec(&good).unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(MARKER)).unwrap();
        assert!(
            matches!(inspect(&dir).unwrap_err(), RootError::Malformed { reason, .. }
            if reason.contains("symbolic link"))
        );
        fs_err::remove_file(dir.join(MARKER)).unwrap();
        fs_err::write(dir.join(MARKER), b"{not json").unwrap();
        assert!(matches!(
            inspect(&dir).unwrap_err(),
            RootError::Malformed { .. }
        ));
        let mut future = good;
        future.format = "ntt-root/9".to_owned();
        fs_err::write(dir.join(MARKER), serde_json::to_vec(&future).unwrap()).unwrap();
        assert!(
            matches!(inspect(&dir).unwrap_err(), RootError::Malformed { reason, .. }
            if reason.contains("ntt-root/9"))
        );
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
