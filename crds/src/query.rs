//! The catalog's query API: `ntt serve` answers, `kubectl ntt find|where|overlap|report`
//! asks through the API server's service proxy (so Kubernetes authenticates and authorizes
//! each person, and nobody execs into the privileged agent).
//!
//! A query is `GET /v1/{command}?arg=A&arg=B...`: the command (`find`, `where`, `overlap`,
//! `report`, `status`) and its arguments as `ntt` takes them, each in unpadded base64url so that
//! a pattern that is not UTF-8 arrives byte for byte. The answer is always `200` with a
//! [`QueryAnswer`]: what `ntt COMMAND ARGS` would print and its exit code.

use std::ffi::OsStr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::BlobId;

/// Where queries go: `{QUERY_PREFIX}{command}`.
pub const QUERY_PREFIX: &str = "/v1/";

/// The query parameter that carries one argument (base64url, no padding).
pub const ARG_PARAM: &str = "arg";

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// The command's exit code: 0 answered, 1 nothing found (or the query failed, see
    /// `stderr`), 2 the arguments were refused.
    pub exit_code: u8,
    /// What the command printed, byte for byte (standard base64: paths need not be UTF-8).
    pub stdout_b64: String,
    /// Notes and errors for the person who asked.
    pub stderr: String,
}

/// Why the target of `ntt where` / `kubectl ntt where` names no content.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A directory was given.
    #[error("{0} is a directory: give a file or a hash")]
    Directory(String),
    /// A FIFO, device or socket was given (a FIFO would wait for a writer forever).
    #[error("{0} is not a regular file: give a file or a hash")]
    NotAFile(String),
    /// The file could not be read (the error names it).
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// Neither a file here nor a hash.
    #[error("{target} is no file here and no BLAKE3 hash (64 hex digits)")]
    Neither {
        /// What was given.
        target: String,
        /// Why it is no file.
        #[source]
        source: std::io::Error,
    },
}

/// The content a `where` target names: a local file's BLAKE3 hash (hashed here), or a hash as
/// given (any case). One definition for `ntt where` and `kubectl ntt where`, so both mean the
/// same content by the same words.
///
/// # Errors
///
/// The target is a directory or not a regular file, cannot be read, or is neither a file nor
/// a hash.
pub fn content_of(target: &OsStr) -> Result<BlobId, TargetError> {
    let path = Path::new(target);
    let shown = || path.display().to_string();
    match fs_err::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(TargetError::Directory(shown())),
        Ok(meta) if !meta.is_file() => Err(TargetError::NotAFile(shown())),
        Ok(_) => {
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(fs_err::File::open(path)?)?;
            Ok(BlobId::from_bytes(*hasher.finalize().as_bytes()))
        }
        Err(source) => target
            .to_string_lossy()
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| TargetError::Neither {
                target: shown(),
                source,
            }),
    }
}
