-- Enumeration: entry errors, load counts, ignore patterns, and loads built beside the old one.

-- An entry or directory the walker could not read: recorded, never skipped.
create table entry_error (
    medium_id bigint not null,
    volume_no integer not null,
    path bytea not null,
    errno integer,
    message text not null,
    constraint entry_error_message_nonempty check (message <> '')
) partition by list (medium_id);
comment on table entry_error is 'entries and directories the walker could not read (path: exact bytes; errno when the OS gave one); partitioned per medium';
create index entry_error_path_idx on entry_error (medium_id, volume_no, path);

alter table medium
    add column entries_walked bigint,
    add column inodes_loaded bigint,
    add column paths_excluded bigint,
    add column entry_errors bigint,
    add constraint medium_load_counts_nonnegative check (
        coalesce(entries_walked, 0) >= 0 and coalesce(inodes_loaded, 0) >= 0
        and coalesce(paths_excluded, 0) >= 0 and coalesce(entry_errors, 0) >= 0);
comment on column medium.entries_walked is 'entries the last load walked; equals its path rows (reconciled before the load is published)';

-- Ignore patterns: a matching path is loaded and marked excluded with the pattern as reason.
create table ignore_pattern (
    id bigint generated always as identity,
    medium_id bigint,
    pattern text not null,
    created_at timestamptz not null default now(),
    constraint ignore_pattern_pkey primary key (id),
    constraint ignore_pattern_medium_fkey foreign key (medium_id) references medium (id) on delete cascade,
    constraint ignore_pattern_unique unique nulls not distinct (medium_id, pattern),
    constraint ignore_pattern_nonempty check (pattern <> '')
);
comment on table ignore_pattern is 'regular expressions over path bytes; medium_id null: a site default applied to every medium';

-- The partition functions now cover entry_error too.
create or replace function ensure_medium_partitions(p_medium_id bigint) returns void
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
    perform pg_advisory_xact_lock(5133396, (p_medium_id % 2147483647)::integer);
    foreach parent in array array['inode', 'path', 'copy_error', 'entry_error'] loop
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

create or replace function drop_medium_partitions(p_medium_id bigint) returns void
language plpgsql as $$
declare
    parent text;
begin
    perform pg_advisory_xact_lock(5133396, (p_medium_id % 2147483647)::integer);
    foreach parent in array array['entry_error', 'copy_error', 'path', 'inode'] loop
        execute format('drop table if exists %I', parent || '_m' || p_medium_id);
    end loop;
    -- A load being built beside the published one goes too.
    foreach parent in array array['entry_error', 'path', 'inode'] loop
        execute format('drop table if exists %I', parent || '_m' || p_medium_id || '_next');
    end loop;
end;
$$;
