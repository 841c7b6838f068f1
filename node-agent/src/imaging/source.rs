//! What a SOURCE given to `ntt image` is, and how an existing image becomes a raw image.
//!
//! Rules: the source is only ever opened read-only, and tools given it (qemu-img, ewfexport)
//! only read it. Formats are recognised by their bytes (magic numbers), never by the file name,
//! except split raw segments, which have no magic and are named `.000`, `.001`, ... A converted
//! image is written to a temporary name in the data directory and renamed into place only once
//! complete, so a killed conversion never leaves a plausible-looking image behind.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::catalog::media::SourceFormat;

impl SourceFormat {
    /// The name recorded in the catalog.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Raw => "raw",
            Self::SplitRaw => "split_raw",
            Self::Qcow2 => "qcow2",
            Self::Vmdk => "vmdk",
            Self::Vhd => "vhd",
            Self::Vhdx => "vhdx",
            Self::Dmg => "dmg",
            Self::Ewf => "ewf",
        }
    }

    /// The name qemu-img uses for this format, for the formats it converts.
    pub const fn qemu_format(self) -> Option<&'static str> {
        match self {
            Self::Qcow2 => Some("qcow2"),
            Self::Vmdk => Some("vmdk"),
            Self::Vhd => Some("vpc"),
            Self::Vhdx => Some("vhdx"),
            Self::Dmg => Some("dmg"),
            _ => None,
        }
    }
}

/// A source, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A block device.
    Device(PathBuf),
    /// One image file of the given format.
    File {
        /// The file.
        path: PathBuf,
        /// What it is.
        format: SourceFormat,
    },
    /// Split raw segments, in order.
    Split(Vec<PathBuf>),
}

impl Source {
    /// The format to record.
    pub fn format(&self) -> SourceFormat {
        match self {
            Self::Device(_) => SourceFormat::Device,
            Self::File { format, .. } => *format,
            Self::Split(_) => SourceFormat::SplitRaw,
        }
    }

    /// The path as the user gave it (the first segment for split images).
    pub fn path(&self) -> &Path {
        match self {
            Self::Device(path) | Self::File { path, .. } => path,
            Self::Split(segments) => &segments[0],
        }
    }
}

/// Why a source could not be classified or converted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path does not exist or cannot be examined.
    #[error("cannot open source {path}")]
    Open {
        /// The source.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A directory or other non-image was given.
    #[error("{path} is not a block device or an image file{hint}")]
    Unsupported {
        /// The source.
        path: PathBuf,
        /// What to do instead.
        hint: &'static str,
    },
    /// A segment of a split image is missing.
    #[error("split image {first}: segment {missing} is missing")]
    MissingSegment {
        /// The first segment.
        first: PathBuf,
        /// The missing one.
        missing: PathBuf,
    },
    /// A conversion tool failed.
    #[error("{tool} could not convert {path}: {stderr}")]
    Convert {
        /// The tool.
        tool: &'static str,
        /// The source.
        path: PathBuf,
        /// What it printed.
        stderr: String,
    },
    /// A conversion tool could not be run.
    #[error("cannot run {tool} (is it installed? `scripts/setup` installs it)")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Writing the raw image failed.
    #[error("cannot write {path}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// Recognises `path`: a block device, a split raw set (by name), or an image file (by magic).
pub fn classify(path: &Path) -> Result<Source, SourceError> {
    let open = |source| SourceError::Open {
        path: path.to_owned(),
        source,
    };
    let metadata = fs_err::metadata(path).map_err(open)?;
    if metadata.file_type().is_block_device() {
        return Ok(Source::Device(path.to_owned()));
    }
    if metadata.is_dir() {
        return Err(SourceError::Unsupported {
            path: path.to_owned(),
            hint: " (a directory is ingested without imaging: `ntt ingest DIRECTORY`)",
        });
    }
    if !metadata.is_file() {
        return Err(SourceError::Unsupported {
            path: path.to_owned(),
            hint: "",
        });
    }
    if let Some(segments) = split_segments(path)? {
        return Ok(Source::Split(segments));
    }
    let mut file = fs_err::File::open(path).map_err(open)?;
    let mut head = [0_u8; 512];
    let head_len = read_up_to(&mut file, &mut head).map_err(open)?;
    let head = &head[..head_len];
    let mut tail = [0_u8; 512];
    let tail_len = if metadata.len() >= 512 {
        file.seek(SeekFrom::End(-512)).map_err(open)?;
        read_up_to(&mut file, &mut tail).map_err(open)?
    } else {
        0
    };
    let tail = &tail[..tail_len];
    let format = if head.starts_with(b"QFI\xfb") {
        SourceFormat::Qcow2
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        SourceFormat::Vmdk
    } else if head.starts_with(b"vhdxfile") {
        SourceFormat::Vhdx
    } else if head.starts_with(b"EVF\x09\x0d\x0a\xff\x00") {
        SourceFormat::Ewf
    } else if tail.starts_with(b"conectix") || head.starts_with(b"conectix") {
        SourceFormat::Vhd
    } else if tail.starts_with(b"koly") {
        SourceFormat::Dmg
    } else {
        SourceFormat::Raw
    };
    Ok(Source::File {
        path: path.to_owned(),
        format,
    })
}

fn read_up_to(file: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// `x.000` (or `x.001` when there is no `.000`) and its numbered siblings, in order.
fn split_segments(path: &Path) -> Result<Option<Vec<PathBuf>>, SourceError> {
    let Some(extension) = path.extension().and_then(|e| e.to_str()) else {
        return Ok(None);
    };
    if extension.len() != 3 || !extension.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let Ok(start) = extension.parse::<u32>() else {
        return Ok(None);
    };
    if start > 1 {
        return Ok(None);
    }
    let next = path.with_extension(format!("{:03}", start + 1));
    if !next.exists() {
        // A lone .000 is an ordinary raw image.
        return Ok(None);
    }
    let mut segments = vec![path.to_owned()];
    let mut index = start + 1;
    loop {
        let segment = path.with_extension(format!("{index:03}"));
        if !segment.exists() {
            break;
        }
        segments.push(segment);
        index += 1;
        if index > 999 {
            break;
        }
    }
    // A gap (x.003 present after a missing x.002) means a lost segment: refuse.
    let after_gap = path.with_extension(format!("{:03}", index + 1));
    if index <= 998 && after_gap.exists() {
        return Err(SourceError::MissingSegment {
            first: path.to_owned(),
            missing: path.with_extension(format!("{index:03}")),
        });
    }
    Ok(Some(segments))
}

/// Converts a non-raw source into a raw image at `target` (written as `target.partial` first),
/// hashing the written bytes when the conversion streams through us. Returns the BLAKE3
/// digest when it was computed on the way.
pub fn convert_to_raw(source: &Source, target: &Path) -> Result<Option<[u8; 32]>, SourceError> {
    let partial = target.with_extension("img.partial");
    let _ = fs_err::remove_file(&partial);
    let write_error = |source| SourceError::Write {
        path: partial.clone(),
        source,
    };
    let digest = match source {
        Source::Split(segments) => {
            let mut out = fs_err::File::create(&partial).map_err(write_error)?;
            let mut hasher = blake3::Hasher::new();
            let mut buffer = vec![0_u8; 1 << 20];
            for segment in segments {
                let mut input = fs_err::File::open(segment).map_err(|e| SourceError::Open {
                    path: segment.clone(),
                    source: e,
                })?;
                loop {
                    let n = input
                        .read(&mut buffer)
                        .map_err(|source| SourceError::Open {
                            path: segment.clone(),
                            source,
                        })?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                    out.write_all(&buffer[..n]).map_err(write_error)?;
                }
            }
            out.sync_all().map_err(write_error)?;
            Some(*hasher.finalize().as_bytes())
        }
        Source::File {
            path,
            format: SourceFormat::Ewf,
        } => {
            // ewfexport appends ".raw" to its target and writes a ".raw.info" beside it.
            let stem = target.with_extension("ewfexport");
            run_tool(
                "ewfexport",
                path,
                Command::new("ewfexport")
                    .args(["-q", "-u", "-f", "raw", "-t"])
                    .arg(&stem)
                    .arg("--")
                    .arg(path),
            )?;
            let produced = stem.with_extension("ewfexport.raw");
            let _ = fs_err::remove_file(stem.with_extension("ewfexport.raw.info"));
            fs_err::rename(&produced, &partial).map_err(write_error)?;
            None
        }
        Source::File { path, format } => {
            let Some(qemu_format) = format.qemu_format() else {
                return Err(SourceError::Unsupported {
                    path: path.clone(),
                    hint: " (nothing to convert)",
                });
            };
            run_tool(
                "qemu-img",
                path,
                Command::new("qemu-img")
                    .args(["convert", "-q", "-f", qemu_format, "-O", "raw", "--"])
                    .arg(path)
                    .arg(&partial),
            )?;
            None
        }
        Source::Device(path) => {
            return Err(SourceError::Unsupported {
                path: path.clone(),
                hint: " (devices are imaged with ddrescue)",
            });
        }
    };
    fs_err::rename(&partial, target).map_err(|e| SourceError::Write {
        path: target.to_owned(),
        source: e,
    })?;
    Ok(digest)
}

fn run_tool(tool: &'static str, path: &Path, command: &mut Command) -> Result<(), SourceError> {
    let output = command
        .output()
        .map_err(|source| SourceError::Spawn { tool, source })?;
    if output.status.success() {
        return Ok(());
    }
    Err(SourceError::Convert {
        tool,
        path: path.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::fixture;

    #[test]
    fn third_party_images_are_recognised_by_their_bytes() {
        let format = |name: &str| classify(&fixture(name)).unwrap().format();
        assert_eq!(format("ext2.qcow2"), SourceFormat::Qcow2);
        assert_eq!(format("windows_volume.qcow2"), SourceFormat::Qcow2);
        assert_eq!(format("ext2.E01"), SourceFormat::Ewf);
        assert_eq!(format("hfsplus_zlib.dmg"), SourceFormat::Dmg);
        assert_eq!(format("hfsplus.raw"), SourceFormat::Raw);
        assert_eq!(format("ímynd.dd"), SourceFormat::Raw);
        assert_eq!(format("ext2.splitraw.000"), SourceFormat::SplitRaw);
        match classify(&fixture("ext2.splitraw.000")).unwrap() {
            Source::Split(segments) => assert_eq!(segments.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_directory_is_refused_with_a_hint() {
        let error = classify(Path::new("/tmp")).unwrap_err();
        assert!(
            error.to_string().contains("ntt ingest DIRECTORY"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_path_is_an_open_error_naming_it() {
        let error = classify(Path::new("/nonexistent/disk.img")).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/disk.img"),
            "{error}"
        );
    }
}
