//! The copy queue: claiming batches of pending inodes under a lease, recording their outcome,
//! and the accounting that `ntt report` prints.
//!
//! Rules: a claim is one short transaction (`FOR UPDATE SKIP LOCKED` plus a lease: worker and
//! expiry), so workers in several processes or hosts never take the same inode while its lease
//! runs; results are committed per batch in one short transaction. A lease is bound to the
//! liveness of its run: every copy run holds a PostgreSQL advisory lock (keyed by its run name,
//! the part of its workers' lease names before `/`) on a connection of its own for as long as
//! it runs, and a lease whose run's lock is not held (the process was killed, its host died:
//! the database ends the session and the lock with it) is free at once, on any host. An expired
//! lease is free too. A lease held by a live run is waited for, never skipped. Every failure raises the inode's persistent attempt counter and adds to its
//! (capped) error history; a transient failure goes back to pending after a backoff (a lease
//! held by `backoff`), a permanent one or the last attempt ends `failed` with its class.

use std::time::Duration;

use ntt_crds::BlobId;
use serde::Serialize;
use sqlx::PgPool;

use super::CatalogError;
use super::media::MediumId;

/// The catalog's `error_class` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "error_class", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A read error.
    Io,
    /// A read past the end of the device.
    BeyondEof,
    /// The entry disappeared.
    Vanished,
    /// Access denied.
    Permission,
    /// The path cannot be opened.
    Name,
    /// No space in the store.
    StoreFull,
    /// Anything else.
    Unknown,
}

impl ErrorClass {
    /// Whether trying again may help.
    pub const fn is_transient(self) -> bool {
        matches!(self, Self::Io | Self::Unknown | Self::StoreFull)
    }
}

/// The lease holder of an inode waiting to be retried.
pub const BACKOFF: &str = "backoff";

/// An inode claimed for copying, with one of its (not excluded) paths.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Volume number.
    pub volume_no: i32,
    /// Inode number (64 bits as bigint).
    pub ino: i64,
    /// Size the walk recorded.
    pub size: i64,
    /// Attempts so far.
    pub attempts: i32,
    /// A path to open it by.
    pub path: Vec<u8>,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Claims up to `max_files` pending inodes of the medium (fewer when their sizes add up to
/// more than `max_bytes`; the first is always taken, so a big file goes alone), leased to
/// `worker` for `lease`, in inode order (the claim index's order: most filesystems lay files
/// down in about that order, and the index never holds the inodes already copied).
pub async fn claim(
    pool: &PgPool,
    medium: MediumId,
    worker: &str,
    max_files: i64,
    max_bytes: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, CatalogError> {
    sqlx::query_as!(
        Claimed,
        r#"with live as (
               select (l.classid::bigint << 32) | l.objid::bigint as key
               from pg_locks l
               where l.locktype = 'advisory' and l.granted and l.objsubid = 1
           ), candidates as (
               select medium_id, volume_no, ino, size from inode
               where medium_id = $1 and state = 'pending'
                 and (lease_until is null or lease_until < now()
                      or (lease_worker <> 'backoff'
                          and hashtextextended(split_part(lease_worker, '/', 1), 0)
                              not in (select key from live)))
               order by ino, volume_no
               limit $2
               for update skip locked
           ), sized as (
               select *, sum(size) over (order by ino, volume_no) as running,
                      row_number() over (order by ino, volume_no) as n
               from candidates
           )
           update inode i set lease_worker = $4, lease_until = now() + make_interval(secs => $5)
           from sized s
           where i.medium_id = s.medium_id and i.volume_no = s.volume_no and i.ino = s.ino
             and (s.n = 1 or s.running <= $3::bigint)
           returning i.volume_no, i.ino, i.size, i.attempts,
                     (select p.path from path p
                      where p.medium_id = i.medium_id and p.volume_no = i.volume_no
                        and p.ino = i.ino and p.excluded_reason is null
                      order by p.path limit 1) as "path!""#,
        medium as MediumId,
        max_files,
        max_bytes,
        worker,
        seconds(lease),
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("claim files to copy", e))
}

/// A copy run's hold on its leases: an advisory lock, keyed by the run's name, on a connection
/// of its own. While it is held, the leases of the run's workers (`<run>/<n>`) are taken by no
/// one before they expire; once the session ends (the run ends, is killed, or its host dies),
/// they are free at once.
#[derive(Debug)]
pub struct RunLock {
    /// `None` once ended.
    connection: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    run: String,
}

/// Starts a copy run named `run` (unique: host, process and start time): takes its lock.
pub async fn begin_run(pool: &PgPool, run: &str) -> Result<RunLock, CatalogError> {
    let mut connection = pool
        .acquire()
        .await
        .map_err(|e| CatalogError::from_sqlx("open the copy run's connection", e))?;
    let taken = sqlx::query_scalar!(
        r#"select pg_try_advisory_lock(hashtextextended($1, 0)) as "taken!""#,
        run
    )
    .fetch_one(&mut *connection)
    .await
    .map_err(|e| CatalogError::from_sqlx("lock the copy run", e))?;
    if !taken {
        return Err(CatalogError::RunTaken {
            run: run.to_owned(),
        });
    }
    Ok(RunLock {
        connection: Some(connection),
        run: run.to_owned(),
    })
}

impl RunLock {
    /// The run's name: its workers lease as `<name>/<n>`.
    pub fn name(&self) -> &str {
        &self.run
    }

    /// Ends the run: the lock is given up and the connection goes back to the pool (closed
    /// instead when the unlock fails, so no pooled session keeps holding it).
    pub async fn end(mut self) -> Result<(), CatalogError> {
        let Some(mut connection) = self.connection.take() else {
            return Ok(());
        };
        let unlocked = sqlx::query_scalar!(
            r#"select pg_advisory_unlock(hashtextextended($1, 0)) as "unlocked!""#,
            self.run
        )
        .fetch_one(&mut *connection)
        .await;
        match unlocked {
            Ok(_) => Ok(()),
            Err(error) => {
                drop(connection.detach());
                Err(CatalogError::from_sqlx("unlock the copy run", error))
            }
        }
    }
}

impl Drop for RunLock {
    /// A run dropped without [`RunLock::end`] (a panic, a cancelled future) closes its
    /// session, which ends the lock: it must never go back to the pool still holding it.
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            drop(connection.detach());
        }
    }
}

/// Pending inodes of the medium by who holds them, for waiting and for saying why a run ended
/// with files pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Pending inodes in all.
    pub total: i64,
    /// Leased by a live run (this one or another process or host).
    pub held: i64,
    /// Waiting for a retry after a transient failure.
    pub retrying: i64,
}

/// Who holds the medium's pending inodes.
pub async fn pending(pool: &PgPool, medium: MediumId) -> Result<Pending, CatalogError> {
    let row = sqlx::query!(
        r#"with live as (
               select (l.classid::bigint << 32) | l.objid::bigint as key
               from pg_locks l
               where l.locktype = 'advisory' and l.granted and l.objsubid = 1
           )
           select count(*) as "total!",
                  count(*) filter (where lease_worker <> 'backoff' and lease_until >= now()
                                     and hashtextextended(split_part(lease_worker, '/', 1), 0)
                                         in (select key from live)) as "held!",
                  count(*) filter (where lease_worker = 'backoff') as "retrying!"
           from inode where medium_id = $1 and state = 'pending'"#,
        medium as MediumId,
    )
    .fetch_one(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("count the pending files", e))?;
    Ok(Pending {
        total: row.total,
        held: row.held,
        retrying: row.retrying,
    })
}

/// What became of one claimed inode.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Its content is in the store.
    Copied {
        /// The blob.
        blob: BlobId,
        /// Bytes.
        size: u64,
        /// Content type.
        mime: String,
    },
    /// It could not be copied this time.
    Failed {
        /// The class.
        class: ErrorClass,
        /// What happened.
        message: String,
        /// Whether trying again cannot help.
        permanent: bool,
    },
}

/// Limits for failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after which a transient failure is final.
    pub max_attempts: i32,
    /// Delay before the first retry (doubled each attempt, at most 64 times).
    pub backoff: Duration,
    /// Error rows kept per inode.
    pub history: i32,
}

/// Records a batch's outcomes in one transaction, retried (up to three times) when PostgreSQL
/// picks it as a deadlock victim. Only inodes still leased to `worker` (or whose lease ran out
/// and nobody took) change; returns how many were recorded.
pub async fn record(
    pool: &PgPool,
    medium: MediumId,
    worker: &str,
    results: &[(i32, i64, Outcome)],
    policy: RetryPolicy,
) -> Result<u64, CatalogError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match record_once(pool, medium, worker, results, policy).await {
            Err(CatalogError::Query { source, .. })
                if tries < 3
                    && source
                        .as_database_error()
                        .and_then(sqlx::error::DatabaseError::code)
                        .is_some_and(|code| code == "40P01" || code == "40001") =>
            {
                tracing::debug!("batch record was a deadlock victim; retrying");
            }
            other => return other,
        }
    }
}

/// Records a batch's outcomes in one transaction. Only inodes still leased to `worker` (or
/// whose lease ran out and nobody took) change; returns how many were recorded.
async fn record_once(
    pool: &PgPool,
    medium: MediumId,
    worker: &str,
    results: &[(i32, i64, Outcome)],
    policy: RetryPolicy,
) -> Result<u64, CatalogError> {
    let error = |what| move |e| CatalogError::from_sqlx(what, e);
    let mut transaction = pool.begin().await.map_err(error("begin recording"))?;
    // One statement per table for the whole batch (a statement per file cost PostgreSQL more
    // CPU than everything else in a copy, and the worker a round trip per file).
    record_blobs(&mut transaction, results).await?;
    let mut recorded = record_copies(&mut transaction, medium, worker, results).await?;
    for (volume_no, ino, outcome) in results {
        if let Outcome::Failed {
            class,
            message,
            permanent,
        } = outcome
        {
            let failure = Failure {
                volume_no: *volume_no,
                ino: *ino,
                class: *class,
                message,
                permanent: *permanent,
            };
            recorded += record_failure(&mut transaction, medium, worker, &failure, policy).await?;
        }
    }
    transaction
        .commit()
        .await
        .map_err(error("commit the batch"))?;
    Ok(recorded)
}

/// Adds the batch's blobs to the blob table (one statement; those it has are left alone).
async fn record_blobs(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    results: &[(i32, i64, Outcome)],
) -> Result<(), CatalogError> {
    let mut blobs: Vec<(&BlobId, u64, &str)> = results
        .iter()
        .filter_map(|(_, _, outcome)| match outcome {
            Outcome::Copied { blob, size, mime } => Some((blob, *size, mime.as_str())),
            Outcome::Failed { .. } => None,
        })
        .collect();
    if blobs.is_empty() {
        return Ok(());
    }
    // In id order: concurrent batches that share content then take the same unique-key locks
    // in the same order and cannot deadlock each other.
    blobs.sort_by_key(|(id, _, _)| **id);
    blobs.dedup_by_key(|(id, _, _)| **id);
    let ids: Vec<&[u8]> = blobs
        .iter()
        .map(|(id, _, _)| id.as_bytes().as_slice())
        .collect();
    let sizes: Vec<i64> = blobs
        .iter()
        .map(|(_, size, _)| i64::try_from(*size).unwrap_or(i64::MAX))
        .collect();
    let mimes: Vec<&str> = blobs.iter().map(|(_, _, mime)| *mime).collect();
    sqlx::query!(
        "insert into blob (id, size, mime_type)
         select * from unnest($1::bytea[], $2::bigint[], $3::text[]) as b (id, size, mime_type)
         order by id
         on conflict (id) do nothing",
        &ids as &[&[u8]],
        &sizes,
        &mimes as &[&str],
    )
    .execute(&mut **transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the blobs", e))?;
    Ok(())
}

/// Marks the batch's copied inodes copied (one statement), and their blobs as from a damaged
/// source where the file had unreadable parts; returns how many inodes changed (only those
/// still leased to `worker`, or whose lease ran out and nobody took).
async fn record_copies(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    medium: MediumId,
    worker: &str,
    results: &[(i32, i64, Outcome)],
) -> Result<u64, CatalogError> {
    let mut volumes = Vec::new();
    let mut inodes = Vec::new();
    let mut blobs: Vec<&[u8]> = Vec::new();
    for (volume_no, ino, outcome) in results {
        if let Outcome::Copied { blob, .. } = outcome {
            volumes.push(*volume_no);
            inodes.push(*ino);
            blobs.push(blob.as_bytes().as_slice());
        }
    }
    if inodes.is_empty() {
        return Ok(0);
    }
    // The media-holding-a-blob table (`blob_medium`, for `ntt where`) from the rows this
    // statement changed, in the same transaction.
    let updated = sqlx::query_scalar!(
        r#"with copied as (
             update inode i set state = 'copied', blob_id = c.blob_id, copied_at = now(),
                                lease_worker = null, lease_until = null,
                                error_class = null, error_message = null
             from unnest($2::integer[], $3::bigint[], $4::bytea[]) as c (volume_no, ino, blob_id)
             where i.medium_id = $1 and i.volume_no = c.volume_no and i.ino = c.ino
               and i.state = 'pending' and (i.lease_worker = $5 or i.lease_until < now())
             returning i.blob_id),
           held as (
             insert into blob_medium (blob_id, medium_id)
             select distinct blob_id, $1 from copied
             on conflict do nothing)
           select count(*) as "updated!" from copied"#,
        medium as MediumId,
        &volumes,
        &inodes,
        &blobs as &[&[u8]],
        worker,
    )
    .fetch_one(&mut **transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the copies", e))?;
    // A blob copied from a file with unreadable parts holds zeros there: say so on the blob.
    sqlx::query(
        "update blob set damaged_source = true
         where not damaged_source
           and id in (select blob_id from inode
                      where medium_id = $1 and damaged_ranges is not null
                        and (volume_no, ino) in (select * from unnest($2::integer[], $3::bigint[])))",
    )
    .bind(medium.get())
    .bind(&volumes)
    .bind(&inodes)
    .execute(&mut **transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("mark blobs from damaged files", e))?;
    Ok(u64::try_from(updated).unwrap_or(0))
}

/// One failure to record.
struct Failure<'a> {
    volume_no: i32,
    ino: i64,
    class: ErrorClass,
    message: &'a str,
    permanent: bool,
}

/// Records one failure: attempt counter, state, backoff lease and capped history.
async fn record_failure(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    medium: MediumId,
    worker: &str,
    failure: &Failure<'_>,
    policy: RetryPolicy,
) -> Result<u64, CatalogError> {
    let error = |what| move |e| CatalogError::from_sqlx(what, e);
    let backoff = policy.backoff.as_secs_f64();
    let updated = sqlx::query_scalar!(
            r#"update inode set
                   attempts = attempts + 1,
                   error_class = $4, error_message = $5,
                   state = case when $6 or attempts + 1 >= $7 then 'failed'::copy_state
                                else 'pending'::copy_state end,
                   lease_worker = case when $6 or attempts + 1 >= $7 then null else $9 end,
                   lease_until = case when $6 or attempts + 1 >= $7 then null
                                      else now() + make_interval(secs => $8 * power(2, least(attempts, 6))) end
               where medium_id = $1 and volume_no = $2 and ino = $3 and state = 'pending'
                 and (lease_worker = $10 or lease_until < now())
               returning attempts"#,
            medium as MediumId,
            failure.volume_no,
            failure.ino,
            failure.class as ErrorClass,
            failure.message,
            failure.permanent,
            policy.max_attempts,
            backoff,
            BACKOFF,
            worker,
        )
        .fetch_optional(&mut **transaction)
        .await
        .map_err(error("record a failure"))?;
    let Some(attempt) = updated else {
        return Ok(0);
    };
    sqlx::query!(
        "insert into copy_error (medium_id, volume_no, ino, attempt, class, message)
             values ($1, $2, $3, $4, $5, $6)
             on conflict do nothing",
        medium as MediumId,
        failure.volume_no,
        failure.ino,
        attempt,
        failure.class as ErrorClass,
        failure.message,
    )
    .execute(&mut **transaction)
    .await
    .map_err(error("record the error history"))?;
    sqlx::query!(
            "delete from copy_error
             where medium_id = $1 and volume_no = $2 and ino = $3 and attempt <= $4::integer - $5::integer",
            medium as MediumId,
            failure.volume_no,
            failure.ino,
            attempt,
            policy.history,
        )
        .execute(&mut **transaction)
        .await
        .map_err(error("cap the error history"))?;
    Ok(1)
}

/// Gives back the leases `worker` holds (a run that stops early), so others take them now.
pub async fn release_leases(
    pool: &PgPool,
    medium: MediumId,
    worker: &str,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update inode set lease_worker = null, lease_until = null
         where medium_id = $1 and state = 'pending' and lease_worker = $2",
        medium as MediumId,
        worker,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("release the leases", e))?;
    Ok(())
}

/// When the next retry of the medium is due, if any inode waits for one.
pub async fn next_retry(
    pool: &PgPool,
    medium: MediumId,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, CatalogError> {
    sqlx::query_scalar!(
        "select min(lease_until) from inode
         where medium_id = $1 and state = 'pending' and lease_worker = $2",
        medium as MediumId,
        BACKOFF,
    )
    .fetch_one(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("look for retries", e))
}

/// Adds a finding to the medium's problems (one key each).
pub async fn record_problem(
    pool: &PgPool,
    medium: MediumId,
    key: &str,
    detail: serde_json::Value,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update medium set problems = problems || jsonb_build_object($2::text, $3::jsonb) where id = $1",
        medium as MediumId,
        key,
        detail,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("record a problem", e))?;
    Ok(())
}

/// Marks the medium copied when nothing is pending any more.
pub async fn finish_if_done(pool: &PgPool, medium: MediumId) -> Result<bool, CatalogError> {
    let done = sqlx::query!(
        "update medium set copied_at = now()
         where id = $1 and enumerated_at is not null
           and not exists (select 1 from inode where medium_id = $1 and state = 'pending')",
        medium as MediumId,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the copy", e))?;
    Ok(done.rows_affected() == 1)
}
