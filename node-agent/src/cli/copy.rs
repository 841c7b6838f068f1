//! `ntt copy MEDIUM`: copy a medium's pending files into the store.

use std::io::Write;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::text::human_bytes;
use crate::catalog::Catalog;
use crate::catalog::media;
use crate::copy::{DEFAULT_BATCH_FILES, DEFAULT_BATCH_MIB};
use crate::env;
use crate::pipeline::{self, Host, copy::CopyOptions};

/// Options of `ntt copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// Concurrent copy workers in this process (other processes or hosts may run too)
    #[arg(long, env = env::WORKERS, default_value_t = 4)]
    pub workers: usize,
    /// Attempts after which a transient failure (I/O error, ...) is final
    #[arg(long, env = env::MAX_ATTEMPTS, default_value_t = 3)]
    pub max_attempts: i32,
    /// Seconds before the first retry of a failed file (doubled on each later attempt)
    #[arg(long, env = env::RETRY_DELAY, default_value_t = 2.0)]
    pub retry_delay: f64,
    /// Most files per batch (one claim, one store sync, one catalog commit each)
    #[arg(long, default_value_t = DEFAULT_BATCH_FILES)]
    pub batch_files: i64,
    /// Most MiB per batch (a bigger file goes alone)
    #[arg(long, default_value_t = DEFAULT_BATCH_MIB)]
    pub batch_mib: i64,
    /// Mount even if the medium's health is `failed`
    #[arg(long, env = env::FORCE)]
    pub force: bool,
    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt copy`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: CopyArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let options = CopyOptions {
        workers: args.workers,
        max_attempts: args.max_attempts,
        retry_delay: Duration::from_secs_f64(args.retry_delay.clamp(0.0, 3600.0)),
        batch_files: args.batch_files,
        batch_mib: args.batch_mib,
        force: args.force,
    };
    let report = pipeline::copy::copy(catalog, host, &medium, &options, cancel).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "{}: {} file(s) copied ({}), {} new blob(s), {} failure(s) recorded; {}",
            medium.name,
            report.copied,
            human_bytes(report.bytes),
            report.new_blobs,
            report.failures,
            if report.complete {
                "nothing is pending (see `ntt report`)"
            } else {
                "files are still pending: run again"
            }
        )?;
    }
    Ok(())
}
