//! `ntt enumerate MEDIUM`: walk a medium's volumes and load every entry into the catalog.

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::env;
use crate::pipeline::{self, Host, enumerate::EnumerateOptions};

/// Options of `ntt enumerate`.
#[derive(Debug, clap::Args)]
pub struct EnumerateArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,

    /// Build a new load beside the published one and swap it in when complete
    #[arg(long)]
    pub replace: bool,

    /// Another ignore pattern for this medium (a regular expression over path bytes; recorded)
    #[arg(long = "ignore", value_name = "REGEX", env = env::IGNORE, value_delimiter = '\n')]
    pub ignore: Vec<String>,

    /// Also apply a named preset of ignore patterns for this run (`predecessor`)
    #[arg(long, value_name = "NAME", env = env::IGNORE_PRESET)]
    pub ignore_preset: Option<String>,

    /// Directory readers per volume
    #[arg(long, env = env::WALK_THREADS, default_value_t = 4)]
    pub threads: usize,

    /// MiB of rows the load may hold to send them in key order (cheaper index builds); a
    /// medium with more rows is sent as walked
    #[arg(long, value_name = "MIB", env = env::SORT_MEMORY, default_value_t = crate::catalog::load::DEFAULT_SORT_MEMORY_MIB)]
    pub sort_memory: usize,

    /// Mount even if the medium's health is `failed`
    #[arg(long, env = env::FORCE)]
    pub force: bool,

    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt enumerate`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: EnumerateArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let options = EnumerateOptions {
        replace: args.replace,
        ignore: args.ignore.clone(),
        ignore_preset: args.ignore_preset.clone(),
        threads: args.threads,
        sort_memory_mib: args.sort_memory,
        force: args.force,
    };
    let report = pipeline::enumerate::enumerate(catalog, host, &medium, &options, cancel).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
    } else {
        let counts = report.counts;
        writeln!(
            stdout,
            "{}: {} entries ({} inodes, {} excluded by ignore patterns, {} unreadable) from {} \
             volume(s){}",
            medium.name,
            counts.entries,
            counts.inodes,
            counts.excluded,
            counts.errors,
            report.volumes.len(),
            if report.replaced {
                "; the earlier load was replaced"
            } else {
                ""
            }
        )?;
        super::damage::print(&medium.name, &report.damage, false, stdout)?;
    }
    Ok(())
}
