//! The whole pipeline for one source: identify → image (or register) → volumes → enumerate →
//! damage map → copy → verify a sample → report, skipping what is done, so a rerun after a
//! crash or a stop continues where it stopped.

use std::path::Path;

use ntt_crds::Target;
use tokio_util::sync::CancellationToken;

use super::copy::CopyOptions;
use super::enumerate::EnumerateOptions;
use super::image::ImageOptions;
use super::report::MediumReport;
use super::verify::VerifyScope;
use super::{Host, PipelineError, Result};
use crate::catalog::Catalog;
use crate::catalog::load;
use crate::catalog::media::MediumRecord;
use crate::imaging::{ImageEnd, ImageReport};

/// How to take a medium through the pipeline.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// How to image (or register) it.
    pub image: ImageOptions,
    /// How far to take it.
    pub target: Target,
    /// How to enumerate it.
    pub enumerate: EnumerateOptions,
    /// How to copy it.
    pub copy: CopyOptions,
    /// Blobs of the medium re-hashed after copying (at least one).
    pub verify_sample: i64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            image: ImageOptions::default(),
            target: Target::Copied,
            enumerate: EnumerateOptions::default(),
            copy: CopyOptions::default(),
            verify_sample: 100,
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The imaging report (none for a directory).
    pub image: Option<ImageReport>,
    /// The medium.
    pub medium: MediumRecord,
    /// Its report at the end.
    pub report: MediumReport,
}

/// Images (or registers) the source: the medium it is. Reads the source; the only stage that
/// does.
pub async fn image_stage(
    catalog: &Catalog,
    host: &Host,
    source: &Path,
    options: &ImageOptions,
    cancel: &CancellationToken,
) -> Result<(MediumRecord, Option<ImageReport>)> {
    if source.is_dir() {
        let medium = super::image::register_directory(catalog, source, options).await?;
        return Ok((medium, None));
    }
    tracing::info!(source = %source.display(), "stage 1/5: identify and image");
    let report = super::image::image(catalog, host, source, options, cancel).await?;
    if report.end == ImageEnd::Cancelled {
        return Err(PipelineError::Interrupted);
    }
    let medium = super::medium_by_hash(catalog, &report.hash).await?;
    Ok((medium, Some(report)))
}

/// The whole pipeline for `source` up to `options.target`.
pub async fn ingest(
    catalog: &Catalog,
    host: &Host,
    source: &Path,
    options: &IngestOptions,
    cancel: &CancellationToken,
) -> Result<Ingested> {
    let (medium, image) = image_stage(catalog, host, source, &options.image, cancel).await?;
    advance(catalog, host, &medium, options, cancel).await?;
    let report = super::report::report(catalog, &medium).await?;
    Ok(Ingested {
        image,
        medium,
        report,
    })
}

/// The stages after imaging, up to `options.target`, for a medium already imaged or
/// registered: they read its recorded image (or its directory), never the source device, so
/// the drive may be gone.
pub async fn advance(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    options: &IngestOptions,
    cancel: &CancellationToken,
) -> Result<()> {
    if options.target >= Target::Enumerated {
        enumerate_stage(catalog, host, medium, &options.enumerate, cancel).await?;
    }
    if options.target >= Target::Copied {
        copy_stage(catalog, host, medium, options, cancel).await?;
    }
    Ok(())
}

/// Stages 2-3: volumes, enumeration and the damage map.
async fn enumerate_stage(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    options: &EnumerateOptions,
    cancel: &CancellationToken,
) -> Result<()> {
    if load::published_entries(catalog.pool(), medium.id)
        .await?
        .is_none()
    {
        tracing::info!(medium = %medium.name, "stage 2-3/5: volumes and enumeration");
        let options = EnumerateOptions {
            replace: false,
            ..options.clone()
        };
        super::enumerate::enumerate(catalog, host, medium, &options, cancel).await?;
    }
    if super::damage::map_is_stale(catalog, medium).await? {
        // A later rescue changed the unreadable areas (or the load predates damage maps).
        tracing::info!(medium = %medium.name, "stage 3/5: map unreadable areas onto files again");
        super::damage::damage(catalog, host, medium, options.force, cancel).await?;
    }
    Ok(())
}

/// Stages 4-5: copy, then verify a sample.
async fn copy_stage(
    catalog: &Catalog,
    host: &Host,
    medium: &MediumRecord,
    options: &IngestOptions,
    cancel: &CancellationToken,
) -> Result<()> {
    tracing::info!(medium = %medium.name, "stage 4/5: copy");
    super::copy::copy(catalog, host, medium, &options.copy, cancel).await?;
    let sample = u64::try_from(options.verify_sample.max(1)).unwrap_or(1);
    tracing::info!(medium = %medium.name, sample, "stage 5/5: verify a sample");
    let verification = super::verify::verify(
        catalog,
        host,
        VerifyScope {
            medium: Some(medium),
            sample: Some(sample),
            budget: None,
            stale_before: None,
            jobs: std::thread::available_parallelism().map_or(2, usize::from),
            orphans: false,
            images: false,
        },
    )
    .await?;
    if !verification.is_good() {
        return Err(PipelineError::Verification(Box::new(verification)));
    }
    Ok(())
}
