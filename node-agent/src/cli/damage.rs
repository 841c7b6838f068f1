//! `ntt damage MEDIUM`: map a medium's unreadable areas onto its files again (after a rescue).

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::damage::VolumeReport;
use crate::pipeline::{self, Host};

/// `ntt damage` arguments.
#[derive(Debug, clap::Args)]
pub struct DamageArgs {
    /// Medium: name, hash, or a unique prefix of the hash
    pub medium: String,
    /// Attach the volumes even if the medium's health is `failed`
    #[arg(long, env = crate::env::FORCE)]
    pub force: bool,
    /// Print the map as JSON
    #[arg(long, env = crate::env::JSON)]
    pub json: bool,
}

/// `ntt damage`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: DamageArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let reports = pipeline::damage::damage(catalog, host, &medium, args.force, cancel).await?;
    print(&medium.name, &reports, args.json, stdout)
}

/// Prints a damage map.
pub(super) fn print(
    name: &str,
    reports: &[VolumeReport],
    json: bool,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *stdout, reports)?;
        writeln!(stdout)?;
        return Ok(());
    }
    for report in reports {
        let c = &report.counts;
        writeln!(
            stdout,
            "{name} volume {}: {} unreadable bytes ({}): {} in {} file(s), {} in free space, \
             {} in filesystem structures, {} unattributed; {} file(s) to copy again",
            report.volume_no,
            c.bad_bytes,
            report.method.as_str(),
            c.file_bytes,
            report.recorded.damaged_files,
            c.free_bytes,
            c.metadata_bytes,
            c.unattributed_bytes,
            report.recorded.recopy,
        )?;
        for line in &report.structures {
            writeln!(stdout, "  structure hit: {line}")?;
        }
    }
    Ok(())
}
