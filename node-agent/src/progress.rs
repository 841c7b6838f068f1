//! Progress counters the stages update and the command line shows (bars on a terminal, a log
//! line every 10 s otherwise).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Items and bytes done so far.
#[derive(Debug, Default)]
pub struct Counter {
    items: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    /// Counts `items` more items of `bytes` bytes.
    pub fn add(&self, items: u64, bytes: u64) {
        self.items.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (items, bytes) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.items.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Shows a counter until dropped or [`Ticker::finish`]ed.
#[derive(Debug)]
pub struct Ticker {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticker {
    /// Shows `counter` for `stage`; with `total_bytes`, a bar with rate and ETA in bytes, else a
    /// spinner with items per second.
    pub fn start(stage: &'static str, counter: Arc<Counter>, total_bytes: Option<u64>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let bar = std::io::stderr().is_terminal().then(|| {
                let (bar, template) = match total_bytes {
                    Some(total) => (
                        ProgressBar::new(total),
                        "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                    ),
                    None => (
                        ProgressBar::new_spinner(),
                        "{prefix:>10} {spinner} {msg}",
                    ),
                };
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(stage);
                bar
            });
            let mut last_log = Instant::now();
            loop {
                let (items, bytes) = counter.get();
                #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
                let rate = items as f64 / started.elapsed().as_secs_f64().max(0.001);
                match &bar {
                    Some(bar) => {
                        bar.set_position(bytes);
                        bar.set_message(format!("{items} files, {rate:.0}/s"));
                        bar.tick();
                    }
                    None if last_log.elapsed() >= Duration::from_secs(10) => {
                        last_log = Instant::now();
                        tracing::info!(stage, items, bytes, items_per_s = rate, "progress");
                    }
                    None => {}
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = token.cancelled() => break,
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops showing and clears the bar.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// ddrescue's progress: a bar on a terminal, a log line every 10 s otherwise.
#[derive(Debug)]
pub struct ImagingDisplay {
    bar: Option<ProgressBar>,
    last_log: Instant,
    started: Instant,
}

impl ImagingDisplay {
    /// Starts showing (nothing is drawn before the first update).
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>14} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            last_log: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Shows one ddrescue update.
    pub fn update(&mut self, progress: &crate::imaging::ddrescue::Progress<'_>) {
        let s = progress.summary;
        let message = format!(
            "{} {}/{}",
            progress.pass.as_str(),
            progress.index + 1,
            progress.count
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length(s.total);
                bar.set_position(s.rescued);
                bar.set_message(message);
            }
            None if self.last_log.elapsed() >= Duration::from_secs(10) => {
                self.last_log = Instant::now();
                tracing::info!(
                    pass = %message,
                    rescued = s.rescued,
                    total = s.total,
                    bad = s.bad,
                    percent = s.percent(),
                    elapsed_s = self.started.elapsed().as_secs(),
                    "imaging"
                );
            }
            None => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for ImagingDisplay {
    fn default() -> Self {
        Self::new()
    }
}
