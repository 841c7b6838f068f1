//! What a volume that holds no filesystem we read is: encrypted, a member of a volume group or
//! array, swap, blank (one fill byte), random-looking, or unknown; and the problem recorded with
//! it, so that `ntt volumes` says why it was not read.
//!
//! Rules: a blkid signature decides first (`crypto_LUKS`, `BitLocker`, `LVM2_member`,
//! `linux_raid_member`, ...); without one the content is sampled ([`SAMPLE_WINDOWS`] windows of
//! [`SAMPLE_WINDOW`] bytes spread evenly over the volume): a single byte value everywhere is
//! blank, Shannon entropy above [`RANDOM_BITS`] bits per byte is random (an encrypted volume
//! without a header, or a wipe with random data).

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::partitions::Role;
use super::probe::{FsType, Probe};

/// Bytes read per sample window.
pub const SAMPLE_WINDOW: u64 = 64 * 1024;
/// Sample windows per volume (16 MiB in all).
pub const SAMPLE_WINDOWS: u64 = 256;
/// Entropy above which content counts as random (bits per byte; random data scores 7.999+ on a
/// megabyte, compressed files and filesystems well below once any metadata is sampled).
pub const RANDOM_BITS: f64 = 7.99;
/// Fewest sampled bytes on which entropy is judged.
const RANDOM_MIN_SAMPLE: usize = 64 * 1024;

/// What the sampled content of a volume looks like.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Content {
    /// Every sampled byte has this value.
    Fill(u8),
    /// High entropy: these bits per byte.
    Random(f64),
    /// Anything else (or nothing sampled).
    Other,
}

/// Judges a sample (pure).
pub fn content_of(sample: &[u8]) -> Content {
    let Some(&first) = sample.first() else {
        return Content::Other;
    };
    if sample.iter().all(|&b| b == first) {
        return Content::Fill(first);
    }
    if sample.len() < RANDOM_MIN_SAMPLE {
        return Content::Other;
    }
    let mut counts = [0_u64; 256];
    for &b in sample {
        counts[usize::from(b)] += 1;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "sample sizes are far below 2^52"
    )]
    let total = sample.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum();
    if bits > RANDOM_BITS {
        Content::Random(bits)
    } else {
        Content::Other
    }
}

/// Reads the sample windows of `image`'s `offset..offset + length` (the whole range when it is
/// smaller than the windows together).
pub fn sample(image: &Path, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    let file = fs_err::File::open(image)?;
    let size = file.metadata()?.len();
    let end = offset.saturating_add(length).min(size);
    let length = end.saturating_sub(offset);
    let windows = SAMPLE_WINDOWS.min(length.div_ceil(SAMPLE_WINDOW));
    let mut out = Vec::new();
    for i in 0..windows {
        // Spread from the first window to the last, which ends at the volume's end.
        let start = if windows > 1 {
            offset + (length.saturating_sub(SAMPLE_WINDOW)) * i / (windows - 1)
        } else {
            offset
        };
        let len = SAMPLE_WINDOW.min(end - start);
        let mut buf = vec![0_u8; usize::try_from(len).unwrap_or(0)];
        file.file().read_exact_at(&mut buf, start)?;
        out.extend_from_slice(&buf);
    }
    Ok(out)
}

/// A volume's role and the problem recorded with it (pure). `content` is asked only for a
/// volume without any signature.
pub fn classify(
    probe: &Probe,
    content: impl FnOnce() -> (Content, usize),
) -> (Role, Option<String>) {
    if probe.fs_type == FsType::Swap {
        return (
            Role::Swap,
            Some(
                "swap space: holds no files (it may hold fragments of memory, kept in the image)"
                    .to_owned(),
            ),
        );
    }
    if probe.fs_type.is_filesystem() {
        return (Role::Filesystem, None);
    }
    let version = probe
        .version
        .as_deref()
        .map(|v| format!(" version {v}"))
        .unwrap_or_default();
    match probe.type_name.as_deref() {
        Some("crypto_LUKS") => (
            Role::Encrypted,
            Some(format!(
                "encrypted (LUKS{version}): not read, its contents need the passphrase or key"
            )),
        ),
        Some("BitLocker") => (
            Role::Encrypted,
            Some(format!(
                "encrypted (BitLocker{version}): not read, its contents need the password or \
                 recovery key"
            )),
        ),
        Some("LVM2_member") => (
            Role::Member,
            Some(
                "LVM2 physical volume: its logical volumes are not read yet (the image keeps them)"
                    .to_owned(),
            ),
        ),
        Some("linux_raid_member") => (
            Role::Member,
            Some(format!(
                "member of an md RAID array{version}: the array is not assembled yet (the image \
                 keeps it)"
            )),
        ),
        Some(name) if name.ends_with("_member") => (
            Role::Member,
            Some(format!(
                "member of a volume group, pool or array ({name}): not read (the image keeps it)"
            )),
        ),
        Some(name) => (
            Role::Unknown,
            Some(format!(
                "blkid finds {name}, which NTT does not read (the image keeps it)"
            )),
        ),
        None => {
            let (content, sampled) = content();
            let sampled = format!("{} KiB", sampled / 1024);
            match content {
                Content::Fill(byte) => (
                    Role::Blank,
                    Some(format!(
                        "blank: every byte sampled ({sampled} across the volume) is 0x{byte:02x}: \
                         wiped or never written"
                    )),
                ),
                Content::Random(bits) => (
                    Role::Encrypted,
                    Some(format!(
                        "no signature and random-looking content ({bits:.3} bits per byte over \
                         {sampled} sampled): encrypted without a header (VeraCrypt, TrueCrypt, \
                         plain dm-crypt) or wiped with random data"
                    )),
                ),
                Content::Other => (
                    Role::Unknown,
                    Some(
                        "no filesystem signature, and the content is neither blank nor random: \
                         damaged, or a type blkid does not know (the image keeps it)"
                            .to_owned(),
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::probe::from_export;

    fn never() -> (Content, usize) {
        panic!("a volume with a signature is not sampled")
    }

    #[test]
    fn fill_patterns_random_and_other_content() {
        assert_eq!(content_of(&[0_u8; 4096]), Content::Fill(0));
        assert_eq!(content_of(&[0xF6_u8; 100]), Content::Fill(0xF6));
        assert_eq!(content_of(&[]), Content::Other);
        // Every byte value equally often: exactly 8 bits per byte.
        let uniform: Vec<u8> = (0..1 << 20).map(|i: u32| i.to_le_bytes()[0]).collect();
        assert!(matches!(content_of(&uniform), Content::Random(bits) if bits > 7.999));
        // Text is far from random.
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(4096);
        assert_eq!(content_of(&text), Content::Other);
        // A short sample is never judged random.
        assert_eq!(content_of(&uniform[..4096]), Content::Other);
    }

    #[test]
    fn signatures_decide_before_content() {
        let (role, problem) = classify(&from_export("TYPE=crypto_LUKS\nVERSION=2\n"), never);
        assert_eq!(role, Role::Encrypted);
        assert!(problem.unwrap().contains("LUKS version 2"));
        assert_eq!(
            classify(&from_export("TYPE=BitLocker\n"), never).0,
            Role::Encrypted
        );
        let (role, problem) = classify(&from_export("TYPE=LVM2_member\n"), never);
        assert_eq!(role, Role::Member);
        assert!(problem.unwrap().contains("LVM2 physical volume"));
        assert_eq!(
            classify(&from_export("TYPE=linux_raid_member\n"), never).0,
            Role::Member
        );
        assert_eq!(
            classify(&from_export("TYPE=zfs_member\n"), never).0,
            Role::Member
        );
        let (role, problem) = classify(&from_export("TYPE=jfs\n"), never);
        assert_eq!(role, Role::Unknown);
        assert!(problem.unwrap().contains("jfs"));
        assert_eq!(classify(&from_export("TYPE=swap\n"), never).0, Role::Swap);
        assert_eq!(
            classify(&from_export("TYPE=ext4\n"), never),
            (Role::Filesystem, None)
        );
    }

    #[test]
    fn content_decides_without_a_signature() {
        let nothing = Probe::nothing();
        let (role, problem) = classify(&nothing, || (Content::Fill(0x55), 1 << 24));
        assert_eq!(role, Role::Blank);
        assert!(problem.unwrap().contains("0x55"));
        let (role, problem) = classify(&nothing, || (Content::Random(7.9999), 1 << 24));
        assert_eq!(role, Role::Encrypted);
        assert!(problem.unwrap().contains("random-looking"));
        assert_eq!(
            classify(&nothing, || (Content::Other, 1 << 24)).0,
            Role::Unknown
        );
    }

    #[test]
    fn samples_spread_over_the_volume_and_stop_at_its_end() {
        let path = std::env::temp_dir().join(format!("ntt-sample-{}", std::process::id()));
        // 1 MiB of 0xF6 with one byte of 0x00 in the last window.
        let mut bytes = vec![0xF6_u8; 1 << 20];
        bytes[(1 << 20) - 1] = 0;
        fs_err::write(&path, &bytes).unwrap();
        let all = sample(&path, 0, 1 << 20).unwrap();
        assert_eq!(
            all.len(),
            1 << 20,
            "a volume smaller than the windows is read whole"
        );
        assert_eq!(content_of(&all), Content::Other);
        // The first half only: blank.
        let half = sample(&path, 0, 1 << 19).unwrap();
        assert_eq!(content_of(&half), Content::Fill(0xF6));
        // A length beyond the file stops at its end.
        assert_eq!(sample(&path, 1 << 19, 1 << 30).unwrap().len(), 1 << 19);
        fs_err::remove_file(&path).unwrap();
    }
}
