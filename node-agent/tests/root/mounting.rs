//! The privileged tier for volumes: `ntt mount` / `ntt unmount` on images built at test time
//! with Debian's tools and on the third-party fixtures, with real loop devices, kernel mounts,
//! FUSE drivers and The Sleuth Kit. Runs as root; never skips. Every test ends by checking that
//! nothing it attached is left.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::host::{
    Host, MIB, ext4, fixture, fls_paths, partition, place, register, run, sha256, sparse_file,
};
use ntt_agent::volume::host::{loops, loops_of, mounts};
use ntt_agent::volume::probe::FsType;
use ntt_agent::volume::reader::{EntryKind, VolumeReader, WalkItem};
use ntt_agent::volume::tsk::TskVolume;
use serde_json::Value;
use sqlx::PgPool;

/// A FAT filesystem image (`bits`: 16 or 32) with files copied in by mtools.
fn fat(path: &Path, size: u64, bits: &str, files: &[(&str, &[u8])]) {
    sparse_file(path, size);
    run(Command::new("mkfs.vfat").args(["-F", bits]).arg(path));
    let scratch = path.with_extension("src");
    for (name, bytes) in files {
        std::fs::write(&scratch, bytes).unwrap();
        if let Some((dir, _)) = name.rsplit_once('/') {
            let _ = Command::new("mmd")
                .arg("-i")
                .arg(path)
                .arg(format!("::/{dir}"))
                .output();
        }
        run(Command::new("mcopy")
            .arg("-i")
            .arg(path)
            .arg(&scratch)
            .arg(format!("::/{name}")));
    }
    std::fs::remove_file(&scratch).unwrap();
}

/// An NTFS filesystem image with one file.
fn ntfs(path: &Path, size: u64, name: &str, bytes: &[u8]) {
    sparse_file(path, size);
    run(Command::new("mkntfs").args(["-q", "-F", "-Q"]).arg(path));
    let scratch = path.with_extension("src");
    std::fs::write(&scratch, bytes).unwrap();
    run(Command::new("ntfscp").arg(path).arg(&scratch).arg(name));
    std::fs::remove_file(&scratch).unwrap();
}

/// Names a person would not type: newline, carriage return, 0x1C, invalid UTF-8.
fn awkward_names() -> Vec<Vec<u8>> {
    vec![
        b"line\nbreak.txt".to_vec(),
        b"carriage\rreturn".to_vec(),
        b"field\x1cseparator".to_vec(),
        b"latin1-\xe9t\xe9.txt".to_vec(),
        b"#hash and spaces.doc".to_vec(),
    ]
}

/// A GPT disk with ext4 (awkward names), FAT32 and NTFS partitions.
fn gpt_disk(dir: &Path) -> PathBuf {
    let content = dir.join("ext4-content");
    std::fs::create_dir_all(content.join("docs")).unwrap();
    std::fs::write(content.join("docs/report.txt"), b"the evidence\n").unwrap();
    for name in awkward_names() {
        std::fs::write(
            content.join(std::ffi::OsStr::from_bytes(&name)),
            name.as_slice(),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("docs/report.txt", content.join("link")).unwrap();
    let disk = dir.join("gpt.img");
    sparse_file(&disk, 120 * MIB);
    partition(
        &disk,
        b"label: gpt\nstart=2048, size=61440, type=linux\nstart=63488, size=81920, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nstart=145408, size=61440, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
    );
    let part = dir.join("part.img");
    ext4(&part, 30 * MIB, &content);
    place(&disk, &part, 2048 * 512);
    fat(
        &part,
        40 * MIB,
        "32",
        &[
            ("Report Final.TXT", b"fat content\n"),
            ("sub/inner.txt", b"inner\n"),
        ],
    );
    place(&disk, &part, 63488 * 512);
    ntfs(&part, 30 * MIB, "hello.txt", b"ntfs content\n");
    place(&disk, &part, 145_408 * 512);
    std::fs::remove_file(&part).unwrap();
    disk
}

/// `ntt mount --json`, which must succeed.
fn mount(host: &Host, medium: &str) -> Vec<Value> {
    let output = host.run(&["mount", medium, "--json"]);
    assert!(
        output.status.success(),
        "ntt mount failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value.as_array().unwrap().clone()
}

fn unmount(host: &Host, medium: &str) {
    let output = host.run(&["unmount", medium]);
    assert!(
        output.status.success(),
        "ntt unmount failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// (volume number, fs type, access) of each volume `ntt mount` reported.
fn methods(report: &[Value]) -> Vec<(i64, String, String)> {
    report
        .iter()
        .map(|v| {
            (
                v["volume_no"].as_i64().unwrap(),
                v["fs_type"].as_str().unwrap_or_default().to_owned(),
                v["access"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

/// Mount points under `dir` with the number of mounts stacked on each.
fn mounts_under(dir: &Path) -> BTreeMap<PathBuf, usize> {
    let mut stacked = BTreeMap::new();
    for entry in mounts().unwrap() {
        if entry.target.starts_with(dir) {
            *stacked.entry(entry.target).or_default() += 1;
        }
    }
    stacked
}

/// Waits (auto-clearing loop devices go a moment after their mount) and checks that nothing of
/// the test is attached any more.
fn assert_nothing_left(host: &Host, image: &Path) {
    let started = Instant::now();
    loop {
        let left = loops_of(&loops().unwrap(), image);
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "loop devices left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        mounts_under(&host.root).is_empty(),
        "mounts left: {:?}",
        mounts_under(&host.root)
    );
}

/// Every path a reader walks, lossy, sorted.
fn walk(reader: &VolumeReader) -> Vec<String> {
    let mut paths = Vec::new();
    reader
        .walk(&mut |item| match item {
            WalkItem::Entry(entry) | WalkItem::Excluded { entry, .. } => {
                paths.push(String::from_utf8_lossy(&entry.path).into_owned());
            }
            WalkItem::Error { path, error } => {
                panic!("walk error at {}: {error}", String::from_utf8_lossy(&path))
            }
        })
        .unwrap();
    paths.sort();
    paths
}

fn read_all(reader: &VolumeReader, path: &[u8]) -> Vec<u8> {
    let mut found = None;
    reader
        .walk(&mut |item| {
            if let WalkItem::Entry(entry) = item
                && entry.path == path
            {
                found = Some(entry);
            }
        })
        .unwrap();
    let entry = found.unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(path)));
    let mut bytes = Vec::new();
    reader
        .open(&entry.path, entry.ino)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn mount_point(host: &Host, hash: &str, volume_no: i64) -> PathBuf {
    host.root.join("mnt").join(hash).join(volume_no.to_string())
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn gpt_volumes_are_each_read_by_the_first_method_that_works_here(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = gpt_disk(&host.root);
    let before = sha256(&disk);
    let hash = register(&host, &disk, "gpt");

    let report = mount(&host, "gpt");
    // What is mounted is reachable only through the mount root, which is root's.
    let root_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(host.root.join("mnt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(root_mode, 0o700);
    // This kernel mounts ext4, has no vfat (The Sleuth Kit reads FAT) and no NTFS (ntfs-3g).
    assert_eq!(
        methods(&report),
        [
            (0, "ext4".into(), "kernel".into()),
            (1, "fat32".into(), "userspace".into()),
            (2, "ntfs".into(), "fuse".into()),
        ]
    );
    let rows: Vec<(i32, String, Option<String>)> = sqlx::query_as(
        "select volume_no, state::text, access::text from volume where role <> 'deleted'
         order by volume_no",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (0, "ready".into(), Some("kernel".into())),
            (1, "ready".into(), Some("userspace".into())),
            (2, "ready".into(), Some("fuse".into())),
        ]
    );

    // The kernel mount: exact name bytes, symlink targets, content.
    let ext4 = VolumeReader::Mounted {
        root: mount_point(&host, &hash, 0),
    };
    let mut names = Vec::new();
    let mut link_target = None;
    ext4.walk(&mut |item| {
        let WalkItem::Entry(entry) = item else {
            panic!("walk error")
        };
        if entry.kind == EntryKind::Symlink {
            link_target.clone_from(&entry.target);
        }
        names.push(entry.path);
    })
    .unwrap();
    for name in awkward_names() {
        assert!(
            names.contains(&name),
            "{} missing",
            String::from_utf8_lossy(&name)
        );
    }
    assert_eq!(link_target.as_deref(), Some(&b"docs/report.txt"[..]));
    assert_eq!(read_all(&ext4, b"docs/report.txt"), b"the evidence\n");
    assert_eq!(
        read_all(&ext4, b"latin1-\xe9t\xe9.txt"),
        b"latin1-\xe9t\xe9.txt"
    );
    assert!(
        std::fs::write(mount_point(&host, &hash, 0).join("new"), b"x").is_err(),
        "mounted read-only"
    );

    // The Sleuth Kit reads the FAT volume straight from the image.
    let fat =
        VolumeReader::SleuthKit(TskVolume::open_volume(&disk, 63488 * 512, FsType::Fat32).unwrap());
    assert_eq!(
        walk(&fat),
        ["Report Final.TXT", "sub", "sub/inner.txt"],
        "long names, no virtual files"
    );
    assert_eq!(walk(&fat), fls_paths(&disk, 63488 * 512));
    assert_eq!(read_all(&fat, b"sub/inner.txt"), b"inner\n");

    // ntfs-3g serves the NTFS volume.
    let ntfs = VolumeReader::Mounted {
        root: mount_point(&host, &hash, 2),
    };
    assert_eq!(read_all(&ntfs, b"hello.txt"), b"ntfs content\n");
    assert_eq!(walk(&ntfs), fls_paths(&disk, 145_408 * 512));

    let listed = host.run(&["volumes", "gpt"]);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(table.contains("userspace"), "{table}");

    // Mounting again reuses what is there: one mount per volume.
    let again = mount(&host, &hash[..8]);
    assert_eq!(methods(&again), methods(&report));
    assert!(
        again
            .iter()
            .filter(|v| v["access"] != "userspace")
            .all(|v| v["reused"] == true)
    );
    assert_eq!(
        mounts_under(&host.root)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [1, 1]
    );

    unmount(&host, "gpt");
    assert_nothing_left(&host, &disk);
    assert!(
        !host.root.join("mnt").join(&hash).exists(),
        "mount points removed"
    );
    // Unmounting what is not mounted is fine.
    unmount(&host, "gpt");
    assert_eq!(sha256(&disk), before, "the evidence is never written");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn eight_concurrent_mounts_end_with_one_mount_and_one_loop_per_volume(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = gpt_disk(&host.root);
    register(&host, &disk, "busy");

    let children: Vec<_> = (0..8)
        .map(|_| host.spawn(&["mount", "busy", "--json"]))
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report.as_array().unwrap().len(), 3);
    }
    let stacked = mounts_under(&host.root);
    assert_eq!(
        stacked.values().copied().collect::<Vec<_>>(),
        [1, 1],
        "one mount on each of the ext4 and NTFS mount points: {stacked:?}"
    );
    let devices = loops_of(&loops().unwrap(), &disk);
    assert_eq!(
        devices.len(),
        2,
        "one loop device per mounted volume: {devices:?}"
    );
    assert!(devices.iter().all(|d| d.autoclear));

    unmount(&host, "busy");
    assert_nothing_left(&host, &disk);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_run_killed_mid_mount_is_cleaned_up_by_the_next_one(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = gpt_disk(&host.root);
    let hash = register(&host, &disk, "killed");
    // Discover the volumes first, so the kill lands while attaching.
    assert!(host.run(&["volumes", "killed"]).status.success());

    let mut child = host.spawn(&["mount", "killed"]);
    let started = Instant::now();
    while loops_of(&loops().unwrap(), &disk).is_empty() && child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "after the kill: loops {:?}, mounts {:?}",
        loops_of(&loops().unwrap(), &disk),
        mounts_under(&host.root)
    );

    // Leftovers a crash could also leave: a loop device of volume 0 that never got mounted, and
    // a second mount stacked on volume 2's mount point.
    let stray = Command::new("losetup")
        .args([
            "--find",
            "--show",
            "--read-only",
            "--offset",
            &(2048 * 512).to_string(),
            "--sizelimit",
            &(61440 * 512).to_string(),
        ])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(stray.status.success());
    let stray = String::from_utf8(stray.stdout).unwrap().trim().to_owned();

    let report = mount(&host, "killed");
    assert_eq!(report.len(), 3);
    let stacked = mounts_under(&host.root);
    assert_eq!(stacked.values().copied().collect::<Vec<_>>(), [1, 1]);
    let devices = loops_of(&loops().unwrap(), &disk);
    assert_eq!(devices.len(), 2, "{devices:?}");
    // The stray was not auto-clearing: it is gone (its device name may be reused since).
    assert!(
        devices.iter().all(|d| d.autoclear) && devices[0].offset != devices[1].offset,
        "{devices:?} (stray {stray})"
    );

    // An overmount: the NTFS volume mounted a second time on its own mount point.
    let target = mount_point(&host, &hash, 2);
    let extra = Command::new("losetup")
        .args([
            "--find",
            "--show",
            "--read-only",
            "--offset",
            &(145_408 * 512).to_string(),
            "--sizelimit",
            &(61440 * 512).to_string(),
        ])
        .arg(&disk)
        .output()
        .unwrap();
    let extra = String::from_utf8(extra.stdout).unwrap().trim().to_owned();
    run(Command::new("ntfs-3g")
        .args(["-o", "ro"])
        .arg(&extra)
        .arg(&target));
    run(Command::new("losetup").arg("-d").arg(&extra));
    assert_eq!(mounts_under(&host.root)[&target], 2);

    let repaired = mount(&host, "killed");
    assert_eq!(repaired.len(), 3);
    assert_eq!(
        mounts_under(&host.root)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [1, 1],
        "the overmount was removed"
    );
    let ntfs = VolumeReader::Mounted { root: target };
    assert_eq!(read_all(&ntfs, b"hello.txt"), b"ntfs content\n");

    unmount(&host, "killed");
    assert_nothing_left(&host, &disk);
}

/// An ext4 image whose group descriptors are overwritten: the superblock still says ext4.
fn corrupt_ext4(dir: &Path) -> PathBuf {
    let content = dir.join("corrupt-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("lost.txt"), b"unreachable\n").unwrap();
    let path = dir.join("corrupt.fs");
    sparse_file(&path, 16 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&content)
        .arg(&path));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| u8::try_from((i * 7 + 13) % 256).unwrap())
        .collect();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4096..8192].copy_from_slice(&garbage);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_corrupt_volume_fails_alone_and_a_medium_with_no_readable_volume_fails(pool: PgPool) {
    let host = Host::new(&pool).await;
    let content = host.root.join("healthy");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("fine.txt"), b"fine\n").unwrap();
    let disk = host.root.join("mixed.img");
    sparse_file(&disk, 40 * MIB);
    partition(
        &disk,
        b"label: dos\nstart=2048, size=32768, type=83\nstart=34816, size=32768, type=83\n",
    );
    let healthy = host.root.join("healthy.fs");
    ext4(&healthy, 16 * MIB, &content);
    place(&disk, &healthy, 2048 * 512);
    let corrupt = corrupt_ext4(&host.root);
    place(&disk, &corrupt, 34816 * 512);
    register(&host, &disk, "mixed");

    let output = host.run(&["mount", "mixed", "--json"]);
    assert!(
        output.status.success(),
        "some volumes can be read: a success"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("continuing with the volumes that can be read"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["access"], "kernel");
    let error = report[1]["error"].as_str().unwrap();
    for attempt in ["kernel ext4:", "fuse ext4:", "userspace ext4:"] {
        assert!(error.contains(attempt), "{attempt} in {error}");
    }
    let row: (String, Option<String>, Option<String>) =
        sqlx::query_as("select state::text, access::text, error from volume where volume_no = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row.0, "failed");
    assert_eq!(row.1, None);
    assert!(row.2.unwrap().contains("kernel ext4:"));
    unmount(&host, "mixed");
    assert_nothing_left(&host, &disk);

    // Only the corrupt filesystem: a failure with the reasons, never an empty success.
    register(&host, &corrupt, "hopeless");
    let output = host.run(&["mount", "hopeless"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no volume of medium hopeless could be read: volume 0: kernel ext4:"),
        "{stderr}"
    );
    assert_nothing_left(&host, &corrupt);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_xfs_with_a_dirty_log_mounts_without_recovery(pool: PgPool) {
    let host = Host::new(&pool).await;
    let image = host.root.join("xfs.img");
    sparse_file(&image, 320 * MIB);
    run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&image));
    // Write a file and unmount cleanly, then write again and shut the filesystem down so its
    // log needs recovery.
    let work = host.root.join("xfs-work");
    std::fs::create_dir_all(&work).unwrap();
    let device = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .unwrap();
    let device = String::from_utf8(device.stdout).unwrap().trim().to_owned();
    run(Command::new("mount").arg(&device).arg(&work));
    std::fs::write(work.join("before.txt"), b"committed\n").unwrap();
    run(Command::new("umount").arg(&work));
    run(Command::new("mount").arg(&device).arg(&work));
    std::fs::write(work.join("after.txt"), b"in the log only\n").unwrap();
    run(&mut Command::new("sync"));
    run(Command::new("xfs_io")
        .args(["-x", "-c", "shutdown -f"])
        .arg(&work));
    run(Command::new("umount").arg(&work));
    run(Command::new("losetup").arg("-d").arg(&device));

    // Proof the log is dirty: a plain read-only mount refuses it.
    let device = Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&image)
        .output()
        .unwrap();
    let device = String::from_utf8(device.stdout).unwrap().trim().to_owned();
    let plain = Command::new("mount")
        .args(["-t", "xfs", "-o", "ro"])
        .arg(&device)
        .arg(&work)
        .output()
        .unwrap();
    if plain.status.success() {
        run(Command::new("umount").arg(&work));
    }
    run(Command::new("losetup").arg("-d").arg(&device));
    assert!(!plain.status.success(), "the log should need recovery");

    let before = sha256(&image);
    let hash = register(&host, &image, "xfs");
    let report = mount(&host, "xfs");
    assert_eq!(methods(&report), [(0, "xfs".into(), "kernel".into())]);
    assert_eq!(
        std::fs::read(mount_point(&host, &hash, 0).join("before.txt")).unwrap(),
        b"committed\n"
    );
    unmount(&host, "xfs");
    assert_nothing_left(&host, &image);
    assert_eq!(
        sha256(&image),
        before,
        "the log was not replayed into the image"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_failed_medium_is_refused_unless_forced(pool: PgPool) {
    let host = Host::new(&pool).await;
    let content = host.root.join("c");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("a.txt"), b"a\n").unwrap();
    let image = host.root.join("weak.img");
    ext4(&image, 8 * MIB, &content);
    register(&host, &image, "weak");
    sqlx::query("update medium set health = 'failed'")
        .execute(&pool)
        .await
        .unwrap();

    let refused = host.run(&["mount", "weak"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("has health `failed`") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(
        loops_of(&loops().unwrap(), &image).is_empty(),
        "nothing attached"
    );

    let forced = host.run(&["mount", "weak", "--force"]);
    assert!(forced.status.success());
    unmount(&host, "weak");
    assert_nothing_left(&host, &image);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn mbr_with_logical_volumes_optical_discs_zip_and_exfat_are_all_readable(pool: PgPool) {
    let host = Host::new(&pool).await;
    let dir = &host.root;

    // MBR: a primary ext2 and an extended partition holding an ext4 and a FAT16.
    let content = dir.join("mbr-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("primary.txt"), b"primary\n").unwrap();
    let mbr = dir.join("mbr.img");
    sparse_file(&mbr, 64 * MIB);
    partition(
        &mbr,
        b"label: dos\nstart=2048, size=20480, type=83\nstart=22528, size=100000, type=5\nstart=24576, size=40960, type=83\nstart=67584, size=40960, type=6\n",
    );
    let part = dir.join("part.fs");
    sparse_file(&part, 10 * MIB);
    run(Command::new("mkfs.ext2")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&part));
    place(&mbr, &part, 2048 * 512);
    ext4(&part, 20 * MIB, &content);
    place(&mbr, &part, 24576 * 512);
    fat(&part, 20 * MIB, "16", &[("LOGICAL.TXT", b"logical\n")]);
    place(&mbr, &part, 67584 * 512);
    register(&host, &mbr, "mbr");
    let report = mount(&host, "mbr");
    assert_eq!(
        methods(&report),
        [
            (0, "ext2".into(), "kernel".into()),
            (2, "ext4".into(), "kernel".into()),
            (3, "fat16".into(), "userspace".into()),
        ],
        "the extended container (volume 1) is recorded, not mounted"
    );
    let extended: (String, String) =
        sqlx::query_as("select role::text, state::text from volume where volume_no = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(extended, ("extended_container".into(), "skipped".into()));
    unmount(&host, "mbr");
    assert_nothing_left(&host, &mbr);

    // ISO 9660 with Joliet, and an ISO/UDF bridge disc (probed as UDF, read as ISO 9660).
    let source = dir.join("disc");
    std::fs::create_dir_all(source.join("Sub Dir")).unwrap();
    std::fs::write(source.join("Mixed_Case_Name.txt"), b"optical\n").unwrap();
    std::fs::write(source.join("Sub Dir/inner.txt"), b"inner\n").unwrap();
    for (name, flags) in [
        ("joliet", &["-J", "-R"][..]),
        ("bridge", &["-udf", "-J"][..]),
    ] {
        let iso = dir.join(format!("{name}.iso"));
        run(Command::new("genisoimage")
            .arg("-quiet")
            .args(flags)
            .arg("-o")
            .arg(&iso)
            .arg(&source));
        let hash = register(&host, &iso, name);
        let report = mount(&host, name);
        assert_eq!(
            methods(&report),
            [(0, "iso9660".into(), "fuse".into())],
            "{name}"
        );
        let reader = VolumeReader::Mounted {
            root: mount_point(&host, &hash, 0),
        };
        assert_eq!(read_all(&reader, b"Mixed_Case_Name.txt"), b"optical\n");
        assert_eq!(read_all(&reader, b"Sub Dir/inner.txt"), b"inner\n");
        unmount(&host, name);
        assert_nothing_left(&host, &iso);
    }
    let bridge_type: String =
        sqlx::query_scalar("select v.fs_type from volume v join medium m on m.id = v.medium_id where m.name = 'bridge'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        bridge_type, "udf",
        "probed as UDF, read through the ISO 9660 side"
    );

    // A Zip disk: FAT at byte 16384, no partition table.
    let zip = dir.join("zip.img");
    sparse_file(&zip, 96 * MIB);
    let fat_part = dir.join("zip.fs");
    fat(
        &fat_part,
        96 * MIB - 16384,
        "16",
        &[("ZIPFILE.TXT", b"zip\n")],
    );
    place(&zip, &fat_part, 16384);
    register(&host, &zip, "zip");
    let report = mount(&host, "zip");
    assert_eq!(methods(&report), [(0, "fat16".into(), "userspace".into())]);
    let reader =
        VolumeReader::SleuthKit(TskVolume::open_volume(&zip, 16384, FsType::Fat16).unwrap());
    assert_eq!(read_all(&reader, b"ZIPFILE.TXT"), b"zip\n");
    unmount(&host, "zip");

    // exFAT through exfat-fuse (a driver that daemonizes).
    let exfat = dir.join("exfat.img");
    sparse_file(&exfat, 16 * MIB);
    run(Command::new("mkfs.exfat").arg(&exfat));
    let work = dir.join("exfat-work");
    std::fs::create_dir_all(&work).unwrap();
    let device = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&exfat)
        .output()
        .unwrap();
    let device = String::from_utf8(device.stdout).unwrap().trim().to_owned();
    run(Command::new("mount.exfat-fuse").arg(&device).arg(&work));
    std::fs::write(work.join("exfat file.txt"), b"exfat\n").unwrap();
    run(Command::new("umount").arg(&work));
    let started = Instant::now();
    while Command::new("losetup")
        .arg("-d")
        .arg(&device)
        .status()
        .is_ok_and(|s| !s.success())
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    let hash = register(&host, &exfat, "exfat");
    let report = mount(&host, "exfat");
    assert_eq!(methods(&report), [(0, "exfat".into(), "fuse".into())]);
    let reader = VolumeReader::Mounted {
        root: mount_point(&host, &hash, 0),
    };
    assert_eq!(read_all(&reader, b"exfat file.txt"), b"exfat\n");
    unmount(&host, "exfat");
    assert_nothing_left(&host, &exfat);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn third_party_images_list_like_the_sleuth_kit(pool: PgPool) {
    let host = Host::new(&pool).await;
    // Copies: the fixtures are evidence too.
    let mut media = Vec::new();
    for (name, file) in [
        ("hfsplus", "hfsplus.raw"),
        ("iso9660", "iso9660.raw"),
        ("imynd", "ímynd.dd"),
        ("windows", "windows_volume.qcow2"),
    ] {
        let copy = host.root.join(file);
        std::fs::copy(fixture(file), &copy).unwrap();
        register(&host, &copy, name);
        media.push((name, copy));
    }
    for (name, _) in &media {
        let report = mount(&host, name);
        let expected = match *name {
            "hfsplus" => "userspace",
            "iso9660" | "windows" => "fuse",
            _ => "kernel",
        };
        assert_eq!(report[0]["access"], expected, "{name}");
    }
    for (name, _) in &media {
        let (image, hash): (String, String) =
            sqlx::query_as("select image_path, hash from medium where name = $1")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap();
        let image = PathBuf::from(image);
        let reader = match *name {
            "hfsplus" => {
                VolumeReader::SleuthKit(TskVolume::open_volume(&image, 0, FsType::Hfsplus).unwrap())
            }
            _ => VolumeReader::Mounted {
                root: mount_point(&host, &hash, 0),
            },
        };
        let mut seen = walk(&reader);
        let mut expected = fls_paths(&image, 0);
        if *name == "iso9660" {
            // fuseiso shows plain ISO 9660 names in lower case.
            seen = seen.iter().map(|p| p.to_lowercase()).collect();
            expected = expected.iter().map(|p| p.to_lowercase()).collect();
            seen.sort();
            expected.sort();
        }
        if *name == "imynd" {
            expected.retain(|p| p != "lost+found" && !p.starts_with("lost+found/"));
            seen.retain(|p| p != "lost+found" && !p.starts_with("lost+found/"));
        }
        assert!(!expected.is_empty(), "{name}");
        assert_eq!(seen, expected, "{name}");
    }

    // HFS+ content through The Sleuth Kit equals icat's.
    let (image, _): (String, String) =
        sqlx::query_as("select image_path, hash from medium where name = 'hfsplus'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let reader = VolumeReader::SleuthKit(
        TskVolume::open_volume(Path::new(&image), 0, FsType::Hfsplus).unwrap(),
    );
    let content = read_all(&reader, b"a_directory/a_file");
    let icat = Command::new("icat").arg(&image).arg("19").output().unwrap();
    assert!(icat.status.success());
    assert_eq!(content, icat.stdout);
    assert!(!content.is_empty());

    for (name, _) in &media {
        unmount(&host, name);
    }
    for (name, _) in &media {
        let image: String = sqlx::query_scalar("select image_path from medium where name = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_nothing_left(&host, Path::new(&image));
    }
}

fn attach_loop(image: &Path) -> String {
    let output = Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(image)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn loops_of_our_images_without_a_live_owner_are_released_before_attaching(pool: PgPool) {
    use ntt_agent::lock::HostLock;

    let host = Host::new(&pool).await;
    let images = host.root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    // Two images under our data directory, each with a loop device a dead run left behind; the
    // medium of the second is busy (another process holds its lock).
    let orphaned = images.join("0123456789abcdef0123456789abcdef.img");
    let owned = images.join("fedcba9876543210fedcba9876543210.img");
    sparse_file(&orphaned, MIB);
    sparse_file(&owned, MIB);
    attach_loop(&orphaned);
    let kept = attach_loop(&owned);
    let holder = HostLock::try_acquire(
        &host.root.join("lock"),
        "medium-fedcba9876543210fedcba9876543210.lock",
        "medium",
        "a test holding it",
    )
    .unwrap();
    // Someone else's loop device outside our root is never touched.
    let foreign = host.root.join("foreign.img");
    sparse_file(&foreign, MIB);
    let foreign_loop = attach_loop(&foreign);

    let content = host.root.join("c");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("a.txt"), b"a\n").unwrap();
    let image = host.root.join("other.img");
    ext4(&image, 8 * MIB, &content);
    register(&host, &image, "other");
    mount(&host, "other");

    assert!(
        loops_of(&loops().unwrap(), &orphaned).is_empty(),
        "the orphan was released"
    );
    let still = loops_of(&loops().unwrap(), &owned);
    assert_eq!(still.len(), 1, "a medium with a live owner is left alone");
    assert_eq!(still[0].name, Path::new(&kept));
    assert_eq!(loops_of(&loops().unwrap(), &foreign).len(), 1);

    holder.release().unwrap();
    run(Command::new("losetup").arg("-d").arg(&kept));
    run(Command::new("losetup").arg("-d").arg(&foreign_loop));
    unmount(&host, "other");
    assert_nothing_left(&host, &image);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn ctrl_c_during_mount_releases_what_was_attached(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = gpt_disk(&host.root);
    register(&host, &disk, "interrupted");
    assert!(host.run(&["volumes", "interrupted"]).status.success());

    let child = host.spawn(&["mount", "interrupted"]);
    let started = Instant::now();
    while loops_of(&loops().unwrap(), &disk).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    run(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("what was attached so far is released")
    );
    assert_nothing_left(&host, &disk);
}
