//! The identity of a medium: its hash, size, model and serial.
//!
//! Rules: the hash is BLAKE3 over `SIZE:<bytes>|MODEL:<model>|SERIAL:<serial>|`, then the first
//! MiB, then the last MiB, truncated to 32 hex characters (the predecessor's v2 hash). The size is
//! the real size of the device or file (seeked, never assumed). Unreadable sectors read as zeros;
//! an empty source or a read that ends early is an error, never a hash (the predecessor hashed an
//! empty read into a medium called af1349b9…).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ntt_crds::MediumHash;

/// Bytes read at a time while identifying; a failing chunk is re-read sector by sector.
const CHUNK: usize = 64 * 1024;

/// How many bytes are hashed from each end of the medium.
pub const EDGE_BYTES: u64 = 1 << 20;

/// Stands in for a model or serial the host cannot tell.
pub const UNKNOWN: &str = "unknown";

/// Why a source could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// The source could not be opened or examined.
    #[error("cannot open {path} for reading")]
    Open {
        /// The source.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The source is neither a block device nor a regular file.
    #[error("{path} is neither a block device nor a regular file")]
    NotDeviceOrFile {
        /// The source.
        path: PathBuf,
    },
    /// The source has no bytes.
    #[error("{path} is empty (size 0): refusing to identify it (is the medium inserted?)")]
    Empty {
        /// The source.
        path: PathBuf,
    },
    /// A read ended before the size the source reported.
    #[error("{path}: read ended at byte {at}, but the source reports {size} bytes")]
    ShortRead {
        /// The source.
        path: PathBuf,
        /// Where reading stopped.
        at: u64,
        /// The reported size.
        size: u64,
    },
    /// A read failed other than with an I/O error on a sector.
    #[error("cannot read {path} at byte {at}")]
    Read {
        /// The source.
        path: PathBuf,
        /// Where.
        at: u64,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// What was learnt about a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The medium hash.
    pub hash: MediumHash,
    /// Real size in bytes.
    pub size: u64,
    /// Model, sanitized, or [`UNKNOWN`].
    pub model: String,
    /// Serial, sanitized, or [`UNKNOWN`].
    pub serial: String,
    /// Whether the source is a block device.
    pub is_block_device: bool,
    /// Logical sector size (2048 for optical media; 512 for files).
    pub sector_size: u32,
    /// `(major, minor)` of a block device.
    pub device_number: Option<(u64, u64)>,
    /// Sectors that could not be read and were hashed as zeros.
    pub unreadable_sectors: u64,
}

/// The medium hash of a source with this size, model and serial and these edge bytes (pure).
///
/// # Panics
///
/// Never: BLAKE3's hex form is always 64 lowercase hex characters.
pub fn medium_hash(size: u64, model: &str, serial: &str, first: &[u8], last: &[u8]) -> MediumHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("SIZE:{size}|MODEL:{model}|SERIAL:{serial}|").as_bytes());
    hasher.update(first);
    hasher.update(last);
    let hex = hasher.finalize().to_hex();
    hex[..MediumHash::LEN]
        .parse()
        .expect("invariant: BLAKE3 hex is 64 lowercase hex characters")
}

/// Keeps `[A-Za-z0-9_-]`, turns spaces into `_`, drops the rest, at most 64 characters (as the
/// predecessor did, so its hashes stay reproducible); empty becomes [`UNKNOWN`].
pub fn sanitize(text: &str) -> String {
    let cleaned: String = text
        .trim()
        .chars()
        .filter_map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
            ' ' => Some('_'),
            _ => None,
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        UNKNOWN.to_owned()
    } else {
        cleaned
    }
}

/// Identifies a block device or file: opens it read-only, reads its real size, model and
/// serial (block devices, from sysfs), and hashes its first and last MiB.
pub fn identify(path: &Path) -> Result<Identity, IdentifyError> {
    let open_error = |source| IdentifyError::Open {
        path: path.to_owned(),
        source,
    };
    let mut file = File::options().read(true).open(path).map_err(open_error)?;
    let metadata = file.metadata().map_err(open_error)?;
    let is_block_device = metadata.file_type().is_block_device();
    if !is_block_device && !metadata.is_file() {
        return Err(IdentifyError::NotDeviceOrFile {
            path: path.to_owned(),
        });
    }
    let size = file.seek(SeekFrom::End(0)).map_err(open_error)?;
    if size == 0 {
        return Err(IdentifyError::Empty {
            path: path.to_owned(),
        });
    }
    let device_number = is_block_device.then(|| {
        let rdev = metadata.rdev();
        (major(rdev), minor(rdev))
    });
    let sysfs = device_number
        .map(|(major, minor)| PathBuf::from(format!("/sys/dev/block/{major}:{minor}")));
    let (model, serial, sector_size) = match &sysfs {
        Some(dir) => (sysfs_model(dir), sysfs_serial(dir), sysfs_sector_size(dir)),
        None => (UNKNOWN.to_owned(), UNKNOWN.to_owned(), 512),
    };
    let sector = u64::from(sector_size);
    let edge = EDGE_BYTES.min(size);
    let mut unreadable_sectors = 0;
    let first = read_zero_filling(
        &mut file,
        path,
        0,
        edge,
        size,
        sector,
        &mut unreadable_sectors,
    )?;
    let last = read_zero_filling(
        &mut file,
        path,
        size - edge,
        edge,
        size,
        sector,
        &mut unreadable_sectors,
    )?;
    Ok(Identity {
        hash: medium_hash(size, &model, &serial, &first, &last),
        size,
        model,
        serial,
        is_block_device,
        sector_size,
        device_number,
        unreadable_sectors,
    })
}

/// Blocks of the content sample that checks a known identity further.
pub const SAMPLE_BLOCKS: u64 = 64;

/// Bytes of each sample block (a whole number of sectors of every sector size met: 512, 2048,
/// 4096).
pub const SAMPLE_BYTES: u64 = 4096;

/// Offsets of the content sample of a source of `size` bytes (pure): [`SAMPLE_BLOCKS`] blocks
/// evenly spaced between the edges the identity hashes, aligned to [`SAMPLE_BYTES`]; none when
/// the edges cover the whole source (then the identity hashed every byte).
pub fn sample_offsets(size: u64) -> Vec<u64> {
    if size <= 2 * EDGE_BYTES + SAMPLE_BYTES {
        return Vec::new();
    }
    let span = size - 2 * EDGE_BYTES - SAMPLE_BYTES;
    let mut offsets: Vec<u64> = (0..SAMPLE_BLOCKS)
        .map(|i| {
            let at = EDGE_BYTES + span * i / (SAMPLE_BLOCKS - 1);
            at - at % SAMPLE_BYTES
        })
        .collect();
    offsets.dedup();
    offsets
}

/// One block of the content sample: its offset and bytes, or `None` when it could not be read.
pub type SampleBlock = (u64, Option<Vec<u8>>);

/// Reads the content sample of `path` ([`sample_offsets`]); a block that fails with an I/O
/// error is `None` (a failing drive), any other failure is an error.
pub fn read_sample(path: &Path, size: u64) -> Result<Vec<SampleBlock>, IdentifyError> {
    let open_error = |source| IdentifyError::Open {
        path: path.to_owned(),
        source,
    };
    let mut file = File::options().read(true).open(path).map_err(open_error)?;
    let mut blocks = Vec::new();
    for at in sample_offsets(size) {
        let mut buffer = vec![0_u8; usize::try_from(SAMPLE_BYTES).unwrap_or(4096)];
        match read_exact_at(&mut file, at, &mut buffer) {
            Ok(n) if n == buffer.len() => blocks.push((at, Some(buffer))),
            Ok(_) => {
                return Err(IdentifyError::ShortRead {
                    path: path.to_owned(),
                    at,
                    size,
                });
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => blocks.push((at, None)),
            Err(source) => {
                return Err(IdentifyError::Read {
                    path: path.to_owned(),
                    at,
                    source,
                });
            }
        }
    }
    Ok(blocks)
}

/// The digest of a content sample (pure): offsets and bytes, unreadable blocks as zeros.
pub fn sample_digest(blocks: &[SampleBlock]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"NTT-SAMPLE|");
    let zeros = vec![0_u8; usize::try_from(SAMPLE_BYTES).unwrap_or(4096)];
    for (at, bytes) in blocks {
        hasher.update(&at.to_le_bytes());
        hasher.update(bytes.as_deref().unwrap_or(&zeros));
    }
    *hasher.finalize().as_bytes()
}

/// The identity of a source that matched a known identity by its size and edges but not by
/// its content sample: the known hash and the sample together (pure).
///
/// # Panics
///
/// Never: BLAKE3's hex form is always 64 lowercase hex characters.
pub fn twin_hash(known: &MediumHash, sample: &[u8; 32]) -> MediumHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"TWIN|");
    hasher.update(known.as_str().as_bytes());
    hasher.update(b"|");
    hasher.update(sample);
    let hex = hasher.finalize().to_hex();
    hex[..MediumHash::LEN]
        .parse()
        .expect("invariant: BLAKE3 hex is 64 lowercase hex characters")
}

/// Reads `length` bytes at `offset`; a chunk that fails with an I/O error is re-read sector by
/// sector and the sectors that still fail are zeros.
fn read_zero_filling(
    file: &mut File,
    path: &Path,
    offset: u64,
    length: u64,
    size: u64,
    sector: u64,
    unreadable: &mut u64,
) -> Result<Vec<u8>, IdentifyError> {
    let length_usize = usize::try_from(length).expect("invariant: at most one MiB");
    let mut buffer = vec![0_u8; length_usize];
    let mut done = 0;
    while done < length_usize {
        let want = CHUNK.min(length_usize - done);
        let at = offset + done as u64;
        match read_exact_at(file, at, &mut buffer[done..done + want]) {
            Ok(0) => {
                return Err(IdentifyError::ShortRead {
                    path: path.to_owned(),
                    at,
                    size,
                });
            }
            Ok(n) => done += n,
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => {
                // Re-read this chunk sector by sector; failing sectors stay zero.
                let sector_len = usize::try_from(sector).expect("invariant: sector fits usize");
                let mut inner = 0;
                while inner < want {
                    let len = sector_len.min(want - inner);
                    let slice = &mut buffer[done + inner..done + inner + len];
                    match read_exact_at(file, at + inner as u64, slice) {
                        Ok(0) => {
                            return Err(IdentifyError::ShortRead {
                                path: path.to_owned(),
                                at: at + inner as u64,
                                size,
                            });
                        }
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => {
                            slice.fill(0);
                            *unreadable += 1;
                        }
                        Err(source) => {
                            return Err(IdentifyError::Read {
                                path: path.to_owned(),
                                at,
                                source,
                            });
                        }
                    }
                    inner += len;
                }
                done += want;
            }
            Err(source) => {
                return Err(IdentifyError::Read {
                    path: path.to_owned(),
                    at,
                    source,
                });
            }
        }
    }
    Ok(buffer)
}

/// Reads until `buffer` is full, end of file, or an I/O error after some bytes; returns the
/// bytes read (0 only at end of file).
fn read_exact_at(file: &mut File, at: u64, buffer: &mut [u8]) -> io::Result<usize> {
    file.seek(SeekFrom::Start(at))?;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if filled > 0 && e.raw_os_error() == Some(nix::libc::EIO) => break,
            Err(e) => return Err(e),
        }
    }
    // A read that failed part-way returns what it got; the caller's next read starts at the
    // failing sector, where the sector-by-sector fallback takes over.
    Ok(filled)
}

const fn major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

const fn minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

fn read_sysfs(path: &Path) -> Option<String> {
    let text = fs_err::read(path).ok()?;
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The whole-disk directory for a partition (`.../sdb/sdb1` -> `.../sdb`).
fn disk_dir(dir: &Path) -> PathBuf {
    if dir.join("partition").exists() {
        dir.join("..")
    } else {
        dir.to_owned()
    }
}

fn sysfs_model(dir: &Path) -> String {
    read_sysfs(&disk_dir(dir).join("device/model"))
        .map_or_else(|| UNKNOWN.to_owned(), |m| sanitize(&m))
}

fn sysfs_serial(dir: &Path) -> String {
    let device = disk_dir(dir).join("device");
    if let Some(serial) = read_sysfs(&device.join("serial")) {
        return sanitize(&serial);
    }
    // SCSI/SATA: the Unit Serial Number VPD page (0x80): 4-byte header, then the serial.
    if let Ok(page) = fs_err::read(device.join("vpd_pg80"))
        && page.len() > 4
    {
        return sanitize(&String::from_utf8_lossy(&page[4..]));
    }
    UNKNOWN.to_owned()
}

fn sysfs_sector_size(dir: &Path) -> u32 {
    read_sysfs(&disk_dir(dir).join("queue/logical_block_size"))
        .and_then(|s| s.parse().ok())
        .filter(|s: &u32| s.is_power_of_two() && *s >= 512)
        .unwrap_or(512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_v2_formula() {
        let first = vec![1_u8; 16];
        let last = vec![2_u8; 16];
        let mut expected = blake3::Hasher::new();
        expected.update(b"SIZE:32|MODEL:m|SERIAL:s|");
        expected.update(&first);
        expected.update(&last);
        let hex = expected.finalize().to_hex();
        assert_eq!(
            medium_hash(32, "m", "s", &first, &last).as_str(),
            &hex[..32]
        );
    }

    #[test]
    fn same_edges_with_another_size_or_serial_is_another_medium() {
        let edge = vec![0xF6_u8; 1 << 20];
        let a = medium_hash(100 << 20, "ZIP_100", "A1", &edge, &edge);
        assert_ne!(a, medium_hash(250 << 20, "ZIP_100", "A1", &edge, &edge));
        assert_ne!(a, medium_hash(100 << 20, "ZIP_100", "A2", &edge, &edge));
        assert_ne!(a, medium_hash(100 << 20, "ZIP_250", "A1", &edge, &edge));
        assert_eq!(a, medium_hash(100 << 20, "ZIP_100", "A1", &edge, &edge));
    }

    #[test]
    fn sanitize_keeps_the_predecessors_alphabet() {
        assert_eq!(
            sanitize("  WDC WD5000AAKS-00A7B2 "),
            "WDC_WD5000AAKS-00A7B2"
        );
        assert_eq!(sanitize("é/\u{0}"), UNKNOWN);
        assert_eq!(sanitize(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn device_numbers_decode_like_glibc() {
        // makedev(259, 65536 + 3) in glibc's encoding.
        let (ma, mi) = (259_u64, 65_539_u64);
        let rdev = ((ma & 0xffff_f000) << 32)
            | ((ma & 0xfff) << 8)
            | ((mi & 0xffff_ff00) << 12)
            | (mi & 0xff);
        assert_eq!((major(rdev), minor(rdev)), (ma, mi));
    }
}
