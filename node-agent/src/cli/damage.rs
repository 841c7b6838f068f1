//! `ntt damage`: map a medium's unreadable areas onto its files (again, after a rescue).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::catalog::media::{self, MediumRecord};
use crate::damage::{self, MappedVolume, VolumeReport};
use crate::volume::access::{AttachedMedium, Settings};

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

/// The unreadable areas of the medium's image from its mapfile (none for a directory or a
/// registered image without one).
pub(super) fn medium_areas(medium: &MediumRecord) -> anyhow::Result<Vec<std::ops::Range<u64>>> {
    let mapfile = medium.mapfile_path.as_ref().map(PathBuf::from);
    Ok(damage::unreadable_areas(mapfile.as_deref())?)
}

/// Maps the medium's damage onto its attached volumes and records it.
pub(super) async fn map_attached(
    catalog: &Catalog,
    medium: &MediumRecord,
    attached: &AttachedMedium,
) -> anyhow::Result<Vec<VolumeReport>> {
    let Some(image) = medium.image_path.as_ref().map(PathBuf::from) else {
        return Ok(Vec::new());
    };
    let areas = medium_areas(medium)?;
    let rows = crate::catalog::volumes::medium_volumes(catalog.pool(), medium.id).await?;
    let volumes: Vec<MappedVolume<'_>> = attached
        .volumes
        .iter()
        .filter_map(|volume| {
            let row = rows.iter().find(|r| r.volume_no == volume.volume_no)?;
            Some(MappedVolume {
                attached: volume,
                offset: u64::try_from(row.offset_bytes).ok()?,
                length: u64::try_from(row.length_bytes).ok()?,
            })
        })
        .collect();
    let reports = damage::map_medium(catalog.pool(), medium.id, &image, &areas, &volumes)
        .await
        .with_context(|| format!("cannot map the damage of {}", medium.name))?;
    for report in &reports {
        if report.recorded.damaged_files > 0 || report.counts.metadata_bytes > 0 {
            tracing::warn!(
                medium = %medium.name,
                volume = report.volume_no,
                damaged_files = report.recorded.damaged_files,
                structures_bytes = report.counts.metadata_bytes,
                "unreadable sectors hit files or filesystem structures: `ntt ls --damaged` lists the files"
            );
        }
    }
    Ok(reports)
}

/// Whether the medium's damage map is missing or was built from other areas than its
/// mapfile now has (a later rescue read more).
pub(super) async fn map_is_stale(catalog: &Catalog, medium: &MediumRecord) -> anyhow::Result<bool> {
    if medium.image_path.is_none() {
        return Ok(false);
    }
    let areas = medium_areas(medium)?;
    Ok(!crate::catalog::damage::map_is_current(catalog.pool(), medium.id, &areas).await?)
}

/// `ntt damage`.
pub(super) async fn run_damage(
    catalog: &Catalog,
    settings: &Settings,
    args: DamageArgs,
    cancel: &CancellationToken,
    stdout: &mut impl Write,
) -> anyhow::Result<Option<Vec<VolumeReport>>> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    anyhow::ensure!(
        crate::catalog::load::published_entries(catalog.pool(), medium.id)
            .await?
            .is_some(),
        "{} is not enumerated yet: run `ntt enumerate {}` (it maps the damage too)",
        medium.name,
        medium.name
    );
    let Some(attached) =
        super::mount::attach(catalog, &medium, settings, args.force, cancel).await?
    else {
        return Ok(None);
    };
    let result = map_attached(catalog, &medium, &attached).await;
    let released = attached.release();
    let reports = result?;
    released?;
    write_reports(&medium.name, &reports, args.json, stdout)?;
    Ok(Some(reports))
}

/// Prints a damage map.
pub(super) fn write_reports(
    name: &str,
    reports: &[VolumeReport],
    json: bool,
    stdout: &mut impl Write,
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
