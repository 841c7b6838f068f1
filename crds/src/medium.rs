//! The `Medium` resource: one physical medium (or image, or directory) and how far to take it.
//!
//! Rules in this module: the spec says what the user wants (the source, the node that holds it,
//! the target stage); the status is written by the controller only. The source is immutable
//! once created (a different source is a different medium); exactly one source kind is given;
//! device paths lie under `/dev/`; no path has a `..` component. Those rules are CEL rules in
//! the schema, so the API server refuses a bad manifest before anything runs.

// `KubeSchema` copies each struct it derives into a hidden item to build the schema, `pub` and
// all, where the lint cannot be silenced one item at a time.
#![allow(
    unreachable_pub,
    reason = "the copies KubeSchema generates are unreachable; the real types are re-exported"
)]
#![allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) of the kube derive repeats type_ = ..., which is not a duplicate"
)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What should happen to a medium: read from `source` on node `nodeName`, then taken through
/// the stages up to `target`. Images, catalog rows and stored content are kept when the Medium
/// is deleted, unless a purge was armed at deletion time (`kubectl ntt purge`: the annotation
/// `ntt.hrdag.org/purge` holding the Medium's uid), which a manifest cannot do.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ntt.hrdag.org",
    version = "v1alpha1",
    kind = "Medium",
    plural = "media",
    namespaced,
    shortname = "med",
    category = "ntt",
    annotation("helm.sh/resource-policy", "keep"),
    annotation("argocd.argoproj.io/sync-options", "Prune=false,Delete=false"),
    annotation("kustomize.toolkit.fluxcd.io/prune", "disabled"),
    status = "MediumStatus",
    derive = "PartialEq",
    doc = "A storage medium to ingest: imaged once, its files enumerated into the catalog and copied into the content store, on the node that holds it.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the medium is in the pipeline"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every stage up to the target is done"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target",
        description = "How far to take it"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".status.source",
        description = "The device, image file or directory it is read from"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".spec.nodeName",
        description = "The node that reads it"
    ),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.health",
        description = "How much of it could be read"
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress.summary",
        description = "The current stage's progress"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        priority = 1,
        description = "Why it is in this phase"
    ),
    printcolumn(
        name = "Error",
        type_ = "string",
        json_path = ".status.lastError.message",
        priority = 1,
        description = "The last failure"
    ),
    printcolumn(
        name = "Verified",
        type_ = "date",
        json_path = ".status.verification.lastVerifiedAt",
        priority = 1,
        description = "When all of its stored content was last found right"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MediumSpec {
    /// The node where the medium is attached (its drive dock), or whose filesystem holds the
    /// image or directory. Jobs for this medium run only there.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// Where the medium is read from: exactly one of `device`, `image` or `directory`.
    /// Immutable: a different source is a different Medium.
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable: create a new Medium for a different source"))]
    pub source: Source,
    /// How far to take the medium: `Imaged` (image only), `Enumerated` (every entry in the
    /// catalog) or `Copied` (every file's content in the store). Raising it later continues
    /// from where the medium stopped.
    #[serde(default)]
    pub target: Target,
    /// Free text for people: where the medium came from, its label, the box it was in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// Imaging options.
    #[serde(default)]
    pub imaging: ImagingOptions,
    /// Ignore patterns: matching paths are still loaded into the catalog but marked excluded
    /// with the pattern as the reason, and their content is not copied.
    #[serde(default)]
    pub ignore: IgnoreOptions,
    /// What deleting the Medium does to the evidence: `Retain`, the only value a manifest may
    /// declare, keeps the image, catalog rows and stored content. A purge is never declared
    /// (a manifest in Git would destroy evidence when pruned by a tool): it is armed at
    /// deletion time by `kubectl ntt purge`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Mount the volumes of a medium whose health is `failed` anyway (a driver may then read
    /// garbage). The value confirms it: the medium's hash from `status.mediumHash`, so the
    /// override holds for the image someone looked at, never for a later one. A value that is
    /// not the recorded hash forces nothing (a Warning event `ForceNotConfirmed`). Setting it
    /// after a stage failed for good tries the stage again, like any change of the options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    pub force: Option<String>,
}

impl MediumSpec {
    /// Whether `force` confirms the medium recorded as `medium_hash`.
    pub fn force_confirmed(&self, medium_hash: Option<&str>) -> bool {
        matches!((self.force.as_deref(), medium_hash), (Some(force), Some(hash)) if force == hash)
    }
}

/// Where a medium is read from. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("(has(self.device) ? 1 : 0) + (has(self.image) ? 1 : 0) + (has(self.directory) ? 1 : 0) == 1").message("exactly one of device, image, directory must be set"))]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// A block device on the node, under `/dev/`; prefer a stable `/dev/disk/by-id/...` path.
    /// Imaged with GNU ddrescue, read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 4096))]
    #[x_kube(
        validation = Rule::new("self.startsWith('/dev/')").message("device must be a path under /dev/"),
        validation = Rule::new("!(self.contains('/../') || self.endsWith('/..'))").message("device must not contain '..'"),
    )]
    pub device: Option<String>,
    /// An image file on the node (raw, E01, VMDK, ...), registered as it is (never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 4096))]
    #[x_kube(
        validation = Rule::new("self.startsWith('/')").message("image must be an absolute path"),
        validation = Rule::new("!(self.contains('/../') || self.endsWith('/..'))").message("image must not contain '..'"),
    )]
    pub image: Option<String>,
    /// A directory on the node (for example a file-carving output tree), enumerated and copied
    /// without imaging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(
        validation = Rule::new("self.startsWith('/')").message("directory must be an absolute path"),
        validation = Rule::new("!(self.contains('/../') || self.endsWith('/..'))").message("directory must not contain '..'"),
    )]
    pub directory: Option<String>,
}

/// Which kind of source, with its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind<'a> {
    /// A block device.
    Device(&'a str),
    /// An image file.
    Image(&'a str),
    /// A directory.
    Directory(&'a str),
}

impl Source {
    /// The one source given, or `None` when none or several are (the schema refuses both).
    pub fn kind(&self) -> Option<SourceKind<'_>> {
        match (&self.device, &self.image, &self.directory) {
            (Some(device), None, None) => Some(SourceKind::Device(device)),
            (None, Some(image), None) => Some(SourceKind::Image(image)),
            (None, None, Some(directory)) => Some(SourceKind::Directory(directory)),
            _ => None,
        }
    }
}

/// How far to take a medium. Ordered: each target includes the ones before it.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord,
)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Target {
    /// Imaged (devices) or registered (image files, directories).
    Imaged,
    /// Imaged, and every entry of every readable volume loaded into the catalog.
    Enumerated,
    /// Enumerated, and every file's content copied into the store.
    #[default]
    Copied,
}

/// Imaging options: those of `ntt image`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImagingOptions {
    /// How hard ddrescue tries: `Quick` (one forward pass), `Default` (the passes that read
    /// most of a failing drive fast) or `Thorough` (also retries bad sectors). Raising it after
    /// imaging finished images again with the same mapfile (only what is still unread), then
    /// maps the damage again and copies again the files that more of was rescued.
    #[serde(default)]
    pub profile: ImagingProfile,
    /// Retry count of the retrying passes (`Thorough`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub retries: Option<u32>,
    /// End a pass after this many seconds without a successful read (ddrescue `--timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub stall_timeout_seconds: Option<u64>,
    /// End each pass after this many seconds (the mapfile is saved; the next pass starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub max_pass_seconds: Option<u64>,
    /// Sector size in bytes (512, 1024, 2048 or 4096) [default: the device's logical sector
    /// size; 2048 for optical media].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in [512, 1024, 2048, 4096]").message("sectorSize must be 512, 1024, 2048 or 4096"))]
    pub sector_size: Option<u32>,
    /// Read the device through the page cache instead of direct I/O (bad areas become less
    /// exact; for bridges that refuse direct I/O).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub buffered_reads: bool,
    /// For an image source: the ddrescue mapfile of a raw image rescued elsewhere [default:
    /// `IMAGE.map` beside it]. Read from the same allowed roots as the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 4096))]
    #[x_kube(
        validation = Rule::new("self.startsWith('/')").message("mapfile must be an absolute path"),
        validation = Rule::new("!(self.contains('/../') || self.endsWith('/..'))").message("mapfile must not contain '..'"),
    )]
    pub mapfile: Option<String>,
}

/// ddrescue pass profiles (see docs/imaging.md), weakest first.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord,
)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ImagingProfile {
    /// One fast pass: what reads easily, in minutes; bad areas stay untrimmed.
    Quick,
    /// Fast, trim, scrape: every readable sector once.
    #[default]
    Default,
    /// Default, then reverse and small-cluster retries: for media worth hours or days.
    Thorough,
}

/// Ignore patterns for a medium.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreOptions {
    /// Regular expressions matched on each path's bytes (relative to the volume root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub patterns: Vec<String>,
    /// A named preset of patterns (`ntt ignore presets` lists them), off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub preset: Option<String>,
}

/// What deleting a Medium does to the evidence (a purge is armed at deletion time instead:
/// [`Medium::purge_armed`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the image, the catalog rows and the stored content.
    #[default]
    Retain,
}

impl Medium {
    /// Whether deleting this Medium removes its image and catalog rows: the annotation
    /// [`crate::condition::PURGE_ANNOTATION`] holds exactly this Medium's uid, which only an
    /// existing object has (a manifest cannot carry it; `kubectl ntt purge` sets it, then
    /// deletes). Content other media share stays in the store.
    pub fn purge_armed(&self) -> bool {
        use kube::ResourceExt;
        match (
            self.annotations().get(crate::condition::PURGE_ANNOTATION),
            self.uid(),
        ) {
            (Some(armed), Some(uid)) => *armed == uid,
            _ => false,
        }
    }
}

/// Where a medium is, as `kubectl get med` shows it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; waiting for its first job to start.
    #[default]
    Pending,
    /// ddrescue is reading the medium (or its image is being registered).
    Imaging,
    /// Its volumes are being found and attached.
    Mounting,
    /// Its entries are being loaded into the catalog.
    Enumerating,
    /// Its files are being copied into the store.
    Copying,
    /// Stored content is being re-hashed (the copy's sample; a periodic verification shows in
    /// the job and the `Verified` condition while the Medium stays `Completed`).
    Verifying,
    /// Every stage up to the target is done.
    Completed,
    /// A stage failed and will not be retried until the retry annotation changes.
    Failed,
    /// The pause annotation stops new jobs.
    Paused,
    /// Being deleted: the running job is cancelled (and the evidence purged if asked).
    Deleting,
}

/// One of the pipeline's stages, as a job runs it.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Stage {
    /// Identify and image the medium (or register its image or directory).
    Image,
    /// Find and attach its volumes, load every entry, map damaged files.
    Enumerate,
    /// Copy every file into the store, then verify a sample.
    Copy,
    /// Re-hash the stored content of a copied medium (periodic fixity, within a budget; not a
    /// pipeline stage: it never changes what the medium holds).
    Verify,
    /// Remove the image and the catalog rows (deletion armed by `kubectl ntt purge`).
    Purge,
}

impl Stage {
    /// The pipeline stages in order (without `Purge`).
    pub const PIPELINE: [Self; 3] = [Self::Image, Self::Enumerate, Self::Copy];

    /// The target this stage completes.
    pub const fn completes(self) -> Option<Target> {
        match self {
            Self::Image => Some(Target::Imaged),
            Self::Enumerate => Some(Target::Enumerated),
            Self::Copy => Some(Target::Copied),
            Self::Verify | Self::Purge => None,
        }
    }

    /// Lowercase name, for job names and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Enumerate => "enumerate",
            Self::Copy => "copy",
            Self::Verify => "verify",
            Self::Purge => "purge",
        }
    }

    /// The phase a Medium is in while a job runs this stage.
    pub const fn phase(self) -> Phase {
        match self {
            Self::Image => Phase::Imaging,
            Self::Enumerate => Phase::Enumerating,
            Self::Copy => Phase::Copying,
            Self::Verify => Phase::Verifying,
            Self::Purge => Phase::Deleting,
        }
    }

    /// The condition type set when the stage succeeds.
    pub const fn condition(self) -> Option<&'static str> {
        match self {
            Self::Image => Some(crate::condition::IMAGED),
            Self::Enumerate => Some(crate::condition::ENUMERATED),
            Self::Copy => Some(crate::condition::COPIED),
            Self::Verify => Some(crate::condition::VERIFIED),
            Self::Purge => None,
        }
    }
}

/// Progress of a stage, as the agent reports it on the job and the controller mirrors it on
/// the Medium.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The stage running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// The phase inside it (`Mounting` and `Verifying` happen inside jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Percent done (0-100), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<i32>,
    /// Bytes of the medium rescued so far (imaging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_rescued: Option<i64>,
    /// Bytes of the medium that could not be read (imaging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_bad: Option<i64>,
    /// Entries loaded into the catalog (enumeration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<i64>,
    /// Files copied into the store (copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_copied: Option<i64>,
    /// Bytes copied into the store (copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<i64>,
    /// Files that failed (copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    /// One line for people, shown by `kubectl get med`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 256))]
    pub summary: String,
}

/// A failure, classified for retrying.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    /// What kind of failure.
    pub class: ErrorClass,
    /// What went wrong, for people.
    #[schemars(length(max = 4096))]
    pub message: String,
}

/// How a failure is retried.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// May succeed if tried again (database down, drive busy): retried with backoff.
    Transient,
    /// Will fail again the same way (no such device, wrong kind of source): not retried until
    /// the retry annotation changes.
    Permanent,
    /// The agent stopped heartbeating (node or agent died): retried with backoff.
    Lost,
    /// Cancelled (the job or the Medium was deleted).
    Cancelled,
    /// The agent stopped the stage because it was shutting down (an upgrade, a drain): the
    /// medium was released and the stage continues in a new job at once, without counting
    /// an attempt.
    Interrupted,
}

/// What the controller observed and decided; written by the controller only.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediumStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the medium is.
    #[serde(default)]
    pub phase: Phase,
    /// Why it is in this phase (a CamelCase reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `Ready` (everything up to the target is done), `Reconciling` (work toward the spec is
    /// under way), `Stalled` (no progress without someone acting), `Degraded` (a stage failed
    /// for good, the medium could not be read completely, or stored content failed its
    /// verification), the stages' `Imaged`, `Enumerated` and `Copied`, `Verified` (the
    /// periodic verification of the stored content), `Scheduled`, `Undockable` and, while a deletion waits,
    /// `DeletionBlocked`. Each carries the generation it describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The source's path (device, image file or directory), for `kubectl get med`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The profile of the last imaging that finished (devices): a stronger one in the spec
    /// images again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imaged_profile: Option<ImagingProfile>,
    /// The medium's identity in the catalog (`ntt status`, `ntt report` take it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium_hash: Option<String>,
    /// How much of the medium could be read: `ok`, `incomplete`, `corrupt`, `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The current (or last) stage's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The MediumJob running now (after a failure: the job that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_job: Option<String>,
    /// The stage being worked on (or last worked on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Attempts of that stage so far (reset by the retry annotation, not by the stage's end).
    #[serde(default)]
    pub attempts: i32,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<JobError>,
    /// The earliest time the next attempt may start (backoff after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
    /// The value of the `ntt.hrdag.org/retry` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_seen: Option<String>,
    /// When the first job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the target was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// What the periodic verification of the stored content found (copied media, when the
    /// controller schedules verifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
}

/// The periodic verification of a medium's stored content, as the controller last observed it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// When every blob of the medium was last found right: the oldest of their last
    /// verifications (absent until a verification covered it all, and while a blob is wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_at: Option<Time>,
    /// When the next verification job is due (absent while one runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<Time>,
    /// The latest verify job whose end this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// That job's uid (its end is taken in once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uid: Option<String>,
    /// Blobs of the medium found wrong (mismatched, missing or unreadable) by the last
    /// verification.
    #[serde(default)]
    pub bad_blobs: i64,
    /// Verify jobs that failed in a row (reset by one that succeeds).
    #[serde(default)]
    pub failures: i32,
    /// The value of the `ntt.hrdag.org/verify` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seen: Option<String>,
}

impl MediumStatus {
    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of `type_` is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}
