//! Deleted entries: the files of a medium's deleted volumes, and the ranges of their recovered
//! content that are not theirs (now allocated to live files) or were never read.

use std::ops::Range;

use sqlx::PgPool;

use super::CatalogError;
use super::damage::multirange;
use super::media::MediumId;

/// What checking one deleted volume found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Checked {
    /// The volume.
    pub volume_no: i32,
    /// Deleted files with content.
    pub files: u64,
    /// Of those, files part of whose content now belongs to live files.
    pub overwritten: u64,
    /// Of those, files part of whose content lies on sectors that were never read.
    pub unreadable: u64,
    /// Of those, files The Sleuth Kit could not answer for (failed, not copied).
    pub unchecked: u64,
}

/// The regular files with content of a deleted volume that are to be copied (a name not
/// excluded): (inode, size).
pub async fn files(
    pool: &PgPool,
    medium: MediumId,
    volume_no: i32,
) -> Result<Vec<(i64, i64)>, CatalogError> {
    let rows = sqlx::query!(
        "select i.ino, i.size from inode i
         where i.medium_id = $1 and i.volume_no = $2 and i.kind = 'file' and i.size > 0
           and exists (select 1 from path p
                       where p.medium_id = i.medium_id and p.volume_no = i.volume_no
                         and p.ino = i.ino and p.excluded_reason is null)
         order by i.ino",
        medium as MediumId,
        volume_no,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("list the deleted files", e))?;
    Ok(rows.into_iter().map(|r| (r.ino, r.size)).collect())
}

/// A recovered file's inode, overwritten and unreadable byte ranges.
pub type RecoveredRanges = (i64, Vec<Range<u64>>, Vec<Range<u64>>);

/// Records the overwritten and unreadable byte ranges of recovered files (inode, overwritten,
/// unreadable; empty: none), replacing what was recorded, in one statement.
pub async fn record_ranges(
    pool: &PgPool,
    medium: MediumId,
    volume_no: i32,
    files: &[RecoveredRanges],
) -> Result<(), CatalogError> {
    if files.is_empty() {
        return Ok(());
    }
    let text = |ranges: &[Range<u64>]| (!ranges.is_empty()).then(|| multirange(ranges));
    let inodes: Vec<i64> = files.iter().map(|(ino, _, _)| *ino).collect();
    let overwritten: Vec<Option<String>> = files.iter().map(|(_, o, _)| text(o)).collect();
    let unreadable: Vec<Option<String>> = files.iter().map(|(_, _, u)| text(u)).collect();
    sqlx::query!(
        "update inode i set overwritten_ranges = n.overwritten::int8multirange,
                            damaged_ranges = n.unreadable::int8multirange
         from unnest($3::bigint[], $4::text[], $5::text[]) as n (ino, overwritten, unreadable)
         where i.medium_id = $1 and i.volume_no = $2 and i.ino = n.ino",
        medium as MediumId,
        volume_no,
        &inodes,
        &overwritten as &[Option<String>],
        &unreadable as &[Option<String>],
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("record recovered files' ranges", e))?;
    Ok(())
}

/// Records that a deleted file's recovered content could not be checked: it is failed, never
/// copied as if it were the file's.
pub async fn record_unchecked(
    pool: &PgPool,
    medium: MediumId,
    volume_no: i32,
    ino: i64,
    why: &str,
) -> Result<(), CatalogError> {
    let message = format!(
        "cannot check whether the recovered content is this deleted file's own (The Sleuth Kit: \
         {why}): not copied"
    );
    sqlx::query!(
        "update inode set state = 'failed', error_class = 'unknown', error_message = $4
         where medium_id = $1 and volume_no = $2 and ino = $3 and state = 'pending'
           and lease_worker is null",
        medium as MediumId,
        volume_no,
        ino,
        message,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("record a deleted file as unchecked", e))?;
    Ok(())
}

/// The medium's deleted volumes whose files are checked for the current load.
pub async fn checked_volumes(pool: &PgPool, medium: MediumId) -> Result<Vec<i32>, CatalogError> {
    sqlx::query_scalar!(
        "select volume_no from volume
         where medium_id = $1 and role = 'deleted' and deleted_checked_at is not null",
        medium as MediumId,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("read which deleted volumes are checked", e))
}

/// Records that every file of the deleted volume is checked.
pub async fn record_checked(
    pool: &PgPool,
    medium: MediumId,
    volume_no: i32,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update volume set deleted_checked_at = now()
         where medium_id = $1 and volume_no = $2 and role = 'deleted'",
        medium as MediumId,
        volume_no,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("record a deleted volume as checked", e))?;
    Ok(())
}

/// Forgets every check of the medium's deleted volumes (a load is being built: its files are
/// checked anew).
pub async fn clear_checked(pool: &PgPool, medium: MediumId) -> Result<(), CatalogError> {
    sqlx::query!(
        "update volume set deleted_checked_at = null
         where medium_id = $1 and deleted_checked_at is not null",
        medium as MediumId,
    )
    .execute(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("clear the deleted volumes' checks", e))?;
    Ok(())
}

/// Every medium's deleted volumes: (medium id, volume number).
pub async fn deleted_volumes(
    pool: &PgPool,
) -> Result<std::collections::HashSet<(i64, i32)>, CatalogError> {
    let rows = sqlx::query!("select medium_id, volume_no from volume where role = 'deleted'",)
        .fetch_all(pool)
        .await
        .map_err(|e| CatalogError::from_sqlx("list the deleted volumes", e))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.medium_id, r.volume_no))
        .collect())
}
