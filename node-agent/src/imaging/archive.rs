//! Archived images: the raw image as independent zstd frames of [`FRAME`] bytes each (a file
//! `zstd -d` reads), and an index beside it (`<archive>.idx`, JSON) with each frame's
//! compressed length, the image's size and BLAKE3 digest. Independent frames are compressed and
//! read on several cores, and any range of the image can be read by decompressing only its
//! frames ([`Archive::read_at`]).
//!
//! Rules: an archive is written under `.partial` names, synced, then named (index last); it is
//! trusted only after it was read back end to end and its digest compared ([`Archive::digest`]);
//! a raw image restored from it ([`restore`]) is written under a `.partial` name and named only
//! once its digest is the one recorded at imaging.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes of the image per frame.
pub const FRAME: u64 = 16 << 20;

/// The index format this binary writes and reads.
const FORMAT: &str = "ntt-archive/1";

/// Why archiving or reading an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The index is not one this binary reads, or does not fit its archive.
    #[error("{path} is not a usable archive index: {why}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

type Result<T> = std::result::Result<T, ArchiveError>;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io {
        action,
        path,
        source,
    }
}

/// An archive's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always [`FORMAT`].
    pub format: String,
    /// Bytes of the image per frame (the last frame may be shorter).
    pub frame_size: u64,
    /// The image's size.
    pub size: u64,
    /// Each frame's compressed length, in order.
    pub frames: Vec<u64>,
    /// BLAKE3 of the image, hex.
    pub digest: String,
}

impl Index {
    /// The archive's size: the frames' lengths together.
    pub fn compressed(&self) -> u64 {
        self.frames.iter().sum()
    }
}

/// The index file of `archive`.
pub fn index_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".idx");
    PathBuf::from(name)
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or_else(|| Path::new("."));
    fs_err::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync the directory", parent))
}

/// Compresses `raw` into `archive` (and its index) at `level`, `jobs` frames at a time; the
/// index carries the digest of the bytes read.
pub fn compress(raw: &Path, archive: &Path, level: i32, jobs: usize) -> Result<Index> {
    let mut input = fs_err::File::open(raw).map_err(io("cannot open the image", raw))?;
    let part = partial(archive);
    let mut output = fs_err::File::create(&part).map_err(io("cannot create", &part))?;
    let mut hasher = blake3::Hasher::new();
    let mut index = Index {
        format: FORMAT.to_owned(),
        frame_size: FRAME,
        size: 0,
        frames: Vec::new(),
        digest: String::new(),
    };
    let frame = usize::try_from(FRAME).unwrap_or(usize::MAX);
    loop {
        // Up to `jobs` frames read, then compressed at once.
        let mut batch: Vec<Vec<u8>> = Vec::new();
        for _ in 0..jobs.max(1) {
            let mut chunk = Vec::with_capacity(frame);
            (&mut input)
                .take(FRAME)
                .read_to_end(&mut chunk)
                .map_err(io("cannot read the image", raw))?;
            if chunk.is_empty() {
                break;
            }
            hasher.update(&chunk);
            index.size += chunk.len() as u64;
            batch.push(chunk);
        }
        if batch.is_empty() {
            break;
        }
        let compressed: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|chunk| scope.spawn(move || zstd::bulk::compress(chunk, level)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("a compressor panicked")))
                })
                .collect()
        });
        for frame in compressed {
            let frame = frame.map_err(io("cannot compress a frame of", raw))?;
            output
                .write_all(&frame)
                .map_err(io("cannot write", &part))?;
            index.frames.push(frame.len() as u64);
        }
    }
    index.digest = hasher.finalize().to_hex().to_string();
    output.sync_all().map_err(io("cannot sync", &part))?;
    drop(output);
    fs_err::rename(&part, archive).map_err(io("cannot name", archive))?;
    let idx = index_path(archive);
    let idx_part = partial(&idx);
    let text = serde_json::to_vec_pretty(&index).map_err(|e| ArchiveError::Index {
        path: idx.clone(),
        why: e.to_string(),
    })?;
    let mut file = fs_err::File::create(&idx_part).map_err(io("cannot create", &idx_part))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io("cannot write", &idx_part))?;
    fs_err::rename(&idx_part, &idx).map_err(io("cannot name", &idx))?;
    sync_parent(archive)?;
    Ok(index)
}

/// `from` compressed whole into one zstd frame at `to` (a small file beside an archive: the
/// mapfile), written under a `.partial` name, synced, then named.
pub fn compress_whole(from: &Path, to: &Path) -> Result<()> {
    let part = partial(to);
    let input = fs_err::File::open(from).map_err(io("cannot open", from))?;
    let output = fs_err::File::create(&part).map_err(io("cannot create", &part))?;
    zstd::stream::copy_encode(input, &output, 19).map_err(io("cannot compress", from))?;
    output.sync_all().map_err(io("cannot sync", &part))?;
    fs_err::rename(&part, to).map_err(io("cannot name", to))
}

/// An archive opened with its index.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    index: Index,
    /// Where each frame starts in the archive.
    starts: Vec<u64>,
}

impl Archive {
    /// Opens `path` and its index, checking they fit (frame count and lengths, size).
    pub fn open(path: &Path) -> Result<Self> {
        let idx = index_path(path);
        let bad = |why: String| ArchiveError::Index {
            path: idx.clone(),
            why,
        };
        let text = fs_err::read(&idx).map_err(io("cannot read the index", &idx))?;
        let index: Index = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if index.format != FORMAT || index.frame_size == 0 {
            return Err(bad(format!("format {:?}", index.format)));
        }
        if index.size.div_ceil(index.frame_size) != index.frames.len() as u64 {
            return Err(bad("its frames do not cover the image's size".to_owned()));
        }
        let length = fs_err::metadata(path)
            .map_err(io("cannot read the size of", path))?
            .len();
        if length != index.compressed() {
            return Err(bad(format!(
                "the archive has {length} bytes, its frames {}",
                index.compressed()
            )));
        }
        let mut starts = Vec::with_capacity(index.frames.len());
        let mut at = 0;
        for len in &index.frames {
            starts.push(at);
            at += len;
        }
        Ok(Self {
            path: path.to_owned(),
            index,
            starts,
        })
    }

    /// Its index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The uncompressed bytes of frame `n`.
    fn frame(&self, file: &mut fs_err::File, n: usize) -> Result<Vec<u8>> {
        use std::io::Seek;
        let len = usize::try_from(self.index.frames[n]).unwrap_or(usize::MAX);
        let mut compressed = vec![0; len];
        file.seek(std::io::SeekFrom::Start(self.starts[n]))
            .and_then(|_| file.read_exact(&mut compressed))
            .map_err(io("cannot read", &self.path))?;
        let expected =
            (self.index.size - n as u64 * self.index.frame_size).min(self.index.frame_size);
        let capacity = usize::try_from(expected).unwrap_or(usize::MAX);
        let frame = zstd::bulk::decompress(&compressed, capacity)
            .map_err(io("cannot decompress a frame of", &self.path))?;
        if frame.len() as u64 != expected {
            return Err(ArchiveError::Index {
                path: self.path.clone(),
                why: format!("frame {n} holds {} bytes, not {expected}", frame.len()),
            });
        }
        Ok(frame)
    }

    /// Reads the image's bytes at `offset` into `buffer` (fewer at the end of the image),
    /// decompressing only the frames that hold them.
    pub fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        let mut file = fs_err::File::open(&self.path).map_err(io("cannot open", &self.path))?;
        let mut done = 0;
        while done < buffer.len() {
            let at = offset + done as u64;
            if at >= self.index.size {
                break;
            }
            let n = usize::try_from(at / self.index.frame_size).unwrap_or(usize::MAX);
            let frame = self.frame(&mut file, n)?;
            let within = usize::try_from(at % self.index.frame_size).unwrap_or(0);
            let take = (frame.len() - within).min(buffer.len() - done);
            buffer[done..done + take].copy_from_slice(&frame[within..within + take]);
            done += take;
        }
        Ok(done)
    }

    /// Reads the whole archive back, frame by frame, into `sink` (if any); the digest of the
    /// image it holds.
    fn read_all(&self, mut sink: Option<&mut fs_err::File>) -> Result<[u8; 32]> {
        let mut file = fs_err::File::open(&self.path).map_err(io("cannot open", &self.path))?;
        let mut hasher = blake3::Hasher::new();
        for n in 0..self.index.frames.len() {
            let frame = self.frame(&mut file, n)?;
            hasher.update(&frame);
            if let Some(sink) = sink.as_mut() {
                sink.write_all(&frame)
                    .map_err(io("cannot write the restored image", &self.path))?;
            }
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// The digest of the image the archive holds, read end to end from its disk.
    pub fn digest(&self) -> Result<[u8; 32]> {
        self.read_all(None)
    }
}

/// Restores the raw image `raw` from `archive` when its digest is `expected`: `Ok(false)` (and
/// nothing left behind) when the archive holds something else.
pub fn restore(archive: &Path, raw: &Path, expected: &[u8]) -> Result<bool> {
    let archive = Archive::open(archive)?;
    let part = partial(raw);
    let mut out = fs_err::File::create(&part).map_err(io("cannot create", &part))?;
    let digest = archive.read_all(Some(&mut out));
    let digest = match digest {
        Ok(digest) => digest,
        Err(error) => {
            let _ = fs_err::remove_file(&part);
            return Err(error);
        }
    };
    if digest.as_slice() != expected {
        let _ = fs_err::remove_file(&part);
        return Ok(false);
    }
    out.sync_all().map_err(io("cannot sync", &part))?;
    drop(out);
    fs_err::rename(&part, raw).map_err(io("cannot name", raw))?;
    sync_parent(raw)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hold_the_image_and_any_range_reads_back() {
        let dir = std::env::temp_dir().join(format!("ntt-archive-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        // Two and a half frames: text, zeros, noise.
        let size = usize::try_from(FRAME * 5 / 2).unwrap();
        let mut image: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
        image[size / 2..size / 2 + 4096].fill(0);
        let raw = dir.join("m.img");
        fs_err::write(&raw, &image).unwrap();
        let archive = dir.join("m.img.zst");
        let index = compress(&raw, &archive, 3, 2).unwrap();
        assert_eq!(index.frames.len(), 3);
        assert_eq!(index.size, image.len() as u64);
        assert_eq!(index.digest, blake3::hash(&image).to_hex().to_string());
        let opened = Archive::open(&archive).unwrap();
        assert_eq!(opened.digest().unwrap(), *blake3::hash(&image).as_bytes());
        // A range across a frame boundary, and one past the end.
        let mut buffer = vec![0; 10_000];
        let at = FRAME - 5_000;
        assert_eq!(opened.read_at(at, &mut buffer).unwrap(), 10_000);
        let at = usize::try_from(at).unwrap();
        assert_eq!(buffer, image[at..at + 10_000]);
        let end = image.len() as u64 - 10;
        assert_eq!(opened.read_at(end, &mut buffer).unwrap(), 10);
        // zstd(1) reads it as it is.
        let out = std::process::Command::new("zstd")
            .args(["-d", "-q", "-c"])
            .arg(&archive)
            .output()
            .expect("zstd(1) is installed (scripts/setup)");
        assert!(out.status.success());
        assert_eq!(out.stdout, image);
        // Restored only when the digest is the one expected.
        let restored = dir.join("restored.img");
        assert!(!restore(&archive, &restored, &[0; 32]).unwrap());
        assert!(!restored.exists());
        assert!(restore(&archive, &restored, blake3::hash(&image).as_bytes()).unwrap());
        assert_eq!(fs_err::read(&restored).unwrap(), image);
        // A flipped byte in a frame: the digest differs or the frame does not decompress.
        let mut bytes = fs_err::read(&archive).unwrap();
        bytes[100] ^= 0x10;
        fs_err::write(&archive, &bytes).unwrap();
        let reopened = Archive::open(&archive).unwrap();
        assert!(
            reopened
                .digest()
                .map_or(true, |d| d != *blake3::hash(&image).as_bytes())
        );
        // A truncated archive does not even open.
        fs_err::write(&archive, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Archive::open(&archive).is_err());
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
