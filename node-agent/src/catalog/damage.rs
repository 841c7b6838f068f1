//! Damage maps in the catalog: damaged ranges per inode, damage counts per volume, and the
//! unreadable areas a medium's map was built from.

use std::ops::Range;

use sqlx::{PgExecutor, PgPool};

use super::CatalogError;
use super::media::MediumId;

/// How a volume's damage was mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DamageMethod {
    /// FIEMAP extents of a kernel mount.
    Fiemap,
    /// The Sleuth Kit's block maps.
    Sleuthkit,
    /// No block map: the bytes are counted, their owners unknown.
    None,
}

impl DamageMethod {
    /// The catalog's `damage_method` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fiemap => "fiemap",
            Self::Sleuthkit => "sleuthkit",
            Self::None => "none",
        }
    }
}

/// Damage found in one file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDamage {
    /// The file's inode in the catalog.
    pub ino: i64,
    /// Damaged byte ranges of its content (file offsets, sorted, merged; not yet clipped to
    /// its size).
    pub ranges: Vec<Range<u64>>,
    /// Unreadable bytes of the volume inside its extents.
    pub bad_bytes: u64,
}

fn error(what: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |e| CatalogError::from_sqlx(what, e)
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// PostgreSQL's text form of an `int8multirange`: `{[0,512),[4096,8192)}`.
pub fn multirange(ranges: &[Range<u64>]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| format!("[{},{})", r.start, r.end))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Whether the medium's current map was built from exactly `areas` (false when it has none).
pub async fn map_is_current(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    areas: &[Range<u64>],
) -> Result<bool, CatalogError> {
    sqlx::query_scalar(
        "select coalesce(damage_areas = $2::int8multirange, false) from medium where id = $1",
    )
    .bind(medium.get())
    .bind(multirange(areas))
    .fetch_one(executor)
    .await
    .map_err(error("compare the damage map"))
}

/// Records the areas the medium's map was built from.
pub async fn record_areas(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    areas: &[Range<u64>],
) -> Result<(), CatalogError> {
    sqlx::query("update medium set damage_areas = $2::int8multirange where id = $1")
        .bind(medium.get())
        .bind(multirange(areas))
        .execute(executor)
        .await
        .map_err(error("record the damage areas"))?;
    Ok(())
}

/// Regular files of a volume after inode `after`, in inode order, one path each: (inode,
/// path). Pages of `limit`, so memory stays bounded whatever the volume's size.
pub async fn files_after(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    volume_no: i32,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>, CatalogError> {
    sqlx::query_as(
        "select distinct on (p.ino) p.ino, p.path
         from path p join inode i using (medium_id, volume_no, ino)
         where p.medium_id = $1 and p.volume_no = $2 and p.ino > $3 and i.kind = 'file'
         order by p.ino, p.path
         limit $4",
    )
    .bind(medium.get())
    .bind(volume_no)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(error("list the files to map"))
}

/// The kind and first path of inode `ino`, if the catalog has it.
pub async fn entry_by_inode(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    volume_no: i32,
    ino: i64,
) -> Result<Option<(i64, String, Vec<u8>)>, CatalogError> {
    sqlx::query_as(
        "select i.ino, i.kind::text, p.path
         from inode i join path p using (medium_id, volume_no, ino)
         where i.medium_id = $1 and i.volume_no = $2 and i.ino = $3
         order by p.path limit 1",
    )
    .bind(medium.get())
    .bind(volume_no)
    .bind(ino)
    .fetch_optional(executor)
    .await
    .map_err(error("look up an inode"))
}

/// The inode and kind at `path`, if the catalog has it.
pub async fn entry_by_path(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    volume_no: i32,
    path: &[u8],
) -> Result<Option<(i64, String, Vec<u8>)>, CatalogError> {
    sqlx::query_as(
        "select i.ino, i.kind::text, p.path
         from path p join inode i using (medium_id, volume_no, ino)
         where p.medium_id = $1 and p.volume_no = $2 and p.path = $3",
    )
    .bind(medium.get())
    .bind(volume_no)
    .bind(path)
    .fetch_optional(executor)
    .await
    .map_err(error("look up a path"))
}

/// A volume's damage counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VolumeCounts {
    /// Unreadable bytes inside the volume.
    pub bad_bytes: u64,
    /// Of those, in files' content.
    pub file_bytes: u64,
    /// In unallocated space.
    pub free_bytes: u64,
    /// In filesystem structures.
    pub metadata_bytes: u64,
    /// Not attributed.
    pub unattributed_bytes: u64,
}

/// What recording a volume's map changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recorded {
    /// Files damaged now.
    pub damaged_files: u64,
    /// Copied files whose damage shrank or went: set back to pending, to be copied again.
    pub recopy: u64,
}

/// Records a volume's damage map in one transaction: every file's damaged ranges (clipped to
/// its size; files not in `files` become undamaged), the volume's counts and structure lines,
/// blobs of damaged files marked, and copied files whose damage shrank set to be copied again.
pub async fn record_volume(
    pool: &PgPool,
    medium: MediumId,
    volume_no: i32,
    method: DamageMethod,
    counts: &VolumeCounts,
    structures: &[String],
    files: &[FileDamage],
) -> Result<Recorded, CatalogError> {
    let mut transaction = pool.begin().await.map_err(error("begin the damage map"))?;
    let inodes: Vec<i64> = files.iter().map(|f| f.ino).collect();
    let ranges: Vec<String> = files.iter().map(|f| multirange(&f.ranges)).collect();
    sqlx::query(
        "create temporary table damage_new (ino bigint primary key, ranges int8multirange)
         on commit drop",
    )
    .execute(&mut *transaction)
    .await
    .map_err(error("stage the damage map"))?;
    sqlx::query(
        "insert into damage_new (ino, ranges)
         select i.ino, nullif(n.ranges::int8multirange * int8multirange(int8range(0, greatest(i.size, 0))),
                              '{}'::int8multirange)
         from unnest($3::bigint[], $4::text[]) as n (ino, ranges)
         join inode i on i.medium_id = $1 and i.volume_no = $2 and i.ino = n.ino
         on conflict (ino) do update
            set ranges = nullif(coalesce(damage_new.ranges, '{}'::int8multirange)
                                + coalesce(excluded.ranges, '{}'::int8multirange), '{}'::int8multirange)",
    )
    .bind(medium.get())
    .bind(volume_no)
    .bind(&inodes)
    .bind(&ranges)
    .execute(&mut *transaction)
    .await
    .map_err(error("stage the damage map"))?;
    // Damage that shrank or went: the image holds more of the file now; copy it again.
    let recopy = sqlx::query(
        "update inode i set state = 'pending', blob_id = null, copied_at = null, attempts = 0,
                            error_class = null, error_message = null
         where i.medium_id = $1 and i.volume_no = $2 and i.state = 'copied'
           and i.damaged_ranges is not null
           and i.damaged_ranges is distinct from
               (select n.ranges from damage_new n where n.ino = i.ino)",
    )
    .bind(medium.get())
    .bind(volume_no)
    .execute(&mut *transaction)
    .await
    .map_err(error("queue files for copying again"))?
    .rows_affected();
    sqlx::query(
        "update inode i set damaged_ranges = null
         where i.medium_id = $1 and i.volume_no = $2 and i.damaged_ranges is not null
           and not exists (select 1 from damage_new n where n.ino = i.ino and n.ranges is not null)",
    )
    .bind(medium.get())
    .bind(volume_no)
    .execute(&mut *transaction)
    .await
    .map_err(error("clear damage that went"))?;
    let damaged_files = sqlx::query(
        "update inode i set damaged_ranges = n.ranges
         from damage_new n
         where i.medium_id = $1 and i.volume_no = $2 and i.ino = n.ino and n.ranges is not null",
    )
    .bind(medium.get())
    .bind(volume_no)
    .execute(&mut *transaction)
    .await
    .map_err(error("record damaged files"))?
    .rows_affected();
    record_counts(
        &mut transaction,
        medium,
        volume_no,
        method,
        counts,
        structures,
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(error("commit the damage map"))?;
    Ok(Recorded {
        damaged_files,
        recopy,
    })
}

/// The second half of [`record_volume`]: blobs of damaged copied files marked, the volume's
/// counts and structure lines written.
async fn record_counts(
    connection: &mut sqlx::PgConnection,
    medium: MediumId,
    volume_no: i32,
    method: DamageMethod,
    counts: &VolumeCounts,
    structures: &[String],
) -> Result<(), CatalogError> {
    sqlx::query(
        "update blob set damaged_source = true
         where not damaged_source
           and id in (select blob_id from inode
                      where medium_id = $1 and volume_no = $2 and state = 'copied'
                        and damaged_ranges is not null)",
    )
    .bind(medium.get())
    .bind(volume_no)
    .execute(&mut *connection)
    .await
    .map_err(error("mark blobs from damaged files"))?;
    sqlx::query(
        "update volume set damage_mapped_at = now(), damage_method = $3::damage_method,
                           damage_bad_bytes = $4, damage_file_bytes = $5, damage_free_bytes = $6,
                           damage_metadata_bytes = $7, damage_unattributed_bytes = $8,
                           damage_metadata = $9
         where medium_id = $1 and volume_no = $2",
    )
    .bind(medium.get())
    .bind(volume_no)
    .bind(method.as_str())
    .bind(as_i64(counts.bad_bytes))
    .bind(as_i64(counts.file_bytes))
    .bind(as_i64(counts.free_bytes))
    .bind(as_i64(counts.metadata_bytes))
    .bind(as_i64(counts.unattributed_bytes))
    .bind(structures)
    .execute(&mut *connection)
    .await
    .map_err(error("record the volume's damage"))?;
    Ok(())
}

/// A volume's recorded damage map.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct VolumeDamageRow {
    /// The volume.
    pub volume_no: i32,
    /// How it was mapped.
    pub method: String,
    /// Unreadable bytes inside it.
    pub bad_bytes: i64,
    /// In files' content.
    pub file_bytes: i64,
    /// In free space.
    pub free_bytes: i64,
    /// In filesystem structures.
    pub metadata_bytes: i64,
    /// Not attributed.
    pub unattributed_bytes: i64,
    /// Structures hit.
    pub structures: Vec<String>,
}

/// A medium's damage, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DamageSummary {
    /// Whether a damage map was made from the current load.
    pub mapped: bool,
    /// Files with damaged content.
    pub files: i64,
    /// Damaged bytes of their content.
    pub bytes: i64,
    /// Of those files, copied (their blobs hold zeros where the sectors were unreadable).
    pub copied: i64,
    /// Per volume.
    pub volumes: Vec<VolumeDamageRow>,
}

/// The medium's damage summary.
pub async fn summary(pool: &PgPool, medium: MediumId) -> Result<DamageSummary, CatalogError> {
    let (files, bytes, copied): (i64, i64, i64) = sqlx::query_as(
        "select count(*),
                coalesce(sum((select sum(upper(r) - lower(r)) from unnest(damaged_ranges) r)), 0)::bigint,
                count(*) filter (where state = 'copied')
         from inode where medium_id = $1 and damaged_ranges is not null",
    )
    .bind(medium.get())
    .fetch_one(pool)
    .await
    .map_err(error("sum the damage"))?;
    let volumes: Vec<VolumeDamageRow> = sqlx::query_as(
        "select volume_no, damage_method::text as method, damage_bad_bytes as bad_bytes,
                damage_file_bytes as file_bytes, damage_free_bytes as free_bytes,
                damage_metadata_bytes as metadata_bytes,
                damage_unattributed_bytes as unattributed_bytes,
                coalesce(damage_metadata, '{}') as structures
         from volume where medium_id = $1 and damage_mapped_at is not null order by volume_no",
    )
    .bind(medium.get())
    .fetch_all(pool)
    .await
    .map_err(error("read the volumes' damage"))?;
    let mapped: bool =
        sqlx::query_scalar("select damage_areas is not null from medium where id = $1")
            .bind(medium.get())
            .fetch_one(pool)
            .await
            .map_err(error("read the damage map state"))?;
    Ok(DamageSummary {
        mapped,
        files,
        bytes,
        copied,
        volumes,
    })
}
