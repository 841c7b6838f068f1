//! The name index (`migrations/0009_name_index.sql`): every distinct name of the archive once,
//! with a trigram index over its fold, which media hold it, and each path's name hash.
//!
//! The loader writes each path's name hash; [`index_names`] adds the medium's names to the
//! dictionary and records which names it holds, after publish and off the enumeration's path.
//! [`media_with_names`] is the query side: which media hold a name a glob may match, and under
//! which hashes.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use sqlx::PgPool;

use super::CatalogError;
use super::media::MediumId;
use crate::name_glob::{fold, name_hash, name_of};

/// Distinct names held in memory before they are added to the dictionary.
const NAMES_PER_BATCH: usize = 50_000;

/// Paths whose name hash is corrected per statement.
const CORRECTIONS_PER_BATCH: usize = 10_000;

/// What [`index_names`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum NamesIndexed {
    /// The medium's names are now indexed.
    Indexed {
        /// Paths read.
        paths: u64,
        /// Distinct names the medium holds.
        names: u64,
        /// Of them, names no other medium had (added to the dictionary).
        new_names: u64,
        /// Paths whose name hash was missing (a load made before the index) or wrong (a name
        /// the load renamed to repair a duplicate), now set.
        fixed: u64,
    },
    /// They were indexed already (for the current load).
    AlreadyIndexed,
    /// The medium has no published load.
    NotEnumerated,
    /// A new load was published while the names were read: the new one must be indexed.
    Superseded,
}

/// Indexes the names of the published load of `medium`: adds the names no medium had to the
/// dictionary, sets each path's name hash where it is missing or wrong, and records which names
/// the medium holds, marking it indexed in the same transaction (only if its load is still the
/// one read). Idempotent; safe beside copying and beside another indexer; a kill at any point
/// leaves the medium unindexed (searched by its paths) or indexed, never half.
pub async fn index_names(pool: &PgPool, medium: MediumId) -> Result<NamesIndexed, CatalogError> {
    let state = sqlx::query!(
        "select enumerated_at, names_indexed_at from medium where id = $1",
        medium as MediumId,
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("read the medium's load", e))?;
    let Some(state) = state else {
        return Ok(NamesIndexed::NotEnumerated);
    };
    let Some(enumerated_at) = state.enumerated_at else {
        return Ok(NamesIndexed::NotEnumerated);
    };
    if state.names_indexed_at.is_some() {
        return Ok(NamesIndexed::AlreadyIndexed);
    }
    let (mut paths, mut names, mut new_names, mut fixed) = (0u64, 0u64, 0u64, 0u64);
    let mut batch: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut seen: HashSet<i64> = HashSet::new();
    let mut corrections: Vec<(i32, Vec<u8>, i64)> = Vec::new();
    {
        let mut rows = sqlx::query!(
            "select volume_no, path, name_id from path where medium_id = $1",
            medium as MediumId,
        )
        .fetch(pool);
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| CatalogError::from_sqlx("read the medium's paths", e))?
        {
            paths += 1;
            let name = name_of(&row.path);
            let hash = name_hash(name);
            if row.name_id != Some(hash) {
                corrections.push((row.volume_no, row.path.clone(), hash));
                if corrections.len() >= CORRECTIONS_PER_BATCH {
                    fixed += correct_hashes(pool, medium, std::mem::take(&mut corrections)).await?;
                }
            }
            if seen.insert(hash) {
                names += 1;
            }
            if !batch.contains_key(name) {
                batch.insert(name.to_vec(), hash);
                if batch.len() >= NAMES_PER_BATCH {
                    new_names += add_names(pool, std::mem::take(&mut batch)).await?;
                }
            }
        }
    }
    new_names += add_names(pool, batch).await?;
    fixed += correct_hashes(pool, medium, corrections).await?;
    if !record_names(pool, medium, enumerated_at).await? {
        return Ok(NamesIndexed::Superseded);
    }
    Ok(NamesIndexed::Indexed {
        paths,
        names,
        new_names,
        fixed,
    })
}

/// Records which names the medium's paths have and marks its names indexed, in one
/// transaction, if its load is still the one published at `enumerated_at`; whether it was.
async fn record_names(
    pool: &PgPool,
    medium: MediumId,
    enumerated_at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, CatalogError> {
    let mut transaction = pool
        .begin()
        .await
        .map_err(|e| CatalogError::from_sqlx("begin recording the medium's names", e))?;
    let current = sqlx::query_scalar!(
        "select enumerated_at from medium where id = $1 for update",
        medium as MediumId,
    )
    .fetch_optional(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("lock the medium", e))?
    .flatten();
    if current != Some(enumerated_at) {
        return Ok(false);
    }
    sqlx::query!(
        "delete from file_name_medium where medium_id = $1",
        medium as MediumId
    )
    .execute(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("forget the medium's old names", e))?;
    sqlx::query!(
        "insert into file_name_medium (hash, medium_id)
         select distinct name_id, $1::bigint from path where medium_id = $1 and name_id is not null",
        medium as MediumId,
    )
    .execute(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the medium's names", e))?;
    sqlx::query!(
        "update medium set names_indexed_at = now() where id = $1",
        medium as MediumId
    )
    .execute(&mut *transaction)
    .await
    .map_err(|e| CatalogError::from_sqlx("mark the medium's names indexed", e))?;
    transaction
        .commit()
        .await
        .map_err(|e| CatalogError::from_sqlx("commit the medium's names", e))?;
    Ok(true)
}

/// Adds the names the dictionary lacks, in name order; how many were new.
async fn add_names(pool: &PgPool, batch: HashMap<Vec<u8>, i64>) -> Result<u64, CatalogError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut rows: Vec<(Vec<u8>, i64)> = batch.into_iter().collect();
    rows.sort_unstable();
    let folds: Vec<String> = rows.iter().map(|(name, _)| fold(name)).collect();
    let (names, hashes): (Vec<Vec<u8>>, Vec<i64>) = rows.into_iter().unzip();
    let added = sqlx::query!(
        "insert into file_name (name, hash, fold)
         select * from unnest($1::bytea[], $2::bigint[], $3::text[])
         on conflict (name) do nothing",
        &names,
        &hashes,
        &folds,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("add names to the name index", e))?;
    Ok(added.rows_affected())
}

/// Sets the name hash of these paths (volume, path, hash); how many were set.
async fn correct_hashes(
    pool: &PgPool,
    medium: MediumId,
    corrections: Vec<(i32, Vec<u8>, i64)>,
) -> Result<u64, CatalogError> {
    if corrections.is_empty() {
        return Ok(0);
    }
    let mut volumes = Vec::with_capacity(corrections.len());
    let mut paths = Vec::with_capacity(corrections.len());
    let mut hashes = Vec::with_capacity(corrections.len());
    for (volume, path, hash) in corrections {
        volumes.push(volume);
        paths.push(path);
        hashes.push(hash);
    }
    let done = sqlx::query!(
        "update path p set name_id = f.hash
         from unnest($2::int[], $3::bytea[], $4::bigint[]) as f (volume_no, path, hash)
         where p.medium_id = $1 and p.volume_no = f.volume_no and p.path = f.path",
        medium as MediumId,
        &volumes,
        &paths,
        &hashes,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("set the name hashes of paths", e))?;
    Ok(done.rows_affected())
}

/// The media (id, name) whose names are not indexed for their current load, in the order
/// they entered the catalog.
pub async fn unindexed_media(pool: &PgPool) -> Result<Vec<(MediumId, String)>, CatalogError> {
    let rows = sqlx::query!(
        r#"select id as "id: MediumId", name from medium
           where enumerated_at is not null and names_indexed_at is null
           order by created_at, id"#
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("list the media to index", e))?;
    Ok(rows.into_iter().map(|r| (r.id, r.name)).collect())
}

/// For a `LIKE` pattern over folded names ([`crate::name_glob::NameGlob::like_pattern`]): the
/// indexed media holding a name that satisfies it, each with those names' hashes.
pub async fn media_with_names(
    pool: &PgPool,
    like: &str,
) -> Result<HashMap<MediumId, Vec<i64>>, CatalogError> {
    let rows = sqlx::query!(
        r#"select m.medium_id as "medium_id: MediumId", array_agg(distinct n.hash) as "hashes!"
           from file_name n
           join file_name_medium m on m.hash = n.hash
           where n.fold like $1
           group by m.medium_id"#,
        like,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("look up names in the name index", e))?;
    Ok(rows.into_iter().map(|r| (r.medium_id, r.hashes)).collect())
}
