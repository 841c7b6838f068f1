//! The reconcile shell: observe a Medium and its jobs, ask `plan`, carry the plan out.
//!
//! Rules: every write has a timeout; the status and lost-job marks are server-side applies
//! under the controller's field manager; a job that already exists counts as created; a write
//! that finds its object gone is not an error (the next reconcile sees the new state). The
//! order is the plan's: finalizer, failed and released jobs, deletions, creation, status,
//! events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use ntt_crds::condition::{
    AGENT_FINALIZER, FIELD_MANAGER_CONTROLLER, FINALIZER, MEDIUM_UID_LABEL, VERIFY_ANNOTATION,
};
use ntt_crds::{JobState, Medium, MediumJob};
use serde_json::json;

use crate::metrics::Metrics;
use crate::plan::{self, AgentFacts, Facts, FinalizerAction, Plan, Settings};

/// Each API call gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A settled Medium is looked at again this often anyway.
const RESYNC: Duration = Duration::from_mins(5);

/// What a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// The plan's settings.
    pub settings: Settings,
    /// Records events on Media.
    pub recorder: Recorder,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where the agents' Leases are (the release namespace).
    pub lease_namespace: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("{action} failed for medium {medium}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The Medium.
        medium: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{action} timed out for medium {medium}")]
    Timeout {
        /// What was being done.
        action: &'static str,
        /// The Medium.
        medium: String,
    },
    /// The Medium has no namespace (the API server always sets one).
    #[error("medium {0} has no namespace")]
    NoNamespace(String),
}

impl ReconcileError {
    /// A label for metrics and logs.
    pub const fn category(&self) -> &'static str {
        match self {
            Self::Api { .. } => "api",
            Self::Timeout { .. } => "timeout",
            Self::NoNamespace(_) => "invalid",
        }
    }
}

async fn call<T>(
    action: &'static str,
    medium: &str,
    future: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Option<T>, ReconcileError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(Some(value)),
        // Gone already: the next reconcile sees the state as it is.
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Ok(None),
        Ok(Err(source)) => Err(ReconcileError::Api {
            action,
            medium: medium.to_owned(),
            source,
        }),
        Err(_) => Err(ReconcileError::Timeout {
            action,
            medium: medium.to_owned(),
        }),
    }
}

/// Reconciles one Medium.
pub async fn reconcile(medium: Arc<Medium>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = medium.name_any();
    let namespace = medium
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(name.clone()))?;
    ctx.metrics.reconciled();
    let media: Api<Medium> = Api::namespaced(ctx.client.clone(), &namespace);
    let jobs_api: Api<MediumJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = medium.uid().unwrap_or_default();
    let listed = call(
        "list jobs",
        &name,
        jobs_api.list(&ListParams::default().labels(&format!("{MEDIUM_UID_LABEL}={uid}"))),
    )
    .await?
    .map(|l| l.items)
    .unwrap_or_default();
    let agent = agent_of(&ctx, &medium.spec.node_name, &name).await?;
    let plan = plan::plan(
        Facts {
            medium: &medium,
            jobs: &listed,
            agent: agent.as_ref(),
            now: Timestamp::now(),
        },
        &ctx.settings,
    );
    carry_out(&ctx, &medium, &media, &jobs_api, &plan).await?;
    ctx.metrics.observe_phase(&uid, plan.status.phase);
    let verification = plan.status.verification.as_ref();
    ctx.metrics.observe_verification(
        &namespace,
        &name,
        verification.filter(|_| plan.finalizer != FinalizerAction::Remove),
    );
    for job in &listed {
        let state = job.status.as_ref().map(|s| s.state).unwrap_or_default();
        ctx.metrics
            .observe_job(&job.uid().unwrap_or_default(), state);
    }
    Ok(plan.requeue.map_or_else(
        || Action::requeue(RESYNC),
        |after| Action::requeue(after.clamp(Duration::from_millis(200), RESYNC)),
    ))
}

/// What the agent of `node` says of itself in its Lease (`None`: no Lease).
async fn agent_of(
    ctx: &Context,
    node: &str,
    medium: &str,
) -> Result<Option<AgentFacts>, ReconcileError> {
    use k8s_openapi::api::coordination::v1::Lease;
    use ntt_crds::condition::{MAX_JOBS_ANNOTATION, RUNNING_JOBS_ANNOTATION, agent_lease_name};
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.lease_namespace);
    let Some(lease) = call(
        "read the agent's Lease",
        medium,
        leases.get_opt(&agent_lease_name(node)),
    )
    .await?
    .flatten() else {
        return Ok(None);
    };
    let number = |key: &str| {
        lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(|v| v.parse::<u32>().ok())
    };
    let spec = lease.spec.clone().unwrap_or_default();
    Ok(spec.renew_time.map(|renewed| AgentFacts {
        identity: spec.holder_identity.clone().unwrap_or_default(),
        renewed: renewed.0,
        valid_for: Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(30)).unwrap_or(30),
        ),
        running: number(RUNNING_JOBS_ANNOTATION).unwrap_or(0),
        max_jobs: number(MAX_JOBS_ANNOTATION).unwrap_or(1),
    }))
}

async fn carry_out(
    ctx: &Context,
    medium: &Medium,
    media: &Api<Medium>,
    jobs: &Api<MediumJob>,
    plan: &Plan,
) -> Result<(), ReconcileError> {
    let name = medium.name_any();
    if plan.finalizer == FinalizerAction::Add {
        let patch = ntt_crds::patch::add_finalizer(medium, FINALIZER);
        call(
            "add finalizer",
            &name,
            media.patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
        )
        .await?;
        // The status and jobs follow on the next reconcile (the patch triggers one).
        return Ok(());
    }
    carry_out_jobs(&name, jobs, plan).await?;
    // Before the status that takes the verification's end in: a reconcile that stops between
    // the two asks again (the same value changes nothing).
    ask_to_verify(ctx, &name, plan).await;
    if medium.status.as_ref() != Some(&plan.status) {
        let patch = ntt_crds::patch::status_apply::<Medium>(&plan.status);
        call(
            "write status",
            &name,
            media.patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER_CONTROLLER).force(),
                &Patch::Apply(patch),
            ),
        )
        .await?;
    }
    if plan.finalizer == FinalizerAction::Remove {
        let patch = ntt_crds::patch::remove_finalizer(medium, FINALIZER);
        call(
            "remove finalizer",
            &name,
            media.patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
        )
        .await?;
    }
    publish_events(ctx, medium, plan).await;
    Ok(())
}

/// Asks the other Media holding a blob found wrong to verify now (their verify annotation);
/// best effort: a Medium gone, or in a namespace this controller may not write, is logged.
async fn ask_to_verify(ctx: &Context, name: &str, plan: &Plan) {
    for request in &plan.verify_requests {
        let media: Api<Medium> = Api::namespaced(ctx.client.clone(), &request.namespace);
        let patch = json!({"metadata": {"annotations": {VERIFY_ANNOTATION: request.value}}});
        let patched = tokio::time::timeout(
            CALL_TIMEOUT,
            media.patch(
                &request.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await;
        match patched {
            Ok(Ok(_)) => {
                tracing::info!(medium = %name, other = %format!("{}/{}", request.namespace, request.name), "asked a medium sharing a wrong blob to verify");
            }
            Ok(Err(error)) => {
                tracing::warn!(medium = %name, other = %format!("{}/{}", request.namespace, request.name), %error, "cannot ask a medium sharing a wrong blob to verify");
            }
            Err(_) => {
                tracing::warn!(medium = %name, other = %format!("{}/{}", request.namespace, request.name), "asking a medium to verify timed out");
            }
        }
    }
}

/// Records the plan's events; best effort (a lost event must not stop the reconcile).
async fn publish_events(ctx: &Context, medium: &Medium, plan: &Plan) {
    let name = medium.name_any();
    let reference = medium.object_ref(&());
    for intent in &plan.events {
        let event = Event {
            type_: if intent.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: intent.reason.to_owned(),
            note: Some(intent.note.chars().take(1000).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        match tokio::time::timeout(CALL_TIMEOUT, ctx.recorder.publish(&event, &reference)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(medium = %name, %error, "cannot record an event"),
            Err(_) => tracing::warn!(medium = %name, "recording an event timed out"),
        }
    }
}

/// The plan's job changes: lost jobs failed, released, deleted, the new one created.
async fn carry_out_jobs(
    name: &str,
    jobs: &Api<MediumJob>,
    plan: &Plan,
) -> Result<(), ReconcileError> {
    if let Some(lost) = &plan.fail {
        let patch = ntt_crds::patch::status_apply::<MediumJob>(&json!({
            "state": JobState::Failed,
            "error": lost.error,
            "finishedAt": lost.at,
        }));
        call(
            "fail lost job",
            name,
            jobs.patch_status(
                &lost.name,
                &PatchParams::apply(FIELD_MANAGER_CONTROLLER).force(),
                &Patch::Apply(patch),
            ),
        )
        .await?;
    }
    for job in &plan.release {
        let current = call("get job", name, jobs.get(job)).await?;
        if let Some(current) = current {
            let patch = ntt_crds::patch::remove_finalizer(&current, AGENT_FINALIZER);
            call(
                "release job",
                name,
                jobs.patch(job, &PatchParams::default(), &Patch::Merge(patch)),
            )
            .await?;
        }
    }
    for job in &plan.delete {
        call(
            "delete job",
            name,
            jobs.delete(job, &kube::api::DeleteParams::background()),
        )
        .await?;
    }
    if let Some(job) = &plan.create {
        // Created already (names are deterministic): the next reconcile sees it.
        let create = async {
            match jobs.create(&PostParams::default(), job).await {
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                other => other.map(Some),
            }
        };
        call("create job", name, create).await?;
    }
    Ok(())
}

/// After a failed reconcile: log, count, try again after a short delay.
#[expect(
    clippy::needless_pass_by_value,
    reason = "kube's Controller::run fixes this signature"
)]
pub fn error_policy(medium: Arc<Medium>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    tracing::warn!(medium = %medium.name_any(), category = error.category(), error = %error, source = ?std::error::Error::source(error), "reconcile failed");
    ctx.metrics.failed(error.category());
    Action::requeue(Duration::from_secs(5))
}
