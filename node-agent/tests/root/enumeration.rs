//! The privileged tier for enumeration: `ntt enumerate` walks real mounts (and The Sleuth Kit),
//! loads into a real PostgreSQL, and `ntt ls --json` gives every path back byte for byte. Runs
//! as root; never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::host::{
    Host, MIB, craft_fat_long_name, ext4, fixture, partition, place, register, run, sparse_file,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sqlx::PgPool;

/// `ntt ls MEDIUM --json`, one object per line.
fn ls(host: &Host, medium: &str) -> Vec<Value> {
    let output = host.run(&["ls", medium, "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}

fn path_bytes(row: &Value) -> Vec<u8> {
    BASE64.decode(row["path_b64"].as_str().unwrap()).unwrap()
}

fn enumerate(host: &Host, args: &[&str]) -> std::process::Output {
    let mut all = vec!["enumerate"];
    all.extend_from_slice(args);
    host.run(&all)
}

fn enumerate_ok(host: &Host, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = enumerate(host, &all);
    assert!(
        output.status.success(),
        "ntt enumerate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// An ext4 image filled by the kernel (`cp -a` on a read-write mount), so times keep their
/// nanoseconds (`mkfs.ext4 -d` keeps whole seconds only).
fn ext4_by_copy(host: &Host, image: &Path, size: u64, source: &Path) {
    sparse_file(image, size);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
    let target = host.root.join("fill");
    std::fs::create_dir_all(&target).unwrap();
    run(Command::new("mount").arg(image).arg(&target));
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", source.display()))
        .arg(&target)
        .output()
        .unwrap();
    run(Command::new("umount").arg(&target));
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
}

/// Names a careless pipeline mangles.
fn awkward_names() -> Vec<Vec<u8>> {
    vec![
        b"new\nline".to_vec(),
        b"carriage\rreturn".to_vec(),
        b"tab\there".to_vec(),
        b"file\x1cseparator".to_vec(),
        b"literal \\r and \\n".to_vec(),
        b"\\newenvironment{x}.tex".to_vec(),
        b"#hash #1.txt".to_vec(),
        b"invalid \xff\xfe utf8".to_vec(),
        b"latin1 caf\xe9".to_vec(),
        vec![b'x'; 255],
    ]
}

/// A source tree with every awkward name, a 40-level deep chain, a file with three hard links,
/// symlinks, a fifo and device nodes.
fn awkward_tree(root: &Path) -> Vec<Vec<u8>> {
    let mut expected = Vec::new();
    std::fs::create_dir_all(root).unwrap();
    for name in awkward_names() {
        std::fs::write(root.join(OsStr::from_bytes(&name)), &name).unwrap();
        expected.push(name);
    }
    let mut deep = Vec::new();
    for level in 0..40 {
        if !deep.is_empty() {
            deep.push(b'/');
        }
        deep.extend_from_slice(format!("level{level:02}").as_bytes());
        expected.push(deep.clone());
    }
    std::fs::create_dir_all(root.join(OsStr::from_bytes(&deep))).unwrap();
    let mut bottom = deep.clone();
    bottom.extend_from_slice(b"/bottom.txt");
    std::fs::write(root.join(OsStr::from_bytes(&bottom)), b"deep\n").unwrap();
    expected.push(bottom);
    std::fs::create_dir_all(root.join("links")).unwrap();
    std::fs::write(root.join("links/one"), b"linked content\n").unwrap();
    std::fs::hard_link(root.join("links/one"), root.join("links/two")).unwrap();
    std::fs::hard_link(root.join("links/one"), root.join("links/three")).unwrap();
    std::os::unix::fs::symlink("one", root.join("links/soft")).unwrap();
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"../dangling\n\xff"),
        root.join("links/odd"),
    )
    .unwrap();
    run(Command::new("mkfifo").arg(root.join("fifo")));
    run(Command::new("mknod")
        .arg(root.join("chardev"))
        .args(["c", "1", "3"]));
    run(Command::new("mknod")
        .arg(root.join("blockdev"))
        .args(["b", "7", "200"]));
    for name in [
        &b"links"[..],
        b"links/one",
        b"links/two",
        b"links/three",
        b"links/soft",
        b"links/odd",
        b"fifo",
        b"chardev",
        b"blockdev",
    ] {
        expected.push(name.to_vec());
    }
    expected
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn every_entry_round_trips_byte_exact_with_its_metadata(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("source");
    let mut expected = awkward_tree(&source);
    let image = host.root.join("awkward.img");
    ext4_by_copy(&host, &image, 32 * MIB, &source);
    register(&host, &image, "awkward");

    let report = enumerate_ok(&host, &["awkward"]);
    // lost+found comes with every ext4.
    expected.push(b"lost+found".to_vec());
    assert_eq!(report["counts"]["entries"], expected.len());
    assert_eq!(report["counts"]["errors"], 0);

    let rows = ls(&host, "awkward");
    let seen: BTreeSet<Vec<u8>> = rows.iter().map(path_bytes).collect();
    let wanted: BTreeSet<Vec<u8>> = expected.iter().cloned().collect();
    assert_eq!(seen, wanted, "every path, byte for byte");
    let by_path: BTreeMap<Vec<u8>, &Value> = rows.iter().map(|r| (path_bytes(r), r)).collect();

    // Hard links: three paths, one inode.
    let links: Vec<&Value> = ["links/one", "links/two", "links/three"]
        .iter()
        .map(|p| by_path[p.as_bytes()])
        .collect();
    assert!(
        links
            .iter()
            .all(|r| r["inode"] == links[0]["inode"] && r["nlink"] == 3)
    );
    let inode_rows: i64 = sqlx::query_scalar(
        "select count(*) from inode i join path p using (medium_id, volume_no, ino)
         where p.path = 'links/one'::bytea",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(inode_rows, 1);
    let total_inodes: i64 = sqlx::query_scalar("select count(*) from inode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total_inodes, i64::try_from(expected.len()).unwrap() - 2);
    assert_eq!(report["counts"]["inodes"], total_inodes);

    // Symlink targets as exact bytes.
    assert_eq!(by_path[&b"links/soft"[..]]["kind"], "symlink");
    assert_eq!(
        BASE64
            .decode(by_path[&b"links/odd"[..]]["target_b64"].as_str().unwrap())
            .unwrap(),
        b"../dangling\n\xff"
    );
    for (name, kind) in [("fifo", "fifo"), ("chardev", "char"), ("blockdev", "block")] {
        assert_eq!(by_path[name.as_bytes()]["kind"], kind, "{name}");
        assert_eq!(by_path[name.as_bytes()]["state"], "not_a_file");
    }
    let rdev: Option<i64> =
        sqlx::query_scalar("select rdev from inode i join path p using (medium_id, volume_no, ino) where p.path = 'blockdev'::bytea")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        rdev,
        Some(i64::try_from(nix::libc::makedev(7, 200)).unwrap())
    );
    let file = by_path[&b"links/one"[..]];
    assert_eq!(file["state"], "pending");
    assert_eq!(file["size"], 15);
    let mtime = std::fs::symlink_metadata(source.join("links/one"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        file["mtime_ns"].as_i64().unwrap(),
        i64::try_from(mtime.as_nanos()).unwrap(),
        "nanosecond times"
    );

    // A prefix lists the directory and what is below it, nothing beside it.
    let output = host.run(&["ls", "awkward", "links", "--json"]);
    let listed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        listed.lines().count(),
        6,
        "links and its five entries: {listed}"
    );
    let counts: (Option<i64>, Option<i64>) =
        sqlx::query_as("select entries_walked, inodes_loaded from medium")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counts.0, Some(i64::try_from(expected.len()).unwrap()));
    // The human listing escapes what would break a terminal line.
    let table = host.run(&["ls", "awkward"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("0:new\\nline"), "{text}");
    assert!(text.contains("0:invalid \\xff\\xfe utf8"), "{text}");

    // The rows were held and sent in key order (bytes compared as PostgreSQL compares them,
    // 0x80 and above after ASCII), so each table lies in the order its index builds want.
    let id: i64 = sqlx::query_scalar("select id from medium where name = 'awkward'")
        .fetch_one(&pool)
        .await
        .unwrap();
    for (table, key) in [("path", "path"), ("inode", "ino")] {
        let out_of_order: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from (select {key} < lag({key}) over (order by ctid) as back
                                    from {table}_m{id}) rows where back"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(out_of_order, 0, "{table} rows in key order");
    }
    // Without memory to hold rows they go as walked: the same load.
    let unsorted = enumerate_ok(&host, &["awkward", "--replace", "--sort-memory", "0"]);
    assert_eq!(unsorted["counts"]["entries"], report["counts"]["entries"]);
    assert_eq!(unsorted["counts"]["inodes"], report["counts"]["inodes"]);
    let mut again = ls(&host, "awkward");
    let mut first = rows.clone();
    let by_volume_path = |r: &Value| (r["volume"].as_i64(), path_bytes(r));
    again.sort_by_key(by_volume_path);
    first.sort_by_key(by_volume_path);
    assert_eq!(again, first, "the same rows either way");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn two_volumes_with_the_same_inode_numbers_stay_distinct(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("same");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("same.txt"), b"same\n").unwrap();
    let part = host.root.join("part.fs");
    ext4(&part, 8 * MIB, &source);
    let disk = host.root.join("twins.img");
    sparse_file(&disk, 24 * MIB);
    partition(
        &disk,
        b"label: dos\nstart=2048, size=16384, type=83\nstart=18432, size=16384, type=83\n",
    );
    place(&disk, &part, 2048 * 512);
    place(&disk, &part, 18432 * 512);
    register(&host, &disk, "twins");
    enumerate_ok(&host, &["twins"]);
    let rows = ls(&host, "twins");
    let same: Vec<&Value> = rows.iter().filter(|r| r["path"] == "same.txt").collect();
    assert_eq!(same.len(), 2);
    assert_eq!(same[0]["inode"], same[1]["inode"], "same inode number");
    assert_ne!(same[0]["volume"], same[1]["volume"]);
    let inodes: i64 = sqlx::query_scalar("select count(*) from inode where ino = $1")
        .bind(same[0]["inode"].as_i64().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(inodes, 2, "one inode row per volume");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_unreadable_entry_is_recorded_while_its_siblings_load(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(source.join("d")).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(source.join("d").join(name), name).unwrap();
    }
    let image = host.root.join("damaged.img");
    ext4(&image, 8 * MIB, &source);
    // Clear the inode of d/b: its directory entry stays, the kernel cannot stat it.
    run(Command::new("debugfs")
        .args(["-w", "-R", "clri d/b"])
        .arg(&image));
    register(&host, &image, "damaged");
    let report = enumerate_ok(&host, &["damaged"]);
    assert_eq!(report["counts"]["errors"], 1);
    let paths: BTreeSet<String> = ls(&host, "damaged")
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(paths.contains("d/a") && paths.contains("d/c"));
    assert!(!paths.contains("d/b"));
    let (path, errno, message): (Vec<u8>, Option<i32>, String) =
        sqlx::query_as("select path, errno, message from entry_error")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(path, b"d/b");
    assert_eq!(errno, Some(nix::libc::EUCLEAN));
    assert!(message.contains("Structure needs cleaning"), "{message}");
}

/// A damaged or crafted filesystem's duplicates are problems of their entries, never a
/// failed load. An ext2 inode given a second name without its link count (`debugfs ln`, read
/// through the kernel) is loaded once under both names; a FAT directory with two entries of one
/// name (read by The Sleuth Kit) keeps the first under the name and lists the second under the
/// name, a NUL byte and `duplicate 2`. Each is an entry error with the exact name; every file is
/// copied and the accounting balances.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn duplicate_inodes_and_names_are_problems_of_their_entries_and_the_rest_loads(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a.txt"), b"alpha").unwrap();
    std::fs::write(source.join("c.txt"), b"gamma").unwrap();
    let linked = host.root.join("linked.img");
    sparse_file(&linked, 8 * MIB);
    run(Command::new("mkfs.ext2")
        .args(["-q", "-F", "-d"])
        .arg(&source)
        .arg(&linked));
    run(Command::new("debugfs")
        .args(["-w", "-R", "ln a.txt b.txt"])
        .arg(&linked));
    register(&host, &linked, "linked");
    let report = enumerate_ok(&host, &["linked"]);
    assert_eq!(report["counts"]["errors"], 2, "{report}");
    let rows = ls(&host, "linked");
    let ino = |name: &str| {
        rows.iter()
            .find(|r| r["path"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {rows:?}"))["inode"]
            .clone()
    };
    assert_eq!(ino("a.txt"), ino("b.txt"));
    assert_ne!(ino("a.txt"), ino("c.txt"));
    let noted: Vec<(Vec<u8>, String)> =
        sqlx::query_as("select path, message from entry_error order by path")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        noted.iter().map(|n| n.0.as_slice()).collect::<Vec<_>>(),
        [&b"a.txt"[..], b"b.txt"]
    );
    assert!(
        noted[0].1.contains("2 names") && noted[0].1.contains("link count is 1"),
        "{noted:?}"
    );
    let (inodes, errors): (Option<i64>, Option<i64>) =
        sqlx::query_as("select inodes_loaded, entry_errors from medium where name = 'linked'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let rows_loaded: i64 = sqlx::query_scalar("select count(*) from inode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((inodes, errors), (Some(rows_loaded), Some(2)));
    copied_and_balanced(&host, "linked", 2);
    let cat = host.run(&["cat", "linked", "b.txt"]);
    assert_eq!(cat.stdout, b"alpha");

    let twins = host.root.join("twins.img");
    sparse_file(&twins, 16 * MIB);
    run(Command::new("mkfs.vfat").args(["-F", "16"]).arg(&twins));
    let scratch = host.root.join("scratch");
    for (name, content) in [("q", "first"), ("j", "second"), ("o", "other")] {
        std::fs::write(&scratch, content).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&twins)
            .arg(&scratch)
            .arg(format!("::/{}", name.repeat(12))));
    }
    craft_fat_long_name(&twins, 'q', "dup name.txt");
    craft_fat_long_name(&twins, 'j', "dup name.txt");
    register(&host, &twins, "twins");
    let report = enumerate_ok(&host, &["twins"]);
    assert_eq!(report["counts"]["errors"], 1, "{report}");
    let paths: BTreeSet<Vec<u8>> = ls(&host, "twins").iter().map(path_bytes).collect();
    assert!(paths.contains(&b"dup name.txt"[..]), "{paths:?}");
    assert!(
        paths.contains(&b"dup name.txt\0duplicate 2"[..]),
        "{paths:?}"
    );
    let (path, message): (Vec<u8>, String) = sqlx::query_as(
        "select e.path, e.message from entry_error e join medium m on m.id = e.medium_id
          where m.name = 'twins'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(path, b"dup name.txt");
    assert!(message.contains("same name"), "{message}");
    copied_and_balanced(&host, "twins", 3);
    let contents: BTreeSet<Vec<u8>> = sqlx::query_scalar(
        "select i.blob_id from inode i join medium m on m.id = i.medium_id
          where m.name = 'twins' and i.blob_id is not null",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expected: BTreeSet<Vec<u8>> = ["first", "second", "other"]
        .iter()
        .map(|c| blake3::hash(c.as_bytes()).as_bytes().to_vec())
        .collect();
    assert_eq!(contents, expected, "both twins' contents are stored");
    // The second twin's listed name cannot be made on a filesystem: export-tree says so and
    // exports the rest.
    let export = host.root.join("twins-export");
    let exported = host.run(&["export-tree", "twins", export.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&exported.stdout);
    assert_eq!(exported.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("2 file(s) linked") && stdout.contains("1 refused"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(export.join("0/dup name.txt")).unwrap(),
        b"first"
    );
    assert_eq!(
        std::fs::read(export.join("0/oooooooooooo")).unwrap(),
        b"other"
    );
}

/// Names The Sleuth Kit reads that are no path component (FAT long names holding
/// `/`, one of them climbing: `../x`) are recorded safely: listed with NUL bytes where they would split
/// or climb (never as another entry's path), each with an entry error keeping the raw bytes,
/// and copied like any file.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn names_holding_a_slash_are_listed_safely_even_when_they_climb(pool: PgPool) {
    let host = Host::new(&pool).await;
    let image = host.root.join("slashes.img");
    sparse_file(&image, 16 * MIB);
    run(Command::new("mkfs.vfat").args(["-F", "16"]).arg(&image));
    run(Command::new("mmd").arg("-i").arg(&image).arg("::/docs"));
    let scratch = host.root.join("scratch");
    for (name, content) in [
        ("docs/qqqqqqqqqq", "slashed"),
        ("jjjjjjjjjj", "climbing"),
        ("docs/plain.txt", "plain"),
    ] {
        std::fs::write(&scratch, content).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&image)
            .arg(&scratch)
            .arg(format!("::/{name}")));
    }
    craft_fat_long_name(&image, 'q', "x/y/z");
    craft_fat_long_name(&image, 'j', "../x");
    register(&host, &image, "slashes");
    let report = enumerate_ok(&host, &["slashes"]);
    assert_eq!(report["counts"]["errors"], 2, "{report}");
    let paths: BTreeSet<Vec<u8>> = ls(&host, "slashes").iter().map(path_bytes).collect();
    let expected: BTreeSet<Vec<u8>> = [&b"docs"[..], b"docs/plain.txt", b"docs/x\0y\0z", b"..\0x"]
        .iter()
        .map(|p| p.to_vec())
        .collect();
    assert_eq!(paths, expected);
    let raw: BTreeSet<Vec<u8>> = sqlx::query_scalar("select path from entry_error")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        raw,
        [b"docs/x/y/z".to_vec(), b"../x".to_vec()]
            .into_iter()
            .collect()
    );
    copied_and_balanced(&host, "slashes", 3);
}

/// `ntt copy MEDIUM`, then its report: `files` copied, nothing pending, balanced.
fn copied_and_balanced(host: &Host, medium: &str, files: i64) {
    let copy = host.run(&["copy", medium]);
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    let report = host.run(&["report", medium, "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["pending"], 0, "{report}");
    assert_eq!(report["content"]["copied_files"], files, "{report}");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn ignore_patterns_mark_paths_and_can_be_undone(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(source.join("home/.cache")).unwrap();
    std::fs::write(source.join("home/.cache/blob"), b"cache").unwrap();
    std::fs::write(source.join("home/notes #1.txt"), b"notes").unwrap();
    std::fs::write(source.join("home/scratch.tmp"), b"tmp").unwrap();
    let image = host.root.join("ignore.img");
    ext4(&image, 8 * MIB, &source);
    register(&host, &image, "ignored");
    assert!(host.run(&["ignore", "add", r"\.tmp$"]).status.success());
    assert_eq!(host.run(&["ignore", "add", "("]).status.code(), Some(1));

    let report = enumerate_ok(&host, &["ignored", "--ignore-preset", "predecessor"]);
    // .cache/blob (preset) and scratch.tmp (site); the directory .cache itself has no `/` after.
    assert_eq!(report["counts"]["excluded"], 2, "{report}");
    let rows = ls(&host, "ignored");
    let by_path: BTreeMap<String, &Value> = rows
        .iter()
        .map(|r| (r["path"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(by_path["home/.cache/blob"]["state"], "excluded");
    assert_eq!(
        by_path["home/.cache/blob"]["excluded_reason"],
        r"ignore pattern \.cache/ (preset predecessor)"
    );
    assert_eq!(
        by_path["home/scratch.tmp"]["excluded_reason"],
        r"ignore pattern \.tmp$ (site default)"
    );
    assert_eq!(
        by_path["home/notes #1.txt"]["state"], "pending",
        "# is not a reason"
    );
    let state: String = sqlx::query_scalar(
        "select i.state::text from inode i join path p using (medium_id, volume_no, ino)
         where p.path = 'home/.cache/blob'::bytea",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "excluded");

    let included = host.run(&["include", "ignored", "home/.cache"]);
    assert!(included.status.success());
    assert!(String::from_utf8_lossy(&included.stdout).contains("1 path(s) included"));
    let rows = ls(&host, "ignored");
    let blob = rows
        .iter()
        .find(|r| r["path"] == "home/.cache/blob")
        .unwrap();
    assert_eq!(blob["state"], "pending");
    assert!(blob["excluded_reason"].is_null());
}

/// One definition of excluded and pending. A file with two names, both excluded, then
/// one included again: its content is wanted, so the copy takes it, and the copy, the report
/// and `ntt status` agree that nothing is pending. And the accounting can fail: the entries are
/// the load's own count, so a path row lost afterwards shows as an imbalance.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn excluded_and_pending_mean_one_thing_everywhere_and_a_lost_row_unbalances(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("src");
    std::fs::create_dir_all(source.join("home")).unwrap();
    std::fs::write(source.join("home/link-a.tmp"), b"linked").unwrap();
    std::fs::hard_link(
        source.join("home/link-a.tmp"),
        source.join("home/link-b.tmp"),
    )
    .unwrap();
    std::fs::write(source.join("home/notes.txt"), b"notes").unwrap();
    let image = host.root.join("links.img");
    ext4(&image, 8 * MIB, &source);
    register(&host, &image, "links");
    assert!(host.run(&["ignore", "add", r"\.tmp$"]).status.success());
    let report = enumerate_ok(&host, &["links"]);
    assert_eq!(report["counts"]["excluded"], 2, "{report}");
    let included = host.run(&["include", "links", "home/link-a.tmp"]);
    assert!(included.status.success());
    let copy = host.run(&["copy", "links", "--json"]);
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    let report = host.run(&["report", "links", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["pending"], 0, "{report}");
    assert_eq!(
        report["accounting"]["excluded"], 1,
        "link-b stays excluded: {report}"
    );
    assert_eq!(report["content"]["copied_files"], 2, "{report}");
    let rows = ls(&host, "links");
    let state = |name: &str| {
        rows.iter()
            .find(|r| r["path"] == name)
            .unwrap_or_else(|| panic!("{name}"))["state"]
            .clone()
    };
    assert_eq!(state("home/link-a.tmp"), "copied");
    assert_eq!(state("home/link-b.tmp"), "excluded", "the name is excluded");
    let status = host.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let links = status
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "links")
        .unwrap();
    assert_eq!(links["pending_files"], 0, "{links}");
    assert_eq!(links["stage"], "copied", "{links}");
    let copied_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select copied_at from medium where name = 'links'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(copied_at.is_some(), "the medium is copied");

    // A path row lost behind the catalog's back.
    sqlx::query("delete from path where path = 'home/notes.txt'::bytea")
        .execute(&pool)
        .await
        .unwrap();
    let report = host.run(&["report", "links", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["balances"], false, "a lost row shows: {report}");
}

/// The medium's path count and a digest of its listing.
fn snapshot(host: &Host, medium: &str) -> (usize, Vec<Vec<u8>>) {
    let mut paths: Vec<Vec<u8>> = ls(host, medium).iter().map(path_bytes).collect();
    paths.sort();
    (paths.len(), paths)
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_reload_is_refused_replace_swaps_and_a_killed_replace_keeps_the_old_load(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("many");
    for d in 0..40 {
        let dir = source.join(format!("dir{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("file{f:03}")), b"").unwrap();
        }
    }
    let image = host.root.join("many.img");
    sparse_file(&image, 64 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-N", "30000", "-d"])
        .arg(&source)
        .arg(&image));
    register(&host, &image, "many");
    enumerate_ok(&host, &["many"]);
    let before = snapshot(&host, "many");
    assert_eq!(before.0, 40 * 501 + 1);

    let refused = enumerate(&host, &["many"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is enumerated already"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Kill a replace while it loads: the published load stays as it was.
    let medium_id: i64 = sqlx::query_scalar("select id from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut child = host.spawn(&["enumerate", "many", "--replace", "--threads", "1"]);
    let started = Instant::now();
    loop {
        let table = format!("path_m{medium_id}_next");
        let exists: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
            .bind(&table)
            .fetch_one(&pool)
            .await
            .unwrap();
        let building: Option<i64> = if exists.is_some() {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(&pool)
                .await
                .ok()
        } else {
            None
        };
        if building.is_some_and(|n| n > 0) || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_mins(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed mid-load");
    assert_eq!(snapshot(&host, "many"), before, "the old load is intact");

    // A replace after that cleans up and swaps in a new load (with an exclusion this time).
    let report = enumerate_ok(&host, &["many", "--replace", "--ignore", "^dir00/"]);
    assert_eq!(report["replaced"], true);
    assert_eq!(report["counts"]["excluded"], 500);
    let after = snapshot(&host, "many");
    assert_eq!(after.0, before.0);
    let leftovers: i64 = sqlx::query_scalar(
        "select count(*) from pg_class where relname like '%\\_next' and relkind = 'r'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0, "no half-built tables are left");
    let partitions: i64 = sqlx::query_scalar(
        "select count(*) from pg_inherits where inhrelid::regclass::text like '%\\_m' || $1",
    )
    .bind(medium_id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        partitions, 4,
        "inode, path, copy_error and entry_error partitions"
    );
    // Attaching reused the indexes the load built (none built again beside them), including
    // the two made without deduplication.
    let (indexes, attached, parents, undeduplicated): (i64, i64, i64, i64) = sqlx::query_as(
        "select count(*), count(h.inhparent),
                (select count(*) from pg_index where indrelid in ('inode'::regclass, 'path'::regclass)),
                count(*) filter (where c.reloptions @> '{deduplicate_items=off}')
         from pg_index x
         join pg_class c on c.oid = x.indexrelid
         left join pg_inherits h on h.inhrelid = x.indexrelid
         where x.indrelid::regclass::text in ('inode_m' || $1, 'path_m' || $1)",
    )
    .bind(medium_id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes, parents,
        "the partitions have the parent's indexes, no more"
    );
    assert_eq!(
        attached, indexes,
        "every partition index is attached to the parent's"
    );
    assert_eq!(undeduplicated, 2, "the claim and path-to-inode indexes");
}

/// (path, kind, size) of every entry `fls -r -p -m` lists at `offset` (files' sizes only).
fn fls_entries(image: &Path) -> BTreeMap<String, (String, Option<u64>)> {
    let output = Command::new("fls")
        .args(["-r", "-u", "-m", "/"])
        .arg(image)
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut entries = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.rsplitn(10, '|').collect();
        let name = fields[9].split_once('|').unwrap().1;
        let (inode, mode, size) = (fields[8], fields[7], fields[4]);
        if inode.contains("-48-") || mode.starts_with('v') || mode.starts_with('V') {
            continue;
        }
        let kind = match &mode[2..3] {
            "d" => "dir",
            "l" => "symlink",
            _ => "file",
        };
        let name = if kind == "symlink" {
            name.rsplit_once(" -> ").map_or(name, |(n, _)| n)
        } else {
            name
        };
        let name = name.trim_start_matches('/').to_owned();
        if name.split('/').any(|part| part.starts_with('$')) || name.contains(':') {
            continue;
        }
        let size = (kind == "file").then(|| size.parse().unwrap());
        entries.insert(name, (kind.to_owned(), size));
    }
    entries
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn third_party_listings_equal_the_sleuth_kits(pool: PgPool) {
    let host = Host::new(&pool).await;
    for (name, file) in [
        ("hfsplus", "hfsplus.raw"),
        ("iso9660", "iso9660.raw"),
        ("imynd", "ímynd.dd"),
        ("windows", "windows_volume.qcow2"),
    ] {
        let copy = host.root.join(file);
        std::fs::copy(fixture(file), &copy).unwrap();
        register(&host, &copy, name);
        enumerate_ok(&host, &[name]);
        let image: String = sqlx::query_scalar("select image_path from medium where name = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        let mut expected = fls_entries(Path::new(&image));
        // The live entries (deleted ones are a volume of their own, compared below).
        let mut seen: BTreeMap<String, (String, Option<u64>)> = ls(&host, name)
            .iter()
            .filter(|r| r["deleted"] == false)
            .map(|r| {
                let kind = r["kind"].as_str().unwrap().to_owned();
                let size = (kind == "file").then(|| r["size"].as_u64().unwrap());
                (r["path"].as_str().unwrap().to_owned(), (kind, size))
            })
            .collect();
        if name == "iso9660" {
            // fuseiso shows plain ISO 9660 names in lower case.
            expected = expected
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect();
            seen = seen
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect();
        }
        assert!(!expected.is_empty(), "{name}");
        assert_eq!(seen, expected, "{name}: names, kinds and file sizes");
        // The deleted entries are The Sleuth Kit's `fls -r -d` names.
        let fls = Command::new("fls")
            .args(["-r", "-d", "-p"])
            .arg(&image)
            .output()
            .unwrap();
        let mut deleted_fls: Vec<String> = String::from_utf8_lossy(&fls.stdout)
            .lines()
            .filter(|l| !l.contains("($FILE_NAME)") && !l.contains("$OrphanFiles"))
            .filter_map(|l| l.split_once(":\t").map(|(_, p)| p.to_owned()))
            .filter(|p| !p.contains(':'))
            .collect();
        deleted_fls.sort();
        let mut deleted_ours: Vec<String> = ls(&host, name)
            .iter()
            .filter(|r| r["deleted"] == true)
            .map(|r| r["path"].as_str().unwrap().to_owned())
            .filter(|p| !p.starts_with("$OrphanFiles") && !p.contains(':'))
            .collect();
        deleted_ours.sort();
        if name == "iso9660" {
            assert!(deleted_ours.is_empty(), "ISO 9660 deletes nothing");
        } else {
            assert_eq!(deleted_ours, deleted_fls, "{name}: deleted entries");
        }
        eprintln!(
            "{name}: {} deleted entries equal fls -d",
            deleted_ours.len()
        );
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !info.contains(host.root.to_str().unwrap()),
        "enumerate releases the mounts it made"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_load_bigger_than_its_sort_memory_streams_the_rest_and_loads_the_same(pool: PgPool) {
    let host = Host::new(&pool).await;
    let source = host.root.join("many");
    // 6 000 files with long names: about 1.5 MB of rows, more than 1 MiB of sort memory.
    for dir in 0..20 {
        let dir = source.join(format!("a-directory-with-a-long-name-{dir:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in 0..300 {
            let name = format!("a-file-with-a-rather-long-name-that-fills-the-rows-{file:04}.txt");
            std::fs::write(dir.join(name), b"").unwrap();
        }
    }
    let image = host.root.join("many.img");
    ext4(&image, 64 * MIB, &source);
    register(&host, &image, "many");
    let walked = 6000 + 20 + 1; // files, directories, lost+found

    let mut command = host.command(&["enumerate", "many", "--sort-memory", "1", "--json"]);
    let output = command.env("RUST_LOG", "ntt_agent=debug").output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("the load outgrew its memory for sorting"),
        "the walk passed the sort memory: {log}"
    );
    let streamed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(streamed["counts"]["entries"], walked);
    assert_eq!(streamed["counts"]["inodes"], walked);
    assert_eq!(streamed["counts"]["errors"], 0);
    let by_volume_path = |r: &Value| (r["volume"].as_i64(), path_bytes(r));
    let mut first = ls(&host, "many");
    first.sort_by_key(by_volume_path);
    assert_eq!(first.len(), walked);

    // Held and sorted (the default memory): the same load.
    let held = enumerate_ok(&host, &["many", "--replace"]);
    assert_eq!(held["counts"], {
        let mut counts = streamed["counts"].clone();
        for timing in ["copy_seconds", "sort_seconds", "publish_seconds"] {
            counts[timing] = held["counts"][timing].clone();
        }
        counts
    });
    let mut again = ls(&host, "many");
    again.sort_by_key(by_volume_path);
    assert_eq!(again, first, "the same rows either way");
}
