//! `ntt ingest SOURCE`: the whole pipeline, then the medium's report.

use std::io::Write;
use std::time::Duration;

use ntt_crds::Target;
use tokio_util::sync::CancellationToken;

use super::image::ImageArgs;
use crate::catalog::Catalog;
use crate::env;
use crate::pipeline::copy::CopyOptions;
use crate::pipeline::enumerate::EnumerateOptions;
use crate::pipeline::ingest::IngestOptions;
use crate::pipeline::{self, Host};

/// Options of `ntt ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Imaging options (SOURCE is a block device, an image file or a directory)
    #[command(flatten)]
    pub image: ImageArgs,

    /// How far to take the medium
    #[arg(long, env = env::TARGET, value_enum, default_value = "copied")]
    pub target: Target,

    /// A named preset of ignore patterns for the enumeration (`predecessor`)
    #[arg(long, value_name = "NAME", env = env::IGNORE_PRESET)]
    pub ignore_preset: Option<String>,

    /// Another ignore pattern for this medium (recorded with it)
    #[arg(long = "ignore", value_name = "REGEX", env = env::IGNORE, value_delimiter = '\n')]
    pub ignore: Vec<String>,

    /// Concurrent copy workers
    #[arg(long, env = env::WORKERS, default_value_t = 4)]
    pub workers: usize,

    /// Directory readers per volume
    #[arg(long, env = env::WALK_THREADS, default_value_t = 4)]
    pub threads: usize,

    /// MiB of rows the load may hold to send them in key order (cheaper index builds); a
    /// medium with more rows is sent as walked
    #[arg(long, value_name = "MIB", env = env::SORT_MEMORY, default_value_t = crate::catalog::load::DEFAULT_SORT_MEMORY_MIB)]
    pub sort_memory: usize,

    /// Blobs of the medium re-hashed after copying (a sample; `ntt verify` checks all)
    #[arg(long, default_value_t = 100)]
    pub verify_sample: i64,

    /// Go on with a medium whose health is `failed`
    #[arg(long, env = env::FORCE)]
    pub force: bool,
}

impl IngestArgs {
    /// The pipeline's options.
    fn options(&self) -> IngestOptions {
        IngestOptions {
            image: self.image.options(),
            target: self.target,
            enumerate: EnumerateOptions {
                replace: false,
                ignore: self.ignore.clone(),
                ignore_preset: self.ignore_preset.clone(),
                threads: self.threads,
                sort_memory_mib: self.sort_memory,
                force: self.force,
            },
            copy: CopyOptions {
                workers: self.workers,
                max_attempts: 3,
                retry_delay: Duration::from_secs(2),
                force: self.force,
                ..CopyOptions::default()
            },
            verify_sample: self.verify_sample,
        }
    }
}

/// `ntt ingest`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: IngestArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let ingested =
        pipeline::ingest::ingest(catalog, host, &args.image.source, &args.options(), cancel)
            .await?;
    super::report::print(&ingested.report, args.image.json, stdout)?;
    if !args.image.json {
        writeln!(
            stdout,
            "next     ntt ls {0} | ntt cat {0} PATH | ntt report {0} --json | ntt verify --medium {0}",
            ingested.medium.name
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ordered_like_the_stages() {
        assert!(Target::Imaged < Target::Enumerated && Target::Enumerated < Target::Copied);
    }
}
