//! Filesystem probing with `blkid -p` at an offset of an image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem type, as probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// Linux ext2.
    Ext2,
    /// Linux ext3.
    Ext3,
    /// Linux ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// exFAT.
    Exfat,
    /// NTFS.
    Ntfs,
    /// Apple HFS.
    Hfs,
    /// Apple HFS+.
    Hfsplus,
    /// ISO 9660 (with or without Joliet/Rock Ridge).
    Iso9660,
    /// UDF.
    Udf,
    /// squashfs.
    Squashfs,
    /// EROFS.
    Erofs,
    /// APFS container (no reader on most hosts).
    Apfs,
    /// Linux swap: recorded, never mounted.
    Swap,
    /// Nothing recognised.
    Unknown,
}

impl FsType {
    /// The catalog name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ext2 => "ext2",
            Self::Ext3 => "ext3",
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
            Self::Btrfs => "btrfs",
            Self::Fat12 => "fat12",
            Self::Fat16 => "fat16",
            Self::Fat32 => "fat32",
            Self::Exfat => "exfat",
            Self::Ntfs => "ntfs",
            Self::Hfs => "hfs",
            Self::Hfsplus => "hfsplus",
            Self::Iso9660 => "iso9660",
            Self::Udf => "udf",
            Self::Squashfs => "squashfs",
            Self::Erofs => "erofs",
            Self::Apfs => "apfs",
            Self::Swap => "swap",
            Self::Unknown => "unknown",
        }
    }

    /// The type with this catalog name (the inverse of [`FsType::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        const ALL: [FsType; 19] = [
            FsType::Ext2,
            FsType::Ext3,
            FsType::Ext4,
            FsType::Xfs,
            FsType::Btrfs,
            FsType::Fat12,
            FsType::Fat16,
            FsType::Fat32,
            FsType::Exfat,
            FsType::Ntfs,
            FsType::Hfs,
            FsType::Hfsplus,
            FsType::Iso9660,
            FsType::Udf,
            FsType::Squashfs,
            FsType::Erofs,
            FsType::Apfs,
            FsType::Swap,
            FsType::Unknown,
        ];
        ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether the type holds files that can be read (swap and unknown do not).
    pub const fn is_filesystem(self) -> bool {
        !matches!(self, Self::Swap | Self::Unknown)
    }
}

/// What probing found at one offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    /// The filesystem type.
    pub fs_type: FsType,
    /// Its label, if any.
    pub label: Option<String>,
    /// Its UUID or serial, if any.
    pub uuid: Option<String>,
    /// blkid's `TYPE` as it printed it (`LVM2_member`, `crypto_LUKS`, ...), when it found one.
    pub type_name: Option<String>,
    /// blkid's `VERSION`, when it printed one.
    pub version: Option<String>,
}

impl Probe {
    /// Nothing recognised.
    pub const fn nothing() -> Self {
        Self {
            fs_type: FsType::Unknown,
            label: None,
            uuid: None,
            type_name: None,
            version: None,
        }
    }

    /// The name the catalog records: ours for a type we read, blkid's for one we do not, or
    /// `unknown`.
    pub fn catalog_name(&self) -> String {
        match (&self.type_name, self.fs_type) {
            (Some(name), FsType::Unknown) => name.clone(),
            (_, fs_type) => fs_type.as_str().to_owned(),
        }
    }
}

/// Why probing failed (not finding a filesystem is not a failure: it is [`FsType::Unknown`]).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// blkid could not be run.
    #[error("cannot run blkid (util-linux)")]
    Spawn {
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// blkid failed on the image.
    #[error("blkid failed on {path} at offset {offset}: {stderr}")]
    Failed {
        /// The image.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What it said.
        stderr: String,
    },
}

/// Probes the filesystem of `image` in `offset..offset + length`.
pub fn probe(image: &Path, offset: u64, length: u64) -> Result<Probe, ProbeError> {
    let output = Command::new("blkid")
        .args([
            "-p",
            "-o",
            "export",
            "-O",
            &offset.to_string(),
            "-S",
            &length.to_string(),
        ])
        .arg(image)
        .output()
        .map_err(|source| ProbeError::Spawn { source })?;
    match output.status.code() {
        Some(0) => Ok(from_export(&String::from_utf8_lossy(&output.stdout))),
        // 2: nothing recognised.
        Some(2) => Ok(Probe::nothing()),
        _ => Err(ProbeError::Failed {
            path: image.to_owned(),
            offset,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
    }
}

/// Reads `blkid -o export` output (KEY=value lines, values backslash-escaped) (pure).
pub fn from_export(text: &str) -> Probe {
    let fields: BTreeMap<&str, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key, unescape(value)))
        .collect();
    let get = |key: &str| fields.get(key).map(String::as_str);
    let fs_type = match (get("TYPE"), get("VERSION")) {
        (Some("ext2"), _) => FsType::Ext2,
        (Some("ext3"), _) => FsType::Ext3,
        (Some("ext4" | "ext4dev"), _) => FsType::Ext4,
        (Some("xfs"), _) => FsType::Xfs,
        (Some("btrfs"), _) => FsType::Btrfs,
        (Some("vfat" | "msdos"), Some("FAT12")) => FsType::Fat12,
        (Some("vfat" | "msdos"), Some("FAT16")) => FsType::Fat16,
        (Some("vfat" | "msdos"), _) => FsType::Fat32,
        (Some("exfat"), _) => FsType::Exfat,
        (Some("ntfs"), _) => FsType::Ntfs,
        (Some("hfs"), _) => FsType::Hfs,
        (Some("hfsplus"), _) => FsType::Hfsplus,
        (Some("iso9660"), _) => FsType::Iso9660,
        (Some("udf"), _) => FsType::Udf,
        (Some("squashfs"), _) => FsType::Squashfs,
        (Some("erofs"), _) => FsType::Erofs,
        (Some("apfs"), _) => FsType::Apfs,
        (Some("swap"), _) => FsType::Swap,
        _ => FsType::Unknown,
    };
    Probe {
        fs_type,
        label: get("LABEL").map(str::to_owned),
        uuid: get("UUID").map(str::to_owned),
        type_name: get("TYPE").map(str::to_owned),
        version: get("VERSION").map(str::to_owned),
    }
}

/// blkid's export format escapes characters with a backslash (`\ ` for a space).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_output_maps_fat_versions_and_unescapes_labels() {
        let probe = from_export(
            "DEVNAME=mbr.img\nSEC_TYPE=msdos\nLABEL=MY\\ DISK\nUUID=0251-D402\nVERSION=FAT16\nTYPE=vfat\n",
        );
        assert_eq!(probe.fs_type, FsType::Fat16);
        assert_eq!(probe.label.as_deref(), Some("MY DISK"));
        assert_eq!(probe.uuid.as_deref(), Some("0251-D402"));
        assert_eq!(
            from_export("TYPE=vfat\nVERSION=FAT32\n").fs_type,
            FsType::Fat32
        );
        assert_eq!(
            from_export("TYPE=vfat\nVERSION=FAT12\n").fs_type,
            FsType::Fat12
        );
        assert_eq!(from_export("TYPE=swap\n").fs_type, FsType::Swap);
        assert!(!FsType::Swap.is_filesystem());
        // A type we do not read keeps blkid's name in the catalog.
        let lvm = from_export("TYPE=LVM2_member\nVERSION=LVM2 001\nUUID=x\n");
        assert_eq!(lvm.fs_type, FsType::Unknown);
        assert_eq!(lvm.catalog_name(), "LVM2_member");
        assert_eq!(lvm.version.as_deref(), Some("LVM2 001"));
        assert_eq!(probe.catalog_name(), "fat16");
        assert_eq!(Probe::nothing().catalog_name(), "unknown");
    }

    use crate::fixtures::fixture;

    #[test]
    fn third_party_volumes_probe_as_what_they_are() {
        let hfs = probe(&fixture("hfsplus.raw"), 0, 4_153_344).unwrap();
        assert_eq!(hfs.fs_type, FsType::Hfsplus);
        assert_eq!(hfs.label.as_deref(), Some("hfsplus_test"));
        assert_eq!(
            probe(&fixture("iso9660.raw"), 0, 366_592).unwrap().fs_type,
            FsType::Iso9660
        );
        assert_eq!(
            probe(&fixture("ímynd.dd"), 0, 102_400).unwrap().fs_type,
            FsType::Ext2
        );
    }

    #[test]
    fn empty_region_is_unknown_not_an_error() {
        let path = std::env::temp_dir().join(format!("ntt-probe-zeros-{}", std::process::id()));
        fs_err::write(&path, vec![0_u8; 1 << 20]).unwrap();
        assert_eq!(probe(&path, 0, 1 << 20).unwrap().fs_type, FsType::Unknown);
        fs_err::remove_file(&path).unwrap();
    }
}
