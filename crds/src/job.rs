//! The `MediumJob` resource: one attempt at one stage of one Medium, run by the agent on the
//! Medium's node.
//!
//! Rules: the controller creates jobs (owned by their Medium, named after medium, stage and
//! attempt) and never edits their spec; the agent owns the status, except that the controller
//! marks a job whose heartbeat went stale as `Failed` with class `Lost`. Deleting a job cancels
//! it: the agent releases the medium and then removes its finalizer.

#![allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) of the kube derive repeats type_ = ..., which is not a duplicate"
)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::medium::{
    IgnoreOptions, ImagingOptions, ImagingProfile, JobError, Progress, Source, Stage, Target,
};

/// One attempt at one stage of a Medium.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "ntt.hrdag.org",
    version = "v1alpha1",
    kind = "MediumJob",
    namespaced,
    shortname = "mjob",
    category = "ntt",
    annotation("helm.sh/resource-policy", "keep"),
    annotation("argocd.argoproj.io/sync-options", "Prune=false,Delete=false"),
    annotation("kustomize.toolkit.fluxcd.io/prune", "disabled"),
    status = "MediumJobStatus",
    derive = "PartialEq",
    selectable = ".spec.nodeName",
    doc = "One attempt at one stage of a Medium, created by the controller and run by the node agent on the Medium's node.",
    printcolumn(name = "Medium", type_ = "string", json_path = ".spec.medium"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".spec.stage"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".spec.attempt"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress.summary"
    ),
    printcolumn(name = "Heartbeat", type_ = "date", json_path = ".status.heartbeatAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.spec == oldSelf.spec").message("a MediumJob's spec is immutable: the controller makes a new job for each attempt"),
)]
#[serde(rename_all = "camelCase")]
pub struct MediumJobSpec {
    /// The Medium (in the same namespace) this job works on.
    #[schemars(length(min = 1, max = 253))]
    pub medium: String,
    /// The medium's hash in the catalog, as the Medium's status recorded it when the job was
    /// created (absent before the first imaging). Every stage after imaging, and a purge,
    /// acts on the catalog's medium with exactly this hash, never on one found by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    pub medium_hash: Option<String>,
    /// The stage to run.
    pub stage: Stage,
    /// The node that runs it (the Medium's node when the job was created); agents select
    /// their jobs with the field selector `spec.nodeName`.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// Which attempt at the stage this is, from 1.
    #[schemars(range(min = 1))]
    pub attempt: i32,
    /// The Medium's source when the job was created.
    pub source: Source,
    /// The Medium's target when the job was created.
    pub target: Target,
    /// The Medium's imaging options when the job was created.
    #[serde(default)]
    pub imaging: ImagingOptions,
    /// The Medium's ignore patterns when the job was created.
    #[serde(default)]
    pub ignore: IgnoreOptions,
    /// The Medium's description when the job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Mount volumes even if the medium's health is `failed`: set only when the Medium's
    /// `force` confirmed the recorded medium hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// For the stages after imaging: the profile of the image they read (the Medium's
    /// `imagedProfile` when the job was created). After a re-image with a stronger profile,
    /// a stage that read a weaker image runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_profile: Option<ImagingProfile>,
    /// For a verify job: which blobs to re-hash and for how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyOptions>,
}

/// What a verify job re-hashes: the medium's blobs not found right since `staleBefore`
/// (never verified, verified earlier, or found wrong), least recently verified first, for at
/// most `budgetSeconds`; the next job goes on where it stopped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerifyOptions {
    /// Blobs found right at or after this time are not re-hashed (another medium's
    /// verification may have done it).
    pub stale_before: Time,
    /// The job takes no further blob after this many seconds.
    #[schemars(range(min = 1))]
    pub budget_seconds: i64,
}

/// A job's state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobState {
    /// Created; no agent has claimed it yet.
    #[default]
    Pending,
    /// An agent claimed it and is running it.
    Running,
    /// The stage finished.
    Succeeded,
    /// The stage failed (see `error`).
    Failed,
}

impl JobState {
    /// Whether the job has ended.
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What a finished stage found, for the Medium's status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// The medium's hash in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium_hash: Option<String>,
    /// The medium's health after imaging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// One line for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// What a verify job found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyResult>,
}

/// What a verify job found about its medium's stored content.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    /// Blobs re-hashed by this job.
    pub checked: i64,
    /// Bytes re-hashed by this job.
    pub bytes: i64,
    /// Whether every blob of the medium has now been verified since `staleBefore` (false:
    /// the budget ran out and the next job goes on).
    pub complete: bool,
    /// When every blob of the medium was last found right (absent while one is wrong or
    /// not verified yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// Blobs of the medium whose last verification found them wrong.
    pub bad_total: i64,
    /// The first of them (at most 20), each with the media that hold it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub bad: Vec<BadBlob>,
}

/// A blob whose verification found it wrong.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BadBlob {
    /// Its BLAKE3 hash (hex).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub blake3: String,
    /// `mismatch`, `missing` or `unreadable`.
    pub outcome: String,
    /// The catalog names of the media holding it (`namespace/name` for Media).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub media: Vec<String>,
}

/// A job's status, written by the agent that runs it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediumJobStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default)]
    pub state: JobState,
    /// The agent running it (its pod name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// When the agent started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// The agent's last sign of life; a stale heartbeat fails the job as lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<Time>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Progress while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// What it found, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}
