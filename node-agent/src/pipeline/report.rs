//! A medium's report: its accounting, content, failures, problems and damage.

use serde::Serialize;

use super::Result;
use crate::catalog::Catalog;
use crate::catalog::media::MediumRecord;
use crate::catalog::report::{self, Accounting, Content, FailureClass};
use crate::catalog::volumes::{self, VolumeRow};

/// The report of one medium.
#[derive(Debug, Clone, Serialize)]
pub struct MediumReport {
    /// Catalog name.
    pub name: String,
    /// Identity.
    pub hash: String,
    /// Health from the last rescue.
    pub health: Option<String>,
    /// Its volumes.
    pub volumes: Vec<VolumeRow>,
    /// Entries and what became of them.
    pub accounting: Accounting,
    /// The deleted entries (deleted volumes), apart from the live ones.
    pub deleted: Accounting,
    /// What became of the deleted files' content.
    pub recovered: crate::catalog::report::Recovered,
    /// Whether the accounting adds up (live and deleted, each).
    pub balances: bool,
    /// Files, bytes and blobs.
    pub content: Content,
    /// Failed files by class.
    pub failures: Vec<FailureClass>,
    /// Entries the walk could not read.
    pub entry_errors: i64,
    /// Medium-level problems (lost volumes, reads beyond the end, ...).
    pub problems: serde_json::Value,
    /// Files on unreadable sectors.
    pub damage: crate::catalog::damage::DamageSummary,
    /// The command that draws the rescue map, for a medium imaged from a device.
    pub map: Option<String>,
    /// Every replica of the store, with how many of the medium's blobs it does not hold right.
    pub replicas: Vec<crate::catalog::replicas::MediumReplica>,
    /// How many replicas hold all of the medium's content.
    pub replicas_complete: usize,
}

/// The medium's report, from the catalog.
pub async fn report(catalog: &Catalog, medium: &MediumRecord) -> Result<MediumReport> {
    let pool = catalog.pool();
    let (accounting, deleted) = report::accounting(pool, medium.id).await?;
    let replicas = crate::catalog::replicas::of_medium(pool, medium.id).await?;
    Ok(MediumReport {
        replicas_complete: replicas.iter().filter(|r| r.lacking == 0).count(),
        replicas,
        name: medium.name.clone(),
        hash: medium.hash.clone(),
        health: medium.health.map(|h| format!("{h:?}").to_lowercase()),
        volumes: volumes::medium_volumes(pool, medium.id).await?,
        balances: accounting.balances() && deleted.balances(),
        accounting,
        deleted,
        recovered: report::recovered(pool, medium.id).await?,
        content: report::content(pool, medium.id).await?,
        failures: report::failures(pool, medium.id).await?,
        entry_errors: report::entry_errors(pool, medium.id).await?,
        problems: report::problems(pool, medium.id).await?,
        damage: crate::catalog::damage::summary(pool, medium.id).await?,
        map: medium
            .mapfile_path
            .as_ref()
            .map(|_| format!("ntt map {}", medium.hash)),
    })
}
