//! A read that never returns: a FUSE driver looping on a crafted filesystem, or The Sleuth
//! Kit's `icat` stuck in one, holds a copy worker (and the medium's lock) forever.
//!
//! ```text
//!   worker:   clock.begin(target) ─ open / read ─ clock.end()     (every blocking call)
//!   watchdog: every second, a call in flight longer than the timeout
//!             ─▶ abort its target: the FUSE connection (/sys/fs/fuse/connections/N/abort)
//!                or the `icat` process (SIGKILL) ─▶ the call fails at once
//!   worker:   the clock says "aborted" ─▶ the volume is lost: the run stops cleanly, its
//!             files stay pending (never failed), what was attached is released
//! ```
//!
//! Rules: progress is measured per call, not per file (a 4 GiB file read at speed is not
//! stalled); each stall is aborted once; a kernel filesystem's read cannot be aborted from
//! user space (it is a local image: a hang there is the host's disk), so it is only reported.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the fuse control filesystem lives (`fusectl`).
const FUSE_CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// What to abort when a call stalls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file below this directory (a mount point or a directory source): its filesystem's
    /// FUSE connection, if FUSE serves it.
    Tree(PathBuf),
    /// A reading process (The Sleuth Kit's `icat`).
    Process(u32),
}

/// One worker's clock: when its blocking call in flight started, and on what.
#[derive(Debug)]
pub struct Clock {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 when the call started; 0 when none is in flight.
    since: AtomicU64,
    target: Mutex<Option<Target>>,
    aborted: AtomicBool,
}

impl Clock {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            since: AtomicU64::new(0),
            target: Mutex::new(None),
            aborted: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A blocking call on `target` starts.
    pub fn begin(&self, target: Target) {
        self.aim(target);
        self.since.store(self.now(), Ordering::Release);
    }

    /// The calls from now on are on `target` (none is in flight yet).
    pub fn aim(&self, target: Target) {
        *self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(target);
    }

    /// A call on the current target starts again (the next read of the same file).
    pub fn resume(&self) {
        self.since.store(self.now(), Ordering::Release);
    }

    /// The call returned.
    pub fn end(&self) {
        self.since.store(0, Ordering::Release);
    }

    /// Whether the watchdog aborted a call of this worker (cleared by reading it).
    pub fn take_aborted(&self) -> bool {
        self.aborted.swap(false, Ordering::AcqRel)
    }

    /// How long the call in flight has taken, if one is.
    fn stalled_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(self.now().saturating_sub(since))),
        }
    }
}

/// A reader whose every `read` is timed by a clock.
#[derive(Debug)]
pub struct Watched<R> {
    inner: R,
    clock: Arc<Clock>,
}

impl<R> Watched<R> {
    /// Times `inner`'s reads on `clock` (whose target was set by [`Clock::begin`]).
    pub fn new(inner: R, clock: Arc<Clock>) -> Self {
        Self { inner, clock }
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.clock.resume();
        let result = self.inner.read(buf);
        self.clock.end();
        result
    }
}

/// The clocks of a run's workers and the stall timeout.
#[derive(Debug)]
pub struct Watchdog {
    epoch: Instant,
    timeout: Duration,
    clocks: Mutex<Vec<Arc<Clock>>>,
    fired: AtomicBool,
}

impl Watchdog {
    /// A watchdog that aborts calls in flight longer than `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            timeout,
            clocks: Mutex::new(Vec::new()),
            fired: AtomicBool::new(false),
        }
    }

    /// Whether it ever aborted a call.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// A new worker's clock.
    pub fn clock(&self) -> Arc<Clock> {
        let clock = Arc::new(Clock::new(self.epoch));
        self.clocks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(clock.clone());
        clock
    }

    /// Aborts every call in flight longer than the timeout (once each); what was aborted.
    pub fn check(&self) -> Vec<Aborted> {
        let clocks = self
            .clocks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut done = Vec::new();
        for clock in clocks {
            let Some(stalled) = clock.stalled_for() else {
                continue;
            };
            if stalled < self.timeout || clock.aborted.load(Ordering::Acquire) {
                continue;
            }
            let target = clock
                .target
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let Some(target) = target else { continue };
            clock.aborted.store(true, Ordering::Release);
            self.fired.store(true, Ordering::Release);
            let outcome = abort(&target);
            done.push(Aborted {
                target,
                stalled,
                outcome,
            });
        }
        done
    }

    /// Checks every `period` on a thread of its own (the workers' threads may all be stuck),
    /// logging what it aborts, until the returned guard is dropped.
    #[must_use = "the watchdog stops when the guard is dropped"]
    pub fn watch(self: Arc<Self>) -> Watching {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let period = (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                std::thread::sleep(period);
                for aborted in self.check() {
                    match &aborted.outcome {
                        Ok(how) => tracing::error!(
                            target = ?aborted.target,
                            stalled_s = aborted.stalled.as_secs(),
                            "a read stopped answering: {how}; the volume is given up"
                        ),
                        Err(why) => tracing::error!(
                            target = ?aborted.target,
                            stalled_s = aborted.stalled.as_secs(),
                            "a read stopped answering and cannot be aborted: {why}; a second \
                             Ctrl-C exits"
                        ),
                    }
                }
            }
        });
        Watching { stop }
    }
}

/// Stops the watchdog's thread when dropped (within one period).
#[derive(Debug)]
pub struct Watching {
    stop: Arc<AtomicBool>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// One abort.
#[derive(Debug)]
pub struct Aborted {
    /// What was stuck.
    pub target: Target,
    /// For how long.
    pub stalled: Duration,
    /// What was done, or why nothing could be.
    pub outcome: Result<String, String>,
}

/// Aborts what `target` names: the FUSE connection of the filesystem holding the directory,
/// or the process.
fn abort(target: &Target) -> Result<String, String> {
    match target {
        Target::Process(pid) => {
            let pid = i32::try_from(*pid).map_err(|e| e.to_string())?;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .map_err(|e| format!("cannot kill process {pid}: {e}"))?;
            Ok(format!("killed process {pid}"))
        }
        Target::Tree(dir) => abort_fuse(dir),
    }
}

/// Aborts the FUSE connection serving `dir`: read from the mount table (touching the stuck
/// filesystem would hang too), written to the fuse control filesystem, which is mounted for
/// the moment if the host has not mounted it.
fn abort_fuse(dir: &Path) -> Result<String, String> {
    let text = fs_err::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mount = super::host::parse_mountinfo(&text)
        .into_iter()
        .filter(|m| dir.starts_with(&m.target))
        .max_by_key(|m| m.target.as_os_str().len())
        .ok_or_else(|| format!("no mount holds {}", dir.display()))?;
    if !mount.is_fuse() {
        return Err(format!(
            "{} is a kernel {} mount",
            mount.target.display(),
            mount.fs_type
        ));
    }
    let minor = fuse_minor(&mount.device)
        .ok_or_else(|| format!("unexpected device number {:?}", mount.device))?;
    let mounted_here = ensure_fusectl()?;
    let abort = Path::new(FUSE_CONNECTIONS)
        .join(minor.to_string())
        .join("abort");
    let written = fs_err::write(&abort, b"1").map_err(|e| e.to_string());
    if mounted_here {
        let _ = nix::mount::umount(FUSE_CONNECTIONS);
    }
    written?;
    Ok(format!(
        "aborted the FUSE connection {minor} of {} ({})",
        mount.target.display(),
        mount.fs_type
    ))
}

/// The connection number of a FUSE mount from its `major:minor` (FUSE superblocks are
/// anonymous devices: major 0) (pure).
pub fn fuse_minor(device: &str) -> Option<u32> {
    let (major, minor) = device.split_once(':')?;
    (major == "0").then_some(())?;
    minor.parse().ok()
}

/// Mounts `fusectl` on its directory unless it is there; whether this call mounted it.
fn ensure_fusectl() -> Result<bool, String> {
    let text = fs_err::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    if super::host::parse_mountinfo(&text)
        .iter()
        .any(|m| m.target == Path::new(FUSE_CONNECTIONS))
    {
        return Ok(false);
    }
    // The system call, not mount(8): the tool looks at other mounts, and one of them is the
    // filesystem that stopped answering.
    nix::mount::mount(
        Some("fusectl"),
        FUSE_CONNECTIONS,
        Some("fusectl"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("cannot mount fusectl on {FUSE_CONNECTIONS}: {e}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fuse_connection_is_the_minor_of_an_anonymous_device() {
        assert_eq!(fuse_minor("0:44"), Some(44));
        assert_eq!(
            fuse_minor("7:3"),
            None,
            "a block device is not a FUSE connection"
        );
        assert_eq!(fuse_minor("0:x"), None);
        assert_eq!(fuse_minor("044"), None);
    }

    #[test]
    fn only_a_call_in_flight_past_the_timeout_is_aborted_and_only_once() {
        let watchdog = Watchdog::new(Duration::from_millis(50));
        let (idle, busy, quick) = (watchdog.clock(), watchdog.clock(), watchdog.clock());
        // A process that does nothing stands for a stuck `icat`.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        busy.begin(Target::Process(sleeper.id()));
        quick.begin(Target::Process(u32::MAX));
        std::thread::sleep(Duration::from_millis(80));
        quick.resume();
        let aborted = watchdog.check();
        assert_eq!(aborted.len(), 1, "{aborted:?}");
        assert_eq!(aborted[0].target, Target::Process(sleeper.id()));
        assert!(aborted[0].outcome.is_ok(), "{aborted:?}");
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "the stuck process was killed");
        assert!(watchdog.check().is_empty(), "aborted once");
        assert!(busy.take_aborted() && !busy.take_aborted());
        assert!(!idle.take_aborted() && !quick.take_aborted());
        idle.end();
    }

    #[test]
    fn a_kernel_mount_is_reported_not_aborted() {
        let outcome = abort(&Target::Tree(PathBuf::from("/proc/self")));
        let why = outcome.unwrap_err();
        assert!(why.contains("kernel proc mount"), "{why}");
    }
}
