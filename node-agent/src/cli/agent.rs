//! `ntt agent`: the node agent (`DaemonSet` mode). It watches the `MediumJobs` of its node, claims
//! them, runs each stage with the code `ntt ingest` runs, heartbeats with progress into the
//! job's status, and treats deletion of a job as cancellation.
//!
//! Rules:
//! - A claim is a finalizer added under the job's read `resourceVersion`: of two agents, one
//!   gets 409 and leaves the job alone. The agent's finalizer stays until the medium is released
//!   (mounts gone, ddrescue stopped), so deleting a running job waits for the release.
//! - At most one job per medium runs at a time, and at most `--max-jobs` on the node.
//! - A job is cancelled when it is deleted, disappears, or is marked failed by someone else
//!   (the controller found its heartbeat stale).
//! - At start-up, jobs of this node that another agent was running are failed (that agent is
//!   gone: one agent per node), and stale loop devices under the data directory are detached.
//! - The job status is written by server-side apply as field manager `ntt-agent`.

mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use ntt_crds::condition::{AGENT_FINALIZER, FIELD_MANAGER_AGENT};
use ntt_crds::{ErrorClass, JobError, JobResult, JobState, MediumJob, Progress, SourceKind, Stage};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::copy::StoreArgs;
use super::image::{HostArgs, ImageArgs};
use super::ingest::{IngestArgs, Target};
use crate::catalog::Catalog;
use crate::volume::access::Settings;

/// Options of `ntt agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The node this agent runs on (its jobs have `spec.nodeName` equal to it)
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// This agent's identity in job status [default: the host name]
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch only this namespace [default: all]
    #[arg(long, env = "NTT_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Jobs run at once on this node (never two of one medium)
    #[arg(long, env = "NTT_AGENT_MAX_JOBS", default_value_t = 1)]
    pub max_jobs: usize,
    /// Seconds between heartbeats (the controller's timeout must be several times longer)
    #[arg(long, env = "NTT_HEARTBEAT_INTERVAL", default_value_t = 10)]
    pub heartbeat: u64,
    /// Copy workers per job
    #[arg(long, env = crate::env::WORKERS, default_value_t = 4)]
    pub workers: usize,
    /// MiB of rows an enumeration may hold to send them in key order
    #[arg(long, value_name = "MIB", env = crate::env::SORT_MEMORY, default_value_t = crate::catalog::load::DEFAULT_SORT_MEMORY_MIB)]
    pub sort_memory: usize,
    /// Address of /metrics and /healthz (empty: none)
    #[arg(long, env = "NTT_METRICS_ADDR", default_value = "0.0.0.0:8081")]
    pub metrics_addr: String,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// What the agent needs to run a stage.
struct Stages {
    metrics: Arc<metrics::AgentMetrics>,
    catalog: Catalog,
    host: HostArgs,
    settings: Settings,
    store: StoreArgs,
    workers: usize,
    sort_memory: usize,
}

/// Writes the job's status (the agent's fields) by server-side apply.
async fn write_status(
    api: &Api<MediumJob>,
    job: &str,
    status: serde_json::Value,
) -> anyhow::Result<()> {
    let patch =
        json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "MediumJob", "status": status});
    tokio::time::timeout(
        CALL_TIMEOUT,
        api.patch_status(
            job,
            &PatchParams::apply(FIELD_MANAGER_AGENT).force(),
            &Patch::Apply(patch),
        ),
    )
    .await??;
    Ok(())
}

/// Removes the agent's finalizer (the medium is released).
async fn release(api: &Api<MediumJob>, job: &str) -> anyhow::Result<()> {
    let Some(current) = tokio::time::timeout(CALL_TIMEOUT, api.get_opt(job)).await?? else {
        return Ok(());
    };
    let finalizers: Vec<String> = current
        .finalizers()
        .iter()
        .filter(|f| *f != AGENT_FINALIZER)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": current.resource_version()}});
    tokio::time::timeout(
        CALL_TIMEOUT,
        api.patch(job, &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await??;
    Ok(())
}

fn api_for(client: &kube::Client, job: &MediumJob) -> Api<MediumJob> {
    Api::namespaced(client.clone(), &job.namespace().unwrap_or_default())
}

/// The agent's identity: `--identity` (the pod name) or the host name.
fn identity_of(args: &AgentArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "ntt-agent".to_owned())
    })
}

/// The metrics, served on `addr` (unless empty) until `cancel`.
async fn start_metrics(
    addr: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<Arc<metrics::AgentMetrics>> {
    use anyhow::Context;
    let agent_metrics = Arc::new(metrics::AgentMetrics::default());
    if !addr.is_empty() {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tokio::spawn(metrics::serve(
            listener,
            agent_metrics.clone(),
            cancel.clone(),
        ));
    }
    Ok(agent_metrics)
}

/// Runs the agent until `cancel`.
pub(super) async fn run_agent(
    catalog: Catalog,
    host: &HostArgs,
    settings: Settings,
    store: &StoreArgs,
    args: AgentArgs,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let identity = identity_of(&args);
    let agent_metrics = start_metrics(&args.metrics_addr, cancel).await?;
    let stages = Arc::new(Stages {
        metrics: agent_metrics,
        catalog,
        host: host.clone(),
        settings,
        store: store.clone(),
        workers: args.workers.max(1),
        sort_memory: args.sort_memory,
    });
    let jobs: Api<MediumJob> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("spec.nodeName={}", args.node);
    sweep(&client, &jobs, &selector, &identity, &stages).await?;
    let (reader, mut changed, watch_task) = watch_jobs(jobs.clone(), &selector);
    tracing::info!(node = %args.node, %identity, "agent running");
    let mut running: HashMap<String, Running> = HashMap::new();
    let heartbeat = Duration::from_secs(args.heartbeat.max(1));
    loop {
        let snapshot: Vec<Arc<MediumJob>> = reader.state();
        running.retain(|_, r| !r.task.is_finished());
        cancel_taken(&running, &snapshot, &identity);
        // Claim what waits, within the limits.
        for job in &snapshot {
            if running.len() >= args.max_jobs.max(1) {
                break;
            }
            let state = job.status.as_ref().map(|s| s.state).unwrap_or_default();
            let busy_medium = running.values().any(|r| r.medium == job.spec.medium)
                || snapshot.iter().any(|other| {
                    other.spec.medium == job.spec.medium
                        && other.namespace() == job.namespace()
                        && other
                            .status
                            .as_ref()
                            .is_some_and(|s| s.state == JobState::Running)
                });
            if state != JobState::Pending
                || job.metadata.deletion_timestamp.is_some()
                || job.finalizers().iter().any(|f| f == AGENT_FINALIZER)
                || busy_medium
            {
                continue;
            }
            let Some(api) = claim(&client, job, &identity).await else {
                continue;
            };
            let name = job.name_any();
            tracing::info!(job = %name, stage = job.spec.stage.as_str(), medium = %job.spec.medium, "claimed");
            let token = cancel.child_token();
            let task = tokio::spawn(run_job(
                stages.clone(),
                api,
                (**job).clone(),
                identity.clone(),
                heartbeat,
                token.clone(),
            ));
            running.insert(
                job.uid().unwrap_or_default(),
                Running {
                    name,
                    medium: job.spec.medium.clone(),
                    cancel: token,
                    task,
                },
            );
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = changed.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    tracing::info!("stopping: cancelling running jobs and releasing their media");
    for job in running.values() {
        job.cancel.cancel();
    }
    for (_, job) in running {
        let _ = job.task.await;
    }
    watch_task.abort();
    Ok(())
}

/// Claims a waiting job: the agent's finalizer under the read `resourceVersion` (another
/// agent's claim makes this one fail with 409), then `Running`. `None` when not claimed.
async fn claim(client: &kube::Client, job: &MediumJob, identity: &str) -> Option<Api<MediumJob>> {
    let api = api_for(client, job);
    let name = job.name_any();
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(AGENT_FINALIZER.to_owned());
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}});
    match tokio::time::timeout(
        CALL_TIMEOUT,
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(kube::Error::Api(status))) if status.code == 409 || status.code == 404 => {
            return None;
        }
        Ok(Err(error)) => {
            tracing::warn!(job = %name, %error, "cannot claim the job");
            return None;
        }
        Err(_) => return None,
    }
    let progress = Progress {
        stage: Some(job.spec.stage),
        phase: Some(job.spec.stage.phase()),
        summary: format!("{} started", job.spec.stage.as_str()),
        ..Progress::default()
    };
    let started = json!({"state": JobState::Running, "agent": identity, "startedAt": now(), "heartbeatAt": now(), "progress": progress});
    if let Err(error) = write_status(&api, &name, started).await {
        tracing::warn!(job = %name, %error, "cannot mark the job running; releasing it");
        let _ = release(&api, &name).await;
        return None;
    }
    Some(api)
}

/// Cancels the running jobs that were deleted, are gone, or were failed or taken by someone
/// else (the controller found their heartbeat stale).
fn cancel_taken(running: &HashMap<String, Running>, snapshot: &[Arc<MediumJob>], identity: &str) {
    for (uid, job) in running {
        let current = snapshot
            .iter()
            .find(|j| j.uid().as_deref() == Some(uid.as_str()));
        let taken = current.is_none_or(|j| {
            j.metadata.deletion_timestamp.is_some()
                || j.status.as_ref().is_some_and(|s| {
                    s.state == JobState::Failed || s.agent.as_deref().is_some_and(|a| a != identity)
                })
        });
        if taken && !job.cancel.is_cancelled() {
            tracing::info!(job = %job.name, "job deleted or taken away: cancelling");
            job.cancel.cancel();
        }
    }
}

/// A reflector of this node's jobs, and a signal that fires on every change.
fn watch_jobs(
    jobs: Api<MediumJob>,
    selector: &str,
) -> (
    reflector::Store<MediumJob>,
    tokio::sync::watch::Receiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let (reader, writer) = reflector::store::<MediumJob>();
    let (changed_tx, changed) = tokio::sync::watch::channel(());
    let stream = reflector(
        writer,
        watcher(jobs, watcher::Config::default().fields(selector)),
    )
    .default_backoff()
    .touched_objects();
    let watch_task = tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::warn!(%error, "watching jobs");
            }
            changed_tx.send_replace(());
        }
    });
    (reader, changed, watch_task)
}

/// A job this agent runs.
struct Running {
    name: String,
    medium: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Fails the jobs of this node that another agent was running (it is gone), and detaches
/// loop devices of deleted images under the data directory.
async fn sweep(
    client: &kube::Client,
    jobs: &Api<MediumJob>,
    selector: &str,
    identity: &str,
    stages: &Stages,
) -> anyhow::Result<()> {
    let listed = tokio::time::timeout(
        CALL_TIMEOUT,
        jobs.list(&kube::api::ListParams::default().fields(selector)),
    )
    .await??;
    for job in listed.items {
        let Some(status) = &job.status else { continue };
        if status.state != JobState::Running || status.agent.as_deref() == Some(identity) {
            continue;
        }
        let api = api_for(client, &job);
        let name = job.name_any();
        tracing::warn!(job = %name, agent = ?status.agent, "failing a job its agent left behind");
        let failed = json!({"state": JobState::Failed, "agent": identity, "finishedAt": now(),
                            "error": JobError { class: ErrorClass::Transient, message: format!("the agent running it ({}) stopped; the job is retried", status.agent.as_deref().unwrap_or("?")) }});
        write_status(&api, &name, failed).await?;
        release(&api, &name).await?;
    }
    match crate::volume::sweep::sweep_deleted_images(&stages.host.data_dir) {
        Ok(detached) if !detached.is_empty() => {
            tracing::warn!(count = detached.len(), "detached stale loop devices");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot sweep stale loop devices"),
    }
    Ok(())
}

/// Runs one claimed job to its end: the stage, heartbeats meanwhile, the final status, the
/// release.
async fn run_job(
    stages: Arc<Stages>,
    api: Api<MediumJob>,
    job: MediumJob,
    identity: String,
    heartbeat: Duration,
    cancel: CancellationToken,
) {
    let name = job.name_any();
    let beat = {
        let api = api.clone();
        let name = name.clone();
        let stages = stages.clone();
        let medium = job.spec.medium.clone();
        let stage = job.spec.stage;
        tokio::spawn(async move {
            let mut last: Option<(i64, i64)> = None;
            loop {
                tokio::time::sleep(heartbeat).await;
                let progress = progress(&stages.catalog, &medium, stage).await;
                let (files, bytes) = match stage {
                    Stage::Copy => (
                        progress.files_copied.unwrap_or(0),
                        progress.bytes_copied.unwrap_or(0),
                    ),
                    Stage::Enumerate => (progress.entries.unwrap_or(0), 0),
                    Stage::Image | Stage::Purge => (0, 0),
                };
                if let Some((f, b)) = last {
                    stages.metrics.processed(
                        stage.as_str(),
                        u64::try_from(files - f).unwrap_or(0),
                        u64::try_from(bytes - b).unwrap_or(0),
                    );
                }
                last = Some((files, bytes));
                if let Err(error) = write_status(
                    &api,
                    &name,
                    json!({"heartbeatAt": now(), "progress": progress}),
                )
                .await
                {
                    tracing::warn!(job = %name, %error, "heartbeat failed");
                }
            }
        })
    };
    stages.metrics.started();
    let outcome = run_stage(&stages, &job, &cancel).await;
    beat.abort();
    match &outcome {
        Ok(_) => stages
            .metrics
            .finished(job.spec.stage.as_str(), "succeeded", None),
        Err(e) => stages.metrics.finished(
            job.spec.stage.as_str(),
            "failed",
            Some(&format!("{:?}", e.class).to_lowercase()),
        ),
    }
    let status = match outcome {
        Ok(result) => {
            // The final progress says how the stage ended.
            let mut done = progress(&stages.catalog, &job.spec.medium, job.spec.stage).await;
            done.summary.clone_from(&result.summary);
            if job.spec.stage == Stage::Copy {
                done.percent = Some(100);
            }
            json!({"state": JobState::Succeeded, "agent": identity, "finishedAt": now(), "heartbeatAt": now(),
                   "result": result, "progress": done})
        }
        Err(error) => {
            tracing::warn!(job = %name, class = ?error.class, message = %error.message, "job failed");
            json!({"state": JobState::Failed, "agent": identity, "finishedAt": now(), "heartbeatAt": now(), "error": error})
        }
    };
    // The final word: retried a few times, since losing it would make the job look lost.
    for attempt in 0..5 {
        match write_status(&api, &name, status.clone()).await {
            Ok(()) => break,
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

/// The stage's progress from the catalog.
async fn progress(catalog: &Catalog, medium: &str, stage: Stage) -> Progress {
    let mut progress = Progress {
        stage: Some(stage),
        phase: Some(stage.phase()),
        summary: format!("{} running", stage.as_str()),
        ..Progress::default()
    };
    let Ok(record) = crate::catalog::media::resolve_medium(catalog.pool(), medium).await else {
        return progress;
    };
    if stage == Stage::Copy
        && let Ok(c) = crate::catalog::report::content(catalog.pool(), record.id).await
    {
        progress.bytes_copied = Some(c.copied_bytes);
    }
    if let Ok(a) = crate::catalog::report::accounting(catalog.pool(), record.id).await {
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

fn error(class: ErrorClass, message: impl Into<String>) -> JobError {
    JobError {
        class,
        message: message.into(),
    }
}

/// Runs the stage of `job` with the code `ntt ingest` runs (or purges the medium).
async fn run_stage(
    stages: &Stages,
    job: &MediumJob,
    cancel: &CancellationToken,
) -> Result<JobResult, JobError> {
    if job.spec.stage == Stage::Purge {
        return purge(stages, &job.spec.medium).await;
    }
    let source = match job.spec.source.kind() {
        Some(SourceKind::Device(p) | SourceKind::Image(p) | SourceKind::Directory(p)) => {
            PathBuf::from(p)
        }
        None => return Err(error(ErrorClass::Permanent, "the job has no single source")),
    };
    if !source.exists() {
        return Err(error(
            ErrorClass::Permanent,
            format!("{} does not exist on this node", source.display()),
        ));
    }
    let target = match job.spec.stage {
        Stage::Image => Target::Imaged,
        Stage::Enumerate => Target::Enumerated,
        Stage::Copy | Stage::Purge => Target::Copied,
    };
    let profile = match job.spec.imaging.profile {
        ntt_crds::ImagingProfile::Quick => crate::imaging::passes::Profile::Quick,
        ntt_crds::ImagingProfile::Default => crate::imaging::passes::Profile::Default,
        ntt_crds::ImagingProfile::Thorough => crate::imaging::passes::Profile::Thorough,
    };
    let args = IngestArgs {
        image: ImageArgs {
            source,
            name: Some(job.spec.medium.clone()),
            description: job.spec.description.clone(),
            profile,
            retries: None,
            stall_timeout: None,
            max_pass_time: None,
            sector_size: None,
            buffered: false,
            mapfile: None,
            json: true,
        },
        target,
        ignore_preset: job.spec.ignore.preset.clone(),
        ignore: job.spec.ignore.patterns.clone(),
        workers: stages.workers,
        threads: 4,
        sort_memory: stages.sort_memory,
        verify_sample: 100,
        force: false,
    };
    let mut out = Vec::new();
    let finished = super::ingest::run_ingest(
        &stages.catalog,
        &stages.host,
        &stages.settings,
        &stages.store,
        args,
        cancel,
        &mut out,
    )
    .await
    .map_err(|e| error(ErrorClass::Transient, super::error_chain(&e)))?;
    if !finished || cancel.is_cancelled() {
        return Err(error(
            ErrorClass::Cancelled,
            "cancelled; the medium was released and the stage can continue later",
        ));
    }
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    let a = &report["accounting"];
    let health = report["health"].as_str().map(str::to_owned);
    let summary = match job.spec.stage {
        Stage::Image => format!("imaged, health {}", health.as_deref().unwrap_or("unknown")),
        Stage::Enumerate => format!(
            "{} entries loaded, {} excluded",
            a["entries"], a["excluded"]
        ),
        Stage::Copy | Stage::Purge => format!(
            "{} entries: {} copied, {} excluded, {} failed, {} not files",
            a["entries"], a["copied"], a["excluded"], a["failed"], a["not_a_file"]
        ),
    };
    Ok(JobResult {
        medium_hash: report["hash"].as_str().map(str::to_owned),
        health,
        summary,
    })
}

/// Removes a medium's catalog rows and the image NTT wrote for it; stored blobs stay (other
/// media may share them), and an image file the user registered is never touched.
async fn purge(stages: &Stages, medium: &str) -> Result<JobResult, JobError> {
    let pool = stages.catalog.pool();
    let record = match crate::catalog::media::resolve_medium(pool, medium).await {
        Ok(record) => record,
        Err(crate::catalog::CatalogError::MediumNotFound { .. }) => {
            return Ok(JobResult {
                summary: "nothing to purge: the medium is not in the catalog".to_owned(),
                ..JobResult::default()
            });
        }
        Err(e) => return Err(error(ErrorClass::Transient, e.to_string())),
    };
    let ours = |path: &Option<String>| {
        path.as_deref()
            .map(Path::new)
            .filter(|p| p.starts_with(&stages.host.data_dir))
            .map(Path::to_path_buf)
    };
    let files: Vec<PathBuf> = [ours(&record.image_path), ours(&record.mapfile_path)]
        .into_iter()
        .flatten()
        .collect();
    crate::catalog::partitions::drop_medium_partitions(pool, record.id)
        .await
        .map_err(|e| error(ErrorClass::Transient, e.to_string()))?;
    crate::catalog::media::delete_medium(pool, record.id)
        .await
        .map_err(|e| error(ErrorClass::Transient, e.to_string()))?;
    for file in &files {
        if let Err(e) = fs_err::remove_file(file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(error(ErrorClass::Transient, e.to_string()));
        }
    }
    Ok(JobResult {
        medium_hash: Some(record.hash.clone()),
        health: None,
        summary: format!(
            "catalog rows and {} image file(s) removed; blobs kept",
            files.len()
        ),
    })
}
