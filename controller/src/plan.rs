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

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use ntt_crds::condition::{self, reason};
use ntt_crds::{
    ErrorClass, JobError, JobState, Medium, MediumJob, MediumJobSpec, MediumStatus, Phase,
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_mins(5),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_hours(1),
            max_attempts: 5,
            unclaimed_warning: Duration::from_mins(5),
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
                Stage::Image | Stage::Purge => None,
            },
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
}

/// Decides what to do about one Medium.
#[expect(
    clippy::too_many_lines,
    reason = "one exhaustive walk through the Medium's life; split, it reads worse"
)]
pub fn plan(facts: Facts<'_>, settings: &Settings) -> Plan {
    let medium = facts.medium;
    let meta = &medium.metadata;
    let old = medium.status.clone().unwrap_or_default();
    let has_finalizer = meta
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == condition::FINALIZER));
    let deleting = meta.deletion_timestamp.is_some();
    let mut plan = Plan {
        finalizer: FinalizerAction::Keep,
        status: old.clone(),
        create: None,
        fail: None,
        delete: Vec::new(),
        release: Vec::new(),
        events: Vec::new(),
        requeue: None,
    };
    if !deleting && !has_finalizer {
        // First things first: without the finalizer a deletion could overtake a running job.
        plan.finalizer = FinalizerAction::Add;
        return plan;
    }
    if deleting && !has_finalizer {
        return plan;
    }
    let annotations = meta.annotations.clone().unwrap_or_default();
    let paused = annotations
        .get(condition::PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true");
    let retry_value = annotations.get(condition::RETRY_ANNOTATION).cloned();
    let retry_requested = retry_value.is_some() && retry_value != old.retry_seen;

    let mut status = StatusBuilder {
        old: &old,
        new: MediumStatus {
            observed_generation: meta.generation,
            retry_seen: retry_value.clone().or_else(|| old.retry_seen.clone()),
            medium_hash: old.medium_hash.clone(),
            health: old.health.clone(),
            started_at: old.started_at.clone(),
            completed_at: old.completed_at.clone(),
            progress: old.progress.clone(),
            stage: old.stage,
            attempts: old.attempts,
            last_error: old.last_error.clone(),
            imaged_profile: old.imaged_profile,
            source: medium.spec.source.kind().map(|kind| match kind {
                SourceKind::Device(p) | SourceKind::Image(p) | SourceKind::Directory(p) => {
                    p.to_owned()
                }
            }),
            ..MediumStatus::default()
        },
        now: facts.now,
        generation: meta.generation,
    };
    // What finished jobs found.
    for stage in Stage::PIPELINE {
        if let StageState::Succeeded(job) = stage_state(facts.jobs, stage)
            && let Some(result) = job.status.as_ref().and_then(|s| s.result.as_ref())
        {
            if result.medium_hash.is_some() {
                status.new.medium_hash.clone_from(&result.medium_hash);
            }
            if result.health.is_some() {
                status.new.health.clone_from(&result.health);
            }
            if stage == Stage::Image && medium.spec.source.device.is_some() {
                status.new.imaged_profile = Some(job.spec.imaging.profile);
            }
        }
    }
    // A device imaged with a weaker profile than the spec's is imaged again; then the stages
    // that read the weaker image run again (the damage map and the copies of what more of was
    // rescued).
    let imaged_profile = status.new.imaged_profile;
    let profile_raised = medium.spec.source.device.is_some()
        && imaged_profile.is_some_and(|p| p < medium.spec.imaging.profile);
    let read_current_image = |job: &MediumJob| match (job.spec.image_profile, imaged_profile) {
        (Some(read), Some(image)) => read >= image,
        _ => true,
    };
    // A stage is done when its latest job succeeded (on the current image), or when it has
    // no job left and its condition says so. A later job of a done stage is a re-run.
    let done = |stage: Stage| match stage_state(facts.jobs, stage) {
        StageState::Succeeded(job) => {
            if stage == Stage::Image {
                !profile_raised
            } else {
                read_current_image(job)
            }
        }
        StageState::NoJob => {
            stage.condition().is_some_and(|c| old.is_true(c))
                && !(stage == Stage::Image && profile_raised)
        }
        StageState::Active(_) | StageState::Terminating(_) | StageState::Failed(_) => false,
    };
    let wanted: Vec<Stage> = Stage::PIPELINE
        .into_iter()
        .filter(|s| s.completes().is_some_and(|t| t <= medium.spec.target))
        .collect();
    let next = if deleting {
        None
    } else {
        wanted.iter().copied().find(|s| !done(*s))
    };
    // Jobs that run but are not the one wanted now: cancel them.
    let current_stage = if deleting { Some(Stage::Purge) } else { next };
    for job in facts.jobs {
        let active = !job_state(job).is_finished() && job.metadata.deletion_timestamp.is_none();
        let is_current = Some(job.spec.stage) == current_stage
            && latest(facts.jobs, job.spec.stage).map(|j| j.spec.attempt) == Some(job.spec.attempt);
        let finished_superseded = job_state(job).is_finished()
            && latest(facts.jobs, job.spec.stage).map(|j| j.spec.attempt) != Some(job.spec.attempt);
        if ((active && !is_current) || finished_superseded)
            && let Some(name) = &job.metadata.name
        {
            plan.delete.push(name.clone());
        }
    }
    for job in facts.jobs {
        let held = job
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == condition::AGENT_FINALIZER));
        if held
            && job.metadata.deletion_timestamp.is_some()
            && (job_state(job).is_finished() || heartbeat_stale(job, facts.now, settings))
            && let Some(name) = &job.metadata.name
        {
            plan.release.push(name.clone());
        }
    }
    let jobs_cancelling = facts.jobs.iter().any(|j| {
        j.spec.stage != Stage::Purge
            && (!job_state(j).is_finished() || j.metadata.deletion_timestamp.is_some())
    });

    // Stage conditions.
    for stage in Stage::PIPELINE {
        let Some(type_) = stage.condition() else {
            continue;
        };
        let (value, why) = if done(stage) {
            (true, reason::SUCCEEDED)
        } else if !wanted.contains(&stage) {
            (false, reason::NOT_REQUESTED)
        } else if Some(stage) == next
            && matches!(stage_state(facts.jobs, stage), StageState::Active(_))
        {
            (false, reason::IN_PROGRESS)
        } else if stage == Stage::Image && profile_raised {
            (false, reason::PROFILE_RAISED)
        } else if matches!(stage_state(facts.jobs, stage), StageState::Succeeded(_)) {
            (false, reason::IMAGE_IMPROVED)
        } else {
            (false, reason::WAITING)
        };
        status.condition(type_, value, why, String::new());
    }

    // The drive: free once imaged, since every later stage reads the image.
    let device = medium.spec.source.device.is_some();
    let undockable = device && done(Stage::Image);
    let (why, message) = match (device, undockable) {
        (true, true) => (
            reason::IMAGE_COMPLETE,
            "the image is complete and later stages read it: the drive may be undocked",
        ),
        (true, false) => (
            reason::IMAGING,
            "imaging has not finished: keep the drive docked",
        ),
        (false, _) => (
            reason::NOT_A_DEVICE,
            "the source is read in place by every stage: keep it",
        ),
    };
    status.condition(condition::UNDOCKABLE, undockable, why, message.to_owned());
    if undockable && !old.is_true(condition::UNDOCKABLE) {
        plan.events.push(EventIntent {
            warning: false,
            reason: "MayUndock",
            note: format!(
                "the image of {} is complete; the drive may be undocked",
                medium.spec.source.device.as_deref().unwrap_or_default()
            ),
        });
    }

    // A force that names another medium than the recorded one forces nothing; said once per
    // spec change.
    if medium.spec.force.is_some()
        && !medium
            .spec
            .force_confirmed(status.new.medium_hash.as_deref())
        && old.observed_generation != meta.generation
    {
        plan.events.push(EventIntent {
            warning: true,
            reason: reason::FORCE_NOT_CONFIRMED,
            note: format!(
                "spec.force is not the recorded medium hash ({}): volumes of a failed medium stay unmounted",
                status.new.medium_hash.as_deref().unwrap_or("none recorded yet")
            ),
        });
    }

    // The work itself.
    let mut terminal = false;
    // Why no progress can be made without someone acting (besides a terminal failure).
    let mut stalled: Option<(&'static str, String)> = None;
    let stage_for_work = if deleting {
        // A purge only when armed at deletion time (the annotation holds this Medium's uid);
        // one copied from another Medium, or written into a manifest, arms nothing.
        let purge = meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(condition::PURGE_ANNOTATION));
        let confirmed = medium.purge_armed();
        if purge && !confirmed && old.reason.as_deref() != Some("PurgeNotArmed") {
            plan.events.push(EventIntent {
                warning: true,
                reason: "PurgeNotArmed",
                note: format!(
                    "the {} annotation does not hold this Medium's uid: the evidence is retained (use kubectl ntt purge)",
                    condition::PURGE_ANNOTATION
                ),
            });
        }
        status.new.phase = Phase::Deleting;
        if jobs_cancelling {
            status.new.reason = Some("CancellingJobs".to_owned());
            for job in facts.jobs {
                let active =
                    !job_state(job).is_finished() && job.metadata.deletion_timestamp.is_none();
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
        } else if confirmed {
            Some(Stage::Purge)
        } else {
            status.new.reason = Some(if purge { "PurgeNotArmed" } else { "Retained" }.to_owned());
            plan.finalizer = FinalizerAction::Remove;
            plan.events.push(EventIntent {
                warning: false,
                reason: "Released",
                note: "no job holds the medium; its image, catalog rows and stored content are retained".to_owned(),
            });
            None
        }
    } else {
        next
    };

    match stage_for_work {
        None if !deleting => {
            // The last stage's final progress (its job's end), not a heartbeat before it.
            if let Some(last) = wanted.last()
                && let StageState::Succeeded(job) = stage_state(facts.jobs, *last)
                && let Some(progress) = job.status.as_ref().and_then(|s| s.progress.clone())
            {
                status.new.progress = Some(progress);
            }
            status.new.phase = Phase::Completed;
            status.new.reason = Some(reason::COMPLETED.to_owned());
            status.new.current_job = None;
            status.new.next_attempt_at = None;
            if old.phase != Phase::Completed || status.new.completed_at.is_none() {
                status.new.completed_at = Some(Time(facts.now));
                plan.events.push(EventIntent {
                    warning: false,
                    reason: "Completed",
                    note: format!("every stage up to {:?} is done", medium.spec.target),
                });
            }
        }
        None => {}
        Some(stage) => {
            if old.stage != Some(stage) {
                status.new.stage = Some(stage);
                status.new.attempts = 0;
                status.new.last_error = None;
            }
            status.new.completed_at = None;
            let latest_attempt = latest(facts.jobs, stage).map_or(0, |j| j.spec.attempt);
            let start = |status: &mut StatusBuilder<'_>, plan: &mut Plan, why: &str| {
                if paused && !deleting {
                    status.new.phase = Phase::Paused;
                    status.new.reason = Some(reason::PAUSED.to_owned());
                    status.new.current_job = None;
                    return;
                }
                let attempt = latest_attempt.max(0) + 1;
                let job = new_job(medium, &status.new, stage, attempt);
                status.new.current_job.clone_from(&job.metadata.name);
                status.new.attempts += 1;
                status.new.phase = stage.phase();
                status.new.reason = Some("JobCreated".to_owned());
                status.new.next_attempt_at = None;
                if status.new.started_at.is_none() {
                    status.new.started_at = Some(Time(facts.now));
                }
                plan.events.push(EventIntent {
                    warning: false,
                    reason: "JobCreated",
                    note: format!(
                        "{} {} attempt {attempt} on node {}{why}",
                        stage.as_str(),
                        job.metadata.name.as_deref().unwrap_or_default(),
                        medium.spec.node_name
                    ),
                });
                plan.create = Some(job);
            };
            // An active job of this stage that the status does not name was created by a
            // reconcile whose status write was then refused or lost: its attempt is counted now
            // (a failed one is counted at least once below).
            if let StageState::Active(job) = stage_state(facts.jobs, stage)
                && old.current_job != job.metadata.name
            {
                status.new.attempts += 1;
            }
            match stage_state(facts.jobs, stage) {
                StageState::NoJob => start(&mut status, &mut plan, ""),
                StageState::Terminating(job) => {
                    status.new.phase = stage.phase();
                    status.new.reason = Some("WaitingForCancel".to_owned());
                    status.new.current_job.clone_from(&job.metadata.name);
                    plan.requeue = Some(Duration::from_secs(10));
                }
                StageState::Active(job) => {
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
                        status.new.started_at = Some(Time(facts.now));
                    }
                    // A claimed job (an agent's finalizer on it) has a lost-agent deadline
                    // whatever its state says: an agent can die between its claim and its
                    // first status write.
                    let claimed = job
                        .metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| f.iter().any(|f| f == condition::AGENT_FINALIZER));
                    if job_status.state == JobState::Pending && !claimed {
                        let (why, message, overdue) = waiting_for(
                            job,
                            facts.agent,
                            &medium.spec.node_name,
                            facts.now,
                            settings,
                        );
                        status.new.reason = Some("WaitingForAgent".to_owned());
                        let warned = old.condition(condition::SCHEDULED).is_some_and(|c| {
                            c.status == "False" && c.message.starts_with(UNCLAIMED_WARNING)
                        });
                        let message = if overdue {
                            format!("{UNCLAIMED_WARNING}: {message}")
                        } else {
                            message
                        };
                        status.condition(condition::SCHEDULED, false, why, message.clone());
                        if overdue {
                            // Waiting its turn behind the node's other jobs is progress.
                            if why != reason::QUEUED {
                                stalled = Some((why, message.clone()));
                            }
                            if !warned {
                                plan.events.push(EventIntent {
                                    warning: true,
                                    reason: "JobUnclaimed",
                                    note: format!(
                                        "{}: {message}",
                                        job.metadata.name.as_deref().unwrap_or_default()
                                    ),
                                });
                            }
                        } else {
                            let created = meta_time(job).map_or(facts.now, |t| t.0);
                            let at = created + signed(settings.unclaimed_warning);
                            plan.requeue = Some(unsigned(at.duration_since(facts.now)));
                        }
                    } else {
                        status.condition(
                            condition::SCHEDULED,
                            true,
                            reason::CLAIMED,
                            format!(
                                "agent {} runs it",
                                job_status.agent.as_deref().unwrap_or("?")
                            ),
                        );
                        status.new.reason = Some(reason::IN_PROGRESS.to_owned());
                        let seen = last_seen(job).unwrap_or(facts.now);
                        let deadline = seen + signed(settings.heartbeat_timeout);
                        if facts.now >= deadline {
                            let message = format!(
                                "no heartbeat from agent {} since {seen} (timeout {}s)",
                                job_status.agent.as_deref().unwrap_or("?"),
                                settings.heartbeat_timeout.as_secs()
                            );
                            status.new.reason = Some("JobLost".to_owned());
                            plan.events.push(EventIntent {
                                warning: true,
                                reason: "JobLost",
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
                                at: Time(facts.now),
                            });
                        } else {
                            plan.requeue = Some(unsigned(deadline.duration_since(facts.now)));
                        }
                    }
                }
                StageState::Succeeded(_) if stage != Stage::Purge => {
                    // A pipeline stage that succeeded on a weaker image (or is the image
                    // itself, made with a weaker profile): it runs again.
                    status.new.attempts = 0;
                    let why = if stage == Stage::Image {
                        " (a stronger imaging profile)"
                    } else {
                        " (the image was improved)"
                    };
                    start(&mut status, &mut plan, why);
                }
                StageState::Succeeded(_) => {
                    status.new.current_job = None;
                    plan.finalizer = FinalizerAction::Remove;
                    status.new.reason = Some("Purged".to_owned());
                    plan.events.push(EventIntent {
                        warning: false,
                        reason: "Purged",
                        note: "the image and the catalog rows were removed".to_owned(),
                    });
                }
                StageState::Failed(job) => {
                    let job_status = job.status.clone().unwrap_or_default();
                    let error = job_status.error.clone().unwrap_or(JobError {
                        class: ErrorClass::Transient,
                        message: "the job failed without saying why".to_owned(),
                    });
                    // Reported once per failed job: the status names it once reported.
                    let newly_failed = old.current_job != job.metadata.name
                        || !matches!(
                            old.reason.as_deref(),
                            Some(reason::BACKING_OFF | reason::FAILED)
                        );
                    status.new.last_error = Some(error.clone());
                    // Stays named (the job that failed), so the failure is reported once.
                    status.new.current_job.clone_from(&job.metadata.name);
                    let attempts = status.new.attempts.max(1);
                    let exhausted = attempts >= settings.max_attempts;
                    let permanent =
                        matches!(error.class, ErrorClass::Permanent | ErrorClass::Cancelled);
                    // A failed job made from an older spec (imaging options, ignore patterns, a
                    // force confirmed since): the new spec is tried at once, as a new series.
                    let respecified = job.spec.imaging != medium.spec.imaging
                        || job.spec.ignore != medium.spec.ignore
                        || job.spec.force
                            != medium
                                .spec
                                .force_confirmed(status.new.medium_hash.as_deref());
                    if retry_requested {
                        status.new.attempts = 0;
                        start(&mut status, &mut plan, " (retry requested)");
                    } else if respecified && !deleting {
                        status.new.attempts = 0;
                        start(&mut status, &mut plan, " (the spec changed)");
                    } else if error.class == ErrorClass::Interrupted {
                        // The agent shut down (upgrade, drain) and released the medium: not a
                        // failed attempt, so it does not count and is not delayed.
                        // (`start` counts one; while paused it creates nothing and counts none.)
                        if !paused || deleting {
                            status.new.attempts = attempts - 1;
                        }
                        start(&mut status, &mut plan, " (the last one was interrupted)");
                    } else if permanent || exhausted {
                        terminal = true;
                        status.new.phase = if deleting {
                            Phase::Deleting
                        } else {
                            Phase::Failed
                        };
                        status.new.reason = Some(reason::FAILED.to_owned());
                        status.new.next_attempt_at = None;
                        if old.phase != status.new.phase || newly_failed {
                            plan.events.push(EventIntent {
                                warning: true,
                                reason: "StageFailed",
                                note: format!(
                                    "{} failed after {attempts} attempt(s): {}; change the {} annotation to retry",
                                    stage.as_str(),
                                    error.message,
                                    condition::RETRY_ANNOTATION
                                ),
                            });
                        }
                    } else {
                        let finished = job_status
                            .finished_at
                            .or(job_status.heartbeat_at)
                            .map_or(facts.now, |t| t.0);
                        let at = finished + signed(backoff(settings, attempts));
                        if facts.now >= at {
                            start(&mut status, &mut plan, " (retry after backoff)");
                        } else {
                            status.new.phase = if paused { Phase::Paused } else { stage.phase() };
                            status.new.reason = Some(reason::BACKING_OFF.to_owned());
                            status.new.next_attempt_at = Some(Time(at));
                            plan.requeue = Some(unsigned(at.duration_since(facts.now)));
                            if newly_failed {
                                plan.events.push(EventIntent {
                                    warning: true,
                                    reason: "JobFailed",
                                    note: format!(
                                        "{} attempt {} failed ({:?}): {}; retrying at {at}",
                                        stage.as_str(),
                                        job.spec.attempt,
                                        error.class,
                                        error.message
                                    ),
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    // Aggregate conditions: Ready, and kstatus' Reconciling and Stalled.
    let ready = !deleting && next.is_none();
    let paused_now = status.new.phase == Phase::Paused;
    let failure = status
        .new
        .last_error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    let stall = if terminal {
        Some((reason::FAILED, failure.clone()))
    } else {
        stalled
    };
    let doing = status.new.reason.clone().unwrap_or_default();
    let (ready_reason, reconciling) = if ready {
        (reason::COMPLETED, None)
    } else if stall.is_some() {
        (reason::FAILED, None)
    } else if paused_now {
        (reason::SUSPENDED, None)
    } else if deleting {
        (reason::DELETING, Some(reason::DELETING))
    } else if status.new.reason.as_deref() == Some(reason::BACKING_OFF) {
        (reason::IN_PROGRESS, Some(reason::BACKING_OFF))
    } else if next == Some(Stage::Image) && profile_raised {
        (reason::IN_PROGRESS, Some(reason::PROFILE_RAISED))
    } else {
        (reason::IN_PROGRESS, Some(reason::IN_PROGRESS))
    };
    let stage_message = next.map_or_else(String::new, |s| {
        format!("{} toward {:?} ({doing})", s.as_str(), medium.spec.target)
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
    if deleting {
        let (why, message) = if jobs_cancelling {
            (
                reason::CANCELLING_JOBS,
                "a job still holds the medium; it is being cancelled".to_owned(),
            )
        } else if terminal {
            (
                reason::PURGE_FAILED,
                "the armed purge failed; change the retry annotation to try again".to_owned(),
            )
        } else if stage_for_work == Some(Stage::Purge) && plan.finalizer != FinalizerAction::Remove
        {
            (reason::PURGING, "the armed purge runs".to_owned())
        } else {
            (reason::NOT_BLOCKED, String::new())
        };
        let evidence = if medium.purge_armed() {
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
    let unhealthy = status.new.health.as_deref().is_some_and(|h| h != "ok");
    let (degraded, why, message) = if terminal {
        (true, reason::FAILED, failure)
    } else if unhealthy {
        (
            true,
            reason::UNREADABLE_AREAS,
            format!(
                "health {}",
                status.new.health.as_deref().unwrap_or_default()
            ),
        )
    } else {
        (false, reason::HEALTHY, String::new())
    };
    status.condition(condition::DEGRADED, degraded, why, message);
    if old.phase != status.new.phase && status.new.phase != Phase::Completed {
        // Phase changes are events too (Completed and failures have their own).
        if !matches!(status.new.phase, Phase::Failed) && plan.events.is_empty() {
            plan.events.push(EventIntent {
                warning: false,
                reason: "PhaseChanged",
                note: format!("{:?} -> {:?}", old.phase, status.new.phase),
            });
        }
    }
    plan.status = status.new;
    plan
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
