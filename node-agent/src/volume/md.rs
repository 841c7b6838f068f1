//! md RAID members read without the md driver: a RAID1 member (or the only member of a linear
//! array) holds the array's data whole at its superblock's data offset, so that range of the
//! image is a volume of its own. A degraded mirror reads from the member that is there.
//!
//! Rules: the version-1 superblock (1.0 at the end, 1.1 at the start, 1.2 at 4 KiB) and the
//! 0.90 one (64 KiB-aligned, 64 KiB before the end) are found by their magic; the version-1
//! checksum must be right; every offset is checked against the member's size; other levels
//! (RAID0, 4, 5, 6, 10, a linear array of several members) are recorded with why they are not
//! read.

use std::os::unix::fs::FileExt;
use std::path::Path;

/// The md superblock magic.
pub const MAGIC: u32 = 0xa92b_4efc;

/// What a member's superblock says, as far as reading goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The array's name (version 1) or its UUID's first word (0.90).
    pub name: String,
    /// RAID level (1 mirror, -1 linear, 0 stripe, ...).
    pub level: i32,
    /// Devices in the array.
    pub raid_disks: u32,
    /// The array's data on this member: offset from the member's first byte, length.
    pub data: (u64, u64),
}

impl Member {
    /// The data as a volume, or why it is not read.
    pub fn readable(&self) -> Result<(u64, u64), String> {
        match (self.level, self.raid_disks) {
            (1, _) | (-1, 1) => Ok(self.data),
            (-1, n) => Err(format!("a linear array of {n} members (not assembled yet)")),
            (level, n) => Err(format!("RAID{level} of {n} members (not assembled yet)")),
        }
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The version-1 superblock checksum of `sb` (its `sb_csum` field taken as zero) (pure).
pub fn checksum_v1(sb: &[u8]) -> u32 {
    let max_dev = usize::try_from(u32_at(sb, 220)).unwrap_or(usize::MAX);
    let size = max_dev.saturating_mul(2).saturating_add(256).min(sb.len());
    let mut sum: u64 = 0;
    let mut at = 0;
    while at + 4 <= size {
        if at != 216 {
            sum += u64::from(u32_at(sb, at));
        }
        at += 4;
    }
    if at + 2 <= size {
        sum += u64::from(u16::from_le_bytes([sb[at], sb[at + 1]]));
    }
    let folded = (sum & 0xffff_ffff) + (sum >> 32);
    u32::try_from(folded & 0xffff_ffff).unwrap_or(0)
}

/// Reads a version-1 superblock found at `sb_at` of a member of `size` bytes (pure).
pub fn parse_v1(sb: &[u8], size: u64) -> Result<Member, String> {
    if u32_at(sb, 0) != MAGIC || u32_at(sb, 4) != 1 {
        return Err("no version-1 superblock".to_owned());
    }
    if checksum_v1(sb) != u32_at(sb, 216) {
        return Err("the superblock's checksum is wrong".to_owned());
    }
    let name_bytes = sb.get(32..64).unwrap_or_default();
    let name = String::from_utf8_lossy(name_bytes.split(|&b| b == 0).next().unwrap_or_default())
        .into_owned();
    let level = i32::from_le_bytes(u32_at(sb, 72).to_le_bytes());
    let used = u64_at(sb, 80);
    let offset = u64_at(sb, 128).saturating_mul(512);
    let data_size = u64_at(sb, 136);
    let length = if used > 0 { used } else { data_size }.saturating_mul(512);
    if offset.saturating_add(length) > size || length == 0 {
        return Err(format!(
            "its data ({offset} + {length} bytes) does not fit the member ({size} bytes)"
        ));
    }
    Ok(Member {
        name,
        level,
        raid_disks: u32_at(sb, 92),
        data: (offset, length),
    })
}

/// Reads a 0.90 superblock (pure): data from the member's first byte.
pub fn parse_v090(sb: &[u8], size: u64) -> Result<Member, String> {
    if u32_at(sb, 0) != MAGIC || u32_at(sb, 4) != 0 {
        return Err("no 0.90 superblock".to_owned());
    }
    let level = i32::from_le_bytes(u32_at(sb, 28).to_le_bytes());
    let length = u64::from(u32_at(sb, 32)).saturating_mul(1024);
    if length == 0 || length > size {
        return Err(format!("its data ({length} bytes) does not fit the member"));
    }
    Ok(Member {
        name: format!("{:08x}", u32_at(sb, 20)),
        level,
        raid_disks: u32_at(sb, 40),
        data: (0, length),
    })
}

/// Finds and reads the superblock of the member at `offset..offset + length` of `image`.
pub fn read_member(image: &Path, offset: u64, length: u64) -> Result<Member, String> {
    let file = fs_err::File::open(image).map_err(|e| e.to_string())?;
    let read = |at: u64| -> Option<Vec<u8>> {
        let mut buf = vec![0_u8; 4096];
        (at + 4096 <= length)
            .then(|| file.file().read_exact_at(&mut buf, offset + at).ok())
            .flatten()
            .map(|()| buf)
    };
    let v1_end = length.saturating_sub(8192) & !4095;
    let mut why = Vec::new();
    for at in [4096, 0, v1_end] {
        if let Some(sb) = read(at) {
            match parse_v1(&sb, length) {
                Ok(member) => return Ok(member),
                Err(error) if u32_at(&sb, 0) == MAGIC => why.push(error),
                Err(_) => {}
            }
        }
    }
    let v090 = (length & !65535).saturating_sub(65536);
    if let Some(sb) = read(v090) {
        match parse_v090(&sb, length) {
            Ok(member) => return Ok(member),
            Err(error) if u32_at(&sb, 0) == MAGIC => why.push(error),
            Err(_) => {}
        }
    }
    Err(if why.is_empty() {
        "no md superblock found".to_owned()
    } else {
        why.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 superblock as mdadm writes one (the fields read here).
    fn superblock(level: i32, raid_disks: u32, data_offset: u64, size: u64) -> Vec<u8> {
        let mut sb = vec![0_u8; 4096];
        sb[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        sb[4..8].copy_from_slice(&1_u32.to_le_bytes());
        sb[32..39].copy_from_slice(b"host:md");
        sb[72..76].copy_from_slice(&level.to_le_bytes());
        sb[80..88].copy_from_slice(&size.to_le_bytes());
        sb[92..96].copy_from_slice(&raid_disks.to_le_bytes());
        sb[128..136].copy_from_slice(&data_offset.to_le_bytes());
        sb[136..144].copy_from_slice(&size.to_le_bytes());
        sb[220..224].copy_from_slice(&2_u32.to_le_bytes());
        let sum = checksum_v1(&sb);
        sb[216..220].copy_from_slice(&sum.to_le_bytes());
        sb
    }

    #[test]
    fn a_mirror_member_holds_its_data_at_the_data_offset() {
        let member = parse_v1(&superblock(1, 2, 2048, 8192), 8 << 20).unwrap();
        assert_eq!(member.name, "host:md");
        assert_eq!(member.readable(), Ok((1 << 20, 4 << 20)));
        let linear = parse_v1(&superblock(-1, 1, 2048, 8192), 8 << 20).unwrap();
        assert!(linear.readable().is_ok());
        let stripe = parse_v1(&superblock(0, 2, 2048, 8192), 8 << 20).unwrap();
        assert!(stripe.readable().unwrap_err().contains("RAID0"));
        let spread = parse_v1(&superblock(-1, 3, 2048, 8192), 8 << 20).unwrap();
        assert!(spread.readable().unwrap_err().contains("linear array of 3"));
    }

    #[test]
    fn a_wrong_checksum_or_an_offset_beyond_the_member_is_refused() {
        let mut sb = superblock(1, 2, 2048, 8192);
        sb[100] ^= 1;
        assert!(parse_v1(&sb, 8 << 20).unwrap_err().contains("checksum"));
        let beyond = superblock(1, 2, 2048, 1 << 40);
        assert!(
            parse_v1(&beyond, 8 << 20)
                .unwrap_err()
                .contains("does not fit")
        );
        assert!(parse_v1(&[0_u8; 4096], 8 << 20).is_err());
        assert!(parse_v1(&[], 8 << 20).is_err());
    }
}
