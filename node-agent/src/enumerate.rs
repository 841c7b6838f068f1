//! Stage 3: walk every attached volume of a medium and load every entry into the catalog.
//!
//! ```text
//!   AttachedVolume ─ VolumeReader::walk_parallel (threads) ─ bounded channel ─ Loader (binary COPY)
//!                                                              ignore patterns mark, never drop
//! ```
//!
//! Rules: every entry the walk meets becomes a path row, matching an ignore pattern or not
//! (matching ones carry the pattern as their exclusion reason); unreadable entries become entry
//! error rows; memory stays bounded by the channel between the walkers and the loader; the new
//! load is published only when complete and reconciled ([`crate::catalog::load`]).

pub mod ignore;

use tokio_util::sync::CancellationToken;

use crate::catalog::load::{self, LoadCounts, LoadError, Loader};
use crate::catalog::media::MediumId;
use crate::volume::access::{AttachedVolume, Method};
use crate::volume::reader::{ReadError, WalkItem};
use ignore::IgnoreSet;

/// Why enumeration stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnumerateError {
    /// Loading failed (the published load is untouched).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A volume could not be walked at all.
    #[error("cannot walk volume {volume_no}")]
    Walk {
        /// The volume.
        volume_no: i32,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The run was cancelled (the published load is untouched).
    #[error("enumeration cancelled; the catalog still holds the previous load, if any")]
    Cancelled,
    /// A walker thread died.
    #[error("a walker thread failed")]
    Task(#[from] tokio::task::JoinError),
}

/// What one enumeration did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnumerateReport {
    /// Entries walked per volume.
    pub volumes: Vec<(i32, u64)>,
    /// What the published load holds.
    pub counts: LoadCounts,
    /// Whether an earlier load was replaced.
    pub replaced: bool,
    /// Wall time of the whole run (walk, load, publish), seconds.
    pub seconds: f64,
    /// The damage map made after the load (media with unreadable areas).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<crate::damage::VolumeReport>,
    /// Deleted files' recovered content checked after the load (per deleted volume).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<crate::catalog::deleted::Checked>,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct EnumerateOptions {
    /// Directory readers per mounted volume.
    pub threads: usize,
    /// Build a new load and swap it in even if one is published.
    pub replace: bool,
    /// Bytes of rows the load may hold to send them in key order.
    pub sort_memory: usize,
    /// Entries walked so far, for progress display.
    pub progress: std::sync::Arc<crate::progress::Counter>,
    /// How long one call to a mounted volume's filesystem may take before the watchdog aborts
    /// it and the walk fails ([`crate::volume::watchdog`]).
    pub read_timeout: std::time::Duration,
}

/// Messages from the walker threads to the loader.
enum Walked {
    Batch(Vec<WalkItem>),
    Done(Result<(), ReadError>),
}

/// Walks `volumes` and publishes the load of `medium`. Blocking work runs on blocking threads;
/// the loader sends rows as they come.
pub async fn enumerate(
    pool: &sqlx::PgPool,
    medium: MediumId,
    medium_name: &str,
    volumes: &[AttachedVolume],
    ignore: &IgnoreSet,
    options: &EnumerateOptions,
    cancel: &CancellationToken,
) -> Result<EnumerateReport, EnumerateError> {
    let started = std::time::Instant::now();
    if !options.replace {
        refuse_if_loaded(pool, medium, medium_name).await?;
    }
    let mut loader = Loader::begin(pool, medium, options.sort_memory).await?;
    let mut per_volume = Vec::new();
    for volume in volumes {
        if volume.method == Method::Userspace {
            loader.dedupe_every_inode_of(volume.volume_no);
        }
        let before = loader.counts().entries;
        walk_one(&mut loader, volume, ignore, options, cancel).await?;
        per_volume.push((volume.volume_no, loader.counts().entries - before));
    }
    if cancel.is_cancelled() {
        return Err(EnumerateError::Cancelled);
    }
    let counts = loader.publish(medium_name, options.replace).await?;
    Ok(EnumerateReport {
        volumes: per_volume,
        counts,
        replaced: options.replace,
        seconds: started.elapsed().as_secs_f64(),
        damage: Vec::new(),
        deleted: Vec::new(),
    })
}

async fn refuse_if_loaded(
    pool: &sqlx::PgPool,
    medium: MediumId,
    medium_name: &str,
) -> Result<(), EnumerateError> {
    if let Some(entries) = load::published_entries(pool, medium).await? {
        return Err(LoadError::AlreadyLoaded {
            medium: medium_name.to_owned(),
            entries,
        }
        .into());
    }
    Ok(())
}

async fn walk_one(
    loader: &mut Loader,
    volume: &AttachedVolume,
    ignore: &IgnoreSet,
    options: &EnumerateOptions,
    cancel: &CancellationToken,
) -> Result<(), EnumerateError> {
    let threads = options.threads;
    let read_timeout = options.read_timeout;
    // At most 64 batches (of up to 1024 entries) wait for the loader: bounded memory.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Walked>(64);
    let reader = volume.reader.clone();
    let walker_cancel = cancel.clone();
    let walker = tokio::task::spawn_blocking(move || {
        let result = reader.walk_watched(threads, read_timeout, &|batch| {
            if !walker_cancel.is_cancelled() {
                // A closed channel means the loader gave up; the walk then just drains.
                let _ = sender.blocking_send(Walked::Batch(batch));
            }
        });
        let _ = sender.blocking_send(Walked::Done(result));
    });
    let volume_no = volume.volume_no;
    let mut outcome = Ok(());
    while let Some(message) = receiver.recv().await {
        match message {
            Walked::Batch(batch) => {
                options.progress.add(batch.len() as u64, 0);
                for item in batch {
                    match item {
                        WalkItem::Entry(entry) => {
                            let excluded = ignore.reason(&entry.path);
                            loader.add_entry(volume_no, &entry, excluded.as_deref())?;
                        }
                        WalkItem::Excluded { entry, reason } => {
                            loader.add_entry(volume_no, &entry, Some(&reason))?;
                        }
                        WalkItem::Error { path, error } => {
                            tracing::warn!(volume = volume_no, path = %String::from_utf8_lossy(&path), error = %error, "entry cannot be read; recorded");
                            loader.add_error(volume_no, &path, &error);
                        }
                    }
                }
            }
            Walked::Done(result) => {
                outcome = result.map_err(|source| EnumerateError::Walk { volume_no, source });
            }
        }
        if loader.wants_flush() {
            loader.flush().await?;
        }
    }
    walker.await?;
    if cancel.is_cancelled() {
        return Err(EnumerateError::Cancelled);
    }
    outcome
}
