//! The `ntt` binary end to end against a real PostgreSQL (db tier): what a person at a terminal
//! sees for a new, an unmigrated and an unreachable catalog, and the commands that read only the
//! catalog (`ntt where`) on a catalog written here.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "test code: std::fs with unwrap is clear enough"
)]

use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ntt_agent::catalog::media::{self, MediumId, MediumKind, NewMedium};
use ntt_agent::catalog::partitions::ensure_medium_partitions;
use ntt_tests::{add_file, add_volume, medium};
use serde_json::json;
use sqlx::PgPool;

#[path = "support/db.rs"]
mod db;
use db::url_of;

fn ntt(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntt"))
        .args(args)
        .env("NTT_DATABASE_URL", url)
        .env("NTT_CONNECT_TIMEOUT", "5")
        .env_remove("NTT_JSON")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test(migrations = false)]
async fn migrate_then_status_works_on_a_new_database(pool: PgPool) {
    let url = url_of(&pool).await;

    let migrate = ntt(&url, &["db", "migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert!(
        text(&migrate.stdout).contains(&format!(
            "{} migration(s) applied",
            ntt_agent::catalog::MIGRATOR.iter().count()
        )),
        "{}",
        text(&migrate.stdout)
    );
    assert!(
        !text(&migrate.stdout).contains(":ntt@"),
        "password must not be printed"
    );

    let again = ntt(&url, &["db", "migrate"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("0 migration(s) applied"),
        "{}",
        text(&again.stdout)
    );

    let status = ntt(&url, &["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert_eq!(
        text(&status.stdout)
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "NAME", "HASH", "KIND", "STAGE", "HEALTH", "SIZE", "RESCUED", "ENTRIES", "PENDING",
            "FAILED", "ADDED"
        ]
    );

    let json = ntt(&url, &["status", "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json.stdout).unwrap(),
        serde_json::json!([])
    );

    media::insert_medium(
        &pool,
        &NewMedium {
            hash: "0123456789abcdef0123456789abcdef".parse().unwrap(),
            name: "zip-disk-7".into(),
            kind: MediumKind::Device,
            source: "/dev/disk/by-id/usb-IOMEGA_ZIP_100".into(),
            description: Some("box 3".into()),
            size_bytes: Some(100_663_296),
            model: Some("ZIP_100".into()),
            serial: None,
        },
    )
    .await
    .unwrap();
    let status = ntt(&url, &["status"]);
    let table = text(&status.stdout);
    let row = table.lines().nth(1).expect("one medium row");
    assert!(
        row.starts_with("zip-disk-7  01234567  device  identified  -       96.0 MiB  -"),
        "{table}"
    );

    let json = Command::new(env!("CARGO_BIN_EXE_ntt"))
        .arg("status")
        .env("NTT_DATABASE_URL", &url)
        .env("NTT_JSON", "true")
        .output()
        .unwrap();
    let media: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(media[0]["hash"], "0123456789abcdef0123456789abcdef");
    assert_eq!(media[0]["stage"], "identified");
    assert_eq!(media[0]["size_bytes"], 100_663_296);
}

#[sqlx::test(migrations = false)]
async fn status_on_an_unmigrated_database_says_to_migrate(pool: PgPool) {
    let url = url_of(&pool).await;
    let status = ntt(&url, &["status"]);
    assert_eq!(status.status.code(), Some(1));
    let stderr = text(&status.stderr);
    assert!(
        stderr.contains("not migrated") && stderr.contains("ntt db migrate"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn status_with_an_unreachable_database_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let status = ntt("postgres://ntt:hunter2@127.0.0.1:1/ntt", &["status"]);
    assert_eq!(status.status.code(), Some(1));
    let stderr = text(&status.stderr);
    assert!(
        stderr.contains(
            "cannot connect to the catalog database at postgres://ntt:***@127.0.0.1:1/ntt"
        ),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("refused"),
        "the cause is shown: {stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_malformed_database_url_is_a_clear_error() {
    let status = ntt(
        "postgres://ntt:hunter2@localhost:notaport/ntt",
        &["db", "migrate"],
    );
    assert_eq!(status.status.code(), Some(1));
    let stderr = text(&status.stderr);
    assert!(
        stderr.contains("invalid database URL") && stderr.contains("NTT_DATABASE_URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Marks inode `ino` of the medium's volume copied as `blob` (which the store then holds).
async fn copied(pool: &PgPool, medium: MediumId, volume: i32, ino: i64, blob: &[u8]) {
    sqlx::query("insert into blob (id, size) values ($1, 18) on conflict do nothing")
        .bind(blob)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "update inode set state = 'copied', blob_id = $4, copied_at = now()
         where medium_id = $1 and volume_no = $2 and ino = $3",
    )
    .bind(medium.get())
    .bind(volume)
    .bind(ino)
    .bind(blob)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn where_lists_every_place_holding_a_content_byte_exact(pool: PgPool) {
    let url = url_of(&pool).await;
    let report = b"the annual report\n";
    let id = blake3::hash(report);
    let other = blake3::hash(b"a different file\n");
    // Two media, registered one after the other; the first has two volumes.
    let first = medium(&pool, "aaaaaaaa000000000000000000000001", "box-1").await;
    let second = medium(&pool, "bbbbbbbb000000000000000000000002", "box-2").await;
    for (m, volumes) in [(first, 2), (second, 1)] {
        ensure_medium_partitions(&pool, m).await.unwrap();
        for v in 0..volumes {
            add_volume(&pool, m, v).await;
        }
    }
    // box-1 volume 0: the report under two names (a hard link; one name not UTF-8, with a
    // newline, and excluded), and another file; volume 1: the report again (the same inode
    // number on another volume), damaged; box-2: the report once.
    add_file(&pool, first, 0, 10, b"docs/report.txt").await;
    add_file(&pool, first, 0, 10, b"docs/old \xff\nname.txt").await;
    add_file(&pool, first, 0, 11, b"docs/other.txt").await;
    add_file(&pool, first, 1, 10, b"report.txt").await;
    add_file(&pool, second, 0, 7, b"r.txt").await;
    sqlx::query("update path set excluded_reason = 'ignore pattern *.txt~' where path = $1")
        .bind(b"docs/old \xff\nname.txt".as_slice())
        .execute(&pool)
        .await
        .unwrap();
    copied(&pool, first, 0, 10, id.as_bytes()).await;
    copied(&pool, first, 0, 11, other.as_bytes()).await;
    copied(&pool, first, 1, 10, id.as_bytes()).await;
    copied(&pool, second, 0, 7, id.as_bytes()).await;
    sqlx::query(
        "update inode set damaged_ranges = '{[0,4096)}' where medium_id = $1 and volume_no = 1",
    )
    .bind(first.get())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("update blob set damaged_source = true where id = $1")
        .bind(id.as_bytes().as_slice())
        .execute(&pool)
        .await
        .unwrap();

    let json = ntt(&url, &["where", &id.to_hex(), "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(found["blob"], id.to_hex().as_str());
    assert_eq!(
        (&found["stored"], &found["damaged_source"], &found["media"]),
        (&json!(true), &json!(true), &json!(2))
    );
    let places: Vec<(String, i64, Vec<u8>, bool, bool)> = found["places"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["medium"].as_str().unwrap().to_owned(),
                p["volume"].as_i64().unwrap(),
                BASE64.decode(p["path_b64"].as_str().unwrap()).unwrap(),
                !p["excluded_reason"].is_null(),
                p["damaged"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            (
                "box-1".into(),
                0,
                b"docs/old \xff\nname.txt".to_vec(),
                true,
                false
            ),
            ("box-1".into(), 0, b"docs/report.txt".to_vec(), false, false),
            ("box-1".into(), 1, b"report.txt".to_vec(), false, true),
            ("box-2".into(), 0, b"r.txt".to_vec(), false, false),
        ],
        "media in the order registered, then volume and path bytes"
    );

    // A local file: its content is hashed here.
    let dir = std::env::temp_dir().join(format!("ntt-where-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("found on a laptop.txt");
    std::fs::write(&local, report).unwrap();
    let by_file = ntt(&url, &["where", local.to_str().unwrap()]);
    assert!(by_file.status.success(), "{}", text(&by_file.stderr));
    let shown = text(&by_file.stdout);
    assert!(shown.starts_with(id.to_hex().as_str()), "{shown}");
    assert!(
        shown.contains("box-1  aaaaaaaa  registered ")
            && shown
                .contains("volume 0  docs/old \\xff\\nname.txt  (excluded: ignore pattern *.txt~)")
            && shown.contains("volume 1  report.txt  (damaged)")
            && shown.contains("box-2  bbbbbbbb")
            && shown.contains("4 place(s) on 2 medium/media"),
        "{shown}"
    );
    // A hash in capitals: the other file, one place.
    let upper = ntt(&url, &["where", &other.to_hex().to_uppercase()]);
    assert!(upper.status.success(), "{}", text(&upper.stderr));
    assert!(
        text(&upper.stdout).contains("docs/other.txt")
            && text(&upper.stdout).contains("1 place(s) on 1 medium/media")
    );

    // Content the archive does not have: exit 1, saying so.
    let unknown = blake3::hash(b"never seen\n").to_hex().to_string();
    let missing = ntt(&url, &["where", &unknown]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stdout).contains("not in the archive"));
    let missing = ntt(&url, &["where", &unknown, "--json"]);
    assert_eq!(missing.status.code(), Some(1));
    let missing: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(
        (&missing["stored"], &missing["places"]),
        (&json!(false), &json!([]))
    );
    // Neither a file nor a hash, or a directory: a clear error.
    let neither = ntt(&url, &["where", "/nonexistent/report.txt"]);
    assert_eq!(neither.status.code(), Some(1));
    assert!(
        text(&neither.stderr).contains("no file here and no BLAKE3 hash"),
        "{}",
        text(&neither.stderr)
    );
    let directory = ntt(&url, &["where", dir.to_str().unwrap()]);
    assert_eq!(directory.status.code(), Some(1));
    assert!(text(&directory.stderr).contains("is a directory"));
    std::fs::remove_dir_all(&dir).unwrap();
}
