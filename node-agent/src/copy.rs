//! Stage 4: copy every pending file of a medium into the store, once per inode, in parallel.
//!
//! ```text
//!   worker × N: claim batch (short tx, lease) ─ read + hash + write temp (blocking thread)
//!               ─ link into the store ─ syncfs ─ record batch (short tx) ─ again
//! ```
//!
//! Rules: each file is read once (hashed while written); nothing is recorded as copied before
//! its blob is durable; a failure is classified and counted against the inode (transient ones
//! retried after a backoff, permanent ones final), never recorded as success; a full store or
//! a lost volume stops the run cleanly with the leases given back, and nothing copied is lost.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogError;
use crate::catalog::copying::{self, Claimed, ErrorClass, Outcome, RetryPolicy};
use crate::catalog::media::MediumId;
use crate::store::{CopyError, Store, StoreError};
use crate::volume::reader::VolumeReader;
use crate::volume::watchdog::{Clock, Watchdog};

/// Why a copy run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CopyStageError {
    /// The catalog failed (database down, ...): what was recorded stays.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The store is full: free space (or point `NTT_STORE` elsewhere) and run again.
    #[error(
        "stopped: {0}; free space in the store and run `ntt copy` again (nothing copied is lost)"
    )]
    StoreFull(#[source] StoreError),
    /// The store failed otherwise.
    #[error("stopped: the store failed")]
    Store(#[source] StoreError),
    /// A volume stopped answering.
    #[error(
        "stopped: volume {volume_no} was lost (its mount stopped answering); check the drive and its connection, then run again (nothing copied is lost)"
    )]
    VolumeLost {
        /// The volume.
        volume_no: i32,
        /// What the run did before it stopped (its copies are recorded and stay).
        so_far: Box<CopyReport>,
    },
    /// The process ran out of file descriptors: no file is blamed for it.
    #[error(
        "stopped: out of file descriptors (limit {limit}); raise the open file limit (ulimit -n) \
         or use fewer --workers, then run again (nothing copied is lost)"
    )]
    OutOfDescriptors {
        /// The soft limit in force.
        limit: u64,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The open file limit leaves no room for even one worker.
    #[error(
        "the open file limit ({limit}) is too low to copy: at least {needed} are needed; raise it \
         (ulimit -n)"
    )]
    DescriptorLimit {
        /// The soft limit in force.
        limit: u64,
        /// What one worker needs with the reserve.
        needed: u64,
    },
    /// A worker task died.
    #[error("a copy worker failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Options of a run.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Concurrent workers in this process.
    pub workers: usize,
    /// Most files per batch.
    pub batch_files: i64,
    /// Most bytes per batch (a bigger file goes alone).
    pub batch_bytes: i64,
    /// How long a claim is leased.
    pub lease: Duration,
    /// Failures and retries.
    pub retry: RetryPolicy,
    /// How long one open or read of a source may take before the watchdog aborts it and the
    /// volume is given up ([`crate::volume::watchdog`]).
    pub read_timeout: Duration,
}

/// The default of [`CopyOptions::read_timeout`]: one read of a local image through any driver
/// takes milliseconds; minutes mean the driver hangs.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_mins(2);

/// Files and bytes copied so far, for progress display.
pub type Progress = std::sync::Arc<crate::progress::Counter>;

/// Most files per batch by default. Every batch costs two `syncfs` of the store; with 8192
/// files / 1 GiB (against 2048 / 256 MiB) the benchmark corpus copied 8 % faster, and a killed
/// run's leases, which hold a batch until they expire, still cover little of a medium.
pub const DEFAULT_BATCH_FILES: i64 = 8192;
/// Most MiB per batch by default (a bigger file goes alone).
pub const DEFAULT_BATCH_MIB: i64 = 1024;

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            batch_files: DEFAULT_BATCH_FILES,
            batch_bytes: DEFAULT_BATCH_MIB << 20,
            lease: Duration::from_mins(15),
            read_timeout: DEFAULT_READ_TIMEOUT,
            retry: RetryPolicy {
                max_attempts: 3,
                backoff: Duration::from_secs(2),
                history: 10,
            },
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// Inodes copied by this run.
    pub copied: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Blobs this run added to the store (the rest were there already).
    pub new_blobs: u64,
    /// Failures recorded (an inode may fail several times before its last attempt).
    pub failures: u64,
    /// Whether nothing is pending any more.
    pub complete: bool,
}

#[derive(Default)]
struct Totals {
    copied: AtomicU64,
    bytes: AtomicU64,
    new_blobs: AtomicU64,
    failures: AtomicU64,
    beyond_eof: AtomicBool,
}

/// The class of a source read error, and whether it is final (pure).
pub fn classify(error: &std::io::Error) -> (ErrorClass, bool) {
    use nix::libc;
    match error.raw_os_error() {
        Some(libc::EIO) => (ErrorClass::Io, false),
        Some(libc::ENXIO | libc::EOVERFLOW | libc::EFBIG) => (ErrorClass::BeyondEof, true),
        Some(libc::ENOENT | libc::ESTALE) => (ErrorClass::Vanished, true),
        Some(libc::EACCES | libc::EPERM) => (ErrorClass::Permission, true),
        Some(libc::ENAMETOOLONG | libc::EILSEQ | libc::ELOOP) => (ErrorClass::Name, true),
        Some(libc::EUCLEAN) => (ErrorClass::Io, true),
        _ => match error.kind() {
            std::io::ErrorKind::NotFound => (ErrorClass::Vanished, true),
            std::io::ErrorKind::PermissionDenied => (ErrorClass::Permission, true),
            std::io::ErrorKind::UnexpectedEof => (ErrorClass::BeyondEof, true),
            _ => (ErrorClass::Unknown, false),
        },
    }
}

/// A file's outcome before it is recorded (store failures stop the run instead).
enum FileResult {
    /// Failed.
    Done(Outcome),
    /// Copied into a temp file of the store, not yet linked into place.
    Staged(crate::store::StagedBlob),
    Stop(CopyStageError),
}

fn copy_one(
    store: &Store,
    reader: &VolumeReader,
    claimed: &Claimed,
    buffer: &mut [u8],
    clock: &Arc<Clock>,
) -> FileResult {
    let failed = |error: &std::io::Error, what: &str| {
        let (class, permanent) = classify(error);
        FileResult::Done(Outcome::Failed {
            class,
            message: format!("{what}: {error}"),
            permanent,
        })
    };
    let ino = u64::from_ne_bytes(claimed.ino.to_ne_bytes());
    let source: Box<dyn Read + Send> = match reader.open_watched(&claimed.path, ino, clock) {
        Ok(source) => source,
        Err(error @ crate::volume::reader::ReadError::Changed { .. }) => {
            return FileResult::Done(Outcome::Failed {
                class: ErrorClass::Vanished,
                message: error.to_string(),
                permanent: true,
            });
        }
        Err(error) => {
            let io = error.into_io();
            if crate::descriptors::is_exhausted(&io) {
                return FileResult::Stop(out_of_descriptors(io));
            }
            return failed(&io, "open");
        }
    };
    let expected = u64::try_from(claimed.size).unwrap_or(0);
    // At most one byte more than listed: a file that grew is told from one that did not, and
    // an endless one (a live tree) cannot keep the worker.
    let mut source = source.take(expected.saturating_add(1));
    let mut writer = match store.writer() {
        Ok(writer) => writer,
        Err(error) => return store_stop(error),
    };
    let copied = match writer.copy_from(store, &mut source, buffer) {
        Ok(copied) => copied,
        Err(CopyError::Source(error)) => return failed(&error, "read"),
        Err(CopyError::Store(error)) => return store_stop(error),
    };
    if copied > expected {
        return FileResult::Done(Outcome::Failed {
            class: ErrorClass::Vanished,
            message: format!(
                "changed since it was listed: longer than the {expected} bytes listed"
            ),
            permanent: true,
        });
    }
    if copied < expected {
        return FileResult::Done(Outcome::Failed {
            class: ErrorClass::BeyondEof,
            message: format!(
                "read {copied} of {expected} bytes: the file ends early (beyond the end of its device?)"
            ),
            permanent: true,
        });
    }
    let staged = match writer.finish(store) {
        Ok(staged) => staged,
        Err(error) => return store_stop(error),
    };
    FileResult::Staged(staged)
}

fn store_stop(error: StoreError) -> FileResult {
    FileResult::Stop(store_error(error))
}

/// Copies the pending files of `medium` from `volumes` into `store` with `options.workers`
/// workers named after the run, whose lock (`run`) the caller holds for as long as it runs:
/// it is what keeps other runs off this run's leases.
#[expect(
    clippy::too_many_arguments,
    reason = "the stage's whole input; a struct for one call site would only move the list"
)]
pub async fn copy_medium(
    pool: &PgPool,
    medium: MediumId,
    volumes: BTreeMap<i32, VolumeReader>,
    store: Arc<Store>,
    run: &copying::RunLock,
    options: CopyOptions,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<CopyReport, CopyStageError> {
    let worker = run.name();
    let limit = crate::descriptors::limit();
    let Some(workers) = crate::descriptors::workers_within(limit, options.workers) else {
        return Err(CopyStageError::DescriptorLimit {
            limit,
            needed: crate::descriptors::RESERVE + crate::descriptors::PER_WORKER,
        });
    };
    if workers < options.workers {
        tracing::warn!(
            asked = options.workers,
            workers,
            limit,
            "the open file limit allows fewer workers; raise it (ulimit -n) for more"
        );
    }
    let options = CopyOptions { workers, ..options };
    let max_staged = crate::descriptors::staged_per_worker(limit, workers);
    let swept = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.remove_stale_temp()).await?
    }
    .map_err(CopyStageError::Store)?;
    if swept > 0 {
        tracing::info!(files = swept, "removed temp files of dead writers");
    }
    let volumes = Arc::new(volumes);
    let totals = Arc::new(Totals::default());
    let stop = CancellationToken::new();
    let watchdog = Arc::new(Watchdog::new(options.read_timeout));
    let watching = watchdog.clone().watch();
    let mut tasks = Vec::new();
    for n in 0..workers {
        let name = format!("{worker}/{n}");
        let clock = watchdog.clock();
        let (pool, store, volumes, totals, stop, cancel, progress) = (
            pool.clone(),
            store.clone(),
            volumes.clone(),
            totals.clone(),
            stop.clone(),
            cancel.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let context = Worker {
                pool: &pool,
                medium,
                name: &name,
                store: &store,
                volumes: &volumes,
                totals: &totals,
                progress: &progress,
                max_staged,
                clock: &clock,
            };
            let result = run_worker(&context, options, &stop, &cancel).await;
            if result.is_err() {
                stop.cancel();
            }
            // Whatever this worker still holds goes back now.
            let released = copying::release_leases(&pool, medium, &name).await;
            result.and(released.map_err(CopyStageError::from))
        }));
    }
    let mut first_error = None;
    for task in tasks {
        if let Err(error) = task.await? {
            first_error.get_or_insert(error);
        }
    }
    drop(watching);
    if totals.beyond_eof.load(Ordering::Relaxed) {
        copying::record_problem(pool, medium, "beyond_eof", serde_json::json!(true)).await?;
    }
    let mut report = CopyReport {
        copied: totals.copied.load(Ordering::Relaxed),
        bytes: totals.bytes.load(Ordering::Relaxed),
        new_blobs: totals.new_blobs.load(Ordering::Relaxed),
        failures: totals.failures.load(Ordering::Relaxed),
        complete: false,
    };
    match first_error {
        // A lost volume is recorded by the caller, which decides whether to mount it again.
        Some(CopyStageError::VolumeLost { volume_no, .. }) => Err(CopyStageError::VolumeLost {
            volume_no,
            so_far: Box::new(report),
        }),
        Some(error) => Err(error),
        None => {
            report.complete =
                !cancel.is_cancelled() && copying::finish_if_done(pool, medium).await?;
            Ok(report)
        }
    }
}

impl CopyReport {
    /// Adds what a later attempt of the same run did; its `complete` is the run's.
    pub fn add(&mut self, later: &Self) {
        self.copied += later.copied;
        self.bytes += later.bytes;
        self.new_blobs += later.new_blobs;
        self.failures += later.failures;
        self.complete = later.complete;
    }
}

/// Looks at a queue that has pending files but none claimable and none held, before a worker
/// gives up (a claim racing another can see an empty batch once; this is not that).
const MAX_IDLE_LOOKS: u32 = 20;

/// How long a worker that found nothing claimable waits before it looks again, `None` when it
/// is done. Done when nothing is pending; else it waits: for retries due later, and for files
/// a live run (a sibling worker, another process or host) is copying, whose leases are never
/// skipped (a dead run's leases were claimable).
async fn wait_for_work(
    pool: &PgPool,
    medium: MediumId,
    idle: u32,
) -> Result<Option<Duration>, CopyStageError> {
    let pending = copying::pending(pool, medium).await?;
    if pending.total == 0 {
        return Ok(None);
    }
    if pending.held == 0 && pending.retrying == 0 && idle > MAX_IDLE_LOOKS {
        // Pending but neither claimable nor held: the caller reports them.
        return Ok(None);
    }
    let wait = if pending.held == 0 && pending.retrying > 0 {
        copying::next_retry(pool, medium)
            .await?
            .and_then(|due| (due - chrono::Utc::now()).to_std().ok())
            .unwrap_or_default()
    } else {
        Duration::from_millis(if pending.held > 0 { 500 } else { 50 })
    };
    Ok(Some(
        wait.clamp(Duration::from_millis(50), Duration::from_secs(5)),
    ))
}

/// What one worker works with.
struct Worker<'a> {
    pool: &'a PgPool,
    medium: MediumId,
    name: &'a str,
    store: &'a Arc<Store>,
    volumes: &'a Arc<BTreeMap<i32, VolumeReader>>,
    totals: &'a Arc<Totals>,
    progress: &'a Progress,
    /// Blobs this worker stages at most before syncing them (its share of the descriptors).
    max_staged: usize,
    /// Times this worker's reads for the watchdog.
    clock: &'a Arc<Clock>,
}

async fn run_worker(
    context: &Worker<'_>,
    options: CopyOptions,
    stop: &CancellationToken,
    cancel: &CancellationToken,
) -> Result<(), CopyStageError> {
    let Worker {
        pool,
        medium,
        name,
        store,
        volumes,
        totals,
        progress,
        max_staged,
        clock,
    } = *context;
    let mut processed = 0u64;
    let mut failed = 0u64;
    let mut warned_rate = false;
    let mut idle = 0u32;
    loop {
        if stop.is_cancelled() || cancel.is_cancelled() {
            return Ok(());
        }
        let batch = copying::claim(
            pool,
            medium,
            name,
            options.batch_files,
            options.batch_bytes,
            options.lease,
        )
        .await?;
        if batch.is_empty() {
            idle += 1;
            let Some(wait) = wait_for_work(pool, medium, idle).await? else {
                return Ok(());
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => continue,
                () = stop.cancelled() => return Ok(()),
                () = cancel.cancelled() => return Ok(()),
            }
        }
        idle = 0;
        let (store2, volumes2, clock2) = (store.clone(), volumes.clone(), clock.clone());
        let (results, halt) = tokio::task::spawn_blocking(move || {
            copy_batch(&store2, &volumes2, &batch, max_staged, &clock2)
        })
        .await
        .map(|(results, halt, new_blobs)| {
            totals.new_blobs.fetch_add(new_blobs, Ordering::Relaxed);
            (results, halt)
        })?;
        // Failures on a volume that no longer answers say nothing about the files: the batch is
        // neither recorded nor counted (its files stay pending, its blobs are found again).
        let failed_on: std::collections::BTreeSet<i32> = results
            .iter()
            .filter(|(_, _, outcome)| matches!(outcome, Outcome::Failed { .. }))
            .map(|(volume_no, _, _)| *volume_no)
            .collect();
        if let Some(volume_no) = failed_on.into_iter().find(|volume_no| {
            volumes
                .get(volume_no)
                .and_then(VolumeReader::root)
                .is_some_and(|root| !crate::volume::host::answers(root))
        }) {
            return Err(CopyStageError::VolumeLost {
                volume_no,
                so_far: Box::default(),
            });
        }
        for (_, _, outcome) in &results {
            match outcome {
                Outcome::Copied { size, .. } => {
                    totals.copied.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(*size, Ordering::Relaxed);
                    progress.add(1, *size);
                }
                Outcome::Failed { class, .. } => {
                    failed += 1;
                    totals.failures.fetch_add(1, Ordering::Relaxed);
                    if *class == ErrorClass::BeyondEof {
                        totals.beyond_eof.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        processed += results.len() as u64;
        copying::record(pool, medium, name, &results, options.retry).await?;
        if !warned_rate && processed >= 100 && failed * 10 > processed {
            warned_rate = true;
            tracing::warn!(processed, failed, "more than 10 % of the files fail");
            copying::record_problem(
                pool,
                medium,
                "high_error_rate",
                serde_json::json!({ "processed": processed, "failed": failed }),
            )
            .await?;
        }
        if let Some(error) = halt {
            return Err(error);
        }
    }
}

/// Copies one claimed batch (blocking): the outcomes, the error that must stop the run (the
/// files after it are left to their lease), and how many blobs were new.
///
/// Durability without a flush per file: every file goes to a temp file first; one `syncfs`
/// makes all their data durable; only then are they linked to their names; a second `syncfs`
/// makes the links durable before the caller records the batch (a batch of many small files
/// does this in parts of at most `max_staged`, the worker's share of the descriptor budget:
/// [`crate::descriptors::staged_per_worker`]). A crash before a sync leaves only temp files
/// (anonymous ones vanish with the process); after it, any link that survived names complete
/// data.
fn copy_batch(
    store: &Store,
    volumes: &BTreeMap<i32, VolumeReader>,
    batch: &[Claimed],
    max_staged: usize,
    clock: &Arc<Clock>,
) -> (Vec<(i32, i64, Outcome)>, Option<CopyStageError>, u64) {
    let mut buffer = vec![0u8; 1 << 20];
    let mut results = Vec::with_capacity(batch.len());
    let mut staged = Vec::new();
    let mut linked = Vec::new();
    let mut new_blobs = 0u64;
    let mut halt = None;
    for claimed in batch {
        let Some(reader) = volumes.get(&claimed.volume_no) else {
            results.push((
                claimed.volume_no,
                claimed.ino,
                Outcome::Failed {
                    class: ErrorClass::Unknown,
                    message: format!("volume {} is not attached", claimed.volume_no),
                    permanent: false,
                },
            ));
            continue;
        };
        let result = copy_one(store, reader, claimed, &mut buffer, clock);
        if clock.take_aborted() {
            // The watchdog aborted a read that stopped answering: what the file got says
            // nothing about it (it stays pending); the volume is given up.
            halt = Some(CopyStageError::VolumeLost {
                volume_no: claimed.volume_no,
                so_far: Box::default(),
            });
            break;
        }
        match result {
            FileResult::Done(outcome) => results.push((claimed.volume_no, claimed.ino, outcome)),
            FileResult::Staged(blob) => staged.push((claimed.volume_no, claimed.ino, blob)),
            FileResult::Stop(error) => {
                halt = Some(error);
                break;
            }
        }
        // Every staged blob holds its temp file open: link them part way through a big batch
        // so that descriptors stay bounded (the final sync below still precedes the commit).
        if staged.len() >= max_staged
            && let Err(error) = publish_staged(store, &mut staged, &mut linked, &mut new_blobs)
        {
            halt = Some(error);
            break;
        }
    }
    // Blobs staged before a stop are complete: they are kept (a full store still syncs).
    if !staged.is_empty()
        && let Err(error) = publish_staged(store, &mut staged, &mut linked, &mut new_blobs)
    {
        halt.get_or_insert(error);
    }
    if linked.is_empty() {
        return (results, halt, new_blobs);
    }
    if let Err(error) = store.sync() {
        // The links may not be durable: record none of them; their files get copied again
        // (and find their blobs there).
        return (results, Some(store_error(error)), new_blobs);
    }
    results.extend(linked);
    (results, halt, new_blobs)
}

/// Makes the staged blobs' data durable (one `syncfs`), then links each into place. Blobs not
/// linked (on an error) are dropped with their temp files; nothing of theirs is recorded.
fn publish_staged(
    store: &Store,
    staged: &mut Vec<(i32, i64, crate::store::StagedBlob)>,
    linked: &mut Vec<(i32, i64, Outcome)>,
    new_blobs: &mut u64,
) -> Result<(), CopyStageError> {
    let blobs = std::mem::take(staged);
    store.sync().map_err(store_error)?;
    for (volume_no, ino, blob) in blobs {
        let (id, size, mime) = (blob.id, blob.size, blob.mime.clone());
        let published = blob.publish(store).map_err(store_error)?;
        *new_blobs += u64::from(published == crate::store::Published::New);
        linked.push((
            volume_no,
            ino,
            Outcome::Copied {
                blob: id,
                size,
                mime,
            },
        ));
    }
    Ok(())
}

fn out_of_descriptors(source: std::io::Error) -> CopyStageError {
    CopyStageError::OutOfDescriptors {
        limit: crate::descriptors::limit(),
        source,
    }
}

fn store_error(error: StoreError) -> CopyStageError {
    match error {
        StoreError::Io { source, .. } if crate::descriptors::is_exhausted(&source) => {
            out_of_descriptors(source)
        }
        error if error.is_full() => CopyStageError::StoreFull(error),
        error => CopyStageError::Store(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_are_classified() {
        use nix::libc;
        let of = |code| classify(&std::io::Error::from_raw_os_error(code));
        assert_eq!(of(libc::EIO), (ErrorClass::Io, false));
        assert_eq!(of(libc::ENOENT), (ErrorClass::Vanished, true));
        assert_eq!(of(libc::EACCES), (ErrorClass::Permission, true));
        assert_eq!(of(libc::ENAMETOOLONG), (ErrorClass::Name, true));
        assert_eq!(of(libc::ENXIO), (ErrorClass::BeyondEof, true));
        assert_eq!(of(libc::EAGAIN), (ErrorClass::Unknown, false));
        assert_eq!(
            classify(&std::io::Error::other("icat of inode 5 failed")),
            (ErrorClass::Unknown, false)
        );
    }
}
