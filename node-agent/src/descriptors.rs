//! The process's file descriptor budget.
//!
//! A copy holds descriptors for every staged blob (an open temp file until its batch is
//! synced), every source file being read, database connections, mounts, FUSE drivers and The
//! Sleuth Kit. Start-up raises the soft limit to the hard one; the copy bounds the blobs each
//! worker stages by what is left after a reserve for the rest; running out anyway (EMFILE,
//! ENFILE) stops the run, and never counts against the file being opened.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept for everything but the workers: the database connections not tied to a
/// worker, the run's lock, the store, mounts, loop devices, FUSE, The Sleuth Kit, the runtime,
/// standard streams.
pub const RESERVE: u64 = 32;

/// Descriptors a copy worker needs at least: its database connection, the source it reads, the
/// temp file it writes and one staged blob.
pub const PER_WORKER: u64 = 4;

/// Most blobs one worker stages before syncing them, whatever the limit.
pub const MAX_STAGED: usize = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit then in force
/// (the old one when it cannot be raised).
pub fn raise_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return limit();
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::debug!(from = soft, to = hard, "raised the open file limit");
        return hard;
    }
    soft
}

/// The soft `RLIMIT_NOFILE` now (1024 when it cannot be read).
pub fn limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// How many of the `wanted` copy workers fit under a limit of `limit` descriptors (pure): all
/// of them, or as many as [`RESERVE`] and [`PER_WORKER`] allow; `None` when not even one does.
pub fn workers_within(limit: u64, wanted: usize) -> Option<usize> {
    let fit = usize::try_from(limit.saturating_sub(RESERVE) / PER_WORKER).unwrap_or(usize::MAX);
    match wanted.max(1).min(fit) {
        0 => None,
        workers => Some(workers),
    }
}

/// Blobs each of `workers` workers may stage under a limit of `limit` descriptors (pure): what
/// is left after [`RESERVE`], shared, less the connection, source and temp file each worker
/// has open while it copies; at least 1, at most [`MAX_STAGED`].
pub fn staged_per_worker(limit: u64, workers: usize) -> usize {
    let workers = u64::try_from(workers.max(1)).unwrap_or(u64::MAX);
    let share = limit.saturating_sub(RESERVE) / workers;
    usize::try_from(share.saturating_sub(PER_WORKER - 1))
        .unwrap_or(MAX_STAGED)
        .clamp(1, MAX_STAGED)
}

/// Whether an error is the process or the system running out of descriptors.
pub fn is_exhausted(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_blobs_share_what_the_reserve_leaves() {
        assert_eq!(staged_per_worker(1024, 4), 245);
        assert_eq!(staged_per_worker(1_048_576, 4), MAX_STAGED);
        assert_eq!(staged_per_worker(128, 4), 21);
        assert_eq!(staged_per_worker(40, 4), 1, "never none");
        assert_eq!(staged_per_worker(0, 0), 1);
    }

    #[test]
    fn workers_are_as_many_as_the_limit_allows() {
        assert_eq!(workers_within(1024, 4), Some(4));
        assert_eq!(workers_within(1024, 0), Some(1));
        assert_eq!(workers_within(40, 64), Some(2));
        assert_eq!(workers_within(35, 4), None);
    }

    /// Each test runs in a process of its own (nextest), so lowering the limit touches no other.
    #[test]
    fn a_soft_limit_below_the_hard_one_is_raised() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 64.min(hard), hard).unwrap();
        assert_eq!(limit(), 64.min(hard));
        assert_eq!(raise_limit(), hard);
        assert_eq!(limit(), hard);
    }

    #[test]
    fn only_emfile_and_enfile_are_exhaustion() {
        use nix::libc;
        let of = |code| is_exhausted(&std::io::Error::from_raw_os_error(code));
        assert!(of(libc::EMFILE) && of(libc::ENFILE));
        assert!(!of(libc::EIO) && !of(libc::ENOSPC));
    }
}
