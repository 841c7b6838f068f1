//! Copying: every pending file of a medium into the store, remounting a lost volume once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::MediumRecord;
use crate::catalog::{copying, names, report};
use crate::copy::{self as stage, CopyReport, CopyStageError};
use crate::store::Store;

/// How to copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Concurrent copy workers in this process (other processes or hosts may run too).
    pub workers: usize,
    /// Attempts after which a transient failure (I/O error, ...) is final.
    pub max_attempts: i32,
    /// Delay before the first retry of a failed file (doubled on each later attempt).
    pub retry_delay: Duration,
    /// Most files per batch.
    pub batch_files: i64,
    /// Most MiB per batch (a bigger file goes alone).
    pub batch_mib: i64,
    /// Attach a medium whose health is `failed`.
    pub force: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            max_attempts: 3,
            retry_delay: Duration::from_secs(2),
            batch_files: stage::DEFAULT_BATCH_FILES,
            batch_mib: stage::DEFAULT_BATCH_MIB,
            force: false,
        }
    }
}

/// Opens the store.
pub fn open_store(host: &Host) -> Result<Arc<Store>> {
    Ok(Arc::new(Store::open(&host.store).map_err(|source| {
        PipelineError::Store {
            path: host.store.clone(),
            source,
        }
    })?))
}

/// Copies the medium's pending files into the store, showing progress (a bar on a terminal, a
/// log line every 10 s otherwise). When a volume is lost (its mount stops answering: a FUSE
/// driver died, a device went away), releases everything, attaches again and goes on, once. A
/// second loss stops the run: a medium that keeps dropping out needs a person (and its files
/// stay pending, not failed).
pub async fn copy(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    options: &CopyOptions,
    cancel: &CancellationToken,
) -> Result<CopyReport> {
    if crate::catalog::load::published_entries(catalog.pool(), medium.id)
        .await?
        .is_none()
    {
        return Err(PipelineError::NotEnumerated {
            medium: medium.name.clone(),
        });
    }
    let store = open_store(host)?;
    let mut stage_options = stage::CopyOptions {
        workers: options.workers.clamp(1, 64),
        batch_files: options.batch_files.clamp(1, 100_000),
        batch_bytes: options.batch_mib.clamp(1, 1 << 20) << 20,
        read_timeout: host.read_timeout,
        ..stage::CopyOptions::default()
    };
    stage_options.retry.max_attempts = options.max_attempts.max(1);
    stage_options.retry.backoff = options.retry_delay.min(Duration::from_hours(1));
    // The run's name: host, process and start time, so that a later process with the same pid
    // is another run (a dead run's leases are free; a live run's are waited for).
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = format!("{}:{}:{started:x}", crate::host_name(), std::process::id());
    // The run's lock, held across a remount: while it is held no one takes this run's leases;
    // if this process dies, the database drops it and every lease of the run is free at once.
    let lock = copying::begin_run(catalog.pool(), &name).await?;
    let pending = report::content(catalog.pool(), medium.id)
        .await?
        .pending_bytes;
    let progress = stage::Progress::default();
    let ticker = crate::progress::Ticker::start(
        "copy",
        progress.clone(),
        Some(u64::try_from(pending).unwrap_or(0)),
    );
    let run = Run {
        catalog,
        host,
        medium,
        store: &store,
        lock: &lock,
        options: stage_options,
        progress: &progress,
        force: options.force,
        cancel,
    };
    // The medium's names are indexed beside the copy (reads set its pace, which leaves CPU
    // for it); an index that fails only leaves the medium searched path by path.
    let (result, ()) = tokio::join!(run.remounting_once(), index_names(catalog, medium, cancel));
    ticker.finish().await;
    if let Err(error) = lock.end().await {
        tracing::warn!(%error, "ending the copy run's lock (its session was closed instead)");
    }
    let report = result?;
    // Success means nothing is pending: whatever is left is said, never taken for done.
    let pending = copying::pending(catalog.pool(), medium.id).await?;
    if pending.total > 0 {
        return Err(PipelineError::Pending {
            medium: medium.name.clone(),
            pending,
        });
    }
    Ok(report)
}

/// Indexes the names of the medium's load for `ntt find` unless they are already, or the run
/// is cancelled; logs the outcome.
async fn index_names(catalog: &Catalog, medium: &MediumRecord, cancel: &CancellationToken) {
    let indexed = tokio::select! {
        indexed = names::index_names(catalog.pool(), medium.id) => indexed,
        () = cancel.cancelled() => return,
    };
    match indexed {
        Ok(outcome) => tracing::info!(medium = %medium.name, ?outcome, "name index"),
        Err(error) => tracing::warn!(
            medium = %medium.name,
            %error,
            "could not index the medium's names; `ntt find` reads its paths instead (`ntt index-names` retries)"
        ),
    }
}

/// One copy run's whole input.
struct Run<'a> {
    catalog: &'a Catalog,
    host: &'a Host,
    medium: &'a MediumRecord,
    store: &'a Arc<Store>,
    lock: &'a copying::RunLock,
    options: stage::CopyOptions,
    progress: &'a stage::Progress,
    force: bool,
    cancel: &'a CancellationToken,
}

impl Run<'_> {
    async fn remounting_once(&self) -> Result<CopyReport> {
        let medium = self.medium;
        let failed = |source, detail| PipelineError::Copy {
            medium: medium.name.clone(),
            detail,
            source: Box::new(source),
        };
        let mut total = CopyReport::default();
        let mut remounted = false;
        loop {
            let attached =
                super::attach::attach(self.catalog, self.host, medium, self.force, self.cancel)
                    .await?;
            // Deleted files whose recovered content was not checked yet (a run killed after
            // publishing its load) are checked before anything is copied.
            if let Err(error) =
                super::deleted::check_attached(self.catalog, medium, &attached, self.cancel).await
            {
                if let Err(release) = super::attach::release(medium, attached) {
                    tracing::warn!(error = %release, "releasing the volumes failed too");
                }
                return Err(error);
            }
            let readers: BTreeMap<i32, _> = attached
                .volumes
                .iter()
                .map(|v| (v.volume_no, v.reader.clone()))
                .collect();
            let result = stage::copy_medium(
                self.catalog.pool(),
                medium.id,
                readers,
                self.store.clone(),
                self.lock,
                self.options,
                self.progress,
                self.cancel,
            )
            .await;
            let released = super::attach::release(medium, attached);
            let (volume_no, so_far) = match result {
                Err(CopyStageError::VolumeLost { volume_no, so_far }) => (volume_no, so_far),
                Err(error) => {
                    if let Err(release) = released {
                        tracing::warn!(error = %release, "releasing the volumes failed too");
                    }
                    return Err(failed(error, ""));
                }
                Ok(report) => {
                    released?;
                    if self.cancel.is_cancelled() {
                        return Err(PipelineError::Interrupted);
                    }
                    total.add(&report);
                    return Ok(total);
                }
            };
            total.add(&so_far);
            let detail = serde_json::json!({
                "volume_no": volume_no,
                "times": if remounted { 2 } else { 1 },
                "stopped": remounted,
            });
            crate::catalog::copying::record_problem(
                self.catalog.pool(),
                medium.id,
                "volume_lost",
                detail,
            )
            .await?;
            if let Err(error) = released {
                // The next attach repairs what is left (a dead FUSE mount is unmounted).
                tracing::warn!(error = %error, "releasing the lost volume failed");
            }
            if remounted {
                return Err(failed(
                    CopyStageError::VolumeLost { volume_no, so_far },
                    " (its volumes were mounted again once already)",
                ));
            }
            remounted = true;
            tracing::warn!(
                medium = %medium.name,
                volume = volume_no,
                "volume {volume_no} stopped answering: mounting it again (once)"
            );
            if self.cancel.is_cancelled() {
                return Err(PipelineError::Interrupted);
            }
        }
    }
}
