//! The node agent (`ntt agent`, the `DaemonSet`): it watches the `MediumJobs` of its node,
//! claims them, runs each stage through [`crate::pipeline`], heartbeats with progress into the
//! job's status, and treats deletion of a job as cancellation.
//!
//! ```text
//!   job watch ─▶ claim::decide (pure) ─▶ claim (finalizer under resourceVersion) ─▶ job::run
//!                                                                                  │ pipeline stage
//!                                                                                  │ heartbeats
//!                                                                                  └ final status, release
//! ```
//!
//! Rules:
//! - A claim is a finalizer added under the job's read `resourceVersion`: of two agents, one
//!   gets 409 and leaves the job alone. The agent's finalizer stays until the medium is released
//!   (mounts gone, ddrescue stopped), so deleting a running job waits for the release.
//! - At most one job per medium runs at a time, and at most `max_jobs` on the node
//!   ([`claim::decide`]).
//! - Every stage acts on the catalog's medium with the hash the job carries (recorded by the
//!   `Medium` after imaging); imaging names a new medium `<namespace>/<name>`, unique in the
//!   cluster. Only imaging touches the source; later stages read the image, so a drive may be
//!   undocked once its `Medium` is `Imaged`.
//! - Every status write of a job carries all the fields the agent owns (server-side apply
//!   drops the fields a manager stops sending): the heartbeat too.
//! - A shutdown (SIGTERM: an upgrade, a drain) ends running stages as `Interrupted`, which the
//!   controller retries at once without counting an attempt; a deleted job ends `Cancelled`.
//! - The job watch retries with backoff; if it ends, the agent exits with an error (its pod
//!   restarts) rather than spin.
//! - Before it claims a job, the agent checks that the store and the data directory still hold
//!   this catalog's marker (an archive disk unmounted under a running agent leaves empty
//!   directories): if not, it claims nothing and exits with the reason.
//! - At start-up, jobs of this node that an earlier agent was running or had claimed are failed
//!   and released (that agent is gone: one agent per node, and this one runs nothing yet, even
//!   if it has the same name after a container restart), and stale loop devices under the
//!   data directory are detached.

pub mod admit;
mod claim;
mod job;
mod metrics;
pub mod origin;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use ntt_crds::condition::{AGENT_FINALIZER, FIELD_MANAGER_AGENT};
use ntt_crds::{ErrorClass, JobError, JobState, MediumJob};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::pipeline::Host;

pub use claim::{Decision, JobFacts, RunningFacts, decide};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// What Media may make this agent read.
    pub allow: admit::Allowlist,
    /// The node this agent runs on (its jobs have `spec.nodeName` equal to it).
    pub node: String,
    /// This agent's identity in job status (the pod name).
    pub identity: String,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Jobs run at once on this node.
    pub max_jobs: usize,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Copy workers per job.
    pub workers: usize,
    /// MiB of rows an enumeration may hold to send them in key order.
    pub sort_memory_mib: usize,
    /// Address of `/metrics` and `/healthz` (empty: none).
    pub metrics_addr: String,
    /// Where the agent announces itself with its node's Lease (`ntt-agent-<node>`), read by
    /// the controller to tell why a job waits; none: no Lease.
    pub lease_namespace: Option<String>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No Kubernetes client could be made.
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")]
    Client(#[source] kube::Error),
    /// The metrics address could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An API call failed.
    #[error("{what}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// An API call took longer than [`CALL_TIMEOUT`].
    #[error("{what}: no answer from the API server within {}s", CALL_TIMEOUT.as_secs())]
    Timeout {
        /// What was being done.
        what: &'static str,
    },
    /// The job watch ended (it retries errors with backoff, so this is a bug or a shutdown of
    /// the client): the agent exits so that its pod restarts.
    #[error("the watch of this node's jobs ended")]
    WatchEnded,
    /// The store or the data directory is no longer this catalog's (its disk went away): the
    /// agent stops claiming and exits, and its pod's `ntt init` refuses until it is back.
    #[error("stopping: a root this agent writes to is not usable")]
    Root(#[source] crate::pipeline::PipelineError),
}

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// One API call with [`CALL_TIMEOUT`].
async fn call<T>(
    what: &'static str,
    future: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, AgentError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(AgentError::Api { what, source }),
        Err(_) => Err(AgentError::Timeout { what }),
    }
}

/// Writes the job's status (the agent's fields) by server-side apply, never forced: once the
/// controller has decided a job's end (failed it as lost), the agent's write conflicts (409)
/// instead of overwriting that decision; see [`is_conflict`].
async fn write_status(
    api: &Api<MediumJob>,
    job: &str,
    status: serde_json::Value,
) -> Result<(), AgentError> {
    let patch = ntt_crds::patch::status_apply::<MediumJob>(&status);
    call(
        "write the job's status",
        api.patch_status(
            job,
            &PatchParams::apply(FIELD_MANAGER_AGENT),
            &Patch::Apply(patch),
        ),
    )
    .await?;
    Ok(())
}

/// Whether a write failed because someone else (the controller) owns what it would change.
fn is_conflict(error: &AgentError) -> bool {
    matches!(
        error,
        AgentError::Api {
            source: kube::Error::Api(status),
            ..
        } if status.code == 409
    )
}

/// Removes the agent's finalizer (the medium is released).
async fn release(api: &Api<MediumJob>, job: &str) -> Result<(), AgentError> {
    let Some(current) = call("read the job", api.get_opt(job)).await? else {
        return Ok(());
    };
    let patch = ntt_crds::patch::remove_finalizer(&current, AGENT_FINALIZER);
    call(
        "release the job",
        api.patch(job, &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await?;
    Ok(())
}

fn api_for(client: &kube::Client, job: &MediumJob) -> Api<MediumJob> {
    Api::namespaced(client.clone(), &job.namespace().unwrap_or_default())
}

/// Runs the agent until `cancel`, then cancels its running jobs (they end `Interrupted`) and
/// waits for them to release their media.
pub async fn run(
    catalog: Catalog,
    host: Host,
    config: AgentConfig,
    cancel: &CancellationToken,
) -> Result<(), AgentError> {
    let client = tokio::select! {
        client = kube::Client::try_default() => client.map_err(AgentError::Client)?,
        () = cancel.cancelled() => return Ok(()),
    };
    run_with_client(client, catalog, host, config, cancel).await
}

/// [`run`] with a client made elsewhere.
pub async fn run_with_client(
    client: kube::Client,
    catalog: Catalog,
    host: Host,
    config: AgentConfig,
    cancel: &CancellationToken,
) -> Result<(), AgentError> {
    let metrics = Arc::new(metrics::AgentMetrics::default());
    if !config.metrics_addr.is_empty() {
        let listener = tokio::net::TcpListener::bind(&config.metrics_addr)
            .await
            .map_err(|source| AgentError::Listen {
                addr: config.metrics_addr.clone(),
                source,
            })?;
        tokio::spawn(metrics::serve(listener, metrics.clone(), cancel.clone()));
    }
    let context = Arc::new(job::Context::new(catalog, host, &config, metrics, cancel));
    let jobs: Api<MediumJob> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("spec.nodeName={}", config.node);
    tokio::select! {
        swept = sweep(&client, &jobs, &selector, &config.identity, &context) => swept?,
        () = cancel.cancelled() => return Ok(()),
    }
    let (reader, mut changed, watch_task) = watch_jobs(jobs, &selector);
    tracing::info!(node = %config.node, identity = %config.identity, "agent running");
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let announcing = config.lease_namespace.as_ref().map(|namespace| {
        tokio::spawn(announce(
            Api::namespaced(client.clone(), namespace),
            config.clone(),
            busy.clone(),
            cancel.clone(),
        ))
    });
    let mut running: HashMap<String, Running> = HashMap::new();
    let ended = loop {
        context.metrics.looped();
        running.retain(|_, r| !r.task.is_finished());
        busy.store(running.len(), std::sync::atomic::Ordering::Relaxed);
        let snapshot: Vec<Arc<MediumJob>> = reader.state();
        let decision = decide(
            &snapshot.iter().map(|j| facts(j)).collect::<Vec<_>>(),
            &running
                .iter()
                .map(|(uid, r)| RunningFacts {
                    uid: uid.clone(),
                    namespace: r.namespace.clone(),
                    medium: r.medium.clone(),
                    cancelled: r.cancel.is_cancelled(),
                })
                .collect::<Vec<_>>(),
            &config.identity,
            config.max_jobs,
        );
        for uid in &decision.cancel {
            if let Some(job) = running.get(uid) {
                tracing::info!(job = %job.name, "job deleted or taken away: cancelling");
                job.cancel.cancel();
            }
        }
        if !decision.claim.is_empty()
            && let Err(error) = roots_still_ours(&context).await
        {
            break Err(error);
        }
        for uid in &decision.claim {
            let Some(job) = snapshot.iter().find(|j| j.uid().as_deref() == Some(uid)) else {
                continue;
            };
            let started = tokio::select! {
                started = start(&client, job, &context, &config, cancel) => started,
                () = cancel.cancelled() => None,
            };
            if let Some(started) = started {
                running.insert(uid.clone(), started);
            }
        }
        match next_wake(&mut changed, cancel).await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    tracing::info!("stopping: interrupting running jobs and releasing their media");
    for job in running.values() {
        job.cancel.cancel();
    }
    for (_, job) in running {
        let _ = job.task.await;
    }
    watch_task.abort();
    if let Some(announcing) = announcing {
        announcing.abort();
    }
    ended
}

/// Whether the store and the data directory still hold this catalog's marker.
async fn roots_still_ours(context: &job::Context) -> Result<(), AgentError> {
    use crate::roots::RootKind;
    crate::pipeline::roots::check(
        &context.catalog,
        &context.host,
        &[RootKind::Store, RootKind::Data],
    )
    .await
    .map_err(AgentError::Root)
}

/// Announces this agent on its node until `cancel`: the Lease `ntt-agent-<node>`, renewed at
/// every heartbeat, valid for three, with the jobs it runs and may run. The controller reads it
/// to tell a job that waits for a dead or missing agent from one queued behind the limit.
async fn announce(
    leases: Api<k8s_openapi::api::coordination::v1::Lease>,
    config: AgentConfig,
    busy: Arc<std::sync::atomic::AtomicUsize>,
    cancel: CancellationToken,
) {
    use ntt_crds::condition::{MAX_JOBS_ANNOTATION, RUNNING_JOBS_ANNOTATION, agent_lease_name};
    let name = agent_lease_name(&config.node);
    let every = config.heartbeat.max(Duration::from_secs(1));
    let valid = i32::try_from(every.as_secs().saturating_mul(3).max(10)).unwrap_or(i32::MAX);
    loop {
        let running = busy.load(std::sync::atomic::Ordering::Relaxed);
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "annotations": {
                    RUNNING_JOBS_ANNOTATION: running.to_string(),
                    MAX_JOBS_ANNOTATION: config.max_jobs.max(1).to_string(),
                },
            },
            "spec": {
                "holderIdentity": config.identity,
                "leaseDurationSeconds": valid,
                "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                    k8s_openapi::jiff::Timestamp::now()
                ),
            },
        });
        if let Err(error) = call(
            "renew the agent's Lease",
            leases.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER_AGENT).force(),
                &Patch::Apply(lease),
            ),
        )
        .await
        {
            tracing::warn!(%error, lease = %name, "cannot announce the agent");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Claims `job` and starts running it; `None` when another agent was faster.
async fn start(
    client: &kube::Client,
    job: &MediumJob,
    context: &Arc<job::Context>,
    config: &AgentConfig,
    cancel: &CancellationToken,
) -> Option<Running> {
    let (api, started_at) = claim(client, job, &config.identity).await?;
    let name = job.name_any();
    tracing::info!(job = %name, stage = job.spec.stage.as_str(), medium = %job.spec.medium, "claimed");
    let token = cancel.child_token();
    let task = tokio::spawn(job::run(
        context.clone(),
        api,
        job.clone(),
        job::Claim {
            identity: config.identity.clone(),
            started_at,
        },
        config.heartbeat.max(Duration::from_secs(1)),
        token.clone(),
    ));
    Some(Running {
        name,
        namespace: job.namespace().unwrap_or_default(),
        medium: job.spec.medium.clone(),
        cancel: token,
        task,
    })
}

/// Waits for the next reason to look at the jobs again: a change the watch saw, or a second
/// passing. `Ok(false)` when the agent stops; [`AgentError::WatchEnded`] when the watch is
/// gone (its sender dropped), rather than taking the closed channel for a change and looping
/// at full speed.
async fn next_wake(
    changed: &mut tokio::sync::watch::Receiver<()>,
    cancel: &CancellationToken,
) -> Result<bool, AgentError> {
    tokio::select! {
        () = cancel.cancelled() => Ok(false),
        watched = changed.changed() => watched.map(|()| true).map_err(|_| AgentError::WatchEnded),
        () = tokio::time::sleep(Duration::from_secs(1)) => Ok(true),
    }
}

/// What the claim decision needs of a job.
fn facts(job: &MediumJob) -> JobFacts {
    JobFacts {
        uid: job.uid().unwrap_or_default(),
        name: job.name_any(),
        namespace: job.namespace().unwrap_or_default(),
        medium: job.spec.medium.clone(),
        state: job.status.as_ref().map(|s| s.state).unwrap_or_default(),
        deleting: job.metadata.deletion_timestamp.is_some(),
        claimed: job.finalizers().iter().any(|f| f == AGENT_FINALIZER),
        agent: job.status.as_ref().and_then(|s| s.agent.clone()),
        background: job.spec.stage == ntt_crds::Stage::Verify,
    }
}

/// Claims a waiting job: the agent's finalizer under the read `resourceVersion` (another
/// agent's claim makes this one fail with 409), then `Running`. `None` when not claimed.
async fn claim(
    client: &kube::Client,
    job: &MediumJob,
    identity: &str,
) -> Option<(
    Api<MediumJob>,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
)> {
    let api = api_for(client, job);
    let name = job.name_any();
    let claimed_at = now();
    let patch = ntt_crds::patch::add_finalizer_annotated(
        job,
        AGENT_FINALIZER,
        ntt_crds::condition::CLAIMED_AT_ANNOTATION,
        &claimed_at.0.to_string(),
    );
    match call(
        "claim the job",
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    {
        Ok(_) => {}
        Err(AgentError::Api {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 409 || status.code == 404 => return None,
        Err(error) => {
            tracing::warn!(job = %name, %error, "cannot claim the job");
            return None;
        }
    }
    let started_at = claimed_at;
    let running = job::running_status(identity, &started_at, &job::starting_progress(job));
    if let Err(error) = write_status(&api, &name, running).await {
        tracing::warn!(job = %name, %error, "cannot mark the job running; releasing it");
        let _ = release(&api, &name).await;
        return None;
    }
    Some((api, started_at))
}

/// A reflector of this node's jobs, and a signal that fires on every change (and closes when
/// the watch ends).
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
        tracing::error!("the job watch ended");
    });
    (reader, changed, watch_task)
}

/// A job this agent runs.
struct Running {
    name: String,
    namespace: String,
    medium: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Fails the jobs of this node that an earlier agent was running (it is gone, whatever its
/// name), releases them, and detaches loop devices of deleted images under the data directory.
async fn sweep(
    client: &kube::Client,
    jobs: &Api<MediumJob>,
    selector: &str,
    identity: &str,
    context: &job::Context,
) -> Result<(), AgentError> {
    let listed = call(
        "list this node's jobs",
        jobs.list(&kube::api::ListParams::default().fields(selector)),
    )
    .await?;
    // This process runs nothing yet: every job of the node that is running, or claimed and
    // not yet running, was left by an agent that is gone, a previous life of this one (a
    // container restart keeps the pod name) included.
    for job in listed.items {
        let status = job.status.clone().unwrap_or_default();
        let claimed = job.finalizers().iter().any(|f| f == AGENT_FINALIZER);
        let left =
            status.state == JobState::Running || (status.state == JobState::Pending && claimed);
        if !left {
            continue;
        }
        let status = &status;
        let api = api_for(client, &job);
        let name = job.name_any();
        tracing::warn!(job = %name, agent = ?status.agent, "failing a job its agent left behind");
        let failed = json!({"state": JobState::Failed, "agent": identity, "finishedAt": now(),
                            "error": JobError { class: ErrorClass::Transient, message: format!("the agent running it ({}) stopped; the job is retried", status.agent.as_deref().unwrap_or("?")) }});
        match write_status(&api, &name, failed).await {
            Ok(()) => {}
            // The controller failed it as lost already.
            Err(error) if is_conflict(&error) => {}
            Err(error) => return Err(error),
        }
        release(&api, &name).await?;
    }
    match crate::volume::sweep::sweep_deleted_images(&context.host.data_dir) {
        Ok(detached) if !detached.is_empty() => {
            tracing::warn!(count = detached.len(), "detached stale loop devices");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot sweep stale loop devices"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_that_ends_stops_the_agent_instead_of_spinning() {
        let cancel = CancellationToken::new();
        let (sender, mut changed) = tokio::sync::watch::channel(());
        sender.send_replace(());
        assert!(next_wake(&mut changed, &cancel).await.unwrap(), "a change");
        drop(sender);
        let started = std::time::Instant::now();
        assert!(matches!(
            next_wake(&mut changed, &cancel).await,
            Err(AgentError::WatchEnded)
        ));
        assert!(started.elapsed() < Duration::from_millis(500), "at once");
        let (_sender, mut changed) = tokio::sync::watch::channel(());
        cancel.cancel();
        assert!(!next_wake(&mut changed, &cancel).await.unwrap(), "a stop");
    }

    #[tokio::test]
    async fn without_changes_the_agent_looks_again_after_a_second() {
        let cancel = CancellationToken::new();
        let (_sender, mut changed) = tokio::sync::watch::channel(());
        let started = std::time::Instant::now();
        assert!(next_wake(&mut changed, &cancel).await.unwrap());
        assert!(started.elapsed() >= Duration::from_millis(990));
    }
}
