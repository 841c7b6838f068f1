//! The `ntt` binary end to end against a real PostgreSQL (db tier): what a person at a terminal
//! sees for a new, an unmigrated and an unreachable catalog.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]

use std::process::{Command, Output};

use ntt_agent::catalog::media::{self, MediumKind, NewMedium};
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
