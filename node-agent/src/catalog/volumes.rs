//! The `volume` table: the partitions and filesystems found on a medium's image.

use serde::Serialize;
use sqlx::PgExecutor;

use super::CatalogError;
use super::media::MediumId;

/// The catalog's `partition_scheme` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "partition_scheme", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum SchemeValue {
    /// See [`Scheme::None`].
    None,
    /// See [`Scheme::Mbr`].
    Mbr,
    /// See [`Scheme::Gpt`].
    Gpt,
    /// See [`Scheme::Apm`].
    Apm,
    /// See [`Scheme::Zip`].
    Zip,
}

/// The catalog's `volume_role` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "volume_role", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RoleValue {
    /// See [`Role::Filesystem`].
    Filesystem,
    /// See [`Role::ExtendedContainer`].
    ExtendedContainer,
    /// See [`Role::Swap`].
    Swap,
    /// See [`Role::Encrypted`].
    Encrypted,
    /// See [`Role::Member`].
    Member,
    /// See [`Role::Blank`].
    Blank,
    /// See [`Role::Unknown`].
    Unknown,
    /// See [`Role::Deleted`].
    Deleted,
}

/// The catalog's `volume_state` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "volume_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// Found, not yet attached.
    Pending,
    /// Attached and readable.
    Ready,
    /// Recorded, never attached (not a filesystem).
    Skipped,
    /// No access method worked.
    Failed,
}

/// The catalog's `volume_access` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "volume_access", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum AccessValue {
    /// See [`Method::Kernel`].
    Kernel,
    /// See [`Method::Fuse`].
    Fuse,
    /// See [`Method::Userspace`].
    Userspace,
}

/// One volume row.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRow {
    /// Number within the medium, from 0 in disk order.
    pub volume_no: i32,
    /// How the image is divided.
    pub scheme: SchemeValue,
    /// Index in the partition table listing, if it is a partition.
    pub partition_index: Option<i32>,
    /// Byte offset in the image.
    pub offset_bytes: i64,
    /// Length in bytes.
    pub length_bytes: i64,
    /// The partition's type or name from the table.
    pub partition_type: Option<String>,
    /// Probed filesystem type.
    pub fs_type: Option<String>,
    /// Filesystem label.
    pub label: Option<String>,
    /// Filesystem UUID or serial.
    pub uuid: Option<String>,
    /// What it is.
    pub role: RoleValue,
    /// How it was last read.
    pub access: Option<AccessValue>,
    /// Where it is in its life.
    pub state: VolumeState,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it is not read (a volume that is no filesystem we read).
    pub problem: Option<String>,
    /// For a deleted volume: the filesystem volume whose deleted entries it holds.
    pub parent_volume_no: Option<i32>,
}

fn to_i64(value: u64) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::InvalidValue {
        operation: "record the volumes",
        source: sqlx::Error::Protocol(format!("{value} does not fit a bigint")),
    })
}

/// A volume found on a medium, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVolume {
    /// Position in the partition table (`None`: whole disk or Zip offset).
    pub partition_index: Option<u32>,
    /// Byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// The partition's type or name from the table.
    pub partition_type: Option<String>,
    /// The probed filesystem type's name.
    pub fs_type: String,
    /// Its label.
    pub label: Option<String>,
    /// Its UUID.
    pub uuid: Option<String>,
    /// What it is.
    pub role: RoleValue,
    /// Why it is not read.
    pub problem: Option<String>,
    /// For a deleted volume: the number of the filesystem volume whose deleted entries it
    /// holds.
    pub parent: Option<u32>,
}

/// Records the volumes found on a medium (divided by `scheme`), unless another run recorded
/// them meanwhile (checked again under the medium's row lock), in one transaction.
pub async fn record_discovered(
    pool: &sqlx::PgPool,
    medium: MediumId,
    scheme: SchemeValue,
    volumes: &[NewVolume],
) -> Result<(), CatalogError> {
    let error = |operation| move |e| CatalogError::from_sqlx(operation, e);
    let mut transaction = pool
        .begin()
        .await
        .map_err(error("begin recording volumes"))?;
    sqlx::query!(
        "select id from medium where id = $1 for update",
        medium.get()
    )
    .fetch_one(&mut *transaction)
    .await
    .map_err(error("lock the medium row"))?;
    if medium_volumes(&mut *transaction, medium).await?.is_empty() {
        insert_volumes(&mut transaction, medium, scheme, volumes).await?;
        super::media::record_volumes_found(&mut *transaction, medium).await?;
    }
    transaction
        .commit()
        .await
        .map_err(error("commit the volumes"))
}

/// Records the volumes found on a medium, numbered from 0 in disk order. Call inside a
/// transaction together with [`medium_volumes`] to refuse a second recording: volume rows are
/// never replaced once recorded (inodes hang off them).
pub async fn insert_volumes(
    transaction: &mut sqlx::PgConnection,
    medium: MediumId,
    scheme: SchemeValue,
    volumes: &[NewVolume],
) -> Result<(), CatalogError> {
    for (number, volume) in volumes.iter().enumerate() {
        let state = if matches!(volume.role, RoleValue::Filesystem | RoleValue::Deleted) {
            VolumeState::Pending
        } else {
            VolumeState::Skipped
        };
        let volume_no = i32::try_from(number).map_err(|_| CatalogError::InvalidValue {
            operation: "record the volumes",
            source: sqlx::Error::Protocol("too many volumes".into()),
        })?;
        sqlx::query!(
            "insert into volume (medium_id, volume_no, scheme, partition_index, offset_bytes,
                                 length_bytes, partition_type, fs_type, label, uuid, role, state,
                                 problem, parent_volume_no)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            medium as MediumId,
            volume_no,
            scheme as SchemeValue,
            volume.partition_index.and_then(|i| i32::try_from(i).ok()),
            to_i64(volume.offset)?,
            to_i64(volume.length)?,
            volume.partition_type,
            volume.fs_type,
            volume.label,
            volume.uuid,
            volume.role as RoleValue,
            state as VolumeState,
            volume.problem,
            volume.parent.and_then(|n| i32::try_from(n).ok()),
        )
        .execute(&mut *transaction)
        .await
        .map_err(|e| CatalogError::from_sqlx("record the volumes", e))?;
    }
    Ok(())
}

/// The medium's volumes, in order.
pub async fn medium_volumes(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
) -> Result<Vec<VolumeRow>, CatalogError> {
    sqlx::query_as!(
        VolumeRow,
        r#"select volume_no, scheme as "scheme: SchemeValue", partition_index, offset_bytes,
                  length_bytes, partition_type, fs_type, label, uuid, role as "role: RoleValue",
                  access as "access: AccessValue", state as "state: VolumeState", error,
                  problem, parent_volume_no
           from volume where medium_id = $1 order by volume_no"#,
        medium as MediumId
    )
    .fetch_all(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("list the volumes", e))
}

/// Records that a volume can be read, and how (clears an earlier failure). Writes nothing when
/// that is already recorded: a transaction without changes commits without waiting for the
/// WAL to reach the disk (40 ms of every `ntt enumerate` that reused a mount).
pub async fn record_ready(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    volume_no: i32,
    access: AccessValue,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update volume set state = 'ready', access = $3, error = null
         where medium_id = $1 and volume_no = $2
           and (state <> 'ready' or access is distinct from $3 or error is not null)",
        medium as MediumId,
        volume_no,
        access as AccessValue,
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the volume's access", e))?;
    Ok(())
}

/// Records that no method could read a volume, and why.
pub async fn record_failed(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    volume_no: i32,
    error: &str,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "update volume set state = 'failed', access = null, error = $3
         where medium_id = $1 and volume_no = $2",
        medium as MediumId,
        volume_no,
        error,
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the volume's failure", e))?;
    Ok(())
}

/// Records the one volume of a directory medium (the tree itself, read where it is), once.
pub async fn insert_directory_volume(
    executor: impl PgExecutor<'_>,
    medium: MediumId,
    fs_type: &str,
) -> Result<(), CatalogError> {
    sqlx::query!(
        "insert into volume (medium_id, volume_no, scheme, offset_bytes, length_bytes, fs_type,
                             role, state, access)
         values ($1, 0, 'none', 0, 0, $2, 'filesystem', 'ready', 'kernel')
         on conflict (medium_id, volume_no) do nothing",
        medium as MediumId,
        fs_type,
    )
    .execute(executor)
    .await
    .map_err(|e| CatalogError::from_sqlx("record the directory's volume", e))?;
    Ok(())
}
