//! Verification: re-hash stored blobs, least recently verified first, within a budget; list
//! store files the catalog does not name; check the catalog's loads.
//!
//! A run reads the catalog page by page (memory flat in the number of blobs), hashes each
//! page's blobs on `jobs` threads, and records the page's outcomes in one statement before
//! taking the next page, so a run stopped by its budget (or killed) leaves every blob it
//! hashed recorded, and the next run starts with the blobs it did not reach.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ntt_crds::BlobId;
use serde::Serialize;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::media::MediumRecord;
use crate::catalog::report;
use crate::store::Store;

/// Blobs taken from the catalog at a time.
const PAGE: i64 = 256;

/// How much one run may do: it takes no further blob once spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Wall-clock time.
    Time(Duration),
    /// Bytes re-hashed.
    Bytes(u64),
}

impl std::str::FromStr for Budget {
    type Err = String;

    /// `90s`, `45m`, `8h`, `2d`, or bytes with `k`, `M`, `G`, `T` (powers of 1024).
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().map_err(|_| {
            format!(
                "{text:?} is not a budget: a number then s, m, h, d (time) or k, M, G, T (bytes)"
            )
        })?;
        let seconds = |factor: u64| Self::Time(Duration::from_secs(number.saturating_mul(factor)));
        let bytes = |shift: u32| Self::Bytes(number.saturating_mul(1 << shift));
        match unit {
            "s" => Ok(seconds(1)),
            "m" => Ok(seconds(60)),
            "h" => Ok(seconds(3600)),
            "d" => Ok(seconds(86_400)),
            "" | "B" => Ok(bytes(0)),
            "k" | "K" => Ok(bytes(10)),
            "M" => Ok(bytes(20)),
            "G" => Ok(bytes(30)),
            "T" => Ok(bytes(40)),
            _ => Err(format!(
                "{text:?} is not a budget: the unit is one of s, m, h, d (time) or k, M, G, T (bytes)"
            )),
        }
    }
}

/// Which blobs to re-hash, and how.
#[derive(Debug, Clone, Copy)]
pub struct VerifyScope<'a> {
    /// Only the blobs of this medium (all media when `None`).
    pub medium: Option<&'a MediumRecord>,
    /// At most this many blobs (the least recently verified).
    pub sample: Option<u64>,
    /// At most this much time or data.
    pub budget: Option<Budget>,
    /// Only blobs not found right since this time (the others count as verified).
    pub stale_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Blobs hashed at once.
    pub jobs: usize,
    /// Also list store files the catalog has no blob for.
    pub orphans: bool,
    /// Also re-hash the media's images against the digests recorded at imaging (whole, not
    /// counted in the budget).
    pub images: bool,
}

/// What re-hashing one medium's image found.
#[derive(Debug, Clone, Serialize)]
pub struct ImageCheck {
    /// The medium's name.
    pub medium: String,
    /// The image file (its archive, once the raw image was archived and removed).
    pub path: String,
    /// `ok`, `mismatch`, `missing` (no such file on this host) or `unreadable`.
    pub outcome: &'static str,
    /// The read error, when unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a verification found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Verification {
    /// Blobs re-hashed.
    pub checked: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Blobs whose content matches their name.
    pub ok: u64,
    /// Blobs whose content does not match (hex ids).
    pub mismatched: Vec<String>,
    /// Blobs the catalog has and the store does not (hex ids).
    pub missing: Vec<String>,
    /// Blobs the store could not read (hex id, then the error).
    pub unreadable: Vec<String>,
    /// Whether every blob in scope was verified by this run (not stopped by the sample size
    /// or the budget).
    pub complete: bool,
    /// Store files named like blobs that the catalog has no blob for (hex ids), when asked.
    pub orphans: Option<Vec<String>>,
    /// The images re-hashed, when asked.
    pub images: Option<Vec<ImageCheck>>,
    /// Media whose last full verification time changed.
    pub media_updated: u64,
    /// Loads whose every path was checked to have its inode (whole verifications only).
    pub loads_validated: u64,
}

impl Verification {
    /// Whether every blob checked is right and the store holds nothing unnamed.
    pub fn is_good(&self) -> bool {
        self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.orphans.as_ref().is_none_or(Vec::is_empty)
            && self
                .images
                .as_ref()
                .is_none_or(|images| images.iter().all(|i| i.outcome == "ok"))
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} blob(s) checked ({} bytes): {} ok, {} mismatched, {} missing, {} unreadable",
            self.checked,
            self.bytes,
            self.ok,
            self.mismatched.len(),
            self.missing.len(),
            self.unreadable.len()
        )?;
        if !self.complete {
            write!(
                f,
                "\nstopped by the sample size or the budget: the next run starts with the blobs not reached"
            )?;
        }
        for id in &self.mismatched {
            write!(f, "\nmismatch {id}")?;
        }
        for id in &self.missing {
            write!(f, "\nmissing  {id}")?;
        }
        for line in &self.unreadable {
            write!(f, "\nunreadable {line}")?;
        }
        if let Some(images) = &self.images {
            let good = images.iter().filter(|i| i.outcome == "ok").count();
            write!(f, "\n{} image(s) checked: {good} ok", images.len())?;
            for image in images.iter().filter(|i| i.outcome != "ok") {
                write!(
                    f,
                    "\nimage {} {}: {}",
                    image.outcome, image.medium, image.path
                )?;
                if let Some(error) = &image.error {
                    write!(f, " ({error})")?;
                }
            }
        }
        if let Some(orphans) = &self.orphans {
            write!(f, "\n{} orphan(s) in the store", orphans.len())?;
            for id in orphans {
                write!(f, "\norphan   {id}")?;
            }
        }
        Ok(())
    }
}

/// What re-hashing one blob found.
enum Outcome {
    Ok,
    Mismatch,
    Missing,
    Unreadable(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Mismatch => "mismatch",
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// Re-hashes the blobs in `scope` (least recently verified first) and records each outcome on
/// its blob, then when each medium was last fully verified; a whole verification (no sample,
/// no budget, nothing left) also checks that every path of the loads has its inode. Wrong,
/// missing or unreadable blobs are in the result, not an error (see
/// [`Verification::is_good`]).
pub async fn verify(
    catalog: &Catalog,
    host: &Host,
    scope: VerifyScope<'_>,
) -> Result<Verification> {
    let pool = catalog.pool();
    let medium = scope.medium.map(|m| m.id);
    let store = super::copy::open_store(host)?;
    let started = report::now(pool).await?;
    let stale_before = scope.stale_before;
    let (mut found, bad) = rehash_pages(
        &store,
        scope.sample,
        scope.budget,
        scope.jobs,
        pool,
        started,
        Copies::Store {
            medium,
            stale_before,
        },
    )
    .await?;
    // The medium's time, and that of every other medium holding a blob found wrong (it is
    // no longer wholly right either).
    found.media_updated = match medium {
        None => report::record_media_verified(pool, None).await?,
        Some(medium) => {
            let mut media = report::holders(pool, &bad).await?;
            media.push(medium);
            media.sort_unstable();
            media.dedup();
            report::record_media_verified(pool, Some(&media)).await?
        }
    };
    if scope.orphans {
        found.orphans = Some(orphans(catalog, &store).await?);
    }
    if scope.images {
        found.images = Some(images(catalog, medium).await?);
    }
    if found.complete && scope.sample.is_none() && scope.budget.is_none() {
        found.loads_validated = report::validate_loads(pool, medium).await?;
    }
    Ok(found)
}

/// Re-hashes the blobs recorded in the replica `id`, least recently verified first, within
/// `sample` and `budget`, recording each outcome on the replica's row (the store's own blobs
/// are not touched).
///
/// # Errors
///
/// The replica is unknown, its root is missing or not this replica; the catalog fails.
pub async fn verify_replica(
    catalog: &Catalog,
    id: &str,
    sample: Option<u64>,
    budget: Option<Budget>,
    jobs: usize,
) -> Result<Verification> {
    use crate::catalog::replicas;
    use crate::roots::{self, RootKind};
    let pool = catalog.pool();
    let Some(record) = replicas::find_replica(pool, id).await? else {
        return Err(PipelineError::UnknownReplica { id: id.to_owned() });
    };
    let root = PathBuf::from(&record.root);
    let ours = crate::catalog::roots::catalog_id(pool).await?;
    let marker = roots::check(RootKind::Replica, &root, &ours)?;
    if marker.id != record.id {
        return Err(PipelineError::UnknownReplica {
            id: format!(
                "{id} (the directory {} holds replica {})",
                root.display(),
                marker.id
            ),
        });
    }
    let replica = Arc::new(Store::open(&root).map_err(|source| PipelineError::Store {
        path: root.clone(),
        source,
    })?);
    let started = report::now(pool).await?;
    let (found, _) = rehash_pages(
        &replica,
        sample,
        budget,
        jobs,
        pool,
        started,
        Copies::Replica(id),
    )
    .await?;
    Ok(found)
}

/// Whose copies a verification re-hashes.
#[derive(Debug, Clone, Copy)]
enum Copies<'a> {
    /// The store's blobs (of one medium, or all; not found right since `stale_before`).
    Store {
        medium: Option<crate::catalog::media::MediumId>,
        stale_before: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// A replica's copies.
    Replica(&'a str),
}

impl Copies<'_> {
    /// The next `limit` blobs to re-hash, least recently verified first, none since `started`.
    async fn next(
        self,
        pool: &sqlx::PgPool,
        started: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<report::BlobToVerify>> {
        Ok(match self {
            Self::Store {
                medium,
                stale_before,
            } => report::next_to_verify(pool, medium, started, stale_before, limit).await?,
            Self::Replica(id) => {
                crate::catalog::replicas::next_to_verify(pool, id, started, limit).await?
            }
        })
    }

    /// Records a page's outcomes.
    async fn record(self, pool: &sqlx::PgPool, ids: &[Vec<u8>], labels: &[&str]) -> Result<()> {
        match self {
            Self::Store { .. } => report::record_verifications(pool, ids, labels).await?,
            Self::Replica(id) => {
                crate::catalog::replicas::record_verifications(pool, id, ids, labels).await?;
            }
        }
        Ok(())
    }
}

/// The page loop of every verification: takes pages of `copies` (least recently verified
/// first) until the sample or the budget is spent or none is left, hashes each page on `jobs`
/// threads in `store`, and records its outcomes before taking the next page. Returns what was
/// found and the ids found wrong.
async fn rehash_pages(
    store: &Arc<Store>,
    sample: Option<u64>,
    budget: Option<Budget>,
    jobs: usize,
    pool: &sqlx::PgPool,
    started: chrono::DateTime<chrono::Utc>,
    copies: Copies<'_>,
) -> Result<(Verification, Vec<Vec<u8>>)> {
    let mut found = Verification {
        complete: true,
        ..Verification::default()
    };
    let mut spending = Spending {
        budget,
        clock: Instant::now(),
        bytes_taken: 0,
    };
    let mut bad = Vec::new();
    loop {
        let left = sample
            .map_or(PAGE, |n| {
                i64::try_from(n.saturating_sub(found.checked)).unwrap_or(PAGE)
            })
            .min(PAGE);
        if left == 0 || spending.spent() {
            found.complete = copies.next(pool, started, 1).await?.is_empty();
            break;
        }
        let page = copies.next(pool, started, left).await?;
        if page.is_empty() {
            break;
        }
        // In the order the hashes finished: each id beside its own outcome.
        let outcomes = hash_page(store, page, jobs.max(1), &mut spending).await?;
        let ids: Vec<Vec<u8>> = outcomes
            .iter()
            .map(|(id, _, _)| id.as_bytes().to_vec())
            .collect();
        let labels: Vec<&str> = outcomes.iter().map(|(_, _, o)| o.label()).collect();
        copies.record(pool, &ids, &labels).await?;
        bad.extend(
            outcomes
                .iter()
                .filter(|(_, _, o)| !matches!(o, Outcome::Ok))
                .map(|(id, _, _)| id.as_bytes().to_vec()),
        );
        tally(&mut found, outcomes);
    }
    Ok((found, bad))
}

/// Adds a page's outcomes to what a run found.
fn tally(found: &mut Verification, outcomes: Vec<(BlobId, u64, Outcome)>) {
    for (id, size, outcome) in outcomes {
        found.checked += 1;
        found.bytes += size;
        match outcome {
            Outcome::Ok => found.ok += 1,
            Outcome::Mismatch => found.mismatched.push(id.to_hex()),
            Outcome::Missing => found.missing.push(id.to_hex()),
            Outcome::Unreadable(error) => {
                found.unreadable.push(format!("{}: {error}", id.to_hex()));
            }
        }
    }
}

/// What a run has spent of its budget.
struct Spending {
    budget: Option<Budget>,
    clock: Instant,
    /// Recorded sizes of the blobs taken so far.
    bytes_taken: u64,
}

impl Spending {
    /// Whether the run may take no further blob.
    fn spent(&self) -> bool {
        match self.budget {
            Some(Budget::Time(limit)) => self.clock.elapsed() >= limit,
            Some(Budget::Bytes(limit)) => self.bytes_taken >= limit,
            None => false,
        }
    }
}

/// Hashes a page of blobs, `jobs` at a time, each on a blocking thread, taking none once the
/// budget is spent; returns the outcomes of those taken.
async fn hash_page(
    store: &Arc<Store>,
    page: Vec<report::BlobToVerify>,
    jobs: usize,
    spending: &mut Spending,
) -> Result<Vec<(BlobId, u64, Outcome)>> {
    let mut running = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(page.len());
    for blob in page {
        if spending.spent() {
            break;
        }
        spending.bytes_taken = spending
            .bytes_taken
            .saturating_add(u64::try_from(blob.size).unwrap_or(0));
        let id =
            BlobId::try_from(blob.id.as_slice()).map_err(|_| PipelineError::MalformedBlob {
                id: hex::encode(&blob.id),
            })?;
        let path = store.blob_path(&id);
        if running.len() == jobs
            && let Some(finished) = running.join_next().await
        {
            done.push(finished?);
        }
        running.spawn_blocking(move || {
            let (size, outcome) = hash_blob(&path, &id);
            (id, size, outcome)
        });
    }
    while let Some(finished) = running.join_next().await {
        done.push(finished?);
    }
    Ok(done)
}

/// Re-hashes one blob file on this thread (blobs are hashed `jobs` at a time; the image
/// digest's reader spreads one big file over every core): its size read and what it found.
fn hash_blob(path: &Path, id: &BlobId) -> (u64, Outcome) {
    let digest = fs_err::File::open(path).and_then(|mut file| {
        let mut hasher = blake3::Hasher::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        Ok((size, *hasher.finalize().as_bytes()))
    });
    match digest {
        Ok((size, digest)) => (size, outcome(Ok(digest), id.as_bytes())),
        Err(error) => (0, outcome(Err(error), id.as_bytes())),
    }
}

/// What a file's digest (or the error reading it) says against the digest it should have.
fn outcome(digest: std::io::Result<[u8; 32]>, expected: &[u8]) -> Outcome {
    match digest {
        Ok(digest) if digest.as_slice() == expected => Outcome::Ok,
        Ok(_) => Outcome::Mismatch,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Outcome::Missing,
        Err(error) => Outcome::Unreadable(error.to_string()),
    }
}

/// Re-hashes the images (of one medium or all) against the digests recorded at imaging (with
/// the imaging's own digest), recording each outcome on its medium.
async fn images(
    catalog: &Catalog,
    medium: Option<crate::catalog::media::MediumId>,
) -> Result<Vec<ImageCheck>> {
    let mut checks = Vec::new();
    for image in report::images_to_verify(catalog.pool(), medium).await? {
        let mut path = PathBuf::from(&image.image_path);
        // An archived image whose raw file was removed: the archive is what holds it now.
        let (_, archived) = crate::catalog::media::image_archive(catalog.pool(), image.id).await?;
        let archive = archived
            .filter(|_| !path.exists())
            .map(|a| PathBuf::from(a.path));
        let digest = if let Some(archive) = archive {
            path.clone_from(&archive);
            tokio::task::spawn_blocking(move || {
                crate::imaging::archive::Archive::open(&archive)
                    .and_then(|a| a.digest())
                    .map_err(std::io::Error::other)
            })
            .await?
        } else {
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::imaging::digest::digest_file(&path)).await?
        };
        let outcome = outcome(digest, &image.image_digest);
        report::record_image_verification(catalog.pool(), image.id, outcome.label()).await?;
        checks.push(ImageCheck {
            medium: image.name,
            path: path.display().to_string(),
            outcome: outcome.label(),
            error: match outcome {
                Outcome::Unreadable(error) => Some(error),
                _ => None,
            },
        });
    }
    Ok(checks)
}

/// Store files named like blobs (`ab/cd/abcd...`, 64 hex digits) that the catalog has no blob
/// for, in id order: listed, never removed (a copy running now may not have recorded its
/// newest blobs yet).
async fn orphans(catalog: &Catalog, store: &Arc<Store>) -> Result<Vec<String>> {
    let mut orphans = Vec::new();
    for first in sorted_children(store.root(), 2)? {
        for second in sorted_children(&store.root().join(&first), 2)? {
            let dir = store.root().join(&first).join(&second);
            let names = sorted_children(&dir, BlobId::HEX_LEN)?;
            let ids: Vec<Vec<u8>> = names
                .iter()
                .filter(|n| n.starts_with(&format!("{first}{second}")))
                .filter_map(|n| hex::decode(n).ok())
                .collect();
            for chunk in ids.chunks(4096) {
                let unknown = report::unknown_blobs(catalog.pool(), chunk).await?;
                orphans.extend(unknown.iter().map(hex::encode));
            }
        }
    }
    Ok(orphans)
}

/// The names of `dir`'s entries that are `len` lowercase hex digits, sorted.
fn sorted_children(dir: &std::path::Path, len: usize) -> Result<Vec<String>> {
    let read = |source| PipelineError::ReadBlob {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        if let Some(name) = entry.file_name().to_str()
            && name.len() == len
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_times_or_bytes() {
        let parsed = |text: &str| text.parse::<Budget>();
        assert_eq!(parsed("90s"), Ok(Budget::Time(Duration::from_secs(90))));
        assert_eq!(parsed("45m"), Ok(Budget::Time(Duration::from_mins(45))));
        assert_eq!(parsed("8h"), Ok(Budget::Time(Duration::from_hours(8))));
        assert_eq!(parsed("2d"), Ok(Budget::Time(Duration::from_hours(48))));
        assert_eq!(parsed("4096"), Ok(Budget::Bytes(4096)));
        assert_eq!(parsed("192k"), Ok(Budget::Bytes(196_608)));
        assert_eq!(parsed("500G"), Ok(Budget::Bytes(500 << 30)));
        assert_eq!(parsed("2T"), Ok(Budget::Bytes(2 << 40)));
        for bad in ["", "h", "3 weeks", "1.5h", "-1s", "10x"] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
    }
}
