//! Reading a medium's load back: `ntt ls`, ignore patterns, and re-including excluded paths.

use futures_util::TryStreamExt;
use sqlx::PgPool;

use super::CatalogError;
use super::media::MediumId;

/// One listed path with its inode.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Volume number.
    pub volume_no: i32,
    /// Exact path bytes.
    pub path: Vec<u8>,
    /// Why the path is excluded, if it is.
    pub excluded_reason: Option<String>,
    /// Inode number (64 bits stored as bigint).
    pub ino: i64,
    /// Entry kind label.
    pub kind: String,
    /// Size in bytes.
    pub size: i64,
    /// Link count.
    pub nlink: i64,
    /// Modification time, ns.
    pub mtime_ns: Option<i64>,
    /// Symlink target bytes.
    pub target: Option<Vec<u8>>,
    /// Copy state label.
    pub state: String,
    /// Blob id, once copied.
    pub blob_id: Option<Vec<u8>>,
    /// Damaged byte ranges of the content (`{[0,4096),...}`), if any.
    pub damaged_ranges: Option<String>,
    /// A deleted entry (of a deleted volume).
    pub deleted: bool,
    /// For a deleted file: byte ranges of its recovered content now allocated to live files.
    pub overwritten_ranges: Option<String>,
    /// Other files (on any medium; its own hard links not counted) that hold the same
    /// content, when asked for.
    pub others: Option<i64>,
}

/// The bounds that select `prefix` itself and everything below it: `[prefix/, prefix0)` holds
/// exactly the paths starting with `prefix/` ('0' follows '/' in byte order).
fn below(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut low = prefix.to_vec();
    low.push(b'/');
    let mut high = prefix.to_vec();
    high.push(b'0');
    (low, high)
}

/// Which entries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct Only {
    /// Files with content on unreadable sectors.
    pub damaged: bool,
    /// Deleted entries.
    pub deleted: bool,
}

/// Streams the medium's paths (optionally one volume, optionally `prefix` and below) in volume
/// and path byte order to `visit`; memory stays bounded whatever the medium's size. With
/// `others`, each copied file also says how many other files (any medium) hold its content.
pub async fn list_paths(
    pool: &PgPool,
    medium: MediumId,
    volume: Option<i32>,
    prefix: Option<&[u8]>,
    only: Only,
    others: bool,
    visit: &mut (dyn FnMut(Listed) -> std::io::Result<()> + Send),
) -> Result<u64, CatalogError> {
    let (exact, low, high) = match prefix {
        Some(prefix) if !prefix.is_empty() => {
            let (low, high) = below(prefix);
            (Some(prefix.to_vec()), Some(low), Some(high))
        }
        _ => (None, None, None),
    };
    let mut rows = sqlx::query_as!(
        Listed,
        r#"with mine as (select distinct blob_id from inode
                         where $7 and medium_id = $1 and blob_id is not null),
                holders as (select o.blob_id, count(*) as files from inode o
                            where o.blob_id in (select blob_id from mine)
                            group by o.blob_id)
           select p.volume_no, p.path, p.excluded_reason, i.ino, i.kind::text as "kind!",
                  i.size, i.nlink, i.mtime_ns, i.target, i.state::text as "state!", i.blob_id,
                  i.damaged_ranges::text as damaged_ranges, h.files - 1 as "others?",
                  v.role = 'deleted' as "deleted!", i.overwritten_ranges::text as overwritten_ranges
           from path p
           join inode i on i.medium_id = p.medium_id and i.volume_no = p.volume_no and i.ino = p.ino
           join volume v on v.medium_id = p.medium_id and v.volume_no = p.volume_no
           left join holders h on h.blob_id = i.blob_id
           where p.medium_id = $1
             and ($2::integer is null or p.volume_no = $2)
             and ($3::bytea is null or p.path = $3 or (p.path >= $4 and p.path < $5))
             and (not $6 or i.damaged_ranges is not null)
             and (not $8 or v.role = 'deleted')
           order by p.volume_no, p.path"#,
        medium as MediumId,
        volume,
        exact,
        low,
        high,
        only.damaged,
        others,
        only.deleted,
    )
    .fetch(pool);
    let mut count = 0;
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| CatalogError::from_sqlx("list the paths", e))?
    {
        visit(row).map_err(|e| CatalogError::from_sqlx("write the listing", sqlx::Error::Io(e)))?;
        count += 1;
    }
    Ok(count)
}

/// One stored ignore pattern.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredPattern {
    /// The medium it belongs to (`None`: a site default).
    pub medium: Option<String>,
    /// The expression.
    pub pattern: String,
}

/// The site defaults and, with `medium`, that medium's patterns.
pub async fn ignore_patterns(
    pool: &PgPool,
    medium: Option<MediumId>,
) -> Result<Vec<StoredPattern>, CatalogError> {
    sqlx::query_as!(
        StoredPattern,
        r#"select m.name as "medium?", p.pattern
           from ignore_pattern p left join medium m on m.id = p.medium_id
           where p.medium_id is null or p.medium_id = $1
           order by p.medium_id nulls first, p.id"#,
        medium.map(MediumId::get),
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("list the ignore patterns", e))
}

/// Records a pattern (site-wide when `medium` is `None`); `false` if it was there already.
pub async fn add_ignore_pattern(
    pool: &PgPool,
    medium: Option<MediumId>,
    pattern: &str,
) -> Result<bool, CatalogError> {
    let done = sqlx::query!(
        "insert into ignore_pattern (medium_id, pattern) values ($1, $2)
         on conflict on constraint ignore_pattern_unique do nothing",
        medium.map(MediumId::get),
        pattern,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the ignore pattern", e))?;
    Ok(done.rows_affected() == 1)
}

/// Removes a pattern; `false` if there was none.
pub async fn remove_ignore_pattern(
    pool: &PgPool,
    medium: Option<MediumId>,
    pattern: &str,
) -> Result<bool, CatalogError> {
    let done = sqlx::query!(
        "delete from ignore_pattern where medium_id is not distinct from $1 and pattern = $2",
        medium.map(MediumId::get),
        pattern,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("remove the ignore pattern", e))?;
    Ok(done.rows_affected() > 0)
}

/// Includes excluded paths again: `path` itself and everything below it, on one volume or all.
/// Their inodes become pending (to be copied) once a name of theirs is no longer excluded
/// ([`super::states`]). Returns the paths included.
pub async fn include_paths(
    pool: &PgPool,
    medium: MediumId,
    volume: Option<i32>,
    path: &[u8],
) -> Result<u64, CatalogError> {
    let (low, high) = below(path);
    let mut transaction = pool
        .begin()
        .await
        .map_err(|e| CatalogError::from_sqlx("begin", e))?;
    let included = sqlx::query!(
        "update path set excluded_reason = null
         where medium_id = $1 and ($2::integer is null or volume_no = $2)
           and (path = $3 or (path >= $4 and path < $5)) and excluded_reason is not null",
        medium as MediumId,
        volume,
        path,
        low,
        high,
    )
    .execute(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("include the paths", e))?
    .rows_affected();
    sqlx::raw_sql(sqlx::AssertSqlSafe(super::states::exclusion_update(
        medium.get(),
        "inode",
        "path",
    )))
    .execute(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("make included files pending", e))?;
    sqlx::query!(
        "update medium set paths_excluded = (select count(*) from path
                                              where medium_id = $1 and excluded_reason is not null)
         where id = $1",
        medium as MediumId,
    )
    .execute(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("count the excluded paths", e))?;
    transaction
        .commit()
        .await
        .map_err(|e| CatalogError::from_sqlx("commit", e))?;
    Ok(included)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_a_prefix_is_a_byte_range() {
        let (low, high) = below(b"docs");
        assert_eq!(low, b"docs/");
        assert_eq!(high, b"docs0");
        for inside in [&b"docs/a"[..], b"docs/\xff\xff", b"docs/"] {
            assert!(inside >= low.as_slice() && inside < high.as_slice());
        }
        for outside in [&b"docs2"[..], b"docs.txt", b"doc", b"docs"] {
            assert!(!(outside >= low.as_slice() && outside < high.as_slice()));
        }
    }
}
