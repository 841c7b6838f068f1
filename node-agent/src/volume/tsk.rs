//! The user-space reader: The Sleuth Kit reads a volume straight from the image, for types this
//! host can neither mount nor serve through FUSE (HFS+ here; FAT and exFAT on hosts without
//! their drivers).
//!
//! Rules: listing is one `fls -r -u -m /` run (allocated entries only, metadata in the body
//! format, parsed from both ends so a `|` in a name is kept); content is `icat` of the metadata
//! address, streamed, and an `icat` that fails is a read error, never a short file. A reader of
//! deleted entries ([`TskVolume::open_deleted`]) lists them alone (`fls -r -d -m /`, every line
//! marked, placed under the live directories of `fls -r -u -D`), records
//! those marked ` (deleted-realloc)` as excluded ([`REALLOCATED`]), tells a second deleted entry
//! of the same name apart by a NUL byte and its address, and recovers content with `icat -r`. The
//! Sleuth Kit's own virtual files (`$MBR`, `$FAT1`, `$OrphanFiles`, ...), NTFS `$FILE_NAME`
//! timestamp records and HFS+ special files (catalog, extents, ...) are not directory entries
//! and are left out. Known limit: The Sleuth Kit prints control characters in names (newline,
//! NUL, ...) as `^`, so names read this way are exact except for those.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use super::entry::{Entry, EntryKind};
use super::probe::FsType;
use super::reader::WalkItem;

/// Why The Sleuth Kit could not read.
#[derive(Debug, thiserror::Error)]
pub enum TskError {
    /// The type has no Sleuth Kit reader.
    #[error("The Sleuth Kit cannot read {fs_type}")]
    Unsupported {
        /// The type.
        fs_type: &'static str,
    },
    /// The volume does not start on a 512-byte boundary.
    #[error("volume offset {offset} is not a multiple of 512 bytes")]
    Unaligned {
        /// The offset.
        offset: u64,
    },
    /// A tool could not be run.
    #[error("cannot run {tool} (The Sleuth Kit; `scripts/setup` installs it)")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("{tool} failed on {image} at offset {offset}: {stderr}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// The image.
        image: PathBuf,
        /// The volume's offset.
        offset: u64,
        /// What it said.
        stderr: String,
    },
    /// A listing line could not be understood.
    #[error("cannot parse fls output line {line:?}: {reason}")]
    Parse {
        /// The line (lossy).
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Longest symlink target kept (Linux's `PATH_MAX`).
pub const MAX_TARGET: usize = 4096;

/// The Sleuth Kit's name for a type it reads (`fls -f`), or `None`.
pub const fn tsk_type(fs_type: FsType) -> Option<&'static str> {
    Some(match fs_type {
        FsType::Ext2 => "ext2",
        FsType::Ext3 => "ext3",
        FsType::Ext4 => "ext4",
        FsType::Fat12 => "fat12",
        FsType::Fat16 => "fat16",
        FsType::Fat32 => "fat32",
        FsType::Exfat => "exfat",
        FsType::Ntfs => "ntfs",
        // The Sleuth Kit calls HFS+ (and HFSX) "hfs"; classic HFS it does not read.
        FsType::Hfsplus => "hfs",
        FsType::Iso9660 => "iso9660",
        _ => return None,
    })
}

/// A volume read by The Sleuth Kit.
#[derive(Debug, Clone)]
pub struct TskVolume {
    image: PathBuf,
    offset: u64,
    fs_type: FsType,
    tsk_type: &'static str,
    /// Lists the deleted entries (and recovers their content) instead of the live ones.
    deleted: bool,
}

impl TskVolume {
    /// A reader of the `fs_type` filesystem at byte `offset` of `image`; checks that The Sleuth
    /// Kit can open it.
    pub fn open_volume(image: &Path, offset: u64, fs_type: FsType) -> Result<Self, TskError> {
        Self::open_as(image, offset, fs_type, false)
    }

    /// A reader of the deleted entries of the `fs_type` filesystem at byte `offset` of
    /// `image`: [`TskVolume::stream`] lists only entries whose name is deleted and
    /// [`TskVolume::open`] recovers content (`icat -r`).
    pub fn open_deleted(image: &Path, offset: u64, fs_type: FsType) -> Result<Self, TskError> {
        Self::open_as(image, offset, fs_type, true)
    }

    fn open_as(
        image: &Path,
        offset: u64,
        fs_type: FsType,
        deleted: bool,
    ) -> Result<Self, TskError> {
        let tsk_type = tsk_type(fs_type).ok_or(TskError::Unsupported {
            fs_type: fs_type.as_str(),
        })?;
        if !offset.is_multiple_of(512) {
            return Err(TskError::Unaligned { offset });
        }
        let volume = Self {
            image: image.to_owned(),
            offset,
            fs_type,
            tsk_type,
            deleted,
        };
        // Listing the root directory proves more than the superblock: a filesystem whose
        // metadata is destroyed fails here rather than in the middle of enumeration.
        volume.fls(&[])?;
        Ok(volume)
    }

    /// The image read.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The type read.
    pub fn fs_type(&self) -> FsType {
        self.fs_type
    }

    /// Whether this reads the deleted entries.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command
            .args(["-f", self.tsk_type, "-o", &(self.offset / 512).to_string()])
            .stdin(Stdio::null());
        command
    }

    /// Runs `fls` with `args` on the volume; its stdout.
    fn fls(&self, args: &[&str]) -> Result<Vec<u8>, TskError> {
        let output = self
            .command("fls")
            .args(args)
            .arg(&self.image)
            .output()
            .map_err(|source| TskError::Spawn {
                tool: "fls",
                source,
            })?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(self.failed("fls", &output.stderr))
        }
    }

    fn failed(&self, tool: &'static str, stderr: &[u8]) -> TskError {
        // The first lines say what is wrong; a usage text after them says nothing more.
        let text = String::from_utf8_lossy(stderr);
        let stderr = text
            .lines()
            .take_while(|line| !line.starts_with("usage:"))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        TskError::Failed {
            tool,
            image: self.image.clone(),
            offset: self.offset,
            stderr,
        }
    }

    /// Every allocated entry, with metadata (lines that could not be read are left out).
    /// Blocking; holds the listing in memory.
    pub fn list(&self) -> Result<Vec<Entry>, TskError> {
        let mut entries = Vec::new();
        self.stream(&mut |item| {
            if let WalkItem::Entry(entry) = item {
                entries.push(entry);
            }
        })?;
        Ok(entries)
    }

    /// Visits every allocated entry, with metadata, as `fls` lists it. A line that cannot be
    /// parsed, or a symlink whose target cannot be read, is a [`WalkItem::Error`] of its own
    /// and the listing goes on; a symlink target is read up to [`MAX_TARGET`] bytes. Blocking.
    pub fn stream(&self, visit: &mut dyn FnMut(WalkItem)) -> Result<(), TskError> {
        self.stream_watched(None, visit)
    }

    /// [`TskVolume::stream`] with every read of `fls`'s output timed on `clock`, so that a
    /// watchdog can kill an `fls` stuck in a crafted filesystem.
    pub fn stream_watched(
        &self,
        clock: Option<&std::sync::Arc<super::watchdog::Clock>>,
        visit: &mut dyn FnMut(WalkItem),
    ) -> Result<(), TskError> {
        // Deleted entries are listed on their own (`-d`: every line carries The Sleuth Kit's
        // deletion mark, so a live name ending in " (deleted)" is never taken for one); the
        // live directories they are placed under come from a listing of those first.
        let (which, names): (&[&str], Names) = if self.deleted {
            (&["-r", "-d", "-m", "/"], self.live_directories()?)
        } else {
            (&["-r", "-u", "-m", "/"], Names::default())
        };
        let mut child = self
            .command("fls")
            .args(which)
            .arg(&self.image)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TskError::Spawn {
                tool: "fls",
                source,
            })?;
        let stdout = child.stdout.take().ok_or(TskError::Spawn {
            tool: "fls",
            source: std::io::Error::other("no stdout"),
        })?;
        let stdout: Box<dyn Read> = match clock {
            Some(clock) => {
                clock.aim(super::watchdog::Target::Process(child.id()));
                Box::new(super::watchdog::Watched::new(stdout, clock.clone()))
            }
            None => Box::new(stdout),
        };
        let result = self.read_listing(std::io::BufReader::new(stdout), names, visit);
        if result.is_err() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().map_err(|source| TskError::Spawn {
            tool: "fls",
            source,
        })?;
        result?;
        if output.status.success() {
            Ok(())
        } else {
            Err(self.failed("fls", &output.stderr))
        }
    }

    /// The live directories (and The Sleuth Kit's virtual ones), placed as a live listing
    /// places them: where the deleted entries are put.
    fn live_directories(&self) -> Result<Names, TskError> {
        let mut command = self.command("fls");
        command.args(["-r", "-u", "-D", "-m", "/"]).arg(&self.image);
        let output = bounded_output(command, "fls", BLOCK_TOOL_TIMEOUT).map_err(|source| {
            TskError::Spawn {
                tool: "fls",
                source,
            }
        })?;
        if !output.status.success() {
            return Err(self.failed("fls", &output.stderr));
        }
        let mut names = Names::default();
        for line in output.stdout.split(|&b| b == b'\n') {
            if let Ok(Some(body)) = parse_body_line(line)
                && body.kind == EntryKind::Dir
            {
                names.place(&body.name, true);
            } else if let Some(directory) = virtual_directory(line) {
                names.place(&directory, true);
            }
        }
        Ok(names)
    }

    /// Visits the entries of an `fls -m` listing read from `lines`; a line that cannot be
    /// parsed is a [`WalkItem::Error`] with its raw bytes. Stops on a read error or a failure
    /// that is not the line's own.
    fn read_listing(
        &self,
        mut lines: impl std::io::BufRead,
        mut names: Names,
        visit: &mut dyn FnMut(WalkItem),
    ) -> Result<(), TskError> {
        let mut line = Vec::new();
        let mut emitted = std::collections::HashSet::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(self.failed("fls", error.to_string().as_bytes())),
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            // Only a listing of deleted entries carries deletion marks: in a live one the same
            // words are part of a name.
            let (unsuffixed, deletion) = if self.deleted {
                deletion_of(text)
            } else {
                (text.to_vec(), None)
            };
            let text = unsuffixed.as_slice();
            match self.entry_of(text) {
                Ok(Some((mut entry, problem))) => {
                    let directory = entry.kind == EntryKind::Dir;
                    let (mut path, escaped) = names.place(&entry.path, directory);
                    if self.deleted && !emitted.insert(path.clone()) {
                        // A second deleted entry of the same name (deleted twice, or FAT's lost
                        // first letter): NUL and its metadata address tell them apart, and a
                        // directory's entries that follow are placed under this one.
                        path.push(0);
                        path.extend_from_slice(entry.ino.to_string().as_bytes());
                        emitted.insert(path.clone());
                        if directory {
                            names.rename(&entry.path, &path);
                        }
                    }
                    if let Some(message) = escaped {
                        visit(WalkItem::Error {
                            path: entry.path.clone(),
                            error: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
                        });
                    }
                    entry.path = path;
                    if let Some(error) = problem {
                        visit(WalkItem::Error {
                            path: entry.path.clone(),
                            error,
                        });
                    }
                    if deletion == Some(Deletion::Reallocated) {
                        visit(WalkItem::Excluded {
                            entry,
                            reason: REALLOCATED.to_owned(),
                        });
                    } else if self.deleted && entry.kind == EntryKind::File && entry.size == 0 {
                        // Such as NTFS's unused reserved records among the orphan files: often
                        // no data attribute at all, so nothing for icat to read.
                        visit(WalkItem::Excluded {
                            entry,
                            reason: EMPTY.to_owned(),
                        });
                    } else {
                        visit(WalkItem::Entry(entry));
                    }
                }
                Ok(None) => {
                    if let Some(directory) = virtual_directory(text) {
                        names.place(&directory, true);
                    }
                }
                Err(error @ TskError::Parse { .. }) => visit(WalkItem::Error {
                    path: text.to_vec(),
                    error: std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string()),
                }),
                Err(error) => return Err(error),
            }
        }
    }

    /// The entry of one `fls` line, with a problem of its own (an unreadable or overlong
    /// symlink target) when it has one.
    fn entry_of(&self, line: &[u8]) -> Result<Option<(Entry, Option<std::io::Error>)>, TskError> {
        let Some(body) = parse_body_line(line)? else {
            return Ok(None);
        };
        if matches!(
            self.fs_type,
            FsType::Fat12 | FsType::Fat16 | FsType::Fat32 | FsType::Exfat
        ) && !body.name.contains(&b'/')
            && body.name.ends_with(b" (Volume Label Entry)")
        {
            // The volume label is a directory entry on FAT, but names no file.
            return Ok(None);
        }
        if self.fs_type == FsType::Hfsplus
            && body.ino < 16
            && body.name.first() == Some(&b'$')
            && !body.name.contains(&b'/')
        {
            // HFS+ special files (extents, catalog, allocation, ...): metadata, not entries.
            return Ok(None);
        }
        if body.kind != EntryKind::Symlink {
            return Ok(Some((body.into_entry(None), None)));
        }
        let (target, problem) = match self.read_target(body.ino) {
            Ok(target) => {
                let (target, problem) = bounded_target(target);
                (Some(target), problem)
            }
            Err(error) => (
                None,
                Some(std::io::Error::other(format!(
                    "cannot read the symlink's target: {error}"
                ))),
            ),
        };
        Ok(Some((body.into_entry(target), problem)))
    }

    /// A symlink's target, up to one byte more than [`MAX_TARGET`] (a crafted inode can claim
    /// gigabytes).
    fn read_target(&self, ino: u64) -> std::io::Result<Vec<u8>> {
        let mut target = Vec::new();
        self.open(ino)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .take(u64::try_from(MAX_TARGET).unwrap_or(u64::MAX) + 1)
            .read_to_end(&mut target)?;
        Ok(target)
    }

    /// Runs a block-map tool (`blkcat`, `blkls`, `ifind`, `istat`, `ffind`) with `args`
    /// after the image; its stdout. `tolerated` is an exit that still answers (`ifind` exits
    /// 1 when no inode owns the unit).
    fn block_tool(
        &self,
        tool: &'static str,
        before: &[&str],
        after: &[&str],
    ) -> Result<(bool, String), TskError> {
        let mut command = self.command(tool);
        command.args(before).arg(&self.image).args(after);
        let output = bounded_output(command, tool, BLOCK_TOOL_TIMEOUT)
            .map_err(|source| TskError::Spawn { tool, source })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok((true, stdout))
        } else if output.status.code() == Some(1) && output.stderr.is_empty() {
            Ok((false, stdout))
        } else {
            Err(self.failed(tool, &output.stderr))
        }
    }

    /// The size of the filesystem's addressable unit (block, cluster or sector) in bytes: the
    /// unit of every address the block-map tools take and print.
    pub fn unit_size(&self) -> Result<u64, TskError> {
        let (_, out) = self.block_tool("blkcat", &["-s"], &[])?;
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| self.unparsable("blkcat", &out))
    }

    /// Whether each of `units` is allocated, asked of `blkls` in windows around the runs of
    /// units (a file whose units lie far apart is not answered with every unit between them).
    pub fn allocated_among(
        &self,
        units: &[u64],
    ) -> Result<std::collections::HashSet<u64>, TskError> {
        let mut sorted = units.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut allocated = std::collections::HashSet::new();
        for (first, last) in windows(&sorted, ALLOCATION_GAP) {
            allocated.extend(
                self.allocation(first, last)?
                    .into_iter()
                    .filter_map(|(unit, a)| a.then_some(unit)),
            );
        }
        Ok(allocated)
    }

    /// Whether each unit from `first` to `last` (inclusive) is allocated (`blkls -l -e`).
    pub fn allocation(&self, first: u64, last: u64) -> Result<Vec<(u64, bool)>, TskError> {
        let range = format!("{first}-{last}");
        let (_, out) = self.block_tool("blkls", &["-l", "-e"], &[&range])?;
        Ok(parse_allocation(&out))
    }

    /// Who owns `unit` (`ifind -d`).
    pub fn owner(&self, unit: u64) -> Result<UnitOwner, TskError> {
        let (_, out) = self.block_tool("ifind", &["-d", &unit.to_string()], &[])?;
        Ok(parse_owner(&out))
    }

    /// The units holding the content of the file at metadata address `address`, in file order
    /// (`istat`: ext's direct blocks, FAT's and ISO 9660's sectors, the unnamed data attribute
    /// of NTFS and HFS+). Empty when the content is resident in the metadata or has no units.
    pub fn content_units(&self, address: &str) -> Result<Vec<u64>, TskError> {
        let (_, out) = self.block_tool("istat", &[], &[address])?;
        Ok(parse_content_units(&out))
    }

    /// The first name of the entry at metadata address `address` (`ffind`), relative to the
    /// volume root; `None` when it has none.
    pub fn name_of(&self, address: &str) -> Result<Option<Vec<u8>>, TskError> {
        let output = self
            .command("ffind")
            .arg(&self.image)
            .arg(address)
            .output()
            .map_err(|source| TskError::Spawn {
                tool: "ffind",
                source,
            })?;
        let first = output
            .stdout
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        // Deleted names come as "* /path"; a name is "/path".
        Ok(first
            .strip_prefix(b"/")
            .filter(|name| !name.is_empty())
            .map(<[u8]>::to_vec))
    }

    fn unparsable(&self, tool: &'static str, out: &str) -> TskError {
        TskError::Failed {
            tool,
            image: self.image.clone(),
            offset: self.offset,
            stderr: format!(
                "unexpected output {:?}",
                out.chars().take(200).collect::<String>()
            ),
        }
    }

    /// Streams the content of the file with metadata address `ino` (recovered, `icat -r`, on a
    /// reader of deleted entries).
    pub fn open(&self, ino: u64) -> Result<IcatReader, TskError> {
        let child = self
            .command("icat")
            .args(if self.deleted { &["-r"][..] } else { &[][..] })
            .arg(&self.image)
            .arg(ino.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TskError::Spawn {
                tool: "icat",
                source,
            })?;
        Ok(IcatReader {
            child: Some(child),
            stdout: None,
            ino,
        })
    }
}

/// Longest a block-map tool may run: a crafted filesystem can make The Sleuth Kit loop.
pub const BLOCK_TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_mins(5);

/// Units between two runs of a file's units below which one `blkls` window covers both.
const ALLOCATION_GAP: u64 = 1024;

/// The windows `(first, last)` covering sorted, distinct `units`, a new one wherever two units
/// lie more than `gap` apart (pure).
pub fn windows(units: &[u64], gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &unit in units {
        match out.last_mut() {
            Some((_, last)) if unit.saturating_sub(*last) <= gap => *last = unit,
            _ => out.push((unit, unit)),
        }
    }
    out
}

/// Runs `command` to its end with its output, killing it after `timeout` (then an error of
/// kind `TimedOut`). Its output is read while it runs, so a full pipe cannot stall it.
fn bounded_output(
    mut command: Command,
    tool: &str,
    timeout: std::time::Duration,
) -> std::io::Result<std::process::Output> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = (stdout.join(), stderr.join());
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{tool} ran longer than {timeout:?} and was killed"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    };
    let join = |handle: std::thread::JoinHandle<Vec<u8>>| {
        handle
            .join()
            .map_err(|_| std::io::Error::other("an output reader thread failed"))
    };
    Ok(std::process::Output {
        status,
        stdout: join(stdout)?,
        stderr: join(stderr)?,
    })
}

/// Who owns a unit of a filesystem, as `ifind -d` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitOwner {
    /// The entry at this metadata address (`12`, or NTFS's `64-128-2`).
    Entry(String),
    /// Filesystem structures with no entry (superblock, group tables, FAT, ...).
    Metadata,
    /// Nothing The Sleuth Kit knows of.
    Nobody,
}

fn parse_owner(out: &str) -> UnitOwner {
    let first = out.lines().next().unwrap_or_default().trim();
    if first.eq_ignore_ascii_case("meta data") {
        UnitOwner::Metadata
    } else if first
        .split('-')
        .next()
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        UnitOwner::Entry(first.to_owned())
    } else {
        UnitOwner::Nobody
    }
}

fn parse_allocation(out: &str) -> Vec<(u64, bool)> {
    out.lines()
        .filter_map(|line| {
            let (unit, state) = line.split_once('|')?;
            let unit = unit.trim().parse::<u64>().ok()?;
            match state.trim() {
                "a" => Some((unit, true)),
                "f" => Some((unit, false)),
                _ => None,
            }
        })
        .collect()
}

/// The numbers of the first content section of `istat` output.
fn parse_content_units(out: &str) -> Vec<u64> {
    let starts_content = |line: &str| {
        let line = line.trim();
        line == "Direct Blocks:"
            || line == "Sectors:"
            || ((line.starts_with("Type: $DATA ") || line.starts_with("Type: DFLT "))
                && line.contains("Name: N/A")
                && line.contains("Non-Resident"))
    };
    let mut lines = out.lines().skip_while(|line| !starts_content(line));
    if lines.next().is_none() {
        return Vec::new();
    }
    let mut units = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || !words.iter().all(|w| w.bytes().all(|b| b.is_ascii_digit())) {
            break;
        }
        units.extend(words.iter().filter_map(|w| w.parse::<u64>().ok()));
    }
    units
}

/// A file's content streamed from `icat`; a failing `icat` ends in an error, not a short read.
#[derive(Debug)]
pub struct IcatReader {
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    ino: u64,
}

impl IcatReader {
    /// The `icat` process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Read for IcatReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stdout.is_none() {
            let Some(child) = self.child.as_mut() else {
                return Ok(0);
            };
            self.stdout = child.stdout.take();
        }
        let Some(stdout) = self.stdout.as_mut() else {
            return Ok(0);
        };
        let n = stdout.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        // End of stream: only an icat that exited cleanly makes it the end of the file.
        self.stdout = None;
        let Some(child) = self.child.take() else {
            return Ok(0);
        };
        let output = child.wait_with_output()?;
        if output.status.success() {
            Ok(0)
        } else {
            Err(std::io::Error::other(format!(
                "icat of inode {} failed ({}): {}",
                self.ino,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

impl Drop for IcatReader {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the entries of an `fls` listing go: `fls` prints each entry's path as its parent's path,
/// `/` and its name, so a name holding `/` (or one that is empty, `.` or `..`) would read as
/// another path, possibly one that climbs. Each line's parent is the longest prefix that is a
/// directory listed before it (`fls -r` lists a directory before its entries); what follows is
/// the name. An unsafe name is recorded with NUL bytes, which no name in a listing holds: every
/// `/` in it becomes NUL, and an empty, `.` or `..` name gets a NUL appended; an entry error
/// keeps the raw bytes.
#[derive(Debug, Default)]
pub struct Names {
    /// Directories listed so far, as `fls` prints them.
    directories: std::collections::HashSet<Vec<u8>>,
    /// Directories whose recorded path differs from the printed one.
    renamed: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

impl Names {
    /// Records that the directory `fls` printed as `printed` is recorded as `path`: the
    /// entries listed after it are placed under `path`.
    pub fn rename(&mut self, printed: &[u8], path: &[u8]) {
        self.renamed.insert(printed.to_vec(), path.to_vec());
    }

    /// The recorded path of the entry `fls` printed as `printed` (without its leading `/`),
    /// and the problem to record when its name had to be escaped. `directory`: the entry is a
    /// directory (real or virtual), whose entries follow.
    pub fn place(&mut self, printed: &[u8], directory: bool) -> (Vec<u8>, Option<String>) {
        let parent = printed
            .iter()
            .enumerate()
            .rev()
            .filter(|&(i, &b)| b == b'/' && i > 0)
            .map(|(i, _)| i)
            .find(|&i| self.directories.contains(&printed[..i]));
        let (parent_path, name) = match parent {
            Some(i) => {
                let raw = &printed[..i];
                let recorded = self.renamed.get(raw).map_or(raw, Vec::as_slice);
                (Some(recorded.to_vec()), &printed[i + 1..])
            }
            None => (None, printed),
        };
        let unsafe_name = matches!(name, b"" | b"." | b"..") || name.contains(&b'/');
        let mut recorded_name: Vec<u8> = name
            .iter()
            .map(|&b| if b == b'/' { 0 } else { b })
            .collect();
        if matches!(name, b"" | b"." | b"..") {
            recorded_name.push(0);
        }
        let path = match parent_path {
            Some(mut path) => {
                path.push(b'/');
                path.extend_from_slice(&recorded_name);
                path
            }
            None => recorded_name,
        };
        if directory {
            self.directories.insert(printed.to_vec());
            if path != printed {
                self.renamed.insert(printed.to_vec(), path.clone());
            }
        }
        let problem = unsafe_name.then(|| {
            format!(
                "the name {:?} cannot be a path component (empty, '.', '..' or holding '/'): \
                 listed with NUL bytes in its place",
                String::from_utf8_lossy(name)
            )
        });
        (path, problem)
    }
}

/// Why a deleted entry whose metadata now belongs to a live file is not copied.
pub const REALLOCATED: &str = "deleted name whose metadata entry now belongs to another file: \
                               the content found there is not this file's";

/// Why a deleted file of size 0 is not copied.
pub const EMPTY: &str = "deleted entry of size 0: no content to recover";

/// How `fls -m` marks a deleted name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// ` (deleted)`: the name and its metadata entry are both unallocated.
    Unallocated,
    /// ` (deleted-realloc)`: the name is deleted, its metadata entry belongs to a live file.
    Reallocated,
}

/// The `fls -m` line without the mark The Sleuth Kit puts after a deleted name (after a
/// symlink's ` -> target`), and the mark (pure).
pub fn deletion_of(line: &[u8]) -> (Vec<u8>, Option<Deletion>) {
    // The name field ends where the nine fields after it begin.
    let Some(name_end) = line
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b'|')
        .nth(8)
        .map(|(i, _)| i)
    else {
        return (line.to_vec(), None);
    };
    let head = &line[..name_end];
    for (mark, deletion) in [
        (&b" (deleted)"[..], Deletion::Unallocated),
        (&b" (deleted-realloc)"[..], Deletion::Reallocated),
    ] {
        if let Some(name) = head.strip_suffix(mark) {
            let mut out = name.to_vec();
            out.extend_from_slice(&line[name_end..]);
            return (out, Some(deletion));
        }
    }
    (line.to_vec(), None)
}

/// The printed path of a virtual directory line (`V/V`, such as `$OrphanFiles`), whose entries
/// follow it although it is no entry itself (pure).
fn virtual_directory(line: &[u8]) -> Option<Vec<u8>> {
    // From the right: crtime, ctime, mtime, atime, size, gid, uid, mode, inode, md5|name.
    let fields: Vec<&[u8]> = line.rsplitn(10, |&b| b == b'|').collect();
    let (head, mode) = (fields.get(9)?, fields.get(7)?);
    if mode.get(2) != Some(&b'V') {
        return None;
    }
    let name = &head[head.iter().position(|&b| b == b'|')? + 1..];
    Some(name.strip_prefix(b"/").unwrap_or(name).to_vec())
}

/// A symlink target as kept (pure): whole up to [`MAX_TARGET`] bytes, else its first
/// [`MAX_TARGET`] bytes and the problem to record.
pub fn bounded_target(mut target: Vec<u8>) -> (Vec<u8>, Option<std::io::Error>) {
    if target.len() <= MAX_TARGET {
        return (target, None);
    }
    target.truncate(MAX_TARGET);
    let problem = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("symlink target longer than {MAX_TARGET} bytes: its first {MAX_TARGET} are kept"),
    );
    (target, Some(problem))
}

/// One parsed line of `fls -m` (body format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLine {
    /// The path without the leading `/` and without a symlink's ` -> target`.
    pub name: Vec<u8>,
    /// The metadata address.
    pub ino: u64,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size.
    pub size: u64,
    /// Times in seconds: access, modification, change, birth (0 = unknown).
    pub times: [i64; 4],
}

impl BodyLine {
    fn into_entry(self, target: Option<Vec<u8>>) -> Entry {
        let ns = |s: i64| (s != 0).then(|| s.saturating_mul(1_000_000_000));
        let [access, modification, change, birth] = self.times;
        Entry {
            path: self.name,
            ino: self.ino,
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            nlink: 1,
            size: self.size,
            rdev: None,
            mtime_ns: ns(modification),
            ctime_ns: ns(change),
            atime_ns: ns(access),
            birth_ns: ns(birth),
            target,
        }
    }
}

/// Parses one `fls -m /` line (pure). `Ok(None)` for lines that are not directory entries:
/// The Sleuth Kit's virtual files and NTFS `$FILE_NAME` records.
pub fn parse_body_line(line: &[u8]) -> Result<Option<BodyLine>, TskError> {
    let error = |reason| TskError::Parse {
        line: String::from_utf8_lossy(line).into_owned(),
        reason,
    };
    // md5|name|inode|mode|uid|gid|size|atime|mtime|ctime|crtime; the name may hold '|'.
    let mut fields: Vec<&[u8]> = line.rsplitn(10, |&b| b == b'|').collect();
    if fields.len() != 10 {
        return Err(error("fewer than 11 fields"));
    }
    fields.reverse();
    let head = fields[0];
    let name_start = head
        .iter()
        .position(|&b| b == b'|')
        .ok_or(error("no md5 field"))?;
    let mut name = &head[name_start + 1..];
    let text = |field: &[u8]| String::from_utf8_lossy(field).into_owned();
    let number = |field: &[u8], what| text(field).parse::<u64>().map_err(|_| error(what));
    let time = |field: &[u8]| text(field).parse::<i64>().map_err(|_| error("bad time"));
    let address = text(fields[1]);
    let mut parts = address.split('-');
    let ino = parts
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(error("bad inode"))?;
    if parts.next() == Some("48") {
        // NTFS $FILE_NAME attribute: the same file's other timestamps, not an entry.
        return Ok(None);
    }
    let mode_text = fields[2];
    // "r/rrw-r--r--": directory-entry type, '/', metadata type, nine permission characters.
    if mode_text.len() < 12 || mode_text[1] != b'/' {
        return Err(error("bad mode"));
    }
    let kind = match mode_text[2] {
        b'r' | b'-' => EntryKind::File,
        b'd' => EntryKind::Dir,
        b'l' => EntryKind::Symlink,
        b'b' => EntryKind::Block,
        b'c' => EntryKind::Char,
        b'p' => EntryKind::Fifo,
        b'h' | b's' => EntryKind::Socket,
        // v/V: The Sleuth Kit's virtual files and directories.
        b'v' | b'V' => return Ok(None),
        _ => return Err(error("unknown entry type")),
    };
    let mode = permission_bits(&mode_text[3..12]);
    if kind == EntryKind::Symlink {
        // "name -> target": the target is read with icat; drop it from the name here.
        if let Some(arrow) = name.windows(4).rposition(|w| w == b" -> ") {
            name = &name[..arrow];
        }
    }
    let name = name.strip_prefix(b"/").unwrap_or(name).to_vec();
    if name.is_empty() {
        return Err(error("empty name"));
    }
    Ok(Some(BodyLine {
        name,
        ino,
        kind,
        mode,
        uid: number(fields[3], "bad uid")?,
        gid: number(fields[4], "bad gid")?,
        size: number(fields[5], "bad size")?,
        times: [
            time(fields[6])?,
            time(fields[7])?,
            time(fields[8])?,
            time(fields[9])?,
        ],
    }))
}

fn permission_bits(rwx: &[u8]) -> u32 {
    let mut mode = 0;
    for (i, &c) in rwx.iter().enumerate() {
        let bit = 1 << (8 - i);
        match (i % 3, c) {
            (_, b'r' | b'w' | b'x') => mode |= bit,
            // Set-id / sticky shown in the execute position.
            (2, b's') => mode |= bit | if i == 2 { 0o4000 } else { 0o2000 },
            (2, b'S') => mode |= if i == 2 { 0o4000 } else { 0o2000 },
            (2, b't') => mode |= bit | 0o1000,
            (2, b'T') => mode |= 0o1000,
            _ => {}
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_far_apart_are_asked_in_windows_of_their_own() {
        assert_eq!(windows(&[], 1024), []);
        assert_eq!(windows(&[5, 6, 7, 900], 1024), [(5, 900)]);
        assert_eq!(
            windows(&[5, 6, 2000, 2001, 9_000_000_000], 1024),
            [(5, 6), (2000, 2001), (9_000_000_000, 9_000_000_000)]
        );
    }

    #[test]
    fn a_tool_that_runs_too_long_is_killed() {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let started = std::time::Instant::now();
        let error =
            bounded_output(sleeper, "sleep", std::time::Duration::from_millis(200)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let mut echo = Command::new("sh");
        echo.args(["-c", "head -c 1000000 /dev/zero; echo err >&2"]);
        let output = bounded_output(echo, "sh", std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(
            output.stdout.len(),
            1_000_000,
            "a full pipe does not stall it"
        );
        assert_eq!(output.stderr, b"err\n");
    }

    #[test]
    fn deletion_marks_are_taken_off_the_name_and_kept_apart() {
        let (line, mark) =
            deletion_of(b"0|/dir/_ig.txt (deleted)|517|r/rrwxrwxrwx|0|0|6000|1|2|0|3");
        assert_eq!(mark, Some(Deletion::Unallocated));
        assert_eq!(line, b"0|/dir/_ig.txt|517|r/rrwxrwxrwx|0|0|6000|1|2|0|3");
        let (line, mark) =
            deletion_of(b"0|/a (deleted)|b (deleted-realloc)|12|r/rrw-r--r--|0|0|1|1|2|3|4");
        assert_eq!(mark, Some(Deletion::Reallocated));
        assert_eq!(line, b"0|/a (deleted)|b|12|r/rrw-r--r--|0|0|1|1|2|3|4");
        // A symlink's target comes before the mark.
        let (line, mark) = deletion_of(b"0|/l -> t (deleted)|13|l/lrwxrwxrwx|0|0|1|1|2|3|4");
        assert_eq!(mark, Some(Deletion::Unallocated));
        assert_eq!(line, b"0|/l -> t|13|l/lrwxrwxrwx|0|0|1|1|2|3|4");
        // A live entry, and a line too short to hold a name field, are left as they are.
        let allocated = b"0|/keep.txt|4|r/rrwxrwxrwx|0|0|6|1|2|0|3";
        assert_eq!(deletion_of(allocated), (allocated.to_vec(), None));
        assert_eq!(
            deletion_of(b"garbage (deleted)"),
            (b"garbage (deleted)".to_vec(), None)
        );
    }

    #[test]
    fn body_lines_parse_from_both_ends_so_bars_in_names_survive() {
        let line =
            b"0|/a|b c.txt|19|r/rrw-r--r--|501|20|53|1642144782|1642144783|1642144784|1642144785";
        let body = parse_body_line(line).unwrap().unwrap();
        assert_eq!(body.name, b"a|b c.txt");
        assert_eq!(body.ino, 19);
        assert_eq!(body.kind, EntryKind::File);
        assert_eq!(body.mode, 0o644);
        assert_eq!((body.uid, body.gid, body.size), (501, 20, 53));
        assert_eq!(
            body.times,
            [1_642_144_782, 1_642_144_783, 1_642_144_784, 1_642_144_785]
        );
    }

    #[test]
    fn symlinks_lose_their_arrow_and_virtual_files_are_not_entries() {
        let line = b"0|/a_link -> a_directory/another_file|22|l/lrwxr-xr-x|501|20|24|1|2|3|4";
        let body = parse_body_line(line).unwrap().unwrap();
        assert_eq!(body.name, b"a_link");
        assert_eq!(body.kind, EntryKind::Symlink);
        assert_eq!(body.mode, 0o755);
        assert!(
            parse_body_line(b"0|/$FAT1|1290052|v/v---------|0|0|322560|0|0|0|0")
                .unwrap()
                .is_none()
        );
        assert!(
            parse_body_line(b"0|/$OrphanFiles|1290054|V/V---------|0|0|0|0|0|0|0")
                .unwrap()
                .is_none()
        );
        assert!(
            parse_body_line(b"0|/$Boot ($FILE_NAME)|7-48-2|r/rr-xr-xr-x|48|0|76|1|1|1|1")
                .unwrap()
                .is_none()
        );
        let ntfs = parse_body_line(b"0|/$Boot|7-128-1|r/rr-xr-xr-x|48|0|8192|1|1|1|1")
            .unwrap()
            .unwrap();
        assert_eq!((ntfs.ino, ntfs.uid, ntfs.size), (7, 48, 8192));
    }

    #[test]
    fn set_id_and_sticky_bits_are_kept() {
        assert_eq!(permission_bits(b"rwsr-sr-t"), 0o7755);
        assert_eq!(permission_bits(b"rwSr--r-T"), 0o5644);
        assert_eq!(permission_bits(b"---------"), 0);
    }

    #[test]
    fn block_map_answers_parse() {
        assert_eq!(parse_owner("13\n"), UnitOwner::Entry("13".to_owned()));
        assert_eq!(
            parse_owner("64-128-2\n"),
            UnitOwner::Entry("64-128-2".to_owned())
        );
        assert_eq!(parse_owner("Meta Data\n"), UnitOwner::Metadata);
        assert_eq!(parse_owner("Inode not found\n"), UnitOwner::Nobody);
        assert_eq!(parse_owner(""), UnitOwner::Nobody);
        assert_eq!(
            parse_allocation(
                "class|host|image|first_time|unit\nblkls|vm||1|Fragment\naddr|alloc\n10|a\n11|f\n"
            ),
            [(10, true), (11, false)]
        );
        let ext = "inode: 13\nsize: 50000\n\nDirect Blocks:\n1163 1164 1165\n1166 \n\nIndirect Blocks:\n9\n";
        assert_eq!(parse_content_units(ext), [1163, 1164, 1165, 1166]);
        let ntfs = "Attributes: \nType: $STANDARD_INFORMATION (16-0)   Name: N/A   Resident   size: 72\n\
                    Type: $DATA (128-4)   Name: $Zone   Non-Resident   size: 9\n7 \n\
                    Type: $DATA (128-1)   Name: N/A   Non-Resident   size: 69632  init_size: 69632\n\
                    4 5 6 7 8 9 10 11 \n20 21 0 \nType: $BITMAP (176-3)   Name: N/A   Non-Resident   size: 16\n2\n";
        assert_eq!(
            parse_content_units(ntfs),
            [4, 5, 6, 7, 8, 9, 10, 11, 20, 21, 0]
        );
        let resident = "Type: $DATA (128-1)   Name: N/A   Resident   size: 12\n";
        assert!(parse_content_units(resident).is_empty());
        assert_eq!(parse_content_units("Sectors:\n27 \n"), [27]);
    }

    #[test]
    fn a_line_that_cannot_be_parsed_is_an_error_of_its_own_and_the_listing_goes_on() {
        let volume = TskVolume {
            image: PathBuf::from("/nonexistent.img"),
            offset: 0,
            fs_type: FsType::Fat16,
            tsk_type: "fat",
            deleted: false,
        };
        let listing = b"0|/a.txt|4|r/rrwxrwxrwx|0|0|6|0|0|0|0\n\
                        0|/broken|x|r/rrwxrwxrwx|0|0|6|0|0|0|0\n\
                        half a line\n\
                        0|/b.txt|5|r/rrwxrwxrwx|0|0|7|0|0|0|0\n";
        let mut items = Vec::new();
        volume
            .read_listing(&listing[..], Names::default(), &mut |item| items.push(item))
            .unwrap();
        let described: Vec<String> = items
            .iter()
            .map(|item| match item {
                WalkItem::Entry(entry) => String::from_utf8_lossy(&entry.path).into_owned(),
                WalkItem::Excluded { entry, .. } => {
                    format!("excluded {}", String::from_utf8_lossy(&entry.path))
                }
                WalkItem::Error { path, error } => {
                    format!("error {}: {error}", String::from_utf8_lossy(path))
                }
            })
            .collect();
        assert_eq!(described.len(), 4, "{described:?}");
        assert_eq!(described[0], "a.txt");
        assert!(
            described[1].starts_with("error 0|/broken|x") && described[1].contains("bad inode")
        );
        assert!(
            described[2].starts_with("error half a line"),
            "{described:?}"
        );
        assert_eq!(described[3], "b.txt");
    }

    #[test]
    fn a_deleted_listing_keeps_only_deleted_entries_placed_under_live_directories() {
        let mut volume = TskVolume {
            image: PathBuf::from("/nonexistent.img"),
            offset: 0,
            fs_type: FsType::Ext4,
            tsk_type: "ext4",
            deleted: true,
        };
        let describe = |items: Vec<WalkItem>| -> Vec<(Vec<u8>, bool)> {
            items
                .into_iter()
                .map(|item| match item {
                    WalkItem::Entry(entry) => (entry.path, false),
                    WalkItem::Excluded { entry, reason } => {
                        assert_eq!(reason, REALLOCATED);
                        (entry.path, true)
                    }
                    WalkItem::Error { path, error } => {
                        panic!("{}: {error}", String::from_utf8_lossy(&path))
                    }
                })
                .collect()
        };
        // `fls -d`: every line marked; the live directory `dir` comes from the live listing.
        let listing = b"0|/dir/a.txt (deleted)|14|r/rrw-r--r--|0|0|6|0|0|0|0\n\
                        0|/dir/a.txt (deleted)|15|r/rrw-r--r--|0|0|9|0|0|0|0\n\
                        0|/old (deleted)|16|d/drwxr-xr-x|0|0|4096|0|0|0|0\n\
                        0|/old/b.txt (deleted)|17|r/rrw-r--r--|0|0|1|0|0|0|0\n\
                        0|/old (deleted)|18|d/drwxr-xr-x|0|0|4096|0|0|0|0\n\
                        0|/old/c.txt (deleted)|19|r/rrw-r--r--|0|0|1|0|0|0|0\n\
                        0|/d.txt (deleted-realloc)|13|r/rrw-r--r--|0|0|6|0|0|0|0\n";
        let mut live = Names::default();
        live.place(b"dir", true);
        let mut items = Vec::new();
        volume
            .read_listing(&listing[..], live, &mut |item| items.push(item))
            .unwrap();
        assert_eq!(
            describe(items),
            [
                (b"dir/a.txt".to_vec(), false),
                (b"dir/a.txt\x0015".to_vec(), false),
                (b"old".to_vec(), false),
                (b"old/b.txt".to_vec(), false),
                (b"old\x0018".to_vec(), false),
                (b"old\x0018/c.txt".to_vec(), false),
                (b"d.txt".to_vec(), true),
            ]
        );
        // A live listing has no marks: a name ending in " (deleted)" is the whole name.
        volume.deleted = false;
        let mut items = Vec::new();
        volume
            .read_listing(
                &b"0|/notes (deleted)|20|r/rrw-r--r--|0|0|6|0|0|0|0\n\
                   0|/clip (deleted-realloc)|21|r/rrw-r--r--|0|0|6|0|0|0|0\n"[..],
                Names::default(),
                &mut |item| items.push(item),
            )
            .unwrap();
        assert_eq!(
            describe(items),
            [
                (b"notes (deleted)".to_vec(), false),
                (b"clip (deleted-realloc)".to_vec(), false),
            ]
        );
    }

    #[test]
    fn names_that_are_not_path_components_are_listed_with_nul_bytes() {
        let mut names = Names::default();
        let mut place = |printed: &[u8], dir: bool| {
            let (path, problem) = names.place(printed, dir);
            (
                String::from_utf8_lossy(&path).into_owned(),
                problem.is_some(),
            )
        };
        assert_eq!(place(b"docs", true), ("docs".into(), false));
        assert_eq!(place(b"docs/a.txt", false), ("docs/a.txt".into(), false));
        // A name holding '/': its parent is the longest listed directory before it.
        assert_eq!(place(b"docs/x/y", false), ("docs/x\0y".into(), true));
        assert_eq!(
            place(b"../../escape", false),
            ("..\0..\0escape".into(), true)
        );
        assert_eq!(place(b"/tmp/abs", false), ("\0tmp\0abs".into(), true));
        assert_eq!(place(b"..", false), ("..\0".into(), true));
        assert_eq!(place(b"docs/.", false), ("docs/.\0".into(), true));
        // A directory whose name was escaped: its entries follow under the escaped path.
        assert_eq!(place(b"docs/d/e", true), ("docs/d\0e".into(), true));
        assert_eq!(
            place(b"docs/d/e/inner", false),
            ("docs/d\0e/inner".into(), false)
        );
        // Virtual directories count as parents.
        let line = b"0|/$OrphanFiles|523206|V/V---------|0|0|0|0|0|0|0";
        assert_eq!(virtual_directory(line), Some(b"$OrphanFiles".to_vec()));
        assert_eq!(
            virtual_directory(b"0|/a.txt|4|r/rrwxrwxrwx|0|0|6|0|0|0|0"),
            None
        );
        names.place(b"$OrphanFiles", true);
        assert_eq!(
            names.place(b"$OrphanFiles/OrphanFile-7", false),
            (b"$OrphanFiles/OrphanFile-7".to_vec(), None)
        );
    }

    #[test]
    fn symlink_targets_are_kept_up_to_path_max() {
        let (short, problem) = bounded_target(b"../x".to_vec());
        assert_eq!((short.as_slice(), problem.is_none()), (&b"../x"[..], true));
        let (long, problem) = bounded_target(vec![b'a'; MAX_TARGET + 1]);
        assert_eq!(long.len(), MAX_TARGET);
        assert!(problem.unwrap().to_string().contains("longer than 4096"));
    }

    #[test]
    fn malformed_lines_are_errors_not_entries() {
        assert!(parse_body_line(b"0|/x|3|r/r").is_err());
        assert!(parse_body_line(b"0|/x|abc|r/rrw-r--r--|0|0|1|0|0|0|0").is_err());
        assert!(parse_body_line(b"0|/x|3|r/rrw-r--r--|0|0|-1|0|0|0|0").is_err());
    }
}
