//! The image digest: the full BLAKE3 of a finished image.
//!
//! Rules: ddrescue never rewrites a byte once its block is marked finished (`+`) in the mapfile,
//! and it writes the data before it saves the mapfile that says so. So while ddrescue runs, the
//! bytes from 0 up to the end of the first unfinished block are final, and [`FollowingDigest`]
//! hashes them as they appear, from the page cache, on a thread of its own; when the run ends
//! only the rest is left to hash. That spares a second full read of the image after imaging.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// The full BLAKE3 of a file, hashed on all cores. Read, not memory-mapped: an image on a
/// failing disk or a FUSE driver answers a bad read with an error, where a mapping would kill
/// the process with SIGBUS.
pub fn digest_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let file = fs_err::File::open(path)?;
    let length = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    hash_region(&mut hasher, file.file(), 0, length, &mut Vec::new())?;
    Ok(*hasher.finalize().as_bytes())
}

enum Message {
    /// Bytes `0..n` are final.
    FinalUpTo(u64),
    /// ddrescue is done: hash the rest and return the digest.
    Finish,
}

/// Hashes an image while ddrescue writes it (see the module rules).
#[derive(Debug)]
pub struct FollowingDigest {
    sender: SyncSender<Message>,
    thread: JoinHandle<std::io::Result<[u8; 32]>>,
}

impl FollowingDigest {
    /// Starts following `image`.
    ///
    /// # Panics
    ///
    /// When the OS cannot start a thread (out of resources at start-up).
    pub fn start(image: PathBuf) -> Self {
        // A few updates may queue; only the latest matters, so a full queue drops new ones.
        let (sender, receiver) = sync_channel(8);
        let thread = std::thread::Builder::new()
            .name("image-digest".into())
            .spawn(move || follow(&image, &receiver))
            .expect("invariant: a thread can be spawned");
        Self { sender, thread }
    }

    /// Tells the hasher that bytes `0..n` of the image are final.
    pub fn final_up_to(&self, n: u64) {
        match self.sender.try_send(Message::FinalUpTo(n)) {
            Ok(()) | Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    /// ddrescue is done: hashes what is left and returns the digest of the whole image.
    pub fn finish(self) -> std::io::Result<[u8; 32]> {
        let _ = self.sender.send(Message::Finish);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the digest thread panicked")))
    }
}

fn follow(image: &Path, receiver: &Receiver<Message>) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut done = 0_u64;
    let mut file: Option<std::fs::File> = None;
    let mut buffer = Vec::new();
    while let Ok(message) = receiver.recv() {
        let (limit, last) = match message {
            Message::FinalUpTo(n) => (n, false),
            Message::Finish => (u64::MAX, true),
        };
        if file.is_none() {
            match std::fs::File::options().read(true).open(image) {
                Ok(opened) => file = Some(opened),
                // ddrescue has not created it yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !last => continue,
                Err(e) => return Err(e),
            }
        }
        let reader = file.as_ref().expect("invariant: opened above");
        let end = limit.min(reader.metadata()?.len());
        if end > done {
            hash_region(&mut hasher, reader, done, end, &mut buffer)?;
            done = end;
        }
        if last {
            return Ok(*hasher.finalize().as_bytes());
        }
    }
    Err(std::io::Error::other("the digest was abandoned"))
}

/// Bytes read per step: big enough that hashing each on all cores pays.
const CHUNK: usize = 8 << 20;

/// Hashes bytes `start..end` of `file`, read in [`CHUNK`]s into `buffer` (allocated on first
/// use) and each hashed on all cores. An I/O error is returned, never a signal; a file shorter
/// than `end` is an error.
fn hash_region(
    hasher: &mut blake3::Hasher,
    file: &std::fs::File,
    start: u64,
    end: u64,
    buffer: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if buffer.len() < CHUNK {
        buffer.resize(CHUNK, 0);
    }
    let mut at = start;
    while at < end {
        let want = usize::try_from((end - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        let chunk = &mut buffer[..want];
        file.read_exact_at(chunk, at)?;
        hasher.update_rayon(chunk);
        at += want as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn following_digest_equals_the_whole_file_digest() {
        const BUFFER: usize = 1 << 20;
        let path = std::env::temp_dir().join(format!("ntt-digest-test-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * BUFFER + 12_345)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        fs_err::write(&path, &data[..BUFFER]).unwrap();
        let digest = FollowingDigest::start(path.clone());
        digest.final_up_to(BUFFER as u64 / 2);
        digest.final_up_to(BUFFER as u64);
        fs_err::write(&path, &data).unwrap();
        digest.final_up_to(2 * BUFFER as u64 + 7);
        let followed = digest.finish().unwrap();
        assert_eq!(followed, *blake3::hash(&data).as_bytes());
        assert_eq!(digest_file(&path).unwrap(), followed);
        fs_err::remove_file(&path).unwrap();
    }
}
