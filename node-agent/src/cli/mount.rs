//! `ntt mount MEDIUM`: attach a medium's volumes read-only for people to look at (and for
//! later stages to reuse).

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::env;
use crate::pipeline::{self, Host, PipelineError};

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

/// `ntt mount`; `Ok(false)` when cancelled (everything attached so far was released).
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: MountArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let attached = match pipeline::attach::attach(catalog, host, &medium, args.force, cancel).await
    {
        Ok(attached) => attached,
        Err(PipelineError::Interrupted) => {
            tracing::warn!("cancelled: what was attached so far is released");
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    };
    // Deleted entries have nothing to mount: `ntt ls --deleted` and `ntt cat` read them.
    let mut report: Vec<MountedVolume> = attached
        .volumes
        .iter()
        .filter(|v| !v.is_deleted_view())
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
    pipeline::attach::persist(&medium, attached)?;
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
