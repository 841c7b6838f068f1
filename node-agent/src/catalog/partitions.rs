//! Per-medium partitions of `inode`, `path` and `copy_error`.
//!
//! Rules: partitions are named from the surrogate [`MediumId`] (`inode_m42`), created and dropped
//! only by the SQL functions of the schema, which take a per-medium advisory lock, so concurrent
//! callers are safe and one medium's partitions are never touched on behalf of another.

use sqlx::PgExecutor;

use super::CatalogError;
use super::media::MediumId;

/// Creates the medium's partitions (and their foreign keys) if missing; a no-op otherwise.
pub async fn ensure_medium_partitions(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
) -> Result<(), CatalogError> {
    sqlx::query!("select ensure_medium_partitions($1)", medium as MediumId)
        .execute(executor)
        .await
        .map_err(|e| CatalogError::from_sqlx("create the medium's partitions", e))?;
    Ok(())
}

/// Drops the medium's partitions and everything in them; a no-op when there are none.
pub async fn drop_medium_partitions(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
) -> Result<(), CatalogError> {
    sqlx::query!("select drop_medium_partitions($1)", medium as MediumId)
        .execute(executor)
        .await
        .map_err(|e| CatalogError::from_sqlx("drop the medium's partitions", e))?;
    Ok(())
}

/// The names of the partitions that exist for the medium, sorted.
pub async fn medium_partitions(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
) -> Result<Vec<String>, CatalogError> {
    sqlx::query_scalar!(
        r#"select c.relname::text as "name!"
           from pg_inherits i
           join pg_class c on c.oid = i.inhrelid
           join pg_class p on p.oid = i.inhparent
           where p.relname in ('inode', 'path', 'copy_error', 'entry_error')
             and pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES IN (''%s'')', $1::bigint)
           order by 1"#,
        medium.get()
    )
    .fetch_all(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("list the medium's partitions", e))
}
