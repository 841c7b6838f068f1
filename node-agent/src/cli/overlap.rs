//! `ntt overlap [MEDIUM]`: what a medium added and shares, or the archive's overlap and savings.

use std::io::Write;

use super::text::{human_bytes, short_hash};
use crate::catalog::Catalog;
use crate::catalog::media;
use crate::catalog::overlap::{self, Step};
use crate::env;

/// Options of `ntt overlap`.
#[derive(Debug, clap::Args)]
pub struct OverlapArgs {
    /// The medium (name, hash or unique hash prefix); without it, the whole archive
    pub medium: Option<String>,

    /// How many of the largest media the archive's overlap matrix covers
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub top: i64,

    /// Print one JSON object
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt overlap`.
pub(super) async fn run(
    catalog: &Catalog,
    args: OverlapArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    match &args.medium {
        Some(name) => medium(catalog, name, args.json, stdout).await,
        None => archive(catalog, args.top, args.json, stdout).await,
    }
}

fn bytes(n: i64) -> String {
    human_bytes(u64::try_from(n).unwrap_or_default())
}

async fn medium(
    catalog: &Catalog,
    name: &str,
    json: bool,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let found = media::resolve_medium(catalog.pool(), name).await?;
    let totals = overlap::medium(catalog.pool(), found.id).await?;
    let shared = overlap::shared_with(catalog.pool(), found.id).await?;
    if json {
        let mut value = serde_json::to_value(&totals)?;
        value["medium"] = found.name.clone().into();
        value["medium_hash"] = found.hash.clone().into();
        value["shared_with"] = serde_json::to_value(&shared)?;
        serde_json::to_writer_pretty(&mut *stdout, &value)?;
        writeln!(stdout)?;
        return Ok(());
    }
    writeln!(
        stdout,
        "{} ({}): {} copied files, {}; {} distinct contents, {}",
        found.name,
        short_hash(&found.hash),
        totals.files,
        bytes(totals.bytes),
        totals.contents,
        bytes(totals.content_bytes)
    )?;
    writeln!(
        stdout,
        "  adds:   {} contents, {} ({} files) that no earlier medium had",
        totals.new_contents,
        bytes(totals.new_bytes),
        totals.new_files
    )?;
    writeln!(
        stdout,
        "  shares: {} contents, {} with earlier media",
        totals.shared_contents,
        bytes(totals.shared_bytes)
    )?;
    for other in &shared {
        writeln!(
            stdout,
            "    {} ({}, {})  {} contents  {}",
            other.medium,
            short_hash(&other.medium_hash),
            if other.earlier { "earlier" } else { "later" },
            other.contents,
            bytes(other.bytes)
        )?;
    }
    Ok(())
}

/// A timeline step with the running totals.
#[derive(Debug, serde::Serialize)]
struct Running<'a> {
    #[serde(flatten)]
    step: &'a Step,
    /// File bytes of this and every earlier medium.
    total_bytes: i64,
    /// Bytes the store holds for them.
    stored_bytes: i64,
    /// What deduplication saved so far.
    saved_bytes: i64,
}

fn running(steps: &[Step]) -> Vec<Running<'_>> {
    let (mut total, mut stored) = (0i64, 0i64);
    steps
        .iter()
        .map(|step| {
            total = total.saturating_add(step.bytes);
            stored = stored.saturating_add(step.new_bytes);
            Running {
                step,
                total_bytes: total,
                stored_bytes: stored,
                saved_bytes: total - stored,
            }
        })
        .collect()
}

async fn archive(
    catalog: &Catalog,
    top: i64,
    json: bool,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let steps = overlap::timeline(catalog.pool()).await?;
    let (largest, pairs) = overlap::matrix(catalog.pool(), top).await?;
    let timeline = running(&steps);
    if json {
        let value = serde_json::json!({
            "timeline": timeline,
            "largest": largest,
            "pairs": pairs,
        });
        serde_json::to_writer_pretty(&mut *stdout, &value)?;
        writeln!(stdout)?;
        return Ok(());
    }
    writeln!(stdout, "savings in the order media were registered:")?;
    writeln!(
        stdout,
        "  {:<24} {:<10} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "medium", "registered", "files", "new", "all files", "stored", "saved"
    )?;
    for row in &timeline {
        writeln!(
            stdout,
            "  {:<24} {:<10} {:>12} {:>12} {:>12} {:>12} {:>12}",
            row.step.medium,
            row.step.registered_at.format("%Y-%m-%d"),
            bytes(row.step.bytes),
            bytes(row.step.new_bytes),
            bytes(row.total_bytes),
            bytes(row.stored_bytes),
            bytes(row.saved_bytes)
        )?;
    }
    writeln!(
        stdout,
        "content shared among the {} largest media:",
        largest.len()
    )?;
    if pairs.is_empty() {
        writeln!(stdout, "  none")?;
    }
    for pair in &pairs {
        writeln!(
            stdout,
            "  {} and {}: {} contents, {}",
            pair.a,
            pair.b,
            pair.contents,
            bytes(pair.bytes)
        )?;
    }
    Ok(())
}
