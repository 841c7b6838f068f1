//! The privileged tier for copying: `ntt copy` into a real store from real mounts, with a real
//! PostgreSQL, failing sectors from a FUSE disk, a store filesystem that fills up, and kills at
//! random moments. Runs as root; never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::faulty_disk::{Faults, FaultyDisk};
use crate::host::{Host, MIB, craft_fat_long_name, ext4, register, run, sparse_file};
use crate::{faulty_disk, host};
use serde_json::{Value, json};
use sqlx::PgPool;

fn ok_json(host: &Host, args: &[&str]) -> Value {
    let output = host.run(args);
    assert!(
        output.status.success(),
        "ntt {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn enumerate(host: &Host, medium: &str) {
    ok_json(host, &["enumerate", medium, "--json"]);
}

fn copy(host: &Host, medium: &str, extra: &[&str]) -> Value {
    let mut args = vec!["copy", medium, "--json", "--retry-delay", "0.05"];
    args.extend_from_slice(extra);
    ok_json(host, &args)
}

/// `ntt report --json`, which must balance.
fn report(host: &Host, medium: &str) -> Value {
    let report = ok_json(host, &["report", medium, "--json"]);
    assert_eq!(report["balances"], true, "accounting balances: {report}");
    report
}

/// Every blob file under the store root (not its temp directory).
fn store_blobs(store: &Path) -> BTreeSet<String> {
    let mut blobs = BTreeSet::new();
    if !store.exists() {
        return blobs;
    }
    for first in std::fs::read_dir(store).unwrap() {
        let first = first.unwrap().path();
        if first.file_name().unwrap() == "tmp" || !first.is_dir() {
            continue;
        }
        for second in std::fs::read_dir(&first).unwrap() {
            for blob in std::fs::read_dir(second.unwrap().path()).unwrap() {
                blobs.insert(blob.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
    }
    blobs
}

fn temp_files(store: &Path) -> usize {
    std::fs::read_dir(store.join("tmp")).map_or(0, Iterator::count)
}

/// (volume, inode) → (state, blob hex) of every live file inode of the medium (deleted volumes left out).
async fn file_states(
    pool: &PgPool,
    medium: &str,
) -> BTreeMap<(i32, i64), (String, Option<String>)> {
    let rows: Vec<(i32, i64, String, Option<Vec<u8>>)> = sqlx::query_as(
        "select i.volume_no, i.ino, i.state::text, i.blob_id from inode i
         join medium m on m.id = i.medium_id
         join volume v on v.medium_id = i.medium_id and v.volume_no = i.volume_no
         where m.name = $1 and i.kind = 'file' and v.role <> 'deleted'",
    )
    .bind(medium)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(v, i, s, b)| ((v, i), (s, b.map(hex::encode))))
        .collect()
}

/// Pseudo-random bytes (xorshift), so content does not compress or collide by accident.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    faulty_disk::disk_content(len, seed)
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn content_is_stored_once_across_paths_and_media(pool: PgPool) {
    let host = Host::new(&pool).await;
    let first = host.root.join("first");
    std::fs::create_dir_all(first.join("sub")).unwrap();
    std::fs::write(first.join("a.doc"), b"shared content\n").unwrap();
    std::fs::write(first.join("sub/b.doc"), b"shared content\n").unwrap();
    std::fs::write(first.join("c.doc"), b"only here\n").unwrap();
    std::fs::write(first.join("empty"), b"").unwrap();
    std::fs::hard_link(first.join("c.doc"), first.join("c-link.doc")).unwrap();
    let second = host.root.join("second");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(second.join("d.doc"), b"shared content\n").unwrap();
    for (name, source) in [("first", &first), ("second", &second)] {
        let image = host.root.join(format!("{name}.img"));
        ext4(&image, 8 * MIB, source);
        register(&host, &image, name);
        enumerate(&host, name);
    }
    let one = copy(&host, "first", &[]);
    assert_eq!(
        one["copied"], 4,
        "a.doc, sub/b.doc, c.doc (two links) and empty: {one}"
    );
    assert_eq!(one["new_blobs"], 3);
    assert_eq!(one["complete"], true);
    let two = copy(&host, "second", &[]);
    assert_eq!(two["copied"], 1);
    assert_eq!(
        two["new_blobs"], 0,
        "the second medium's content is there already"
    );
    let store = host.root.join("store");
    assert_eq!(store_blobs(&store).len(), 3);
    assert_eq!(temp_files(&store), 0);
    let blobs: i64 = sqlx::query_scalar("select count(*) from blob")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(blobs, 3);
    let shared = blake3::hash(b"shared content\n").to_hex().to_string();
    assert!(store_blobs(&store).contains(&shared));
    // Evidence is nobody else's: the store root 0700, blobs 0440.
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(mode(&store), 0o700);
    assert_eq!(
        mode(&store.join(&shared[..2]).join(&shared[2..4]).join(&shared)),
        0o440
    );
    let mime: String = sqlx::query_scalar("select mime_type from blob where id = $1")
        .bind(hex::decode(&shared).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mime, "text/plain");

    let first_report = report(&host, "first");
    assert_eq!(
        first_report["accounting"]["copied"], 5,
        "five paths of copied files"
    );
    assert_eq!(first_report["content"]["copied_files"], 4);
    assert_eq!(first_report["content"]["distinct_blobs"], 3);
    assert_eq!(first_report["content"]["shared_blobs"], 1);
    let second_report = report(&host, "second");
    assert_eq!(second_report["content"]["shared_blobs"], 1);
    let status = ok_json(&host, &["status", "--json"]);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["stage"] == "copied"),
        "{status}"
    );
    // Nothing left pending: a second run has nothing to do.
    let again = copy(&host, "first", &[]);
    assert_eq!(again["copied"], 0);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn four_concurrent_copiers_never_copy_an_inode_twice(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("many");
    for d in 0..10 {
        let dir = source.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..150 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}\n")).unwrap();
        }
    }
    let image = host.root.join("many.img");
    ext4(&image, 16 * MIB, &source);
    register(&host, &image, "many");
    enumerate(&host, "many");
    let children: Vec<_> = (0..4)
        .map(|_| {
            host.spawn(&[
                "copy",
                "many",
                "--json",
                "--workers",
                "4",
                "--retry-delay",
                "0.05",
            ])
        })
        .collect();
    let mut total = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        total += report["copied"].as_u64().unwrap();
    }
    assert_eq!(total, 1500, "each inode copied by exactly one worker");
    let states = file_states(&pool, "many").await;
    assert_eq!(states.len(), 1500);
    assert!(states.values().all(|(s, b)| s == "copied" && b.is_some()));
    assert_eq!(store_blobs(&host.root.join("store")).len(), 1500);
    report(&host, "many");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn kills_at_random_moments_end_like_an_uninterrupted_run(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("mixed");
    std::fs::create_dir_all(&source).unwrap();
    for f in 0..300u64 {
        let len = if f % 50 == 0 {
            3 * MIB as usize
        } else {
            2000 + (f as usize * 37)
        };
        std::fs::write(source.join(format!("file{f:03}")), noise(len, f % 200)).unwrap();
    }
    let image = host.root.join("mixed.img");
    ext4(&image, 64 * MIB, &source);
    register(&host, &image, "mixed");
    enumerate(&host, "mixed");

    // The reference: one uninterrupted run into its own store.
    let reference_store = host.root.join("reference-store");
    let init = host
        .command(&["init"])
        .env("NTT_STORE", &reference_store)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let output = host
        .command(&["copy", "mixed", "--json"])
        .env("NTT_STORE", &reference_store)
        .output()
        .unwrap();
    assert!(output.status.success());
    let reference = file_states(&pool, "mixed").await;
    let reference_blobs = store_blobs(&reference_store);

    // Start over (a new load: every file pending) into the store under test, killing the copier
    // at pseudo-random moments.
    ok_json(&host, &["enumerate", "mixed", "--replace", "--json"]);
    let store = host.root.join("store");
    let mut seed = 0x5eed_u64;
    for _ in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = host.spawn(&["copy", "mixed", "--workers", "2"]);
        std::thread::sleep(Duration::from_millis(80 + seed % 400));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let partial = file_states(&pool, "mixed").await;
    eprintln!(
        "after the kills: {} of {} copied",
        partial.values().filter(|(s, _)| s == "copied").count(),
        partial.len()
    );
    // The killed runs' leases (15 minutes each) are free at once: their runs' locks
    // died with their sessions. Nothing is expired by hand.
    let last = copy(&host, "mixed", &[]);
    assert_eq!(last["complete"], true);
    assert_eq!(
        file_states(&pool, "mixed").await,
        reference,
        "the same catalog"
    );
    assert_eq!(
        store_blobs(&store),
        reference_blobs,
        "the same store, no orphans"
    );
    assert_eq!(temp_files(&store), 0, "no temp files left");
    let verify = host.run(&["verify", "--medium", "mixed"]);
    assert!(verify.status.success());
    report(&host, "mixed");
}

/// The 4096-byte blocks that hold `path` in an ext4 image (debugfs).
fn blocks_of(image: &Path, path: &str) -> Vec<u64> {
    let output = Command::new("debugfs")
        .args(["-R", &format!("blocks {path}")])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn files_on_unreadable_sectors_fail_as_io_errors_while_the_rest_copy(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("damaged.bin"), noise(64 * 1024, 1)).unwrap();
    std::fs::write(source.join("fine.bin"), noise(64 * 1024, 2)).unwrap();
    std::fs::write(source.join("also-fine.txt"), b"readable\n").unwrap();
    let image = host.root.join("weak.img");
    sparse_file(&image, 16 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&source)
        .arg(&image));
    let bad: Vec<std::ops::Range<u64>> = blocks_of(&image, "damaged.bin")
        .iter()
        .map(|b| b * 4096..(b + 1) * 4096)
        .collect();
    assert!(!bad.is_empty());
    register(&host, &image, "weak");
    enumerate(&host, "weak");
    // The image now sits on a failing disk: reads of damaged.bin's blocks return EIO.
    let disk = FaultyDisk::start(
        std::fs::read(&image).unwrap(),
        Faults {
            bad,
            ..Faults::default()
        },
    );
    sqlx::query("update medium set image_path = $1")
        .bind(disk.file().to_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let result = copy(&host, "weak", &["--max-attempts", "2"]);
    assert_eq!(result["copied"], 2);
    assert_eq!(result["complete"], true);
    let failed: (String, String, String, i32) = sqlx::query_as(
        "select p.path::text, i.state::text, i.error_class::text, i.attempts
         from inode i join path p using (medium_id, volume_no, ino) where i.state = 'failed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failed.1, "failed");
    assert_eq!(failed.2, "io");
    assert_eq!(failed.3, 2, "tried twice, then final");
    let history: i64 = sqlx::query_scalar("select count(*) from copy_error where class = 'io'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(history, 2);
    let summary = report(&host, "weak");
    assert_eq!(summary["accounting"]["failed"], 1);
    assert_eq!(summary["failures"][0]["class"], "io");
    let cat = host.run(&["cat", "weak", "damaged.bin"]);
    assert_eq!(cat.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cat.stderr).contains("copying it failed"));
    let unmount = host.run(&["unmount", "weak"]);
    assert!(unmount.status.success());
    drop(disk);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_full_store_stops_cleanly_and_the_next_run_completes(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("big");
    std::fs::create_dir_all(&source).unwrap();
    for f in 0..12u64 {
        std::fs::write(
            source.join(format!("part{f:02}")),
            noise(2 * MIB as usize, 100 + f),
        )
        .unwrap();
    }
    let image = host.root.join("big.img");
    ext4(&image, 48 * MIB, &source);
    register(&host, &image, "big");
    enumerate(&host, "big");
    // A 48 MiB store filesystem with a 30 MiB filler: room for a few files only.
    let store_fs = host.root.join("store.fs");
    sparse_file(&store_fs, 48 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0"])
        .arg(&store_fs));
    let store = host.root.join("store");
    std::fs::create_dir_all(&store).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&store_fs)
        .arg(&store));
    // A new, empty store where the catalog recorded one: only `--replace` makes it the store.
    failed_init_then_replace(&host);
    let filler = store.join("filler");
    std::fs::write(&filler, vec![1u8; 30 * MIB as usize]).unwrap();

    let full = host.run(&["copy", "big", "--json"]);
    assert_eq!(full.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(
        stderr.contains("is full") && stderr.contains("run `ntt copy` again"),
        "{stderr}"
    );
    let states = file_states(&pool, "big").await;
    let copied = states.values().filter(|(s, _)| s == "copied").count();
    assert!(
        copied > 0 && copied < 12,
        "{copied} copied before the store filled"
    );
    assert!(
        states
            .values()
            .all(|(s, _)| s == "copied" || s == "pending"),
        "a full store fails no file: {states:?}"
    );
    let leased: i64 =
        sqlx::query_scalar("select count(*) from inode where lease_worker is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leased, 0, "the leases were given back");
    assert_eq!(temp_files(&store), 0);

    std::fs::remove_file(&filler).unwrap();
    let rest = copy(&host, "big", &[]);
    assert_eq!(rest["copied"].as_u64().unwrap() as usize, 12 - copied);
    assert_eq!(rest["complete"], true);
    report(&host, "big");
    let verify = host.run(&["verify", "--medium", "big"]);
    assert!(verify.status.success());
    run(Command::new("umount").arg(&store));
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn verify_finds_a_flipped_byte_and_a_missing_blob(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("one"), b"first blob\n").unwrap();
    std::fs::write(source.join("two"), b"second blob\n").unwrap();
    std::fs::write(source.join("three"), b"third blob\n").unwrap();
    let image = host.root.join("v.img");
    ext4(&image, 8 * MIB, &source);
    register(&host, &image, "v");
    enumerate(&host, "v");
    copy(&host, "v", &[]);
    let good = host.run(&["verify", "--medium", "v"]);
    assert!(good.status.success());
    assert!(String::from_utf8_lossy(&good.stdout).contains("3 blob(s) checked (34 bytes): 3 ok"));

    let store = host.root.join("store");
    let one = blake3::hash(b"first blob\n").to_hex().to_string();
    let two = blake3::hash(b"second blob\n").to_hex().to_string();
    let path = |hex: &str| store.join(&hex[..2]).join(&hex[2..4]).join(hex);
    flip_stored_byte(&path(&one), 3, 0x01);
    std::fs::remove_file(path(&two)).unwrap();

    let bad = host.run(&["verify", "--all", "--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let found: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(found["mismatched"], serde_json::json!([one]));
    assert_eq!(found["missing"], serde_json::json!([two]));
    assert_eq!(found["ok"], 1);
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("select encode(id, 'hex'), verify_outcome::text from blob order by 2")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(outcomes.contains(&(one.clone(), "mismatch".into())));
    assert!(outcomes.contains(&(two.clone(), "missing".into())));
    let sample = host.run(&["verify", "--sample", "1"]);
    assert!(String::from_utf8_lossy(&sample.stdout).contains("1 blob(s) checked"));
}

/// Flips the bits `mask` of byte `at` of a read-only store file (the test tampers on purpose).
fn flip_stored_byte(path: &Path, at: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= mask;
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    #[allow(
        clippy::permissions_set_readonly_false,
        reason = "the test tampers on purpose"
    )]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).unwrap();
    std::fs::write(path, &bytes).unwrap();
}

/// The `n` blobs verified last (hex ids).
async fn verified_last(pool: &PgPool, n: i64) -> BTreeSet<String> {
    sqlx::query_scalar("select encode(id, 'hex') from blob order by verified_at desc, id limit $1")
        .bind(n)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The blobs verified so far (hex ids).
async fn verified(pool: &PgPool) -> BTreeSet<String> {
    sqlx::query_scalar("select encode(id, 'hex') from blob where verified_at is not null")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// When the medium was last fully verified (whether it was).
async fn medium_verified(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("select verified_at is not null from medium where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn budgeted_verifies_cover_the_store_over_a_cycle_and_orphans_are_listed(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(&source).unwrap();
    // Twelve different blobs of 64 KiB each.
    for i in 0..12u8 {
        std::fs::write(source.join(format!("f{i:02}")), vec![i; 64 * 1024]).unwrap();
    }
    let image = host.root.join("cycle.img");
    ext4(&image, 8 * MIB, &source);
    register(&host, &image, "cycle");
    enumerate(&host, "cycle");
    copy(&host, "cycle", &[]);
    assert!(verified(&pool).await.is_empty());

    // A budget of three blobs' bytes: three per run, never-verified first, each run going on
    // where the last stopped, the whole store after four runs.
    let mut runs: Vec<BTreeSet<String>> = Vec::new();
    let mut before = BTreeSet::new();
    for run in 0..4 {
        let output = host.run(&["verify", "--all", "--budget", "192k", "--json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let found: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (&found["checked"], &found["ok"]),
            (&json!(3), &json!(3)),
            "{found}"
        );
        assert_eq!(found["bytes"], 3 * 64 * 1024);
        assert_eq!(
            found["complete"], false,
            "run {run}: stopped by its budget with blobs it did not verify: {found}"
        );
        let now = verified(&pool).await;
        let new: BTreeSet<String> = now.difference(&before).cloned().collect();
        assert_eq!(new.len(), 3, "run {run} verified three blobs no run had");
        assert_eq!(
            medium_verified(&pool, "cycle").await,
            run == 3,
            "the medium is fully verified once every blob is"
        );
        runs.push(new);
        before = now;
    }
    assert_eq!(before.len(), 12);
    // The fifth run takes the least recently verified: the first run's.
    let output = host.run(&["verify", "--all", "--budget", "192k"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("3 blob(s) checked") && stdout.contains("stopped by"),
        "{stdout}"
    );
    assert_eq!(verified_last(&pool, 3).await, runs[0]);
    // A sample is the least recently verified too (the second run's now).
    let output = host.run(&["verify", "--sample", "3", "--jobs", "1"]);
    assert!(output.status.success());
    assert_eq!(verified_last(&pool, 3).await, runs[1]);

    // A flipped byte: found by the next whole run, and the medium is no longer fully verified.
    let store = host.root.join("store");
    let path = |hex: &str| store.join(&hex[..2]).join(&hex[2..4]).join(hex);
    let victim = runs[2].iter().next().unwrap().clone();
    flip_stored_byte(&path(&victim), 100, 0x80);
    // An orphan (named like a blob, no catalog row) and a stray file that is no blob.
    let orphan = blake3::hash(b"nobody recorded me\n").to_hex().to_string();
    std::fs::create_dir_all(path(&orphan).parent().unwrap()).unwrap();
    std::fs::write(path(&orphan), b"nobody recorded me\n").unwrap();
    std::fs::write(store.join(&orphan[..2]).join("notes.txt"), b"not a blob").unwrap();
    let output = host.run(&["verify", "--all", "--orphans", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(found["checked"], 12);
    assert_eq!(found["mismatched"], json!([victim]));
    assert_eq!(found["orphans"], json!([orphan]));
    assert_eq!(found["complete"], true);
    assert!(!medium_verified(&pool, "cycle").await);
    // Within an hour every blob was found right but the wrong one: only it is re-hashed.
    let output = host.run(&["verify", "--all", "--older-than", "1h", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (&found["checked"], &found["mismatched"], &found["complete"]),
        (&json!(1), &json!([victim]), &json!(true)),
        "{found}"
    );
    let bad_age = host.run(&["verify", "--all", "--older-than", "5G"]);
    assert_eq!(bad_age.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad_age.stderr).contains("is not a duration"));
    // The image, against the digest recorded when it was imaged: right, then a flipped byte.
    let output = host.run(&[
        "verify", "--medium", "cycle", "--sample", "0", "--images", "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(found["images"][0]["outcome"], "ok", "{found}");
    assert_eq!(found["images"][0]["medium"], "cycle");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&image, &bytes).unwrap();
    let output = host.run(&["verify", "--medium", "cycle", "--sample", "0", "--images"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("image mismatch cycle:"), "{stdout}");
    let recorded: String =
        sqlx::query_scalar("select image_verify_outcome::text from medium where name = 'cycle'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, "mismatch");
    let refused = host.run(&["verify", "--medium", "cycle", "--orphans"]);
    assert_eq!(refused.status.code(), Some(1));
    let bad_budget = host.run(&["verify", "--all", "--budget", "3 weeks"]);
    assert_eq!(bad_budget.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad_budget.stderr).contains("is not a budget"));
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn awkward_names_copy_cat_and_export_byte_exact(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("names");
    std::fs::create_dir_all(&source).unwrap();
    let names: Vec<Vec<u8>> = vec![
        b"back\\rslash \\n names".to_vec(),
        b"\\newenvironment{x}.tex".to_vec(),
        b"new\nline".to_vec(),
        b"invalid \xff utf8".to_vec(),
        b"Icon\r".to_vec(),
    ];
    for (i, name) in names.iter().enumerate() {
        let mut content = name.clone();
        content.extend_from_slice(format!(" #{i}").as_bytes());
        std::fs::write(source.join(OsStr::from_bytes(name)), content).unwrap();
    }
    std::os::unix::fs::symlink("Icon\r", source.join("link")).unwrap();
    let image = host.root.join("names.img");
    ext4(&image, 8 * MIB, &source);
    register(&host, &image, "names");
    enumerate(&host, "names");
    let result = copy(&host, "names", &[]);
    assert_eq!(result["copied"], names.len());
    for (i, name) in names.iter().enumerate() {
        let output = host
            .command(&["cat", "names"])
            .arg(OsStr::from_bytes(name))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut expected = name.clone();
        expected.extend_from_slice(format!(" #{i}").as_bytes());
        assert_eq!(output.stdout, expected);
    }
    let missing = host.run(&["cat", "names", "no such file"]);
    assert_eq!(missing.status.code(), Some(1));

    let export = host.root.join("store").join("..").join("export");
    let exported = host.run(&["export-tree", "names", export.to_str().unwrap()]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    for name in &names {
        let path: PathBuf = export.join("0").join(OsStr::from_bytes(name));
        assert!(path.is_file(), "{}", path.display());
    }
    assert_eq!(
        std::fs::read_link(export.join("0/link"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"Icon\r"
    );
    report(&host, "names");
}

/// A copy that ends with files pending says so and exits 75, never 0.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_copy_that_leaves_files_pending_fails_with_its_own_exit_code(pool: PgPool) {
    use ntt_agent::catalog::copying;
    let host = Host::new(&pool).await;
    let source = host.root.join("stuck");
    std::fs::create_dir_all(&source).unwrap();
    for f in 0..5 {
        std::fs::write(source.join(format!("f{f}")), format!("{f}\n")).unwrap();
    }
    let image = host.root.join("stuck.img");
    ext4(&image, 8 * MIB, &source);
    register(&host, &image, "stuck");
    enumerate(&host, "stuck");
    let medium = ntt_agent::catalog::media::resolve_medium(&pool, "stuck")
        .await
        .unwrap()
        .id;
    // A live run holds every file and never finishes; the copy waits for it, then is stopped
    // by its leases' expiry being far away: give it a short deadline with SIGINT.
    let holder = copying::begin_run(&pool, "elsewhere:1:x").await.unwrap();
    copying::claim(
        &pool,
        medium,
        "elsewhere:1:x/0",
        100,
        i64::MAX,
        Duration::from_mins(15),
    )
    .await
    .unwrap();
    let mut copier = host.spawn(&["copy", "stuck", "--json"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        copier.try_wait().unwrap().is_none(),
        "a live run's files are waited for"
    );
    // The holder dies: the waiting copy takes its files over and finishes them.
    drop(holder);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = copier.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the copy never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let states = file_states(&pool, "stuck").await;
    assert!(states.values().all(|(s, _)| s == "copied"), "{states:?}");

    // Files still pending at the end (here: their rows locked by a long transaction of
    // someone else, so no claim can take them) make the copy fail with exit code 75 and say
    // how many; nothing is taken for done.
    sqlx::query(
        "update inode set state = 'pending', blob_id = null where medium_id = $1 and kind = 'file'",
    )
    .bind(medium.get())
    .execute(&pool)
    .await
    .unwrap();
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("select 1 from inode where medium_id = $1 and state = 'pending' for update")
        .bind(medium.get())
        .execute(&mut *blocker)
        .await
        .unwrap();
    let output = host.run(&["copy", "stuck"]);
    blocker.rollback().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("5 file(s) pending"), "{stderr}");
    let last = copy(&host, "stuck", &[]);
    assert_eq!(last["copied"], 5, "{last}");
}

/// A FAT image whose long names climb (`../../x`) or are absolute (`/tmp/.../x`),
/// read by The Sleuth Kit, must not make `export-tree` (root) write outside its directory.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn export_tree_of_crafted_names_writes_nothing_outside_its_directory(pool: PgPool) {
    let host = Host::new(&pool).await;
    let climbing = "../../rel-escape";
    let absolute = format!("{}/abs-escape", host.root.display());
    let image = host.root.join("crafted.img");
    sparse_file(&image, 16 * MIB);
    run(Command::new("mkfs.vfat").args(["-F", "16"]).arg(&image));
    let scratch = host.root.join("scratch");
    for (name, content) in [
        ("q".repeat(climbing.len()), "climbing"),
        ("j".repeat(absolute.len()), "absolute"),
        ("plain file.txt".to_owned(), "plain"),
    ] {
        std::fs::write(&scratch, content).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&image)
            .arg(&scratch)
            .arg(format!("::/{name}")));
    }
    craft_fat_long_name(&image, 'q', climbing);
    craft_fat_long_name(&image, 'j', &absolute);
    register(&host, &image, "crafted");
    enumerate(&host, "crafted");
    let copied = copy(&host, "crafted", &[]);
    assert_eq!(copied["copied"], 3, "{copied}");

    // DIR two levels down, so that `0/../../rel-escape` would land in `host.root/a`.
    let export = host.root.join("a").join("b").join("export");
    let exported = host.run(&["export-tree", "crafted", export.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&exported.stdout);
    let stderr = String::from_utf8_lossy(&exported.stderr);
    assert_eq!(exported.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 file(s) linked"), "{stdout}");
    assert!(stdout.contains("2 refused"), "{stdout}");
    assert!(stderr.contains("not exported"), "{stderr}");
    assert!(stderr.contains("rel-escape"), "{stderr}");
    assert_eq!(
        std::fs::read(export.join("0/plain file.txt")).unwrap(),
        b"plain"
    );
    for escaped in [
        host.root.join("a/b/rel-escape"),
        host.root.join("a/rel-escape"),
        host.root.join("rel-escape"),
        host.root.join("abs-escape"),
        PathBuf::from(&absolute),
    ] {
        assert!(
            std::fs::symlink_metadata(&escaped).is_err(),
            "{} was written",
            escaped.display()
        );
    }
    // Only `export` is under `a/b`, and only the volume directory under `export`.
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&host.root.join("a/b")), ["export"]);
    assert_eq!(names(&export), ["0"]);
    assert_eq!(names(&export.join("0")), ["plain file.txt"]);
    // The refused files' content is still in the store.
    report(&host, "crafted");
}

/// An NTFS image holding `files`, written through ntfs-3g (read-write, on a mount of this
/// test's own that is gone, with its driver, before the function returns).
fn ntfs_with(path: &Path, size: u64, files: &[(String, Vec<u8>)]) {
    sparse_file(path, size);
    run(Command::new("mkntfs").args(["-q", "-F", "-Q"]).arg(path));
    let mnt = path.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut driver = Command::new("ntfs-3g")
        .args(["-o", "no_detach"])
        .arg(path)
        .arg(&mnt)
        .spawn()
        .unwrap();
    let mounted = |mnt: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
    };
    let started = std::time::Instant::now();
    while !mounted(&mnt) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ntfs-3g did not mount"
        );
        assert!(driver.try_wait().unwrap().is_none(), "ntfs-3g exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (name, bytes) in files {
        std::fs::write(mnt.join(name), bytes).unwrap();
    }
    run(Command::new("umount").arg(&mnt));
    assert!(driver.wait().unwrap().success());
    std::fs::remove_dir(&mnt).unwrap();
}

/// The pids of `parent`'s children whose command is `comm`.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let parent_pid = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if &stat[open + 1..close] == comm && parent_pid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Waits until `ntt copy` (the process `copier`) serves the medium through an ntfs-3g driver
/// other than `not`, and returns that driver's pid.
fn driver_of(copier: &mut std::process::Child, not: Option<u32>) -> u32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(pid) = children_named(copier.id(), "ntfs-3g")
            .into_iter()
            .find(|pid| Some(*pid) != not)
        {
            return pid;
        }
        assert!(
            copier.try_wait().unwrap().is_none(),
            "the copier exited first"
        );
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "no ntfs-3g driver"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

async fn copied_count(pool: &PgPool, medium: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from inode i join medium m on m.id = i.medium_id
         where m.name = $1 and i.state = 'copied'",
    )
    .bind(medium)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn volume_lost(pool: &PgPool, medium: &str) -> Value {
    sqlx::query_scalar("select problems -> 'volume_lost' from medium where name = $1")
        .bind(medium)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_lost_volume_is_mounted_again_once_then_the_run_stops(pool: PgPool) {
    let host = Host::new(&pool).await;
    let files: Vec<(String, Vec<u8>)> = (0..200u64)
        .map(|f| (format!("file{f:03}.bin"), noise(32 * 1024 + f as usize, f)))
        .collect();
    let image = host.root.join("lossy.img");
    ntfs_with(&image, 48 * MIB, &files);
    register(&host, &image, "lossy");
    enumerate(&host, "lossy");
    let args = [
        "copy",
        "lossy",
        "--json",
        "--workers",
        "1",
        "--batch-files",
        "1",
    ];

    // The ntfs-3g driver dies mid-copy: the volume is mounted again and the run completes.
    let mut copier = host.spawn(&args);
    let first = driver_of(&mut copier, None);
    let started = std::time::Instant::now();
    while copied_count(&pool, "lossy").await < 10 {
        assert!(started.elapsed() < Duration::from_mins(1), "nothing copied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run(Command::new("kill").args(["-KILL", &first.to_string()]));
    let output = copier.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("mounting it again (once)"), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["complete"], true, "{result}");
    assert_eq!(
        result["failures"], 0,
        "no file failed because of the loss: {result}"
    );
    assert_eq!(result["copied"], 200, "both attempts counted: {result}");
    let states = file_states(&pool, "lossy").await;
    assert_eq!(states.len(), 200);
    assert!(
        states.values().all(|(state, _)| state == "copied"),
        "{states:?}"
    );
    assert_eq!(
        volume_lost(&pool, "lossy").await,
        serde_json::json!({"volume_no": 0, "times": 1, "stopped": false})
    );
    for (name, bytes) in files.iter().step_by(37) {
        let cat = host.command(&["cat", "lossy", name]).output().unwrap();
        assert!(cat.status.success());
        assert!(cat.stdout == *bytes, "{name} copied intact");
    }
    assert!(host.run(&["verify", "--medium", "lossy"]).status.success());
    report(&host, "lossy");

    // Lost again after the remount: the run stops, its files stay pending (not failed), no lease
    // is left, and the next run completes.
    ok_json(&host, &["enumerate", "lossy", "--replace", "--json"]);
    let mut copier = host.spawn(&args);
    let first = driver_of(&mut copier, None);
    while copied_count(&pool, "lossy").await < 5 {
        assert!(
            copier.try_wait().unwrap().is_none(),
            "the copier exited first"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run(Command::new("kill").args(["-KILL", &first.to_string()]));
    let before = copied_count(&pool, "lossy").await;
    let second = driver_of(&mut copier, Some(first));
    // Killed once it serves files (killed while the volume is being attached, the attach would
    // fall back to reading the filesystem with The Sleuth Kit, and the run would complete).
    while copied_count(&pool, "lossy").await < before + 3 {
        assert!(
            copier.try_wait().unwrap().is_none(),
            "the copier exited first"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run(Command::new("kill").args(["-KILL", &second.to_string()]));
    let output = copier.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("mounted again once already") && stderr.contains("volume 0 was lost"),
        "{stderr}"
    );
    assert_eq!(
        volume_lost(&pool, "lossy").await,
        serde_json::json!({"volume_no": 0, "times": 2, "stopped": true})
    );
    let states = file_states(&pool, "lossy").await;
    let copied = states.values().filter(|(s, _)| s == "copied").count();
    assert!(copied < 200, "the run stopped before the end");
    assert!(
        states
            .values()
            .all(|(s, _)| s == "copied" || s == "pending"),
        "nothing failed: {states:?}"
    );
    let (leased, attempted): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where lease_until is not null),
                count(*) filter (where attempts > 0) from inode",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (leased, attempted),
        (0, 0),
        "no lease left, no attempt counted"
    );
    assert!(
        host::loops_backed_by(&image).is_empty(),
        "no loop device left"
    );
    let last = copy(&host, "lossy", &[]);
    assert_eq!(last["complete"], true);
    assert_eq!(last["copied"], 200 - copied, "{last}");
    report(&host, "lossy");
}

/// A second Ctrl-C exits at once, even while reads hang (here: registering an image
/// on a disk whose every read takes 6 s, which would take minutes); the first only asks what
/// runs to finish. (The kernel lets a thread go only when its FUSE read is answered: the exit
/// comes when the read in flight ends, not after the whole registration.)
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_second_interrupt_exits_at_once_while_a_read_hangs(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = FaultyDisk::start(noise(4 * MIB as usize, 7), Faults::default());
    disk.set_delay(Duration::from_secs(6));
    let mut imaging = host.spawn(&["image", disk.file().to_str().unwrap(), "--name", "hung"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(imaging.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(status) = imaging.try_wait().unwrap() {
        let output = imaging.wait_with_output().unwrap();
        panic!(
            "the first interrupt must wait for the hung read: {status:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let exited = std::time::Instant::now();
    let status = loop {
        if let Some(status) = imaging.try_wait().unwrap() {
            break status;
        }
        if exited.elapsed() > Duration::from_secs(10) {
            let _ = imaging.kill();
            let output = imaging.wait_with_output().unwrap();
            panic!(
                "the second interrupt did not exit: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(130));
    let output = imaging.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("second signal"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    disk.set_delay(Duration::ZERO);
    drop(disk);
}

/// `ntt ARGS` with the open file limit (soft and hard) set to `limit`.
fn with_file_limit(host: &Host, limit: u32, args: &[&str]) -> std::process::Output {
    let nofile = format!("--nofile={limit}:{limit}");
    host.wrapped("prlimit", &[&nofile, "--"], args)
        .output()
        .unwrap()
}

/// The copy keeps within the descriptor limit. With 4 workers and a limit of 128
/// (soft and hard), staging up to 256 blobs per worker ran out of descriptors and failed files
/// for it; now each worker stages its share of what the reserve leaves and all 600 files are
/// copied.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn the_copy_keeps_within_the_open_file_limit(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("many");
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..600 {
        std::fs::write(source.join(format!("f{i:04}")), format!("file {i}\n")).unwrap();
    }
    let image = host.root.join("many.img");
    ext4(&image, 16 * MIB, &source);
    register(&host, &image, "many");
    enumerate(&host, "many");
    let output = with_file_limit(&host, 128, &["copy", "many", "--json", "--workers", "4"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let first = report(&host, "many");
    assert_eq!(first["content"]["copied_files"], 600, "{first}");
    assert_eq!(first["accounting"]["failed"], 0, "{first}");

    // Too many workers for the limit: as many as fit run (and say so); with room for none the
    // copy is refused before it starts. No file is blamed either way.
    enumerate_replace(&host, "many");
    let refused = with_file_limit(&host, 35, &["copy", "many", "--json", "--workers", "4"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("open file limit (35) is too low"),
        "{stderr}"
    );
    let fewer = with_file_limit(&host, 40, &["copy", "many", "--json", "--workers", "64"]);
    let stderr = String::from_utf8_lossy(&fewer.stderr);
    assert!(fewer.status.success(), "{stderr}");
    assert!(stderr.contains("allows fewer workers"), "{stderr}");
    let last = report(&host, "many");
    assert_eq!(last["content"]["copied_files"], 600, "{last}");
    assert_eq!(last["accounting"]["failed"], 0, "{last}");
}

fn enumerate_replace(host: &Host, medium: &str) {
    ok_json(host, &["enumerate", medium, "--replace", "--json"]);
}

/// `ntt init` refuses the empty directory where the catalog recorded the store; `--replace`
/// makes it the new store.
fn failed_init_then_replace(host: &Host) {
    let refused = host.run(&["init"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("recorded a store"));
    let replaced = host.run(&["init", "--replace", "--json"]);
    assert!(replaced.status.success());
    let outcomes: Value = serde_json::from_slice(&replaced.stdout).unwrap();
    assert_eq!(outcomes[0]["action"], "replaced", "{outcomes}");
    assert_eq!(outcomes[1]["action"], "present", "{outcomes}");
}

/// A new database on the test's server, and its URL (dropped by [`drop_database`]).
async fn new_database(pool: &PgPool, host: &Host, name: &str) -> String {
    // The names are the test's own constants.
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(pool)
        .await
        .unwrap();
    let mut url = url::Url::parse(&host.url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn drop_database(pool: &PgPool, name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// `ntt db backup` three times with `--keep 2`: two dumps stay, other files are untouched;
/// the newest restores into an empty database, against which `ntt verify --all` passes over
/// the same store. A second restore into it is refused (not empty); a truncated dump fails
/// and leaves its target empty.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_catalog_backup_restores_into_an_empty_database_and_the_store_verifies(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("letters");
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..20 {
        std::fs::write(
            source.join(format!("{i:02}.txt")),
            format!("letter {i}\n").repeat(99),
        )
        .unwrap();
    }
    let ingested = host.run(&["ingest", source.to_str().unwrap(), "--name", "letters"]);
    assert!(ingested.status.success());
    let backups = host.root.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(backups.join("notes.txt"), "not a dump").unwrap();
    let mut made = Vec::new();
    for _ in 0..3 {
        let output = host.run(&[
            "db",
            "backup",
            backups.to_str().unwrap(),
            "--keep",
            "2",
            "--json",
        ]);
        assert!(output.status.success());
        let backup: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(backup["bytes"].as_u64().unwrap() > 0 && backup["entries"].as_u64().unwrap() > 10);
        made.push(PathBuf::from(backup["path"].as_str().unwrap()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(
        left,
        ["notes.txt".to_owned(), name(&made[1]), name(&made[2])]
    );

    let restored_url = new_database(&pool, &host, "ntt_restore_ok").await;
    let restore = |url: &str, dump: &Path| {
        host.command(&["db", "restore", dump.to_str().unwrap(), "--json"])
            .env("NTT_DATABASE_URL", url)
            .output()
            .unwrap()
    };
    let output = restore(&restored_url, &made[2]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let restored: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(restored["media"], 1);
    assert_eq!(restored["blobs"], 20);
    let verify = host
        .command(&["verify", "--all", "--json"])
        .env("NTT_DATABASE_URL", &restored_url)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let found: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(
        (&found["checked"], &found["ok"]),
        (&json!(20), &json!(20)),
        "{found}"
    );
    assert!(found["loads_validated"].as_u64().unwrap() >= 1, "{found}");
    // Not into a catalog that has tables.
    let again = restore(&restored_url, &made[2]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
    // A truncated dump: refused, its target left empty.
    let bytes = std::fs::read(&made[2]).unwrap();
    let truncated = host.root.join("truncated.dump");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty_url = new_database(&pool, &host, "ntt_restore_truncated").await;
    let failed = restore(&empty_url, &truncated);
    assert_eq!(failed.status.code(), Some(1));
    let target = sqlx::PgPool::connect(&empty_url).await.unwrap();
    let tables: i64 =
        sqlx::query_scalar("select count(*) from pg_tables where schemaname = 'public'")
            .fetch_one(&target)
            .await
            .unwrap();
    target.close().await;
    assert_eq!(tables, 0, "nothing restored from a truncated dump");
    drop_database(&pool, "ntt_restore_ok").await;
    drop_database(&pool, "ntt_restore_truncated").await;
}

async fn replica_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from blob_replica")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The blob files under a store-like root (`ab/cd/<64 hex>`).
fn blob_files(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for first in std::fs::read_dir(root).unwrap().flatten() {
        let name = first.file_name().into_string().unwrap();
        if name.len() != 2 || !first.path().is_dir() {
            continue;
        }
        for second in std::fs::read_dir(first.path()).unwrap().flatten() {
            for blob in std::fs::read_dir(second.path()).unwrap().flatten() {
                found.insert(blob.file_name().into_string().unwrap());
            }
        }
    }
    found
}

/// `ntt replicate`: refuses what is not (yet) a replica, copies every blob, survives `kill -9`
/// mid-run and goes on, is idempotent, adopts what a killed run linked but did not record,
/// replaces a wrong file; `ntt verify --replica` finds a flipped byte in a replica's copy and
/// `ntt report` counts the replicas holding all of a medium's content.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn replicate_is_resumable_after_kill_9_idempotent_and_verified_on_the_replica(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("many");
    std::fs::create_dir_all(&source).unwrap();
    let files = 3000;
    for i in 0..files {
        std::fs::write(
            source.join(format!("{i:05}")),
            format!("file {i}\n").repeat(2000),
        )
        .unwrap();
    }
    let ingested = host.run(&["ingest", source.to_str().unwrap(), "--name", "many"]);
    assert!(ingested.status.success());
    let replica = host.root.join("replica");
    std::fs::create_dir_all(&replica).unwrap();
    let to = replica.to_str().unwrap();
    // An empty directory is not a replica until asked; a directory with files never becomes
    // one; the store is not one.
    let refused = host.run(&["replicate", "--to", to]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --new"));
    let cluttered = host.root.join("cluttered");
    std::fs::create_dir_all(&cluttered).unwrap();
    std::fs::write(cluttered.join("x"), "x").unwrap();
    let refused = host.run(&["replicate", "--to", cluttered.to_str().unwrap(), "--new"]);
    assert_eq!(refused.status.code(), Some(1));
    let store = host.root.join("store");
    let refused = host.run(&["replicate", "--to", store.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(replica_rows(&pool).await, 0);

    // kill -9 once some pages are recorded.
    let mut first = host.start(
        host.command(&["replicate", "--to", to, "--new", "--jobs", "1"])
            .stdout(std::process::Stdio::null()),
    );
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    while replica_rows(&pool).await < 256 {
        assert!(std::time::Instant::now() < deadline, "no page recorded");
        assert!(
            first.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let recorded = replica_rows(&pool).await;
    assert!(recorded < i64::from(files), "killed mid-run: {recorded}");
    // Every recorded blob is in the replica and right.
    let rows: Vec<String> = sqlx::query_scalar("select encode(blob_id, 'hex') from blob_replica")
        .fetch_all(&pool)
        .await
        .unwrap();
    let path = |root: &Path, hex: &str| root.join(&hex[..2]).join(&hex[2..4]).join(hex);
    for hex in &rows {
        let bytes = std::fs::read(path(&replica, hex)).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), hex);
    }
    // The next run goes on and completes.
    let output = host.run(&["replicate", "--to", to, "--json"]);
    assert!(output.status.success());
    let done: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = done["replica"].as_str().unwrap().to_owned();
    assert_eq!(done["lacking"], 0, "{done}");
    assert_eq!(
        done["copied"].as_i64().unwrap() + done["adopted"].as_i64().unwrap(),
        i64::from(files) - recorded,
        "{done}"
    );
    assert_eq!(replica_rows(&pool).await, i64::from(files));
    assert_eq!(blob_files(&replica), blob_files(&store));
    let leftovers: Vec<_> = std::fs::read_dir(replica.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Again: nothing to do.
    let output = host.run(&["replicate", "--to", to, "--json"]);
    let again: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (&again["copied"], &again["adopted"]),
        (&json!(0), &json!(0)),
        "{again}"
    );
    // Linked but not recorded (a kill between the two): adopted; a wrong file: replaced.
    let (adopt, wrong) = (&rows[0], &rows[1]);
    flip_stored_byte(&path(&replica, wrong), 3, 0x01);
    sqlx::query("delete from blob_replica where encode(blob_id, 'hex') = any($1)")
        .bind(vec![adopt.clone(), wrong.clone()])
        .execute(&pool)
        .await
        .unwrap();
    let output = host.run(&["replicate", "--to", to, "--json"]);
    assert!(output.status.success());
    let repaired: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            &repaired["adopted"],
            &repaired["replaced"],
            &repaired["copied"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{repaired}"
    );
    let bytes = std::fs::read(path(&replica, wrong)).unwrap();
    assert_eq!(blake3::hash(&bytes).to_hex().as_str(), wrong.as_str());
    // The report: one replica holds all of the medium.
    let report = host.run(&["report", "many", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["replicas_complete"], 1, "{report}");
    // A flipped byte in the replica's copy: found by verifying the replica, not the store.
    let output = host.run(&["verify", "--replica", &id, "--json"]);
    assert!(output.status.success());
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(found["checked"], files, "{found}");
    let victim = &rows[2];
    flip_stored_byte(&path(&replica, victim), 10, 0x40);
    let output = host.run(&["verify", "--replica", &id, "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(found["mismatched"], json!([victim]), "{found}");
    let store_check = host.run(&["verify", "--all"]);
    assert!(store_check.status.success(), "the store itself is right");
    let report = host.run(&["report", "many", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["replicas_complete"], 0, "{report}");
    assert_eq!(report["replicas"][0]["lacking"], 1, "{report}");
    // The next replication repairs the copy found wrong.
    let output = host.run(&["replicate", "--to", to, "--json"]);
    let repaired: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (&repaired["replaced"], &repaired["copied"]),
        (&json!(1), &json!(1)),
        "{repaired}"
    );
    let report = host.run(&["report", "many", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["replicas_complete"], 1, "{report}");
    let unknown = host.run(&["verify", "--replica", "no-such-replica"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no replica no-such-replica"));
}
