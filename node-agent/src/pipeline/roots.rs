//! The store and the data directory: initialised once by `ntt init`, checked by every command
//! that reads or writes them.
//!
//! Rules (the markers themselves are in [`crate::roots`]):
//! - No command but `ntt init` creates a root. Every other command that uses one checks that
//!   it holds a marker naming this catalog, and stops with a clear error otherwise.
//! - `ntt init` is safe to repeat (the chart runs it at every agent start): a root that holds
//!   this catalog's marker is left as it is; a missing or empty directory gets a new marker,
//!   unless the catalog recorded a root at that path on this machine before — then the
//!   archive disk is probably not mounted, and it refuses (`--replace` starts a new root when
//!   the old one is lost for good). A directory with files but no marker (a root made before
//!   markers) is taken over only with `--adopt`; a root of another catalog never is.

use std::path::{Path, PathBuf};

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::roots as recorded;
use crate::roots::{self, Found, Marker, RootError, RootKind};

/// What `ntt init` may do beyond the safe default.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitOptions {
    /// Take over a directory that holds files but no marker (a root from before markers).
    pub adopt: bool,
    /// Start a new root where the catalog recorded one that is gone.
    pub replace: bool,
}

/// What `ntt init` did to one root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitAction {
    /// It was initialised already; nothing changed.
    Present,
    /// A new root was made.
    Created,
    /// An existing directory without a marker was taken over.
    Adopted,
    /// A new root replaced one the catalog recorded there.
    Replaced,
}

/// One root after `ntt init`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitOutcome {
    /// Store or data directory.
    pub kind: RootKind,
    /// The directory.
    pub path: PathBuf,
    /// Its marker's id.
    pub id: String,
    /// What was done.
    pub action: InitAction,
}

/// Initialises the host's store and data directory (see the module's rules).
///
/// # Errors
///
/// [`PipelineError::Root`] when a root is foreign, lost, not empty without `--adopt`, or
/// cannot be written; catalog and machine-id errors as they come.
pub async fn init(
    catalog: &Catalog,
    host: &Host,
    options: InitOptions,
) -> Result<Vec<InitOutcome>> {
    let machine = super::image::machine_id(Path::new(super::image::MACHINE_ID))?;
    let ours = recorded::catalog_id(catalog.pool()).await?;
    let mut outcomes = Vec::new();
    for (kind, dir) in [
        (RootKind::Store, &host.store),
        (RootKind::Data, &host.data_dir),
    ] {
        outcomes.push(init_one(catalog, kind, dir, &machine, &ours, options).await?);
    }
    Ok(outcomes)
}

async fn init_one(
    catalog: &Catalog,
    kind: RootKind,
    dir: &Path,
    machine: &str,
    ours: &str,
    options: InitOptions,
) -> Result<InitOutcome> {
    let pool = catalog.pool();
    let path = roots::absolute(kind, dir)?;
    let key = path_key(kind, &path)?;
    let before = recorded::recorded_root(pool, kind.as_str(), machine, key).await?;
    let found = roots::inspect(&path)?;
    let action = match (&found, &before) {
        (Found::Marked(_), _) => InitAction::Present,
        (_, Some(before)) if !options.replace => {
            return Err(RootError::Lost {
                kind,
                path,
                id: before.id.clone(),
                since: before.initialised_at,
            }
            .into());
        }
        (Found::Unmarked, _) if !options.adopt => {
            return Err(RootError::NotEmpty { kind, path }.into());
        }
        (_, Some(_)) => InitAction::Replaced,
        (Found::Unmarked, None) => InitAction::Adopted,
        (Found::Missing | Found::Empty, None) => InitAction::Created,
    };
    let marker = if let Found::Marked(_) = found {
        roots::judge(kind, &path, found, ours)?
    } else {
        let marker = Marker::new(kind, recorded::new_root_id(pool).await?, ours.to_owned());
        roots::write_marker(&path, &marker, action != InitAction::Adopted)?;
        marker
    };
    // Recorded after the marker is durable: a crash between leaves a marker of this catalog,
    // which the next `ntt init` finds present and records.
    recorded::record_root(pool, kind.as_str(), machine, key, &marker.id).await?;
    if action != InitAction::Present {
        tracing::info!(%kind, path = %path.display(), id = %marker.id, ?action, "root initialised");
    }
    Ok(InitOutcome {
        kind,
        path,
        id: marker.id,
        action,
    })
}

/// The path as the catalog records it: roots are named by the operator, so a path that is not
/// UTF-8 is refused rather than recorded lossily.
fn path_key(kind: RootKind, path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        PipelineError::Root(RootError::Path {
            kind,
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
        })
    })
}

/// Checks that each of `kinds` of the host's roots is initialised and belongs to this catalog.
///
/// # Errors
///
/// [`PipelineError::Root`] naming the first root that is missing, not initialised, foreign or
/// of the other kind.
pub async fn check(catalog: &Catalog, host: &Host, kinds: &[RootKind]) -> Result<()> {
    let ours = recorded::catalog_id(catalog.pool()).await?;
    for kind in kinds {
        let dir = match kind {
            RootKind::Store => &host.store,
            RootKind::Data => &host.data_dir,
            // A replica is named by each `ntt replicate` run, which checks it itself.
            RootKind::Replica => continue,
        };
        roots::check(*kind, dir, &ours)?;
    }
    Ok(())
}
