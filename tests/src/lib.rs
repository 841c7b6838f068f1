//! Shared fixtures for NTT's integration suites.
//!
//! Fixtures panic on failure: they are only called from tests.
//!
//! Tiers: `db` (a real PostgreSQL; every test gets its own database from `#[sqlx::test]`, which
//! reads `DATABASE_URL`), later `privileged` (root: loop devices, mounts, FUSE, ddrescue).

#![expect(clippy::missing_panics_doc, reason = "test fixtures panic by design")]

pub mod apiserver;
pub mod pod;
pub mod rbac;

use ntt_agent::catalog::media::{self, MediumId, MediumKind, NewMedium};
use sqlx::PgPool;

/// Records a medium with the given hash and name and returns its id.
pub async fn medium(pool: &PgPool, hash: &str, name: &str) -> MediumId {
    media::insert_medium(
        pool,
        &NewMedium {
            hash: hash.parse().expect("test hash is valid"),
            name: name.to_owned(),
            kind: MediumKind::Image,
            source: format!("/images/{name}.img"),
            description: None,
            size_bytes: Some(1 << 20),
            model: None,
            serial: None,
        },
    )
    .await
    .expect("insert test medium")
}
