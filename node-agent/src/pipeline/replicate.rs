//! A second copy of the store: `ntt replicate --to ROOT`.
//!
//! Rules:
//! - The replica is a directory laid out like the store and marked (`.ntt-root`, kind
//!   `replica`) as this catalog's; an empty directory becomes one only when asked (`--new`):
//!   an empty directory is also what an unmounted disk looks like.
//! - Each blob the replica lacks (no `blob_replica` row) is copied from the store, hashed on
//!   the way (a store file that does not hash to its name is reported, never replicated),
//!   made durable (`syncfs`) before it is linked under its name, then read back from the
//!   replica's disk (its cached pages dropped first) and hashed; only then is it recorded. A
//!   kill at any point leaves nothing recorded that the replica does not hold; the next run
//!   takes up what is not recorded, adopting a file already there when it hashes right.
//! - Pages of blobs in id order, hashed on `jobs` threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ntt_crds::BlobId;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Host, PipelineError, Result};
use crate::catalog::roots as recorded;
use crate::catalog::{Catalog, replicas};
use crate::roots::{self, Found, Marker, RootError, RootKind};
use crate::store::{StagedBlob, Store};

/// Blobs taken from the catalog at a time.
const PAGE: i64 = 256;

/// Options of a replication.
#[derive(Debug, Clone, Copy)]
pub struct ReplicateOptions {
    /// Make an empty directory a replica.
    pub new: bool,
    /// Blobs copied at once.
    pub jobs: usize,
}

/// What a replication did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replication {
    /// The replica's id.
    pub replica: String,
    /// Its root.
    pub root: PathBuf,
    /// Blobs copied, read back and found right.
    pub copied: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Blobs found in the replica already, right (a run killed after linking them).
    pub adopted: u64,
    /// Files in the replica under a blob's name that did not hash to it: replaced.
    pub replaced: u64,
    /// Store blobs that do not hash to their name (hex ids): not replicated; `ntt verify`
    /// records them.
    pub store_wrong: Vec<String>,
    /// Blobs the replica lacks after this run.
    pub lacking: u64,
}

/// The replica root `root`, checked (or, with `new`, made) to be this catalog's replica:
/// its marker.
fn replica_root(root: &Path, catalog_id: &str, new_id: Option<String>) -> Result<Marker> {
    let found = roots::inspect(root)?;
    match (found, new_id) {
        (Found::Empty, Some(id)) => {
            let marker = Marker::new(RootKind::Replica, id, catalog_id.to_owned());
            roots::write_marker(root, &marker, true)?;
            Ok(marker)
        }
        (Found::Empty, None) => Err(PipelineError::ReplicaNotMade {
            path: root.to_owned(),
        }),
        (Found::Unmarked, _) => Err(RootError::NotEmpty {
            kind: RootKind::Replica,
            path: root.to_owned(),
        }
        .into()),
        (found, _) => Ok(roots::judge(RootKind::Replica, root, found, catalog_id)?),
    }
}

/// Copies every blob the replica at `root` lacks into it (see the module's rules).
///
/// # Errors
///
/// The replica or the store cannot be used, the catalog fails, a copy fails; `Interrupted`
/// when cancelled (what was recorded stays).
pub async fn replicate(
    catalog: &Catalog,
    host: &Host,
    root: &Path,
    options: ReplicateOptions,
    cancel: &CancellationToken,
) -> Result<Replication> {
    let pool = catalog.pool();
    let root = roots::absolute(RootKind::Replica, root)?;
    let store = super::copy::open_store(host)?;
    let ours = recorded::catalog_id(pool).await?;
    let new_id = if options.new {
        Some(recorded::new_root_id(pool).await?)
    } else {
        None
    };
    let marker = replica_root(&root, &ours, new_id)?;
    let root_text = root.to_str().ok_or_else(|| {
        PipelineError::Root(RootError::Path {
            kind: RootKind::Replica,
            path: root.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
        })
    })?;
    replicas::record_replica(pool, &marker.id, root_text).await?;
    let replica = Arc::new(Store::open(&root).map_err(|source| PipelineError::Store {
        path: root.clone(),
        source,
    })?);
    replica
        .remove_stale_temp()
        .map_err(|source| PipelineError::Store {
            path: root.clone(),
            source,
        })?;
    let mut done = Replication {
        replica: marker.id.clone(),
        root: root.clone(),
        ..Replication::default()
    };
    let mut after: Vec<u8> = Vec::new();
    loop {
        if cancel.is_cancelled() {
            return Err(PipelineError::Interrupted);
        }
        let page = replicas::lacking(pool, &marker.id, &after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after.clone_from(&last.id);
        let recorded = copy_page(&store, &replica, page, options.jobs.max(1), &mut done).await?;
        replicas::record_copies(pool, &marker.id, &recorded).await?;
    }
    replicas::record_replicated(pool, &marker.id).await?;
    done.lacking = u64::try_from(replicas::count_lacking(pool, &marker.id).await?).unwrap_or(0);
    Ok(done)
}

/// What copying one blob came to before the page's sync.
enum Copied {
    /// In the replica already, hashing right.
    Adopted(BlobId),
    /// Staged in the replica's temp space (`true`: a wrong file under its name was removed).
    Staged(StagedBlob, bool),
    /// The store's file does not hash to its name.
    StoreWrong(BlobId),
}

/// Copies a page: stages each blob (in parallel), makes the replica durable, links the staged
/// blobs, reads each back from the replica and returns the ids found right (to record).
async fn copy_page(
    store: &Arc<Store>,
    replica: &Arc<Store>,
    page: Vec<crate::catalog::report::BlobToVerify>,
    jobs: usize,
    done: &mut Replication,
) -> Result<Vec<Vec<u8>>> {
    let mut running = tokio::task::JoinSet::new();
    let mut copied = Vec::with_capacity(page.len());
    for blob in page {
        let id =
            BlobId::try_from(blob.id.as_slice()).map_err(|_| PipelineError::MalformedBlob {
                id: hex::encode(&blob.id),
            })?;
        if running.len() == jobs
            && let Some(finished) = running.join_next().await
        {
            copied.push(finished??);
        }
        let (store, replica) = (store.clone(), replica.clone());
        running.spawn_blocking(move || stage(&store, &replica, id));
    }
    while let Some(finished) = running.join_next().await {
        copied.push(finished??);
    }
    let store_error = |source| PipelineError::Store {
        path: replica.root().to_owned(),
        source,
    };
    replica.sync().map_err(store_error)?;
    let mut right = Vec::new();
    let mut published = Vec::new();
    for outcome in copied {
        let id = match outcome {
            Copied::Adopted(id) => {
                done.adopted += 1;
                right.push(id.as_bytes().to_vec());
                continue;
            }
            Copied::StoreWrong(id) => {
                done.store_wrong.push(id.to_hex());
                continue;
            }
            Copied::Staged(staged, replaced) => {
                let id = staged.id;
                done.bytes += staged.size;
                done.replaced += u64::from(replaced);
                staged.publish(replica).map_err(store_error)?;
                id
            }
        };
        published.push(id);
    }
    // The names made durable too, before anything is recorded.
    replica.sync().map_err(store_error)?;
    for id in published {
        let replica = replica.clone();
        let path = replica.blob_path(&id);
        let digest = tokio::task::spawn_blocking(move || read_back(&path)).await?;
        match digest {
            Ok(digest) if digest == *id.as_bytes() => {
                done.copied += 1;
                right.push(id.as_bytes().to_vec());
            }
            Ok(_) => {
                return Err(PipelineError::ReplicaWrong {
                    path: replica.blob_path(&id),
                });
            }
            Err(source) => {
                return Err(PipelineError::ReadBlob {
                    path: replica.blob_path(&id),
                    source,
                });
            }
        }
    }
    Ok(right)
}

/// Stages one blob in the replica (or finds it there, right).
fn stage(store: &Store, replica: &Store, id: BlobId) -> Result<Copied> {
    let mut replaced = false;
    let existing = replica.blob_path(&id);
    if existing.is_file() {
        match read_back(&existing) {
            Ok(digest) if digest == *id.as_bytes() => return Ok(Copied::Adopted(id)),
            // Wrong or unreadable: copied again over it.
            _ => {
                fs_err::remove_file(&existing).map_err(|source| PipelineError::ReadBlob {
                    path: existing.clone(),
                    source,
                })?;
                replaced = true;
            }
        }
    }
    let source_path = store.blob_path(&id);
    let mut source =
        fs_err::File::open(&source_path).map_err(|source| PipelineError::ReadBlob {
            path: source_path.clone(),
            source,
        })?;
    let mut writer = replica.writer().map_err(|source| PipelineError::Store {
        path: replica.root().to_owned(),
        source,
    })?;
    let mut buffer = vec![0; 1 << 20];
    writer
        .copy_from(replica, &mut source, &mut buffer)
        .map_err(|error| match error {
            crate::store::CopyError::Source(source) => PipelineError::ReadBlob {
                path: source_path.clone(),
                source,
            },
            crate::store::CopyError::Store(source) => PipelineError::Store {
                path: replica.root().to_owned(),
                source,
            },
        })?;
    let staged = writer
        .finish(replica)
        .map_err(|source| PipelineError::Store {
            path: replica.root().to_owned(),
            source,
        })?;
    if staged.id != id {
        return Ok(Copied::StoreWrong(id));
    }
    Ok(Copied::Staged(staged, replaced))
}

/// The BLAKE3 digest of a file as its disk holds it: its cached pages are dropped first (after
/// the replica's sync they are clean), so the bytes hashed are read from the device.
pub(super) fn read_back(path: &Path) -> std::io::Result<[u8; 32]> {
    use std::os::fd::AsFd;
    let mut file = fs_err::File::open(path)?;
    // Advice only: a filesystem that ignores it is read through its cache.
    let _ = nix::fcntl::posix_fadvise(
        file.file().as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}
