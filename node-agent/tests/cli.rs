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

use std::os::unix::ffi::OsStrExt;
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

fn ntt(url: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
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

/// Marks inode `ino` of the medium's volume copied as `content` (which the store then holds).
async fn copied(pool: &PgPool, medium: MediumId, volume: i32, ino: i64, content: &[u8]) {
    let blob = blake3::hash(content);
    let size = i64::try_from(content.len()).unwrap();
    sqlx::query("insert into blob (id, size) values ($1, $2) on conflict do nothing")
        .bind(blob.as_bytes().as_slice())
        .bind(size)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "update inode set state = 'copied', blob_id = $4, size = $5, copied_at = now()
         where medium_id = $1 and volume_no = $2 and ino = $3",
    )
    .bind(medium.get())
    .bind(volume)
    .bind(ino)
    .bind(blob.as_bytes().as_slice())
    .bind(size)
    .execute(pool)
    .await
    .unwrap();
    // As the copier lists it, for `ntt where`.
    sqlx::query(
        "insert into blob_medium (blob_id, medium_id) values ($1, $2) on conflict do nothing",
    )
    .bind(blob.as_bytes().as_slice())
    .bind(medium.get())
    .execute(pool)
    .await
    .unwrap();
}

/// Two media written into the catalog as enumeration and copying leave them. box-1 volume 0: the
/// annual report under two names (a hard link; one name not UTF-8, with a newline, and
/// excluded), and another file; volume 1: the report again (the same inode number on another
/// volume), damaged; box-2: the report once. Returns the two contents' hashes.
async fn archive(pool: &PgPool) -> (blake3::Hash, blake3::Hash) {
    let pool = pool.clone();
    let (report, different) = (b"the annual report\n", b"a different file\n");
    let (id, other) = (blake3::hash(report), blake3::hash(different));
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
    sqlx::query("update medium set enumerated_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    copied(&pool, first, 0, 10, report).await;
    copied(&pool, first, 0, 11, different).await;
    copied(&pool, first, 1, 10, report).await;
    copied(&pool, second, 0, 7, report).await;
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
    // For find: box-2 also has a pending photo in a directory; sizes, times and types differ.
    add_file(&pool, second, 0, 8, b"photos/IMG_01.JPG").await;
    sqlx::query(
        "insert into inode (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, state)
         values ($1, 0, 9, 'dir', 16877, 0, 0, 2, 4096, 'not_a_file')",
    )
    .bind(second.get())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("insert into path (medium_id, volume_no, path, ino) values ($1, 0, 'photos', 9)")
        .bind(second.get())
        .execute(&pool)
        .await
        .unwrap();
    let day = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_nanos_opt()
            .unwrap()
    };
    // Sizes are the contents' (18 and 17 bytes, from `copied`).
    for (blob, mtime, mime) in [
        (id, day("1998-06-01"), "text/plain"),
        (other, day("2003-01-01"), "application/pdf"),
    ] {
        sqlx::query("update inode set mtime_ns = $2 where blob_id = $1")
            .bind(blob.as_bytes().as_slice())
            .bind(mtime)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("update blob set mime_type = $2 where id = $1")
            .bind(blob.as_bytes().as_slice())
            .bind(mime)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("update inode set size = 2000000, mtime_ns = $1 where ino = 8")
        .bind(day("2005-07-07"))
        .execute(&pool)
        .await
        .unwrap();
    (id, other)
}

/// A match: medium, volume, path bytes.
type At = (String, i64, Vec<u8>);

/// `ntt find --json ARGS` as matches, and its exit code.
fn find(url: &str, args: &[&std::ffi::OsStr]) -> (Vec<At>, Option<i32>) {
    let mut command: Vec<&std::ffi::OsStr> = vec!["find".as_ref(), "--json".as_ref()];
    command.extend_from_slice(args);
    let output = ntt(url, &command);
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "{}",
        text(&output.stderr)
    );
    let rows = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let row: serde_json::Value = serde_json::from_slice(l).unwrap();
            (
                row["medium"].as_str().unwrap().to_owned(),
                row["volume"].as_i64().unwrap(),
                BASE64.decode(row["path_b64"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    (rows, output.status.code())
}

fn at(medium: &str, volume: i64, path: &[u8]) -> At {
    (medium.to_owned(), volume, path.to_vec())
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn find_selects_exactly_the_paths_asked_for_across_media(pool: PgPool) {
    let url = url_of(&pool).await;
    archive(&pool).await;
    let every = [
        at("box-1", 0, b"docs/old \xff\nname.txt"),
        at("box-1", 0, b"docs/other.txt"),
        at("box-1", 0, b"docs/report.txt"),
        at("box-1", 1, b"report.txt"),
        at("box-2", 0, b"photos"),
        at("box-2", 0, b"photos/IMG_01.JPG"),
        at("box-2", 0, b"r.txt"),
    ];
    let cases: &[(&[&[u8]], &[usize])] = &[
        (&[], &[0, 1, 2, 3, 4, 5, 6]),
        (&[b"--name", b"*.txt"], &[0, 1, 2, 3, 6]),
        (&[b"--name", b"report.*"], &[2, 3]),
        (&[b"--name", b"*.jpg"], &[]),
        (&[b"--iname", b"*.jpg"], &[5]),
        (&[b"--name", b"?.txt"], &[6]),
        (&[b"--name", b"old \xff*"], &[0]),
        (&[b"--name", b"*eport*"], &[2, 3]),
        (&[b"--iname", b"*EPORT.T?T"], &[2, 3]),
        (&[b"--iname", b"img_[0-9]1.jpg"], &[5]),
        (&[b"--name", b"img_*"], &[]),
        (&[b"--iname", b"*\xff\n*"], &[0]),
        (&[b"--name", b"*.txt", b"--path", b"docs"], &[0, 1, 2]),
        (&[b"--path", b"docs/"], &[0, 1, 2]),
        (&[b"--path", b"\xff\n"], &[0]),
        (&[b"--regex", b"^photos(/|$)"], &[4, 5]),
        (&[b"--regex", b"(?-u:\\xff)"], &[0]),
        (&[b"--size", b"18"], &[0, 2, 3, 6]),
        (&[b"--size", b"1M.."], &[5]),
        (&[b"--size", b"..17"], &[1]),
        (&[b"--mtime", b"1998-06-01"], &[0, 2, 3, 6]),
        (&[b"--mtime", b"2000-01-01..2004-01-01"], &[1]),
        (&[b"--mime", b"application/"], &[1]),
        (&[b"--state", b"excluded"], &[0]),
        (&[b"--state", b"pending"], &[5]),
        (&[b"--state", b"copied"], &[1, 2, 3, 6]),
        (&[b"--kind", b"dir"], &[4]),
        (&[b"--damaged"], &[3]),
        (&[b"--medium", b"box-2"], &[4, 5, 6]),
        (
            &[
                b"--medium",
                b"bbbbbbbb",
                b"--medium",
                b"box-1",
                b"--name",
                b"r*",
            ],
            &[2, 3, 6],
        ),
        (
            &[
                b"--name",
                b"*.txt",
                b"--size",
                b"18",
                b"--medium",
                b"box-1",
                b"--state",
                b"copied",
            ],
            &[2, 3],
        ),
    ];
    // The same answers with no name indexed (paths written as loads before the name index
    // left them: no name hashes), with one medium indexed, and with both.
    for (round, index) in [(0, None), (1, Some("box-1")), (2, Some(""))] {
        if let Some(medium) = index {
            let mut argv = vec!["index-names", "--json"];
            argv.extend((!medium.is_empty()).then_some(medium));
            let output = ntt(&url, &argv);
            assert!(output.status.success(), "{}", text(&output.stderr));
            let lines: Vec<serde_json::Value> = text(&output.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let (medium, paths, names) = if round == 1 {
                ("box-1", 4, 3)
            } else {
                ("box-2", 3, 3)
            };
            assert_eq!(lines.len(), 1, "only the unindexed medium: {lines:?}");
            assert_eq!(lines[0]["medium"], medium);
            assert_eq!(lines[0]["outcome"], "indexed");
            assert_eq!(lines[0]["paths"], paths);
            assert_eq!(lines[0]["names"], names);
            assert_eq!(lines[0]["fixed"], paths, "every hash set afresh");
        }
        for (args, expected) in cases {
            let argv: Vec<&std::ffi::OsStr> = args
                .iter()
                .map(|a| std::ffi::OsStr::from_bytes(a))
                .collect();
            let (rows, code) = find(&url, &argv);
            let want: Vec<_> = expected.iter().map(|&i| every[i].clone()).collect();
            assert_eq!(rows, want, "ntt find {argv:?}, round {round}");
            assert_eq!(
                code,
                Some(i32::from(want.is_empty())),
                "exit 1 when nothing matched"
            );
        }
    }
    let again = ntt(&url, &["index-names", "box-1"]);
    assert_eq!(text(&again.stdout), "box-1: indexed already\n");
    // A limit, a count, and the other places of each file's content.
    for limit in [2, 5] {
        let (rows, _) = find(
            &url,
            &["--limit", &limit.to_string()].map(std::ffi::OsStr::new),
        );
        assert_eq!(rows, every[..limit], "--limit {limit}, across media");
    }
    let (rows, _) = find(
        &url,
        &["--limit", "4", "--name", "*t*"].map(std::ffi::OsStr::new),
    );
    assert_eq!(rows, [0, 1, 2, 3].map(|i| every[i].clone()));
    let count = ntt(&url, &["find", "--count", "--name", "*.txt"]);
    assert_eq!(text(&count.stdout), "5\n");
    let others = ntt(&url, &["find", "--others", "--name", "r.txt"]);
    assert!(
        text(&others.stdout).contains("box-2  0  r.txt  18 B  copied  +2 elsewhere"),
        "{}",
        text(&others.stdout)
    );
    // Bad input: a clear error, exit 1.
    for (args, says) in [
        (&["find", "--size", "big"][..], "not a size"),
        (&["find", "--mtime", "yesterday"], "not a day"),
        (&["find", "--regex", "("], "not a valid regular expression"),
        (&["find", "--name", "[abc"], "does not close"),
        (&["find", "--medium", "box-9"], "box-9"),
    ] {
        let output = ntt(&url, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            text(&output.stderr).contains(says),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    // Indexed media are searched through the index: a path whose name hash is wrong is no
    // longer found by name (a scan would find it), and still by path.
    sqlx::query("update path set name_id = 0 where path = 'docs/report.txt'")
        .execute(&pool)
        .await
        .unwrap();
    let by_name = find(&url, &["--name", "*eport*"].map(std::ffi::OsStr::new)).0;
    assert_eq!(by_name, [every[3].clone()]);
    let by_path = find(&url, &["--path", "eport"].map(std::ffi::OsStr::new)).0;
    assert_eq!(by_path, [every[2].clone(), every[3].clone()]);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn where_lists_every_place_holding_a_content_byte_exact(pool: PgPool) {
    let url = url_of(&pool).await;
    let report = b"the annual report\n";
    let (id, other) = archive(&pool).await;
    let json = ntt(&url, &["where", &id.to_hex(), "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(found["blob"], id.to_hex().as_str());
    assert_eq!(
        (&found["stored"], &found["damaged_source"], &found["media"]),
        (&json!(true), &json!(true), &json!(2))
    );
    assert_eq!((&found["files"], &found["paths"]), (&json!(3), &json!(4)));
    let capped = ntt(&url, &["where", &id.to_hex(), "--limit", "2"]);
    let shown = text(&capped.stdout);
    assert!(
        capped.status.success()
            && shown.contains("docs/report.txt")
            && !shown.contains("box-2")
            && shown.contains("4 place(s): 3 file(s) on 2 medium/media")
            && shown.contains("(the first 2 listed"),
        "{shown}"
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

    // ls says, per copied file, how many other places hold its content (on request).
    let listed = ntt(&url, &["ls", "box-1", "--json", "--others"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let others: Vec<(String, serde_json::Value)> = listed
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let row: serde_json::Value = serde_json::from_slice(l).unwrap();
            (
                row["path"].as_str().unwrap().to_owned(),
                row["others"].clone(),
            )
        })
        .collect();
    assert_eq!(
        others,
        [
            ("docs/old \u{fffd}\nname.txt".to_owned(), json!(2)),
            ("docs/other.txt".to_owned(), json!(0)),
            ("docs/report.txt".to_owned(), json!(2)),
            ("report.txt".to_owned(), json!(2)),
        ],
        "other files: a file's own second name (a hard link) is not another place"
    );
    let plain = ntt(&url, &["ls", "box-1", "--json"]);
    assert!(text(&plain.stdout).contains("\"others\":null"));
    assert!(
        text(&ntt(&url, &["ls", "box-2", "--others"]).stdout).contains("r.txt  (+2 elsewhere)")
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
            && shown.contains("4 place(s): 3 file(s) on 2 medium/media"),
        "{shown}"
    );
    // A hash in capitals: the other file, one place.
    let upper = ntt(&url, &["where", &other.to_hex().to_uppercase()]);
    assert!(upper.status.success(), "{}", text(&upper.stderr));
    assert!(
        text(&upper.stdout).contains("docs/other.txt")
            && text(&upper.stdout).contains("1 place(s): 1 file(s) on 1 medium/media")
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
    let fifo = dir.join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let pipe = ntt(&url, &["where", fifo.to_str().unwrap()]);
    assert_eq!(
        pipe.status.code(),
        Some(1),
        "refused at once, not waiting for a writer"
    );
    assert!(text(&pipe.stderr).contains("not a regular file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A copied file of `content` at `path` (inode `ino`, volume 0) on the medium.
async fn stored_file(pool: &PgPool, medium: MediumId, ino: i64, path: &[u8], content: &[u8]) {
    add_file(pool, medium, 0, ino, path).await;
    copied(pool, medium, 0, ino, content).await;
}

fn json_of(url: &str, args: &[&str]) -> serde_json::Value {
    let output = ntt(url, args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn overlap_counts_what_each_medium_added_and_shares(pool: PgPool) {
    let url = url_of(&pool).await;
    // Contents of 10, 20, 30 and 40 bytes. A (first): x in two files, y in one file with two
    // names (a hard link), and a file still pending; B: x, z; C (last): y, z, w.
    let (x, y, z, w) = (
        &[b'x'; 10][..],
        &[b'y'; 20][..],
        &[b'z'; 30][..],
        &[b'w'; 40][..],
    );
    let a = medium(&pool, "aaaaaaaa000000000000000000000001", "A").await;
    let b = medium(&pool, "bbbbbbbb000000000000000000000002", "B").await;
    let c = medium(&pool, "cccccccc000000000000000000000003", "C").await;
    // D (registered last) has nothing copied yet.
    let d = medium(&pool, "dddddddd000000000000000000000004", "D").await;
    for m in [a, b, c, d] {
        ensure_medium_partitions(&pool, m).await.unwrap();
        add_volume(&pool, m, 0).await;
    }
    stored_file(&pool, a, 1, b"x1", x).await;
    stored_file(&pool, a, 2, b"x2", x).await;
    stored_file(&pool, a, 3, b"y", y).await;
    add_file(&pool, a, 0, 3, b"y-link").await;
    add_file(&pool, a, 0, 4, b"not copied yet").await;
    stored_file(&pool, b, 1, b"x", x).await;
    stored_file(&pool, b, 2, b"z", z).await;
    stored_file(&pool, c, 1, b"y", y).await;
    stored_file(&pool, c, 2, b"z", z).await;
    stored_file(&pool, c, 3, b"w", w).await;
    add_file(&pool, d, 0, 1, b"pending").await;

    let expected = [
        ("A", [3, 40, 2, 30, 3, 2, 30, 0, 0]),
        ("B", [2, 40, 2, 40, 1, 1, 30, 1, 10]),
        ("C", [3, 90, 3, 90, 1, 1, 40, 2, 50]),
        ("D", [0; 9]),
    ];
    let fields = [
        "files",
        "bytes",
        "contents",
        "content_bytes",
        "new_files",
        "new_contents",
        "new_bytes",
        "shared_contents",
        "shared_bytes",
    ];
    for (name, numbers) in expected {
        let got = json_of(&url, &["overlap", name, "--json"]);
        for (field, number) in fields.iter().zip(numbers) {
            assert_eq!(got[field], number, "{name}: {field}: {got}");
        }
    }
    let shared = |name: &str| -> Vec<(String, bool, i64, i64)> {
        json_of(&url, &["overlap", name, "--json"])["shared_with"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["medium"].as_str().unwrap().to_owned(),
                    s["earlier"].as_bool().unwrap(),
                    s["contents"].as_i64().unwrap(),
                    s["bytes"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        shared("A"),
        [("C".into(), false, 1, 20), ("B".into(), false, 1, 10)]
    );
    assert_eq!(
        shared("C"),
        [("B".into(), true, 1, 30), ("A".into(), true, 1, 20)]
    );

    // The archive: running totals in registration order end at what the store holds.
    let archive = json_of(&url, &["overlap", "--json", "--top", "2"]);
    let steps: Vec<[i64; 5]> = archive["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            [
                "bytes",
                "new_bytes",
                "total_bytes",
                "stored_bytes",
                "saved_bytes",
            ]
            .map(|f| s[f].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        steps,
        [
            [40, 30, 40, 30, 10],
            [40, 30, 80, 60, 20],
            [90, 40, 170, 100, 70],
            [0, 0, 170, 100, 70]
        ]
    );
    let recount: i64 = sqlx::query_scalar("select sum(size)::bigint from blob")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        recount, 100,
        "the store holds what the timeline says it stored"
    );
    let logical: i64 =
        sqlx::query_scalar("select sum(size)::bigint from inode where state = 'copied'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(logical, 170);
    assert_eq!(archive["largest"], json!(["C", "B"]));
    assert_eq!(
        archive["pairs"],
        json!([{"a": "B", "b": "C", "contents": 1, "bytes": 30}])
    );
    let all = json_of(&url, &["overlap", "--json", "--top", "3"]);
    let pairs: Vec<(String, String, i64)> = all["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["a"].as_str().unwrap().to_owned(),
                p["b"].as_str().unwrap().to_owned(),
                p["bytes"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("A".into(), "B".into(), 10),
            ("A".into(), "C".into(), 20),
            ("B".into(), "C".into(), 30)
        ]
    );
    // The tables for people say the same.
    let table = text(&ntt(&url, &["overlap", "B"]).stdout);
    assert!(
        table.contains("adds:   1 contents, 30 B (1 files)")
            && table.contains("shares: 1 contents, 10 B with earlier media")
            && table.contains("C (cccccccc, later)  1 contents  30 B"),
        "{table}"
    );
    let table = text(&ntt(&url, &["overlap"]).stdout);
    assert!(table.contains("B and C: 1 contents, 30 B"), "{table}");
    assert!(shared("D").is_empty());
    let missing = ntt(&url, &["overlap", "E"]);
    assert_eq!(missing.status.code(), Some(1));
}

/// `ntt serve` as the chart runs it, on a free local port; stopped (SIGTERM, as Kubernetes
/// stops a pod) when dropped.
struct Served {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // A stop with a client's idle connection open must still end within its grace; past
        // it the process is killed so the test's failure, not a hang, is what is reported.
        for _ in 0..400 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert!(
            std::thread::panicking(),
            "ntt serve did not stop within 20 s of SIGTERM"
        );
    }
}

async fn serve(url: &str) -> Served {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ntt"))
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--max-output",
            "4096",
        ])
        .env("NTT_DATABASE_URL", url)
        .env_remove("NTT_JSON")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let served = Served { child, addr };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return served;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("ntt serve does not listen on {addr}");
}

/// `kubectl ntt ARGS` with `client`: exit code, stdout, stderr (errors included, as printed).
async fn kubectl_ntt(client: &kube::Client, args: &[std::ffi::OsString]) -> (u8, Vec<u8>, String) {
    use ntt_controller::plugin::cli;
    let mut words = vec![std::ffi::OsString::from("kubectl-ntt")];
    words.extend(args.iter().cloned());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let parsed = <cli::Args as clap::Parser>::try_parse_from(words);
    let code = match parsed {
        Ok(parsed) => match cli::run(parsed, client.clone(), &mut out, &mut err).await {
            Ok(code) => code,
            Err(error) => {
                err.extend(format!("kubectl ntt: {error}\n").bytes());
                1
            }
        },
        Err(error) => {
            err.extend(error.render().to_string().bytes());
            u8::try_from(error.exit_code()).unwrap()
        }
    };
    (code, out, text(&err))
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn kubectl_ntt_asks_the_catalog_service_through_the_api_server_and_gets_what_ntt_prints(
    pool: PgPool,
) {
    use ntt_controller::plugin::{self, CatalogService};
    use ntt_crds::query::content_of;
    use ntt_tests::apiserver::{ApiServer, ntt_types};
    use ntt_tests::rbac::{Grants, render_chart, render_chart_with};
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    let url = url_of(&pool).await;
    let (id, _) = archive(&pool).await;
    let served = serve(&url).await;
    let api = ApiServer::start(ntt_types()).await.unwrap();
    api.serve_service("ntt", "ntt-catalog", "http", served.addr);
    // The client kubectl-ntt makes, as alice; the plugin's commands run as its binary runs them.
    let client = plugin::client(api.config_as("default", "alice").await).unwrap();
    let service = CatalogService {
        namespace: "ntt".into(),
        name: "ntt-catalog".into(),
        port: "http".into(),
    };
    let words = |args: &[&[u8]]| -> Vec<OsString> {
        args.iter()
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    let hash = id.to_hex().to_string();
    // Byte for byte what `ntt` prints, with its exit code: matches, a pattern that is not
    // UTF-8, a capped list (and its note), nothing found, a bad value, each catalog command.
    let queries: [(&str, &[&[u8]]); 10] = [
        ("find", &[b"--iname", b"*.TXT"]),
        ("find", &[b"--name", b"*\xff*", b"--json"]),
        ("find", &[b"--path", b"docs", b"--limit", b"1"]),
        ("find", &[b"--name", b"nothing-*"]),
        ("find", &[b"--size", b"ten"]),
        ("where", &[hash.as_bytes(), b"--json"]),
        (
            "where",
            &[b"0000000000000000000000000000000000000000000000000000000000000000"],
        ),
        ("overlap", &[b"box-2", b"--json"]),
        ("report", &[b"box-1"]),
        ("status", &[]),
    ];
    for (command, args) in queries {
        let args = words(args);
        let mut words = vec![OsString::from(command)];
        words.extend(args.iter().cloned());
        let (code, stdout, stderr) = if matches!(command, "report" | "status") {
            // `kubectl ntt report|status` show the Medium resources too; the service's own
            // answer is the catalog's part.
            let answer = plugin::query_catalog(&client, &service, command, &args)
                .await
                .unwrap();
            (answer.exit_code, answer.stdout, answer.stderr)
        } else {
            kubectl_ntt(&client, &words).await
        };
        let local = ntt(&url, &words);
        assert_eq!(
            (Some(i32::from(code)), text(&stdout)),
            (local.status.code(), text(&local.stdout)),
            "{command} {args:?}: {stderr}"
        );
        assert_eq!(stdout, local.stdout, "{command} {args:?}");
        assert_eq!(stderr, text(&local.stderr), "{command} {args:?}");
    }
    // The non-UTF-8 name was found by its bytes.
    let (_, found, _) =
        kubectl_ntt(&client, &words(&[b"find", b"--name", b"*\xff*", b"--json"])).await;
    let row: serde_json::Value = serde_json::from_slice(&found).unwrap();
    assert_eq!(
        BASE64.decode(row["path_b64"].as_str().unwrap()).unwrap(),
        b"docs/old \xff\nname.txt"
    );
    // `where FILE` hashes the local file here; the service never reads a file of its host.
    let dir = tempfile_dir();
    let copy = dir.join("found on a laptop.txt");
    std::fs::write(&copy, b"the annual report\n").unwrap();
    assert_eq!(content_of(copy.as_os_str()).unwrap().to_hex(), hash);
    let by_file = kubectl_ntt(&client, &[OsString::from("where"), copy.clone().into()]).await;
    let by_hash = ntt(&url, &["where", hash.as_str()]);
    assert_eq!(
        (by_file.0, by_file.1),
        (0, by_hash.stdout.clone()),
        "{}",
        by_file.2
    );
    assert!(
        text(&by_hash.stdout).contains("box-1"),
        "{}",
        text(&by_hash.stdout)
    );
    let unknown = dir.join("never archived");
    std::fs::write(&unknown, b"nobody has this\n").unwrap();
    assert_eq!(
        kubectl_ntt(&client, &[OsString::from("where"), unknown.into()])
            .await
            .0,
        1
    );
    assert_eq!(
        content_of(hash.to_uppercase().as_ref()).unwrap().to_hex(),
        hash
    );
    assert!(content_of(dir.as_os_str()).is_err(), "a directory");
    assert!(content_of("no such file".as_ref()).is_err());
    let missing = plugin::cli::run(
        <plugin::cli::Args as clap::Parser>::try_parse_from([
            "kubectl-ntt",
            "where",
            "no such file",
        ])
        .unwrap(),
        client.clone(),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(missing.to_string().contains("no such file"), "{missing}");
    let refused = plugin::query_catalog(&client, &service, "where", &words(&[b"/etc/hostname"]))
        .await
        .unwrap();
    assert!(
        refused.exit_code != 0 && refused.stderr.contains("not a BLAKE3 hash"),
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Usage: the commands' own help and errors; commands that write are not queries.
    let help = kubectl_ntt(&client, &words(&[b"find", b"--help"])).await;
    assert_eq!(help.0, 0);
    assert!(text(&help.1).contains("--iname"), "{help:?}");
    for (command, args) in [
        ("find", &[&b"--bogus"[..]][..]),
        ("copy", &[b"box-1"]),
        ("ingest", &[b"/dev/sda"]),
    ] {
        let answer = plugin::query_catalog(&client, &service, command, &words(args))
            .await
            .unwrap();
        assert_eq!(answer.exit_code, 2, "{command}: {answer:?}");
        assert!(
            answer.stdout.is_empty() && answer.stderr.contains("error"),
            "{answer:?}"
        );
    }
    // An answer longer than the service allows fails and says so (never a cut list).
    for n in 0..200 {
        add_file(
            &pool,
            media::resolve_medium(&pool, "box-2").await.unwrap().id,
            0,
            1000 + n,
            format!("bulk/file-{n:04}.txt").as_bytes(),
        )
        .await;
    }
    let long = plugin::query_catalog(&client, &service, "find", &words(&[b"--path", b"bulk/"]))
        .await
        .unwrap();
    assert!(
        long.exit_code == 1 && long.stderr.contains("longer than 4096 bytes"),
        "{long:?}"
    );
    // What alice asked is what the chart lets readers do (get on this Service's proxy), and
    // nothing the chart grants by default.
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.user == "alice" && r.verb == "get" && r.resource == "services/proxy"),
        "{requests:?}"
    );
    let readers = render_chart_with(
        "ntt",
        &[
            "--set-json",
            r#"catalogApi.readers=[{"kind":"User","name":"alice"}]"#,
        ],
    );
    assert_eq!(
        Grants::of_user(&readers, "ntt", "alice").refused(&requests),
        Vec::<&ntt_tests::apiserver::Request>::new()
    );
    assert!(
        !Grants::of_user(&render_chart("ntt"), "ntt", "alice")
            .refused(&requests)
            .is_empty()
    );
    // Without a service behind it, the API server says so and the plugin passes it on.
    drop(served);
    let gone = plugin::query_catalog(&client, &service, "status", &[])
        .await
        .unwrap_err();
    assert!(gone.to_string().contains("ntt/ntt-catalog"), "{gone}");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn the_query_services_catalog_connection_cannot_write(pool: PgPool) {
    use ntt_agent::catalog::{Catalog, ConnectOptions};
    let url = url_of(&pool).await;
    let mut options = ConnectOptions::new(url.parse().unwrap());
    options.read_only = true;
    let catalog = Catalog::connect(&options).await.unwrap();
    let error = sqlx::query("insert into ignore_pattern (pattern) values ('x')")
        .execute(catalog.pool())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("read-only transaction"),
        "{error}"
    );
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ntt-cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir(&dir).unwrap();
    dir
}
