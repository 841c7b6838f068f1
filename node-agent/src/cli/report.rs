//! `ntt report MEDIUM`: a medium's accounting, content, failures, problems and damage.

use std::io::Write;

use super::text::human_bytes;
use crate::catalog::Catalog;
use crate::catalog::media;
use crate::env;
use crate::pipeline::{self, report::MediumReport};

/// Options of `ntt report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt report`.
pub(super) async fn run(
    catalog: &Catalog,
    args: ReportArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let report = pipeline::report::report(catalog, &medium).await?;
    print(&report, args.json, stdout)
}

/// Prints a medium's report: JSON, or lines for people.
/// The deleted entries' line, when the medium has any.
fn print_deleted(report: &MediumReport, stdout: &mut (impl Write + Send)) -> std::io::Result<()> {
    let d = &report.deleted;
    if d.entries > 0 {
        let r = &report.recovered;
        writeln!(
            stdout,
            "deleted  {} = {} recovered + {} excluded + {} failed + {} not a file + {} pending; \
             {} of {} files recovered ({}), {} partly overwritten, {} partly unread \
             (`ntt ls --deleted`)",
            d.entries,
            d.copied,
            d.excluded,
            d.failed,
            d.not_a_file,
            d.pending,
            r.copied_files,
            r.files,
            human_bytes(u64::try_from(r.copied_bytes).unwrap_or(0)),
            r.overwritten_files,
            r.unreadable_files,
        )?;
    }
    Ok(())
}

pub(super) fn print(
    report: &MediumReport,
    json: bool,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *stdout, report)?;
        writeln!(stdout)?;
        return Ok(());
    }
    let a = &report.accounting;
    let c = &report.content;
    writeln!(stdout, "medium   {} ({})", report.name, report.hash)?;
    writeln!(
        stdout,
        "health   {}",
        report.health.as_deref().unwrap_or("-")
    )?;
    if let Some(map) = &report.map {
        writeln!(stdout, "map      {map}  (--svg FILE for a picture)")?;
    }
    for v in &report.volumes {
        writeln!(
            stdout,
            "volume   {} {} {} {}{}",
            v.volume_no,
            v.fs_type.as_deref().unwrap_or("-"),
            format!("{:?}", v.state).to_lowercase(),
            v.access
                .map_or_else(|| "-".to_owned(), |x| format!("{x:?}").to_lowercase()),
            v.error
                .as_deref()
                .or(v.problem.as_deref())
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        stdout,
        "entries  {} = {} copied + {} excluded + {} failed + {} not a file + {} pending{}",
        a.entries,
        a.copied,
        a.excluded,
        a.failed,
        a.not_a_file,
        a.pending,
        if report.balances {
            ""
        } else {
            "  (DOES NOT BALANCE)"
        }
    )?;
    print_deleted(report, stdout)?;
    writeln!(
        stdout,
        "content  {} of {} files copied, {}; {} distinct blobs ({}), {} shared with other media; {} pending",
        c.copied_files,
        c.files,
        human_bytes(u64::try_from(c.copied_bytes).unwrap_or(0)),
        c.distinct_blobs,
        human_bytes(u64::try_from(c.distinct_bytes).unwrap_or(0)),
        c.shared_blobs,
        human_bytes(u64::try_from(c.pending_bytes).unwrap_or(0))
    )?;
    if !report.replicas.is_empty() {
        write!(
            stdout,
            "replicas {} of {} hold all of its content",
            report.replicas_complete,
            report.replicas.len(),
        )?;
        for r in report.replicas.iter().filter(|r| r.lacking > 0) {
            write!(
                stdout,
                "; {} at {} lacks {} blob(s)",
                r.id, r.root, r.lacking
            )?;
        }
        writeln!(stdout)?;
    }
    for failure in &report.failures {
        writeln!(
            stdout,
            "failed   {} file(s): {}",
            failure.files, failure.class
        )?;
    }
    if report.entry_errors > 0 {
        writeln!(
            stdout,
            "unread   {} entries could not be read by the walk (table entry_error)",
            report.entry_errors
        )?;
    }
    if report.problems.as_object().is_some_and(|p| !p.is_empty()) {
        writeln!(stdout, "problems {}", report.problems)?;
    }
    write_damage(report, stdout)
}

/// The damage lines of `ntt report`.
fn write_damage(report: &MediumReport, stdout: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let d = &report.damage;
    if d.files > 0 {
        writeln!(
            stdout,
            "damaged  {} file(s) with {} on unreadable sectors ({} copied with zeros there): `ntt ls {} --damaged`",
            d.files,
            human_bytes(u64::try_from(d.bytes).unwrap_or(0)),
            d.copied,
            report.name
        )?;
    }
    for v in d.volumes.iter().filter(|v| v.bad_bytes > 0) {
        writeln!(
            stdout,
            "unread   volume {}: {} unreadable ({}): {} in files, {} free space, {} structures, {} unattributed",
            v.volume_no,
            human_bytes(u64::try_from(v.bad_bytes).unwrap_or(0)),
            v.method,
            human_bytes(u64::try_from(v.file_bytes).unwrap_or(0)),
            human_bytes(u64::try_from(v.free_bytes).unwrap_or(0)),
            human_bytes(u64::try_from(v.metadata_bytes).unwrap_or(0)),
            human_bytes(u64::try_from(v.unattributed_bytes).unwrap_or(0)),
        )?;
        for line in &v.structures {
            writeln!(stdout, "           structure hit: {line}")?;
        }
    }
    Ok(())
}
