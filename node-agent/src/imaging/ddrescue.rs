//! Runs GNU ddrescue pass by pass, reading progress from the mapfile while it works.
//!
//! Rules: ddrescue is stopped only with SIGINT (the manual: when interrupted by a signal it saves
//! the mapfile, then terminates), and then awaited however long it takes; never SIGKILL, so the
//! mapfile always describes the image. `kill_on_drop` stays off for the same reason. Progress
//! comes from re-reading the mapfile (ddrescue saves it every 5 s, `--mapfile-interval=5`), not
//! from its screen output, which goes to /dev/null; its stderr (error messages) is kept for the
//! error report.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::mapfile::{Mapfile, MapfileError, RescueSummary};
use super::passes::{Input, Pass, PassKind};

/// How often the mapfile is re-read for progress while ddrescue runs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Why imaging with ddrescue failed.
#[derive(Debug, thiserror::Error)]
pub enum DdrescueError {
    /// ddrescue could not be started.
    #[error("cannot run ddrescue (is gddrescue installed? `scripts/setup` installs it)")]
    Spawn {
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// ddrescue exited with an error.
    #[error("ddrescue {pass} pass failed ({status}): {stderr}")]
    Failed {
        /// The pass.
        pass: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Waiting for ddrescue failed.
    #[error("lost track of ddrescue")]
    Wait {
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The mapfile exists but is not a valid ddrescue mapfile.
    #[error("mapfile {path} is not a valid ddrescue mapfile")]
    Mapfile {
        /// The mapfile.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: MapfileError,
    },
    /// The mapfile could not be read.
    #[error("cannot read mapfile {path}")]
    ReadMapfile {
        /// The mapfile.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// How a rescue run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescueEnd {
    /// Every byte is rescued.
    Complete,
    /// Every pass ran; some bytes are still not rescued.
    PassesExhausted,
    /// Cancelled; ddrescue saved the mapfile and the run can be resumed.
    Cancelled,
}

/// The result of [`rescue`].
#[derive(Debug, Clone)]
pub struct RescueOutcome {
    /// How it ended.
    pub end: RescueEnd,
    /// The mapfile's summary at the end (`None`: no mapfile, nothing ran).
    pub summary: Option<RescueSummary>,
    /// How many ddrescue passes ran.
    pub passes_run: usize,
}

/// What a caller is told while ddrescue runs.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// The pass running.
    pub pass: PassKind,
    /// Its index in the profile, from 0.
    pub index: usize,
    /// The number of passes.
    pub count: usize,
    /// The latest mapfile summary.
    pub summary: &'a RescueSummary,
}

/// Reads and parses the mapfile; `None` when it does not exist yet.
pub fn read_summary(path: &Path) -> Result<Option<RescueSummary>, DdrescueError> {
    match fs_err::read_to_string(path) {
        Ok(text) => Mapfile::parse(&text)
            .map(|m| Some(m.summary()))
            .map_err(|source| DdrescueError::Mapfile {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DdrescueError::ReadMapfile {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Runs `passes` in order, resuming from `mapfile`, until everything is rescued, the passes
/// are exhausted, or `cancel` fires. `on_progress` is called whenever the mapfile changes.
pub async fn rescue(
    input: &Input<'_>,
    image: &Path,
    mapfile: &Path,
    passes: &[Pass],
    cancel: &CancellationToken,
    mut on_progress: impl FnMut(&Progress<'_>),
) -> Result<RescueOutcome, DdrescueError> {
    let mut summary = read_summary(mapfile)?;
    let mut passes_run = 0;
    for (index, pass) in passes.iter().enumerate() {
        if summary.as_ref().is_some_and(RescueSummary::is_complete) {
            return Ok(RescueOutcome {
                end: RescueEnd::Complete,
                summary,
                passes_run,
            });
        }
        if cancel.is_cancelled() {
            return Ok(RescueOutcome {
                end: RescueEnd::Cancelled,
                summary,
                passes_run,
            });
        }
        if !pass.has_work(summary.as_ref()) {
            tracing::debug!(pass = pass.kind.as_str(), "nothing left for this pass");
            continue;
        }
        tracing::info!(
            pass = pass.kind.as_str(),
            index = index + 1,
            of = passes.len(),
            "ddrescue pass starting"
        );
        let interrupted = run_pass(input, image, mapfile, pass, cancel, |s| {
            on_progress(&Progress {
                pass: pass.kind,
                index,
                count: passes.len(),
                summary: s,
            });
        })
        .await?;
        passes_run += 1;
        summary = read_summary(mapfile)?;
        if let Some(s) = &summary {
            on_progress(&Progress {
                pass: pass.kind,
                index,
                count: passes.len(),
                summary: s,
            });
        }
        if interrupted == Interrupted::Cancelled {
            return Ok(RescueOutcome {
                end: RescueEnd::Cancelled,
                summary,
                passes_run,
            });
        }
    }
    let end = if summary.as_ref().is_some_and(RescueSummary::is_complete) {
        RescueEnd::Complete
    } else {
        RescueEnd::PassesExhausted
    };
    Ok(RescueOutcome {
        end,
        summary,
        passes_run,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Interrupted {
    No,
    PassTimeLimit,
    Cancelled,
}

async fn run_pass(
    input: &Input<'_>,
    image: &Path,
    mapfile: &Path,
    pass: &Pass,
    cancel: &CancellationToken,
    mut on_change: impl FnMut(&RescueSummary),
) -> Result<Interrupted, DdrescueError> {
    let mut child = tokio::process::Command::new("ddrescue")
        .args(pass.arguments(input, image, mapfile))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Deliberately off: dropping our future must not SIGKILL ddrescue mid-write.
        .kill_on_drop(false)
        // Its own process group: a Ctrl-C on the terminal reaches us only, and we stop ddrescue
        // (SIGINT, then wait), rather than both racing to handle it.
        .process_group(0)
        .spawn()
        .map_err(|source| DdrescueError::Spawn { source })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut stderr_pipe = child.stderr.take();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            // Bounded: ddrescue's error messages are a few lines.
            let _ = pipe.take(64 * 1024).read_to_string(&mut text).await;
        }
        text
    });
    let started = Instant::now();
    let mut interrupted = Interrupted::No;
    let mut last_seen: Option<SystemTime> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|source| DdrescueError::Wait { source })?,
            () = cancel.cancelled(), if interrupted == Interrupted::No => {
                tracing::info!("stopping ddrescue (SIGINT); it saves the mapfile before exiting");
                interrupted = Interrupted::Cancelled;
                signal(pid);
            }
            () = tokio::time::sleep(POLL_INTERVAL) => {
                if interrupted == Interrupted::No
                    && pass.max_duration.is_some_and(|limit| started.elapsed() >= limit)
                {
                    tracing::info!(pass = pass.kind.as_str(), "pass time limit reached; stopping it");
                    interrupted = Interrupted::PassTimeLimit;
                    signal(pid);
                }
                let modified = fs_err::metadata(mapfile).and_then(|m| m.modified()).ok();
                if modified.is_some() && modified != last_seen {
                    last_seen = modified;
                    // A mapfile caught mid-write fails to parse; the next poll reads it whole.
                    if let Ok(Some(summary)) = read_summary(mapfile) {
                        on_change(&summary);
                    }
                }
            }
        }
    };
    let stderr = stderr_task.await.unwrap_or_default().trim().to_owned();
    if status.success() {
        return Ok(interrupted);
    }
    // Interrupted by our SIGINT: ddrescue saved the mapfile and re-raised the signal.
    {
        use std::os::unix::process::ExitStatusExt;
        if interrupted != Interrupted::No && status.signal() == Some(Signal::SIGINT as i32) {
            return Ok(interrupted);
        }
    }
    // ddrescue exits 1 when --timeout expires; that ends the pass, not the rescue.
    if pass.stall_timeout.is_some()
        && status.code() == Some(1)
        && stderr.to_lowercase().contains("timeout")
    {
        tracing::warn!(
            pass = pass.kind.as_str(),
            "no successful read within the stall timeout; pass ended"
        );
        return Ok(Interrupted::PassTimeLimit);
    }
    Err(DdrescueError::Failed {
        pass: pass.kind.as_str(),
        status,
        stderr,
    })
}

fn signal(pid: Option<Pid>) {
    if let Some(pid) = pid
        && let Err(error) = kill(pid, Signal::SIGINT)
    {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "cannot signal ddrescue"
        );
    }
}
