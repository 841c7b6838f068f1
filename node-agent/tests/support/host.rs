//! A scratch host for tests that run the `ntt` binary as root: data, lock and mount
//! directories of its own, a database of its own, and helpers for building disk images.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::unwrap_used,
    reason = "each test binary uses part of the support module"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use sqlx::PgPool;

#[path = "fixtures.rs"]
mod fixtures;
#[allow(
    unused_imports,
    reason = "each test binary uses part of the support module"
)]
pub use fixtures::{dir as fixtures_dir, fixture};

pub const MIB: u64 = 1 << 20;

/// A scratch data and lock directory, removed afterwards. Every `ntt` it starts leads a
/// process group of its own (with its ddrescue, FUSE drivers, ...), and every group it spawned
/// is killed when it is dropped: a failed test leaves no process behind.
pub struct Host {
    pub root: PathBuf,
    pub url: String,
    spawned: std::sync::Mutex<Vec<i32>>,
}

impl Host {
    /// A host whose store and data directory are initialised (`ntt init`), as after setup.
    pub async fn new(pool: &PgPool) -> Self {
        let host = Self::bare(pool).await;
        let output = host.run(&["init"]);
        assert!(
            output.status.success(),
            "ntt init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        host
    }

    /// A host with nothing initialised.
    pub async fn bare(pool: &PgPool) -> Self {
        let root =
            std::env::temp_dir().join(format!("ntt-host-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&root).unwrap();
        Self {
            root,
            url: super::db::url_of(pool).await,
            spawned: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ntt"));
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
            .args(args)
            .env("NTT_DATABASE_URL", &self.url)
            .env("NTT_DATA_DIR", self.root.join("images"))
            .env("NTT_LOCK_DIR", self.root.join("lock"))
            .env("NTT_MOUNT_DIR", self.root.join("mnt"))
            .env("NTT_STORE", self.root.join("store"))
            .env_remove("NTT_JSON")
            .env_remove("NTT_PROFILE");
        command
    }

    /// `ntt ARGS` as the argument list of `program` `before...` (a wrapper such as `prlimit`
    /// or `unshare`), with this host's environment.
    pub fn wrapped(&self, program: &str, before: &[&str], args: &[&str]) -> Command {
        let ntt = self.command(args);
        let mut command = Command::new(program);
        command
            .args(before)
            .arg(ntt.get_program())
            .args(ntt.get_args());
        for (key, value) in ntt.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        eprintln!(
            "ntt {args:?} stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `ntt image ... --json` and returns the report; the run must succeed.
    pub fn image(&self, args: &[&str]) -> Value {
        let mut all = vec!["image", "--json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "ntt image failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.start(&mut command)
    }

    /// Starts a command made by [`Host::command`]; its process group dies with this host.
    pub fn start(&self, command: &mut Command) -> Child {
        let child = command.spawn().unwrap();
        self.spawned
            .lock()
            .unwrap()
            .push(i32::try_from(child.id()).unwrap());
        child
    }

    pub fn mapfile(&self, report_or_hash: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{report_or_hash}.map"))
    }
}

impl Drop for Host {
    /// Takes down whatever a failed test left under this host's root (mounts first, then the
    /// loop devices backed by its files: only ours), so one failure does not leak into the next.
    fn drop(&mut self) {
        for group in self
            .spawned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            // Gone already (the usual case) answers ESRCH.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let root = self.root.display().to_string();
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<String> = info
                .lines()
                .filter_map(|line| line.split(' ').nth(4))
                .filter(|point| point.starts_with(&root))
                .map(str::to_owned)
                .collect();
            points.reverse();
            for point in points {
                eprintln!("test cleanup: unmounting {point}");
                let _ = Command::new("umount").arg("--lazy").arg(&point).status();
            }
        }
        if let Ok(output) = Command::new("losetup")
            .args(["--list", "--noheadings", "--raw", "-O", "NAME,BACK-FILE"])
            .output()
        {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if let Some((device, backing)) = line.split_once(' ')
                    && backing.starts_with(&root)
                {
                    eprintln!("test cleanup: detaching {device} ({backing})");
                    let _ = Command::new("losetup").arg("-d").arg(device).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// Writes a partition table to `image` with sfdisk.
pub fn partition(image: &Path, script: &[u8]) {
    use std::io::Write;
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    sfdisk.stdin.take().unwrap().write_all(script).unwrap();
    assert!(sfdisk.wait().unwrap().success());
}

pub fn loops_backed_by(image: &Path) -> String {
    let output = Command::new("losetup")
        .arg("-j")
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// Runs a command that must succeed (stdout discarded).
pub fn run(command: &mut Command) {
    let output = command.stdout(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `fls -r -p` of the filesystem at `offset` (bytes): the independent listing, without NTFS
/// metadata files, streams, and The Sleuth Kit's virtual files.
pub fn fls_paths(image: &Path, offset: u64) -> Vec<String> {
    let output = Command::new("fls")
        .args(["-r", "-p", "-u", "-o", &(offset / 512).to_string()])
        .arg(image)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut paths: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("v/v") && !line.starts_with("V/V"))
        .filter_map(|line| line.split_once(":\t").map(|(_, path)| path.to_owned()))
        .filter(|path| !path.split('/').any(|part| part.starts_with('$')) && !path.contains(':'))
        .collect();
    paths.sort();
    paths
}

/// Copies a filesystem image into a disk image at `offset` bytes.
pub fn place(disk: &Path, filesystem: &Path, offset: u64) {
    run(Command::new("dd")
        .arg(format!("if={}", filesystem.display()))
        .arg(format!("of={}", disk.display()))
        .args([
            "bs=512",
            &format!("seek={}", offset / 512),
            "conv=notrunc,sparse",
            "status=none",
        ]));
}

/// An ext4 filesystem image holding `content`.
pub fn ext4(path: &Path, size: u64, content: &Path) {
    sparse_file(path, size);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(content)
        .arg(path));
}

/// `ntt image` of a file, returning its hash.
pub fn register(host: &Host, image: &Path, name: &str) -> String {
    let report = host.image(&[image.to_str().unwrap(), "--name", name]);
    report["hash"].as_str().unwrap().to_owned()
}

/// Rewrites, in a FAT image, the long-name characters of every entry whose long name is
/// `placeholder` repeated (as mtools wrote it) into `name`, of the same length or shorter: a name no
/// FAT driver would write, such as `../../x` or `/tmp/x`. The short-name checksum is
/// untouched, so readers keep taking the long name.
pub fn craft_fat_long_name(image: &Path, placeholder: char, name: &str) {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut bytes = std::fs::read(image).unwrap();
    // Character slots of a long-name entry: 5 at 1, 6 at 14, 2 at 28 (UCS-2, little endian).
    let slots: Vec<usize> = (0..5)
        .map(|i| 1 + 2 * i)
        .chain((0..6).map(|i| 14 + 2 * i))
        .chain((0..2).map(|i| 28 + 2 * i))
        .collect();
    let mut patched = 0;
    for entry in bytes.chunks_exact_mut(32) {
        if entry[11] != 0x0F || entry[0] == 0xE5 {
            continue;
        }
        let sequence = usize::from(entry[0] & 0x1F) - 1;
        for (k, slot) in slots.iter().enumerate() {
            let index = sequence * 13 + k;
            let current = u16::from_le_bytes([entry[*slot], entry[slot + 1]]);
            if current != placeholder as u16 {
                continue;
            }
            // A shorter name ends with a NUL character and 0xFFFF padding, as drivers write.
            let unit = match index.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[index],
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 0xFFFF,
            };
            entry[*slot..slot + 2].copy_from_slice(&unit.to_le_bytes());
            patched += usize::from(index < units.len());
        }
    }
    assert_eq!(patched, units.len(), "every character of {name:?} written");
    std::fs::write(image, bytes).unwrap();
}

/// `debugfs -R 'blocks NAME'`: the data blocks of `name` in the ext4 at `fs`.
pub fn ext4_blocks(fs: &Path, name: &str) -> Vec<u64> {
    let output = Command::new("debugfs")
        .args(["-R", &format!("blocks {name}")])
        .arg(fs)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The objects of JSON-lines output (one per non-empty line).
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// `ntt ls MEDIUM --damaged --json`: one object per damaged file.
pub fn ls_damaged(host: &Host, medium: &str) -> Vec<Value> {
    let output = host.run(&["ls", medium, "--damaged", "--json"]);
    assert!(output.status.success(), "ntt ls {medium} --damaged");
    json_lines(&output.stdout)
}

/// Attaches `file` to a free loop device of our own (read-write), returning the device; the
/// caller detaches it.
pub fn attach_loop(file: &Path) -> String {
    let attach = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        attach.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&attach.stderr)
    );
    String::from_utf8(attach.stdout).unwrap().trim().to_owned()
}
