//! The privileged tier for imaging: real ddrescue on real loop devices over a FUSE file that
//! fails where we say, plus real third-party images. Runs as root; never skips.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::faulty_disk::{Faults, FaultyDisk, disk_content};
use crate::host;
use crate::host::{Host, MIB, fixture, fls_paths, loops_backed_by, partition, sha256, sparse_file};
use ntt_agent::imaging::ddrescue::read_summary;
use ntt_agent::imaging::identity::{IdentifyError, identify};
use ntt_agent::imaging::mapfile::Area;
use serde_json::{Value, json};
use sqlx::PgPool;

fn areas(report: &Value) -> Vec<Area> {
    report["rescue"]["bad_areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Area {
            pos: a["pos"].as_u64().unwrap(),
            size: a["size"].as_u64().unwrap(),
        })
        .collect()
}

fn as_areas(ranges: &[Range<u64>]) -> Vec<Area> {
    ranges
        .iter()
        .map(|r| Area {
            pos: r.start,
            size: r.end - r.start,
        })
        .collect()
}

/// The content as a perfect image would hold it: bad ranges read as zeros.
fn expected_image(content: &[u8], bad: &[Range<u64>]) -> Vec<u8> {
    let mut image = content.to_vec();
    for range in bad {
        image[range.start as usize..range.end as usize].fill(0);
    }
    image
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

async fn medium_row(pool: &PgPool, hash: &str) -> (i64, i64, i32, String, Option<Vec<u8>>) {
    sqlx::query_as(
        "select rescued_bytes, bad_bytes, bad_areas, health::text, image_digest from medium where hash = $1",
    )
    .bind(hash)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn bad_ranges_on_a_failing_device_become_exactly_the_mapfiles_bad_areas(pool: PgPool) {
    let host = Host::new(&pool).await;
    let bad = vec![
        5 * MIB + 4096..5 * MIB + 8192,
        9 * MIB + 512..9 * MIB + 1536,
    ];
    let content = disk_content(16 * MIB as usize, 1);
    let mut disk = FaultyDisk::start(
        content.clone(),
        Faults {
            bad: bad.clone(),
            ..Faults::default()
        },
    );
    let device = disk.attach();

    let report = host.image(&[device.to_str().unwrap(), "--name", "failing-disk"]);

    assert_eq!(report["format"], "device");
    assert_eq!(report["end"], "passes-exhausted");
    assert_eq!(areas(&report), as_areas(&bad));
    assert_eq!(report["rescue"]["bad"], 5 * 1024);
    assert_eq!(report["rescue"]["total"], 16 * MIB);
    assert_eq!(report["rescue"]["rescued"], 16 * MIB - 5 * 1024);
    assert_eq!(report["health"], "incomplete");
    let image = std::fs::read(report["image_path"].as_str().unwrap()).unwrap();
    assert_eq!(image.len() as u64, 16 * MIB);
    assert_eq!(
        mode_of(Path::new(report["image_path"].as_str().unwrap())),
        0o440,
        "images are evidence: read-only, for root and the data directory's group"
    );
    assert_eq!(
        mode_of(
            Path::new(report["image_path"].as_str().unwrap())
                .parent()
                .unwrap()
        ),
        0o700,
        "the data directory is nobody else's"
    );
    assert!(
        image == expected_image(&content, &bad),
        "image differs from the readable content"
    );
    assert_eq!(report["image_digest"], digest(&image));

    let hash = report["hash"].as_str().unwrap();
    let (rescued, bad_bytes, bad_areas, health, image_digest) = medium_row(&pool, hash).await;
    assert_eq!(
        (rescued, bad_bytes, bad_areas, health.as_str()),
        (16 * MIB as i64 - 5120, 5120, 2, "incomplete")
    );
    assert_eq!(hex_of(&image_digest.unwrap()), digest(&image));
    drop(disk);
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn flaky_sectors_are_recovered_by_the_retry_passes_of_a_later_thorough_run(pool: PgPool) {
    let host = Host::new(&pool).await;
    // Each sector here fails its first two reads and succeeds on the third.
    let flaky = 6 * MIB..6 * MIB + 2048;
    let content = disk_content(12 * MIB as usize, 2);
    let mut disk = FaultyDisk::start(
        content.clone(),
        Faults {
            flaky: vec![(flaky.clone(), 2)],
            ..Faults::default()
        },
    );
    let device = disk.attach();

    let first = host.image(&[device.to_str().unwrap(), "--profile", "default"]);
    assert_eq!(
        first["end"], "passes-exhausted",
        "fast+trim+scrape read each flaky sector at most twice"
    );
    assert!(first["rescue"]["bad"].as_u64().unwrap() > 0);

    let second = host.image(&[device.to_str().unwrap(), "--profile", "thorough"]);
    assert_eq!(
        second["known"], true,
        "the same medium is continued, not recorded twice"
    );
    assert_eq!(second["hash"], first["hash"]);
    assert_eq!(second["end"], "complete");
    assert_eq!(second["health"], "ok");
    assert_eq!(second["rescue"]["bad"], 0);
    let image = std::fs::read(second["image_path"].as_str().unwrap()).unwrap();
    assert!(image == content, "recovered image differs from the disk");
    assert_eq!(second["image_digest"], digest(&content));
    let count: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let (rescued, bad_bytes, bad_areas, health, _) =
        medium_row(&pool, second["hash"].as_str().unwrap()).await;
    assert_eq!(
        (rescued, bad_bytes, bad_areas, health.as_str()),
        (12 * MIB as i64, 0, 0, "ok")
    );
}

/// Waits until ddrescue has saved a mapfile that shows some but not all bytes rescued.
fn wait_for_partial_progress(mapfile: &Path, deadline: Duration) {
    let started = Instant::now();
    loop {
        if let Ok(Some(summary)) = read_summary(mapfile)
            && summary.rescued > 0
            && !summary.is_complete()
        {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "no partial progress in {} after {deadline:?}",
            mapfile.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn expected_hash(device: &Path) -> String {
    identify(device).unwrap().hash.to_string()
}

fn terminate(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn sigterm_mid_run_saves_the_mapfile_and_a_rerun_finishes_like_an_uninterrupted_run(
    pool: PgPool,
) {
    let host = Host::new(&pool).await;
    let bad = [20 * MIB..20 * MIB + 4096];
    let content = disk_content(32 * MIB as usize, 3);
    let faults = Faults {
        bad: bad.to_vec(),
        delay_per_read: Some(Duration::from_millis(250)),
        ..Faults::default()
    };
    let mut disk = FaultyDisk::start(content.clone(), faults);
    let device = disk.attach();
    let hash = expected_hash(&device);

    let child = host.spawn(&["image", "--json", device.to_str().unwrap()]);
    wait_for_partial_progress(&host.mapfile(&hash), Duration::from_mins(1));
    terminate(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    disk.set_delay(Duration::ZERO);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["end"], "cancelled");
    assert_eq!(report["image_digest"], Value::Null);
    let saved = read_summary(&host.mapfile(&hash)).unwrap().unwrap();
    assert!(
        saved.rescued > 0 && saved.non_tried > 0,
        "interrupted mid-run: {saved:?}"
    );
    let rescued_at_stop: i64 =
        sqlx::query_scalar("select rescued_bytes from medium where hash = $1")
            .bind(&hash)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        rescued_at_stop.cast_unsigned(),
        saved.rescued,
        "the catalog has the saved progress"
    );

    let resumed = host.image(&[device.to_str().unwrap()]);
    assert_eq!(resumed["known"], true);
    assert_eq!(areas(&resumed), as_areas(&bad));
    assert_eq!(
        resumed["image_digest"],
        digest(&expected_image(&content, &bad))
    );
    assert_eq!(resumed["end"], "passes-exhausted");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_second_concurrent_image_of_the_same_device_is_refused(pool: PgPool) {
    let host = Host::new(&pool).await;
    let content = disk_content(32 * MIB as usize, 4);
    // Slow enough that the first run is still busy whatever else the machine is doing.
    let faults = Faults {
        delay_per_read: Some(Duration::from_millis(200)),
        ..Faults::default()
    };
    let mut disk = FaultyDisk::start(content, faults);
    let device = disk.attach();
    let hash = expected_hash(&device);

    let first = host.spawn(&["image", device.to_str().unwrap()]);
    wait_for_partial_progress(&host.mapfile(&hash), Duration::from_mins(1));
    let second = host.run(&["image", device.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is busy") && stderr.contains("ntt image"),
        "{stderr}"
    );

    terminate(&first);
    let output = first.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn identity_is_stable_and_tells_apart_sources_that_differ_only_in_size() {
    let edges = disk_content(2 * MIB as usize, 5);
    let with_middle = |middle: usize| {
        let mut content = edges[..MIB as usize].to_vec();
        content.extend(std::iter::repeat_n(0x55_u8, middle));
        content.extend_from_slice(&edges[MIB as usize..]);
        content
    };
    let mut small = FaultyDisk::start(with_middle(4 * MIB as usize), Faults::default());
    let mut large = FaultyDisk::start(with_middle(6 * MIB as usize), Faults::default());
    let small_device = small.attach();
    let large_device = large.attach();
    let a = identify(&small_device).unwrap();
    let again = identify(&small_device).unwrap();
    let b = identify(&large_device).unwrap();
    assert_eq!(a.hash, again.hash, "stable across runs");
    assert!(a.is_block_device);
    assert_eq!(a.size, 6 * MIB);
    assert_eq!(b.size, 8 * MIB);
    assert_ne!(a.hash, b.hash, "same first and last MiB, different size");
    assert_eq!(a.model, "unknown", "loop devices have no model");
}

#[test]
fn unreadable_sectors_in_the_edges_are_hashed_as_zeros() {
    let content = disk_content(4 * MIB as usize, 6);
    let bad = 4096..8192_u64;
    let mut failing = FaultyDisk::start(
        content.clone(),
        Faults {
            bad: vec![bad.clone()],
            ..Faults::default()
        },
    );
    let mut zeroed = FaultyDisk::start(expected_image(&content, &[bad]), Faults::default());
    let failing_identity = identify(&failing.attach()).unwrap();
    let zeroed_identity = identify(&zeroed.attach()).unwrap();
    assert_eq!(failing_identity.hash, zeroed_identity.hash);
    assert_eq!(failing_identity.unreadable_sectors, 8);
}

#[test]
fn a_read_that_ends_early_is_an_error_not_a_hash() {
    let content = disk_content(4 * MIB as usize, 7);
    // Through a loop device the kernel zero-fills short reads, so read the file itself.
    let disk = FaultyDisk::start(
        content,
        Faults {
            ends_early_at: Some(3 * MIB + 4096),
            ..Faults::default()
        },
    );
    let error = identify(&disk.file()).unwrap_err();
    assert!(
        matches!(error, IdentifyError::ShortRead { .. }),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_empty_source_is_refused(pool: PgPool) {
    let host = Host::new(&pool).await;
    let empty = host.root.join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let output = host.run(&["image", empty.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("is empty"), "{stderr}");
    let count: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn optical_media_are_rescued_in_2048_byte_sectors(pool: PgPool) {
    let host = Host::new(&pool).await;
    let bad = [3 * MIB + 2048..3 * MIB + 4096];
    let content = disk_content(8 * MIB as usize, 8);
    let mut disk = FaultyDisk::start(
        content.clone(),
        Faults {
            bad: bad.to_vec(),
            ..Faults::default()
        },
    );
    let device = disk.attach_with_sector_size(2048);
    let report = host.image(&[device.to_str().unwrap()]);
    assert_eq!(report["sector_size"], 2048);
    assert_eq!(areas(&report), as_areas(&bad));
    let sector: i32 = sqlx::query_scalar("select sector_size from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sector, 2048);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn third_party_containers_register_as_the_same_bytes_as_their_raw_equivalent(pool: PgPool) {
    let host = Host::new(&pool).await;
    let sources = ["ext2.splitraw.000", "ext2.qcow2", "ext2.E01"];
    let before: Vec<String> = sources.iter().map(|s| sha256(&fixture(s))).collect();
    let reports: Vec<Value> = sources
        .iter()
        .map(|s| host.image(&[fixture(s).to_str().unwrap()]))
        .collect();
    let raw: Vec<u8> = [fixture("ext2.splitraw.000"), fixture("ext2.splitraw.001")]
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    for (report, expected_format) in reports.iter().zip(["split_raw", "qcow2", "ewf"]) {
        assert_eq!(report["format"], expected_format);
        assert_eq!(report["image_digest"], digest(&raw), "{expected_format}");
        assert_eq!(
            report["hash"], reports[0]["hash"],
            "one medium, whatever the container"
        );
        assert_eq!(report["health"], "ok");
    }
    assert_eq!(reports[0]["known"], false);
    assert_eq!(reports[1]["known"], true);
    assert_eq!(reports[2]["known"], true);
    let image_path = reports[0]["image_path"].as_str().unwrap();
    let image = std::fs::read(image_path).unwrap();
    assert!(image == raw);
    assert_eq!(
        mode_of(Path::new(image_path)),
        0o440,
        "converted images are read-only"
    );
    let after: Vec<String> = sources.iter().map(|s| sha256(&fixture(s))).collect();
    assert_eq!(before, after, "sources are never written");
    let count: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_raw_image_is_registered_in_place_and_a_dmg_is_converted(pool: PgPool) {
    let host = Host::new(&pool).await;
    let raw = fixture("ímynd.dd");
    let report = host.image(&[raw.to_str().unwrap()]);
    assert_eq!(report["format"], "raw");
    assert_eq!(
        report["image_path"],
        raw.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(report["name"], "ímynd.dd");
    assert_eq!(
        report["image_digest"],
        digest(&std::fs::read(&raw).unwrap())
    );

    let dmg = host.image(&[fixture("hfsplus_zlib.dmg").to_str().unwrap()]);
    assert_eq!(dmg["format"], "dmg");
    let converted = Command::new("qemu-img")
        .args(["convert", "-f", "dmg", "-O", "raw"])
        .arg(fixture("hfsplus_zlib.dmg"))
        .arg(host.root.join("check.raw"))
        .status()
        .unwrap();
    assert!(converted.success());
    assert_eq!(
        dmg["image_digest"],
        digest(&std::fs::read(host.root.join("check.raw")).unwrap())
    );
    assert_eq!(dmg["health"], "ok");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn vmdk_vhd_and_vhdx_containers_convert_back_to_the_same_bytes(pool: PgPool) {
    let host = Host::new(&pool).await;
    let raw = fixture("ímynd.dd");
    let raw_digest = digest(&std::fs::read(&raw).unwrap());
    let containers = [
        ("vmdk", "vmdk", ""),
        ("vhd", "vpc", "force_size=on,subformat=fixed"),
        ("vhd", "vpc", "force_size=on,subformat=dynamic"),
        ("vhdx", "vhdx", ""),
    ];
    for (index, (format, qemu_format, options)) in containers.into_iter().enumerate() {
        let container = host.root.join(format!("disk{index}.{format}"));
        let mut convert = Command::new("qemu-img");
        convert.args(["convert", "-f", "raw", "-O", qemu_format]);
        if !options.is_empty() {
            convert.args(["-o", options]);
        }
        assert!(
            convert
                .arg(&raw)
                .arg(&container)
                .status()
                .unwrap()
                .success()
        );
        // One name for all: the same bytes are one medium, and another name would be refused.
        let report = host.image(&[container.to_str().unwrap(), "--name", "container"]);
        assert_eq!(report["format"], format, "{options}");
        assert_eq!(report["image_digest"], raw_digest, "{format} {options}");
        assert_eq!(
            report["known"],
            index > 0,
            "one medium whatever the container"
        );
    }
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn volumes_of_an_imaged_medium_are_recorded_once_and_listed(pool: PgPool) {
    let host = Host::new(&pool).await;
    let image = host.root.join("two-partitions.img");
    sparse_file(&image, 48 * MIB);
    partition(
        &image,
        b"label: dos\nstart=2048, size=40960, type=83\nstart=43008, size=40960, type=82\n",
    );
    let mkfs = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "docs",
            "-E",
            &format!("offset={}", 2048 * 512),
        ])
        .arg(&image)
        .arg("20480k")
        .status()
        .unwrap();
    assert!(mkfs.success());
    // This mkswap has no --offset: make the swap area apart and copy it into the partition.
    let swap_area = host.root.join("swap.area");
    sparse_file(&swap_area, 20 * MIB);
    let swap = Command::new("mkswap").arg(&swap_area).output().unwrap();
    assert!(
        swap.status.success(),
        "{}",
        String::from_utf8_lossy(&swap.stderr)
    );
    let copy = Command::new("dd")
        .arg(format!("if={}", swap_area.display()))
        .arg(format!("of={}", image.display()))
        .args([
            "bs=512",
            "seek=43008",
            "count=16",
            "conv=notrunc",
            "status=none",
        ])
        .status()
        .unwrap();
    assert!(copy.success());

    let report = host.image(&[image.to_str().unwrap(), "--name", "two-partitions"]);
    let hash = report["hash"].as_str().unwrap().to_owned();

    let listed = host.run(&["volumes", "two-partitions", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let volumes: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let volumes = volumes.as_array().unwrap();
    // The ext4 and the swap, then the ext4's deleted entries (a volume of their own).
    assert_eq!(volumes.len(), 3);
    assert_eq!(volumes[2]["role"], "deleted");
    assert_eq!(volumes[2]["parent_volume_no"], 0);
    assert_eq!(volumes[2]["offset_bytes"], 2048 * 512);
    assert_eq!(volumes[0]["fs_type"], "ext4");
    assert_eq!(volumes[0]["label"], "docs");
    assert_eq!(volumes[0]["offset_bytes"], 2048 * 512);
    assert_eq!(volumes[0]["role"], "filesystem");
    assert_eq!(volumes[0]["state"], "pending");
    assert_eq!(volumes[1]["fs_type"], "swap");
    assert_eq!(volumes[1]["role"], "swap");
    assert_eq!(volumes[1]["state"], "skipped");

    // By hash prefix, a second time: the same rows, not a second set.
    let again = host.run(&["volumes", &hash[..10], "--json"]);
    assert!(again.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from volume")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);
    let stage = host.run(&["status", "--json"]);
    let media: Value = serde_json::from_slice(&stage.stdout).unwrap();
    assert_eq!(media[0]["stage"], "volumes");

    let missing = host.run(&["volumes", "no-such-medium"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no medium is called"));
}

/// An MBR disk whose one partition (at 1 MiB) holds an ext4 with `report.txt` and a journal
/// flagged as needing recovery (as after a crash).
fn disk_with_a_dirty_ext4(dir: &Path) -> PathBuf {
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("report.txt"), b"the evidence\n").unwrap();
    let filesystem = dir.join("fs.img");
    sparse_file(&filesystem, 16 * MIB);
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "dirty", "-d"])
        .arg(&content)
        .arg(&filesystem)
        .status()
        .unwrap();
    assert!(mkfs.success());
    let flag = Command::new("debugfs")
        .args(["-w", "-R", "feature needs_recovery"])
        .arg(&filesystem)
        .output()
        .unwrap();
    assert!(flag.status.success());
    let disk = dir.join("disk.img");
    sparse_file(&disk, 32 * MIB);
    partition(&disk, b"label: dos\nstart=2048, size=32768, type=83\n");
    let copy = Command::new("dd")
        .arg(format!("if={}", filesystem.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=1M", "seek=1", "conv=notrunc", "status=none"])
        .status()
        .unwrap();
    assert!(copy.success());
    disk
}

#[tokio::test]
async fn a_dirty_ext4_partition_mounts_read_only_without_replaying_its_journal() {
    use ntt_agent::volume::attach::{LoopDevice, MountGuard, kernel_filesystems};
    use ntt_agent::volume::partitions::discover;
    use ntt_agent::volume::probe::FsType;

    let dir = std::env::temp_dir().join(format!("ntt-attach-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = disk_with_a_dirty_ext4(&dir);
    let before = sha256(&disk);
    let layout = discover(&disk).unwrap();
    let volume = &layout.volumes[0];
    assert_eq!((volume.probe.fs_type, volume.offset), (FsType::Ext4, MIB));
    let kernel = kernel_filesystems(&std::fs::read_to_string("/proc/filesystems").unwrap());

    let device = LoopDevice::attach(&disk, volume.offset, volume.length).unwrap();
    let target = dir.join("mnt");
    let mount = MountGuard::mount(
        device.path(),
        FsType::Ext4,
        &target,
        &kernel,
        Duration::from_secs(30),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("report.txt")).unwrap(),
        "the evidence\n"
    );
    assert!(
        std::fs::write(target.join("new"), b"x").is_err(),
        "the mount is read-only"
    );
    mount.unmount().unwrap();
    device.detach().unwrap();
    assert_eq!(loops_backed_by(&disk), "", "no loop device left");

    // Dropped without explicit release: the guards still clean up, mount first.
    {
        let device = LoopDevice::attach(&disk, volume.offset, volume.length).unwrap();
        let _mount = MountGuard::mount(
            device.path(),
            FsType::Ext4,
            &target,
            &kernel,
            Duration::from_secs(30),
            None,
        )
        .await
        .unwrap();
        assert!(target.join("report.txt").exists());
    }
    assert_eq!(loops_backed_by(&disk), "");
    assert!(!target.join("report.txt").exists(), "unmounted");

    // A type the kernel cannot mount is refused before anything is attached.
    let device = LoopDevice::attach(&disk, volume.offset, volume.length).unwrap();
    let error = MountGuard::mount(
        device.path(),
        FsType::Ext4,
        &target,
        &[],
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("cannot mount ext4"), "{error}");
    device.detach().unwrap();

    assert_eq!(sha256(&disk), before, "the evidence is never written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn ntfs_and_iso9660_volumes_are_read_through_fuse_drivers_and_match_the_sleuth_kit() {
    use ntt_agent::volume::attach::LoopDevice;
    use ntt_agent::volume::fuse::FuseMount;
    use ntt_agent::volume::partitions::discover;

    let dir = std::env::temp_dir().join(format!("ntt-fuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ntfs = dir.join("windows_volume.raw");
    let converted = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(fixture("windows_volume.qcow2"))
        .arg(&ntfs)
        .status()
        .unwrap();
    assert!(converted.success());

    for (image, lowercase) in [(ntfs.clone(), false), (fixture("iso9660.raw"), true)] {
        let layout = discover(&image).unwrap();
        let volume = &layout.volumes[0];
        let device = LoopDevice::attach(&image, volume.offset, volume.length).unwrap();
        let target = dir.join("mnt");
        let mount = FuseMount::mount(
            volume.probe.fs_type,
            device.path(),
            &target,
            &dir.join("driver.log"),
            Duration::from_secs(30),
        )
        .unwrap();
        let mut seen = tree(mount.target());
        let mut expected = fls_paths(&image, 0);
        if lowercase {
            // fuseiso shows plain ISO 9660 names in lower case.
            expected = expected.iter().map(|p| p.to_lowercase()).collect();
            seen = seen.iter().map(|p| p.to_lowercase()).collect();
            expected.sort();
            seen.sort();
        }
        assert!(!expected.is_empty());
        assert_eq!(
            seen,
            expected,
            "{} via {}",
            image.display(),
            mount.program()
        );
        mount.unmount().unwrap();
        device.detach().unwrap();
        assert_eq!(loops_backed_by(&image), "", "no loop device left");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_sweep_detaches_loops_of_deleted_images_under_our_root_only() {
    use ntt_agent::volume::attach::LoopDevice;
    use ntt_agent::volume::sweep::sweep_deleted_images;

    let root = std::env::temp_dir().join(format!("ntt-sweep-{}", std::process::id()));
    let elsewhere = std::env::temp_dir().join(format!("ntt-sweep-other-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let doomed = root.join("deleted.img");
    let kept = root.join("kept.img");
    let foreign = elsewhere.join("foreign.img");
    for image in [&doomed, &kept, &foreign] {
        std::fs::File::create(image).unwrap().set_len(MIB).unwrap();
    }
    let doomed_loop = LoopDevice::attach(&doomed, 0, MIB).unwrap();
    let kept_loop = LoopDevice::attach(&kept, 0, MIB).unwrap();
    let foreign_loop = LoopDevice::attach(&foreign, 0, MIB).unwrap();
    std::fs::remove_file(&doomed).unwrap();
    std::fs::remove_file(&foreign).unwrap();

    let swept = sweep_deleted_images(&root).unwrap();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert_eq!(swept[0].device, doomed_loop.path());
    assert!(
        !Path::new("/sys/block")
            .join(doomed_loop.path().file_name().unwrap())
            .join("loop")
            .exists()
    );
    assert_eq!(
        loops_backed_by(&kept).lines().count(),
        1,
        "a live image keeps its loop"
    );
    std::mem::forget(doomed_loop); // already detached by the sweep
    kept_loop.detach().unwrap();
    foreign_loop.detach().unwrap(); // not ours: the sweep left it alone
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

/// `size` bytes whose first and last MiB are zeros and whose middle comes from `seed`: twins
/// for the identity (same size, no model or serial, same edges) that differ inside.
fn blank_edged(size: usize, seed: u64) -> Vec<u8> {
    let mut content = disk_content(size, seed);
    let edge = MIB as usize;
    content[..edge].fill(0);
    content[size - edge..].fill(0);
    content
}

/// A device with a known medium's size and edges but other content is never taken
/// for that medium (its bytes would be spliced into the other's image): refused without
/// `--name`, a medium of its own with one, found again as that medium, and the first device is
/// still itself. A `--name` other than the medium's is refused.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn twin_devices_with_the_same_edges_are_never_spliced(pool: PgPool) {
    let host = Host::new(&pool).await;
    let size = 8 * MIB as usize;
    let (first_content, second_content) = (blank_edged(size, 11), blank_edged(size, 12));
    let mut first = FaultyDisk::start(first_content.clone(), Faults::default());
    let mut second = FaultyDisk::start(second_content.clone(), Faults::default());
    let (a, b) = (first.attach(), second.attach());
    assert_eq!(
        expected_hash(&a),
        expected_hash(&b),
        "the identity cannot tell them apart"
    );

    let imaged = host.image(&[a.to_str().unwrap(), "--name", "twin-a"]);
    let refused = host.run(&["image", b.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("identity of medium twin-a") && stderr.contains("--name"),
        "{stderr}"
    );
    let same_name = host.run(&["image", b.to_str().unwrap(), "--name", "twin-a"]);
    assert_eq!(same_name.status.code(), Some(1), "a name is not proof");

    let twin = host.image(&[b.to_str().unwrap(), "--name", "twin-b"]);
    assert_ne!(twin["hash"], imaged["hash"]);
    assert_eq!(twin["known"], false);
    let image = std::fs::read(twin["image_path"].as_str().unwrap()).unwrap();
    assert!(
        image == second_content,
        "the twin's own bytes, not a splice"
    );
    let again = host.image(&[b.to_str().unwrap()]);
    assert_eq!(
        (&again["hash"], &again["known"]),
        (&twin["hash"], &json!(true))
    );
    let first_again = host.image(&[a.to_str().unwrap()]);
    assert_eq!(first_again["hash"], imaged["hash"]);
    let image = std::fs::read(imaged["image_path"].as_str().unwrap()).unwrap();
    assert!(image == first_content);

    let renamed = host.run(&["image", a.to_str().unwrap(), "--name", "other-name"]);
    let stderr = String::from_utf8_lossy(&renamed.stderr);
    assert_eq!(renamed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("medium twin-a already"), "{stderr}");
    let media: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(media, 2);
    drop(first);
    drop(second);
}

/// An image file with a registered image's size and edges but other content is not
/// that medium: refused, or a medium of its own with `--name`, with its own digest.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn twin_image_files_keep_their_own_digests(pool: PgPool) {
    let host = Host::new(&pool).await;
    let size = 8 * MIB as usize;
    let (a, b) = (host.root.join("a.img"), host.root.join("b.img"));
    std::fs::write(&a, blank_edged(size, 21)).unwrap();
    std::fs::write(&b, blank_edged(size, 22)).unwrap();
    let first = host.image(&[a.to_str().unwrap(), "--name", "file-a"]);
    let refused = host.run(&["image", b.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("identity of medium file-a"), "{stderr}");
    let twin = host.image(&[b.to_str().unwrap(), "--name", "file-b"]);
    assert_ne!(twin["hash"], first["hash"]);
    assert_eq!(twin["image_digest"], digest(&std::fs::read(&b).unwrap()));
    assert_eq!(first["image_digest"], digest(&std::fs::read(&a).unwrap()));
    let again = host.image(&[b.to_str().unwrap()]);
    assert_eq!(again["hash"], twin["hash"]);
    let renamed = host.run(&["image", a.to_str().unwrap(), "--name", "file-c"]);
    assert_eq!(renamed.status.code(), Some(1));
}

/// An image file whose middle cannot be read (on a failing disk or a FUSE driver)
/// is refused with an error naming the read, never a SIGBUS that kills the process (the
/// digest was hashed through a memory map).
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_image_file_with_unreadable_bytes_is_an_error_not_a_crash(pool: PgPool) {
    let host = Host::new(&pool).await;
    let disk = FaultyDisk::start(
        disk_content(8 * MIB as usize, 31),
        Faults {
            bad: vec![4 * MIB + 4096..4 * MIB + 8192],
            cached: true,
            ..Faults::default()
        },
    );
    let output = host.run(&["image", disk.file().to_str().unwrap(), "--name", "eio-file"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exited, not killed: {stderr}"
    );
    assert!(
        stderr.contains("for its digest") && stderr.contains("Input/output error"),
        "{stderr}"
    );
    drop(disk);
}

/// A device that is mounted (or otherwise held by the kernel) is refused: its bytes
/// may change while ddrescue reads them. Once unmounted it images.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_mounted_device_is_refused_until_it_is_unmounted(pool: PgPool) {
    use ntt_agent::volume::attach::{LoopDevice, MountGuard, kernel_filesystems};
    use ntt_agent::volume::probe::FsType;
    let host = Host::new(&pool).await;
    let source = host.root.join("busy-src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a.txt"), b"in use").unwrap();
    let image = host.root.join("busy.img");
    host::ext4(&image, 8 * MIB, &source);
    let device = LoopDevice::attach(&image, 0, 8 * MIB).unwrap();
    let kernel = kernel_filesystems(&std::fs::read_to_string("/proc/filesystems").unwrap());
    let target = host.root.join("busy-mnt");
    let mount = MountGuard::mount(
        device.path(),
        FsType::Ext4,
        &target,
        &kernel,
        Duration::from_secs(30),
        None,
    )
    .await
    .unwrap();
    let refused = host.run(&["image", device.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is in use"), "{stderr}");
    let media: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(media, 0, "nothing recorded");
    mount.unmount().unwrap();
    let imaged = host.image(&[device.path().to_str().unwrap()]);
    assert_eq!(imaged["end"], "complete", "{imaged}");
    device.detach().unwrap();
}
