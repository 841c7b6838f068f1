//! The named constraints of the catalog schema, so a violation is a typed error.
//!
//! Rule: every constraint created by `migrations/` has a variant here; the db test suite compares
//! this list with `pg_constraint` and fails on any difference. Per-medium partitions carry their
//! own names (`inode_m42_pkey`, `path_m42_inode_fkey`); they map to the parent's variant.

use std::fmt;

macro_rules! constraints {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// A named constraint of the catalog schema.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Constraint {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Constraint {
            /// Every constraint, in schema order.
            pub const ALL: &[Constraint] = &[$(Constraint::$variant,)*];

            /// The constraint's name in the schema.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Constraint::$variant => $name,)*
                }
            }

            /// What the constraint guarantees, for error messages.
            pub const fn rule(self) -> &'static str {
                match self {
                    $(Constraint::$variant => concat!($($doc),*).trim_ascii(),)*
                }
            }
        }
    };
}

constraints! {
    /// a medium's surrogate id is unique
    MediumPkey = "medium_pkey",
    /// a medium with this hash is already in the catalog
    MediumHashTaken = "medium_hash_key",
    /// a medium with this name is already in the catalog
    MediumNameTaken = "medium_name_key",
    /// a medium hash is 32 lowercase hex characters
    MediumHashFormat = "medium_hash_format",
    /// a medium name is not empty and has no control characters
    MediumNameFormat = "medium_name_format",
    /// a medium's size is not negative
    MediumSizeNonnegative = "medium_size_nonnegative",
    /// an image digest is 32 bytes (BLAKE3-256)
    MediumImageDigestLength = "medium_image_digest_length",
    /// rescued bytes, bad bytes and bad areas are not negative
    MediumRescueNonnegative = "medium_rescue_nonnegative",
    /// a medium's problems are a JSON object
    MediumProblemsObject = "medium_problems_object",
    /// a sector size is 512, 1024, 2048 or 4096 bytes
    MediumSectorSizeValid = "medium_sector_size_valid",
    /// non-tried and unfinished byte counts are not negative
    MediumUnfinishedNonnegative = "medium_unfinished_nonnegative",
    /// an identity sample digest is 32 bytes (BLAKE3-256)
    MediumIdentitySampleLength = "medium_identity_sample_length",
    /// a volume number is unique within its medium
    VolumePkey = "volume_pkey",
    /// a volume belongs to an existing medium
    VolumeMediumFkey = "volume_medium_fkey",
    /// a volume number is not negative
    VolumeNoNonnegative = "volume_no_nonnegative",
    /// a volume's offset and length are not negative
    VolumeExtentNonnegative = "volume_extent_nonnegative",
    /// a ready volume records how it was accessed
    VolumeReadyHasAccess = "volume_ready_has_access",
    /// a failed volume records its error
    VolumeFailedHasError = "volume_failed_has_error",
    /// only filesystem volumes (and their deleted entries) are attached and ready
    VolumeOnlyFilesystemsReady = "volume_only_filesystems_ready",
    /// a deleted volume belongs to a volume of the same medium
    VolumeParentFkey = "volume_parent_fkey",
    /// exactly the deleted volumes name the volume whose deleted entries they hold
    VolumeDeletedHasParent = "volume_deleted_has_parent",
    /// only deleted volumes record when their recovered content was checked
    VolumeCheckedOnlyDeleted = "volume_checked_only_deleted",
    /// a blob id is unique
    BlobPkey = "blob_pkey",
    /// a blob id is 32 bytes (BLAKE3-256)
    BlobIdLength = "blob_id_length",
    /// a blob's size is not negative
    BlobSizeNonnegative = "blob_size_nonnegative",
    /// a blob's verification time and outcome are set together
    BlobVerifiedPair = "blob_verified_pair",
    /// an inode is unique per (medium, volume, inode number)
    InodePkey = "inode_pkey",
    /// an inode belongs to an existing volume
    InodeVolumeFkey = "inode_volume_fkey",
    /// a copied inode points at a blob that is recorded in the catalog
    InodeBlobFkey = "inode_blob_fkey",
    /// an inode's size and link count are not negative
    InodeSizeNonnegative = "inode_size_nonnegative",
    /// an inode's attempt counter is not negative
    InodeAttemptsNonnegative = "inode_attempts_nonnegative",
    /// exactly the inodes that are not regular files are in state `not_a_file`
    InodeNotAFileIffNotFile = "inode_not_a_file_iff_not_file",
    /// exactly the copied inodes have a blob
    InodeCopiedHasBlob = "inode_copied_has_blob",
    /// a failed inode records its error class
    InodeFailedHasClass = "inode_failed_has_class",
    /// only symlinks have a target
    InodeTargetOnlySymlink = "inode_target_only_symlink",
    /// a lease has both a worker and an expiry
    InodeLeaseComplete = "inode_lease_complete",
    /// only pending inodes are leased
    InodeLeaseOnlyPending = "inode_lease_only_pending",
    /// a path is unique per (medium, volume, path bytes)
    PathPkey = "path_pkey",
    /// an exclusion reason is not empty
    PathExcludedReasonNonempty = "path_excluded_reason_nonempty",
    /// a path points at an inode of the same medium and volume
    PathInodeFkey = "path_inode_fkey",
    /// one error row per inode and attempt
    CopyErrorPkey = "copy_error_pkey",
    /// attempts are numbered from 1
    CopyErrorAttemptPositive = "copy_error_attempt_positive",
    /// a copy error belongs to an existing inode
    CopyErrorInodeFkey = "copy_error_inode_fkey",
    /// a catalog setting key is unique
    CatalogSettingPkey = "catalog_setting_pkey",
    /// an entry error has a message
    EntryErrorMessageNonempty = "entry_error_message_nonempty",
    /// a medium's load counts are not negative
    MediumLoadCountsNonnegative = "medium_load_counts_nonnegative",
    /// an ignore pattern's id is unique
    IgnorePatternPkey = "ignore_pattern_pkey",
    /// an ignore pattern belongs to an existing medium (or to none: a site default)
    IgnorePatternMediumFkey = "ignore_pattern_medium_fkey",
    /// this ignore pattern is already recorded for this medium (or site-wide)
    IgnorePatternUnique = "ignore_pattern_unique",
    /// an ignore pattern is not empty
    IgnorePatternNonempty = "ignore_pattern_nonempty",
    /// an inode's damaged ranges are null rather than empty
    InodeDamagedRangesNonempty = "inode_damaged_ranges_nonempty",
    /// an inode's overwritten ranges are null rather than empty
    InodeOverwrittenRangesNonempty = "inode_overwritten_ranges_nonempty",
    /// a volume's damage counts are not negative
    VolumeDamageCountsNonnegative = "volume_damage_counts_nonnegative",
    /// a volume's damage map has both a time and a method, or neither
    VolumeDamageMappedPair = "volume_damage_mapped_pair",
    /// partitions are only created for an existing medium
    PartitionMediumFkey = "partition_medium_fkey",
    /// a table with a partition's name exists but is not that medium's partition
    PartitionNameConflict = "partition_name_conflict",
    /// the catalog has one identity
    CatalogIdentityPkey = "catalog_identity_pkey",
    /// the catalog has one identity
    CatalogIdentitySingleton = "catalog_identity_singleton",
    /// a root is recorded once per kind, machine and path
    ArchiveRootPkey = "archive_root_pkey",
    /// a root is a store or a data directory
    ArchiveRootKind = "archive_root_kind",
    /// a root's path is absolute
    ArchiveRootPathAbsolute = "archive_root_path_absolute",
    /// the name index holds each distinct name once
    FileNamePkey = "file_name_pkey",
    /// a medium holds a name hash once in the name index
    FileNameMediumPkey = "file_name_medium_pkey",
    /// the name index only names media in the catalog
    FileNameMediumMediumFkey = "file_name_medium_medium_fkey",
    /// an image verification has a time and an outcome, or neither
    MediumImageVerifiedPair = "medium_image_verified_pair",
    /// a medium is listed once as holding a content
    BlobMediumPkey = "blob_medium_pkey",
    /// the media holding a content are listed only for contents the store has
    BlobMediumBlobFkey = "blob_medium_blob_fkey",
    /// the media holding a content are media in the catalog
    BlobMediumMediumFkey = "blob_medium_medium_fkey",
    /// a replica is recorded once, by its marker's id
    ReplicaPkey = "replica_pkey",
    /// a replica is of a kind this version can write
    ReplicaKindKnown = "replica_kind_known",
    /// a replica's root is an absolute path
    ReplicaRootAbsolute = "replica_root_absolute",
    /// a replica holds a blob once
    BlobReplicaPkey = "blob_replica_pkey",
    /// an archived image has its path, size and time together
    MediumArchiveComplete = "medium_archive_complete",
    /// an archive's size is not negative
    MediumArchiveBytesNonnegative = "medium_archive_bytes_nonnegative",
    /// a replica's blobs belong to a recorded replica
    BlobReplicaReplicaFkey = "blob_replica_replica_fkey",
    /// a replica holds only contents the catalog names
    BlobReplicaBlobFkey = "blob_replica_blob_fkey",
}

impl Constraint {
    /// The constraint called `name`, including per-medium partition names such as
    /// `inode_m42_pkey` or `path_m42_inode_fkey`; `None` for a name the schema does not have.
    pub fn from_name(name: &str) -> Option<Self> {
        if let Some(found) = Self::ALL.iter().copied().find(|c| c.name() == name) {
            return Some(found);
        }
        let (table, rest) = ["copy_error", "entry_error", "inode", "path"]
            .iter()
            .find_map(|table| Some((*table, name.strip_prefix(table)?.strip_prefix("_m")?)))?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let parent = format!("{table}{}", &rest[digits..]);
        Self::ALL.iter().copied().find(|c| c.name() == parent)
    }

    /// Whether the constraint is one of the partition-level names (created per medium).
    pub const fn is_per_partition(self) -> bool {
        matches!(self, Self::PathInodeFkey | Self::CopyErrorInodeFkey)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (constraint {})", self.rule(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_maps_back_to_its_constraint() {
        for constraint in Constraint::ALL {
            assert_eq!(Constraint::from_name(constraint.name()), Some(*constraint));
        }
    }

    #[test]
    fn partition_names_map_to_the_parent_constraint() {
        assert_eq!(
            Constraint::from_name("inode_m42_pkey"),
            Some(Constraint::InodePkey)
        );
        assert_eq!(
            Constraint::from_name("path_m7_pkey"),
            Some(Constraint::PathPkey)
        );
        assert_eq!(
            Constraint::from_name("path_m7_inode_fkey"),
            Some(Constraint::PathInodeFkey)
        );
        assert_eq!(
            Constraint::from_name("copy_error_m123_inode_fkey"),
            Some(Constraint::CopyErrorInodeFkey)
        );
    }

    #[test]
    fn unknown_names_are_not_guessed() {
        assert_eq!(Constraint::from_name("inode_m_pkey"), None);
        assert_eq!(Constraint::from_name("inode_mx_pkey"), None);
        assert_eq!(Constraint::from_name("something_else"), None);
        assert_eq!(Constraint::from_name("inode_m1_bogus"), None);
    }

    #[test]
    fn display_names_the_rule_and_the_constraint() {
        assert_eq!(
            Constraint::MediumHashTaken.to_string(),
            "a medium with this hash is already in the catalog (constraint medium_hash_key)"
        );
    }
}
