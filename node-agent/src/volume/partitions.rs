//! Partition discovery on an image: `mmls` for the table, `blkid` for each filesystem.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::classify;
use super::lvm;
use super::md;
use super::probe::{self, FsType, Probe, ProbeError};

/// How an image is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// No partition table: the whole image is one volume.
    None,
    /// DOS/MBR, with extended and logical partitions.
    Mbr,
    /// GUID partition table.
    Gpt,
    /// Apple partition map.
    Apm,
    /// No table, a filesystem at byte 16384 (Zip disks).
    Zip,
}

/// One entry of `mmls` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmlsEntry {
    /// `Meta`, `-------` (unallocated), or the partition's slot (`000`, `001:000`).
    pub slot: String,
    /// First sector.
    pub start: u64,
    /// Sectors.
    pub length: u64,
    /// Type or name, as mmls describes it.
    pub description: String,
}

/// A parsed `mmls` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmlsTable {
    /// The scheme mmls recognised.
    pub scheme: Scheme,
    /// Bytes per sector in the listing.
    pub sector_size: u64,
    /// The entries, in order.
    pub entries: Vec<MmlsEntry>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// mmls could not be run.
    #[error("cannot run mmls (The Sleuth Kit; `scripts/setup` installs it)")]
    Spawn {
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// mmls printed something this parser does not understand.
    #[error("unexpected mmls output for {path}: {reason}")]
    Parse {
        /// The image.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The image size could not be read.
    #[error("cannot read the size of {path}")]
    Size {
        /// The image.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Probing a volume failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Parses `mmls` output (pure).
pub fn parse_mmls(text: &str) -> Result<MmlsTable, String> {
    let mut lines = text.lines();
    let heading = lines.next().ok_or("empty output")?.trim();
    let scheme = if heading.starts_with("DOS Partition Table") {
        Scheme::Mbr
    } else if heading.starts_with("GUID Partition Table") {
        Scheme::Gpt
    } else if heading.starts_with("MAC Partition Map") {
        Scheme::Apm
    } else {
        return Err(format!("unsupported partition scheme {heading:?}"));
    };
    let mut sector_size = 512;
    let mut entries = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Units are in ") {
            sector_size = rest
                .split('-')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("bad units line {line:?}"))?;
            continue;
        }
        // "002:  000:000   0000002048   0000022527   0000020480   Linux (0x83)"
        let Some((index, rest)) = line.split_once(':') else {
            continue;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut fields = rest.split_whitespace();
        let (Some(slot), Some(start), Some(_end), Some(length)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("short entry {line:?}"));
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number in {line:?}"))
        };
        entries.push(MmlsEntry {
            slot: slot.to_owned(),
            start: number(start)?,
            length: number(length)?,
            description: fields.collect::<Vec<_>>().join(" "),
        });
    }
    Ok(MmlsTable {
        scheme,
        sector_size,
        entries,
    })
}

/// What a discovered volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A filesystem to read.
    Filesystem,
    /// An extended partition: a container of logical partitions, recorded, never mounted.
    ExtendedContainer,
    /// Swap: recorded, never mounted.
    Swap,
    /// Encrypted (LUKS, `BitLocker`, or random-looking without a signature): recorded, not read.
    Encrypted,
    /// A member of an LVM volume group, md array or other pool: recorded, not read.
    Member,
    /// One fill byte everywhere (wiped or never written): recorded, nothing to read.
    Blank,
    /// Nothing recognised (damaged, or a type we do not read): recorded, never mounted.
    Unknown,
    /// The deleted entries of a filesystem volume (the same bytes), read with The Sleuth Kit.
    Deleted,
}

/// A volume found on an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FoundVolume {
    /// Position in the partition table as mmls numbers it (`None`: whole disk or Zip offset).
    pub partition_index: Option<u32>,
    /// Byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// The partition's type or name from the table.
    pub partition_type: Option<String>,
    /// What it is.
    pub role: Role,
    /// What probing found.
    pub probe: Probe,
    /// Why it is not read (for every role but filesystem; extended containers have none).
    pub problem: Option<String>,
}

/// The volumes of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    /// How the image is divided.
    pub scheme: Scheme,
    /// The volumes, in disk order (a whole-disk filesystem of a hybrid disc first).
    pub volumes: Vec<FoundVolume>,
}

/// Where a Zip disk's FAT starts when it has no partition table.
pub const ZIP_FAT_OFFSET: u64 = 16384;

/// Finds the partitions of `image` and probes each one's filesystem.
pub fn discover(image: &Path) -> Result<Layout, DiscoverError> {
    let size = fs_err::metadata(image)
        .map_err(|e| DiscoverError::Size {
            path: image.to_owned(),
            source: e,
        })?
        .len();
    let output = Command::new("mmls")
        .arg(image)
        .output()
        .map_err(|source| DiscoverError::Spawn { source })?;
    let whole = probe::probe(image, 0, size)?;
    if !output.status.success() {
        // No partition table mmls knows.
        if !whole.fs_type.is_filesystem() && size > ZIP_FAT_OFFSET {
            let zip = probe::probe(image, ZIP_FAT_OFFSET, size - ZIP_FAT_OFFSET)?;
            if matches!(zip.fs_type, FsType::Fat12 | FsType::Fat16 | FsType::Fat32) {
                return Ok(Layout {
                    scheme: Scheme::Zip,
                    volumes: vec![volume(
                        image,
                        None,
                        ZIP_FAT_OFFSET,
                        size - ZIP_FAT_OFFSET,
                        None,
                        zip,
                    )],
                });
            }
        }
        return Ok(Layout {
            scheme: Scheme::None,
            volumes: with_containers(image, vec![volume(image, None, 0, size, None, whole)]),
        });
    }
    let table = parse_mmls(&String::from_utf8_lossy(&output.stdout)).map_err(|reason| {
        DiscoverError::Parse {
            path: image.to_owned(),
            reason,
        }
    })?;
    let mut volumes = Vec::new();
    // A hybrid disc: the whole disk is ISO 9660 (or UDF) and the table holds more volumes.
    if matches!(whole.fs_type, FsType::Iso9660 | FsType::Udf) {
        volumes.push(volume(image, None, 0, size, None, whole));
    }
    let mut containers: Vec<(u64, u64)> = Vec::new();
    for (index, entry) in table.entries.iter().enumerate() {
        let offset = entry.start * table.sector_size;
        let length = entry.length * table.sector_size;
        let inside_container = containers
            .iter()
            .any(|(start, end)| offset >= *start && offset + length <= *end);
        let is_extended = entry.slot == "Meta" && entry.description.contains("Extended (0x");
        if is_extended {
            if !inside_container {
                containers.push((offset, offset + length));
                volumes.push(FoundVolume {
                    partition_index: u32::try_from(index).ok(),
                    offset,
                    length,
                    partition_type: Some(entry.description.clone()),
                    role: Role::ExtendedContainer,
                    probe: Probe::nothing(),
                    problem: None,
                });
            }
            continue;
        }
        let allocated = entry.slot != "Meta" && !entry.slot.starts_with('-');
        let map_bookkeeping = matches!(
            entry.description.as_str(),
            "Apple_Free" | "Apple_partition_map"
        );
        if !allocated || map_bookkeeping || length == 0 || offset >= size {
            continue;
        }
        let length = length.min(size - offset);
        let found = probe::probe(image, offset, length)?;
        volumes.push(volume(
            image,
            u32::try_from(index).ok(),
            offset,
            length,
            Some(entry.description.clone()),
            found,
        ));
    }
    Ok(Layout {
        scheme: table.scheme,
        volumes: with_containers(image, volumes),
    })
}

/// The volumes with what volume-group members hold inserted after each: an LVM2 physical
/// volume's linear logical volumes ([`lvm`]), an md RAID1 or single-member linear array's data
/// ([`md`]). What cannot be read is said in the member's problem.
fn with_containers(image: &Path, volumes: Vec<FoundVolume>) -> Vec<FoundVolume> {
    let mut out = Vec::with_capacity(volumes.len());
    for mut found in volumes {
        let inner = match found.probe.type_name.as_deref() {
            Some("LVM2_member") => lvm_volumes(image, &mut found),
            Some("linux_raid_member") => md_volumes(image, &mut found),
            _ => Vec::new(),
        };
        out.push(found);
        out.extend(inner);
    }
    out
}

/// A volume a member holds (an LVM logical volume, an md array's data), named `name`, probed
/// and classified like a partition (a probe that fails counts as nothing found).
fn held_volume(image: &Path, offset: u64, length: u64, name: String) -> FoundVolume {
    let probed = probe::probe(image, offset, length).unwrap_or_else(|error| {
        tracing::warn!(volume = %name, %error, "cannot probe the volume");
        Probe::nothing()
    });
    volume(image, None, offset, length, Some(name), probed)
}

/// The array's data on an md member, when it holds it whole (RAID1, a one-member linear
/// array); the member's problem says which array it belongs to and whether it is read.
fn md_volumes(image: &Path, member: &mut FoundVolume) -> Vec<FoundVolume> {
    let found = match md::read_member(image, member.offset, member.length) {
        Ok(found) => found,
        Err(why) => {
            member.problem = Some(format!("md RAID member: {why}"));
            return Vec::new();
        }
    };
    let kind = match found.level {
        -1 => "linear".to_owned(),
        level => format!("RAID{level}"),
    };
    match found.readable() {
        Ok((offset, length)) => {
            let offset = member.offset + offset;
            member.problem = Some(format!(
                "member of the md {kind} array {} ({} devices): the array's data on it is \
                 read as the next volume",
                found.name, found.raid_disks
            ));
            vec![held_volume(
                image,
                offset,
                length,
                format!("md {kind} {}", found.name),
            )]
        }
        Err(why) => {
            member.problem = Some(format!(
                "member of the md {kind} array {}: not read: {why}",
                found.name
            ));
            Vec::new()
        }
    }
}

/// The linear logical volumes on an LVM2 physical volume; the PV's problem lists them.
fn lvm_volumes(image: &Path, pv: &mut FoundVolume) -> Vec<FoundVolume> {
    let (uuid, metadata) = match lvm::read_pv(image, pv.offset, pv.length) {
        Ok(read) => read,
        Err(error) => {
            pv.problem = Some(format!("LVM2 physical volume: {error}"));
            return Vec::new();
        }
    };
    let mut read = Vec::new();
    let mut not_read = Vec::new();
    let mut out = Vec::new();
    for lv in lvm::logical_volumes(&metadata, &uuid, pv.length) {
        match lv.extent {
            Ok((offset, length)) => {
                let offset = pv.offset + offset;
                out.push(held_volume(
                    image,
                    offset,
                    length,
                    format!("LVM2 {}", lv.name),
                ));
                read.push(lv.name);
            }
            Err(why) => not_read.push(format!("{} ({why})", lv.name)),
        }
    }
    let mut parts = Vec::new();
    if !read.is_empty() {
        parts.push(format!(
            ": its logical volumes {} are read as volumes of their own",
            read.join(", ")
        ));
    }
    if !not_read.is_empty() {
        parts.push(format!("; not read: {}", not_read.join("; ")));
    }
    if parts.is_empty() {
        parts.push(": no logical volume on it".to_owned());
    }
    let problem = format!("LVM2 physical volume{}", parts.concat());
    pv.problem = Some(problem);
    out
}

/// A found volume, classified ([`classify::classify`]; a volume without a signature is
/// sampled, and one that cannot be read counts as unknown content).
fn volume(
    image: &Path,
    partition_index: Option<u32>,
    offset: u64,
    length: u64,
    partition_type: Option<String>,
    probe: Probe,
) -> FoundVolume {
    let (role, problem) =
        classify::classify(&probe, || match classify::sample(image, offset, length) {
            Ok(sample) => (classify::content_of(&sample), sample.len()),
            Err(error) => {
                tracing::warn!(offset, %error, "cannot sample the volume's content");
                (classify::Content::Other, 0)
            }
        });
    FoundVolume {
        partition_index,
        offset,
        length,
        partition_type: partition_type.filter(|t| !t.is_empty()),
        role,
        probe,
        problem,
    }
}

impl From<Scheme> for crate::catalog::volumes::SchemeValue {
    fn from(value: Scheme) -> Self {
        match value {
            Scheme::None => Self::None,
            Scheme::Mbr => Self::Mbr,
            Scheme::Gpt => Self::Gpt,
            Scheme::Apm => Self::Apm,
            Scheme::Zip => Self::Zip,
        }
    }
}

impl From<Role> for crate::catalog::volumes::RoleValue {
    fn from(value: Role) -> Self {
        match value {
            Role::Filesystem => Self::Filesystem,
            Role::ExtendedContainer => Self::ExtendedContainer,
            Role::Swap => Self::Swap,
            Role::Encrypted => Self::Encrypted,
            Role::Member => Self::Member,
            Role::Blank => Self::Blank,
            Role::Unknown => Self::Unknown,
            Role::Deleted => Self::Deleted,
        }
    }
}

impl FoundVolume {
    /// The volume as the catalog records it.
    pub fn to_new_volume(&self) -> crate::catalog::volumes::NewVolume {
        crate::catalog::volumes::NewVolume {
            partition_index: self.partition_index,
            offset: self.offset,
            length: self.length,
            partition_type: self.partition_type.clone(),
            fs_type: self.probe.catalog_name(),
            label: self.probe.label.clone(),
            uuid: self.probe.uuid.clone(),
            role: self.role.into(),
            problem: self.problem.clone(),
            parent: None,
        }
    }

    /// The volume of this filesystem's deleted entries, when The Sleuth Kit lists deleted
    /// entries of its type (every type it reads but ISO 9660, which deletes nothing); `number`
    /// is this volume's own number.
    pub fn deleted_view(&self, number: u32) -> Option<crate::catalog::volumes::NewVolume> {
        let lists_deleted = self.role == Role::Filesystem
            && super::tsk::tsk_type(self.probe.fs_type).is_some()
            && self.probe.fs_type != FsType::Iso9660;
        lists_deleted.then(|| crate::catalog::volumes::NewVolume {
            role: Role::Deleted.into(),
            partition_type: None,
            parent: Some(number),
            ..self.to_new_volume()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOS: &str = "DOS Partition Table
Offset Sector: 0
Units are in 512-byte sectors

      Slot      Start        End          Length       Description
000:  Meta      0000000000   0000000000   0000000001   Primary Table (#0)
001:  -------   0000000000   0000002047   0000002048   Unallocated
002:  000:000   0000002048   0000022527   0000020480   Linux (0x83)
003:  Meta      0000022528   0000122527   0000100000   DOS Extended (0x05)
004:  Meta      0000022528   0000022528   0000000001   Extended Table (#1)
006:  001:000   0000024576   0000045055   0000020480   Linux (0x83)
007:  Meta      0000045056   0000067583   0000022528   DOS Extended (0x05)
010:  002:000   0000047104   0000067583   0000020480   Win95 FAT32 (0x0b)
";

    #[test]
    fn parses_a_dos_table_with_logical_partitions() {
        let table = parse_mmls(DOS).unwrap();
        assert_eq!(table.scheme, Scheme::Mbr);
        assert_eq!(table.sector_size, 512);
        assert_eq!(table.entries.len(), 8);
        assert_eq!(
            table.entries[2],
            MmlsEntry {
                slot: "000:000".into(),
                start: 2048,
                length: 20480,
                description: "Linux (0x83)".into()
            }
        );
        assert_eq!(table.entries[7].description, "Win95 FAT32 (0x0b)");
    }

    #[test]
    fn parses_gpt_with_an_empty_name_and_apm() {
        let gpt = parse_mmls(
            "GUID Partition Table (EFI)\nOffset Sector: 0\nUnits are in 512-byte sectors\n\n      Slot      Start        End          Length       Description\n005:  001       0000022528   0000043007   0000020480   \n",
        )
        .unwrap();
        assert_eq!(gpt.scheme, Scheme::Gpt);
        assert_eq!(gpt.entries[0].description, "");
        let apm = parse_mmls("MAC Partition Map\nUnits are in 512-byte sectors\n004:  001       0000002048   0000032767   0000030720   Apple_HFS\n").unwrap();
        assert_eq!(apm.scheme, Scheme::Apm);
        assert_eq!(apm.entries[0].start, 2048);
    }

    #[test]
    fn unknown_schemes_and_garbage_are_errors() {
        assert!(parse_mmls("BSD Disk Label\n").is_err());
        assert!(parse_mmls("").is_err());
        assert!(parse_mmls("DOS Partition Table\n002:  000:000   x   y   z   Linux\n").is_err());
    }
}
