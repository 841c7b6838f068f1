//! The privileged tier for `ntt ingest`: the whole pipeline on a failing FUSE disk, on the
//! third-party images (content compared with `icat`), on a directory, and after kills. Runs as
//! root; never skips.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]
#![allow(
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation,
    reason = "test code: diagnostics on stderr, std::fs with unwrap is clear enough, small sizes"
)]

#[path = "support/db.rs"]
mod db;
#[path = "support/faulty_disk.rs"]
#[allow(dead_code, reason = "this binary does not slow the disk down")]
mod faulty_disk;
#[path = "support/host.rs"]
mod host;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use faulty_disk::{Faults, FaultyDisk};
use host::{Host, MIB, ext4, fixture, partition, place, run, sparse_file};
use serde_json::Value;
use sqlx::PgPool;

/// `ntt ingest SOURCE --json ...`, which must succeed; the final report.
fn ingest(host: &Host, source: &Path, extra: &[&str]) -> Value {
    let mut command = host.command(&["ingest"]);
    command.arg(source).arg("--json").args(extra);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "ntt ingest {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["balances"], true, "accounting balances: {report}");
    assert_eq!(report["accounting"]["pending"], 0, "{report}");
    report
}

fn ls(host: &Host, medium: &str) -> Vec<Value> {
    let output = host.run(&["ls", medium, "--json"]);
    assert!(output.status.success());
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn cat(host: &Host, medium: &str, path: &[u8], volume: &str) -> Vec<u8> {
    let output = host
        .command(&["cat", medium, "--volume", volume])
        .arg(OsStr::from_bytes(path))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cat {}: {}",
        String::from_utf8_lossy(path),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Path → metadata address of every allocated regular file, per `fls -r -p`.
fn fls_files(image: &Path) -> BTreeMap<String, String> {
    let output = Command::new("fls")
        .args(["-r", "-p", "-u"])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("r/r "))
        .filter_map(|l| {
            let (head, path) = l.split_once(":\t")?;
            Some((path.to_owned(), head.trim_start_matches("r/r ").to_owned()))
        })
        .collect()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn third_party_images_ingest_and_their_content_matches_icat(pool: PgPool) {
    let host = Host::new(&pool).await;
    for (name, file) in [
        ("hfsplus", "hfsplus.raw"),
        ("iso9660", "iso9660.raw"),
        ("imynd", "ímynd.dd"),
        ("windows", "windows_volume.qcow2"),
        ("ewf", "ext2.E01"),
    ] {
        let copy = host.root.join(file);
        std::fs::copy(fixture(file), &copy).unwrap();
        let report = ingest(&host, &copy, &["--name", name]);
        assert!(
            report["content"]["copied_files"].as_i64().unwrap() > 0,
            "{name}: {report}"
        );
        let image: String = sqlx::query_scalar("select image_path from medium where name = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        let truth = fls_files(Path::new(&image));
        let by_name: BTreeMap<String, String> = truth
            .iter()
            .map(|(p, a)| (p.to_lowercase(), a.clone()))
            .collect();
        let mut compared = 0;
        for row in ls(&host, name) {
            if row["kind"] != "file" || row["state"] != "copied" {
                continue;
            }
            let path = BASE64.decode(row["path_b64"].as_str().unwrap()).unwrap();
            let text = String::from_utf8_lossy(&path).into_owned();
            let address = truth
                .get(&text)
                .or_else(|| by_name.get(&text.to_lowercase()))
                .unwrap_or_else(|| panic!("{name}: {text} is not in fls"));
            let icat = Command::new("icat")
                .arg(&image)
                .arg(address)
                .output()
                .unwrap();
            assert!(icat.status.success());
            let volume = row["volume"].to_string();
            assert_eq!(
                cat(&host, name, &path, &volume),
                icat.stdout,
                "{name}: {text} byte for byte"
            );
            compared += 1;
        }
        assert!(compared > 0, "{name}: compared nothing");
        eprintln!("{name}: {compared} files equal icat's");
    }
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_directory_with_odd_names_ingests_without_imaging(pool: PgPool) {
    let host = Host::new(&pool).await;
    let tree = host.root.join("photorec-out");
    std::fs::create_dir_all(tree.join("recup_dir.1")).unwrap();
    let names: Vec<Vec<u8>> = vec![
        b"recup_dir.1/f0001.jpg".to_vec(),
        b"recup_dir.1/new\nline.txt".to_vec(),
        b"recup_dir.1/bad \xff name".to_vec(),
        b"back\\rslash".to_vec(),
    ];
    for name in &names {
        std::fs::write(tree.join(OsStr::from_bytes(name)), name).unwrap();
    }
    let report = ingest(&host, &tree, &["--name", "carved"]);
    assert_eq!(report["content"]["copied_files"], 4);
    assert_eq!(report["accounting"]["entries"], 5);
    for name in &names {
        assert_eq!(&cat(&host, "carved", name, "0"), name);
    }
    let kind: String = sqlx::query_scalar("select kind::text from medium where name = 'carved'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kind, "directory");
    // Again: everything is done, nothing changes.
    let again = ingest(&host, &tree, &[]);
    assert_eq!(again["accounting"], report["accounting"]);
    // Again under another host name (an agent pod restarted under a new name): the same
    // medium, found by the machine's id, not registered anew.
    let renamed = renamed_host(&host, "renamed-pod-7", &["ingest", "--json"], &tree);
    assert!(
        renamed.status.success(),
        "{}",
        String::from_utf8_lossy(&renamed.stderr)
    );
    let renamed: Value = serde_json::from_slice(&renamed.stdout).unwrap();
    assert_eq!(renamed["hash"], report["hash"], "{renamed}");
    assert_eq!(renamed["accounting"], report["accounting"]);
    let media: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(media, 1);
}

/// `ntt ARGS SOURCE` in a UTS namespace of its own whose host name is `name`.
fn renamed_host(host: &Host, name: &str, args: &[&str], source: &Path) -> std::process::Output {
    let script = "hostname \"$0\" && exec \"$@\"";
    let mut command = host.wrapped("unshare", &["--uts", "sh", "-c", script, name], args);
    command.arg(source).output().unwrap()
}

/// A GPT disk with an ext4 (files `good.txt`, `hit.bin`, `shared.txt`) and a FAT32 partition;
/// returns the disk bytes and the byte range of `hit.bin`'s data on the disk.
fn failing_disk_content(dir: &Path) -> (Vec<u8>, std::ops::Range<u64>) {
    let content = dir.join("ext4-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("good.txt"), b"fine\n").unwrap();
    std::fs::write(
        content.join("hit.bin"),
        faulty_disk::disk_content(64 * 1024, 7),
    )
    .unwrap();
    std::fs::write(content.join("shared.txt"), b"shared between media\n").unwrap();
    let disk = dir.join("gpt.img");
    sparse_file(&disk, 64 * MIB);
    partition(
        &disk,
        b"label: gpt\nstart=2048, size=40960, type=linux\nstart=43008, size=81920, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
    );
    let part = dir.join("part.fs");
    sparse_file(&part, 20 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&content)
        .arg(&part));
    let blocks = Command::new("debugfs")
        .args(["-R", "blocks hit.bin"])
        .arg(&part)
        .output()
        .unwrap();
    let first: u64 = String::from_utf8_lossy(&blocks.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    place(&disk, &part, 2048 * 512);
    sparse_file(&part, 40 * MIB);
    run(Command::new("mkfs.vfat").args(["-F", "32"]).arg(&part));
    let note = dir.join("note.txt");
    std::fs::write(&note, b"on the fat side\n").unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&part)
        .arg(&note)
        .arg("::/NOTE.TXT"));
    place(&disk, &part, 43008 * 512);
    let start = 2048 * 512 + first * 4096;
    (
        std::fs::read(&disk).unwrap(),
        start + 4096..start + 3 * 4096,
    )
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_failing_disk_ingests_end_to_end_and_a_second_medium_deduplicates(pool: PgPool) {
    let host = Host::new(&pool).await;
    let (content, hit) = failing_disk_content(&host.root);
    let free_space = 60 * MIB..60 * MIB + 8192;
    let mut disk = FaultyDisk::start(
        content,
        Faults {
            bad: vec![hit.clone(), free_space],
            ..Faults::default()
        },
    );
    let device = disk.attach();
    let report = ingest(&host, &device, &["--name", "failing"]);
    assert_eq!(report["health"], "incomplete", "{report}");
    let volumes = report["volumes"].as_array().unwrap();
    let readable: Vec<(String, String)> = volumes
        .iter()
        .filter(|v| v["state"] == "ready")
        .map(|v| {
            (
                v["fs_type"].as_str().unwrap().to_owned(),
                v["access"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        readable,
        [
            ("ext4".to_owned(), "kernel".to_owned()),
            ("fat32".to_owned(), "userspace".to_owned())
        ]
    );
    let bad: i64 = sqlx::query_scalar("select bad_bytes from medium where name = 'failing'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(u64::try_from(bad).unwrap(), (hit.end - hit.start) + 8192);
    assert_eq!(cat(&host, "failing", b"good.txt", "0"), b"fine\n");
    assert_eq!(
        cat(&host, "failing", b"NOTE.TXT", "1"),
        b"on the fat side\n"
    );
    // hit.bin lies on unreadable sectors: the image holds zeros there and the file is flagged
    // damaged with exactly those bytes; its readable parts are intact.
    assert_eq!(report["damage"]["files"], 1, "{report}");
    let damaged: Vec<Value> = ls(&host, "failing")
        .into_iter()
        .filter(|e| !e["damaged_ranges"].is_null())
        .collect();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0]["path"], "hit.bin");
    assert_eq!(
        damaged[0]["damaged_ranges"],
        serde_json::json!([[4096, 12288]])
    );
    let stored = cat(&host, "failing", b"hit.bin", "0");
    assert_eq!(stored.len(), 64 * 1024);
    assert!(stored[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(
        stored[..4096],
        faulty_disk::disk_content(64 * 1024, 7)[..4096]
    );
    drop(disk);

    // A second medium (a directory) holding one of the same files: stored once.
    let other = host.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("copy-of-shared.txt"), b"shared between media\n").unwrap();
    let second = ingest(&host, &other, &["--name", "second"]);
    assert_eq!(second["content"]["shared_blobs"], 1);
    let blobs: i64 = sqlx::query_scalar("select count(*) from blob where id = $1")
        .bind(
            blake3::hash(b"shared between media\n")
                .as_bytes()
                .as_slice(),
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(blobs, 1);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn kills_during_any_stage_then_a_rerun_ends_like_an_uninterrupted_ingest(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("tree");
    for d in 0..8 {
        let dir = source.join(format!("dir{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..250u64 {
            let size = if f % 100 == 0 {
                2 * MIB as usize
            } else {
                300 + (f as usize % 7) * 1000
            };
            std::fs::write(
                dir.join(format!("file{f:03}")),
                faulty_disk::disk_content(size, f % 120),
            )
            .unwrap();
        }
    }
    let image = host.root.join("tree.img");
    ext4(&image, 96 * MIB, &source);
    let distinct: std::collections::BTreeSet<(usize, u64)> = (0..250u64)
        .map(|f| {
            let size = if f % 100 == 0 {
                2 * MIB as usize
            } else {
                300 + (f as usize % 7) * 1000
            };
            (size, f % 120)
        })
        .collect();
    let mut seed = 0xfeed_u64;
    let mut stages = BTreeMap::new();
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut command = host.command(&["ingest"]);
        command
            .arg(&image)
            .args(["--name", "killed", "--workers", "2"]);
        let mut child = host.start(&mut command);
        if round == 0 {
            // The first kill lands in the enumeration: as soon as the volumes are recorded.
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none()
            {
                let at: Option<Option<String>> = sqlx::query_scalar(
                    "select case when volumes_at is not null then 'volumes' end from medium",
                )
                .fetch_optional(&pool)
                .await
                .unwrap();
                if at.flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        } else {
            std::thread::sleep(Duration::from_millis(300 + seed % 1500));
        }
        let before = host.run(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&before.stdout).unwrap_or(Value::Null);
        let during = status[0]["stage"].as_str().unwrap_or("none").to_owned();
        child.kill().unwrap();
        child.wait().unwrap();
        *stages.entry(format!("during {during}")).or_insert(0) += 1;
        let stage = host.run(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&stage.stdout).unwrap_or(Value::Null);
        let at = status[0]["stage"].as_str().unwrap_or("none").to_owned();
        *stages.entry(at).or_insert(0) += 1;
    }
    eprintln!("killed at stages: {stages:?}");
    // Issue 20: the rerun comes at once; the killed runs' leases were freed with their
    // sessions, nothing is expired by hand.
    let report = ingest(&host, &image, &[]);
    assert_eq!(report["accounting"]["entries"], 8 * 251 + 1, "{report}");
    assert_eq!(report["content"]["copied_files"], 2000);
    assert_eq!(
        report["content"]["distinct_blobs"],
        distinct.len(),
        "{report}"
    );
    let verify = host.run(&["verify", "--medium", "killed"]);
    assert!(verify.status.success());
    let tmp = std::fs::read_dir(host.root.join("store/tmp")).map_or(0, Iterator::count);
    assert_eq!(tmp, 0, "no temp files left");
}

/// Issue 21: a directory source changes under the copy. A file swapped for a FIFO fails as
/// changed at once (it never blocks the copy); a directory swapped for a symlink to a tree
/// outside the source is never followed (its file fails, nothing from outside is stored); a
/// file that grew fails as changed; a file replaced by another fails as another inode. The rest
/// is copied and nothing stays pending.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_directory_source_that_changes_under_the_copy_never_escapes_or_hangs(pool: PgPool) {
    let host = Host::new(&pool).await;
    let tree = host.root.join("live");
    let outside = host.root.join("outside");
    for dir in [tree.join("sub"), outside.clone()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    for (name, content) in [
        ("fifo-to-be", "was a file"),
        ("grows", "short"),
        ("replaced", "first version"),
        ("kept", "unchanged"),
        ("sub/inner", "inside"),
    ] {
        std::fs::write(tree.join(name), content).unwrap();
    }
    std::fs::write(outside.join("inner"), "OUTSIDE SECRET").unwrap();
    let tree_arg = tree.to_str().unwrap();
    let enumerated = host.run(&["ingest", tree_arg, "--target", "enumerated"]);
    assert!(
        enumerated.status.success(),
        "{}",
        String::from_utf8_lossy(&enumerated.stderr)
    );

    std::fs::remove_file(tree.join("fifo-to-be")).unwrap();
    run(Command::new("mkfifo").arg(tree.join("fifo-to-be")));
    std::fs::write(tree.join("grows"), "much longer than it was").unwrap();
    // Written beside it, then renamed over it (as editors save): another inode, same size.
    std::fs::write(tree.join("replaced.tmp"), "first versioN").unwrap();
    std::fs::rename(tree.join("replaced.tmp"), tree.join("replaced")).unwrap();
    std::fs::rename(tree.join("sub"), host.root.join("sub-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("sub")).unwrap();

    let atime = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).unwrap();
        (m.atime(), m.atime_nsec())
    };
    let kept_atime = atime(&tree.join("kept"));
    // Later than the file's times: a read through the page cache (relatime) would update it.
    std::thread::sleep(Duration::from_millis(1100));
    let mut copy = host.spawn(&["copy", "live", "--json", "--max-attempts", "1"]);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = copy.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "the copy hangs on the FIFO"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = copy.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        status.code(),
        Some(0),
        "failed files are an outcome: {stderr}"
    );
    let failed: Vec<(Vec<u8>, String, String)> = sqlx::query_as(
        "select p.path, i.error_class::text, e.message
           from path p join inode i using (medium_id, volume_no, ino)
           join lateral (select message from copy_error c
                          where c.medium_id = i.medium_id and c.volume_no = i.volume_no
                            and c.ino = i.ino order by c.at desc limit 1) e on true
          where i.state = 'failed' order by p.path",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let by_path: BTreeMap<&[u8], (&str, &str)> = failed
        .iter()
        .map(|(p, c, m)| (p.as_slice(), (c.as_str(), m.as_str())))
        .collect();
    assert_eq!(
        by_path.keys().copied().collect::<Vec<_>>(),
        [&b"fifo-to-be"[..], b"grows", b"replaced", b"sub/inner"],
        "{failed:?}"
    );
    assert!(
        by_path[&b"fifo-to-be"[..]].1.contains("a FIFO now"),
        "{failed:?}"
    );
    assert!(
        by_path[&b"grows"[..]].1.contains("longer than"),
        "{failed:?}"
    );
    assert!(
        by_path[&b"replaced"[..]].1.contains("listed as inode"),
        "{failed:?}"
    );
    assert_eq!(by_path[&b"sub/inner"[..]].0, "name", "{failed:?}");
    assert_eq!(cat(&host, "live", b"kept", "0"), b"unchanged");
    assert_eq!(
        atime(&tree.join("kept")),
        kept_atime,
        "reading the source left its access time alone"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from blob where size = 14")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing from outside the source is stored");
    let report = host.run(&["report", "live", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["accounting"]["pending"], 0, "{report}");
    assert_eq!(report["accounting"]["failed"], 4, "{report}");
    assert_eq!(report["balances"], true, "{report}");
}
