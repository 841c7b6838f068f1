//! Overlap between media (`ntt overlap`): what a medium added to the archive and what it shares
//! with whom, the overlap of the largest media with each other, and the store's savings in the
//! order media were registered. Content is a blob: two files hold the same content when they
//! were stored as the same blob; only copied files count.

use sqlx::PgPool;

use super::CatalogError;
use super::media::MediumId;

/// What one medium holds against the rest of the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediumOverlap {
    /// Copied files (inodes: a hard link is one file).
    pub files: i64,
    /// Their bytes as stored (each file its content's size), every file counted.
    pub bytes: i64,
    /// Distinct contents among them.
    pub contents: i64,
    /// Bytes of the distinct contents.
    pub content_bytes: i64,
    /// Files whose content no medium registered earlier had.
    pub new_files: i64,
    /// Distinct contents no earlier medium had, and their bytes: what the medium added.
    pub new_contents: i64,
    /// Bytes the medium added to the store.
    pub new_bytes: i64,
    /// Distinct contents an earlier medium already had.
    pub shared_contents: i64,
    /// Their bytes.
    pub shared_bytes: i64,
}

/// Another medium holding some of the same content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedWith {
    /// Its name.
    pub medium: String,
    /// Its hash.
    pub medium_hash: String,
    /// Whether it was registered before the medium asked about.
    pub earlier: bool,
    /// Distinct contents both hold.
    pub contents: i64,
    /// Their bytes.
    pub bytes: i64,
}

/// The medium's totals against the media registered before it.
pub async fn medium(pool: &PgPool, id: MediumId) -> Result<MediumOverlap, CatalogError> {
    sqlx::query_as!(
        MediumOverlap,
        r#"with me as (select created_at, id from medium where id = $1),
                files as (select i.blob_id, b.size from inode i join blob b on b.id = i.blob_id
                          where i.medium_id = $1),
                distinct_contents as (select distinct blob_id, size from files),
                -- A semi-join (EXISTS in WHERE), not a subplan run once per content.
                seen as (select d.blob_id from distinct_contents d
                         where exists (select 1 from inode o join medium m on m.id = o.medium_id, me
                                       where o.blob_id = d.blob_id and o.medium_id <> $1
                                         and (m.created_at, m.id) < (me.created_at, me.id))),
                contents as (select d.blob_id, d.size, s.blob_id is not null as seen
                             from distinct_contents d left join seen s using (blob_id))
           select (select count(*) from files) as "files!",
                  (select coalesce(sum(size), 0) from files)::bigint as "bytes!",
                  (select count(*) from contents) as "contents!",
                  (select coalesce(sum(size), 0) from contents)::bigint as "content_bytes!",
                  (select count(*) from files f join contents c using (blob_id)
                   where not c.seen) as "new_files!",
                  (select count(*) from contents where not seen) as "new_contents!",
                  (select coalesce(sum(size), 0) from contents where not seen)::bigint
                      as "new_bytes!",
                  (select count(*) from contents where seen) as "shared_contents!",
                  (select coalesce(sum(size), 0) from contents where seen)::bigint
                      as "shared_bytes!""#,
        id as MediumId,
    )
    .fetch_one(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("count what the medium adds", e))
}

/// Every other medium holding some of the medium's content, most shared bytes first.
pub async fn shared_with(pool: &PgPool, id: MediumId) -> Result<Vec<SharedWith>, CatalogError> {
    sqlx::query_as!(
        SharedWith,
        r#"with me as (select created_at, id from medium where id = $1),
                mine as (select distinct blob_id from inode
                         where medium_id = $1 and blob_id is not null),
                pairs as (select distinct o.medium_id, o.blob_id
                          from mine join inode o on o.blob_id = mine.blob_id
                          where o.medium_id <> $1)
           select m.name as medium, m.hash as medium_hash,
                  (m.created_at, m.id) < (me.created_at, me.id) as "earlier!",
                  count(*) as "contents!", coalesce(sum(b.size), 0)::bigint as "bytes!"
           from pairs p join medium m on m.id = p.medium_id join blob b on b.id = p.blob_id, me
           group by m.id, m.name, m.hash, m.created_at, me.created_at, me.id
           order by 5 desc, m.created_at, m.id"#,
        id as MediumId,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("find the media sharing content", e))
}

/// One medium in registration order, with what it brought to the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// Its name.
    pub medium: String,
    /// Its hash.
    pub medium_hash: String,
    /// When it was registered.
    pub registered_at: chrono::DateTime<chrono::Utc>,
    /// Bytes of its copied files as stored (each its content's size, every file counted), so
    /// that the running totals and the store's size are measured alike.
    pub bytes: i64,
    /// Bytes of the content it was the first to bring.
    pub new_bytes: i64,
}

/// Every medium in registration order with its file bytes and the bytes it added to the store
/// (content first seen on it): summed, the store's savings over time.
pub async fn timeline(pool: &PgPool) -> Result<Vec<Step>, CatalogError> {
    sqlx::query_as!(
        Step,
        r#"with pairs as (select distinct medium_id, blob_id from inode where blob_id is not null),
                firsts as (
                    select distinct on (p.blob_id) p.blob_id, p.medium_id
                    from pairs p join medium m on m.id = p.medium_id
                    order by p.blob_id, m.created_at, m.id),
                added as (select f.medium_id, sum(b.size) as bytes
                          from firsts f join blob b on b.id = f.blob_id group by f.medium_id),
                held as (select i.medium_id, sum(b.size) as bytes
                         from inode i join blob b on b.id = i.blob_id group by i.medium_id)
           select m.name as medium, m.hash as medium_hash, m.created_at as registered_at,
                  coalesce(h.bytes, 0)::bigint as "bytes!",
                  coalesce(a.bytes, 0)::bigint as "new_bytes!"
           from medium m
           left join held h on h.medium_id = m.id
           left join added a on a.medium_id = m.id
           order by m.created_at, m.id"#
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("sum the store's savings", e))
}

/// Two of the largest media and the content they share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pair {
    /// The one registered first.
    pub a: String,
    /// The other.
    pub b: String,
    /// Distinct contents both hold.
    pub contents: i64,
    /// Their bytes.
    pub bytes: i64,
}

/// The `top` media with the most distinct content bytes, largest first, and every pair of them
/// that shares content (registration order within a pair).
pub async fn matrix(pool: &PgPool, top: i64) -> Result<(Vec<String>, Vec<Pair>), CatalogError> {
    let error = |what| move |e| CatalogError::from_sqlx(what, e);
    let largest: Vec<String> = sqlx::query_scalar!(
        r#"with pairs as (select distinct medium_id, blob_id from inode where blob_id is not null)
           select m.name as "name!"
           from pairs p join blob b on b.id = p.blob_id join medium m on m.id = p.medium_id
           group by m.id, m.name
           order by sum(b.size) desc, m.created_at, m.id
           limit $1"#,
        top,
    )
    .fetch_all(pool)
    .await
    .map_err(error("find the largest media"))?;
    let pairs = sqlx::query_as!(
        Pair,
        r#"with chosen as (select id, created_at from medium where name = any($1)),
                pairs as (select distinct i.medium_id, i.blob_id from inode i
                          join chosen c on c.id = i.medium_id where i.blob_id is not null)
           select ma.name as a, mb.name as b, count(*) as "contents!",
                  coalesce(sum(bl.size), 0)::bigint as "bytes!"
           from pairs pa
           join pairs pb on pb.blob_id = pa.blob_id and pb.medium_id <> pa.medium_id
           join medium ma on ma.id = pa.medium_id
           join medium mb on mb.id = pb.medium_id
           join blob bl on bl.id = pa.blob_id
           where (ma.created_at, ma.id) < (mb.created_at, mb.id)
           group by ma.id, ma.name, ma.created_at, mb.id, mb.name, mb.created_at
           order by ma.created_at, ma.id, mb.created_at, mb.id"#,
        &largest,
    )
    .fetch_all(pool)
    .await
    .map_err(error("count the overlap of the largest media"))?;
    Ok((largest, pairs))
}
