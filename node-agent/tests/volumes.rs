//! Volume discovery on images built at test time with Debian's tools (sfdisk, parted, mkfs,
//! genisoimage) and on the third-party fixtures. Reads image files only: no loop devices.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "test code: std::fs with unwrap is clear enough"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/db.rs"]
mod db;
#[path = "support/host.rs"]
mod host;

use host::{fixture, run};
use ntt_agent::volume::partitions::{Layout, Role, Scheme, discover};
use ntt_agent::volume::probe::FsType;

const MIB: u64 = 1 << 20;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ntt-volumes-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn image(&self, name: &str, size: u64) -> PathBuf {
        let path = self.0.join(name);
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sfdisk(image: &Path, script: &str) {
    host::partition(image, script.as_bytes());
}

fn mkfs_ext(kind: &str, image: &Path, offset_sectors: u64, sectors: u64, label: &str) {
    run(Command::new(format!("mkfs.{kind}"))
        .args([
            "-q",
            "-F",
            "-L",
            label,
            "-E",
            &format!("offset={}", offset_sectors * 512),
        ])
        .arg(image)
        .arg(format!("{}k", sectors / 2)));
}

fn mkfs_fat(image: &Path, offset_sectors: u64, sectors: u64, label: &str, fat_size: &str) {
    run(Command::new("mkfs.vfat")
        .args([
            "-F",
            fat_size,
            "-n",
            label,
            "--offset",
            &offset_sectors.to_string(),
        ])
        .arg(image)
        .arg((sectors / 2).to_string()));
}

fn summary(layout: &Layout) -> Vec<(Role, FsType, u64, Option<String>)> {
    layout
        .volumes
        .iter()
        .map(|v| (v.role, v.probe.fs_type, v.offset, v.probe.label.clone()))
        .collect()
}

#[test]
fn mbr_with_an_extended_partition_holding_two_logical_volumes() {
    let scratch = Scratch::new("mbr");
    let image = scratch.image("mbr.img", 64 * MIB);
    sfdisk(
        &image,
        "label: dos\nstart=2048, size=20480, type=83\nstart=22528, size=100000, type=5\n\
         start=24576, size=20480, type=83\nstart=47104, size=40960, type=b\n",
    );
    mkfs_ext("ext2", &image, 2048, 20480, "primary");
    mkfs_ext("ext4", &image, 24576, 20480, "logical1");
    mkfs_fat(&image, 47104, 40960, "LOGICAL2", "32");
    let layout = discover(&image).unwrap();
    assert_eq!(layout.scheme, Scheme::Mbr);
    assert_eq!(
        summary(&layout),
        [
            (
                Role::Filesystem,
                FsType::Ext2,
                2048 * 512,
                Some("primary".into())
            ),
            (Role::ExtendedContainer, FsType::Unknown, 22528 * 512, None),
            (
                Role::Filesystem,
                FsType::Ext4,
                24576 * 512,
                Some("logical1".into())
            ),
            (
                Role::Filesystem,
                FsType::Fat32,
                47104 * 512,
                Some("LOGICAL2".into())
            ),
        ]
    );
    assert_eq!(layout.volumes[0].length, 20480 * 512);
    assert_eq!(
        layout.volumes[0].partition_type.as_deref(),
        Some("Linux (0x83)")
    );
}

#[test]
fn gpt_volumes_are_probed_not_guessed_from_the_partition_type() {
    let scratch = Scratch::new("gpt");
    let image = scratch.image("gpt.img", 96 * MIB);
    // The second partition claims to be Linux swap but holds FAT32; the third is empty.
    sfdisk(
        &image,
        "label: gpt\nstart=2048, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"data\"\n\
         start=43008, size=81920, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n\
         start=124928, size=20480, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    mkfs_ext("ext4", &image, 2048, 40960, "gptdata");
    mkfs_fat(&image, 43008, 81920, "NOTSWAP", "32");
    let layout = discover(&image).unwrap();
    assert_eq!(layout.scheme, Scheme::Gpt);
    assert_eq!(
        summary(&layout),
        [
            (
                Role::Filesystem,
                FsType::Ext4,
                2048 * 512,
                Some("gptdata".into())
            ),
            (
                Role::Filesystem,
                FsType::Fat32,
                43008 * 512,
                Some("NOTSWAP".into())
            ),
            (Role::Blank, FsType::Unknown, 124_928 * 512, None),
        ]
    );
    assert_eq!(layout.volumes[0].partition_type.as_deref(), Some("data"));
    assert_eq!(layout.volumes[0].problem, None);
    assert!(
        layout.volumes[2]
            .problem
            .as_deref()
            .unwrap()
            .contains("is 0x00"),
        "{:?}",
        layout.volumes[2]
    );
}

#[test]
fn zip_disk_without_a_table_has_its_fat_at_16_kib() {
    let scratch = Scratch::new("zip");
    // A Zip-100 disk: 96 MiB, FAT16 starting 32 sectors in, no partition table.
    let image = scratch.image("zip.img", 96 * MIB);
    mkfs_fat(&image, 32, 96 * 2048 - 32, "ZIPDISK", "16");
    let layout = discover(&image).unwrap();
    assert_eq!(layout.scheme, Scheme::Zip);
    assert_eq!(
        summary(&layout),
        [(
            Role::Filesystem,
            FsType::Fat16,
            16384,
            Some("ZIPDISK".into())
        )]
    );
}

#[test]
fn hybrid_iso_with_an_apple_partition_map_yields_both_volumes() {
    let scratch = Scratch::new("hybrid");
    let content = scratch.0.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("report.txt"), b"evidence\n").unwrap();
    let image = scratch.0.join("hybrid.iso");
    run(Command::new("genisoimage")
        .args(["-quiet", "-hfs", "-part", "-J", "-R", "-V", "HYBRID", "-o"])
        .arg(&image)
        .arg(&content));
    let layout = discover(&image).unwrap();
    assert_eq!(layout.scheme, Scheme::Apm);
    let kinds: Vec<FsType> = layout.volumes.iter().map(|v| v.probe.fs_type).collect();
    assert_eq!(kinds, [FsType::Iso9660, FsType::Hfs]);
    assert_eq!(layout.volumes[0].offset, 0);
    assert_eq!(layout.volumes[0].partition_index, None);
    assert_eq!(
        layout.volumes[1].partition_type.as_deref(),
        Some("Apple_HFS")
    );
}

#[test]
fn third_party_whole_disk_volumes() {
    for (name, expected) in [
        ("hfsplus.raw", FsType::Hfsplus),
        ("iso9660.raw", FsType::Iso9660),
        ("ímynd.dd", FsType::Ext2),
        ("apfs.raw", FsType::Apfs),
    ] {
        let layout = discover(&fixture(name)).unwrap();
        assert_eq!(layout.scheme, Scheme::None, "{name}");
        assert_eq!(layout.volumes.len(), 1, "{name}");
        assert_eq!(layout.volumes[0].probe.fs_type, expected, "{name}");
        assert_eq!(layout.volumes[0].offset, 0);
    }
}

#[test]
fn an_image_of_zeros_is_one_blank_volume_not_an_error() {
    let scratch = Scratch::new("zeros");
    let image = scratch.image("zeros.img", 4 * MIB);
    let layout = discover(&image).unwrap();
    assert_eq!(layout.scheme, Scheme::None);
    assert_eq!(summary(&layout), [(Role::Blank, FsType::Unknown, 0, None)]);
    assert_eq!(layout.volumes[0].to_new_volume().fs_type, "unknown");
}

/// Fills `len` bytes of `image` at `offset` with what `fill` yields, 64 KiB at a time.
fn fill(image: &Path, offset: u64, len: u64, mut fill: impl FnMut(&mut [u8])) {
    use std::io::{Seek, SeekFrom, Write};
    let mut out = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    out.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0_u8; 64 * 1024];
    for _ in 0..len / buf.len() as u64 {
        fill(&mut buf);
        out.write_all(&buf).unwrap();
    }
}

#[test]
fn volumes_that_hold_no_filesystem_we_read_are_recorded_as_what_they_are() {
    let scratch = Scratch::new("kinds");
    let image = scratch.image("kinds.img", 64 * MIB);
    let part = |n: u64| (2048 + n * 16384) * 512;
    sfdisk(
        &image,
        "label: gpt\nstart=2048, size=16384\nstart=18432, size=16384\nstart=34816, size=16384\n\
         start=51200, size=16384\nstart=67584, size=16384\nstart=83968, size=16384\n",
    );
    // 0: LUKS2, made by cryptsetup (formatting a file needs no device-mapper).
    let luks = scratch.image("luks.img", 8 * MIB);
    std::fs::write(scratch.0.join("key"), "secret").unwrap();
    run(Command::new("cryptsetup")
        .args(["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2"])
        .args(["--pbkdf-force-iterations", "1000", "--key-file"])
        .arg(scratch.0.join("key"))
        .arg(&luks));
    host::place(&image, &luks, part(0));
    // 1: wiped with 0xF6 (a DoD-style pass); 2: random data.
    fill(&image, part(1), 8 * MIB, |buf| buf.fill(0xF6));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    fill(&image, part(2), 8 * MIB, |buf| {
        for chunk in buf.chunks_mut(8) {
            // xorshift64*: uniform enough for an entropy test, no dependency.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
    });
    // 3: swap.
    let swap = scratch.image("swap.img", 8 * MIB);
    run(Command::new("mkswap").arg(&swap));
    host::place(&image, &swap, part(3));
    // 4: text, neither blank nor random nor a filesystem.
    fill(&image, part(4), 8 * MIB, |buf| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = b"minutes of the meeting "[i % 23];
        }
    });
    // 5: ext4, read as usual.
    mkfs_ext("ext4", &image, 83968, 16384, "data");
    let layout = discover(&image).unwrap();
    let kinds: Vec<(Role, String)> = layout
        .volumes
        .iter()
        .map(|v| (v.role, v.to_new_volume().fs_type))
        .collect();
    assert_eq!(
        kinds,
        [
            (Role::Encrypted, "crypto_LUKS".to_owned()),
            (Role::Blank, "unknown".to_owned()),
            (Role::Encrypted, "unknown".to_owned()),
            (Role::Swap, "swap".to_owned()),
            (Role::Unknown, "unknown".to_owned()),
            (Role::Filesystem, "ext4".to_owned()),
        ]
    );
    let problem = |i: usize| layout.volumes[i].problem.clone().unwrap_or_default();
    assert!(problem(0).contains("LUKS version 2"), "{}", problem(0));
    assert!(problem(1).contains("0xf6"), "{}", problem(1));
    assert!(problem(2).contains("random-looking"), "{}", problem(2));
    assert!(problem(3).contains("swap"), "{}", problem(3));
    assert!(
        problem(4).contains("neither blank nor random"),
        "{}",
        problem(4)
    );
    assert_eq!(layout.volumes[5].problem, None);
}

/// The fixtures are the third-party images their README describes, byte for byte.
#[test]
fn fixtures_are_the_pinned_third_party_images() {
    let output = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(host::fixtures_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let checked = String::from_utf8_lossy(&output.stdout)
        .matches(": OK")
        .count();
    assert_eq!(checked, 10, "every fixture is pinned");
}
