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

use ntt_agent::catalog::entry::{Entry, EntryKind};
use ntt_agent::catalog::load::Loader;
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

/// Records volume `volume` of the medium (an MBR partition of 1 MiB).
pub async fn add_volume(pool: &PgPool, medium: MediumId, volume: i32) {
    sqlx::query(
        "insert into volume (medium_id, volume_no, scheme, partition_index, offset_bytes, length_bytes)
         values ($1, $2, 'mbr', $2, $2 * 1048576, 1048576)",
    )
    .bind(medium.get())
    .bind(volume)
    .execute(pool)
    .await
    .expect("insert test volume");
}

/// Records a pending 5-byte file (inode `ino`, once) at `path` on the volume, as enumeration
/// does; the medium's partitions must exist.
pub async fn add_file(pool: &PgPool, medium: MediumId, volume: i32, ino: i64, path: &[u8]) {
    sqlx::query(
        "insert into inode (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, state)
         values ($1, $2, $3, 'file', 33188, 1000, 1000, 1, 5, 'pending')
         on conflict do nothing",
    )
    .bind(medium.get())
    .bind(volume)
    .bind(ino)
    .execute(pool)
    .await
    .expect("insert test inode");
    sqlx::query("insert into path (medium_id, volume_no, path, ino) values ($1, $2, $3, $4)")
        .bind(medium.get())
        .bind(volume)
        .bind(path)
        .bind(ino)
        .execute(pool)
        .await
        .expect("insert test path");
}

/// A 5-byte regular file entry at `path`, as the walker makes them.
#[must_use]
pub fn file_entry(ino: u64, path: &[u8]) -> Entry {
    Entry {
        path: path.to_vec(),
        ino,
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        nlink: 1,
        size: 5,
        rdev: None,
        mtime_ns: Some(0),
        ctime_ns: None,
        atime_ns: None,
        birth_ns: None,
        target: None,
    }
}

/// Publishes a load of `paths` on volume 0 (one file each, inodes 100, 101, ...) as the
/// medium's, through the loader (replacing any earlier load).
pub async fn publish(pool: &PgPool, medium: MediumId, name: &str, paths: &[&[u8]]) {
    let mut loader = Loader::begin(pool, medium, 1 << 20)
        .await
        .expect("begin a test load");
    for (ino, path) in (100..).zip(paths) {
        loader
            .add_entry(0, &file_entry(ino, path), None)
            .expect("add a test entry");
    }
    loader
        .publish(name, true)
        .await
        .expect("publish a test load");
}
