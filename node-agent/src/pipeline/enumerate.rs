//! Enumeration: walk every attached volume, load every entry, map damaged files.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::listing;
use crate::catalog::load::{self, LoadError};
use crate::catalog::media::MediumRecord;
use crate::enumerate::ignore::{self, IgnoreSet, Origin, Pattern};
use crate::enumerate::{self as stage, EnumerateError, EnumerateReport};

/// How to enumerate.
#[derive(Debug, Clone)]
pub struct EnumerateOptions {
    /// Build a new load beside the published one and swap it in when complete.
    pub replace: bool,
    /// Ignore patterns for this medium (regular expressions over path bytes; recorded with it).
    pub ignore: Vec<String>,
    /// A named preset of ignore patterns for this run.
    pub ignore_preset: Option<String>,
    /// Directory readers per volume.
    pub threads: usize,
    /// MiB of rows the load may hold to send them in key order.
    pub sort_memory_mib: usize,
    /// Attach a medium whose health is `failed`.
    pub force: bool,
}

impl Default for EnumerateOptions {
    fn default() -> Self {
        Self {
            replace: false,
            ignore: Vec::new(),
            ignore_preset: None,
            threads: 4,
            sort_memory_mib: load::DEFAULT_SORT_MEMORY_MIB,
            force: false,
        }
    }
}

/// The medium's ignore patterns: the preset, the patterns given now (stored on the medium) and
/// those stored before, the site's included.
async fn ignore_set(
    catalog: &Catalog,
    medium: &MediumRecord,
    options: &EnumerateOptions,
) -> Result<IgnoreSet> {
    for pattern in &options.ignore {
        ignore::validate(pattern)?;
    }
    let mut patterns: Vec<Pattern> = Vec::new();
    if let Some(name) = &options.ignore_preset {
        patterns.extend(ignore::preset(name)?);
    }
    for pattern in &options.ignore {
        listing::add_ignore_pattern(catalog.pool(), Some(medium.id), pattern).await?;
    }
    for stored in listing::ignore_patterns(catalog.pool(), Some(medium.id)).await? {
        patterns.push(Pattern {
            text: stored.pattern,
            origin: if stored.medium.is_some() {
                Origin::Medium
            } else {
                Origin::Site
            },
        });
    }
    Ok(IgnoreSet::new(patterns)?)
}

/// Loads every entry of the medium into the catalog (refused when it is loaded already,
/// unless `replace`), then maps its unreadable areas onto the files while the volumes are
/// attached: every load gets a damage map (a replaced load starts without damaged ranges).
pub async fn enumerate(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    options: &EnumerateOptions,
    cancel: &CancellationToken,
) -> Result<EnumerateReport> {
    let failed = |source| PipelineError::Enumerate {
        medium: medium.name.clone(),
        source,
    };
    // Refused before anything is mounted (the stage checks again, and the swap under lock).
    if !options.replace
        && let Some(entries) = load::published_entries(catalog.pool(), medium.id).await?
    {
        return Err(failed(EnumerateError::Load(LoadError::AlreadyLoaded {
            medium: medium.name.clone(),
            entries,
        })));
    }
    let ignore = ignore_set(catalog, medium, options).await?;
    // The load being built gets its deleted files checked anew.
    crate::catalog::deleted::clear_checked(catalog.pool(), medium.id).await?;
    super::attach::with_attached(
        catalog,
        host,
        medium,
        options.force,
        cancel,
        async |attached| {
            let progress = Arc::new(crate::progress::Counter::default());
            let stage_options = stage::EnumerateOptions {
                threads: options.threads.clamp(1, 64),
                replace: options.replace,
                sort_memory: options.sort_memory_mib.saturating_mul(1 << 20),
                progress: progress.clone(),
                read_timeout: host.read_timeout,
            };
            let ticker = crate::progress::Ticker::start("enumerate", progress, None);
            let result = stage::enumerate(
                catalog.pool(),
                medium.id,
                &medium.name,
                &attached.volumes,
                &ignore,
                &stage_options,
                cancel,
            )
            .await;
            ticker.finish().await;
            let mut report = match result {
                Ok(report) => report,
                Err(EnumerateError::Cancelled) => return Err(PipelineError::Interrupted),
                Err(error) => return Err(failed(error)),
            };
            report.damage = super::damage::map_attached(catalog, medium, attached).await?;
            report.deleted =
                super::deleted::check_attached(catalog, medium, attached, cancel).await?;
            Ok(report)
        },
    )
    .await
}
