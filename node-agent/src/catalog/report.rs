//! What a medium holds and how far it got: the accounting of `ntt report`, the lookups of
//! `ntt cat` and `ntt export-tree`, and the bookkeeping of `ntt verify`.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;

use super::CatalogError;
use super::media::MediumId;

fn error(what: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |e| CatalogError::from_sqlx(what, e)
}

/// Path-level accounting: every entry ends in exactly one of these. The entries are the count
/// the load recorded when it was published (each path row counted against the walk), the parts
/// are counted from the rows now, so a lost row, a path without its inode or a name whose
/// state contradicts [`super::states`] shows as an imbalance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Accounting {
    /// Entries the published load walked (one path row each).
    pub entries: i64,
    /// Paths of files whose content is in the store.
    pub copied: i64,
    /// Paths excluded by an ignore pattern.
    pub excluded: i64,
    /// Paths of files that could not be copied.
    pub failed: i64,
    /// Directories, symlinks, devices, fifos, sockets.
    pub not_a_file: i64,
    /// Paths of files not copied yet.
    pub pending: i64,
}

impl Accounting {
    /// Whether the parts add up to the whole.
    pub fn balances(&self) -> bool {
        self.entries == self.copied + self.excluded + self.failed + self.not_a_file + self.pending
    }

    /// Both accountings together.
    #[must_use]
    pub fn plus(&self, other: &Self) -> Self {
        Self {
            entries: self.entries + other.entries,
            copied: self.copied + other.copied,
            excluded: self.excluded + other.excluded,
            failed: self.failed + other.failed,
            not_a_file: self.not_a_file + other.not_a_file,
            pending: self.pending + other.pending,
        }
    }
}

/// Content accounting of the medium's files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Content {
    /// File inodes (hard links count once).
    pub files: i64,
    /// File inodes copied.
    pub copied_files: i64,
    /// Bytes of the copied files.
    pub copied_bytes: i64,
    /// Distinct blobs those files need.
    pub distinct_blobs: i64,
    /// Bytes of those blobs (what the medium needs in the store).
    pub distinct_bytes: i64,
    /// Of those blobs, how many other media share.
    pub shared_blobs: i64,
    /// Bytes of the files not copied yet.
    pub pending_bytes: i64,
}

/// The failures of a medium by class.
#[derive(Debug, Clone, Serialize)]
pub struct FailureClass {
    /// The class.
    pub class: String,
    /// File inodes that ended in it.
    pub files: i64,
}

/// Path-level accounting of a medium: its live entries, and apart from them its deleted
/// entries (the deleted volumes'), each adding up on its own.
pub async fn accounting(
    pool: &PgPool,
    medium: MediumId,
) -> Result<(Accounting, Accounting), CatalogError> {
    let row = sqlx::query!(
        r#"with rows as (
               select v.role = 'deleted' as deleted, p.excluded_reason is not null as excluded,
                      i.state::text as state
               from path p
               join volume v on v.medium_id = p.medium_id and v.volume_no = p.volume_no
               left join inode i on i.medium_id = p.medium_id and i.volume_no = p.volume_no
                                and i.ino = p.ino
               where p.medium_id = $1
           )
           select coalesce((select entries_walked from medium where id = $1), 0) as "entries!",
                  count(*) filter (where deleted) as "deleted_entries!",
                  count(*) filter (where not deleted and not excluded and state = 'copied') as "copied!",
                  count(*) filter (where not deleted and excluded and state is not null) as "excluded!",
                  count(*) filter (where not deleted and not excluded and state = 'failed') as "failed!",
                  count(*) filter (where not deleted and not excluded and state = 'not_a_file') as "not_a_file!",
                  count(*) filter (where not deleted and not excluded and state = 'pending') as "pending!",
                  count(*) filter (where deleted and not excluded and state = 'copied') as "deleted_copied!",
                  count(*) filter (where deleted and excluded and state is not null) as "deleted_excluded!",
                  count(*) filter (where deleted and not excluded and state = 'failed') as "deleted_failed!",
                  count(*) filter (where deleted and not excluded and state = 'not_a_file') as "deleted_not_a_file!",
                  count(*) filter (where deleted and not excluded and state = 'pending') as "deleted_pending!"
           from rows"#,
        medium as MediumId,
    )
    .fetch_one(pool)
    .await
    .map_err(error("count the medium's entries"))?;
    Ok((
        Accounting {
            entries: row.entries - row.deleted_entries,
            copied: row.copied,
            excluded: row.excluded,
            failed: row.failed,
            not_a_file: row.not_a_file,
            pending: row.pending,
        },
        Accounting {
            entries: row.deleted_entries,
            copied: row.deleted_copied,
            excluded: row.deleted_excluded,
            failed: row.deleted_failed,
            not_a_file: row.deleted_not_a_file,
            pending: row.deleted_pending,
        },
    ))
}

/// What became of a medium's deleted files' content.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovered {
    /// Deleted file inodes.
    pub files: i64,
    /// Of those, recovered into the store.
    pub copied_files: i64,
    /// Their bytes.
    pub copied_bytes: i64,
    /// Files part of whose recovered content lies in units now allocated to live files.
    pub overwritten_files: i64,
    /// Files part of whose recovered content lies on sectors that were never read.
    pub unreadable_files: i64,
}

/// The medium's deleted files and what became of their content.
pub async fn recovered(pool: &PgPool, medium: MediumId) -> Result<Recovered, CatalogError> {
    let row = sqlx::query!(
        r#"select count(*) as "files!",
                  count(*) filter (where i.state = 'copied') as "copied_files!",
                  coalesce(sum(i.size) filter (where i.state = 'copied'), 0)::bigint as "copied_bytes!",
                  count(*) filter (where i.overwritten_ranges is not null) as "overwritten_files!",
                  count(*) filter (where i.damaged_ranges is not null) as "unreadable_files!"
           from inode i
           join volume v on v.medium_id = i.medium_id and v.volume_no = i.volume_no
           where i.medium_id = $1 and v.role = 'deleted' and i.kind = 'file'"#,
        medium as MediumId,
    )
    .fetch_one(pool)
    .await
    .map_err(error("count the medium's deleted files"))?;
    Ok(Recovered {
        files: row.files,
        copied_files: row.copied_files,
        copied_bytes: row.copied_bytes,
        overwritten_files: row.overwritten_files,
        unreadable_files: row.unreadable_files,
    })
}

/// Content accounting of a medium's live files (deleted files: [`recovered`]).
pub async fn content(pool: &PgPool, medium: MediumId) -> Result<Content, CatalogError> {
    let row = sqlx::query!(
        r#"with files as (
               select state, size, blob_id from inode i where medium_id = $1 and kind = 'file'
                 and not exists (select 1 from volume v
                                 where v.medium_id = $1 and v.volume_no = i.volume_no
                                   and v.role = 'deleted')
           ), blobs as (
               select distinct blob_id from files where blob_id is not null
           )
           select (select count(*) from files) as "files!",
                  (select count(*) from files where state = 'copied') as "copied_files!",
                  (select coalesce(sum(size), 0) from files where state = 'copied')::bigint as "copied_bytes!",
                  (select count(*) from blobs) as "distinct_blobs!",
                  (select coalesce(sum(b.size), 0) from blobs x join blob b on b.id = x.blob_id)::bigint as "distinct_bytes!",
                  (select count(*) from blobs x
                    where exists (select 1 from inode o where o.blob_id = x.blob_id and o.medium_id <> $1)) as "shared_blobs!",
                  (select coalesce(sum(size), 0) from files where state = 'pending')::bigint as "pending_bytes!""#,
        medium as MediumId,
    )
    .fetch_one(pool)
    .await
    .map_err(error("count the medium's content"))?;
    Ok(Content {
        files: row.files,
        copied_files: row.copied_files,
        copied_bytes: row.copied_bytes,
        distinct_blobs: row.distinct_blobs,
        distinct_bytes: row.distinct_bytes,
        shared_blobs: row.shared_blobs,
        pending_bytes: row.pending_bytes,
    })
}

/// The medium's failed live files by error class (deleted files: the report's `deleted`).
pub async fn failures(pool: &PgPool, medium: MediumId) -> Result<Vec<FailureClass>, CatalogError> {
    sqlx::query_as!(
        FailureClass,
        r#"select i.error_class::text as "class!", count(*) as "files!"
           from inode i
           join volume v on v.medium_id = i.medium_id and v.volume_no = i.volume_no
           where i.medium_id = $1 and i.state = 'failed' and v.role <> 'deleted'
           group by i.error_class order by 2 desc"#,
        medium as MediumId,
    )
    .fetch_all(pool)
    .await
    .map_err(error("count the failures"))
}

/// The medium's problems (a JSON object, one key per finding).
pub async fn problems(pool: &PgPool, medium: MediumId) -> Result<serde_json::Value, CatalogError> {
    sqlx::query_scalar!(
        "select problems from medium where id = $1",
        medium as MediumId
    )
    .fetch_one(pool)
    .await
    .map_err(error("read the medium's problems"))
}

/// Entries the walk could not read.
pub async fn entry_errors(pool: &PgPool, medium: MediumId) -> Result<i64, CatalogError> {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from entry_error where medium_id = $1"#,
        medium as MediumId
    )
    .fetch_one(pool)
    .await
    .map_err(error("count the entry errors"))
}

/// A path's inode, as `ntt cat` needs it.
#[derive(Debug, Clone)]
pub struct PathInode {
    /// Volume.
    pub volume_no: i32,
    /// Kind label.
    pub kind: String,
    /// Copy state label.
    pub state: String,
    /// The blob, once copied.
    pub blob_id: Option<Vec<u8>>,
    /// Why the path is excluded.
    pub excluded_reason: Option<String>,
    /// The last error, if it failed.
    pub error_message: Option<String>,
}

/// The inodes that `path` (exact bytes) names on the medium (one per volume that has it).
pub async fn path_inodes(
    pool: &PgPool,
    medium: MediumId,
    volume: Option<i32>,
    path: &[u8],
) -> Result<Vec<PathInode>, CatalogError> {
    sqlx::query_as!(
        PathInode,
        r#"select p.volume_no, i.kind::text as "kind!", i.state::text as "state!", i.blob_id,
                  p.excluded_reason, i.error_message
           from path p
           join inode i on i.medium_id = p.medium_id and i.volume_no = p.volume_no and i.ino = p.ino
           where p.medium_id = $1 and p.path = $2 and ($3::integer is null or p.volume_no = $3)
           order by p.volume_no"#,
        medium as MediumId,
        path,
        volume,
    )
    .fetch_all(pool)
    .await
    .map_err(error("look up the path"))
}

/// One entry for `ntt export-tree`.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Volume.
    pub volume_no: i32,
    /// Exact path bytes.
    pub path: Vec<u8>,
    /// Kind label.
    pub kind: String,
    /// The blob of a copied file.
    pub blob_id: Option<Vec<u8>>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
}

/// Streams the medium's entries in path order (parents before children).
pub async fn tree(
    pool: &PgPool,
    medium: MediumId,
    visit: &mut (dyn FnMut(TreeEntry) -> std::io::Result<()> + Send),
) -> Result<u64, CatalogError> {
    let mut rows = sqlx::query_as!(
        TreeEntry,
        r#"select p.volume_no, p.path, i.kind::text as "kind!",
                  case when p.excluded_reason is null then i.blob_id end as blob_id, i.target
           from path p
           join inode i on i.medium_id = p.medium_id and i.volume_no = p.volume_no and i.ino = p.ino
           where p.medium_id = $1
           order by p.volume_no, p.path"#,
        medium as MediumId,
    )
    .fetch(pool);
    let mut count = 0;
    while let Some(row) = rows.try_next().await.map_err(error("list the tree"))? {
        visit(row).map_err(|e| CatalogError::from_sqlx("write the tree", sqlx::Error::Io(e)))?;
        count += 1;
    }
    Ok(count)
}

/// A blob to verify.
#[derive(Debug, Clone)]
pub struct BlobToVerify {
    /// Its id.
    pub id: Vec<u8>,
    /// Its recorded size.
    pub size: i64,
}

/// The catalog's clock: verifications are stamped with it, and a run takes only blobs
/// verified before it started.
pub async fn now(pool: &PgPool) -> Result<DateTime<Utc>, CatalogError> {
    sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(pool)
        .await
        .map_err(error("read the catalog's clock"))
}

/// The next `limit` blobs to verify, least recently verified first (never verified first):
/// those of one medium (the media listed as holding them, `blob_medium`), or all, not
/// verified since `started` (so a run that records as it goes moves on); with
/// `stale_before`, only those not found right since then.
pub async fn next_to_verify(
    pool: &PgPool,
    medium: Option<MediumId>,
    started: DateTime<Utc>,
    stale_before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<BlobToVerify>, CatalogError> {
    sqlx::query_as!(
        BlobToVerify,
        r#"select b.id, b.size from blob b
           where (b.verified_at is null or b.verified_at < $2)
             and ($4::timestamptz is null or b.verified_at is null or b.verified_at < $4
                  or b.verify_outcome is distinct from 'ok')
             and ($1::bigint is null
                  or b.id in (select bm.blob_id from blob_medium bm where bm.medium_id = $1))
           order by b.verified_at nulls first, b.id
           limit $3"#,
        medium.map(MediumId::get),
        started,
        limit,
        stale_before,
    )
    .fetch_all(pool)
    .await
    .map_err(error("choose blobs to verify"))
}

/// Records the outcomes (`ok`, `mismatch`, `missing`) of a page of verifications, in one
/// statement.
pub async fn record_verifications(
    pool: &PgPool,
    ids: &[Vec<u8>],
    outcomes: &[&str],
) -> Result<(), CatalogError> {
    // One statement: a blob recorded wrong and its media no longer "fully verified" together
    // (a run stopped before its end must not leave a medium verified that holds it).
    sqlx::query!(
        "with recorded as (
             update blob b set verified_at = now(), verify_outcome = v.outcome::verify_outcome
             from unnest($1::bytea[], $2::text[]) as v (id, outcome)
             where b.id = v.id
             returning b.id, b.verify_outcome)
         update medium m set verified_at = null
         where m.verified_at is not null
           and m.id in (select bm.medium_id from blob_medium bm join recorded r on r.id = bm.blob_id
                        where r.verify_outcome <> 'ok')",
        ids,
        outcomes as &[&str],
    )
    .execute(pool)
    .await
    .map_err(error("record the verifications"))?;
    Ok(())
}

/// Sets, for the copied media listed (every one when `None`), when each was last fully
/// verified: the oldest verification of its blobs when every one of them was verified and
/// found right, otherwise none (never fully verified, or a blob is wrong or missing). Returns
/// the media updated.
pub async fn record_media_verified(
    pool: &PgPool,
    media: Option<&[MediumId]>,
) -> Result<u64, CatalogError> {
    let ids: Option<Vec<i64>> = media.map(|m| m.iter().map(|id| id.get()).collect());
    let updated = sqlx::query!(
        "update medium m set verified_at = v.verified_at
         from (select bm.medium_id,
                      case when bool_and(b.verify_outcome is not distinct from 'ok')
                           then min(b.verified_at) end as verified_at
               from blob_medium bm join blob b on b.id = bm.blob_id
               where $1::bigint[] is null or bm.medium_id = any($1)
               group by bm.medium_id) v
         where m.id = v.medium_id and m.copied_at is not null
           and m.verified_at is distinct from v.verified_at",
        ids.as_deref(),
    )
    .execute(pool)
    .await
    .map_err(error("record when media were verified"))?;
    Ok(updated.rows_affected())
}

/// A blob whose last verification found it wrong, with the media that hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlob {
    /// Its id.
    pub id: Vec<u8>,
    /// `mismatch`, `missing` or `unreadable`.
    pub outcome: String,
    /// The names of the media holding it, by name.
    pub media: Vec<String>,
}

/// The blobs of `medium` whose last verification found them wrong, by id: how many, and the
/// first `limit` with the names of the media holding each (at most 64 names each).
pub async fn bad_blobs(
    pool: &PgPool,
    medium: MediumId,
    limit: i64,
) -> Result<(i64, Vec<BadBlob>), CatalogError> {
    let total = sqlx::query_scalar!(
        r#"select count(*) as "count!" from blob_medium bm join blob b on b.id = bm.blob_id
           where bm.medium_id = $1 and b.verify_outcome <> 'ok'"#,
        medium as MediumId,
    )
    .fetch_one(pool)
    .await
    .map_err(error("count the medium's wrong blobs"))?;
    let first = sqlx::query_as!(
        BadBlob,
        r#"select b.id, b.verify_outcome::text as "outcome!",
                  array(select m.name from blob_medium h join medium m on m.id = h.medium_id
                        where h.blob_id = b.id order by m.name limit 64) as "media!"
           from blob_medium bm join blob b on b.id = bm.blob_id
           where bm.medium_id = $1 and b.verify_outcome <> 'ok'
           order by b.id
           limit $2"#,
        medium as MediumId,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(error("list the medium's wrong blobs"))?;
    Ok((total, first))
}

/// The media holding any of `ids`.
pub async fn holders(pool: &PgPool, ids: &[Vec<u8>]) -> Result<Vec<MediumId>, CatalogError> {
    sqlx::query_scalar!(
        r#"select distinct medium_id as "id!: MediumId" from blob_medium
           where blob_id = any($1::bytea[]) order by 1"#,
        ids,
    )
    .fetch_all(pool)
    .await
    .map_err(error("find the media holding blobs"))
}

/// When `medium` was last fully verified (none: never, or a blob of it is wrong).
pub async fn medium_verified_at(
    pool: &PgPool,
    medium: MediumId,
) -> Result<Option<DateTime<Utc>>, CatalogError> {
    sqlx::query_scalar!(
        "select verified_at from medium where id = $1",
        medium as MediumId
    )
    .fetch_one(pool)
    .await
    .map_err(error("read when the medium was verified"))
}

/// A medium's image to re-hash.
#[derive(Debug, Clone)]
pub struct ImageToVerify {
    /// The medium.
    pub id: MediumId,
    /// Its name.
    pub name: String,
    /// Where the image is (on the host that imaged it).
    pub image_path: String,
    /// The BLAKE3 digest recorded when it was imaged.
    pub image_digest: Vec<u8>,
}

/// The images with a recorded digest, of one medium or all, least recently verified first.
pub async fn images_to_verify(
    pool: &PgPool,
    medium: Option<MediumId>,
) -> Result<Vec<ImageToVerify>, CatalogError> {
    sqlx::query_as!(
        ImageToVerify,
        r#"select id as "id: MediumId", name, image_path as "image_path!",
                  image_digest as "image_digest!"
           from medium
           where image_path is not null and image_digest is not null
             and ($1::bigint is null or id = $1)
           order by image_verified_at nulls first, id"#,
        medium.map(MediumId::get),
    )
    .fetch_all(pool)
    .await
    .map_err(error("choose images to verify"))
}

/// Records what re-hashing a medium's image found (`ok`, `mismatch`, `missing`, `unreadable`).
pub async fn record_image_verification(
    pool: &PgPool,
    medium: MediumId,
    outcome: &str,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update medium set image_verified_at = now(),
                           image_verify_outcome = $2::text::verify_outcome
         where id = $1",
        medium as MediumId,
        outcome,
    )
    .execute(pool)
    .await
    .map_err(error("record the image verification"))?;
    Ok(())
}

/// Of `ids` (store file names read as blob ids), those the catalog has no blob for.
pub async fn unknown_blobs(pool: &PgPool, ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CatalogError> {
    sqlx::query_scalar!(
        r#"select v.id as "id!" from unnest($1::bytea[]) as v (id)
           where not exists (select 1 from blob b where b.id = v.id)
           order by v.id"#,
        ids,
    )
    .fetch_all(pool)
    .await
    .map_err(error("look for store files the catalog does not name"))
}

/// Validates the path→inode keys the loader added unchecked, for one medium or all; returns the
/// media checked.
pub async fn validate_loads(pool: &PgPool, medium: Option<MediumId>) -> Result<u64, CatalogError> {
    let ids: Vec<i64> = sqlx::query_scalar!(
        "select id from medium where enumerated_at is not null and ($1::bigint is null or id = $1)",
        medium.map(MediumId::get),
    )
    .fetch_all(pool)
    .await
    .map_err(error("list the loads"))?;
    for id in &ids {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "alter table path_m{id} validate constraint path_m{id}_inode_fkey"
        )))
        .execute(pool)
        .await
        .map_err(error("validate a load's path to inode key"))?;
    }
    Ok(ids.len() as u64)
}
