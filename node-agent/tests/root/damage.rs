//! The privileged tier for damaged files: unreadable sectors of a FUSE-simulated failing disk
//! mapped onto the files they hit, on an ext4 read by the kernel (FIEMAP) and a FAT32 read in
//! user space (The Sleuth Kit); free space flags nothing, structures are listed; a later rescue
//! clears a file's damage and the file is copied again. Runs as root; never skips.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::faulty_disk::{Faults, FaultyDisk, disk_content};
use crate::host;
use crate::host::{Host, MIB, ext4, partition, place, register, run, sparse_file};
use serde_json::{Value, json};
use sqlx::PgPool;

const EXT4_START: u64 = 2048 * 512;
const FAT_START: u64 = 43008 * 512;
const BLOCK: u64 = 4096;

/// Where the test puts the bad sectors, as disk byte ranges, and what each should flag.
struct Layout {
    disk: Vec<u8>,
    /// Blocks 1-2 of `hit.bin` (file bytes 4096-12288): always unreadable.
    hit: Range<u64>,
    /// Block 2 of `flaky.bin` (file bytes 8192-12288): fails its first two reads.
    flaky: Range<u64>,
    /// The last block of the ext4 inode table (unused inodes).
    inode_table: Range<u64>,
    /// The ext4's last block, free.
    ext4_free: Range<u64>,
    /// Sectors 8-15 of `DOC.BIN` on the FAT (file bytes 4096-8192).
    doc: Range<u64>,
    /// The last sector of the first FAT (unused entries).
    fat_table: Range<u64>,
    /// The FAT's last cluster, free.
    fat_free: Range<u64>,
}

fn first_numbers(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The value after `label` in `dumpe2fs` output (`Inode table at 36-355` → `36-355`).
fn dumpe2fs_range(fs: &Path, label: &str) -> (u64, u64) {
    let output = Command::new("dumpe2fs").arg(fs).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(label))
        .find(|value| value.contains('-'))
        .unwrap_or_else(|| panic!("no {label:?} range in dumpe2fs output:\n{text}"));
    let range = line.split_whitespace().next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The sectors `istat` lists for a FAT entry.
fn fat_sectors(fs: &Path, address: &str) -> Vec<u64> {
    let output = Command::new("istat").arg(fs).arg(address).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, sectors) = text.split_once("Sectors:").unwrap();
    first_numbers(sectors)
}

fn fat_address(fs: &Path, name: &str) -> String {
    let output = Command::new("fls").arg(fs).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| {
            let (head, entry) = l.split_once(":\t")?;
            (entry == name).then(|| head.trim_start_matches("r/r ").to_owned())
        })
        .unwrap()
}

/// `fsstat`'s `* FAT 0: 32 - 661` → (32, 661).
fn fat_table(fs: &Path) -> (u64, u64) {
    let output = Command::new("fsstat").arg(fs).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("* FAT 0:"))
        .unwrap();
    let numbers = first_numbers(&line.replace('-', " "));
    (numbers[0], numbers[1])
}

/// A GPT disk: ext4 (`good.txt`, `hit.bin`, `flaky.bin`) and FAT32 (`NOTE.TXT`, `DOC.BIN`).
fn layout(dir: &Path) -> Layout {
    let content = dir.join("ext4-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("good.txt"), b"fine\n").unwrap();
    std::fs::write(content.join("hit.bin"), disk_content(64 * 1024, 7)).unwrap();
    std::fs::write(content.join("flaky.bin"), disk_content(32 * 1024, 9)).unwrap();
    let disk = dir.join("gpt.img");
    sparse_file(&disk, 64 * MIB);
    partition(
        &disk,
        b"label: gpt\nstart=2048, size=40960, type=linux\nstart=43008, size=81920, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
    );
    let part = dir.join("ext4.fs");
    sparse_file(&part, 20 * MIB);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&content)
        .arg(&part));
    let hit_blocks = host::ext4_blocks(&part, "hit.bin");
    let flaky_blocks = host::ext4_blocks(&part, "flaky.bin");
    assert_eq!(hit_blocks.len(), 16);
    assert!(
        hit_blocks.windows(2).all(|w| w[1] == w[0] + 1),
        "hit.bin is contiguous: {hit_blocks:?}"
    );
    let (_, table_end) = dumpe2fs_range(&part, "Inode table at");
    let (_, free_end) = dumpe2fs_range(&part, "Free blocks:");
    assert_eq!(free_end, 5119, "the last block is free");
    place(&disk, &part, EXT4_START);

    let fat = dir.join("fat.fs");
    sparse_file(&fat, 40 * MIB);
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-S", "512", "-s", "1"])
        .arg(&fat));
    for (name, bytes) in [
        ("NOTE.TXT", b"on the fat side\n".to_vec()),
        ("DOC.BIN", disk_content(16 * 1024, 11)),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&fat)
            .arg(&file)
            .arg(format!("::/{name}")));
    }
    let doc = fat_sectors(&fat, &fat_address(&fat, "DOC.BIN"));
    assert_eq!(doc.len(), 32);
    assert!(doc[8..16].windows(2).all(|w| w[1] == w[0] + 1));
    let (_, fat_end) = fat_table(&fat);
    let fat_sectors_total = 40 * MIB / 512;
    place(&disk, &fat, FAT_START);

    let ext4 =
        |block: u64, blocks: u64| EXT4_START + block * BLOCK..EXT4_START + (block + blocks) * BLOCK;
    let sector = |s: u64, n: u64| FAT_START + s * 512..FAT_START + (s + n) * 512;
    Layout {
        disk: std::fs::read(&disk).unwrap(),
        hit: ext4(hit_blocks[1], 2),
        flaky: ext4(flaky_blocks[2], 1),
        inode_table: ext4(table_end, 1),
        ext4_free: ext4(free_end, 1),
        doc: sector(doc[8], 8),
        fat_table: sector(fat_end, 1),
        fat_free: sector(fat_sectors_total - 1, 1),
    }
}

fn run_json(host: &Host, args: &[&str]) -> Value {
    let output = host.run(args);
    assert!(
        output.status.success(),
        "ntt {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `ntt ls MEDIUM --damaged --json`: path → (volume, damaged ranges).
fn damaged(host: &Host, medium: &str) -> BTreeMap<String, (u64, Vec<(u64, u64)>)> {
    host::ls_damaged(host, medium)
        .iter()
        .map(|v| {
            let ranges = v["damaged_ranges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
                .collect();
            (
                v["path"].as_str().unwrap().to_owned(),
                (v["volume"].as_u64().unwrap(), ranges),
            )
        })
        .collect()
}

fn cat(host: &Host, medium: &str, path: &str, volume: &str) -> Vec<u8> {
    let output = host
        .command(&["cat", medium, "--volume", volume])
        .arg(OsStr::from_bytes(path.as_bytes()))
        .output()
        .unwrap();
    assert!(output.status.success(), "cat {path}");
    output.stdout
}

async fn blob_damaged(pool: &PgPool, content: &[u8]) -> Option<bool> {
    sqlx::query_scalar("select damaged_source from blob where id = $1")
        .bind(blake3::hash(content).as_bytes().as_slice())
        .fetch_optional(pool)
        .await
        .unwrap()
}

fn volume(report: &Value, volume_no: u64) -> &Value {
    report["damage"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volume_no"] == volume_no)
        .unwrap_or_else(|| panic!("no damage row for volume {volume_no}: {report}"))
}

fn len(range: &Range<u64>) -> u64 {
    range.end - range.start
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn unreadable_sectors_flag_exactly_the_files_they_hit_and_a_rescue_clears_the_flag(
    pool: PgPool,
) {
    let host = Host::new(&pool).await;
    let layout = layout(&host.root);
    let mut disk = FaultyDisk::start(
        layout.disk.clone(),
        Faults {
            bad: vec![
                layout.hit.clone(),
                layout.inode_table.clone(),
                layout.ext4_free.clone(),
                layout.doc.clone(),
                layout.fat_table.clone(),
                layout.fat_free.clone(),
            ],
            flaky: vec![(layout.flaky.clone(), 2)],
            ..Faults::default()
        },
    );
    let device = disk.attach();
    let device = device.to_str().unwrap();

    // Imaged with the default profile: the flaky block stays unread.
    let report = run_json(
        &host,
        &[
            "ingest",
            device,
            "--name",
            "damaged",
            "--profile",
            "default",
            "--json",
        ],
    );
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["pending"], 0, "{report}");
    assert_eq!(report["damage"]["mapped"], true, "{report}");

    let files = damaged(&host, "damaged");
    let expected: BTreeMap<String, (u64, Vec<(u64, u64)>)> = [
        ("hit.bin".to_owned(), (0, vec![(4096, 12288)])),
        ("flaky.bin".to_owned(), (0, vec![(8192, 12288)])),
        ("DOC.BIN".to_owned(), (1, vec![(4096, 8192)])),
    ]
    .into();
    assert_eq!(
        files, expected,
        "exactly the files on unreadable sectors, with their file offsets"
    );
    assert_eq!(report["damage"]["files"], 3);
    assert_eq!(report["damage"]["bytes"], 8192 + 4096 + 4096);
    assert_eq!(
        report["damage"]["copied"], 3,
        "copied with zeros where unread"
    );

    let ext4 = volume(&report, 0);
    assert_eq!(ext4["method"], "fiemap", "{ext4}");
    assert_eq!(
        ext4["bad_bytes"].as_u64().unwrap(),
        len(&layout.hit) + len(&layout.flaky) + len(&layout.inode_table) + len(&layout.ext4_free)
    );
    assert_eq!(
        ext4["file_bytes"].as_u64().unwrap(),
        len(&layout.hit) + len(&layout.flaky)
    );
    assert_eq!(ext4["free_bytes"].as_u64().unwrap(), len(&layout.ext4_free));
    assert_eq!(
        ext4["metadata_bytes"].as_u64().unwrap(),
        len(&layout.inode_table)
    );
    assert_eq!(ext4["unattributed_bytes"], 0);
    let table = layout.inode_table.start - EXT4_START;
    assert_eq!(
        ext4["structures"],
        serde_json::json!([format!(
            "filesystem structures: bytes {table}-{} of the volume",
            table + BLOCK
        )])
    );

    let fat = volume(&report, 1);
    assert_eq!(fat["method"], "sleuthkit", "{fat}");
    assert_eq!(
        fat["bad_bytes"].as_u64().unwrap(),
        len(&layout.doc) + len(&layout.fat_table) + len(&layout.fat_free)
    );
    assert_eq!(fat["file_bytes"].as_u64().unwrap(), len(&layout.doc));
    assert_eq!(fat["free_bytes"].as_u64().unwrap(), len(&layout.fat_free));
    assert_eq!(
        fat["metadata_bytes"].as_u64().unwrap(),
        len(&layout.fat_table)
    );
    assert_eq!(fat["unattributed_bytes"], 0);
    let structures = fat["structures"].as_array().unwrap();
    assert_eq!(structures.len(), 1, "{fat}");
    assert!(
        structures[0].as_str().unwrap().contains("$FAT1"),
        "the FAT sector is named: {fat}"
    );

    // The text report says where to look.
    let text = host.run(&["report", "damaged"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("damaged  3 file(s)") && text.contains("ntt ls damaged --damaged"),
        "{text}"
    );

    // Undamaged files are intact; damaged ones hold zeros exactly where unread, and their
    // blobs are marked.
    assert_eq!(cat(&host, "damaged", "good.txt", "0"), b"fine\n");
    let hit = cat(&host, "damaged", "hit.bin", "0");
    let original = disk_content(64 * 1024, 7);
    assert!(hit[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(hit[..4096], original[..4096]);
    assert_eq!(hit[12288..], original[12288..]);
    assert_eq!(blob_damaged(&pool, &hit).await, Some(true));
    let flaky_original = disk_content(32 * 1024, 9);
    let flaky_before = cat(&host, "damaged", "flaky.bin", "0");
    assert!(flaky_before[8192..12288].iter().all(|&b| b == 0));
    assert_eq!(blob_damaged(&pool, &flaky_before).await, Some(true));
    let doc = cat(&host, "damaged", "DOC.BIN", "1");
    assert!(doc[4096..8192].iter().all(|&b| b == 0));
    assert_eq!(doc[..4096], disk_content(16 * 1024, 11)[..4096]);

    // A thorough rescue reads the flaky block; `ntt damage` sees the map is out of date and
    // queues flaky.bin to be copied again.
    let rescued = run_json(&host, &["image", device, "--profile", "thorough", "--json"]);
    assert_eq!(rescued["known"], true);
    let remap = run_json(&host, &["damage", "damaged", "--json"]);
    let ext4_remap = remap
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volume_no"] == 0)
        .unwrap();
    assert_eq!(ext4_remap["damaged_files"], 1, "{remap}");
    assert_eq!(ext4_remap["recopy"], 1, "{remap}");
    assert_eq!(ext4_remap["file_bytes"].as_u64().unwrap(), len(&layout.hit));

    // The next ingest copies it again: whole, not damaged, its blob clean.
    let after = run_json(&host, &["ingest", device, "--json"]);
    assert_eq!(after["balances"], true, "{after}");
    assert_eq!(after["accounting"]["pending"], 0, "{after}");
    assert_eq!(after["damage"]["files"], 2, "{after}");
    let files = damaged(&host, "damaged");
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["DOC.BIN", "hit.bin"],
        "flaky.bin is no longer damaged"
    );
    let flaky_after = cat(&host, "damaged", "flaky.bin", "0");
    assert!(flaky_after == flaky_original, "flaky.bin recopied whole");
    assert_eq!(blob_damaged(&pool, &flaky_original).await, Some(false));
    // The damaged copy stays in the store (blobs are never removed), still marked.
    assert_eq!(blob_damaged(&pool, &flaky_before).await, Some(true));
    drop(disk);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn damage_needs_an_enumerated_medium_and_a_directory_has_none(pool: PgPool) {
    let host = Host::new(&pool).await;
    let tree = host.root.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), b"a\n").unwrap();
    let report = run_json(
        &host,
        &["ingest", tree.to_str().unwrap(), "--name", "dir", "--json"],
    );
    assert_eq!(report["damage"]["files"], 0, "{report}");
    let output = host.run(&["ls", "dir", "--damaged", "--json"]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "nothing damaged in a directory");
    assert_eq!(
        run_json(&host, &["damage", "dir", "--json"]),
        serde_json::json!([])
    );

    let other = host.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    run_json(
        &host,
        &[
            "ingest",
            other.to_str().unwrap(),
            "--name",
            "fresh",
            "--target",
            "imaged",
            "--json",
        ],
    );
    let early = host.run(&["damage", "fresh"]);
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("not enumerated yet"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let missing = host.run(&["damage", "no-such-medium"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no-such-medium"),
        "the error names what was asked for"
    );
}

/// `ntt archive`: a drive's image (with an unreadable area) archived with the raw kept, the
/// archive then damaged: the next run refuses to remove the raw image; archived again and the
/// raw removed, `ntt cat`, `ntt map --svg` and a re-enumeration (which restores the raw image
/// from the archive, checked against its digest) still work; a registered image file is never
/// archived.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_archived_image_is_checked_before_the_raw_goes_and_stages_still_read_it(pool: PgPool) {
    let host = Host::new(&pool).await;
    let content = host.root.join("archive-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("letter.txt"), "dear archive,\n".repeat(1000)).unwrap();
    std::fs::write(content.join("noise.bin"), disk_content(256 * 1024, 7)).unwrap();
    let image = host.root.join("archive-src.img");
    ext4(&image, 16 * MIB, &content);
    let size = std::fs::metadata(&image).unwrap().len();
    // The last 64 KiB (free space) cannot be read.
    let mut disk = FaultyDisk::start(
        std::fs::read(&image).unwrap(),
        Faults {
            bad: vec![size - 64 * 1024..size],
            ..Faults::default()
        },
    );
    let device = disk.attach();
    let report = run_json(
        &host,
        &[
            "ingest",
            device.to_str().unwrap(),
            "--name",
            "drive",
            "--json",
        ],
    );
    assert_eq!(report["accounting"]["copied"], 2, "{report}");
    disk.detach();
    let raw = host
        .root
        .join("images")
        .join(format!("{}.img", report["hash"].as_str().unwrap()));
    assert!(raw.is_file());
    let root = host.root.join("archive");
    std::fs::create_dir_all(&root).unwrap();
    let to = root.to_str().unwrap();

    // Archived, raw kept: written, read back, smaller.
    let archived = run_json(
        &host,
        &["archive", "drive", "--to", to, "--keep-raw", "--json"],
    );
    assert_eq!(archived["written"], true, "{archived}");
    assert_eq!(archived["raw_removed"], false);
    // The image file as ddrescue left it (its unread tail not written).
    assert_eq!(
        archived["image_bytes"],
        std::fs::metadata(&raw).unwrap().len()
    );
    assert!(archived["ratio"].as_f64().unwrap() > 2.0, "{archived}");
    let archive = PathBuf::from(archived["archive"].as_str().unwrap());
    assert!(raw.is_file());
    assert!(
        root.join(format!("{}.map.zst", report["hash"].as_str().unwrap()))
            .is_file()
    );
    // zstd(1) reads the archive as the image.
    let decompressed = Command::new("zstd")
        .args(["-d", "-q", "-c"])
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(decompressed.stdout, std::fs::read(&raw).unwrap());

    // Damaged before the raw image goes: the removal is refused.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(&archive, &bytes).unwrap();
    let refused = host.run(&["archive", "drive", "--to", to]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(raw.is_file(), "the raw image is kept");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not hold the image") || stderr.contains("cannot archive"),
        "{stderr}"
    );

    // Archived anew, the raw image removed.
    std::fs::remove_file(&archive).unwrap();
    let archived = run_json(&host, &["archive", "drive", "--to", to, "--json"]);
    assert_eq!(
        (&archived["written"], &archived["raw_removed"]),
        (&json!(true), &json!(true)),
        "{archived}"
    );
    assert!(!raw.exists());
    // `ntt verify --images` checks the archive now that it holds the image.
    let images = run_json(
        &host,
        &[
            "verify", "--medium", "drive", "--sample", "0", "--images", "--json",
        ],
    );
    assert_eq!(images["images"][0]["outcome"], "ok", "{images}");
    assert_eq!(images["images"][0]["path"], archived["archive"], "{images}");
    // The store, the mapfile: no raw image needed.
    let cat = host.run(&["cat", "drive", "letter.txt"]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, "dear archive,\n".repeat(1000).as_bytes());
    let svg = host.root.join("drive.svg");
    let map = host.run(&["map", "drive", "--svg", svg.to_str().unwrap()]);
    assert!(
        map.status.success(),
        "{}",
        String::from_utf8_lossy(&map.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // Enumerating again reads the raw image: restored from the archive first.
    let again = run_json(&host, &["enumerate", "drive", "--replace", "--json"]);
    assert!(raw.is_file(), "restored: {again}");
    assert_eq!(
        blake3::hash(&std::fs::read(&raw).unwrap()),
        blake3::hash(&decompressed.stdout),
        "the image as it was"
    );
    let unmounted = host.run(&["unmount", "drive"]);
    assert!(unmounted.status.success());
    // The archive checked again, the raw image removed again; then the drive comes back and
    // is imaged again: its raw image is restored before ddrescue goes on in it.
    let archived = run_json(&host, &["archive", "drive", "--to", to, "--json"]);
    assert_eq!(
        (&archived["written"], &archived["raw_removed"]),
        (&json!(false), &json!(true)),
        "{archived}"
    );
    let device = disk.attach();
    let imaged = host.run(&["image", device.to_str().unwrap(), "--json"]);
    assert!(
        imaged.status.success(),
        "{}",
        String::from_utf8_lossy(&imaged.stderr)
    );
    disk.detach();
    assert_eq!(
        blake3::hash(&std::fs::read(&raw).unwrap()),
        blake3::hash(&decompressed.stdout),
        "re-imaging went on in the restored image"
    );

    // A registered image file is the evidence itself.
    let registered = host.root.join("given.img");
    ext4(&registered, 8 * MIB, &content);
    register(&host, &registered, "given");
    let refused = host.run(&["archive", "given", "--to", to]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("never archived"));
    assert!(registered.is_file());
}
