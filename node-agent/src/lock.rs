//! Host-wide exclusive locks (`flock` on files in the lock directory).
//!
//! Rules: a lock is taken without waiting; when another process holds it, the error names the
//! holder (its pid and purpose, written into the lock file by the holder). The kernel releases a
//! `flock` when its holder dies, so a crashed run never leaves a lock behind. The lock file
//! itself is never deleted (deleting it would let two processes lock two different files).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock directory or file could not be created or opened.
    #[error("cannot open lock file {path}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error("{what} is busy: held by {holder} (lock file {path})")]
    Held {
        /// What the lock protects, for people.
        what: String,
        /// Who holds it, as the holder recorded it.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
    /// `flock` failed for another reason.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: Errno,
    },
}

/// An exclusive lock, held until dropped or [`HostLock::release`]d.
#[derive(Debug)]
pub struct HostLock {
    lock: Flock<File>,
    path: PathBuf,
}

impl HostLock {
    /// Takes the lock `name` in `dir` without waiting, recording `purpose` and our pid in it.
    pub fn try_acquire(
        dir: &Path,
        name: &str,
        what: &str,
        purpose: &str,
    ) -> Result<Self, LockError> {
        let path = dir.join(name);
        let open = |source| LockError::Open {
            path: path.clone(),
            source,
        };
        fs_err::create_dir_all(dir).map_err(open)?;
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    what: what.to_owned(),
                    holder: if holder.is_empty() {
                        "another process".to_owned()
                    } else {
                        holder.to_owned()
                    },
                    path,
                });
            }
            Err((_, source)) => return Err(LockError::Lock { path, source }),
        };
        // Who holds it, for the next one who asks; best effort, the lock is what counts.
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = write!(lock, "pid {} ({purpose})", std::process::id());
        Ok(Self { lock, path })
    }

    /// Takes the lock, waiting up to `timeout` while another process holds it.
    pub fn acquire_waiting(
        dir: &Path,
        name: &str,
        what: &str,
        purpose: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, LockError> {
        let started = std::time::Instant::now();
        loop {
            match Self::try_acquire(dir, name, what, purpose) {
                Err(LockError::Held { .. }) if started.elapsed() < timeout => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => return other,
            }
        }
    }

    /// Makes `command`'s child hold the lock too (its copy of the open file keeps the `flock`
    /// while it lives), without letting any other child inherit it. For short helpers such as
    /// `mount(8)`: if we die while one runs, the next owner waits for it instead of racing it.
    pub fn share_with(&self, command: &mut tokio::process::Command) {
        use std::os::fd::AsRawFd;
        let fd = self.lock.as_raw_fd();
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it calls fcntl(2) on an integer descriptor that
        // the child inherited, allocates nothing and touches no shared state.
        #[expect(
            unsafe_code,
            reason = "clearing FD_CLOEXEC on one descriptor in the child only"
        )]
        unsafe {
            command.pre_exec(move || {
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                if flags < 0
                    || nix::libc::fcntl(fd, nix::libc::F_SETFD, flags & !nix::libc::FD_CLOEXEC) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets child processes started from now on inherit the lock, so it stays held while any
    /// of them runs even if this process dies (the lock belongs to the open file, which they
    /// share).
    pub fn inherit_by_children(&self) -> Result<(), LockError> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        fcntl(&*self.lock, FcntlArg::F_SETFD(FdFlag::empty()))
            .map(drop)
            .map_err(|source| LockError::Lock {
                path: self.path.clone(),
                source,
            })
    }

    /// Releases the lock now.
    pub fn release(self) -> Result<(), LockError> {
        let _ = self.lock.set_len(0);
        self.lock
            .unlock()
            .map(drop)
            .map_err(|(_, source)| LockError::Lock {
                path: self.path,
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_ones_pid_until_release() {
        let dir = std::env::temp_dir().join(format!("ntt-lock-test-{}", std::process::id()));
        let first = HostLock::try_acquire(&dir, "device-8-16.lock", "/dev/sdb", "imaging").unwrap();
        let error =
            HostLock::try_acquire(&dir, "device-8-16.lock", "/dev/sdb", "imaging").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("/dev/sdb is busy"), "{message}");
        assert!(
            message.contains(&format!("pid {} (imaging)", std::process::id())),
            "{message}"
        );
        first.release().unwrap();
        let again = HostLock::try_acquire(&dir, "device-8-16.lock", "/dev/sdb", "imaging").unwrap();
        drop(again);
        HostLock::try_acquire(&dir, "device-8-16.lock", "/dev/sdb", "imaging").unwrap();
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
