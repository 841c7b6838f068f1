//! Finding content across the archive: every place that holds a blob (`ntt where`).

use ntt_crds::BlobId;
use sqlx::PgPool;

use super::CatalogError;

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Bytes.
    pub size: i64,
    /// When it entered the store.
    pub stored_at: chrono::DateTime<chrono::Utc>,
    /// Whether some file stored as this blob was copied while parts of it were unreadable.
    pub damaged_source: bool,
}

/// One path of one medium whose file holds a given content.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Place {
    /// The medium's name.
    pub medium: String,
    /// The medium's hash.
    pub medium_hash: String,
    /// When the medium entered the catalog.
    pub registered_at: chrono::DateTime<chrono::Utc>,
    /// Volume number.
    pub volume_no: i32,
    /// Inode number (64 bits as bigint).
    pub ino: i64,
    /// Exact path bytes, relative to the volume root.
    pub path: Vec<u8>,
    /// Why the path is excluded, if it is (its inode was copied through another path).
    pub excluded_reason: Option<String>,
    /// Whether this file's content lies partly on unreadable areas of its medium.
    pub damaged: bool,
}

/// The blob, if the store holds it.
pub async fn blob(pool: &PgPool, id: &BlobId) -> Result<Option<Blob>, CatalogError> {
    sqlx::query_as!(
        Blob,
        "select size, stored_at, damaged_source from blob where id = $1",
        id.as_bytes().as_slice(),
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("look up a blob", e))
}

/// The media that may hold a file stored as `id` (`blob_medium`, one small table: through the
/// partitioned `inode` table a new connection planned over every medium's partition, 70-95 ms
/// at 100 media); a medium listed there that no longer holds it adds an empty branch.
/// With `only_present` (asking again after a purge dropped a partition), only media whose
/// partitions exist.
async fn media_holding(
    pool: &PgPool,
    id: &BlobId,
    only_present: bool,
) -> Result<Vec<i64>, CatalogError> {
    let media = sqlx::query_scalar!(
        "select medium_id from blob_medium where blob_id = $1 order by medium_id",
        id.as_bytes().as_slice(),
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("find the media holding a blob", e))?;
    if only_present {
        return with_partitions(pool, &media).await;
    }
    Ok(media)
}

/// Whether a statement over named partitions failed because one of them is gone (a purge
/// between finding the media and reading them): the caller asks again, a few times.
fn partition_vanished(error: &sqlx::Error, tries: &mut u32) -> bool {
    *tries += 1;
    *tries <= 3
        && error
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .as_deref()
            == Some("42P01")
}

/// The statement's branch for each medium's partitions (`inode_m42`, `path_m42`): through the
/// partitioned parents the planner weighs every partition of both tables for the join (most of
/// `ntt where`'s 188 ms at 100 media). Ids are integers from the catalog, never text.
fn holder_branches(media: &[i64], select: &str) -> String {
    media
        .iter()
        .map(|m| {
            format!(
                "select {select}
                 from inode_m{m} i
                 join path_m{m} p on p.volume_no = i.volume_no and p.ino = i.ino
                 where i.blob_id = $1"
            )
        })
        .collect::<Vec<_>>()
        .join("\n union all\n")
}

/// Every path whose file is stored as `id`, in medium registration, volume and path order; at
/// most `limit`.
pub async fn places(
    pool: &PgPool,
    id: &BlobId,
    limit: Option<i64>,
) -> Result<Vec<Place>, CatalogError> {
    let mut tries = 0;
    loop {
        let media = media_holding(pool, id, tries > 0).await?;
        if media.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select m.name as medium, m.hash as medium_hash, m.created_at as registered_at,
                    h.volume_no, h.ino, h.path, h.excluded_reason, h.damaged
             from ({}) h
             join medium m on m.id = h.medium_id
             order by m.created_at, m.id, h.volume_no, h.path
             limit $2",
            holder_branches(
                &media,
                "i.medium_id, p.volume_no, p.ino, p.path, p.excluded_reason,
                 i.damaged_ranges is not null as damaged"
            )
        );
        match sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.as_bytes().as_slice())
            .bind(limit)
            .fetch_all(pool)
            .await
        {
            Err(e) if partition_vanished(&e, &mut tries) => {}
            places => {
                return places.map_err(|e| CatalogError::from_sqlx("find the places of a blob", e));
            }
        }
    }
}

/// How many paths, files and media hold the content stored as `id`.
pub async fn count_places(pool: &PgPool, id: &BlobId) -> Result<(i64, i64, i64), CatalogError> {
    let mut tries = 0;
    loop {
        let media = media_holding(pool, id, tries > 0).await?;
        if media.is_empty() {
            return Ok((0, 0, 0));
        }
        let sql = format!(
            "select count(*), count(distinct (medium_id, volume_no, ino)),
                    count(distinct medium_id)
             from ({}) h",
            holder_branches(&media, "i.medium_id, i.volume_no, i.ino")
        );
        match sqlx::query_as::<_, (i64, i64, i64)>(sqlx::AssertSqlSafe(sql))
            .bind(id.as_bytes().as_slice())
            .fetch_one(pool)
            .await
        {
            Err(e) if partition_vanished(&e, &mut tries) => {}
            counts => {
                return counts
                    .map_err(|e| CatalogError::from_sqlx("count the places of a blob", e));
            }
        }
    }
}

/// What `find` selects in SQL (every field optional); name globs and regular expressions are
/// applied to the rows it streams ([`Found::path`]).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The whole path contains these bytes.
    pub path_contains: Option<Vec<u8>>,
    /// Size at least / at most, bytes.
    pub min_size: Option<i64>,
    /// Size at most.
    pub max_size: Option<i64>,
    /// Modified at or after (ns since the epoch).
    pub mtime_from: Option<i64>,
    /// Modified before (ns since the epoch).
    pub mtime_before: Option<i64>,
    /// The stored content's MIME type starts with this (`image/`, `application/pdf`).
    pub mime_prefix: Option<String>,
    /// The path's state as `ntt ls` shows it (`copied`, `pending`, `failed`, `excluded`,
    /// `not_a_file`).
    pub state: Option<String>,
    /// Only files with content on unreadable areas.
    pub damaged: bool,
    /// Entry kind (`file`, `dir`, `symlink`, `block`, `char`, `fifo`, `socket`).
    pub kind: Option<String>,
    /// Also count, per file, the other files (any medium; a hard link is one file) that hold
    /// its content.
    pub count_others: bool,
    /// At most this many rows (when every filter is in SQL); `None`: all.
    pub rows: Option<i64>,
}

/// One path `find` selected.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Found {
    /// Volume number.
    pub volume_no: i32,
    /// Exact path bytes.
    pub path: Vec<u8>,
    /// Inode number (64 bits as bigint).
    pub ino: i64,
    /// Entry kind label.
    pub kind: String,
    /// Size in bytes.
    pub size: i64,
    /// Modification time, ns.
    pub mtime_ns: Option<i64>,
    /// State label as `ntt ls` shows it (`excluded` for an excluded path).
    pub state: String,
    /// Blob id, once copied.
    pub blob_id: Option<Vec<u8>>,
    /// The stored content's MIME type.
    pub mime_type: Option<String>,
    /// Whether the content lies partly on unreadable areas.
    pub damaged: bool,
    /// Other files (on any medium; its own hard links not counted) that hold the same
    /// content, when asked for.
    pub others: Option<i64>,
}

/// A medium `find` searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    /// Surrogate id.
    pub id: super::media::MediumId,
    /// Name.
    pub name: String,
    /// Hash.
    pub hash: String,
    /// Whether the names of its load are indexed ([`super::names`]).
    pub names_indexed: bool,
}

/// Every medium, in the order they entered the catalog (the order `find` searches them in).
pub async fn all_media(pool: &PgPool) -> Result<Vec<Searched>, CatalogError> {
    sqlx::query_as!(
        Searched,
        r#"select id as "id: super::media::MediumId", name, hash,
                  names_indexed_at is not null as "names_indexed!"
           from medium order by created_at, id"#
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("list the media to search", e))
}

/// Streams the paths of one medium that `filter` selects, in volume and path byte order (the
/// path key's order: no sort), to `visit` until it returns `false`; returns whether it was
/// stopped.
pub async fn find_in_medium(
    pool: &PgPool,
    medium: super::media::MediumId,
    filter: &Filter,
    visit: &mut (dyn FnMut(Found) -> std::io::Result<bool> + Send),
) -> Result<bool, CatalogError> {
    use futures_util::TryStreamExt;
    let mut rows = sqlx::query_as!(
        Found,
        r#"with mine as (select distinct blob_id from inode
                         where $11 and medium_id = $1 and blob_id is not null),
                holders as (select o.blob_id, count(*) as files from inode o
                            where o.blob_id in (select blob_id from mine)
                            group by o.blob_id)
           select p.volume_no, p.path, p.ino, i.kind::text as "kind!", i.size, i.mtime_ns,
                  case when p.excluded_reason is not null then 'excluded'
                       else i.state::text end as "state!",
                  i.blob_id, b.mime_type, i.damaged_ranges is not null as "damaged!",
                  h.files - 1 as "others?"
           from path p
           join inode i on i.medium_id = p.medium_id and i.volume_no = p.volume_no and i.ino = p.ino
           left join blob b on b.id = i.blob_id
           left join holders h on h.blob_id = i.blob_id
           where p.medium_id = $1
             and ($2::bytea is null or position($2 in p.path) > 0)
             and ($3::bigint is null or i.size >= $3)
             and ($4::bigint is null or i.size <= $4)
             and ($5::bigint is null or i.mtime_ns >= $5)
             and ($6::bigint is null or i.mtime_ns < $6)
             and ($7::text is null or starts_with(b.mime_type, $7))
             and ($8::text is null
                  or $8 = case when p.excluded_reason is not null then 'excluded'
                               else i.state::text end)
             and (not $9 or i.damaged_ranges is not null)
             and ($10::text is null or i.kind::text = $10)
           order by p.volume_no, p.path
           limit $12"#,
        medium as super::media::MediumId,
        filter.path_contains.as_deref(),
        filter.min_size,
        filter.max_size,
        filter.mtime_from,
        filter.mtime_before,
        filter.mime_prefix.as_deref(),
        filter.state.as_deref(),
        filter.damaged,
        filter.kind.as_deref(),
        filter.count_others,
        filter.rows,
    )
    .fetch(pool);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| CatalogError::from_sqlx("search the paths", e))?
    {
        let go_on = visit(row)
            .map_err(|e| CatalogError::from_sqlx("write the matches", sqlx::Error::Io(e)))?;
        if !go_on {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A row of [`find_named`]: the medium's index, then the match.
#[derive(sqlx::FromRow)]
struct Ranked {
    rank: i32,
    #[sqlx(flatten)]
    found: Found,
}

/// Streams the paths of `media` (in that order; their names indexed) whose names satisfy `like`
/// over folded names ([`crate::name_glob::NameGlob::like_pattern`]) and that `filter` selects
/// (its `rows` aside), in medium, volume and path byte order, to `visit` with the medium's
/// index in `media`, until it returns `false`; returns whether it was stopped.
///
/// The name index gives each medium's name hashes; then one statement reads, in each medium
/// holding such a name, its paths with those hashes (the partition's name index) and their
/// inodes. The statement names each medium's partitions (`path_m42`, `inode_m42`), one branch
/// each: through the partitioned parents the planner weighs every partition for every join
/// (about 140 ms of planning over 100 media, more than the search), and its generic plans
/// prune only at run time.
pub async fn find_named(
    pool: &PgPool,
    media: &[super::media::MediumId],
    like: &str,
    filter: &Filter,
    visit: &mut (dyn FnMut(usize, Found) -> std::io::Result<bool> + Send),
) -> Result<bool, CatalogError> {
    let mut tries = 0;
    loop {
        match find_named_once(pool, media, like, filter, tries > 0, visit).await {
            // A medium purged after its name was found: nothing was printed yet (the
            // statement fails before its first row), so ask again, leaving out media whose
            // partitions are gone (their names go with them, a moment later).
            Err(NamedTry::Vanished(e)) if partition_vanished(&e, &mut tries) => {}
            Err(NamedTry::Vanished(e)) => {
                return Err(CatalogError::from_sqlx("search the names", e));
            }
            Err(NamedTry::Failed(e)) => return Err(e),
            Ok(stopped) => return Ok(stopped),
        }
    }
}

/// The media among `media` whose path and inode partitions exist.
async fn with_partitions(pool: &PgPool, media: &[i64]) -> Result<Vec<i64>, CatalogError> {
    sqlx::query_scalar(
        "select id from unnest($1::bigint[]) as m (id)
         where to_regclass(format('path_m%s', id)) is not null
           and to_regclass(format('inode_m%s', id)) is not null",
    )
    .bind(media)
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("find the media still in the catalog", e))
}

/// Why one try of [`find_named`] failed.
enum NamedTry {
    /// The statement failed before any row was visited (perhaps a partition was dropped).
    Vanished(sqlx::Error),
    /// Anything else.
    Failed(CatalogError),
}

async fn find_named_once(
    pool: &PgPool,
    media: &[super::media::MediumId],
    like: &str,
    filter: &Filter,
    only_present: bool,
    visit: &mut (dyn FnMut(usize, Found) -> std::io::Result<bool> + Send),
) -> Result<bool, NamedTry> {
    use futures_util::TryStreamExt;
    let mut named = super::names::media_with_names(pool, like)
        .await
        .map_err(NamedTry::Failed)?;
    if only_present {
        let asked: Vec<i64> = named.keys().map(|m| m.get()).collect();
        let present = with_partitions(pool, &asked)
            .await
            .map_err(NamedTry::Failed)?;
        named.retain(|m, _| present.contains(&m.get()));
    }
    let holding: Vec<(usize, i64, Vec<i64>)> = media
        .iter()
        .enumerate()
        .filter_map(|(i, m)| named.remove(m).map(|hashes| (i, m.get(), hashes)))
        .collect();
    if holding.is_empty() {
        return Ok(false);
    }
    // $1..$10: the filters; $11 on: each medium's name hashes. Ids are integers from the
    // catalog, never text from a medium.
    let branches: Vec<String> = holding
        .iter()
        .enumerate()
        .map(|(n, (rank, id, _))| {
            format!(
                "select {rank}::int as rank, p.volume_no, p.path, p.ino, i.kind::text as kind,
                        i.size, i.mtime_ns,
                        case when p.excluded_reason is not null then 'excluded'
                             else i.state::text end as state,
                        i.blob_id, b.mime_type, i.damaged_ranges is not null as damaged,
                        case when $10 and i.blob_id is not null
                             then (select count(*) from inode o where o.blob_id = i.blob_id) - 1
                        end as others
                 from path_m{id} p
                 join inode_m{id} i on i.volume_no = p.volume_no and i.ino = p.ino
                 left join blob b on b.id = i.blob_id
                 where p.name_id = any(${hashes}::bigint[])
                   and ($1::bytea is null or position($1 in p.path) > 0)
                   and ($2::bigint is null or i.size >= $2)
                   and ($3::bigint is null or i.size <= $3)
                   and ($4::bigint is null or i.mtime_ns >= $4)
                   and ($5::bigint is null or i.mtime_ns < $5)
                   and ($6::text is null or starts_with(b.mime_type, $6))
                   and ($7::text is null
                        or $7 = case when p.excluded_reason is not null then 'excluded'
                                     else i.state::text end)
                   and (not $8 or i.damaged_ranges is not null)
                   and ($9::text is null or i.kind::text = $9)",
                hashes = 11 + n
            )
        })
        .collect();
    let sql = format!(
        "{} order by rank, volume_no, path",
        branches.join("\n union all\n")
    );
    let mut query = sqlx::query_as::<_, Ranked>(sqlx::AssertSqlSafe(sql))
        .bind(filter.path_contains.as_deref())
        .bind(filter.min_size)
        .bind(filter.max_size)
        .bind(filter.mtime_from)
        .bind(filter.mtime_before)
        .bind(filter.mime_prefix.as_deref())
        .bind(filter.state.as_deref())
        .bind(filter.damaged)
        .bind(filter.kind.as_deref())
        .bind(filter.count_others);
    for (_, _, hashes) in &holding {
        query = query.bind(hashes);
    }
    let mut rows = query.fetch(pool);
    let mut visited = false;
    loop {
        let row = match rows.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) if !visited => return Err(NamedTry::Vanished(e)),
            Err(e) => {
                return Err(NamedTry::Failed(CatalogError::from_sqlx(
                    "search the names",
                    e,
                )));
            }
        };
        visited = true;
        let index = usize::try_from(row.rank).unwrap_or(usize::MAX);
        let go_on = visit(index, row.found).map_err(|e| {
            NamedTry::Failed(CatalogError::from_sqlx(
                "write the matches",
                sqlx::Error::Io(e),
            ))
        })?;
        if !go_on {
            return Ok(true);
        }
    }
    Ok(false)
}
