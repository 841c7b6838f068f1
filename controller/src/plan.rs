//! The controller's decisions, as a pure function: a Medium, the MediumJobs it owns and the
//! time in; its status, the jobs to create, fail or delete, events and when to look again out.
//!
//! Rules:
//! - Level-triggered: the plan depends only on what is observed now, never on why the
//!   reconcile ran; planning the same facts twice gives the same plan, and a settled Medium
//!   plans no writes (timestamps are carried over unless something changed).
//! - One job at a time per Medium: the job of the first stage up to the target that has not
//!   succeeded. Jobs of other stages that still run are deleted (the target was lowered).
//! - Failures: transient and lost jobs are retried after an exponential backoff, up to
//!   `max_attempts`; permanent ones and exhausted retries stop until the value of the retry
//!   annotation changes. The pause annotation stops new jobs only.
//! - Deletion: running jobs are deleted (the agent cancels and releases), a purge job runs if
//!   one was armed at deletion time (`kubectl ntt purge`: the purge annotation holds the
//!   Medium's uid), then the finalizer goes. Nothing else removes evidence.

mod verification;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use ntt_crds::condition::{self, event, reason};
use ntt_crds::{
    ErrorClass, Health, JobError, JobState, Medium, MediumJob, MediumJobSpec, MediumStatus, Phase,
    SourceKind, Stage,
};

/// Tunables of the plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A running job whose heartbeat is older than this is failed as lost.
    pub heartbeat_timeout: Duration,
    /// The first retry waits this long; each further one twice as long.
    pub backoff_base: Duration,
    /// Retries never wait longer than this.
    pub backoff_max: Duration,
    /// Attempts of one stage before a transient failure becomes terminal.
    pub max_attempts: i32,
    /// A job no agent claimed for this long gets a Warning event (once).
    pub unclaimed_warning: Duration,
    /// Periodic verification of copied media (`None`: none is scheduled).
    pub verification: Option<VerifySettings>,
}

pub use verification::{VerifyRequest, VerifySettings};

impl Default for Settings {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_mins(5),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_hours(1),
            max_attempts: 5,
            unclaimed_warning: Duration::from_mins(5),
            verification: Some(VerifySettings::default()),
        }
    }
}

/// What to do with the controller's finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerAction {
    /// Leave it as it is.
    Keep,
    /// Add it (a Medium without it could be deleted while a job runs).
    Add,
    /// Remove it: everything the system holds for the Medium is released.
    Remove,
}

/// An event to record on the Medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIntent {
    /// A warning (failures) rather than a normal event.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened, for people.
    pub note: String,
}

/// A job the agent stopped answering for: to be marked failed with this error.
#[derive(Debug, Clone, PartialEq)]
pub struct LostJob {
    /// The job's name.
    pub name: String,
    /// The error to record on it.
    pub error: JobError,
    /// When it was found lost (its `finishedAt`; the backoff counts from here).
    pub at: Time,
}

/// What the reconcile should carry out, in this order: finalizer, jobs to fail, to delete, to
/// create, then the status and the events.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The finalizer.
    pub finalizer: FinalizerAction,
    /// The status the Medium should have (written only when it differs).
    pub status: MediumStatus,
    /// A job to create.
    pub create: Option<MediumJob>,
    /// A running job whose agent was lost.
    pub fail: Option<LostJob>,
    /// Jobs to delete (names).
    pub delete: Vec<String>,
    /// Jobs being deleted whose agent finalizer the controller removes: they ended, or their
    /// agent stopped heartbeating (a dead agent can never release them).
    pub release: Vec<String>,
    /// Events to record.
    pub events: Vec<EventIntent>,
    /// Other Media to ask for a verification now (they hold a blob found wrong).
    pub verify_requests: Vec<VerifyRequest>,
    /// Reconcile again after this long even if nothing changes.
    pub requeue: Option<Duration>,
}

/// The facts a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The Medium.
    pub medium: &'a Medium,
    /// The MediumJobs it owns.
    pub jobs: &'a [MediumJob],
    /// The agent of the Medium's node, from its Lease (`None`: it never announced itself).
    pub agent: Option<&'a AgentFacts>,
    /// The time now.
    pub now: Timestamp,
}

/// What the agent of a node says of itself in its Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    /// Its identity (the pod name).
    pub identity: String,
    /// When it last renewed the Lease.
    pub renewed: Timestamp,
    /// How long a renewal holds.
    pub valid_for: Duration,
    /// Jobs it runs now.
    pub running: u32,
    /// Jobs it runs at most.
    pub max_jobs: u32,
}

/// Why a job that waits for an agent waits (a `Scheduled` reason and a message), and whether
/// it has waited so long that people should hear of it (pure).
fn waiting_for(
    job: &MediumJob,
    agent: Option<&AgentFacts>,
    node: &str,
    now: Timestamp,
    settings: &Settings,
) -> (&'static str, String, bool) {
    let waited = meta_time(job).map_or(Duration::ZERO, |t| {
        unsigned(now.duration_since(t.0).max(SignedDuration::ZERO))
    });
    let overdue = waited >= settings.unclaimed_warning;
    let (reason, message) = match agent {
        None => (
            reason::NO_AGENT,
            format!(
                "no ntt agent has announced itself on node {node}: is the agent DaemonSet scheduled there (nodeSelector, tolerations)?"
            ),
        ),
        Some(a) if now >= a.renewed + signed(a.valid_for) => (
            reason::AGENT_LOST,
            format!(
                "the agent on node {node} ({}) was last heard of at {}",
                a.identity, a.renewed
            ),
        ),
        Some(a) if a.running >= a.max_jobs => (
            reason::QUEUED,
            format!(
                "queued: the agent on node {node} runs {} job(s), its limit",
                a.running
            ),
        ),
        Some(a) => (
            reason::UNCLAIMED,
            format!(
                "the agent on node {node} ({}) has room and has not claimed it yet",
                a.identity
            ),
        ),
    };
    (reason, message, overdue)
}

/// What the jobs of one stage say.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StageState<'a> {
    /// No job yet.
    NoJob,
    /// The latest attempt's job is waiting for an agent or running.
    Active(&'a MediumJob),
    /// The latest attempt's job is being deleted.
    Terminating(&'a MediumJob),
    /// The latest attempt succeeded.
    Succeeded(&'a MediumJob),
    /// The latest attempt failed.
    Failed(&'a MediumJob),
}

fn job_state(job: &MediumJob) -> JobState {
    job.status.as_ref().map(|s| s.state).unwrap_or_default()
}

fn latest(jobs: &[MediumJob], stage: Stage) -> Option<&MediumJob> {
    jobs.iter()
        .filter(|j| j.spec.stage == stage)
        .max_by_key(|j| j.spec.attempt)
}

fn stage_state(jobs: &[MediumJob], stage: Stage) -> StageState<'_> {
    match latest(jobs, stage) {
        None => StageState::NoJob,
        Some(job) if job.metadata.deletion_timestamp.is_some() => StageState::Terminating(job),
        Some(job) => match job_state(job) {
            JobState::Pending | JobState::Running => StageState::Active(job),
            JobState::Succeeded => StageState::Succeeded(job),
            JobState::Failed => StageState::Failed(job),
        },
    }
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

fn unsigned(duration: SignedDuration) -> Duration {
    Duration::try_from(duration).unwrap_or(Duration::ZERO)
}

/// The backoff before attempt `attempts + 1`: base × 2^(attempts − 1), at most `max`.
pub fn backoff(settings: &Settings, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    settings
        .backoff_base
        .saturating_mul(1 << exponent)
        .min(settings.backoff_max)
}

/// The name of a job: `<medium>-<stage>-<attempt>`, shortened with the Medium's uid when the
/// Medium's name is long (object names are at most 253 characters).
pub fn job_name(medium: &Medium, stage: Stage, attempt: i32) -> String {
    let name = medium.metadata.name.as_deref().unwrap_or_default();
    let suffix = format!("-{}-{attempt}", stage.as_str());
    if name.len() + suffix.len() <= 253 {
        return format!("{name}{suffix}");
    }
    let uid = medium.metadata.uid.as_deref().unwrap_or_default();
    let uid: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let keep = 253 - suffix.len() - uid.len() - 1;
    let mut cut = name.chars().take(keep).collect::<String>();
    while cut.ends_with(['-', '.']) {
        cut.pop();
    }
    format!("{cut}-{uid}{suffix}")
}

/// The job that runs `stage` of `medium`, attempt `attempt`: owned by the Medium (deleted with
/// it), labelled with its uid and stage, its spec a snapshot of the Medium's, with the catalog
/// hash and image profile the Medium's status records (`recorded`, as this plan writes it), and
/// `force` only where the Medium's `force` confirms that hash.
pub fn new_job(medium: &Medium, recorded: &MediumStatus, stage: Stage, attempt: i32) -> MediumJob {
    let medium_hash = recorded.medium_hash.clone();
    let uid = medium.metadata.uid.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (condition::MEDIUM_UID_LABEL.to_owned(), uid.clone()),
        (condition::STAGE_LABEL.to_owned(), stage.as_str().to_owned()),
    ]);
    let owner = OwnerReference {
        api_version: Medium::api_version(&()).into_owned(),
        kind: Medium::kind(&()).into_owned(),
        name: medium.metadata.name.clone().unwrap_or_default(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let spec = &medium.spec;
    MediumJob {
        metadata: ObjectMeta {
            name: Some(job_name(medium, stage, attempt)),
            namespace: medium.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: MediumJobSpec {
            medium: medium.metadata.name.clone().unwrap_or_default(),
            medium_hash,
            stage,
            node_name: spec.node_name.clone(),
            attempt,
            source: spec.source.clone(),
            target: spec.target,
            imaging: spec.imaging.clone(),
            ignore: spec.ignore.clone(),
            description: spec.description.clone(),
            force: spec.force_confirmed(recorded.medium_hash.as_deref()),
            image_profile: match stage {
                Stage::Enumerate | Stage::Copy => recorded.imaged_profile,
                Stage::Image | Stage::Verify | Stage::Purge => None,
            },
            verify: None,
        },
        status: None,
    }
}

/// How a `Scheduled` message starts once the job has waited past the warning time.
const UNCLAIMED_WARNING: &str = "not claimed in time";

/// Builds the status step by step, carrying timestamps over from the observed one.
struct StatusBuilder<'a> {
    old: &'a MediumStatus,
    new: MediumStatus,
    now: Timestamp,
    generation: Option<i64>,
}

impl StatusBuilder<'_> {
    /// Sets a condition; its transition time changes only when its status does.
    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        let since = match self.old.condition(type_) {
            Some(old) if old.status == status => old.last_transition_time.clone(),
            _ => Time(self.now),
        };
        self.new.conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: self.generation,
            last_transition_time: since,
        });
    }

    /// Sets the status reason.
    fn reason(&mut self, reason: &str) {
        self.new.reason = Some(reason.to_owned());
    }
}

/// The facts, reduced once to what the decisions read.
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is a yes-or-no fact the decisions ask, not a state machine in disguise"
)]
struct Observed<'a> {
    medium: &'a Medium,
    jobs: &'a [MediumJob],
    agent: Option<&'a AgentFacts>,
    now: Timestamp,
    /// The status as observed.
    old: MediumStatus,
    deleting: bool,
    paused: bool,
    /// The retry annotation's value.
    retry_value: Option<String>,
    /// The retry annotation changed since the status last saw it.
    retry_requested: bool,
    /// What the latest succeeded jobs recorded: hash, health, the image's profile.
    recorded: Recorded,
    /// A device imaged with a weaker profile than the spec's: it is imaged again.
    profile_raised: bool,
    /// The pipeline stages up to the target.
    wanted: Vec<Stage>,
    /// The first wanted stage not done (none while deleting).
    next: Option<Stage>,
    /// A pipeline job still runs or is being deleted.
    jobs_cancelling: bool,
}

/// What the latest succeeded jobs recorded about the medium.
#[derive(Debug, Clone, Default)]
struct Recorded {
    medium_hash: Option<String>,
    health: Option<String>,
    imaged_profile: Option<ntt_crds::ImagingProfile>,
}

impl<'a> Observed<'a> {
    fn reduce(facts: Facts<'a>) -> Self {
        let medium = facts.medium;
        let meta = &medium.metadata;
        let old = medium.status.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let retry_value = annotations.get(condition::RETRY_ANNOTATION).cloned();
        let mut recorded = Recorded {
            medium_hash: old.medium_hash.clone(),
            health: old.health.clone(),
            imaged_profile: old.imaged_profile,
        };
        for stage in Stage::PIPELINE {
            if let StageState::Succeeded(job) = stage_state(facts.jobs, stage)
                && let Some(result) = job.status.as_ref().and_then(|s| s.result.as_ref())
            {
                if result.medium_hash.is_some() {
                    recorded.medium_hash.clone_from(&result.medium_hash);
                }
                if result.health.is_some() {
                    recorded.health.clone_from(&result.health);
                }
                if stage == Stage::Image && medium.spec.source.device.is_some() {
                    recorded.imaged_profile = Some(job.spec.imaging.profile);
                }
            }
        }
        let profile_raised = medium.spec.source.device.is_some()
            && recorded
                .imaged_profile
                .is_some_and(|p| p < medium.spec.imaging.profile);
        let mut observed = Self {
            medium,
            jobs: facts.jobs,
            agent: facts.agent,
            now: facts.now,
            deleting: meta.deletion_timestamp.is_some(),
            paused: annotations
                .get(condition::PAUSED_ANNOTATION)
                .is_some_and(|v| v == "true"),
            retry_requested: retry_value.is_some() && retry_value != old.retry_seen,
            retry_value,
            old,
            recorded,
            profile_raised,
            wanted: Stage::PIPELINE
                .into_iter()
                .filter(|s| s.completes().is_some_and(|t| t <= medium.spec.target))
                .collect(),
            next: None,
            jobs_cancelling: facts.jobs.iter().any(|j| {
                j.spec.stage != Stage::Purge
                    && (!job_state(j).is_finished() || j.metadata.deletion_timestamp.is_some())
            }),
        };
        if !observed.deleting {
            observed.next = observed.wanted.iter().copied().find(|s| !observed.done(*s));
        }
        observed
    }

    fn stage(&self, stage: Stage) -> StageState<'a> {
        stage_state(self.jobs, stage)
    }

    /// A stage is done when its latest job succeeded (on the current image), or when it has no
    /// job left and its condition says so. A later job of a done stage is a re-run.
    fn done(&self, stage: Stage) -> bool {
        match self.stage(stage) {
            StageState::Succeeded(_) if stage == Stage::Image => !self.profile_raised,
            StageState::Succeeded(job) => {
                match (job.spec.image_profile, self.recorded.imaged_profile) {
                    (Some(read), Some(image)) => read >= image,
                    _ => true,
                }
            }
            StageState::NoJob => {
                stage.condition().is_some_and(|c| self.old.is_true(c))
                    && !(stage == Stage::Image && self.profile_raised)
            }
            StageState::Active(_) | StageState::Terminating(_) | StageState::Failed(_) => false,
        }
    }

    /// Whether `job` is the latest attempt of its stage.
    fn is_latest(&self, job: &MediumJob) -> bool {
        latest(self.jobs, job.spec.stage).map(|j| j.spec.attempt) == Some(job.spec.attempt)
    }

    fn status(&self) -> StatusBuilder<'_> {
        let meta = &self.medium.metadata;
        let old = &self.old;
        StatusBuilder {
            old,
            new: MediumStatus {
                observed_generation: meta.generation,
                retry_seen: self.retry_value.clone().or_else(|| old.retry_seen.clone()),
                medium_hash: self.recorded.medium_hash.clone(),
                health: self.recorded.health.clone(),
                started_at: old.started_at.clone(),
                completed_at: old.completed_at.clone(),
                progress: old.progress.clone(),
                stage: old.stage,
                attempts: old.attempts,
                last_error: old.last_error.clone(),
                imaged_profile: self.recorded.imaged_profile,
                source: self.medium.spec.source.kind().map(|kind| match kind {
                    SourceKind::Device(p) | SourceKind::Image(p) | SourceKind::Directory(p) => {
                        p.to_owned()
                    }
                }),
                ..MediumStatus::default()
            },
            now: self.now,
            generation: meta.generation,
        }
    }
}

/// What the work step leaves for the aggregate conditions.
#[derive(Debug, Default)]
struct Outcome {
    /// A stage failed for good (`stalled` then holds its error).
    terminal: bool,
    /// Why no progress can be made without someone acting.
    stalled: Option<(&'static str, String)>,
}

/// Decides what to do about one Medium: the facts reduced once, then each step in turn.
pub fn plan(facts: Facts<'_>, settings: &Settings) -> Plan {
    let medium = facts.medium;
    let old = medium.status.clone().unwrap_or_default();
    let mut plan = Plan {
        finalizer: FinalizerAction::Keep,
        status: old,
        create: None,
        fail: None,
        delete: Vec::new(),
        release: Vec::new(),
        events: Vec::new(),
        verify_requests: Vec::new(),
        requeue: None,
    };
    let has_finalizer = medium
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == condition::FINALIZER));
    match (medium.metadata.deletion_timestamp.is_some(), has_finalizer) {
        // First things first: without the finalizer a deletion could overtake a running job.
        (false, false) => {
            plan.finalizer = FinalizerAction::Add;
            return plan;
        }
        (true, false) => return plan,
        (_, true) => {}
    }
    let seen = Observed::reduce(facts);
    let mut status = seen.status();
    plan.delete = superseded_jobs(&seen);
    plan.release = releasable_jobs(&seen, settings);
    stage_conditions(&seen, &mut status);
    undock(&seen, &mut status, &mut plan);
    unconfirmed_force(&seen, &status, &mut plan);
    let work = if seen.deleting {
        deletion(&seen, &mut status, &mut plan)
    } else {
        seen.next
    };
    let outcome = match work {
        None if !seen.deleting => {
            complete(&seen, &mut status, &mut plan);
            Outcome::default()
        }
        None => Outcome::default(),
        Some(stage) => stage_work(&seen, stage, &mut status, &mut plan, settings),
    };
    let fixity = if seen.deleting {
        status.new.verification.clone_from(&seen.old.verification);
        None
    } else {
        verification::verification(&seen, &mut status, &mut plan, settings)
    };
    aggregate_conditions(&seen, &outcome, &mut status);
    if seen.deleting {
        deletion_blocked(&seen, &outcome, work, &mut status, &plan);
    }
    degraded(&outcome, fixity, &mut status);
    if seen.old.phase != status.new.phase
        && !matches!(status.new.phase, Phase::Completed | Phase::Failed)
        && plan.events.is_empty()
    {
        // Phase changes are events too (Completed and failures have their own).
        plan.events.push(EventIntent {
            warning: false,
            reason: event::PHASE_CHANGED,
            note: format!("{:?} -> {:?}", seen.old.phase, status.new.phase),
        });
    }
    plan.status = status.new;
    plan
}

/// Jobs that run but are not the one wanted now (the target was lowered, a newer attempt
/// exists), and finished jobs a later attempt superseded: deleted.
fn superseded_jobs(seen: &Observed<'_>) -> Vec<String> {
    // With every stage done, a verification is the work of the moment.
    let current_stage = if seen.deleting {
        Some(Stage::Purge)
    } else {
        seen.next.or(Some(Stage::Verify))
    };
    seen.jobs
        .iter()
        .filter(|job| {
            let finished = job_state(job).is_finished();
            let active = !finished && job.metadata.deletion_timestamp.is_none();
            let is_current = Some(job.spec.stage) == current_stage && seen.is_latest(job);
            (active && !is_current) || (finished && !seen.is_latest(job))
        })
        .filter_map(|job| job.metadata.name.clone())
        .collect()
}

/// Jobs being deleted whose agent finalizer the controller removes: they ended, or their
/// agent stopped heartbeating (a dead agent can never release them).
fn releasable_jobs(seen: &Observed<'_>, settings: &Settings) -> Vec<String> {
    seen.jobs
        .iter()
        .filter(|job| {
            let held = job
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == condition::AGENT_FINALIZER));
            held && job.metadata.deletion_timestamp.is_some()
                && (job_state(job).is_finished() || heartbeat_stale(job, seen.now, settings))
        })
        .filter_map(|job| job.metadata.name.clone())
        .collect()
}

/// One condition per pipeline stage.
fn stage_conditions(seen: &Observed<'_>, status: &mut StatusBuilder<'_>) {
    for stage in Stage::PIPELINE {
        let Some(type_) = stage.condition() else {
            continue;
        };
        let state = seen.stage(stage);
        let (value, why) = if seen.done(stage) {
            (true, reason::SUCCEEDED)
        } else if !seen.wanted.contains(&stage) {
            (false, reason::NOT_REQUESTED)
        } else if Some(stage) == seen.next && matches!(state, StageState::Active(_)) {
            (false, reason::IN_PROGRESS)
        } else if stage == Stage::Image && seen.profile_raised {
            (false, reason::PROFILE_RAISED)
        } else if matches!(state, StageState::Succeeded(_)) {
            (false, reason::IMAGE_IMPROVED)
        } else {
            (false, reason::WAITING)
        };
        status.condition(type_, value, why, String::new());
    }
}

/// The drive: free once imaged, since every later stage reads the image.
fn undock(seen: &Observed<'_>, status: &mut StatusBuilder<'_>, plan: &mut Plan) {
    let device = seen.medium.spec.source.device.as_deref();
    let undockable = device.is_some() && seen.done(Stage::Image);
    let (why, message) = match (device, undockable) {
        (Some(_), true) => (
            reason::IMAGE_COMPLETE,
            "the image is complete and later stages read it: the drive may be undocked",
        ),
        (Some(_), false) => (
            reason::IMAGING,
            "imaging has not finished: keep the drive docked",
        ),
        (None, _) => (
            reason::NOT_A_DEVICE,
            "the source is read in place by every stage: keep it",
        ),
    };
    status.condition(condition::UNDOCKABLE, undockable, why, message.to_owned());
    if undockable && !seen.old.is_true(condition::UNDOCKABLE) {
        plan.events.push(EventIntent {
            warning: false,
            reason: event::MAY_UNDOCK,
            note: format!(
                "the image of {} is complete; the drive may be undocked",
                device.unwrap_or_default()
            ),
        });
    }
}

/// A force that names another medium than the recorded one forces nothing; said once per spec
/// change.
fn unconfirmed_force(seen: &Observed<'_>, status: &StatusBuilder<'_>, plan: &mut Plan) {
    let spec = &seen.medium.spec;
    let hash = status.new.medium_hash.as_deref();
    if spec.force.is_some()
        && !spec.force_confirmed(hash)
        && seen.old.observed_generation != seen.medium.metadata.generation
    {
        plan.events.push(EventIntent {
            warning: true,
            reason: reason::FORCE_NOT_CONFIRMED,
            note: format!(
                "spec.force is not the recorded medium hash ({}): volumes of a failed medium stay unmounted",
                hash.unwrap_or("none recorded yet")
            ),
        });
    }
}

/// A Medium being deleted: its jobs are cancelled first; then a purge runs only when armed at
/// deletion time (the annotation holds this Medium's uid; one copied from another Medium, or
/// written into a manifest, arms nothing); otherwise the finalizer goes and the evidence
/// stays. Returns the stage to work on (the purge) if any.
fn deletion(seen: &Observed<'_>, status: &mut StatusBuilder<'_>, plan: &mut Plan) -> Option<Stage> {
    let purge = seen
        .medium
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(condition::PURGE_ANNOTATION));
    let armed = seen.medium.purge_armed();
    if purge && !armed && seen.old.reason.as_deref() != Some(reason::PURGE_NOT_ARMED) {
        plan.events.push(EventIntent {
            warning: true,
            reason: reason::PURGE_NOT_ARMED,
            note: format!(
                "the {} annotation does not hold this Medium's uid: the evidence is retained (use kubectl ntt purge)",
                condition::PURGE_ANNOTATION
            ),
        });
    }
    status.new.phase = Phase::Deleting;
    if seen.jobs_cancelling {
        status.reason(reason::CANCELLING_JOBS);
        for job in seen.jobs {
            let active = !job_state(job).is_finished() && job.metadata.deletion_timestamp.is_none();
            if active
                && job.spec.stage != Stage::Purge
                && let Some(name) = &job.metadata.name
                && !plan.delete.contains(name)
            {
                plan.delete.push(name.clone());
            }
        }
        plan.requeue = Some(Duration::from_secs(10));
        None
    } else if armed {
        Some(Stage::Purge)
    } else {
        status.reason(if purge {
            reason::PURGE_NOT_ARMED
        } else {
            reason::RETAINED
        });
        plan.finalizer = FinalizerAction::Remove;
        plan.events.push(EventIntent {
            warning: false,
            reason: event::RELEASED,
            note:
                "no job holds the medium; its image, catalog rows and stored content are retained"
                    .to_owned(),
        });
        None
    }
}

/// Every stage up to the target is done.
fn complete(seen: &Observed<'_>, status: &mut StatusBuilder<'_>, plan: &mut Plan) {
    // The last stage's final progress (its job's end), not a heartbeat before it.
    if let Some(last) = seen.wanted.last()
        && let StageState::Succeeded(job) = seen.stage(*last)
        && let Some(progress) = job.status.as_ref().and_then(|s| s.progress.clone())
    {
        status.new.progress = Some(progress);
    }
    status.new.phase = Phase::Completed;
    status.reason(reason::COMPLETED);
    status.new.current_job = None;
    status.new.next_attempt_at = None;
    if seen.old.phase != Phase::Completed || status.new.completed_at.is_none() {
        status.new.completed_at = Some(Time(seen.now));
        plan.events.push(EventIntent {
            warning: false,
            reason: reason::COMPLETED,
            note: format!("every stage up to {:?} is done", seen.medium.spec.target),
        });
    }
}

/// The stage to work on: what its latest job says decides (one exhaustive match).
fn stage_work(
    seen: &Observed<'_>,
    stage: Stage,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    settings: &Settings,
) -> Outcome {
    if seen.old.stage != Some(stage) {
        status.new.stage = Some(stage);
        status.new.attempts = 0;
        status.new.last_error = None;
    }
    status.new.completed_at = None;
    let latest_job = seen.stage(stage);
    // An active job of this stage that the status does not name was created by a reconcile
    // whose status write was then refused or lost: its attempt is counted now (a failed one is
    // counted at least once below).
    if let StageState::Active(job) = latest_job
        && seen.old.current_job != job.metadata.name
    {
        status.new.attempts += 1;
    }
    match latest_job {
        StageState::NoJob => {
            start(seen, stage, status, plan, "");
            Outcome::default()
        }
        StageState::Terminating(job) => {
            status.new.phase = stage.phase();
            status.reason(reason::WAITING_FOR_CANCEL);
            status.new.current_job.clone_from(&job.metadata.name);
            plan.requeue = Some(Duration::from_secs(10));
            Outcome::default()
        }
        StageState::Active(job) => active_job(seen, stage, job, status, plan, settings),
        StageState::Succeeded(_) if stage == Stage::Purge => {
            status.new.current_job = None;
            plan.finalizer = FinalizerAction::Remove;
            status.reason(reason::PURGED);
            plan.events.push(EventIntent {
                warning: false,
                reason: reason::PURGED,
                note: "the image and the catalog rows were removed".to_owned(),
            });
            Outcome::default()
        }
        StageState::Succeeded(_) => {
            // A pipeline stage that succeeded on a weaker image (or is the image itself, made
            // with a weaker profile): it runs again.
            status.new.attempts = 0;
            let why = if stage == Stage::Image {
                " (a stronger imaging profile)"
            } else {
                " (the image was improved)"
            };
            start(seen, stage, status, plan, why);
            Outcome::default()
        }
        StageState::Failed(job) => failed_job(seen, stage, job, status, plan, settings),
    }
}

/// Creates the next attempt of `stage` (or, paused, says so and creates nothing).
fn start(
    seen: &Observed<'_>,
    stage: Stage,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    why: &str,
) {
    if seen.paused && !seen.deleting {
        status.new.phase = Phase::Paused;
        status.reason(reason::PAUSED);
        status.new.current_job = None;
        return;
    }
    let attempt = latest(seen.jobs, stage)
        .map_or(0, |j| j.spec.attempt)
        .max(0)
        + 1;
    let job = new_job(seen.medium, &status.new, stage, attempt);
    status.new.current_job.clone_from(&job.metadata.name);
    status.new.attempts += 1;
    status.new.phase = stage.phase();
    status.reason(reason::JOB_CREATED);
    status.new.next_attempt_at = None;
    if status.new.started_at.is_none() {
        status.new.started_at = Some(Time(seen.now));
    }
    plan.events.push(EventIntent {
        warning: false,
        reason: reason::JOB_CREATED,
        note: format!(
            "{} {} attempt {attempt} on node {}{why}",
            stage.as_str(),
            job.metadata.name.as_deref().unwrap_or_default(),
            seen.medium.spec.node_name
        ),
    });
    plan.create = Some(job);
}

/// A job waiting for an agent or running: its progress, whether it waits too long, whether
/// its agent was lost.
fn active_job(
    seen: &Observed<'_>,
    stage: Stage,
    job: &MediumJob,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    settings: &Settings,
) -> Outcome {
    let job_status = job.status.clone().unwrap_or_default();
    status.new.current_job.clone_from(&job.metadata.name);
    status.new.phase = job_status
        .progress
        .as_ref()
        .and_then(|p| p.phase)
        .unwrap_or_else(|| stage.phase());
    if job_status.progress.is_some() {
        status.new.progress.clone_from(&job_status.progress);
    }
    if status.new.started_at.is_none() {
        status.new.started_at = Some(Time(seen.now));
    }
    // A claimed job (an agent's finalizer on it) has a lost-agent deadline whatever its state
    // says: an agent can die between its claim and its first status write.
    let claimed = job
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == condition::AGENT_FINALIZER));
    if job_status.state == JobState::Pending && !claimed {
        return unclaimed_job(seen, job, status, plan, settings);
    }
    let agent = job_status.agent.as_deref().unwrap_or("?");
    status.condition(
        condition::SCHEDULED,
        true,
        reason::CLAIMED,
        format!("agent {agent} runs it"),
    );
    status.reason(reason::IN_PROGRESS);
    let seen_at = last_seen(job).unwrap_or(seen.now);
    let deadline = seen_at + signed(settings.heartbeat_timeout);
    if seen.now < deadline {
        plan.requeue = Some(unsigned(deadline.duration_since(seen.now)));
        return Outcome::default();
    }
    let message = format!(
        "no heartbeat from agent {agent} since {seen_at} (timeout {}s)",
        settings.heartbeat_timeout.as_secs()
    );
    status.reason(reason::JOB_LOST);
    plan.events.push(EventIntent {
        warning: true,
        reason: reason::JOB_LOST,
        note: format!(
            "{}: {message}",
            job.metadata.name.as_deref().unwrap_or_default()
        ),
    });
    plan.fail = Some(LostJob {
        name: job.metadata.name.clone().unwrap_or_default(),
        error: JobError {
            class: ErrorClass::Lost,
            message,
        },
        at: Time(seen.now),
    });
    Outcome::default()
}

/// A job no agent claimed yet: why it waits (`Scheduled`), a warning once it waited too long,
/// and stalled unless it only waits its turn.
fn unclaimed_job(
    seen: &Observed<'_>,
    job: &MediumJob,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    settings: &Settings,
) -> Outcome {
    let node = &seen.medium.spec.node_name;
    let (why, message, overdue) = waiting_for(job, seen.agent, node, seen.now, settings);
    status.reason(reason::WAITING_FOR_AGENT);
    let warned = seen
        .old
        .condition(condition::SCHEDULED)
        .is_some_and(|c| c.status == "False" && c.message.starts_with(UNCLAIMED_WARNING));
    let message = if overdue {
        format!("{UNCLAIMED_WARNING}: {message}")
    } else {
        message
    };
    status.condition(condition::SCHEDULED, false, why, message.clone());
    let mut outcome = Outcome::default();
    if overdue {
        // Waiting its turn behind the node's other jobs is progress.
        if why != reason::QUEUED {
            outcome.stalled = Some((why, message.clone()));
        }
        if !warned {
            plan.events.push(EventIntent {
                warning: true,
                reason: event::JOB_UNCLAIMED,
                note: format!(
                    "{}: {message}",
                    job.metadata.name.as_deref().unwrap_or_default()
                ),
            });
        }
    } else {
        let created = meta_time(job).map_or(seen.now, |t| t.0);
        let at = created + signed(settings.unclaimed_warning);
        plan.requeue = Some(unsigned(at.duration_since(seen.now)));
    }
    outcome
}

/// How a failed job is answered.
enum Answer {
    /// Start again now, saying why (the attempt count already adjusted).
    Retry(&'static str),
    /// Stop: permanent, or out of attempts.
    Terminal,
    /// Wait for the backoff to pass.
    BackOff(Timestamp),
}

/// A failed job: retried (asked for, a new spec, an interruption, after the backoff), or
/// terminal.
fn failed_job(
    seen: &Observed<'_>,
    stage: Stage,
    job: &MediumJob,
    status: &mut StatusBuilder<'_>,
    plan: &mut Plan,
    settings: &Settings,
) -> Outcome {
    let job_status = job.status.clone().unwrap_or_default();
    let error = job_status.error.clone().unwrap_or(JobError {
        class: ErrorClass::Transient,
        message: "the job failed without saying why".to_owned(),
    });
    // Reported once per failed job: the status names it once reported.
    let newly_failed = seen.old.current_job != job.metadata.name
        || !matches!(
            seen.old.reason.as_deref(),
            Some(reason::BACKING_OFF | reason::FAILED)
        );
    status.new.last_error = Some(error.clone());
    // Stays named (the job that failed), so the failure is reported once.
    status.new.current_job.clone_from(&job.metadata.name);
    let attempts = status.new.attempts.max(1);
    let spec = &seen.medium.spec;
    // A failed job made from an older spec (imaging options, ignore patterns, a force confirmed
    // since): the new spec is tried at once, as a new series.
    let respecified = job.spec.imaging != spec.imaging
        || job.spec.ignore != spec.ignore
        || job.spec.force != spec.force_confirmed(status.new.medium_hash.as_deref());
    let answer = if seen.retry_requested {
        status.new.attempts = 0;
        Answer::Retry(" (retry requested)")
    } else if respecified && !seen.deleting {
        status.new.attempts = 0;
        Answer::Retry(" (the spec changed)")
    } else if error.class == ErrorClass::Interrupted {
        // The agent shut down (upgrade, drain) and released the medium: not a failed attempt,
        // so it does not count and is not delayed. (`start` counts one; while paused it
        // creates nothing and counts none.)
        if !seen.paused || seen.deleting {
            status.new.attempts = attempts - 1;
        }
        Answer::Retry(" (the last one was interrupted)")
    } else if matches!(error.class, ErrorClass::Permanent | ErrorClass::Cancelled)
        || attempts >= settings.max_attempts
    {
        Answer::Terminal
    } else {
        let finished = job_status
            .finished_at
            .or(job_status.heartbeat_at)
            .map_or(seen.now, |t| t.0);
        let at = finished + signed(backoff(settings, attempts));
        if seen.now >= at {
            Answer::Retry(" (retry after backoff)")
        } else {
            Answer::BackOff(at)
        }
    };
    match answer {
        Answer::Retry(why) => {
            start(seen, stage, status, plan, why);
            Outcome::default()
        }
        Answer::Terminal => {
            status.new.phase = if seen.deleting {
                Phase::Deleting
            } else {
                Phase::Failed
            };
            status.reason(reason::FAILED);
            status.new.next_attempt_at = None;
            if seen.old.phase != status.new.phase || newly_failed {
                plan.events.push(EventIntent {
                    warning: true,
                    reason: event::STAGE_FAILED,
                    note: format!(
                        "{} failed after {attempts} attempt(s): {}; change the {} annotation to retry",
                        stage.as_str(),
                        error.message,
                        condition::RETRY_ANNOTATION
                    ),
                });
            }
            Outcome {
                terminal: true,
                stalled: Some((reason::FAILED, error.message)),
            }
        }
        Answer::BackOff(at) => {
            status.new.phase = if seen.paused {
                Phase::Paused
            } else {
                stage.phase()
            };
            status.reason(reason::BACKING_OFF);
            status.new.next_attempt_at = Some(Time(at));
            plan.requeue = Some(unsigned(at.duration_since(seen.now)));
            if newly_failed {
                plan.events.push(EventIntent {
                    warning: true,
                    reason: event::JOB_FAILED,
                    note: format!(
                        "{} attempt {} failed ({:?}): {}; retrying at {at}",
                        stage.as_str(),
                        job.spec.attempt,
                        error.class,
                        error.message
                    ),
                });
            }
            Outcome::default()
        }
    }
}

/// `Ready`, and kstatus' `Reconciling` and `Stalled`.
fn aggregate_conditions(seen: &Observed<'_>, outcome: &Outcome, status: &mut StatusBuilder<'_>) {
    let ready = !seen.deleting && seen.next.is_none();
    let stall = outcome.stalled.clone();
    let (ready_reason, reconciling) = if ready {
        (reason::COMPLETED, None)
    } else if stall.is_some() {
        (reason::FAILED, None)
    } else if status.new.phase == Phase::Paused {
        (reason::SUSPENDED, None)
    } else if seen.deleting {
        (reason::DELETING, Some(reason::DELETING))
    } else if status.new.reason.as_deref() == Some(reason::BACKING_OFF) {
        (reason::IN_PROGRESS, Some(reason::BACKING_OFF))
    } else if seen.next == Some(Stage::Image) && seen.profile_raised {
        (reason::IN_PROGRESS, Some(reason::PROFILE_RAISED))
    } else {
        (reason::IN_PROGRESS, Some(reason::IN_PROGRESS))
    };
    let doing = status.new.reason.clone().unwrap_or_default();
    let stage_message = seen.next.map_or_else(String::new, |s| {
        format!(
            "{} toward {:?} ({doing})",
            s.as_str(),
            seen.medium.spec.target
        )
    });
    status.condition(condition::READY, ready, ready_reason, stage_message.clone());
    match reconciling {
        Some(why) => status.condition(condition::RECONCILING, true, why, stage_message),
        None => status.condition(condition::RECONCILING, false, ready_reason, String::new()),
    }
    match stall {
        Some((why, message)) => status.condition(condition::STALLED, true, why, message),
        None => status.condition(condition::STALLED, false, ready_reason, String::new()),
    }
}

/// `DeletionBlocked` while a deletion waits, saying whether the evidence is retained.
fn deletion_blocked(
    seen: &Observed<'_>,
    outcome: &Outcome,
    work: Option<Stage>,
    status: &mut StatusBuilder<'_>,
    plan: &Plan,
) {
    let (why, message) = if seen.jobs_cancelling {
        (
            reason::CANCELLING_JOBS,
            "a job still holds the medium; it is being cancelled",
        )
    } else if outcome.terminal {
        (
            reason::PURGE_FAILED,
            "the armed purge failed; change the retry annotation to try again",
        )
    } else if work == Some(Stage::Purge) && plan.finalizer != FinalizerAction::Remove {
        (reason::PURGING, "the armed purge runs")
    } else {
        (reason::NOT_BLOCKED, "")
    };
    let evidence = if seen.medium.purge_armed() {
        "the image and catalog rows are purged once it ends"
    } else {
        "the evidence (image, catalog rows, stored content) is retained"
    };
    let blocked = why != reason::NOT_BLOCKED;
    let message = if blocked {
        format!("{message}; {evidence}")
    } else {
        evidence.to_owned()
    };
    status.condition(condition::DELETION_BLOCKED, blocked, why, message);
}

/// `Degraded`: a terminal failure, stored content found wrong (`fixity`: which), or a medium
/// not wholly readable (typed health).
fn degraded(outcome: &Outcome, fixity: Option<String>, status: &mut StatusBuilder<'_>) {
    let health = status
        .new
        .health
        .as_deref()
        .map(|h| h.parse::<Health>().map_err(|_| h.to_owned()));
    let (degraded, why, message) = match (&outcome.stalled, health) {
        (Some((_, failure)), _) if outcome.terminal => (true, reason::FAILED, failure.clone()),
        _ if fixity.is_some() => (true, reason::FIXITY_FAILED, fixity.unwrap_or_default()),
        (_, None | Some(Ok(Health::Ok))) => (false, reason::HEALTHY, String::new()),
        (_, Some(Ok(health))) => (true, reason::UNREADABLE_AREAS, format!("health {health}")),
        // A health this controller does not know is not vouched for.
        (_, Some(Err(unknown))) => (true, reason::UNREADABLE_AREAS, format!("health {unknown}")),
    };
    status.condition(condition::DEGRADED, degraded, why, message);
}

fn meta_time(job: &MediumJob) -> Option<Time> {
    job.metadata.creation_timestamp.clone()
}

/// When the agent running `job` was last heard of.
/// When the job's agent was last heard of: its heartbeat, its start, its claim (the
/// annotation set with the claim's finalizer), else the job's creation.
fn last_seen(job: &MediumJob) -> Option<Timestamp> {
    let status = job.status.as_ref();
    let claimed = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(condition::CLAIMED_AT_ANNOTATION))
        .and_then(|t| t.parse::<Timestamp>().ok());
    status
        .and_then(|s| s.heartbeat_at.clone().or_else(|| s.started_at.clone()))
        .map(|t| t.0)
        .or(claimed)
        .or_else(|| meta_time(job).map(|t| t.0))
}

fn heartbeat_stale(job: &MediumJob, now: Timestamp, settings: &Settings) -> bool {
    last_seen(job).is_some_and(|seen| now >= seen + signed(settings.heartbeat_timeout))
}
