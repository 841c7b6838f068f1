//! `ntt volumes MEDIUM`: find (once) and show the partitions and filesystems of a medium.

use std::io::Write;

use super::text::human_bytes;
use crate::catalog::Catalog;
use crate::catalog::media;
use crate::catalog::volumes::VolumeRow;
use crate::env;
use crate::pipeline;

/// Options of `ntt volumes`.
#[derive(Debug, clap::Args)]
pub struct VolumesArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,

    /// Print the volumes as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Discovers the medium's volumes if they are not recorded yet, then prints them.
pub(super) async fn run(
    catalog: &Catalog,
    args: VolumesArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let rows = pipeline::attach::ensure_volumes(catalog, &medium).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &rows)?;
        writeln!(stdout)?;
    } else {
        write_table(&rows, stdout)?;
    }
    Ok(())
}

fn write_table(rows: &[VolumeRow], out: &mut (impl Write + Send)) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<3} {:<6} {:>12} {:>10}  {:<10} {:<18} {:<8} {:<9} {:<24} TYPE",
        "NO", "SCHEME", "OFFSET", "SIZE", "FS", "ROLE", "STATE", "ACCESS", "LABEL"
    )?;
    for row in rows {
        let label: String = row
            .label
            .as_deref()
            .unwrap_or("-")
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        writeln!(
            out,
            "{:<3} {:<6} {:>12} {:>10}  {:<10} {:<18} {:<8} {:<9} {:<24} {}",
            row.volume_no,
            format!("{:?}", row.scheme).to_lowercase(),
            row.offset_bytes,
            human_bytes(u64::try_from(row.length_bytes).unwrap_or(0)),
            row.fs_type.as_deref().unwrap_or("-"),
            format!("{:?}", row.role).to_lowercase(),
            format!("{:?}", row.state).to_lowercase(),
            row.access
                .map_or_else(|| "-".to_owned(), |a| format!("{a:?}").to_lowercase()),
            label,
            row.partition_type.as_deref().unwrap_or("-"),
        )?;
        if let Some(error) = &row.error {
            writeln!(out, "    error: {error}")?;
        }
        if let Some(problem) = &row.problem {
            writeln!(out, "    not read: {problem}")?;
        }
    }
    Ok(())
}
