//! One claimed job: its stage through the pipeline, heartbeats meanwhile, its end recorded,
//! then its release.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use ntt_crds::{
    ErrorClass, JobError, JobResult, JobState, MediumHash, MediumJob, Progress, SourceKind, Stage,
    Target,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::metrics::AgentMetrics;
use super::{is_conflict, now, release, write_status};
use crate::catalog::Catalog;
use crate::catalog::media::{self, MediumId, MediumRecord};
use crate::imaging::passes::PassLimits;
use crate::pipeline::copy::CopyOptions;
use crate::pipeline::enumerate::EnumerateOptions;
use crate::pipeline::image::{ImageOptions, RescueWatch};
use crate::pipeline::ingest::IngestOptions;
use crate::pipeline::{self, Class, Host, PipelineError};

/// What every job of this agent shares.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) metrics: Arc<AgentMetrics>,
    pub(super) catalog: Catalog,
    pub(super) host: Host,
    pub(super) workers: usize,
    pub(super) sort_memory_mib: usize,
    /// What Media may make this agent read.
    pub(super) allow: super::admit::Allowlist,
    /// Cancelled when the agent shuts down (its jobs end `Interrupted`, not `Cancelled`).
    pub(super) shutdown: CancellationToken,
}

impl Context {
    /// What every job of the agent configured by `config` shares.
    pub(super) fn new(
        catalog: Catalog,
        host: Host,
        config: &super::AgentConfig,
        metrics: Arc<AgentMetrics>,
        shutdown: &CancellationToken,
    ) -> Self {
        Self {
            metrics,
            catalog,
            host,
            workers: config.workers.max(1),
            sort_memory_mib: config.sort_memory_mib,
            allow: config.allow.clone(),
            shutdown: shutdown.clone(),
        }
    }
}

/// Who claimed the job, and when.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    pub(super) identity: String,
    pub(super) started_at: Time,
}

/// The longest message a job's error may carry (the CRD's `maxLength`).
const MESSAGE_MAX: usize = 4096;

/// The catalog name of a `Medium`: `<namespace>/<name>`, unique in the cluster (a name alone
/// is only unique in its namespace).
pub(super) fn catalog_name(job: &MediumJob) -> String {
    format!(
        "{}/{}",
        job.namespace().unwrap_or_default(),
        job.spec.medium
    )
}

/// The status of a running job: every field the agent owns while it runs (server-side apply
/// removes the fields an apply leaves out, so a heartbeat carries them all).
pub(super) fn running_status(
    identity: &str,
    started_at: &Time,
    progress: &Progress,
) -> serde_json::Value {
    json!({
        "state": JobState::Running,
        "agent": identity,
        "startedAt": started_at,
        "heartbeatAt": now(),
        "progress": progress,
    })
}

/// The progress of a stage that has just started.
pub(super) fn starting_progress(job: &MediumJob) -> Progress {
    Progress {
        stage: Some(job.spec.stage),
        phase: Some(job.spec.stage.phase()),
        summary: format!("{} started", job.spec.stage.as_str()),
        ..Progress::default()
    }
}

/// `message`, cut to what the job's status accepts.
fn bounded(message: String) -> String {
    if message.len() <= MESSAGE_MAX {
        return message;
    }
    let mut end = MESSAGE_MAX - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Runs one claimed job to its end: the stage, heartbeats meanwhile, the final status, the
/// release.
pub(super) async fn run(
    context: Arc<Context>,
    api: Api<MediumJob>,
    job: MediumJob,
    claim: Claim,
    heartbeat: Duration,
    cancel: CancellationToken,
) {
    let name = job.name_any();
    let watch = RescueWatch::default();
    let beat = tokio::spawn(heartbeats(
        context.clone(),
        api.clone(),
        Beat {
            job: job.clone(),
            claim: claim.clone(),
            every: heartbeat,
            watch: watch.clone(),
        },
        cancel.clone(),
    ));
    context.metrics.started();
    let outcome = match verify_origin(&api, &job).await {
        Ok(()) => run_stage(&context, &job, &watch, &cancel).await,
        Err(refused) => Err(refused),
    };
    beat.abort();
    let stage = job.spec.stage;
    match &outcome {
        Ok(_) => context.metrics.finished(stage.as_str(), "succeeded", None),
        Err(e) => context.metrics.finished(
            stage.as_str(),
            "failed",
            Some(&format!("{:?}", e.class).to_lowercase()),
        ),
    }
    let status = match outcome {
        Ok(result) => {
            // The final progress says how the stage ended.
            let medium = medium_of(&context.catalog, &job, result.medium_hash.as_deref()).await;
            let mut done = progress(
                &context.catalog,
                medium.as_ref().map(|m| m.id),
                stage,
                &watch,
            )
            .await;
            // Imaging's end keeps ddrescue's figures beside the outcome.
            let rescued = watch.lock().ok().and_then(|latest| latest.clone());
            done.summary = match rescued {
                Some(summary) if stage == Stage::Image => {
                    format!("{}: {}", result.summary, rescue_figures(&summary))
                }
                _ => result.summary.clone(),
            };
            if stage == Stage::Copy {
                done.percent = Some(100);
            }
            json!({"state": JobState::Succeeded, "agent": claim.identity, "startedAt": claim.started_at,
                   "finishedAt": now(), "heartbeatAt": now(), "result": result, "progress": done})
        }
        Err(error) => {
            tracing::warn!(job = %name, class = ?error.class, message = %error.message, "job ended without success");
            json!({"state": JobState::Failed, "agent": claim.identity, "startedAt": claim.started_at,
                   "finishedAt": now(), "heartbeatAt": now(), "error": error})
        }
    };
    // The final word: retried a few times, since losing it would make the job look lost; never
    // over the controller's own decision (it failed the job as lost meanwhile).
    for attempt in 0..5 {
        match write_status(&api, &name, status.clone()).await {
            Ok(()) => break,
            Err(error) if is_conflict(&error) => {
                tracing::warn!(job = %name, "the controller ended this job already; its decision stands");
                break;
            }
            Err(error) if attempt == 4 => {
                tracing::error!(job = %name, %error, "cannot record the job's end");
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    if let Err(error) = release(&api, &name).await {
        tracing::error!(job = %name, %error, "cannot release the job");
    }
}

/// Reads the job's Medium and checks the job is the controller's for it
/// ([`super::origin`]): a refused job runs nothing and fails as permanent.
async fn verify_origin(api: &Api<MediumJob>, job: &MediumJob) -> Result<(), JobError> {
    let namespace = job.namespace().unwrap_or_default();
    let media: Api<ntt_crds::Medium> = Api::namespaced(api.clone().into_client(), &namespace);
    let medium = tokio::time::timeout(super::CALL_TIMEOUT, media.get_opt(&job.spec.medium))
        .await
        .map_err(|_| format!("no answer within {} s", super::CALL_TIMEOUT.as_secs()))
        .and_then(|got| got.map_err(|e| e.to_string()))
        .map_err(|why| {
            error(
                ErrorClass::Transient,
                format!("cannot read the job's Medium {}: {why}", job.spec.medium),
            )
        })?;
    super::origin::check(job, medium.as_ref()).map_err(|refusal| {
        tracing::warn!(job = %job.name_any(), "{refusal}");
        error(ErrorClass::Permanent, refusal.to_string())
    })
}

/// What the heartbeats of one job report.
struct Beat {
    job: MediumJob,
    claim: Claim,
    every: Duration,
    /// The imaging's latest rescue summary (image stage).
    watch: RescueWatch,
}

/// Writes a heartbeat with the stage's progress every `every`, until aborted; cancels the job
/// when the controller has ended it (the write conflicts with its decision).
async fn heartbeats(
    context: Arc<Context>,
    api: Api<MediumJob>,
    beat: Beat,
    cancel: CancellationToken,
) {
    let Beat {
        job,
        claim,
        every,
        watch,
    } = beat;
    let name = job.name_any();
    let stage = job.spec.stage;
    let mut last: Option<(i64, i64)> = None;
    loop {
        tokio::time::sleep(every).await;
        let medium = medium_of(&context.catalog, &job, None).await;
        let progress = progress(
            &context.catalog,
            medium.as_ref().map(|m| m.id),
            stage,
            &watch,
        )
        .await;
        let (files, bytes) = match stage {
            Stage::Copy => (
                progress.files_copied.unwrap_or(0),
                progress.bytes_copied.unwrap_or(0),
            ),
            Stage::Enumerate => (progress.entries.unwrap_or(0), 0),
            Stage::Image | Stage::Verify | Stage::Purge => (0, 0),
        };
        if let Some((f, b)) = last {
            context.metrics.processed(
                stage.as_str(),
                u64::try_from(files - f).unwrap_or(0),
                u64::try_from(bytes - b).unwrap_or(0),
            );
        }
        last = Some((files, bytes));
        let status = running_status(&claim.identity, &claim.started_at, &progress);
        match write_status(&api, &name, status).await {
            Ok(()) => {}
            Err(error) if is_conflict(&error) => {
                tracing::warn!(job = %name, "the controller ended this job: cancelling it");
                cancel.cancel();
                return;
            }
            Err(error) => tracing::warn!(job = %name, %error, "heartbeat failed"),
        }
    }
}

/// The catalog's medium of a job: by the hash the job (or its result) carries, else, before
/// the first imaging recorded one, by its catalog name. `None` when not in the catalog.
async fn medium_of(catalog: &Catalog, job: &MediumJob, hash: Option<&str>) -> Option<MediumRecord> {
    match hash.or(job.spec.medium_hash.as_deref()) {
        Some(hash) => {
            let hash: MediumHash = hash.parse().ok()?;
            media::find_medium_by_hash(catalog.pool(), &hash)
                .await
                .ok()
                .flatten()
        }
        None => media::find_medium_by_name(catalog.pool(), &catalog_name(job))
            .await
            .ok()
            .flatten(),
    }
}

/// The stage's progress: imaging's from ddrescue's mapfile, the others' from the catalog.
async fn progress(
    catalog: &Catalog,
    medium: Option<MediumId>,
    stage: Stage,
    watch: &RescueWatch,
) -> Progress {
    let mut progress = Progress {
        stage: Some(stage),
        phase: Some(stage.phase()),
        summary: format!("{} running", stage.as_str()),
        ..Progress::default()
    };
    if stage == Stage::Verify {
        // Its figures are in its result; the catalog's accounting is not what it changes.
        "re-hashing the medium's stored content".clone_into(&mut progress.summary);
        return progress;
    }
    if stage == Stage::Image {
        let latest = watch.lock().ok().and_then(|latest| latest.clone());
        if let Some(summary) = latest {
            imaging_progress(&mut progress, &summary);
        }
        return progress;
    }
    let Some(medium) = medium else {
        return progress;
    };
    if stage == Stage::Copy
        && let Ok(c) = crate::catalog::report::content(catalog.pool(), medium).await
    {
        progress.bytes_copied = Some(c.copied_bytes);
    }
    if let Ok((live, deleted)) = crate::catalog::report::accounting(catalog.pool(), medium).await {
        // Deleted files are copied (recovered) in the same stage: progress counts both.
        let a = live.plus(&deleted);
        let files = a.copied + a.failed + a.pending;
        progress.entries = Some(a.entries);
        progress.files_copied = Some(a.copied);
        progress.errors = Some(a.failed);
        if stage == Stage::Copy && files > 0 {
            let percent = (a.copied + a.failed) * 100 / files;
            progress.percent = i32::try_from(percent).ok();
            progress.summary = format!(
                "copying: {} of {files} files ({percent}%)",
                a.copied + a.failed
            );
        } else if stage == Stage::Enumerate && a.entries > 0 {
            progress.summary = format!("{} entries loaded", a.entries);
        }
    }
    progress
}

/// Imaging progress from a rescue summary: bytes rescued and bad, the share rescued.
fn imaging_progress(progress: &mut Progress, summary: &crate::imaging::mapfile::RescueSummary) {
    let rescued = i64::try_from(summary.rescued).unwrap_or(i64::MAX);
    let bad = i64::try_from(summary.bad).unwrap_or(i64::MAX);
    progress.bytes_rescued = Some(rescued);
    progress.bytes_bad = Some(bad);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a percentage, 0 to 100, truncated"
    )]
    let percent = summary.percent() as i32;
    progress.percent = Some(percent);
    progress.summary = format!("imaging: {}", rescue_figures(summary));
}

/// ddrescue's figures for people: share and bytes rescued, bad, left to retry.
fn rescue_figures(summary: &crate::imaging::mapfile::RescueSummary) -> String {
    format!(
        "{:.2}% rescued ({} of {} bytes), {} bytes bad, {} bytes to retry",
        summary.percent(),
        summary.rescued,
        summary.total,
        summary.bad,
        summary.non_tried + summary.non_trimmed + summary.non_scraped,
    )
}

fn error(class: ErrorClass, message: impl Into<String>) -> JobError {
    JobError {
        class,
        message: bounded(message.into()),
    }
}

/// The job's error for a pipeline failure: its class, and whether the stop came from the
/// agent's shutdown (`Interrupted`: retried at once) or the job's deletion (`Cancelled`).
fn job_error(context: &Context, failure: &PipelineError) -> JobError {
    let class = match failure.class() {
        Class::Permanent => ErrorClass::Permanent,
        Class::Transient => ErrorClass::Transient,
        Class::Interrupted if context.shutdown.is_cancelled() => ErrorClass::Interrupted,
        Class::Interrupted => ErrorClass::Cancelled,
    };
    let message = match class {
        ErrorClass::Interrupted => {
            "the agent shut down; the medium was released and the stage continues in a new job"
                .to_owned()
        }
        ErrorClass::Cancelled => {
            "cancelled; the medium was released and the stage can continue later".to_owned()
        }
        _ => crate::error_chain(failure),
    };
    error(class, message)
}

/// The pipeline's options for this job: the Medium's imaging options as `ntt image` takes
/// them (the mapfile as admitted), and `force` as the controller confirmed it.
fn options(context: &Context, job: &MediumJob, target: Target) -> IngestOptions {
    let imaging = &job.spec.imaging;
    IngestOptions {
        image: ImageOptions {
            name: Some(catalog_name(job)),
            description: job.spec.description.clone(),
            profile: imaging.profile,
            limits: PassLimits {
                retries: imaging.retries,
                stall_timeout: imaging.stall_timeout_seconds.map(Duration::from_secs),
                max_pass_duration: imaging.max_pass_seconds.map(Duration::from_secs),
            },
            sector_size: imaging.sector_size,
            buffered: imaging.buffered_reads,
            mapfile: None,
            watch: None,
        },
        target,
        enumerate: EnumerateOptions {
            ignore: job.spec.ignore.patterns.clone(),
            ignore_preset: job.spec.ignore.preset.clone(),
            sort_memory_mib: context.sort_memory_mib,
            force: job.spec.force,
            ..EnumerateOptions::default()
        },
        copy: CopyOptions {
            workers: context.workers,
            force: job.spec.force,
            ..CopyOptions::default()
        },
        verify_sample: 100,
    }
}

/// Runs the stage of `job` through the pipeline (or purges its medium).
async fn run_stage(
    context: &Context,
    job: &MediumJob,
    watch: &RescueWatch,
    cancel: &CancellationToken,
) -> Result<JobResult, JobError> {
    match job.spec.stage {
        Stage::Purge => purge(context, job).await,
        Stage::Image => image(context, job, watch, cancel).await,
        Stage::Enumerate => advance(context, job, Target::Enumerated, cancel).await,
        Stage::Copy => advance(context, job, Target::Copied, cancel).await,
        Stage::Verify => verify(context, job, cancel).await,
    }
}

/// The most wrong blobs a verify job names in its result (the CRD's limit).
const BAD_LISTED: i64 = 20;

/// Verification: the medium's blobs not found right since the job's `staleBefore`, least
/// recently verified first, within its budget; the result says what is wrong now (also what
/// an earlier job or another medium's verification found) and whether the medium is covered.
async fn verify(
    context: &Context,
    job: &MediumJob,
    cancel: &CancellationToken,
) -> Result<JobResult, JobError> {
    use crate::catalog::report;
    use crate::pipeline::verify::{Budget, VerifyScope};
    let catalog = &context.catalog;
    let fail = |failure: PipelineError| job_error(context, &failure);
    let Some(options) = &job.spec.verify else {
        return Err(error(
            ErrorClass::Permanent,
            "a verify job without verify options (staleBefore, budgetSeconds)",
        ));
    };
    if job.spec.medium_hash.is_none() {
        return Err(error(
            ErrorClass::Permanent,
            "a verify job must name the medium's hash",
        ));
    }
    let Some(medium) = medium_of(catalog, job, None).await else {
        return Err(error(
            ErrorClass::Permanent,
            format!(
                "the medium {} (hash {}) is not in the catalog",
                catalog_name(job),
                job.spec.medium_hash.as_deref().unwrap_or_default()
            ),
        ));
    };
    let stale = options.stale_before.0;
    let stale_before = chrono::DateTime::from_timestamp(
        stale.as_second(),
        u32::try_from(stale.subsec_nanosecond()).unwrap_or(0),
    );
    let budget = Duration::from_secs(u64::try_from(options.budget_seconds).unwrap_or(1).max(1));
    let run = pipeline::verify::verify(
        catalog,
        &context.host,
        VerifyScope {
            medium: Some(&medium),
            sample: None,
            budget: Some(Budget::Time(budget)),
            stale_before,
            jobs: context.workers,
            orphans: false,
            images: false,
        },
    );
    // Stopped between pages or in one: every page recorded before stays recorded.
    let found = tokio::select! {
        found = run => found.map_err(fail)?,
        () = cancel.cancelled() => return Err(fail(PipelineError::Interrupted)),
    };
    let pool = catalog.pool();
    let (bad_total, bad) = report::bad_blobs(pool, medium.id, BAD_LISTED)
        .await
        .map_err(|e| fail(e.into()))?;
    let verified_at = report::medium_verified_at(pool, medium.id)
        .await
        .map_err(|e| fail(e.into()))?
        .and_then(|at| {
            let nanos = i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0);
            k8s_openapi::jiff::Timestamp::new(at.timestamp(), nanos).ok()
        })
        .map(Time);
    let summary = format!(
        "{} blob(s) re-hashed ({} bytes); {} wrong{}",
        found.checked,
        found.bytes,
        bad_total,
        if found.complete {
            "; the medium is covered"
        } else {
            "; the budget ran out, the next job goes on"
        }
    );
    Ok(JobResult {
        medium_hash: Some(medium.hash.clone()),
        health: None,
        summary,
        verification: Some(ntt_crds::VerifyResult {
            checked: i64::try_from(found.checked).unwrap_or(i64::MAX),
            bytes: i64::try_from(found.bytes).unwrap_or(i64::MAX),
            complete: found.complete,
            verified_at,
            bad_total,
            bad: bad
                .into_iter()
                .map(|blob| ntt_crds::BadBlob {
                    blake3: hex::encode(&blob.id),
                    outcome: blob.outcome,
                    media: blob.media,
                })
                .collect(),
        }),
    })
}

/// Purge: only the medium whose hash the `Medium` recorded, never one found by name.
async fn purge(context: &Context, job: &MediumJob) -> Result<JobResult, JobError> {
    let Some(hash) = job.spec.medium_hash.as_deref() else {
        return Ok(JobResult {
            summary: "nothing to purge: the Medium recorded no medium hash (it was never imaged)"
                .to_owned(),
            ..JobResult::default()
        });
    };
    let hash: MediumHash = hash
        .parse()
        .map_err(|e| error(ErrorClass::Permanent, format!("the job's medium hash: {e}")))?;
    let purged = pipeline::purge::purge(&context.catalog, &context.host, &hash)
        .await
        .map_err(|failure| job_error(context, &failure))?;
    Ok(JobResult {
        medium_hash: Some(hash.to_string()),
        health: None,
        verification: None,
        summary: if purged.found {
            format!(
                "catalog rows and {} image file(s) removed; blobs kept",
                purged.files.len()
            )
        } else {
            "nothing to purge: the medium is not in the catalog".to_owned()
        },
    })
}

/// Imaging: the only stage that reads the source.
async fn image(
    context: &Context,
    job: &MediumJob,
    watch: &RescueWatch,
    cancel: &CancellationToken,
) -> Result<JobResult, JobError> {
    use super::admit::Declared;
    let (declared, path) = match job.spec.source.kind() {
        Some(SourceKind::Device(p)) => (Declared::Device, PathBuf::from(p)),
        Some(SourceKind::Image(p)) => (Declared::Image, PathBuf::from(p)),
        Some(SourceKind::Directory(p)) => (Declared::Directory, PathBuf::from(p)),
        None => return Err(error(ErrorClass::Permanent, "the job has no single source")),
    };
    // Only what the admin allowed, resolved once: what was checked is what is read.
    let host = &context.host;
    let own = [
        host.data_dir.clone(),
        host.store.clone(),
        host.lock_dir.clone(),
        host.volumes.mount_root.clone(),
    ];
    let refused = |refusal: super::admit::Refusal| {
        tracing::warn!(job = %job.name_any(), rule = refusal.rule, "{refusal}");
        error(ErrorClass::Permanent, refusal.to_string())
    };
    let source = super::admit::admit(&context.allow, &own, declared, &path).map_err(refused)?;
    let mut options = options(context, job, Target::Imaged);
    // A mapfile given with an image is read like the image: only below the allowed roots.
    if let Some(mapfile) = &job.spec.imaging.mapfile {
        let admitted = super::admit::admit(
            &context.allow,
            &own,
            super::admit::Declared::Image,
            mapfile.as_ref(),
        )
        .map_err(refused)?;
        options.image.mapfile = Some(admitted);
    }
    options.image.watch = Some(watch.clone());
    let (medium, image) = pipeline::ingest::image_stage(
        &context.catalog,
        &context.host,
        &source,
        &options.image,
        cancel,
    )
    .await
    .map_err(|failure| job_error(context, &failure))?;
    let health = medium.health.map(|h| format!("{h:?}").to_lowercase());
    let summary = match (&image, &health) {
        (None, _) => "registered (directory)".to_owned(),
        (Some(_), Some(health)) => format!("imaged, health {health}"),
        (Some(_), None) => "registered (image file)".to_owned(),
    };
    Ok(JobResult {
        medium_hash: Some(medium.hash.clone()),
        health,
        summary,
        verification: None,
    })
}

/// The stages after imaging, from the recorded image (the drive may be gone).
async fn advance(
    context: &Context,
    job: &MediumJob,
    target: Target,
    cancel: &CancellationToken,
) -> Result<JobResult, JobError> {
    let catalog = &context.catalog;
    let fail = |failure: PipelineError| job_error(context, &failure);
    let Some(medium) = medium_of(catalog, job, None).await else {
        return Err(error(
            ErrorClass::Permanent,
            format!(
                "the medium {} is not in the catalog (hash {}): it must be imaged first",
                catalog_name(job),
                job.spec.medium_hash.as_deref().unwrap_or("not recorded")
            ),
        ));
    };
    let options = options(context, job, target);
    pipeline::ingest::advance(catalog, &context.host, &medium, &options, cancel)
        .await
        .map_err(|failure| match failure {
            // The standalone advice (`--force`) in the Medium's terms.
            PipelineError::HealthFailed { medium: name } => error(
                ErrorClass::Permanent,
                format!(
                    "medium {name} has health `failed` (less than half of it could be \
                     rescued): its filesystems are mostly unreadable and mounting them can hang \
                     or mislead; image it again with spec.imaging.profile: Thorough, or set \
                     spec.force: {} (its medium hash) to mount anyway",
                    medium.hash
                ),
            ),
            other => fail(other),
        })?;
    if cancel.is_cancelled() {
        return Err(fail(PipelineError::Interrupted));
    }
    let report = pipeline::report::report(catalog, &medium)
        .await
        .map_err(fail)?;
    let a = &report.accounting;
    let summary = if target == Target::Copied {
        format!(
            "{} entries: {} copied, {} excluded, {} failed, {} not files",
            a.entries, a.copied, a.excluded, a.failed, a.not_a_file
        )
    } else {
        format!("{} entries loaded, {} excluded", a.entries, a.excluded)
    };
    Ok(JobResult {
        medium_hash: Some(medium.hash.clone()),
        health: report.health,
        summary,
        verification: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_to_what_the_status_accepts() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(3000);
        let cut = bounded(long);
        assert!(
            cut.len() <= MESSAGE_MAX && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }
}
