//! Replicas of the store (`ntt replicate`): which replica holds which blob, verified when.
//!
//! Rule: a `blob_replica` row is written only after the replica's file was re-read and hashed
//! to its name; `ntt verify --replica` updates its last check.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::CatalogError;
use super::media::MediumId;
use super::report::BlobToVerify;

fn error(what: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |e| CatalogError::from_sqlx(what, e)
}

/// A replica as the catalog records it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaRecord {
    /// Its id (the one in its root's marker).
    pub id: String,
    /// Where it was last replicated to.
    pub root: String,
    /// When the last replication run to it finished.
    pub replicated_at: Option<DateTime<Utc>>,
}

/// Records the replica `id` at `root` (the root is updated when the replica moved).
pub async fn record_replica(pool: &PgPool, id: &str, root: &str) -> Result<(), CatalogError> {
    sqlx::query!(
        "insert into replica (id, root) values ($1, $2)
         on conflict (id) do update set root = excluded.root",
        id,
        root,
    )
    .execute(pool)
    .await
    .map_err(error("record the replica"))?;
    Ok(())
}

/// The replica `id`, if recorded.
pub async fn find_replica(pool: &PgPool, id: &str) -> Result<Option<ReplicaRecord>, CatalogError> {
    sqlx::query_as!(
        ReplicaRecord,
        "select id, root, replicated_at from replica where id = $1",
        id,
    )
    .fetch_optional(pool)
    .await
    .map_err(error("find the replica"))
}

/// Notes that a replication run to `id` finished.
pub async fn record_replicated(pool: &PgPool, id: &str) -> Result<(), CatalogError> {
    sqlx::query!("update replica set replicated_at = now() where id = $1", id)
        .execute(pool)
        .await
        .map_err(error("record the replication"))?;
    Ok(())
}

/// The next `limit` blobs (by id, after `after`) the replica does not hold right (no copy,
/// or its last check found the copy wrong).
pub async fn lacking(
    pool: &PgPool,
    replica: &str,
    after: &[u8],
    limit: i64,
) -> Result<Vec<BlobToVerify>, CatalogError> {
    sqlx::query_as!(
        BlobToVerify,
        r#"select b.id, b.size from blob b
           where b.id > $2
             and not exists (select 1 from blob_replica br
                             where br.replica_id = $1 and br.blob_id = b.id
                               and br.verify_outcome = 'ok')
           order by b.id
           limit $3"#,
        replica,
        after,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(error("find blobs the replica lacks"))
}

/// How many blobs the replica does not hold right.
pub async fn count_lacking(pool: &PgPool, replica: &str) -> Result<i64, CatalogError> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from blob b
           where not exists (select 1 from blob_replica br
                             where br.replica_id = $1 and br.blob_id = b.id
                               and br.verify_outcome = 'ok')"#,
        replica,
    )
    .fetch_one(pool)
    .await
    .map_err(error("count blobs the replica lacks"))
}

/// Records that the replica holds `ids`, each re-read and found right now.
pub async fn record_copies(
    pool: &PgPool,
    replica: &str,
    ids: &[Vec<u8>],
) -> Result<(), CatalogError> {
    sqlx::query!(
        "insert into blob_replica (replica_id, blob_id)
         select $1, id from unnest($2::bytea[]) as v (id)
         on conflict (replica_id, blob_id) do update
             set copied_at = now(), verified_at = now(), verify_outcome = 'ok'",
        replica,
        ids,
    )
    .execute(pool)
    .await
    .map_err(error("record the replicated blobs"))?;
    Ok(())
}

/// The next `limit` blobs of the replica to re-hash, least recently verified first, not
/// verified since `started`.
pub async fn next_to_verify(
    pool: &PgPool,
    replica: &str,
    started: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<BlobToVerify>, CatalogError> {
    sqlx::query_as!(
        BlobToVerify,
        r#"select b.id, b.size from blob_replica br join blob b on b.id = br.blob_id
           where br.replica_id = $1 and br.verified_at < $2
           order by br.verified_at, br.blob_id
           limit $3"#,
        replica,
        started,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(error("choose replica blobs to verify"))
}

/// Records what re-hashing a page of the replica's blobs found.
pub async fn record_verifications(
    pool: &PgPool,
    replica: &str,
    ids: &[Vec<u8>],
    outcomes: &[&str],
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update blob_replica br set verified_at = now(), verify_outcome = v.outcome::verify_outcome
         from unnest($2::bytea[], $3::text[]) as v (id, outcome)
         where br.replica_id = $1 and br.blob_id = v.id",
        replica,
        ids,
        outcomes as &[&str],
    )
    .execute(pool)
    .await
    .map_err(error("record the replica's verifications"))?;
    Ok(())
}

/// One replica as seen from one medium.
#[derive(Debug, Clone, Serialize)]
pub struct MediumReplica {
    /// The replica's id.
    pub id: String,
    /// Where it was last replicated to.
    pub root: String,
    /// Blobs of the medium the replica does not hold right (not copied yet, or found wrong
    /// by its last check).
    pub lacking: i64,
}

/// Every replica, with how many of `medium`'s blobs it does not hold right; a replica with
/// `lacking == 0` holds all of the medium's content.
pub async fn of_medium(
    pool: &PgPool,
    medium: MediumId,
) -> Result<Vec<MediumReplica>, CatalogError> {
    sqlx::query_as!(
        MediumReplica,
        r#"select r.id, r.root,
                  (select count(*) from blob_medium bm
                   where bm.medium_id = $1
                     and not exists (select 1 from blob_replica br
                                     where br.replica_id = r.id and br.blob_id = bm.blob_id
                                       and br.verify_outcome = 'ok')) as "lacking!"
           from replica r
           order by r.created_at, r.id"#,
        medium as MediumId,
    )
    .fetch_all(pool)
    .await
    .map_err(error("count the medium's replicated content"))
}
