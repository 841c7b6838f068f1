//! The `medium` table: one row per physical or virtual medium.

use chrono::{DateTime, Utc};
use ntt_crds::{Health, MediumHash};
use serde::Serialize;
use sqlx::PgExecutor;

use super::CatalogError;

/// A medium's surrogate id in the catalog. Partitions are named from it; it is never shown as
/// the medium's identity (that is the [`MediumHash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct MediumId(i64);

impl MediumId {
    /// Wraps a raw id as read from the catalog.
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The raw id.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for MediumId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a medium was ingested from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "medium_kind", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MediumKind {
    /// A block device, imaged with ddrescue.
    Device,
    /// An existing image file (raw, split, qcow2, EWF, ...).
    Image,
    /// A directory tree, ingested without imaging.
    Directory,
}

/// The catalog's `health` enum; the same values as [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "health", rename_all = "lowercase")]
pub enum HealthValue {
    /// See [`Health::Ok`].
    Ok,
    /// See [`Health::Incomplete`].
    Incomplete,
    /// See [`Health::Corrupt`].
    Corrupt,
    /// See [`Health::Failed`].
    Failed,
}

impl From<HealthValue> for Health {
    fn from(value: HealthValue) -> Self {
        match value {
            HealthValue::Ok => Health::Ok,
            HealthValue::Incomplete => Health::Incomplete,
            HealthValue::Corrupt => Health::Corrupt,
            HealthValue::Failed => Health::Failed,
        }
    }
}

impl From<Health> for HealthValue {
    fn from(value: Health) -> Self {
        match value {
            Health::Ok => HealthValue::Ok,
            Health::Incomplete => HealthValue::Incomplete,
            Health::Corrupt => HealthValue::Corrupt,
            Health::Failed => HealthValue::Failed,
        }
    }
}

/// How far the pipeline got with a medium, derived from its stage timestamps (never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Identified and recorded; nothing else done yet.
    Identified,
    /// The image is complete (ddrescue finished or the image was registered).
    Imaged,
    /// Partitions and filesystems were found and recorded.
    Volumes,
    /// Every entry is in the catalog.
    Enumerated,
    /// Every file is copied, excluded or failed.
    Copied,
    /// The copy was verified.
    Verified,
}

impl Stage {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Identified => "identified",
            Self::Imaged => "imaged",
            Self::Volumes => "volumes",
            Self::Enumerated => "enumerated",
            Self::Copied => "copied",
            Self::Verified => "verified",
        }
    }
}

/// A medium to record.
#[derive(Debug, Clone)]
pub struct NewMedium {
    /// Its identity.
    pub hash: MediumHash,
    /// A unique name for people.
    pub name: String,
    /// What it is.
    pub kind: MediumKind,
    /// The device, image or directory it came from, as given.
    pub source: String,
    /// Free text from the archivist.
    pub description: Option<String>,
    /// Size in bytes, where known.
    pub size_bytes: Option<u64>,
    /// Model, for devices.
    pub model: Option<String>,
    /// Serial number, for devices.
    pub serial: Option<String>,
}

/// One medium as `ntt status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MediumSummary {
    /// Surrogate id.
    pub id: MediumId,
    /// Identity.
    pub hash: String,
    /// Name for people.
    pub name: String,
    /// What it is.
    pub kind: MediumKind,
    /// Where it came from.
    pub source: String,
    /// Archivist's note.
    pub description: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<i64>,
    /// Health from the mapfile, once imaged.
    pub health: Option<Health>,
    /// Bytes rescued so far.
    pub rescued_bytes: Option<i64>,
    /// Bytes known unreadable.
    pub bad_bytes: Option<i64>,
    /// Furthest stage reached.
    pub stage: Stage,
    /// When it was first recorded.
    pub created_at: DateTime<Utc>,
    /// Entries of its published load, once enumerated.
    pub entries: Option<i64>,
    /// Files still to copy.
    pub pending_files: i64,
    /// Files that could not be copied.
    pub failed_files: i64,
}

/// When each stage of a medium was completed, as recorded in the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// The image was complete.
    pub imaged_at: Option<DateTime<Utc>>,
    /// Volumes were found.
    pub volumes_at: Option<DateTime<Utc>>,
    /// Enumeration was loaded.
    pub enumerated_at: Option<DateTime<Utc>>,
    /// Copying finished.
    pub copied_at: Option<DateTime<Utc>>,
    /// Verification finished.
    pub verified_at: Option<DateTime<Utc>>,
}

impl StageTimes {
    /// The furthest stage completed. A later stage counts even when an earlier one has no time
    /// (a directory medium is never imaged).
    pub fn stage(&self) -> Stage {
        [
            (self.verified_at, Stage::Verified),
            (self.copied_at, Stage::Copied),
            (self.enumerated_at, Stage::Enumerated),
            (self.volumes_at, Stage::Volumes),
            (self.imaged_at, Stage::Imaged),
        ]
        .into_iter()
        .find_map(|(at, stage)| at.map(|_| stage))
        .unwrap_or(Stage::Identified)
    }
}

fn to_i64(operation: &'static str, value: u64) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::InvalidValue {
        operation,
        source: sqlx::Error::Protocol(format!("{value} does not fit a bigint")),
    })
}

/// Records a new medium and returns its id. A medium whose hash or name is already recorded is
/// refused with [`super::Constraint::MediumHashTaken`] or [`super::Constraint::MediumNameTaken`].
pub async fn insert_medium(
    executor: impl PgExecutor<'_>,
    medium: &NewMedium,
) -> Result<MediumId, CatalogError> {
    const OPERATION: &str = "record the medium";
    let size = medium
        .size_bytes
        .map(|s| to_i64(OPERATION, s))
        .transpose()?;
    sqlx::query_scalar!(
        r#"insert into medium (hash, name, kind, source, description, size_bytes, model, serial)
           values ($1, $2, $3, $4, $5, $6, $7, $8)
           returning id as "id: MediumId""#,
        medium.hash.as_str(),
        medium.name,
        medium.kind as MediumKind,
        medium.source,
        medium.description,
        size,
        medium.model,
        medium.serial,
    )
    .fetch_one(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx(OPERATION, e))
}

/// A medium's identity and imaging state, as the imaging stage needs it.
#[derive(Debug, Clone)]
pub struct MediumRecord {
    /// Surrogate id.
    pub id: MediumId,
    /// Identity.
    pub hash: String,
    /// Name for people.
    pub name: String,
    /// What it is.
    pub kind: MediumKind,
    /// Where it came from.
    pub source: String,
    /// The image, once known.
    pub image_path: Option<String>,
    /// The ddrescue mapfile, for imaged devices.
    pub mapfile_path: Option<String>,
    /// When imaging completed (all passes of a run finished, digest recorded).
    pub imaged_at: Option<DateTime<Utc>>,
    /// Health from the last rescue (none for registered images without a mapfile).
    pub health: Option<HealthValue>,
}

/// The medium with this hash, if it is in the catalog.
pub async fn find_medium_by_hash(
    executor: impl PgExecutor<'_>,
    hash: &MediumHash,
) -> Result<Option<MediumRecord>, CatalogError> {
    sqlx::query_as!(
        MediumRecord,
        r#"select id as "id: MediumId", hash, name, kind as "kind: MediumKind", source,
                  image_path, mapfile_path, imaged_at, health as "health: HealthValue"
           from medium where hash = $1"#,
        hash.as_str()
    )
    .fetch_optional(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("look up the medium", e))
}

/// The medium with exactly this name, if it is in the catalog.
pub async fn find_medium_by_name(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<MediumRecord>, CatalogError> {
    sqlx::query_as!(
        MediumRecord,
        r#"select id as "id: MediumId", hash, name, kind as "kind: MediumKind", source,
                  image_path, mapfile_path, imaged_at, health as "health: HealthValue"
           from medium where name = $1"#,
        name
    )
    .fetch_optional(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("look up the medium", e))
}

/// The medium a person means by `given`: its name, its hash, or a unique prefix of its hash
/// (at least 4 hex characters). A name wins over a hash prefix.
pub async fn resolve_medium(
    executor: impl PgExecutor<'_>,
    given: &str,
) -> Result<MediumRecord, CatalogError> {
    let is_prefix = given.len() >= 4
        && given
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let prefix = if is_prefix {
        format!("{given}%")
    } else {
        String::new()
    };
    let mut candidates = sqlx::query_as!(
        MediumRecord,
        r#"select id as "id: MediumId", hash, name, kind as "kind: MediumKind", source,
                  image_path, mapfile_path, imaged_at, health as "health: HealthValue"
           from medium
           where name = $1 or hash = $1 or ($2 <> '' and hash like $2)
           order by name"#,
        given,
        prefix
    )
    .fetch_all(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("look up the medium", e))?;
    if let Some(exact) = candidates
        .iter()
        .position(|m| m.name == given || m.hash == given)
    {
        return Ok(candidates.swap_remove(exact));
    }
    if candidates.len() > 1 {
        return Err(CatalogError::MediumAmbiguous {
            given: given.to_owned(),
            candidates: candidates
                .iter()
                .map(|m| format!("{} {}", m.name, m.hash.get(..12).unwrap_or(&m.hash)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    candidates
        .pop()
        .ok_or_else(|| CatalogError::MediumNotFound {
            given: given.to_owned(),
        })
}

/// Records that the medium's volumes were found.
pub async fn record_volumes_found(
    executor: impl PgExecutor<'_>,
    id: MediumId,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update medium set volumes_at = now() where id = $1",
        id as MediumId
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the volumes", e))?;
    Ok(())
}

/// Whether a medium with this name exists.
pub async fn name_is_taken(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<bool, CatalogError> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from medium where name = $1) as "taken!""#,
        name
    )
    .fetch_one(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("look up the medium name", e))
}

/// The format of a source, as recorded on the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[sqlx(type_name = "source_format", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// A block device, imaged with ddrescue.
    Device,
    /// A raw (dd) image, used in place.
    Raw,
    /// Raw segments `.000`, `.001`, ... concatenated in order.
    SplitRaw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// `VMware` disk.
    Vmdk,
    /// Virtual PC / Hyper-V VHD.
    Vhd,
    /// Hyper-V VHDX.
    Vhdx,
    /// Apple disk image (UDIF).
    Dmg,
    /// Expert Witness (`EnCase`) E01.
    Ewf,
}

/// How much of a medium is rescued, as the catalog records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescueCounts {
    /// Bytes of the medium.
    pub total: u64,
    /// Bytes rescued.
    pub rescued: u64,
    /// Bytes found unreadable.
    pub bad: u64,
    /// Unreadable areas.
    pub bad_areas: usize,
    /// Bytes not tried yet.
    pub non_tried: u64,
    /// Bytes not finished (not tried, trimmed or scraped yet).
    pub unfinished: u64,
}

/// Where a medium's image is and how it was read.
#[derive(Debug, Clone)]
pub struct ImageLocation<'a> {
    /// The raw image (in the data directory, or the registered file itself).
    pub image_path: &'a str,
    /// The ddrescue mapfile, if there is one.
    pub mapfile_path: Option<&'a str>,
    /// The source's format.
    pub format: SourceFormat,
    /// The sector size ddrescue used.
    pub sector_size: Option<u32>,
}

/// Records where the medium's image is.
pub async fn record_image_location(
    executor: impl PgExecutor<'_>,
    id: MediumId,
    location: &ImageLocation<'_>,
) -> Result<(), CatalogError> {
    let sector_size = location
        .sector_size
        .map(i32::try_from)
        .transpose()
        .map_err(|_| CatalogError::InvalidValue {
            operation: "record the image location",
            source: sqlx::Error::Protocol("sector size out of range".into()),
        })?;
    sqlx::query!(
        "update medium set image_path = $2, mapfile_path = $3, source_format = $4, sector_size = $5
         where id = $1",
        id as MediumId,
        location.image_path,
        location.mapfile_path,
        location.format as SourceFormat,
        sector_size,
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the image location", e))?;
    Ok(())
}

/// Records how much of the medium is rescued, and its health (recomputed by the caller from the
/// same summary, never carried over).
pub async fn record_rescue(
    executor: impl PgExecutor<'_>,
    id: MediumId,
    summary: &RescueCounts,
    health: Option<Health>,
) -> Result<(), CatalogError> {
    const OPERATION: &str = "record the rescue progress";
    let bad_areas = i32::try_from(summary.bad_areas).unwrap_or(i32::MAX);
    sqlx::query!(
        "update medium set size_bytes = $2, rescued_bytes = $3, bad_bytes = $4, bad_areas = $5,
                non_tried_bytes = $6, unfinished_bytes = $7, health = $8
         where id = $1",
        id as MediumId,
        to_i64(OPERATION, summary.total)?,
        to_i64(OPERATION, summary.rescued)?,
        to_i64(OPERATION, summary.bad)?,
        bad_areas,
        to_i64(OPERATION, summary.non_tried)?,
        to_i64(OPERATION, summary.unfinished)?,
        health.map(HealthValue::from) as Option<HealthValue>,
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx(OPERATION, e))?;
    Ok(())
}

/// Records that imaging finished, with the image's full BLAKE3 digest.
pub async fn record_imaged(
    executor: impl PgExecutor<'_>,
    id: MediumId,
    digest: &[u8; 32],
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update medium set image_digest = $2, imaged_at = now(),
             -- an archive of an earlier image no longer holds this one
             archive_path = case when image_digest is distinct from $2 then null else archive_path end,
             archive_bytes = case when image_digest is distinct from $2 then null else archive_bytes end,
             archived_at = case when image_digest is distinct from $2 then null else archived_at end
         where id = $1",
        id as MediumId,
        &digest[..],
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the image digest", e))?;
    Ok(())
}

/// The recorded image digest of the medium with this hash.
pub async fn image_digest(
    executor: impl PgExecutor<'_>,
    hash: &MediumHash,
) -> Result<Option<[u8; 32]>, CatalogError> {
    let digest = sqlx::query_scalar!(
        "select image_digest from medium where hash = $1",
        hash.as_str()
    )
    .fetch_optional(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("read the image digest", e))?
    .flatten();
    Ok(digest.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()))
}

/// The content sample recorded for a medium ([`crate::imaging::identity::sample_digest`]).
pub async fn identity_sample(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
) -> Result<Option<[u8; 32]>, CatalogError> {
    let sample = sqlx::query_scalar!(
        "select identity_sample from medium where id = $1",
        medium as MediumId
    )
    .fetch_optional(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("read the identity sample", e))?
    .flatten();
    Ok(sample.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()))
}

/// Records a medium's content sample (once: a recorded one is never replaced).
pub async fn record_identity_sample(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    sample: &[u8; 32],
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update medium set identity_sample = $2 where id = $1 and identity_sample is null",
        medium as MediumId,
        sample.as_slice()
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the identity sample", e))?;
    Ok(())
}

/// Every medium, oldest first.
pub async fn list_media(executor: impl PgExecutor<'_>) -> Result<Vec<MediumSummary>, CatalogError> {
    let rows = sqlx::query!(
        r#"select id as "id: MediumId", hash, name, kind as "kind: MediumKind", source,
                  description, size_bytes, health as "health: HealthValue", rescued_bytes,
                  bad_bytes, created_at, imaged_at, volumes_at, enumerated_at, copied_at,
                  verified_at, entries_walked,
                  (select count(*) from inode i where i.medium_id = m.id and i.state = 'pending') as "pending_files!",
                  (select count(*) from inode i where i.medium_id = m.id and i.state = 'failed') as "failed_files!"
           from medium m
           order by created_at, id"#
    )
    .fetch_all(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("list media", e))?;
    Ok(rows
        .into_iter()
        .map(|row| MediumSummary {
            stage: StageTimes {
                imaged_at: row.imaged_at,
                volumes_at: row.volumes_at,
                enumerated_at: row.enumerated_at,
                copied_at: row.copied_at,
                verified_at: row.verified_at,
            }
            .stage(),
            id: row.id,
            hash: row.hash,
            name: row.name,
            kind: row.kind,
            source: row.source,
            description: row.description,
            size_bytes: row.size_bytes,
            health: row.health.map(Health::from),
            rescued_bytes: row.rescued_bytes,
            bad_bytes: row.bad_bytes,
            created_at: row.created_at,
            entries: row.entries_walked,
            pending_files: row.pending_files,
            failed_files: row.failed_files,
        })
        .collect())
}

/// Deletes a medium's row (its volumes follow by cascade). Its partitions must be dropped first
/// with [`super::partitions::drop_medium_partitions`]. Returns whether a row was deleted.
pub async fn delete_medium(
    executor: impl PgExecutor<'_>,
    id: MediumId,
) -> Result<bool, CatalogError> {
    let result = sqlx::query!("delete from medium where id = $1", id as MediumId)
        .execute(executor)
        .await
        .map_err(|e| CatalogError::from_sqlx("delete the medium", e))?;
    Ok(result.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_is_the_furthest_completed_one() {
        let at = Some(Utc::now());
        let mut times = StageTimes::default();
        assert_eq!(times.stage(), Stage::Identified);
        times.imaged_at = at;
        assert_eq!(times.stage(), Stage::Imaged);
        times.volumes_at = at;
        assert_eq!(times.stage(), Stage::Volumes);
        times.enumerated_at = at;
        assert_eq!(times.stage(), Stage::Enumerated);
        times.copied_at = at;
        assert_eq!(times.stage(), Stage::Copied);
        times.verified_at = at;
        assert_eq!(times.stage(), Stage::Verified);
    }

    #[test]
    fn directory_medium_without_imaging_reaches_later_stages() {
        let times = StageTimes {
            volumes_at: Some(Utc::now()),
            enumerated_at: Some(Utc::now()),
            ..StageTimes::default()
        };
        assert_eq!(times.stage(), Stage::Enumerated);
    }
}

/// Where a medium's image is archived (`ntt archive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    /// The compressed image.
    pub path: String,
    /// Its size.
    pub bytes: i64,
}

/// The medium's image digest (BLAKE3, recorded at imaging) and its archive, if any.
pub async fn image_archive(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
) -> Result<(Option<Vec<u8>>, Option<ArchiveRecord>), CatalogError> {
    let row = sqlx::query!(
        "select image_digest, archive_path, archive_bytes from medium where id = $1",
        medium as MediumId
    )
    .fetch_one(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("read the medium's archive", e))?;
    let archive = match (row.archive_path, row.archive_bytes) {
        (Some(path), Some(bytes)) => Some(ArchiveRecord { path, bytes }),
        _ => None,
    };
    Ok((row.image_digest, archive))
}

/// Records the medium's archive (written and found to hold the image).
pub async fn record_archive(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    path: &str,
    bytes: i64,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update medium set archive_path = $2, archive_bytes = $3, archived_at = now() where id = $1",
        medium as MediumId,
        path,
        bytes
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the medium's archive", e))?;
    Ok(())
}
