//! `ntt mount MEDIUM` and `ntt unmount MEDIUM`: attach a medium's volumes read-only for people
//! to look at (and for later stages to reuse), and take them down again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::image::HostArgs;
use crate::catalog::Catalog;
use crate::catalog::media::{self, HealthValue, MediumRecord};
use crate::catalog::volumes::{self, RoleValue};
use crate::env;
use crate::volume::access::{self, AttachedMedium, Settings, VolumeSpec};
use crate::volume::probe::FsType;

/// Options of `ntt mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,

    /// Mount even if the medium's health is `failed` (less than half of it was rescued)
    #[arg(long, env = env::FORCE)]
    pub force: bool,

    /// Print the volumes as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Options of `ntt unmount`.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
}

/// Where mounts go, and how long one may take.
#[derive(Debug, Clone, clap::Args)]
pub struct MountSettings {
    /// Directory of mount points: `<mount-dir>/<medium hash>/<volume number>`
    #[arg(long, global = true, env = env::MOUNT_DIR, default_value = env::DEFAULT_MOUNT_DIR)]
    pub mount_dir: PathBuf,

    /// Seconds one mount may take before the filesystem is given up as damaged
    #[arg(long, global = true, env = env::MOUNT_TIMEOUT, default_value_t = 60)]
    pub mount_timeout: u64,
}

impl MountSettings {
    /// The attach settings of this host.
    pub fn settings(&self, host: &HostArgs) -> anyhow::Result<Settings> {
        let mut settings = Settings::for_host(
            self.mount_dir.clone(),
            host.lock_dir.clone(),
            host.data_dir.clone(),
        )?;
        settings.mount_timeout = Duration::from_secs(self.mount_timeout.max(1));
        Ok(settings)
    }
}

/// One volume as `ntt mount` reports it.
#[derive(Debug, Serialize)]
struct MountedVolume {
    volume_no: i32,
    fs_type: String,
    access: Option<&'static str>,
    mount_point: Option<PathBuf>,
    reused: bool,
    error: Option<String>,
}

/// Attaches the medium's filesystem volumes (discovering them first if needed), records in
/// the catalog how each is read or why it cannot be, and fails when none can be read.
pub(super) async fn attach(
    catalog: &Catalog,
    medium: &MediumRecord,
    settings: &Settings,
    force: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<AttachedMedium>> {
    if medium.kind == media::MediumKind::Directory {
        let root = PathBuf::from(&medium.source);
        anyhow::ensure!(
            root.is_dir(),
            "medium {} is the directory {}, which is not there any more",
            medium.name,
            root.display()
        );
        return Ok(Some(AttachedMedium::directory(root)));
    }
    if medium.health == Some(HealthValue::Failed) && !force {
        anyhow::bail!(
            "medium {} has health `failed` (less than half of it could be rescued): its \
             filesystems are mostly unreadable and mounting them can hang or mislead; image it \
             again with `--profile thorough`, or pass --force to mount anyway",
            medium.name
        );
    }
    let rows = super::volumes::ensure_volumes(catalog, medium).await?;
    let image = PathBuf::from(medium.image_path.as_deref().with_context(|| {
        format!(
            "medium {} has no image yet: run `ntt image` first",
            medium.name
        )
    })?);
    let specs: Vec<VolumeSpec> = rows
        .iter()
        .filter(|row| row.role == RoleValue::Filesystem)
        .map(|row| VolumeSpec {
            volume_no: row.volume_no,
            offset: u64::try_from(row.offset_bytes).unwrap_or(0),
            length: u64::try_from(row.length_bytes).unwrap_or(0),
            fs_type: row
                .fs_type
                .as_deref()
                .and_then(FsType::from_name)
                .unwrap_or(FsType::Unknown),
        })
        .collect();
    anyhow::ensure!(
        !specs.is_empty(),
        "medium {} has no filesystem to read: its {} volume(s) are all containers, swap or \
         unrecognised (see `ntt volumes {}`)",
        medium.name,
        rows.len(),
        medium.name
    );
    let Some(attached) = access::attach_medium(&image, &medium.hash, &specs, settings, cancel)
        .await
        .with_context(|| format!("cannot attach the volumes of {}", medium.name))?
    else {
        return Ok(None);
    };
    for volume in &attached.volumes {
        volumes::record_ready(catalog.pool(), medium.id, volume.volume_no, volume.method).await?;
    }
    for failure in &attached.failures {
        volumes::record_failed(catalog.pool(), medium.id, failure.volume_no, &failure.error)
            .await?;
        tracing::warn!(
            volume = failure.volume_no,
            error = %failure.error,
            "volume cannot be read"
        );
    }
    if attached.volumes.is_empty() {
        let reasons = attached
            .failures
            .iter()
            .map(|f| format!("volume {}: {}", f.volume_no, f.error))
            .collect::<Vec<_>>()
            .join("; ");
        // Nothing is attached; the release only drops the lock.
        attached.release()?;
        anyhow::bail!(
            "no volume of medium {} could be read: {reasons}",
            medium.name
        );
    }
    if !attached.failures.is_empty() {
        tracing::warn!(
            readable = attached.volumes.len(),
            failed = attached.failures.len(),
            "continuing with the volumes that can be read"
        );
    }
    Ok(Some(attached))
}

/// `ntt mount`; `Ok(false)` when cancelled (everything attached so far was released).
pub(super) async fn run_mount(
    catalog: &Catalog,
    settings: &Settings,
    args: MountArgs,
    cancel: &CancellationToken,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let Some(attached) = attach(catalog, &medium, settings, args.force, cancel).await? else {
        tracing::warn!("cancelled: what was attached so far is released");
        return Ok(false);
    };
    let mut report: Vec<MountedVolume> = attached
        .volumes
        .iter()
        .map(|v| MountedVolume {
            volume_no: v.volume_no,
            fs_type: v.fs_type.as_str().to_owned(),
            access: Some(v.method.as_str()),
            mount_point: v.mount_point.clone(),
            reused: v.reused,
            error: None,
        })
        .chain(attached.failures.iter().map(|f| MountedVolume {
            volume_no: f.volume_no,
            fs_type: String::new(),
            access: None,
            mount_point: None,
            reused: false,
            error: Some(f.error.clone()),
        }))
        .collect();
    report.sort_by_key(|v| v.volume_no);
    attached.persist()?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
        return Ok(true);
    }
    writeln!(stdout, "{:<3} {:<9} {:<10} WHERE", "NO", "FS", "ACCESS")?;
    for volume in &report {
        let place = match (&volume.mount_point, &volume.error) {
            (Some(point), _) => point.display().to_string(),
            (None, Some(error)) => format!("cannot be read: {error}"),
            (None, None) => "read by The Sleuth Kit (no mount point)".to_owned(),
        };
        writeln!(
            stdout,
            "{:<3} {:<9} {:<10} {place}",
            volume.volume_no,
            volume.fs_type,
            volume.access.unwrap_or("-")
        )?;
    }
    Ok(true)
}

/// `ntt unmount`.
pub(super) async fn run_unmount(
    catalog: &Catalog,
    settings: &Settings,
    args: UnmountArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let image = medium
        .image_path
        .as_deref()
        .map_or_else(|| Path::new("/nonexistent").to_owned(), PathBuf::from);
    let released = access::release_medium(&image, &medium.hash, settings)
        .await
        .with_context(|| format!("cannot unmount {}", medium.name))?;
    writeln!(
        stdout,
        "{}: {} mount(s) released, {} stale loop device(s) detached",
        medium.name,
        released.unmounted.len(),
        released.detached.len()
    )?;
    Ok(())
}
