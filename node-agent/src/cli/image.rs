//! `ntt image SOURCE`: identify and image (or register) one medium, with progress.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::text::human_bytes;
use crate::catalog::Catalog;
use crate::env;
use crate::imaging::passes::{PassLimits, Profile};
use crate::imaging::{ImageEnd, ImageReport};
use crate::pipeline::{self, Host, image::ImageOptions};

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

impl ImageArgs {
    /// The pipeline's imaging options.
    pub fn options(&self) -> ImageOptions {
        ImageOptions {
            name: self.name.clone(),
            description: self.description.clone(),
            profile: self.profile,
            limits: PassLimits {
                retries: self.retries,
                stall_timeout: self.stall_timeout.map(Duration::from_secs),
                max_pass_duration: self.max_pass_time.map(Duration::from_secs),
            },
            sector_size: self.sector_size.as_deref().and_then(|s| s.parse().ok()),
            buffered: self.buffered,
            mapfile: self.mapfile.clone(),
            watch: None,
        }
    }
}

/// `ntt image`; `false` when cancelled (the mapfile is saved; the same command resumes).
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: ImageArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let report =
        pipeline::image::image(catalog, host, &args.source, &args.options(), cancel).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
    } else {
        write_report(&report, stdout)?;
    }
    Ok(report.end != ImageEnd::Cancelled)
}

fn write_report(report: &ImageReport, out: &mut (impl Write + Send)) -> std::io::Result<()> {
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
