//! The pipeline room: the stages of one medium in order, with typed options, reports and
//! errors. The standalone command line ([`crate::cli`]) and the node agent ([`crate::agent`])
//! are its two users, and hold no stage logic of their own.
//!
//! ```text
//!     cli/ (parse, call, print)           agent/ (claim, heartbeat, job status)
//!                  └──────────────┬──────────────┘
//!   pipeline/  image · volumes · attach · enumerate · damage · copy · verify · report · ingest · purge
//!                                 │
//!   stages     imaging · volume · enumerate · damage · copy · store · catalog (all SQL)
//! ```
//!
//! Rules of this room:
//! - A medium is resolved once, by its caller, into a [`MediumRecord`]; every function here
//!   takes that record (the agent finds it by the hash the `Medium` recorded, never by a name).
//!   Only imaging reads a source device; every later stage reads the recorded image.
//! - Options are plain structs (no command-line types); results are typed reports.
//! - Every error says what kind it is ([`PipelineError::class`]): permanent (the same input
//!   fails the same way), transient (try again later), or an interruption (cancelled; what was
//!   attached is released and the stage continues where it stopped when run again).

pub mod archive;
pub mod attach;
pub mod backup;
pub mod copy;
pub mod damage;
pub mod deleted;
pub mod enumerate;
pub mod export;
pub mod image;
pub mod ingest;
pub mod purge;
pub mod replicate;
pub mod report;
pub mod roots;
pub mod verify;

use std::path::PathBuf;

use ntt_crds::{HealthThresholds, MediumHash};

use crate::catalog::media::MediumRecord;
use crate::catalog::{Catalog, CatalogError};
use crate::volume::access::Settings;

/// What this host provides to every stage.
#[derive(Debug, Clone)]
pub struct Host {
    /// Where images and mapfiles are written.
    pub data_dir: PathBuf,
    /// Where host locks live.
    pub lock_dir: PathBuf,
    /// Health thresholds.
    pub thresholds: HealthThresholds,
    /// How volumes are attached (mount directory, timeouts, drivers).
    pub volumes: Settings,
    /// The content-addressed store's root.
    pub store: PathBuf,
    /// How long one open or read of a volume may take before the watchdog aborts it.
    pub read_timeout: std::time::Duration,
}

/// How a failure should be treated by whoever runs the stage again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The same input fails the same way (a missing source, a medium with no readable
    /// filesystem, a name taken): a person must change something first.
    Permanent,
    /// May succeed later (the database or the drive was busy or away, the store was full).
    Transient,
    /// Stopped by a signal or a cancelled job; nothing is lost and a rerun continues.
    Interrupted,
}

/// Why a pipeline step did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Cancelled; everything attached was released.
    #[error("stopped before the end; run it again to continue where it stopped")]
    Interrupted,
    /// The catalog failed or refused.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A load could not be read or made.
    #[error(transparent)]
    Load(#[from] crate::catalog::load::LoadError),
    /// Imaging failed.
    #[error(transparent)]
    Imaging(#[from] crate::imaging::ImagingError),
    /// The medium has no image yet.
    #[error("medium {medium} has no image yet: run `ntt image` first")]
    NotImaged {
        /// The medium's name.
        medium: String,
    },
    /// The medium's health says its filesystems are mostly unreadable.
    #[error(
        "medium {medium} has health `failed` (less than half of it could be rescued): its \
         filesystems are mostly unreadable and mounting them can hang or mislead; image it \
         again with `--profile thorough`, or pass --force to mount anyway"
    )]
    HealthFailed {
        /// The medium's name.
        medium: String,
    },
    /// A directory medium's directory is gone.
    #[error("medium {medium} is the directory {path}, which is not there any more")]
    DirectoryGone {
        /// The medium's name.
        medium: String,
        /// The directory.
        path: PathBuf,
    },
    /// Partition discovery failed.
    #[error("cannot find the volumes of {image}")]
    Discover {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: crate::volume::partitions::DiscoverError,
    },
    /// Attaching failed as a whole (lock, loop devices, host state).
    #[error("cannot attach the volumes of {medium}")]
    Attach {
        /// The medium's name.
        medium: String,
        /// Why.
        #[source]
        source: crate::volume::access::AccessError,
    },
    /// Releasing what was attached failed.
    #[error("cannot release the volumes of {medium}")]
    Release {
        /// The medium's name.
        medium: String,
        /// Why.
        #[source]
        source: crate::volume::access::AccessError,
    },
    /// Every filesystem volume failed to attach.
    #[error("no volume of medium {medium} could be read: {reasons}")]
    NoVolumeReadable {
        /// The medium's name.
        medium: String,
        /// Each volume's failure.
        reasons: String,
    },
    /// The medium is not enumerated yet.
    #[error("medium {medium} is not enumerated yet: run `ntt enumerate {medium}` first")]
    NotEnumerated {
        /// The medium's name.
        medium: String,
    },
    /// An ignore pattern is not a valid regular expression, or names no preset.
    #[error(transparent)]
    Ignore(#[from] crate::enumerate::ignore::PatternError),
    /// Enumeration failed (the published load is untouched).
    #[error("cannot enumerate {medium}")]
    Enumerate {
        /// The medium's name.
        medium: String,
        /// Why.
        #[source]
        source: crate::enumerate::EnumerateError,
    },
    /// Mapping unreadable areas onto files failed.
    #[error("cannot map the damage of {medium}")]
    Damage {
        /// The medium's name.
        medium: String,
        /// Why.
        #[source]
        source: crate::damage::DamageError,
    },
    /// The store could not be opened.
    #[error("cannot open the store at {path}")]
    Store {
        /// The store root.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::store::StoreError,
    },
    /// Copying stopped.
    #[error("copying {medium}{detail}")]
    Copy {
        /// The medium's name.
        medium: String,
        /// More about the circumstances (a second lost volume).
        detail: &'static str,
        /// Why.
        #[source]
        source: Box<crate::copy::CopyStageError>,
    },
    /// Writing an export failed (not an entry's refusal: those are in its report).
    #[error(transparent)]
    Export(crate::export::ExportError),
    /// The store or the data directory is missing, not initialised or another catalog's.
    #[error(transparent)]
    Root(#[from] crate::roots::RootError),
    /// A copy run ended with files still pending (none is lost: run it again).
    #[error(
        "copying {medium} ended with {} file(s) pending ({} held by copy runs still going, {} \
         waiting for a retry, {} neither): run it again to copy them",
        pending.total,
        pending.held,
        pending.retrying,
        pending.total - pending.held - pending.retrying
    )]
    Pending {
        /// The medium's name.
        medium: String,
        /// Who holds them.
        pending: crate::catalog::copying::Pending,
    },
    /// A blob could not be re-hashed.
    #[error("cannot read blob {path}")]
    ReadBlob {
        /// The blob file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Archiving failed (the raw image is kept).
    #[error("cannot archive the image of {medium}")]
    Archive {
        /// The medium's name.
        medium: String,
        /// Why.
        #[source]
        source: crate::imaging::archive::ArchiveError,
    },
    /// The medium is held by another process (mounted, archived).
    #[error("medium {medium} is busy (mounted or being archived by another process)")]
    Busy {
        /// The medium's name.
        medium: String,
        /// The lock's refusal.
        #[source]
        source: crate::lock::LockError,
    },
    /// The archive does not read back as the image.
    #[error(
        "the archive {path} does not hold the image (its digest differs when read back): the raw image is kept; remove the archive and run ntt archive again"
    )]
    ArchiveCorrupt {
        /// The archive.
        path: PathBuf,
    },
    /// The raw image no longer hashes to its recorded digest.
    #[error(
        "the image of {medium} ({path}) no longer matches the digest recorded at imaging: nothing was archived or removed; see `ntt verify --medium {medium} --images`"
    )]
    ImageChanged {
        /// The medium's name.
        medium: String,
        /// The image.
        path: PathBuf,
    },
    /// The image is a registered file, not one NTT made.
    #[error(
        "the image of {medium} is the registered file {path}: evidence given to NTT is never archived or removed"
    )]
    NotOurImage {
        /// The medium's name.
        medium: String,
        /// The image.
        path: PathBuf,
    },
    /// The archive root is not a directory.
    #[error(
        "the archive root {path} is not a directory (mount the archive disk, or make the directory)"
    )]
    ArchiveRoot {
        /// The root.
        path: PathBuf,
    },
    /// The replica root is an empty directory and was not asked to become one.
    #[error(
        "{path} is empty and not a replica yet: if it is the replica's disk, mount it; to make          it a new replica, pass --new"
    )]
    ReplicaNotMade {
        /// The directory.
        path: PathBuf,
    },
    /// A blob read back from the replica does not hash to its name.
    #[error("the replica's copy {path} does not read back right: check the replica's disk")]
    ReplicaWrong {
        /// The replica's file.
        path: PathBuf,
    },
    /// The replica is not recorded in the catalog.
    #[error("no replica {id} in the catalog (`ntt replicate --to ROOT` prints its id)")]
    UnknownReplica {
        /// The id asked for.
        id: String,
    },
    /// A blob id in the catalog is not 32 bytes.
    #[error("a blob id in the catalog is malformed: {id}")]
    MalformedBlob {
        /// The id, in hex.
        id: String,
    },
    /// Re-hashing found blobs that are wrong or missing.
    #[error("verification of the stored blobs failed: {0}")]
    Verification(Box<verify::Verification>),
    /// Removing a purged medium's files failed.
    #[error("cannot remove {path}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("internal error: a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// The pipeline's result type.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

impl PipelineError {
    /// How whoever runs the stage again should treat this failure.
    pub fn class(&self) -> Class {
        use crate::catalog::load::LoadError;
        use crate::enumerate::EnumerateError;
        use crate::imaging::ImagingError;
        use crate::roots::RootError;
        match self {
            Self::Interrupted
            | Self::Enumerate {
                source: EnumerateError::Cancelled,
                ..
            } => Class::Interrupted,
            Self::Catalog(error)
            | Self::Imaging(ImagingError::Catalog(error))
            | Self::Load(LoadError::Catalog(error))
            | Self::Enumerate {
                source: EnumerateError::Load(LoadError::Catalog(error)),
                ..
            } => catalog_class(error),
            Self::Imaging(
                ImagingError::Source(_)
                | ImagingError::NameTaken { .. }
                | ImagingError::MachineId { .. }
                | ImagingError::IdentityMismatch { .. }
                | ImagingError::NameMismatch { .. }
                | ImagingError::Busy { .. }
                | ImagingError::Identify(_),
            )
            | Self::NotImaged { .. }
            | Self::HealthFailed { .. }
            | Self::DirectoryGone { .. }
            | Self::NoVolumeReadable { .. }
            | Self::NotEnumerated { .. }
            | Self::Ignore(_)
            | Self::Load(LoadError::AlreadyLoaded { .. })
            | Self::Enumerate {
                source: EnumerateError::Load(LoadError::AlreadyLoaded { .. }),
                ..
            }
            | Self::MalformedBlob { .. }
            | Self::ReplicaNotMade { .. }
            | Self::ArchiveCorrupt { .. }
            | Self::ImageChanged { .. }
            | Self::NotOurImage { .. }
            | Self::ArchiveRoot { .. }
            | Self::ReplicaWrong { .. }
            | Self::UnknownReplica { .. }
            | Self::Root(
                RootError::Missing { .. }
                | RootError::NotInitialised { .. }
                | RootError::Foreign { .. }
                | RootError::WrongKind { .. }
                | RootError::Malformed { .. }
                | RootError::Lost { .. }
                | RootError::NotEmpty { .. }
                | RootError::Path { .. },
            )
            | Self::Verification(_) => Class::Permanent,
            Self::Imaging(_)
            | Self::Load(_)
            | Self::Discover { .. }
            | Self::Attach { .. }
            | Self::Release { .. }
            | Self::Enumerate { .. }
            | Self::Damage { .. }
            | Self::Store { .. }
            | Self::Archive { .. }
            | Self::Busy { .. }
            | Self::Copy { .. }
            | Self::ReadBlob { .. }
            | Self::Remove { .. }
            | Self::Export(_)
            | Self::Root(RootError::Io { .. })
            | Self::Pending { .. }
            | Self::Join(_) => Class::Transient,
        }
    }
}

/// A catalog failure's class: the schema and the data refuse the same way every time; the
/// database being away or slow passes.
fn catalog_class(error: &CatalogError) -> Class {
    match error {
        CatalogError::Connect { .. }
        | CatalogError::Timeout { .. }
        | CatalogError::Query { .. } => Class::Transient,
        CatalogError::NotMigrated { .. }
        | CatalogError::SchemaTooNew { .. }
        | CatalogError::SchemaMismatch { .. }
        | CatalogError::Migrate { .. }
        | CatalogError::Violation { .. }
        | CatalogError::InvalidValue { .. }
        | CatalogError::MediumNotFound { .. }
        | CatalogError::RunTaken { .. }
        | CatalogError::MediumAmbiguous { .. } => Class::Permanent,
    }
}

/// The medium with exactly this hash.
pub async fn medium_by_hash(catalog: &Catalog, hash: &MediumHash) -> Result<MediumRecord> {
    crate::catalog::media::find_medium_by_hash(catalog.pool(), hash)
        .await?
        .ok_or_else(|| {
            CatalogError::MediumNotFound {
                given: hash.to_string(),
            }
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruptions_and_medium_problems_are_told_apart_from_passing_trouble() {
        assert_eq!(PipelineError::Interrupted.class(), Class::Interrupted);
        assert_eq!(
            PipelineError::Enumerate {
                medium: "m".into(),
                source: crate::enumerate::EnumerateError::Cancelled
            }
            .class(),
            Class::Interrupted
        );
        assert_eq!(
            PipelineError::HealthFailed { medium: "m".into() }.class(),
            Class::Permanent
        );
        assert_eq!(
            PipelineError::Catalog(CatalogError::NotMigrated { pending: 1 }).class(),
            Class::Permanent
        );
        assert_eq!(
            PipelineError::Catalog(CatalogError::Query {
                operation: "x",
                source: sqlx::Error::PoolTimedOut
            })
            .class(),
            Class::Transient
        );
        assert_eq!(
            PipelineError::Enumerate {
                medium: "m".into(),
                source: crate::enumerate::EnumerateError::Load(
                    crate::catalog::load::LoadError::AlreadyLoaded {
                        medium: "m".into(),
                        entries: 3
                    }
                )
            }
            .class(),
            Class::Permanent
        );
    }
}
