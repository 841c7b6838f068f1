-- Damaged files: the unreadable areas of a medium's image mapped onto the files they hit.

-- inode.damaged_ranges exists since 0001; it is now filled, and never empty (null: none).
alter table inode
    add constraint inode_damaged_ranges_nonempty check (not isempty(damaged_ranges));
comment on column inode.damaged_ranges is 'byte ranges of the file''s content that lie on unreadable areas of the image (read as zeros); null: none (or not mapped, see volume.damage_mapped_at)';
create index inode_damaged_idx on inode (medium_id, volume_no) where damaged_ranges is not null;

alter table blob
    add column damaged_source boolean not null default false;
comment on column blob.damaged_source is 'true when some file stored as this blob was copied while parts of it were unreadable: the blob holds zeros there';

create type damage_method as enum ('fiemap', 'sleuthkit', 'none');
comment on type damage_method is 'fiemap: file extents from the kernel (FIEMAP) on a kernel mount; sleuthkit: block maps from The Sleuth Kit (ifind, istat, blkls); none: no block map for this filesystem type, only the volume''s unreadable bytes are known';

alter table volume
    add column damage_mapped_at timestamptz,
    add column damage_method damage_method,
    add column damage_bad_bytes bigint,
    add column damage_file_bytes bigint,
    add column damage_free_bytes bigint,
    add column damage_metadata_bytes bigint,
    add column damage_unattributed_bytes bigint,
    add column damage_metadata text[],
    add constraint volume_damage_counts_nonnegative check (
        coalesce(damage_bad_bytes, 0) >= 0 and coalesce(damage_file_bytes, 0) >= 0
        and coalesce(damage_free_bytes, 0) >= 0 and coalesce(damage_metadata_bytes, 0) >= 0
        and coalesce(damage_unattributed_bytes, 0) >= 0),
    add constraint volume_damage_mapped_pair check ((damage_mapped_at is null) = (damage_method is null));
comment on column volume.damage_bad_bytes is 'unreadable bytes of the image inside this volume when the damage map was made';
comment on column volume.damage_file_bytes is 'of those, bytes inside files'' content';
comment on column volume.damage_free_bytes is 'of those, bytes in unallocated space (no file lost anything)';
comment on column volume.damage_metadata_bytes is 'of those, bytes in filesystem structures (superblock, tables, directories, journal): entries may be missing';
comment on column volume.damage_unattributed_bytes is 'of those, bytes not attributed (no block map for the type, or beyond the examination limit)';
comment on column volume.damage_metadata is 'the filesystem structures hit, one line each (what, and the byte range within the volume)';

alter table medium
    add column damage_areas int8multirange;
comment on column medium.damage_areas is 'the unreadable byte ranges of the image that the current damage map was built from; a later rescue that changes them calls for a new map';
