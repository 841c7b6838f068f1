//! The privileged tier for `ntt ingest`: the whole pipeline on a failing FUSE disk, on the
//! third-party images (content compared with `icat`), on a directory, and after kills. Runs as
//! root; never skips.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::faulty_disk;
use crate::faulty_disk::{Faults, FaultyDisk};
use crate::host::{Host, MIB, ext4, fixture, partition, place, run, sparse_file};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
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
    crate::host::json_lines(&output.stdout)
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
    assert_eq!(
        report["map"],
        format!("ntt map {}", report["hash"].as_str().unwrap()),
        "the report says how to draw the rescue map"
    );
    let volumes = report["volumes"].as_array().unwrap();
    let readable: Vec<(String, String)> = volumes
        .iter()
        .filter(|v| v["state"] == "ready" && v["role"] != "deleted")
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
    assert!(second["map"].is_null(), "a directory has no rescue map");
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
    // Where is it? The local copy's content is on both media; hit.bin's is on one, damaged.
    let output = host
        .command(&["where", "--json"])
        .arg(other.join("copy-of-shared.txt"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Value = serde_json::from_slice(&output.stdout).unwrap();
    let places: Vec<(&str, &str, bool)> = found["places"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["medium"].as_str().unwrap(),
                p["path"].as_str().unwrap(),
                p["damaged"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            ("failing", "shared.txt", false),
            ("second", "copy-of-shared.txt", false)
        ]
    );
    // Ingest indexed both media's names (beside copying): find by name goes through the
    // index, across both.
    let unindexed: i64 =
        sqlx::query_scalar("select count(*) from medium where names_indexed_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unindexed, 0);
    let output = host
        .command(&["find", "--iname", "*SHARED*"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(
        lines[0].starts_with("failing  ") && lines[0].contains("shared.txt"),
        "{shown}"
    );
    assert!(
        lines[1].starts_with("second  0  copy-of-shared.txt"),
        "{shown}"
    );
    let hit_content = host.root.join("hit-as-stored.bin");
    std::fs::write(&hit_content, &stored).unwrap();
    let output = host.command(&["where"]).arg(&hit_content).output().unwrap();
    assert!(output.status.success());
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("hit.bin  (damaged)")
            && shown.contains("some copy came from a damaged source")
            && shown.contains("1 place(s): 1 file(s) on 1 medium/media"),
        "{shown}"
    );
    // The original bytes of hit.bin are not in the archive: only its rescued form is.
    std::fs::write(&hit_content, faulty_disk::disk_content(64 * 1024, 7)).unwrap();
    let output = host.command(&["where"]).arg(&hit_content).output().unwrap();
    assert_eq!(output.status.code(), Some(1));

    // The rescue map: the SVG draws the bad blocks exactly where the mapfile has them, and
    // marks both partitions; the terminal picture shows them and lists the damaged file.
    let picture = host.root.join("failing.svg");
    let output = host
        .command(&["map", "failing", "--svg"])
        .arg(&picture)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = std::fs::read_to_string(&picture).unwrap();
    let attribute = |line: &str, name: &str| -> u64 {
        let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        line[start..].split('"').next().unwrap().parse().unwrap()
    };
    let mut bad: Vec<(u64, u64)> = svg
        .lines()
        .filter(|l| l.starts_with("<rect") && l.contains(r#"data-status="-""#))
        .map(|l| (attribute(l, "data-pos"), attribute(l, "data-size")))
        .collect();
    bad.dedup();
    // Adjacent bad blocks (ddrescue may record a range in several) as one.
    let bad = bad
        .into_iter()
        .fold(Vec::<(u64, u64)>::new(), |mut merged, (pos, size)| {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == pos => last.1 += size,
                _ => merged.push((pos, size)),
            }
            merged
        });
    let mut expected: Vec<(u64, u64)> = vec![(hit.start, hit.end - hit.start), (60 * MIB, 8192)];
    expected.sort_unstable();
    assert_eq!(bad, expected, "the bad blocks are the injected ranges");
    let drawn: u64 = svg
        .lines()
        .filter(|l| l.starts_with("<rect") && l.contains("data-pos"))
        .map(|l| (attribute(l, "data-pos"), attribute(l, "data-size")))
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|(_, size)| size)
        .sum();
    assert_eq!(drawn, 64 * MIB, "every byte of the device is in some block");
    let volumes: Vec<u64> = svg
        .lines()
        .filter(|l| l.starts_with(r#"<line class="volume""#))
        .map(|l| attribute(l, "data-offset"))
        .collect();
    assert_eq!(volumes, [2048 * 512, 43008 * 512]);
    assert!(svg.contains("hit.bin"));
    let again = host
        .command(&["map", "failing", "--svg"])
        .arg(&picture)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );
    let output = host.run(&["map", "failing", "--width", "32", "--rows", "8"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8_lossy(&output.stdout);
    // Each row: its offset (10 columns, right-aligned), a space, then its 32 cells.
    let rows: Vec<&str> = shown
        .lines()
        .skip(1)
        .take(8)
        .map(|r| r.get(11..).unwrap_or_default())
        .collect();
    assert_eq!(rows.len(), 8, "{shown}");
    assert!(
        rows.iter()
            .all(|r| r.len() == 32 && r.chars().all(|c| "#.*/X".contains(c))),
        "{shown}"
    );
    // 256 cells of 256 KiB: exactly the cells holding the two bad ranges show X.
    let cell = |offset: u64| usize::try_from(offset / (256 * 1024)).unwrap();
    let bad_cells: Vec<usize> = rows
        .concat()
        .char_indices()
        .filter(|(_, c)| *c == 'X')
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad_cells, [cell(hit.start), cell(60 * MIB)], "{shown}");
    assert!(
        shown.contains("1 damaged files") && shown.contains("hit.bin"),
        "{shown}"
    );
    let output = host.run(&["map", "second"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no rescue map"));
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
    // The rerun comes at once; the killed runs' leases were freed with their
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

/// A directory source changes under the copy. A file swapped for a FIFO fails as
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

fn failed_with(output: &std::process::Output, wanted: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "must fail: {stderr}");
    for text in wanted {
        assert!(stderr.contains(text), "{text:?} not in: {stderr}");
    }
    stderr
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "lost+found")
        .collect()
}

fn tree_of(dir: &Path, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

/// The store lives on an archive disk; when the disk is not mounted its
/// mount point is an empty directory of the system disk, which nothing may create or fill.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_store_whose_disk_is_not_mounted_is_refused_and_never_filled(pool: PgPool) {
    let host = Host::bare(&pool).await;
    let (store, images) = (host.root.join("store"), host.root.join("images"));
    let first = host.root.join("first");
    tree_of(&first, &[("a.txt", b"first medium"), ("b.txt", b"shared")]);

    // Nothing initialised: the commands that write refuse and create nothing.
    let output = host.command(&["ingest"]).arg(&first).output().unwrap();
    failed_with(&output, &["does not exist", "ntt init"]);
    let output = host.command(&["image"]).arg(&first).output().unwrap();
    failed_with(&output, &["data directory", "does not exist"]);
    assert!(!store.exists() && !images.exists(), "no root was created");

    // The archive disk, mounted at the store, then initialised.
    let disk = host.root.join("archive-disk.img");
    sparse_file(&disk, 64 * MIB);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk));
    std::fs::create_dir_all(&store).unwrap();
    let mount = || {
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&disk)
            .arg(&store));
    };
    mount();
    let output = host.run(&["init"]);
    assert!(output.status.success());
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("store") && said.contains("created"), "{said}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&store), mode(&images)), (0o700, 0o700));
    assert_eq!(mode(&store.join(".ntt-root")), 0o440);
    ingest(&host, &first, &["--name", "first"]);

    // The disk goes away: its mount point is an empty directory.
    run(Command::new("umount").arg(&store));
    assert!(entries(&store).is_empty());
    let second = host.root.join("second");
    tree_of(&second, &[("c.txt", b"second medium")]);
    let output = host.command(&["ingest"]).arg(&second).output().unwrap();
    failed_with(&output, &["store", "not initialised", "not mounted"]);
    let output = host.run(&["verify", "--all"]);
    failed_with(&output, &["not initialised"]);
    let output = host.run(&["cat", "first", "a.txt"]);
    failed_with(&output, &["not initialised"]);
    // `ntt init` (which the chart runs before every agent) refuses too: the catalog knows a
    // store was here.
    let output = host.run(&["init"]);
    failed_with(&output, &["recorded a store", "not mounted", "--replace"]);
    assert!(
        entries(&store).is_empty(),
        "nothing was written to the system disk"
    );
    let recorded: i64 = sqlx::query_scalar("select count(*) from blob")
        .fetch_one(&pool)
        .await
        .unwrap();
    let verified_missing: i64 =
        sqlx::query_scalar("select count(*) from blob where verify_outcome::text <> 'ok'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (recorded, verified_missing),
        (2, 0),
        "no blob was marked missing"
    );

    // The disk is back: everything works again, and the store is the same one.
    mount();
    let output = host.run(&["init"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("initialised already"));
    ingest(&host, &second, &["--name", "second"]);
    let output = host.run(&["verify", "--all"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(cat(&host, "first", b"a.txt", "0"), b"first medium");
    run(Command::new("umount").arg(&store));
}

/// A root of another catalog, a data directory given as the store, and a directory of files
/// without a marker are each refused with what to check; `--adopt` takes over the last.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn foreign_swapped_and_unmarked_roots_are_refused(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("source");
    tree_of(&source, &[("a.txt", b"content")]);
    let (store, images) = (host.root.join("store"), host.root.join("images"));

    // Store and data directory swapped by mistake.
    let swapped = host
        .command(&["ingest"])
        .arg(&source)
        .env("NTT_STORE", &images)
        .env("NTT_DATA_DIR", &store)
        .output()
        .unwrap();
    failed_with(&swapped, &["is a data directory, not a store", "NTT_STORE"]);

    // The roots of another catalog (this database given a new identity stands for one).
    let ours: String = sqlx::query_scalar("select id::text from catalog_identity")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("update catalog_identity set id = gen_random_uuid()")
        .execute(&pool)
        .await
        .unwrap();
    let output = host.command(&["ingest"]).arg(&source).output().unwrap();
    failed_with(&output, &["belongs to another catalog", &ours]);
    let output = host.run(&["init", "--adopt", "--replace"]);
    failed_with(&output, &["belongs to another catalog"]);
    sqlx::query("update catalog_identity set id = $1::uuid")
        .bind(&ours)
        .execute(&pool)
        .await
        .unwrap();

    // A store made before markers: files, no marker. Refused, then adopted with its files.
    let legacy = host.root.join("legacy-store");
    std::fs::create_dir_all(legacy.join("ab/cd")).unwrap();
    std::fs::write(legacy.join("ab/cd/blob"), b"old").unwrap();
    let init = |extra: &[&str]| {
        let mut command = host.command(&["init"]);
        command.args(extra).env("NTT_STORE", &legacy);
        command.output().unwrap()
    };
    let output = host
        .command(&["copy", "anything"])
        .env("NTT_STORE", &legacy)
        .output()
        .unwrap();
    failed_with(&output, &["not initialised"]);
    failed_with(&init(&[]), &["holds files but no", "--adopt"]);
    let adopted = init(&["--adopt", "--json"]);
    assert!(adopted.status.success());
    let outcomes: Value = serde_json::from_slice(&adopted.stdout).unwrap();
    assert_eq!(outcomes[0]["kind"], "store");
    assert_eq!(outcomes[0]["action"], "adopted");
    assert_eq!(outcomes[1]["action"], "present");
    assert_eq!(std::fs::read(legacy.join("ab/cd/blob")).unwrap(), b"old");
    let again: Value = serde_json::from_slice(&init(&["--json"]).stdout).unwrap();
    assert_eq!(again[0]["action"], "present");
    assert_eq!(again[0]["id"], outcomes[0]["id"]);
}

/// `ntt ingest --read-timeout 2 DIR` of a directory on `disk`, which must end (not hang) and
/// fail; its log.
fn ingest_hung(host: &Host, disk: &FaultyDisk) -> String {
    let log = host.root.join("ingest.log");
    let mut command = host.command(&["ingest", "--read-timeout", "2", "--name", "hung"]);
    command
        .arg(disk.dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = host.start(&mut command);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ntt ingest still hangs: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    eprintln!("ntt ingest:\n{stderr}");
    assert!(!status.success());
    assert!(
        stderr.contains("stopped answering") && stderr.contains("aborted the FUSE connection"),
        "the watchdog says what it did"
    );
    stderr
}

fn fusectl_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" /sys/fs/fuse/connections ")
}

/// A driver that stops answering (a FUSE read that never returns) held the
/// copy, and the medium's lock, until SIGKILL. The watchdog aborts the FUSE connection after
/// the read timeout; the run stops with the volume lost, the file stays pending (never
/// failed), and the fuse control filesystem it had to mount is taken down again.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_read_that_never_returns_is_aborted_and_its_file_stays_pending(pool: PgPool) {
    let host = Host::new(&pool).await;
    let fusectl_before = fusectl_mounted();
    let hang_at = 512 * 1024;
    let disk = FaultyDisk::start(
        faulty_disk::disk_content(MIB as usize, 11),
        Faults {
            hang: Some(hang_at..hang_at + 512),
            ..Faults::default()
        },
    );
    let stderr = ingest_hung(&host, &disk);
    assert!(
        stderr.contains("lost"),
        "the run stops with the volume lost"
    );
    let states: Vec<String> =
        sqlx::query_scalar("select state::text from inode where kind = 'file'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        states,
        vec!["pending".to_owned()],
        "not failed: nothing is known of it"
    );
    assert_eq!(fusectl_before, fusectl_mounted(), "fusectl left as it was");
    drop(disk);
}

/// The same during enumeration: a directory listing that never returns is aborted, and the
/// walk fails instead of loading a listing that says nothing about the volume.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_listing_that_never_returns_is_aborted_and_nothing_is_loaded(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = FaultyDisk::start(
        faulty_disk::disk_content(64 * 1024, 12),
        Faults {
            hang_listing: true,
            ..Faults::default()
        },
    );
    let stderr = ingest_hung(&host, &disk);
    assert!(stderr.contains("was aborted"), "the walk fails as stalled");
    let loaded: i64 = sqlx::query_scalar("select count(*) from path")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(loaded, 0, "no load was published");
    drop(disk);
}

/// A path longer than the kernel takes in one call (`PATH_MAX`, 4 096
/// bytes) was never enumerated; now it is listed, copied and read back like any other, and a
/// link at the bottom is recorded, not followed.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_path_deeper_than_path_max_is_listed_and_copied(pool: PgPool) {
    let host = Host::new(&pool).await;
    let tree = host.root.join("deep");
    std::fs::create_dir_all(&tree).unwrap();
    // 24 levels of 200 bytes, made by a shell that goes down one level at a time.
    let name = "d".repeat(200);
    run(Command::new("bash").arg("-c").arg(format!(
        "cd '{}' && for i in $(seq 24); do mkdir {name} && cd {name}; done && \
         printf 'at the bottom' > bottom.txt && ln -s ../../.. up",
        tree.display()
    )));
    let report = ingest(&host, &tree, &["--name", "deep"]);
    assert_eq!(report["accounting"]["entries"], 26, "{report}");
    assert_eq!(report["content"]["copied_files"], 1, "{report}");
    let bottom = format!("{}/bottom.txt", vec![name.as_str(); 24].join("/"));
    assert!(bottom.len() > 4096);
    assert_eq!(cat(&host, "deep", bottom.as_bytes(), "0"), b"at the bottom");
    let errors: i64 = sqlx::query_scalar("select count(*) from entry_error")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(errors, 0);
    let listed = ls(&host, "deep");
    let link = listed
        .iter()
        .find(|e| e["kind"] == "symlink")
        .expect("the link is listed");
    assert_eq!(
        BASE64.decode(link["target_b64"].as_str().unwrap()).unwrap(),
        b"../../.."
    );
}

/// The same for The Sleuth Kit: an `fls` that stops answering on a crafted filesystem (here an
/// `fls` on the PATH that lists the root when asked and hangs on the recursive listing) is
/// killed after the read timeout, and the walk fails with nothing loaded.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_sleuth_kit_listing_that_never_ends_is_killed_and_nothing_is_loaded(pool: PgPool) {
    let host = Host::new(&pool).await;
    let image = host.root.join("card.img");
    sparse_file(&image, 16 * MIB);
    run(Command::new("mkfs.vfat").args(["-F", "16"]).arg(&image));
    let scratch = host.root.join("scratch");
    std::fs::write(&scratch, b"photo").unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&image)
        .arg(&scratch)
        .arg("::/PHOTO.JPG"));
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v fls"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = host.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("fls"),
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" -r \"*) exec sleep 600;; esac\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("fls"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut command = host.command(&["ingest", "--read-timeout", "2", "--name", "card"]);
    command.arg(&image).env("PATH", &path);
    let started = std::time::Instant::now();
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("ntt ingest:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_mins(1),
        "ended, not hung"
    );
    assert!(!output.status.success());
    assert!(
        stderr.contains("stopped answering") && stderr.contains("killed process"),
        "the watchdog says what it did"
    );
    assert!(stderr.contains("was aborted"), "the walk fails as stalled");
    let loaded: i64 = sqlx::query_scalar("select count(*) from path")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(loaded, 0, "no load was published");
}

/// A wiped medium, and a disk whose first partition is an LVM physical volume: both ingest to a
/// finished medium that says what it holds, never to a failure (the cluster would retry it).
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_wiped_medium_and_a_volume_group_member_finish_with_what_they_are(pool: PgPool) {
    let host = Host::new(&pool).await;
    // A stick wiped with 0xF6 (the pattern DOS format and some wipers leave).
    let wiped = host.root.join("wiped.img");
    std::fs::write(&wiped, vec![0xF6_u8; 16 * MIB as usize]).unwrap();
    for _ in 0..2 {
        let report = ingest(&host, &wiped, &["--name", "wiped"]);
        assert_eq!(report["accounting"]["entries"], 0, "{report}");
        assert_eq!(report["volumes"][0]["role"], "blank", "{report}");
        let problem = report["problems"]["no_filesystem"].to_string();
        assert!(problem.contains("is 0xf6"), "{report}");
    }
    // An LVM physical volume (pvcreate on a loop device of our own, detached at once) beside
    // an ext4 partition with a file.
    let pv = host.root.join("pv.img");
    sparse_file(&pv, 8 * MIB);
    let device = crate::host::attach_loop(&pv);
    let made = Command::new("pvcreate")
        .args(["-q", "-y", &device])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap();
    run(Command::new("losetup").args(["-d", &device]));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let content = host.root.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("minutes.txt"), b"kept beside a volume group").unwrap();
    let fs = host.root.join("ext4.img");
    ext4(&fs, 8 * MIB, &content);
    let disk = host.root.join("disk.img");
    sparse_file(&disk, 20 * MIB);
    partition(
        &disk,
        b"label: gpt\nstart=2048, size=16384\nstart=18432, size=16384\n",
    );
    place(&disk, &pv, 2048 * 512);
    place(&disk, &fs, 18432 * 512);
    let report = ingest(&host, &disk, &["--name", "pv"]);
    assert_eq!(report["accounting"]["copied"], 1, "{report}");
    let volume = &report["volumes"][0];
    assert_eq!(volume["role"], "member", "{report}");
    assert_eq!(volume["fs_type"], "LVM2_member", "{report}");
    assert!(
        volume["problem"]
            .as_str()
            .unwrap()
            .contains("LVM2 physical volume"),
        "{report}"
    );
    assert_eq!(report["volumes"][1]["state"], "ready", "{report}");
    assert!(
        report["problems"].get("no_filesystem").is_none(),
        "{report}"
    );
}

/// `ntt ls MEDIUM --deleted --json` (deleted entries only).
fn ls_deleted(host: &Host, medium: &str) -> Vec<Value> {
    let output = host.run(&["ls", medium, "--deleted", "--json"]);
    assert!(output.status.success());
    crate::host::json_lines(&output.stdout)
}

/// The deleted entry whose path ends with `suffix` (FAT loses a deleted name's first letter).
fn deleted_entry<'a>(rows: &'a [Value], suffix: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no deleted entry ending in {suffix}: {rows:?}"))
}

/// Bytes that say where they come from, `len` long.
fn marked(mark: &str, len: usize) -> Vec<u8> {
    mark.as_bytes().iter().copied().cycle().take(len).collect()
}

/// Files written to a FAT and an NTFS image with their own tools (mtools, ntfs-3g), then
/// deleted: each deleted file is listed apart from the live ones, marked deleted, and its
/// content recovered byte for byte; one whose clusters a later file took is flagged, never
/// passed off as the original; the live accounting still balances on its own.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn deleted_files_on_fat_and_ntfs_are_listed_and_recovered_apart_from_live_ones(pool: PgPool) {
    let host = Host::new(&pool).await;
    let file = |name: &str, bytes: &[u8]| {
        let path = host.root.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let big = marked("minutes of the 12 May meeting; ", 6000);
    let gone = b"a short note that was deleted".to_vec();
    let early = marked("overwritten later ", 20_000);
    let (x, y, keep, big_path, gone_path) = (
        file("early.bin", &early),
        file("later.bin", &marked("a later file ", 3000)),
        file("keep.txt", b"still here"),
        file("big.txt", &big),
        file("gone.txt", &gone),
    );
    // FAT: EARLY.BIN written and deleted, then a later file takes its first clusters; then
    // the files that are deleted last keep their content.
    let fat = host.root.join("fat.img");
    sparse_file(&fat, 16 * MIB);
    let mtools = |args: &[&str], paths: &[&Path]| {
        let mut command = Command::new(args[0]);
        command.args(["-i", fat.to_str().unwrap()]).args(&args[1..]);
        for path in paths {
            command.arg(path);
        }
        run(&mut command);
    };
    // Nothing is written to the root after EARLY.BIN's deletion, so its directory entry
    // stays.
    mtools(&["mformat", "::"], &[]);
    mtools(&["mmd", "::/dir"], &[]);
    mtools(&["mcopy"], &[&keep, Path::new("::/keep.txt")]);
    mtools(&["mcopy"], &[&x, Path::new("::/early.bin")]);
    mtools(&["mdel", "::/early.bin"], &[]);
    mtools(&["mcopy"], &[&y, Path::new("::/dir/later.bin")]);
    mtools(&["mcopy"], &[&big_path, Path::new("::/dir/big.txt")]);
    mtools(&["mcopy"], &[&gone_path, Path::new("::/dir/gone.txt")]);
    mtools(&["mdel", "::/dir/big.txt", "::/dir/gone.txt"], &[]);
    let report = ingest(&host, &fat, &["--name", "fat"]);
    // Live: dir, dir/later.bin, keep.txt; the deleted ones are counted apart.
    assert_eq!(report["accounting"]["entries"], 3, "{report}");
    assert_eq!(report["accounting"]["copied"], 2, "{report}");
    assert_eq!(report["deleted"]["entries"], 3, "{report}");
    assert_eq!(report["deleted"]["pending"], 0, "{report}");
    assert_eq!(report["recovered"]["overwritten_files"], 1, "{report}");
    let volumes = report["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 2, "{report}");
    assert_eq!(volumes[1]["role"], "deleted");
    assert_eq!(volumes[1]["parent_volume_no"], 0);
    let rows = ls_deleted(&host, "fat");
    assert!(rows.iter().all(|r| r["deleted"] == true), "{rows:?}");
    let volume = rows[0]["volume"].to_string();
    for (suffix, content) in [("ig.txt", &big), ("one.txt", &gone)] {
        let row = deleted_entry(&rows, suffix);
        assert_eq!(row["state"], "copied", "{row}");
        assert_eq!(row["overwritten_ranges"], Value::Null, "{row}");
        let path = BASE64.decode(row["path_b64"].as_str().unwrap()).unwrap();
        assert_eq!(&cat(&host, "fat", &path, &volume), content, "{suffix}");
    }
    let early_row = deleted_entry(&rows, "arly.bin");
    assert_eq!(early_row["overwritten_ranges"][0][0], 0, "{early_row}");
    assert_ne!(
        early_row["state"], "copied",
        "a deleted file whose clusters a live file took is never stored as itself: {early_row}"
    );
    // The live listing holds no deleted entry.
    assert!(
        ls(&host, "fat")
            .iter()
            .filter(|r| r["volume"] == 0)
            .all(|r| r["deleted"] == false)
    );

    // Search says which matches are deleted entries.
    let found = host.run(&["find", "--medium", "fat", "--name", "*.txt", "--json"]);
    assert!(found.status.success());
    let found = crate::host::json_lines(&found.stdout);
    let deleted_names: Vec<&str> = found
        .iter()
        .filter(|r| r["deleted"] == true)
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(deleted_names, ["dir/_ig.txt", "dir/_one.txt"], "{found:?}");
    assert!(
        found
            .iter()
            .any(|r| r["path"] == "keep.txt" && r["deleted"] == false)
    );
    // Killed between publishing the load and checking the deleted files (the state such a
    // kill leaves: loaded, nothing checked, nothing copied): `ntt copy` checks first, so the
    // overwritten file is still flagged and never stored as itself.
    // Copies of the image that are other media: their last (free) byte differs.
    let other_medium = |name: &str, byte: u8| {
        use std::os::unix::fs::FileExt;
        let path = host.root.join(name);
        std::fs::copy(&fat, &path).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[byte], 16 * MIB - 1).unwrap();
        path
    };
    let fat2 = other_medium("fat2.img", 2);
    crate::host::register(&host, &fat2, "fat2");
    assert!(host.run(&["enumerate", "fat2"]).status.success());
    sqlx::query(
        "update volume v set deleted_checked_at = null from medium m
         where m.id = v.medium_id and m.name = 'fat2'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "update inode i set overwritten_ranges = null, damaged_ranges = null from medium m
         where m.id = i.medium_id and m.name = 'fat2'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(host.run(&["copy", "fat2"]).status.success());
    let early_again = ls_deleted(&host, "fat2")
        .into_iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("arly.bin"))
        .unwrap();
    assert_eq!(
        early_again["overwritten_ranges"],
        early_row["overwritten_ranges"]
    );
    assert_ne!(early_again["state"], "copied", "{early_again}");
    // A real kill as soon as the load is published, twice, then a rerun at once.
    let fat3 = other_medium("fat3.img", 3);
    for _ in 0..2 {
        let mut command = host.command(&["ingest"]);
        command.arg(&fat3).args(["--name", "fat3"]);
        let mut child = host.start(&mut command);
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
            let published: Option<bool> = sqlx::query_scalar(
                "select enumerated_at is not null from medium where name = 'fat3'",
            )
            .fetch_optional(&pool)
            .await
            .unwrap();
            if published == Some(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    let report = ingest(&host, &fat3, &["--name", "fat3"]);
    assert_eq!(report["recovered"]["overwritten_files"], 1, "{report}");
    assert_eq!(report["deleted"]["pending"], 0, "{report}");

    // NTFS, written through ntfs-3g (run in the foreground, so that its exit means the image
    // is written).
    let ntfs = host.root.join("ntfs.img");
    sparse_file(&ntfs, 16 * MIB);
    run(Command::new("mkntfs").args(["-q", "-F", "-f"]).arg(&ntfs));
    let point = host.root.join("ntfs-mount");
    std::fs::create_dir_all(&point).unwrap();
    let mut driver = Command::new("ntfs-3g")
        .args(["-o", "no_detach"])
        .arg(&ntfs)
        .arg(&point)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !Command::new("mountpoint")
        .arg("-q")
        .arg(&point)
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "ntfs-3g did not mount"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let random: Vec<u8> = (0..100_000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    std::fs::create_dir(point.join("d")).unwrap();
    std::fs::write(point.join("d/big.txt"), &big).unwrap();
    std::fs::write(point.join("data.bin"), &random).unwrap();
    std::fs::write(point.join("keep.txt"), b"still here").unwrap();
    run(&mut Command::new("sync"));
    std::fs::remove_file(point.join("d/big.txt")).unwrap();
    std::fs::remove_file(point.join("data.bin")).unwrap();
    run(Command::new("umount").arg(&point));
    assert!(driver.wait().unwrap().success());
    let report = ingest(&host, &ntfs, &["--name", "ntfs"]);
    assert!(
        report["deleted"]["entries"].as_i64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["deleted"]["pending"], 0, "{report}");
    let rows = ls_deleted(&host, "ntfs");
    let volume = rows[0]["volume"].to_string();
    for (path, content) in [("d/big.txt", &big), ("data.bin", &random)] {
        let row = rows
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("{path} is not listed as deleted: {rows:?}"));
        assert_eq!(row["state"], "copied", "{row}");
        assert_eq!(
            &cat(&host, "ntfs", path.as_bytes(), &volume),
            content,
            "{path}"
        );
    }
    // Live entries are not listed as deleted, and a rerun changes nothing.
    assert!(!rows.iter().any(|r| r["path"] == "keep.txt"), "{rows:?}");
    let again = ingest(&host, &ntfs, &["--name", "ntfs"]);
    assert_eq!(again["deleted"], report["deleted"]);
}

/// The APFS fixture, read through libyal's FUSE driver (fsapfsmount), lists and reads as The
/// Sleuth Kit's pool reader sees it (`fls`/`icat -P apfs -B <volume superblock>`).
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn the_apfs_fixture_reads_as_the_sleuth_kit_sees_it(pool: PgPool) {
    let host = Host::new(&pool).await;
    let copy = host.root.join("apfs.raw");
    std::fs::copy(fixture("apfs.raw"), &copy).unwrap();
    let report = ingest(&host, &copy, &["--name", "apfs"]);
    assert_eq!(report["volumes"][0]["access"], "fuse", "{report}");
    assert_eq!(report["accounting"]["failed"], 0, "{report}");
    // The Sleuth Kit's view: the volume superblock's block from pstat, then fls and icat.
    let pstat = Command::new("pstat").arg(&copy).output().unwrap();
    assert!(pstat.status.success());
    let block = String::from_utf8_lossy(&pstat.stdout)
        .lines()
        .find_map(|l| {
            l.trim_start_matches(['|', ' '])
                .strip_prefix("APSB Block Number: ")
        })
        .map(|n| n.trim().to_owned())
        .unwrap();
    let fls = Command::new("fls")
        .args(["-P", "apfs", "-B", &block, "-r", "-p"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(fls.status.success());
    let truth: BTreeMap<String, (String, String)> = String::from_utf8_lossy(&fls.stdout)
        .lines()
        .filter_map(|line| {
            let (head, path) = line.split_once(":\t")?;
            let (kind, address) = head.split_once(' ')?;
            Some((
                path.to_owned(),
                (kind.to_owned(), address.trim().to_owned()),
            ))
        })
        .collect();
    let listed: BTreeMap<String, Value> = ls(&host, "apfs")
        .into_iter()
        .filter(|r| r["volume"] == 0)
        .map(|r| (r["path"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "the same entries"
    );
    let mut compared = 0;
    for (path, (kind, address)) in &truth {
        let row = &listed[path];
        if kind != "r/r" {
            continue;
        }
        assert_eq!(row["state"], "copied", "{row}");
        let icat = Command::new("icat")
            .args(["-P", "apfs", "-B", &block])
            .arg(&copy)
            .arg(address)
            .output()
            .unwrap();
        let ours = cat(&host, "apfs", path.as_bytes(), "0");
        if icat.status.success() {
            assert_eq!(ours, icat.stdout, "{path}");
        } else {
            // A file with only a resource fork has no data fork for icat: empty for us.
            let stderr = String::from_utf8_lossy(&icat.stderr);
            assert!(
                stderr.contains("Attribute") && stderr.contains("not found"),
                "{stderr}"
            );
            assert!(ours.is_empty(), "{path}");
        }
        compared += 1;
    }
    assert!(compared >= 5, "compared {compared} files");
    let passwords = cat(&host, "apfs", b"passwords.txt", "0");
    assert!(passwords.starts_with(b"place,user,password\n"));
}

/// An LVM2 physical volume made with LVM's own tools without device-mapper (pvcreate and
/// vgcreate on a loop device of our own, logical volumes written with vgcfgrestore; LVM's
/// configuration kept in a directory of the test's), and an md RAID1 member whose version-1.2
/// superblock the test writes: the linear logical volume and the mirror's data are read as
/// volumes of their own, named; what is not read says why.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn lvm_logical_volumes_and_an_md_mirror_member_are_read_without_device_mapper(pool: PgPool) {
    let host = Host::new(&pool).await;
    let content = host.root.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("ledger.csv"), b"date,amount\n2019-03-01,12\n").unwrap();

    // LVM: 64 MiB PV, extents of 4 MiB from 1 MiB on.
    let pv = host.root.join("pv.img");
    sparse_file(&pv, 64 * MIB);
    let system = host.root.join("lvm");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::write(
        system.join("lvm.conf"),
        "backup { backup = 0 archive = 0 }\n",
    )
    .unwrap();
    let device = crate::host::attach_loop(&pv);
    let lvm = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .env("LVM_SYSTEM_DIR", &system)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .unwrap()
    };
    let backup = host.root.join("vg.txt");
    let mut outputs = vec![
        lvm(&["pvcreate", "-q", "-y", "--devices", &device, &device]),
        lvm(&[
            "vgcreate",
            "-q",
            "--devices",
            &device,
            "evidencevg",
            &device,
        ]),
        lvm(&[
            "vgcfgbackup",
            "--devices",
            &device,
            "-f",
            backup.to_str().unwrap(),
            "evidencevg",
        ]),
    ];
    if outputs.iter().all(|o| o.status.success()) {
        let text = std::fs::read_to_string(&backup).unwrap();
        let segment = |n: u32, start: u32, count: u32, pe: u32| {
            format!(
                "segment{n} {{ start_extent = {start} extent_count = {count} type = \"striped\" \
                 stripe_count = 1 stripes = [\"pv0\", {pe}] }}\n"
            )
        };
        let lvs = format!(
            "logical_volumes {{\n\
             data {{ id = \"aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa1\" \
             status = [\"READ\", \"WRITE\", \"VISIBLE\"] flags = [] segment_count = 1\n{}}}\n\
             apart {{ id = \"aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaa2\" \
             status = [\"READ\", \"WRITE\", \"VISIBLE\"] flags = [] segment_count = 2\n{}{}}}\n\
             }}\n",
            segment(1, 0, 2, 1),
            segment(1, 0, 1, 4),
            segment(2, 1, 1, 7),
        );
        // Into the volume group's section, after its physical volumes.
        let at = text.rfind('}').unwrap();
        let written = format!("{}{lvs}{}", &text[..at], &text[at..]);
        std::fs::write(&backup, written).unwrap();
        outputs.push(lvm(&[
            "vgcfgrestore",
            "--devices",
            &device,
            "-f",
            backup.to_str().unwrap(),
            "evidencevg",
        ]));
    }
    run(Command::new("losetup").args(["-d", &device]));
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The logical volume "data": extents 1 and 2, bytes 5 MiB to 13 MiB.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .args(["-E", &format!("offset={}", 5 * MIB)])
        .arg(&pv)
        .arg("8M"));
    let report = ingest(&host, &pv, &["--name", "pv"]);
    let volumes = report["volumes"].as_array().unwrap();
    assert_eq!(volumes[0]["fs_type"], "LVM2_member", "{report}");
    let problem = volumes[0]["problem"].as_str().unwrap();
    assert!(problem.contains("evidencevg/data"), "{problem}");
    assert!(
        problem.contains("evidencevg/apart") && problem.contains("concatenating"),
        "{problem}"
    );
    assert_eq!(
        volumes[1]["partition_type"], "LVM2 evidencevg/data",
        "{report}"
    );
    assert_eq!(volumes[1]["offset_bytes"], 5 * MIB, "{report}");
    assert_eq!(volumes[1]["state"], "ready", "{report}");
    assert_eq!(
        cat(&host, "pv", b"ledger.csv", "1"),
        b"date,amount\n2019-03-01,12\n"
    );

    // md RAID1 member (the other half of the mirror is not there): superblock 1.2 at 4 KiB,
    // data from 1 MiB, 4 MiB long.
    let member = host.root.join("member.img");
    sparse_file(&member, 16 * MIB);
    let mut sb = vec![0_u8; 4096];
    sb[0..4].copy_from_slice(&0xa92b_4efc_u32.to_le_bytes());
    sb[4..8].copy_from_slice(&1_u32.to_le_bytes());
    sb[16..32].copy_from_slice(b"0123456789abcdef");
    sb[32..42].copy_from_slice(b"archive:0\0");
    sb[72..76].copy_from_slice(&1_i32.to_le_bytes());
    sb[80..88].copy_from_slice(&8192_u64.to_le_bytes());
    sb[92..96].copy_from_slice(&2_u32.to_le_bytes());
    sb[128..136].copy_from_slice(&2048_u64.to_le_bytes());
    sb[136..144].copy_from_slice(&(16 * 2048 - 2048_u64).to_le_bytes());
    sb[144..152].copy_from_slice(&8_u64.to_le_bytes());
    sb[168..184].copy_from_slice(b"fedcba9876543210");
    sb[220..224].copy_from_slice(&2_u32.to_le_bytes());
    // Checksum: the little-endian 32-bit words of the first 256 + 2 * max_dev bytes, the
    // checksum's own word as zero, folded to 32 bits.
    let sum: u64 = sb[..260]
        .chunks(4)
        .map(|w| u64::from(u32::from_le_bytes(w.try_into().unwrap())))
        .sum();
    let folded = (sum & 0xffff_ffff) + (sum >> 32);
    sb[216..220].copy_from_slice(&u32::try_from(folded & 0xffff_ffff).unwrap().to_le_bytes());
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&member)
            .unwrap();
        file.write_all_at(&sb, 4096).unwrap();
    }
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .args(["-E", &format!("offset={MIB}")])
        .arg(&member)
        .arg("4M"));
    let report = ingest(&host, &member, &["--name", "member"]);
    let volumes = report["volumes"].as_array().unwrap();
    assert_eq!(volumes[0]["fs_type"], "linux_raid_member", "{report}");
    assert!(
        volumes[0]["problem"]
            .as_str()
            .unwrap()
            .contains("md RAID1 array archive:0"),
        "{report}"
    );
    assert_eq!(
        volumes[1]["partition_type"], "md RAID1 archive:0",
        "{report}"
    );
    assert_eq!(volumes[1]["offset_bytes"], MIB, "{report}");
    assert_eq!(
        cat(&host, "member", b"ledger.csv", "1"),
        b"date,amount\n2019-03-01,12\n"
    );
}
