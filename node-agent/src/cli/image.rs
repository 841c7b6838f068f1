//! `ntt image SOURCE`: identify and image (or register) one medium, with progress.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ntt_crds::HealthThresholds;
use tokio_util::sync::CancellationToken;

use super::status::human_bytes;
use crate::catalog::Catalog;
use crate::env;
use crate::imaging::ddrescue::Progress;
use crate::imaging::passes::{PassLimits, Profile};
use crate::imaging::{self, ImageEnd, ImageReport, ImageRequest, ImagingConfig};

/// Options of `ntt image`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Block device (prefer /dev/disk/by-id/...) or image file (raw, split .000, qcow2, vmdk,
    /// vhd, vhdx, dmg, E01)
    pub source: PathBuf,

    /// Catalog name [default: `MODEL_SERIAL` for devices, the file name for images]
    #[arg(long, env = env::NAME)]
    pub name: Option<String>,

    /// Free text recorded with the medium (box, label, donor, ...)
    #[arg(long, env = env::DESCRIPTION)]
    pub description: Option<String>,

    /// Which ddrescue passes to run: quick (one fast pass), default (fast, trim, scrape),
    /// thorough (default + reverse and single-sector retries)
    #[arg(long, env = env::PROFILE, value_enum, default_value = "default")]
    pub profile: Profile,

    /// Retry count of the retrying passes (thorough profile)
    #[arg(long, env = env::RETRIES)]
    pub retries: Option<u32>,

    /// End a pass after this many seconds without a successful read (ddrescue --timeout)
    #[arg(long, env = env::STALL_TIMEOUT)]
    pub stall_timeout: Option<u64>,

    /// End each pass after this many seconds (the mapfile is saved; the next pass starts)
    #[arg(long, env = env::MAX_PASS_TIME)]
    pub max_pass_time: Option<u64>,

    /// Sector size in bytes [default: the device's logical sector size; 2048 for optical media]
    #[arg(long, env = env::SECTOR_SIZE, value_parser = ["512", "1024", "2048", "4096"])]
    pub sector_size: Option<String>,

    /// Read devices through the page cache instead of direct I/O (bad areas become less exact)
    #[arg(long, env = env::BUFFERED_READS)]
    pub buffered: bool,

    /// ddrescue mapfile of a raw image rescued elsewhere [default: IMAGE.map beside it]
    #[arg(long, env = env::MAPFILE)]
    pub mapfile: Option<PathBuf>,

    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Host settings shared by the stages.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// Directory for images and mapfiles
    #[arg(long, global = true, env = env::DATA_DIR, default_value = env::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Directory for host locks (one ddrescue per device, one mount per medium)
    #[arg(long, global = true, env = env::LOCK_DIR, default_value = env::DEFAULT_LOCK_DIR)]
    pub lock_dir: PathBuf,

    /// Lowest rescued percentage that is still health "incomplete"
    #[arg(long, global = true, env = env::HEALTH_INCOMPLETE, default_value_t = 95.0)]
    pub health_incomplete: f64,

    /// Lowest rescued percentage that is still health "corrupt" (below: "failed")
    #[arg(long, global = true, env = env::HEALTH_CORRUPT, default_value_t = 50.0)]
    pub health_corrupt: f64,
}

impl HostArgs {
    /// The thresholds, validated.
    pub fn thresholds(&self) -> anyhow::Result<HealthThresholds> {
        let valid = |p: f64| (0.0..=100.0).contains(&p);
        anyhow::ensure!(
            valid(self.health_incomplete)
                && valid(self.health_corrupt)
                && self.health_corrupt <= self.health_incomplete,
            "health thresholds must satisfy 0 <= corrupt ({}) <= incomplete ({}) <= 100",
            self.health_corrupt,
            self.health_incomplete
        );
        Ok(HealthThresholds {
            incomplete_percent: self.health_incomplete,
            corrupt_percent: self.health_corrupt,
        })
    }
}

/// Runs `ntt image`; returns the report, or `None` when cancelled.
pub(super) async fn run(
    catalog: &Catalog,
    host: &HostArgs,
    args: ImageArgs,
    cancel: &CancellationToken,
    stdout: &mut impl Write,
) -> anyhow::Result<ImageReport> {
    let config = ImagingConfig {
        data_dir: host.data_dir.clone(),
        lock_dir: host.lock_dir.clone(),
        profile: args.profile,
        limits: PassLimits {
            retries: args.retries,
            stall_timeout: args.stall_timeout.map(Duration::from_secs),
            max_pass_duration: args.max_pass_time.map(Duration::from_secs),
        },
        thresholds: host.thresholds()?,
        sector_size: args.sector_size.as_deref().map(str::parse).transpose()?,
        direct: !args.buffered,
    };
    let request = ImageRequest {
        source: args.source,
        name: args.name,
        description: args.description,
        mapfile: args.mapfile,
    };
    let mut display = ProgressDisplay::new();
    let report = imaging::image(catalog, &config, &request, cancel, &mut |p| {
        display.update(p);
    })
    .await;
    display.finish();
    let report = report?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
    } else {
        write_report(&report, stdout)?;
    }
    Ok(report)
}

fn write_report(report: &ImageReport, out: &mut impl Write) -> std::io::Result<()> {
    let state = match report.end {
        ImageEnd::Complete => "complete",
        ImageEnd::PassesExhausted => "finished with unreadable areas",
        ImageEnd::Cancelled => "interrupted (the mapfile is saved; run the same command to resume)",
    };
    writeln!(
        out,
        "medium   {}{}",
        report.name,
        if report.known {
            " (already in the catalog)"
        } else {
            ""
        }
    )?;
    writeln!(out, "hash     {}", report.hash)?;
    writeln!(
        out,
        "source   {}, {} bytes ({}), sector {}",
        report.format.as_str(),
        report.size,
        human_bytes(report.size),
        report.sector_size
    )?;
    if report.model != crate::imaging::identity::UNKNOWN
        || report.serial != crate::imaging::identity::UNKNOWN
    {
        writeln!(
            out,
            "device   model {}, serial {}",
            report.model, report.serial
        )?;
    }
    writeln!(out, "image    {}", report.image_path.display())?;
    if let Some(mapfile) = &report.mapfile_path {
        writeln!(out, "mapfile  {}", mapfile.display())?;
    }
    let r = &report.rescue;
    writeln!(
        out,
        "rescued  {:.2}% ({} of {}); bad {} in {} area(s); untried {}",
        r.percent(),
        human_bytes(r.rescued),
        human_bytes(r.total),
        human_bytes(r.bad),
        r.bad_areas.len(),
        human_bytes(r.non_tried + r.non_trimmed + r.non_scraped)
    )?;
    writeln!(
        out,
        "health   {}",
        report
            .health
            .map_or_else(|| "-".to_owned(), |h| h.to_string())
    )?;
    if let Some(digest) = &report.image_digest {
        writeln!(out, "digest   blake3:{digest}")?;
    }
    writeln!(out, "state    {state}")
}

/// A progress bar on a terminal; a log line every 10 s otherwise.
struct ProgressDisplay {
    bar: Option<ProgressBar>,
    last_log: Instant,
    started: Instant,
}

impl ProgressDisplay {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>14} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("invariant: the template is valid")
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

    fn update(&mut self, progress: &Progress<'_>) {
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

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
