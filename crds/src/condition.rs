//! Condition types and reasons of a Medium's status, and the labels, annotations and field
//! managers both binaries agree on.
//!
//! Rules: condition types and reasons are CamelCase constants used by name, never spelled out
//! at a call site, so a typo cannot create a second condition.

/// The image (or registration) stage succeeded.
pub const IMAGED: &str = "Imaged";
/// The enumeration stage succeeded.
pub const ENUMERATED: &str = "Enumerated";
/// The copy stage succeeded.
pub const COPIED: &str = "Copied";
/// The stored content was verified (periodic fixity): True while every blob of the medium was
/// last found right; False before the first complete verification, or once a blob is wrong.
pub const VERIFIED: &str = "Verified";
/// Every stage up to the target succeeded.
pub const READY: &str = "Ready";
/// A stage failed for good, or the medium could not be read completely.
pub const DEGRADED: &str = "Degraded";
/// Whether the job that waits has an agent to run it: True once claimed; False with why it
/// waits (no agent on the node, the agent lost, queued behind the node's limit, not claimed
/// yet). Present only while the Medium has a job.
pub const SCHEDULED: &str = "Scheduled";
/// The source drive may be undocked: the image is complete and every later stage reads the
/// image, never the drive (device sources only; image files and directories are read in
/// place and must stay).
pub const UNDOCKABLE: &str = "Undockable";

/// kstatus: the controller is working toward the spec (a job waits, runs or backs off, or
/// the Medium is being deleted). False once it is done, paused or stalled.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: no progress without someone acting (a stage failed for good; no agent claimed
/// the job in time; a force that does not confirm the recorded medium).
pub const STALLED: &str = "Stalled";
/// While a deletion waits: jobs are being cancelled, or an armed purge runs or failed. The
/// evidence is retained unless a purge was armed.
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

/// Annotation arming a purge: its value must be the Medium's uid (set by `kubectl ntt purge`
/// just before it deletes the Medium), so no manifest can carry a valid one.
pub const PURGE_ANNOTATION: &str = "ntt.hrdag.org/purge";

/// Condition reasons.
pub mod reason {
    /// Nothing has happened yet.
    pub const WAITING: &str = "Waiting";
    /// A job is running the stage.
    pub const IN_PROGRESS: &str = "InProgress";
    /// The stage succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The stage is not part of the target.
    pub const NOT_REQUESTED: &str = "NotRequested";
    /// Every stage up to the target succeeded.
    pub const COMPLETED: &str = "Completed";
    /// A job failed; it is retried after a backoff.
    pub const BACKING_OFF: &str = "BackingOff";
    /// A stage failed for good; change the retry annotation to try again.
    pub const FAILED: &str = "Failed";
    /// The pause annotation is set.
    pub const PAUSED: &str = "Paused";
    /// The medium is being deleted.
    pub const DELETING: &str = "Deleting";
    /// Everything is fine.
    pub const HEALTHY: &str = "Healthy";
    /// The medium could not be read completely (health other than ok).
    pub const UNREADABLE_AREAS: &str = "UnreadableAreas";
    /// An agent claimed the job and runs it.
    pub const CLAIMED: &str = "Claimed";
    /// No agent has ever announced itself on the Medium's node.
    pub const NO_AGENT: &str = "NoAgent";
    /// The node's agent stopped renewing its Lease.
    pub const AGENT_LOST: &str = "AgentLost";
    /// The node's agent runs as many jobs as it may; this one waits its turn.
    pub const QUEUED: &str = "Queued";
    /// The node's agent is alive with room, and has not claimed the job yet.
    pub const UNCLAIMED: &str = "Unclaimed";
    /// Imaging finished: the drive is no longer needed.
    pub const IMAGE_COMPLETE: &str = "ImageComplete";
    /// Imaging has not finished: the drive must stay docked.
    pub const IMAGING: &str = "Imaging";
    /// The source is an image file or a directory, read in place by every stage.
    pub const NOT_A_DEVICE: &str = "NotADevice";
    /// The spec's imaging profile is stronger than the image's: imaging again.
    pub const PROFILE_RAISED: &str = "ProfileRaised";
    /// The image was made again with a stronger profile: the stage runs again on it.
    pub const IMAGE_IMPROVED: &str = "ImageImproved";
    /// `spec.force` is set but is not the recorded medium hash: nothing is forced.
    pub const FORCE_NOT_CONFIRMED: &str = "ForceNotConfirmed";
    /// The pause annotation is set: nothing new starts (Argo CD shows it as suspended).
    pub const SUSPENDED: &str = "Suspended";
    /// Jobs still hold the medium; they are being cancelled.
    pub const CANCELLING_JOBS: &str = "CancellingJobs";
    /// The armed purge is running.
    pub const PURGING: &str = "Purging";
    /// The armed purge failed; the Medium stays until it succeeds (retry annotation).
    pub const PURGE_FAILED: &str = "PurgeFailed";
    /// Nothing blocks the deletion.
    pub const NOT_BLOCKED: &str = "NotBlocked";
    /// A job was created for the stage (status reason and event).
    pub const JOB_CREATED: &str = "JobCreated";
    /// The job waits for an agent to claim it (status reason).
    pub const WAITING_FOR_AGENT: &str = "WaitingForAgent";
    /// The stage's job is being deleted; the next one waits for it (status reason).
    pub const WAITING_FOR_CANCEL: &str = "WaitingForCancel";
    /// The job's agent stopped heartbeating; the job is failed as lost (status reason, event).
    pub const JOB_LOST: &str = "JobLost";
    /// The armed purge removed the image and the catalog rows (status reason, event).
    pub const PURGED: &str = "Purged";
    /// A purge annotation that does not hold the Medium's uid: nothing is purged (status
    /// reason, Warning event).
    pub const PURGE_NOT_ARMED: &str = "PurgeNotArmed";
    /// Deleted without a purge: the evidence is retained (status reason).
    pub const RETAINED: &str = "Retained";
    /// Every blob of the medium was found right by its last verification (condition reason).
    pub const ALL_BLOBS_MATCH: &str = "AllBlobsMatch";
    /// A verification found blobs of the medium wrong (condition reason, Warning event).
    pub const FIXITY_FAILED: &str = "FixityFailed";
    /// A verification runs or is due, and none has covered the medium yet (condition reason).
    pub const NOT_VERIFIED_YET: &str = "NotVerifiedYet";
    /// The controller schedules no verification (condition reason).
    pub const NOT_SCHEDULED: &str = "NotScheduled";
}

/// Reasons of events the controller records on a Medium (besides the reasons above that are
/// events too: `JobCreated`, `JobLost`, `Purged`, `PurgeNotArmed`, `Completed`,
/// `ForceNotConfirmed`).
pub mod event {
    /// The image of a device is complete: the drive may be undocked.
    pub const MAY_UNDOCK: &str = "MayUndock";
    /// A deleted Medium was let go, its evidence retained.
    pub const RELEASED: &str = "Released";
    /// A stage failed for good.
    pub const STAGE_FAILED: &str = "StageFailed";
    /// A job failed; it is retried after a backoff.
    pub const JOB_FAILED: &str = "JobFailed";
    /// No agent claimed a job in time.
    pub const JOB_UNCLAIMED: &str = "JobUnclaimed";
    /// The phase changed (other than to Completed or Failed, which have their own).
    pub const PHASE_CHANGED: &str = "PhaseChanged";
    /// A verification covered the medium and found every blob right.
    pub const VERIFIED: &str = "Verified";
    /// A verify job failed (it is tried again later).
    pub const VERIFY_FAILED: &str = "VerifyFailed";
}

/// The finalizer the controller keeps on every Medium until its jobs are gone.
pub const FINALIZER: &str = "ntt.hrdag.org/cleanup";
/// The finalizer an agent keeps on a MediumJob it runs, until it has released the medium.
pub const AGENT_FINALIZER: &str = "ntt.hrdag.org/agent";
/// On a MediumJob: when an agent claimed it (RFC 3339), set with the claim's finalizer; the
/// lost-agent deadline counts from it until the agent's first heartbeat.
pub const CLAIMED_AT_ANNOTATION: &str = "ntt.hrdag.org/claimed-at";
/// On an agent's Lease: how many jobs it runs now.
pub const RUNNING_JOBS_ANNOTATION: &str = "ntt.hrdag.org/running-jobs";
/// On an agent's Lease: how many jobs it runs at most.
pub const MAX_JOBS_ANNOTATION: &str = "ntt.hrdag.org/max-jobs";

/// The name of the `coordination.k8s.io` Lease by which the agent of `node` says it is alive
/// (in the namespace of the chart's release).
pub fn agent_lease_name(node: &str) -> String {
    format!("ntt-agent-{node}")
}

/// Change its value to retry a medium whose stage failed for good.
pub const RETRY_ANNOTATION: &str = "ntt.hrdag.org/retry";
/// Change its value to verify a copied medium's stored content now (the controller also sets
/// it on the other media holding a blob a verification found wrong).
pub const VERIFY_ANNOTATION: &str = "ntt.hrdag.org/verify";
/// `"true"` stops new jobs (a running one finishes; deletion still proceeds).
pub const PAUSED_ANNOTATION: &str = "ntt.hrdag.org/paused";
/// Label on each MediumJob: the uid of its Medium.
pub const MEDIUM_UID_LABEL: &str = "ntt.hrdag.org/medium-uid";
/// Label on each MediumJob: its stage.
pub const STAGE_LABEL: &str = "ntt.hrdag.org/stage";
/// Server-side apply field manager of the controller (Medium status, jobs it creates).
pub const FIELD_MANAGER_CONTROLLER: &str = "ntt-controller";
/// Server-side apply field manager of the node agent (MediumJob status).
pub const FIELD_MANAGER_AGENT: &str = "ntt-agent";
