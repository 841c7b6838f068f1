//! The catalog's identity and the store and data directories it initialised (see
//! [`crate::roots`] for the markers and [`crate::pipeline::roots`] for the rules).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::CatalogError;

/// A root the catalog recorded: its marker's id and when it was initialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRoot {
    /// The id the root's marker holds.
    pub id: String,
    /// When `ntt init` recorded it.
    pub initialised_at: DateTime<Utc>,
}

/// The catalog's own id, which every marker of its roots names.
pub async fn catalog_id(executor: impl PgExecutor<'_>) -> Result<String, CatalogError> {
    sqlx::query_scalar!(r#"select id::text as "id!" from catalog_identity"#)
        .fetch_one(executor)
        .await
        .map_err(|e| CatalogError::from_sqlx("read the catalog's id", e))
}

/// The root of `kind` recorded at `path` on `machine`, if any.
pub async fn recorded_root(
    executor: impl PgExecutor<'_>,
    kind: &str,
    machine: &str,
    path: &str,
) -> Result<Option<RecordedRoot>, CatalogError> {
    sqlx::query_as!(
        RecordedRoot,
        r#"select id::text as "id!", initialised_at
             from archive_root where kind = $1 and machine = $2 and path = $3"#,
        kind,
        machine,
        path
    )
    .fetch_optional(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("read the recorded roots", e))
}

/// Records (or, after `ntt init --replace`, re-records) that the root of `kind` at `path` on
/// `machine` holds the marker `id`.
pub async fn record_root(
    executor: impl PgExecutor<'_>,
    kind: &str,
    machine: &str,
    path: &str,
    id: &str,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "insert into archive_root (kind, machine, path, id) values ($1, $2, $3, $4::text::uuid)
         on conflict (kind, machine, path)
           do update set id = excluded.id, initialised_at = now()
           where archive_root.id <> excluded.id",
        kind,
        machine,
        path,
        id
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the root", e))?;
    Ok(())
}

/// A new root id (a random UUID from the database).
pub async fn new_root_id(executor: impl PgExecutor<'_>) -> Result<String, CatalogError> {
    sqlx::query_scalar!(r#"select gen_random_uuid()::text as "id!""#)
        .fetch_one(executor)
        .await
        .map_err(|e| CatalogError::from_sqlx("make a root id", e))
}
