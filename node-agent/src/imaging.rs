//! Stage 1: identify a medium and make (or register) its raw image.
//!
//! ```text
//!   SOURCE ─ classify ─┬─ block device ── lock device ─ identify ─ ddrescue passes ─┐
//!                      ├─ raw image ───── lock file ─── identify (registered in place)┤
//!                      └─ split/qcow2/vmdk/vhd/dmg/E01 ─ convert ─ identify ─ rename ─┴─ digest ─ catalog
//! ```
//!
//! Rules of this stage: the source is opened read-only and only ever read (ddrescue, qemu-img
//! and ewfexport only read their input); at most one `ntt image` works on a device or file at a
//! time (a host lock); a medium already in the catalog is reported and continued, never
//! recorded twice; health is recomputed from the mapfile every time it changes; a cancelled run
//! leaves a saved mapfile that the next run resumes from.

pub mod archive;
pub mod ddrescue;
pub mod digest;
pub mod identity;
pub mod mapfile;
pub mod passes;
pub mod picture;
pub mod recheck;
pub mod source;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ntt_crds::{Health, HealthThresholds, MediumHash};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::catalog::media::{self, ImageLocation, MediumId, MediumKind, NewMedium};
use crate::catalog::{Catalog, CatalogError};
use crate::lock::{HostLock, LockError};
use ddrescue::{DdrescueError, Progress, RescueEnd};
use digest::FollowingDigest;
use identity::{IdentifyError, Identity, UNKNOWN};
use mapfile::RescueSummary;
use passes::{Input, PassLimits, Profile};
use source::{Source, SourceError, SourceFormat};

/// Settings of the imaging stage that come from the host, not the medium.
#[derive(Debug, Clone)]
pub struct ImagingConfig {
    /// Where images and mapfiles are written (`<hash>.img`, `<hash>.map`).
    pub data_dir: PathBuf,
    /// Where host locks live.
    pub lock_dir: PathBuf,
    /// Which passes to run.
    pub profile: Profile,
    /// Limits for every pass.
    pub limits: PassLimits,
    /// Health thresholds.
    pub thresholds: HealthThresholds,
    /// Override of the device's logical sector size (2048 for optical media).
    pub sector_size: Option<u32>,
    /// Read block devices with direct I/O (exact bad areas); on by default.
    pub direct: bool,
}

/// One medium to image.
#[derive(Debug, Clone, Default)]
pub struct ImageRequest {
    /// Device or image file.
    pub source: PathBuf,
    /// Name for the catalog; derived from model/serial or the file name when absent.
    pub name: Option<String>,
    /// Free text for the catalog.
    pub description: Option<String>,
    /// The ddrescue mapfile of a registered raw image made elsewhere.
    pub mapfile: Option<PathBuf>,
}

/// What the stage did.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Surrogate id.
    pub medium_id: MediumId,
    /// Identity.
    pub hash: MediumHash,
    /// Catalog name.
    pub name: String,
    /// Whether the medium was already in the catalog before this run.
    pub known: bool,
    /// What the source was.
    pub format: SourceFormat,
    /// The raw image.
    pub image_path: PathBuf,
    /// The ddrescue mapfile, if any.
    pub mapfile_path: Option<PathBuf>,
    /// Size in bytes.
    pub size: u64,
    /// Model (devices).
    pub model: String,
    /// Serial (devices).
    pub serial: String,
    /// Sector size used.
    pub sector_size: u32,
    /// Rescue state.
    pub rescue: RescueSummary,
    /// Health from the rescue state.
    pub health: Option<Health>,
    /// Full BLAKE3 of the image, once finished.
    pub image_digest: Option<String>,
    /// How the run ended.
    pub end: ImageEnd,
    /// ddrescue passes run in this invocation.
    pub passes_run: usize,
}

/// How an imaging run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageEnd {
    /// Every byte rescued (or the image registered whole).
    Complete,
    /// Every pass of the profile ran; some bytes are not rescued. A later run with a more
    /// thorough profile continues from the mapfile.
    PassesExhausted,
    /// Stopped by the user; the mapfile is saved and the next run resumes.
    Cancelled,
}

/// Why the imaging stage failed.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The source could not be classified or converted.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The source could not be identified.
    #[error(transparent)]
    Identify(#[from] IdentifyError),
    /// Another process works on the same source.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The archived image could not be read.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// The archived image does not hold the image recorded at imaging.
    #[error(
        "the archive {path} does not hold the image recorded at imaging (its digest differs):          the raw image was not restored; check the archive's disk"
    )]
    ArchiveWrong {
        /// The archive.
        path: PathBuf,
    },
    /// ddrescue failed.
    #[error(transparent)]
    Ddrescue(#[from] DdrescueError),
    /// The data directory is unusable.
    #[error("cannot use data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The finished image could not be read for its digest.
    #[error("cannot read image {path} for its digest")]
    Digest {
        /// The image.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// No unique catalog name could be derived.
    #[error("the name {name:?} is taken by another medium: choose one with --name")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// A source with a known medium's identity whose content is not that medium's.
    #[error(
        "this source has the identity of medium {name} ({hash}: same size, model, serial and \
         first and last MiB) but other content{}; it is another medium: give it a name of its \
         own with --name to record it as one",
        at.map(|at| format!(" (at byte {at})")).unwrap_or_default()
    )]
    IdentityMismatch {
        /// The known medium.
        name: String,
        /// Its hash.
        hash: String,
        /// Where the content differs, when known.
        at: Option<u64>,
    },
    /// `--name` differs from the name of the medium the source is.
    #[error(
        "this source is medium {known} already (its identity and content match); it keeps that \
         name, not {asked:?}: run again without --name, or with --name {known}"
    )]
    NameMismatch {
        /// The medium's name.
        known: String,
        /// The name asked for.
        asked: String,
    },
    /// The content sample of a source or image could not be compared.
    #[error("cannot check {path} against the medium it matches")]
    Recheck {
        /// What could not be read.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The device is mounted or held by the kernel.
    #[error(
        "{path} is in use (it or a partition of it is mounted, or a driver holds it): unmount it \
         first; a device written while it is read gives an image of no single moment"
    )]
    Busy {
        /// The device.
        path: PathBuf,
    },
    /// The machine a directory source is on cannot be told.
    #[error(
        "cannot read the machine id {path}: a directory source is identified by the machine it \
         is on (run systemd-machine-id-setup; in the cluster the chart mounts the node's)"
    )]
    MachineId {
        /// The machine id file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("internal error: a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Images (or registers) one medium, reporting ddrescue progress to `on_progress`.
pub async fn image(
    catalog: &Catalog,
    config: &ImagingConfig,
    request: &ImageRequest,
    cancel: &CancellationToken,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<ImageReport, ImagingError> {
    let source = source::classify(&request.source)?;
    crate::private_dir::restrict(&config.data_dir).map_err(|e| ImagingError::DataDir {
        path: config.data_dir.clone(),
        source: e,
    })?;
    let lock = lock_source(config, &source)?;
    let report = match &source {
        Source::Device(path) => match refuse_busy(path) {
            Ok(()) => {
                image_device(catalog, config, request, path, &lock, cancel, on_progress).await
            }
            Err(error) => Err(error),
        },
        Source::File {
            path,
            format: SourceFormat::Raw,
        } => register_raw(catalog, config, request, path).await,
        _ => register_converted(catalog, config, request, &source).await,
    };
    lock.release()?;
    report
}

fn lock_source(config: &ImagingConfig, source: &Source) -> Result<HostLock, ImagingError> {
    let path = source.path();
    let metadata = fs_err::metadata(path).map_err(|e| SourceError::Open {
        path: path.to_owned(),
        source: e,
    })?;
    let name = match source {
        // By device number: /dev/sdb and its /dev/disk/by-id link are one lock.
        Source::Device(_) => format!("device-{}.lock", metadata.rdev()),
        _ => format!("file-{}-{}.lock", metadata.dev(), metadata.ino()),
    };
    Ok(HostLock::try_acquire(
        &config.lock_dir,
        &name,
        &path.display().to_string(),
        "ntt image",
    )?)
}

/// Which medium a source is. Its identity as found, when unknown or when the content checks
/// out ([`recheck`]); a twin's identity ([`identity::twin_hash`]) when the content differs and
/// the twin is known already or `--name` names a new medium; otherwise a refusal, never a
/// splice. A `--name` other than the medium's is refused. Returns the identity to use and, for
/// image files, the digest of the content sample to record.
async fn recheck_identity(
    catalog: &Catalog,
    request: &ImageRequest,
    mut identity: Identity,
    source: &Path,
    is_device: bool,
) -> Result<(Identity, Option<[u8; 32]>), ImagingError> {
    let pool = catalog.pool();
    let known = media::find_medium_by_hash(pool, &identity.hash).await?;
    if known.is_none() && is_device {
        return Ok((identity, None));
    }
    let (owned, size) = (source.to_owned(), identity.size);
    let sample = tokio::task::spawn_blocking(move || identity::read_sample(&owned, size)).await??;
    let digest = (!sample.is_empty()).then(|| identity::sample_digest(&sample));
    let Some(known) = known else {
        return Ok((identity, digest));
    };
    // An archived device's raw image comes back before it is compared with the device (and
    // before ddrescue goes on in it).
    if is_device && let Some(image) = &known.image_path {
        restore_archived_image(pool, known.id, Path::new(image)).await?;
    }
    let verdict = match (is_device, &known.image_path, &known.mapfile_path) {
        (true, Some(image), Some(mapfile)) => {
            let (image, mapfile) = (PathBuf::from(image), PathBuf::from(mapfile));
            let (owned, checked) = (sample.clone(), image.clone());
            tokio::task::spawn_blocking(move || recheck::device(&owned, &image, &mapfile))
                .await?
                .map_err(|source| ImagingError::Recheck {
                    path: checked,
                    source,
                })?
        }
        (true, _, _) => recheck::Verdict::Unknown,
        (false, _, _) => {
            recheck::image_file(&sample, media::identity_sample(pool, known.id).await?)
        }
    };
    let asked = request.name.as_deref();
    let refuse_name = |medium: &media::MediumRecord| match asked {
        Some(asked) if asked != medium.name => Err(ImagingError::NameMismatch {
            known: medium.name.clone(),
            asked: asked.to_owned(),
        }),
        _ => Ok(()),
    };
    match verdict {
        recheck::Verdict::Same | recheck::Verdict::Unknown => {
            refuse_name(&known)?;
            Ok((identity, digest))
        }
        recheck::Verdict::Differs(at) => {
            let twin = identity::twin_hash(&identity.hash, &identity::sample_digest(&sample));
            if let Some(known_twin) = media::find_medium_by_hash(pool, &twin).await? {
                refuse_name(&known_twin)?;
            } else if asked.is_none_or(|asked| asked == known.name) {
                return Err(ImagingError::IdentityMismatch {
                    name: known.name,
                    hash: known.hash,
                    at,
                });
            }
            tracing::warn!(
                medium.name = %known.name,
                twin = %twin,
                "same size and edges as a known medium but other content: another medium"
            );
            identity.hash = twin;
            Ok((identity, digest))
        }
    }
}

/// The medium with this identity: the existing row (`true`), or a new one.
async fn find_or_record(
    catalog: &Catalog,
    request: &ImageRequest,
    identity: &Identity,
    kind: MediumKind,
    default_name: String,
) -> Result<(MediumId, String, bool), ImagingError> {
    if let Some(existing) = media::find_medium_by_hash(catalog.pool(), &identity.hash).await? {
        tracing::info!(
            medium.name = %existing.name,
            medium.hash = %identity.hash,
            "medium is already in the catalog; continuing it"
        );
        return Ok((existing.id, existing.name, true));
    }
    let name = if let Some(name) = &request.name {
        name.clone()
    } else if media::name_is_taken(catalog.pool(), &default_name).await? {
        format!("{default_name}-{}", identity.hash.short())
    } else {
        default_name
    };
    let new = NewMedium {
        hash: identity.hash.clone(),
        name: name.clone(),
        kind,
        source: request.source.display().to_string(),
        description: request.description.clone(),
        size_bytes: Some(identity.size),
        model: (identity.model != UNKNOWN).then(|| identity.model.clone()),
        serial: (identity.serial != UNKNOWN).then(|| identity.serial.clone()),
    };
    match media::insert_medium(catalog.pool(), &new).await {
        Ok(id) => Ok((id, name, false)),
        Err(error) if error.constraint() == Some(crate::catalog::Constraint::MediumNameTaken) => {
            Err(ImagingError::NameTaken { name })
        }
        // Another run recorded the same medium between our lookup and insert.
        Err(error) if error.constraint() == Some(crate::catalog::Constraint::MediumHashTaken) => {
            let existing = media::find_medium_by_hash(catalog.pool(), &identity.hash)
                .await?
                .ok_or(error)?;
            Ok((existing.id, existing.name, true))
        }
        Err(error) => Err(error.into()),
    }
}

/// A name for people: control characters replaced, never empty.
fn printable_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.trim().is_empty() {
        "medium".to_owned()
    } else {
        name
    }
}

fn device_name(identity: &Identity, path: &Path) -> String {
    if identity.model != UNKNOWN && identity.serial != UNKNOWN {
        format!("{}_{}", identity.model, identity.serial)
    } else {
        let base = path
            .file_name()
            .map_or_else(|| "device".into(), |n| n.to_string_lossy());
        format!("{}-{}", printable_name(&base), identity.hash.short())
    }
}

async fn image_device(
    catalog: &Catalog,
    config: &ImagingConfig,
    request: &ImageRequest,
    path: &Path,
    lock: &HostLock,
    cancel: &CancellationToken,
    on_progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<ImageReport, ImagingError> {
    let owned = path.to_owned();
    let identity = tokio::task::spawn_blocking(move || identity::identify(&owned)).await??;
    let (identity, _) = recheck_identity(catalog, request, identity, path, true).await?;
    let (medium_id, name, known) = find_or_record(
        catalog,
        request,
        &identity,
        MediumKind::Device,
        device_name(&identity, path),
    )
    .await?;
    let sector_size = config.sector_size.unwrap_or(identity.sector_size);
    let image_path = config.data_dir.join(format!("{}.img", identity.hash));
    let mapfile_path = config.data_dir.join(format!("{}.map", identity.hash));
    media::record_image_location(
        catalog.pool(),
        medium_id,
        &ImageLocation {
            image_path: &image_path.display().to_string(),
            mapfile_path: Some(&mapfile_path.display().to_string()),
            format: SourceFormat::Device,
            sector_size: Some(sector_size),
        },
    )
    .await?;
    // ddrescue inherits the lock: if we die, it keeps the device locked until it exits too.
    lock.inherit_by_children()?;
    let input = Input {
        path,
        sector_size,
        direct: config.direct,
    };
    let passes = passes::passes(config.profile, sector_size, config.limits);
    let before = ddrescue::read_summary(&mapfile_path)?;
    if let Some(summary) = &before {
        tracing::info!(
            rescued = summary.rescued,
            of = summary.total,
            "resuming from the mapfile"
        );
    }

    let recorder = ProgressRecorder::start(catalog, medium_id, config.thresholds);
    let following = FollowingDigest::start(image_path.clone());
    let outcome = ddrescue::rescue(
        &input,
        &image_path,
        &mapfile_path,
        &passes,
        cancel,
        |progress| {
            recorder.send(progress.summary);
            following.final_up_to(progress.summary.finished_prefix);
            on_progress(progress);
        },
    )
    .await;
    recorder.finish().await;
    let outcome = outcome?;
    let summary = outcome.summary.clone().unwrap_or_default();
    let health = config.thresholds.classify(summary.rescued, summary.total);
    media::record_rescue(catalog.pool(), medium_id, &(&summary).into(), health).await?;

    let end = match outcome.end {
        RescueEnd::Complete => ImageEnd::Complete,
        RescueEnd::PassesExhausted => ImageEnd::PassesExhausted,
        RescueEnd::Cancelled => ImageEnd::Cancelled,
    };
    let image_digest = match end {
        ImageEnd::Cancelled => None,
        _ if outcome.passes_run == 0 && known => stored_digest(catalog, &identity.hash).await?,
        _ => {
            let digest = tokio::task::spawn_blocking(move || following.finish())
                .await?
                .map_err(|source| ImagingError::Digest {
                    path: image_path.clone(),
                    source,
                })?;
            finish_image(&image_path)?;
            media::record_imaged(catalog.pool(), medium_id, &digest).await?;
            Some(hex::encode(digest))
        }
    };
    Ok(ImageReport {
        medium_id,
        hash: identity.hash,
        name,
        known,
        format: SourceFormat::Device,
        image_path,
        mapfile_path: Some(mapfile_path),
        size: identity.size,
        model: identity.model,
        serial: identity.serial,
        sector_size,
        rescue: summary,
        health,
        image_digest,
        end,
        passes_run: outcome.passes_run,
    })
}

/// Writes rescue progress to the catalog at most every 2 s, from a task of its own, so a slow
/// database never slows ddrescue; the caller's display gets every update at once.
struct ProgressRecorder {
    sender: tokio::sync::watch::Sender<Option<RescueSummary>>,
    done: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressRecorder {
    fn start(catalog: &Catalog, medium_id: MediumId, thresholds: HealthThresholds) -> Self {
        let (sender, mut receiver) = tokio::sync::watch::channel::<Option<RescueSummary>>(None);
        let done = CancellationToken::new();
        let pool = catalog.pool().clone();
        let stop = done.clone();
        let task = tokio::spawn(async move {
            while receiver.changed().await.is_ok() {
                let latest = receiver.borrow_and_update().clone();
                if let Some(summary) = latest {
                    let health = thresholds.classify(summary.rescued, summary.total);
                    if let Err(error) =
                        media::record_rescue(&pool, medium_id, &(&summary).into(), health).await
                    {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "cannot record progress"
                        );
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = stop.cancelled() => break,
                }
            }
        });
        Self { sender, done, task }
    }

    fn send(&self, summary: &RescueSummary) {
        self.sender.send_replace(Some(summary.clone()));
    }

    /// Stops the task; the caller records the final state itself.
    async fn finish(self) {
        self.done.cancel();
        drop(self.sender);
        let _ = self.task.await;
    }
}

async fn stored_digest(
    catalog: &Catalog,
    hash: &MediumHash,
) -> Result<Option<String>, ImagingError> {
    Ok(media::image_digest(catalog.pool(), hash)
        .await?
        .map(hex::encode))
}

/// The full BLAKE3 of a file, hashed on all cores (memory-mapped).
pub async fn digest_file(path: &Path) -> Result<[u8; 32], ImagingError> {
    let owned = path.to_owned();
    let result = tokio::task::spawn_blocking(move || digest::digest_file(&owned)).await?;
    result.map_err(|source| ImagingError::Digest {
        path: path.to_owned(),
        source,
    })
}

/// Refuses a block device that is mounted or held by a driver: an exclusive open (`O_EXCL`
/// on a block device) fails with EBUSY exactly then, and a whole disk one of whose partitions
/// is mounted counts. The open is closed at once and never writes; other failures are left to
/// the identification that follows.
fn refuse_busy(path: &Path) -> Result<(), ImagingError> {
    use nix::fcntl::{OFlag, open};
    match open(
        path,
        OFlag::O_RDONLY | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    ) {
        Err(nix::errno::Errno::EBUSY) => Err(ImagingError::Busy {
            path: path.to_owned(),
        }),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// An image NTT wrote, finished: read-only ([`make_read_only`]) and durable with its name
/// before the catalog says it is imaged (a power cut after the record must not leave a record
/// of bytes that never reached the disk).
fn finish_image(image: &Path) -> Result<(), ImagingError> {
    make_read_only(image)?;
    let error = |source| ImagingError::DataDir {
        path: image.to_owned(),
        source,
    };
    fs_err::File::open(image)
        .and_then(|f| f.sync_all())
        .map_err(error)?;
    if let Some(dir) = image.parent() {
        fs_err::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(error)?;
    }
    Ok(())
}

/// Images we made are evidence too: mode 0440 once finished, readable by root and the data
/// directory's group only. (A later, more thorough ddrescue run still writes to it: it runs
/// as root.)
fn make_read_only(image: &Path) -> Result<(), ImagingError> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(image, std::fs::Permissions::from_mode(0o440)).map_err(|e| {
        ImagingError::DataDir {
            path: image.to_owned(),
            source: e,
        }
    })
}

/// A raw image, registered where it is: nothing is copied, and it is only ever read.
async fn register_raw(
    catalog: &Catalog,
    config: &ImagingConfig,
    request: &ImageRequest,
    path: &Path,
) -> Result<ImageReport, ImagingError> {
    let canonical = fs_err::canonicalize(path).map_err(|e| SourceError::Open {
        path: path.to_owned(),
        source: e,
    })?;
    let owned = canonical.clone();
    let identity = tokio::task::spawn_blocking(move || identity::identify(&owned)).await??;
    let (identity, sample) =
        recheck_identity(catalog, request, identity, &canonical, false).await?;
    let mapfile_path = request
        .mapfile
        .clone()
        .or_else(|| sibling_mapfile(&canonical));
    register(
        catalog,
        config,
        request,
        Registration {
            identity,
            image_path: &canonical,
            name_from: path,
            mapfile_path,
            format: SourceFormat::Raw,
            digest: None,
            sample,
        },
    )
    .await
}

/// `disk.img` -> `disk.map` or `disk.img.map`, when ddrescue's mapfile sits beside the image.
fn sibling_mapfile(image: &Path) -> Option<PathBuf> {
    [
        image.with_extension("map"),
        PathBuf::from(format!("{}.map", image.display())),
    ]
    .into_iter()
    .find(|candidate| candidate.is_file())
}

/// A split, container or EWF image, converted to raw in the data directory.
async fn register_converted(
    catalog: &Catalog,
    config: &ImagingConfig,
    request: &ImageRequest,
    source: &Source,
) -> Result<ImageReport, ImagingError> {
    let staging = config
        .data_dir
        .join(format!(".converting-{}.img", std::process::id()));
    let owned_source = source.clone();
    let owned_staging = staging.clone();
    let digest =
        tokio::task::spawn_blocking(move || source::convert_to_raw(&owned_source, &owned_staging))
            .await??;
    let owned = staging.clone();
    let identified = match tokio::task::spawn_blocking(move || identity::identify(&owned)).await? {
        Ok(identity) => recheck_identity(catalog, request, identity, &staging, false).await,
        Err(error) => Err(error.into()),
    };
    let (identity, sample) = match identified {
        Ok(identified) => identified,
        Err(error) => {
            let _ = fs_err::remove_file(&staging);
            return Err(error);
        }
    };
    let target = config.data_dir.join(format!("{}.img", identity.hash));
    // The same medium converted before: keep the image already in place.
    if target.is_file() {
        fs_err::remove_file(&staging).map_err(|e| ImagingError::DataDir {
            path: staging.clone(),
            source: e,
        })?;
    } else {
        fs_err::rename(&staging, &target).map_err(|e| ImagingError::DataDir {
            path: target.clone(),
            source: e,
        })?;
    }
    finish_image(&target)?;
    register(
        catalog,
        config,
        request,
        Registration {
            identity,
            image_path: &target,
            name_from: source.path(),
            mapfile_path: None,
            format: source.format(),
            digest,
            sample,
        },
    )
    .await
}

/// An image file that needs no ddrescue, identified and ready to record.
struct Registration<'a> {
    identity: Identity,
    /// The raw image to record.
    image_path: &'a Path,
    /// The file the default name comes from (what the user gave).
    name_from: &'a Path,
    /// A ddrescue mapfile describing the image, if there is one; otherwise it is complete.
    mapfile_path: Option<PathBuf>,
    format: SourceFormat,
    /// The digest, when it was computed on the way (split images).
    digest: Option<[u8; 32]>,
    /// The digest of the content sample, to record ([`recheck`]).
    sample: Option<[u8; 32]>,
}

/// Records a registered image: the medium (or the known one), its location, rescue state,
/// health and digest.
async fn register(
    catalog: &Catalog,
    config: &ImagingConfig,
    request: &ImageRequest,
    registration: Registration<'_>,
) -> Result<ImageReport, ImagingError> {
    let Registration {
        identity,
        image_path,
        name_from,
        mapfile_path,
        format,
        digest,
        sample,
    } = registration;
    let default_name = printable_name(
        &name_from
            .file_name()
            .map_or_else(|| "image".into(), |n| n.to_string_lossy()),
    );
    let (medium_id, name, known) =
        find_or_record(catalog, request, &identity, MediumKind::Image, default_name).await?;
    if let Some(sample) = &sample {
        media::record_identity_sample(catalog.pool(), medium_id, sample).await?;
    }
    let rescue = match &mapfile_path {
        Some(mapfile) => ddrescue::read_summary(mapfile)?.unwrap_or_default(),
        None => RescueSummary {
            total: identity.size,
            rescued: identity.size,
            finished_prefix: identity.size,
            ..RescueSummary::default()
        },
    };
    media::record_image_location(
        catalog.pool(),
        medium_id,
        &ImageLocation {
            image_path: &image_path.display().to_string(),
            mapfile_path: mapfile_path
                .as_ref()
                .map(|p| p.display().to_string())
                .as_deref(),
            format,
            sector_size: Some(identity.sector_size),
        },
    )
    .await?;
    let health = config.thresholds.classify(rescue.rescued, rescue.total);
    media::record_rescue(catalog.pool(), medium_id, &(&rescue).into(), health).await?;
    let stored = if known {
        media::image_digest(catalog.pool(), &identity.hash).await?
    } else {
        None
    };
    let digest = match (digest, stored) {
        (Some(digest), _) => digest,
        (None, Some(stored)) => stored,
        (None, None) => digest_file(image_path).await?,
    };
    media::record_imaged(catalog.pool(), medium_id, &digest).await?;
    Ok(ImageReport {
        medium_id,
        hash: identity.hash,
        name,
        known,
        format,
        image_path: image_path.to_owned(),
        mapfile_path,
        size: identity.size,
        model: identity.model,
        serial: identity.serial,
        sector_size: identity.sector_size,
        end: if rescue.is_complete() {
            ImageEnd::Complete
        } else {
            ImageEnd::PassesExhausted
        },
        rescue,
        health,
        image_digest: Some(hex::encode(digest)),
        passes_run: 0,
    })
}

/// Restores a medium's raw image at `image` from its archive (`ntt archive`) when the file is
/// gone and an archive is recorded; `true` when it did. The restored image is named only once
/// its digest is the one recorded at imaging.
///
/// # Errors
///
/// [`ImagingError::ArchiveWrong`] when the archive holds another image; archive and catalog
/// errors as they come.
pub async fn restore_archived_image(
    pool: &sqlx::PgPool,
    medium: media::MediumId,
    image: &Path,
) -> Result<bool, ImagingError> {
    if image.exists() {
        return Ok(false);
    }
    let (digest, archived) = media::image_archive(pool, medium).await?;
    let (Some(digest), Some(archived)) = (digest, archived) else {
        return Ok(false);
    };
    tracing::info!(archive = %archived.path, image = %image.display(), "restoring the raw image from its archive");
    let (from, to) = (PathBuf::from(&archived.path), image.to_owned());
    let restored =
        tokio::task::spawn_blocking(move || archive::restore(&from, &to, &digest)).await??;
    if !restored {
        return Err(ImagingError::ArchiveWrong {
            path: PathBuf::from(archived.path),
        });
    }
    Ok(true)
}
