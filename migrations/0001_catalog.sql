-- The NTT catalog: media, their volumes, every inode and path (partitioned per medium),
-- the content-addressed blobs, and copy errors.
--
-- Rules of this schema (design.md section 5, and the predecessor's lessons in section 11):
-- * States are typed enums, never overloaded text; every constraint is named, so the Rust side
--   maps a violation to a typed error by name (catalog::Constraint).
-- * Identity of an inode is (medium_id, volume_no, ino): two volumes of one medium never merge.
-- * inode, path and copy_error are LIST-partitioned by medium_id. Partitions are created by
--   ensure_medium_partitions(id) and named from the surrogate id (inode_m42), never from a hash
--   prefix, so two media can never share or clobber a partition.
-- * Paths are bytea: the exact bytes the filesystem returned, relative to the volume root.
-- * Forward-only: never edit this file once released; add a new migration.

create type medium_kind as enum ('device', 'image', 'directory');
comment on type medium_kind is 'what the medium was ingested from';

create type health as enum ('ok', 'incomplete', 'corrupt', 'failed');
comment on type health is 'rescued share of the image: ok 100 %, incomplete >= 95 %, corrupt >= 50 %, failed < 50 % (thresholds configurable)';

create type entry_kind as enum ('file', 'dir', 'symlink', 'block', 'char', 'fifo', 'socket');

create type copy_state as enum ('pending', 'copied', 'excluded', 'not_a_file', 'failed');
comment on type copy_state is 'pending: not yet copied; copied: content in the store (blob_id set); excluded: every path matched an ignore pattern; not_a_file: directories, symlinks, devices (recorded, not copied); failed: permanent error or retries exhausted (error_class set)';

create type error_class as enum ('io', 'beyond_eof', 'vanished', 'permission', 'name', 'store_full', 'unknown');
comment on type error_class is 'io: read error; beyond_eof: read past the end of the device; vanished: entry disappeared; permission: access denied; name: path cannot be opened; store_full: no space in the store; unknown: anything else';

create type volume_access as enum ('kernel', 'fuse', 'userspace');
comment on type volume_access is 'how a volume was read: kernel loop mount, FUSE driver, or the user-space reader (The Sleuth Kit)';

create type volume_state as enum ('pending', 'ready', 'skipped', 'failed');
comment on type volume_state is 'pending: found, not yet attached; ready: attached and readable; skipped: recorded but not mounted (extended container, swap, empty); failed: no access method worked (error set)';

create type partition_scheme as enum ('none', 'mbr', 'gpt', 'apm', 'zip');

create type verify_outcome as enum ('ok', 'mismatch', 'missing');

create table medium (
    id bigint generated always as identity,
    hash text not null,
    name text not null,
    kind medium_kind not null,
    source text not null,
    description text,
    model text,
    serial text,
    size_bytes bigint,
    image_path text,
    mapfile_path text,
    image_digest bytea,
    health health,
    rescued_bytes bigint,
    bad_bytes bigint,
    bad_areas integer,
    problems jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    imaged_at timestamptz,
    volumes_at timestamptz,
    enumerated_at timestamptz,
    copied_at timestamptz,
    verified_at timestamptz,
    constraint medium_pkey primary key (id),
    constraint medium_hash_key unique (hash),
    constraint medium_name_key unique (name),
    constraint medium_hash_format check (hash ~ '^[0-9a-f]{32}$'),
    constraint medium_name_format check (name <> '' and name !~ '[[:cntrl:]]'),
    constraint medium_size_nonnegative check (size_bytes >= 0),
    constraint medium_image_digest_length check (octet_length(image_digest) = 32),
    constraint medium_rescue_nonnegative check (rescued_bytes >= 0 and bad_bytes >= 0 and bad_areas >= 0),
    constraint medium_problems_object check (jsonb_typeof(problems) = 'object')
);
comment on table medium is 'one row per physical or virtual medium; hash is the identity (BLAKE3 over size, model, serial, first and last MiB; first 32 hex)';
comment on column medium.id is 'surrogate id; partitions are named from it';
comment on column medium.problems is 'medium-level findings (beyond_eof, high_error_rate, volume_lost, ...), one key each';

create table volume (
    medium_id bigint not null,
    volume_no integer not null,
    scheme partition_scheme not null,
    partition_index integer,
    offset_bytes bigint not null,
    length_bytes bigint not null,
    partition_type text,
    fs_type text,
    label text,
    uuid text,
    access volume_access,
    state volume_state not null default 'pending',
    error text,
    constraint volume_pkey primary key (medium_id, volume_no),
    constraint volume_medium_fkey foreign key (medium_id) references medium (id) on delete cascade,
    constraint volume_no_nonnegative check (volume_no >= 0),
    constraint volume_extent_nonnegative check (offset_bytes >= 0 and length_bytes >= 0),
    constraint volume_ready_has_access check (state <> 'ready' or access is not null),
    constraint volume_failed_has_error check (state <> 'failed' or error is not null)
);
comment on table volume is 'a filesystem (or recorded non-filesystem partition) on a medium, numbered from 0';

create table blob (
    id bytea not null,
    size bigint not null,
    mime_type text,
    stored_at timestamptz not null default now(),
    verified_at timestamptz,
    verify_outcome verify_outcome,
    constraint blob_pkey primary key (id),
    constraint blob_id_length check (octet_length(id) = 32),
    constraint blob_size_nonnegative check (size >= 0),
    constraint blob_verified_pair check ((verified_at is null) = (verify_outcome is null))
);
comment on table blob is 'one row per unique content in the store, keyed by its BLAKE3-256 digest (catalog_setting blob_algorithm)';

create table inode (
    medium_id bigint not null,
    volume_no integer not null,
    ino bigint not null,
    kind entry_kind not null,
    mode integer not null,
    uid bigint not null,
    gid bigint not null,
    nlink bigint not null,
    size bigint not null,
    rdev bigint,
    mtime_ns bigint,
    ctime_ns bigint,
    atime_ns bigint,
    birth_ns bigint,
    target bytea,
    state copy_state not null,
    blob_id bytea,
    attempts integer not null default 0,
    error_class error_class,
    error_message text,
    lease_worker text,
    lease_until timestamptz,
    damaged_ranges int8multirange,
    copied_at timestamptz,
    constraint inode_pkey primary key (medium_id, volume_no, ino),
    constraint inode_volume_fkey foreign key (medium_id, volume_no) references volume (medium_id, volume_no) on delete cascade,
    constraint inode_blob_fkey foreign key (blob_id) references blob (id),
    constraint inode_size_nonnegative check (size >= 0 and nlink >= 0),
    constraint inode_attempts_nonnegative check (attempts >= 0),
    constraint inode_not_a_file_iff_not_file check ((kind = 'file') = (state <> 'not_a_file')),
    constraint inode_copied_has_blob check ((state = 'copied') = (blob_id is not null)),
    constraint inode_failed_has_class check (state <> 'failed' or error_class is not null),
    constraint inode_target_only_symlink check (target is null or kind = 'symlink'),
    constraint inode_lease_complete check ((lease_worker is null) = (lease_until is null)),
    constraint inode_lease_only_pending check (lease_worker is null or state = 'pending')
) partition by list (medium_id);
comment on table inode is 'one row per inode of a volume; identity (medium_id, volume_no, ino); partitioned per medium';
comment on column inode.damaged_ranges is 'byte ranges of the file that lie on unreadable sectors of the image';

-- Copy claims: pending files of one medium, oldest lease first; expired leases are reclaimable.
create index inode_pending_idx on inode (medium_id, lease_until nulls first) where state = 'pending';
create index inode_failed_idx on inode (medium_id, error_class) where state = 'failed';
create index inode_blob_idx on inode (blob_id) where blob_id is not null;

create table path (
    medium_id bigint not null,
    volume_no integer not null,
    path bytea not null,
    ino bigint not null,
    excluded_reason text,
    constraint path_pkey primary key (medium_id, volume_no, path),
    constraint path_excluded_reason_nonempty check (excluded_reason <> '')
) partition by list (medium_id);
comment on table path is 'one row per directory entry; path is the exact bytes relative to the volume root; partitioned per medium';
-- The foreign key to inode is added per partition (path_m42 -> inode_m42) by
-- ensure_medium_partitions: a parent-level key made deletes scan every partition (predecessor).
create index path_inode_idx on path (medium_id, volume_no, ino);

create table copy_error (
    medium_id bigint not null,
    volume_no integer not null,
    ino bigint not null,
    at timestamptz not null default now(),
    attempt integer not null,
    class error_class not null,
    message text not null,
    constraint copy_error_pkey primary key (medium_id, volume_no, ino, attempt),
    constraint copy_error_attempt_positive check (attempt > 0)
) partition by list (medium_id);
comment on table copy_error is 'history of copy errors per inode, capped per inode by the copier; partitioned per medium';

create table catalog_setting (
    key text not null,
    value text not null,
    constraint catalog_setting_pkey primary key (key)
);
insert into catalog_setting (key, value) values ('blob_algorithm', 'blake3');

-- Create (or confirm) the inode, path and copy_error partitions of one medium. Idempotent and
-- safe to call concurrently (a transaction-scoped advisory lock per medium). Refuses a table of
-- the right name that is not attached as the right partition, rather than silently using it.
create function ensure_medium_partitions(p_medium_id bigint) returns void
language plpgsql as $$
declare
    parent text;
    child text;
    fkey text;
begin
    if not exists (select 1 from medium where id = p_medium_id) then
        raise exception 'medium % does not exist', p_medium_id
            using errcode = 'foreign_key_violation', constraint = 'partition_medium_fkey';
    end if;
    -- 0x4e5454 = 'NTT': keeps our advisory locks apart from sqlx's migration lock.
    perform pg_advisory_xact_lock(5133396, (p_medium_id % 2147483647)::integer);
    foreach parent in array array['inode', 'path', 'copy_error'] loop
        child := parent || '_m' || p_medium_id;
        if to_regclass(child) is null then
            execute format('create table %I partition of %I for values in (%s)', child, parent, p_medium_id);
        elsif not exists (
            select 1 from pg_inherits
            where inhrelid = to_regclass(child) and inhparent = to_regclass(parent)
              and pg_get_expr((select relpartbound from pg_class where oid = inhrelid), inhrelid)
                  = format('FOR VALUES IN (''%s'')', p_medium_id)
        ) then
            raise exception 'table % exists but is not the % partition of medium %', child, parent, p_medium_id
                using errcode = 'duplicate_table', constraint = 'partition_name_conflict';
        end if;
    end loop;
    foreach parent in array array['path', 'copy_error'] loop
        child := parent || '_m' || p_medium_id;
        fkey := child || '_inode_fkey';
        if not exists (select 1 from pg_constraint where conname = fkey and conrelid = to_regclass(child)) then
            execute format(
                'alter table %I add constraint %I foreign key (medium_id, volume_no, ino) '
                'references %I (medium_id, volume_no, ino) on delete cascade',
                child, fkey, 'inode_m' || p_medium_id);
        end if;
    end loop;
end;
$$;

-- Drop the partitions of one medium (and only that medium); a no-op when there are none.
create function drop_medium_partitions(p_medium_id bigint) returns void
language plpgsql as $$
declare
    parent text;
begin
    perform pg_advisory_xact_lock(5133396, (p_medium_id % 2147483647)::integer);
    foreach parent in array array['copy_error', 'path', 'inode'] loop
        execute format('drop table if exists %I', parent || '_m' || p_medium_id);
    end loop;
end;
$$;
