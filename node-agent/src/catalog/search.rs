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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Every path of every medium whose file was stored as `id`: media in the order they entered
/// the catalog, then volume and path bytes. Served by the inode blob index and the path inode
/// index, whatever the archive's size.
pub async fn places(pool: &PgPool, id: &BlobId) -> Result<Vec<Place>, CatalogError> {
    sqlx::query_as!(
        Place,
        r#"select m.name as medium, m.hash as medium_hash, m.created_at as registered_at,
                  p.volume_no, p.ino, p.path, p.excluded_reason,
                  i.damaged_ranges is not null as "damaged!"
           from inode i
           join path p on p.medium_id = i.medium_id and p.volume_no = i.volume_no
                      and p.ino = i.ino
           join medium m on m.id = i.medium_id
           where i.blob_id = $1
           order by m.created_at, m.id, p.volume_no, p.path"#,
        id.as_bytes().as_slice(),
    )
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::from_sqlx("find the places of a blob", e))
}
