//! `ntt archive MEDIUM --to ROOT`: the raw image kept compressed, checked, then removed.

use std::io::Write;

use crate::catalog::{Catalog, media};
use crate::env;
use crate::pipeline::archive::ArchiveOptions;
use crate::pipeline::{self, Host};

/// Options of `ntt archive`.
#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    /// The medium (name, hash or unique prefix)
    pub medium: String,
    /// The archive root: a directory (another disk, a mount)
    #[arg(long, value_name = "ROOT")]
    pub to: std::path::PathBuf,
    /// Keep the raw image after archiving
    #[arg(long)]
    pub keep_raw: bool,
    /// zstd level (1 fast .. 19 small)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Frames compressed at once (default: the number of cores)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the outcome as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt archive`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: ArchiveArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let done = pipeline::archive::archive(
        catalog,
        host,
        &medium,
        &args.to,
        ArchiveOptions {
            keep_raw: args.keep_raw,
            level: args.level,
            jobs: super::default_jobs(args.jobs),
        },
    )
    .await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &done)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "{}: {} ({} bytes -> {} bytes, ratio {:.2}){}; {}",
            done.medium,
            done.archive.display(),
            done.image_bytes,
            done.archive_bytes,
            done.ratio,
            if done.written {
                ", written and read back"
            } else {
                ", archived earlier, read back"
            },
            if done.raw_removed {
                "raw image removed"
            } else {
                "raw image kept"
            }
        )?;
    }
    Ok(())
}
