-- The store and the data directories belong to this catalog.
--
-- A store or data directory that is missing (the archive disk not mounted) must not be
-- created again silently: images and blobs would fill the root filesystem, and the real store
-- would later report its blobs missing. `ntt init` writes a marker (`.ntt-root`) naming this
-- catalog into each root and records where it did so; every command that reads or writes a
-- root checks the marker first, and `ntt init` refuses an empty directory where the catalog
-- recorded a root before.
create table catalog_identity (
    singleton boolean primary key default true,
    id uuid not null default gen_random_uuid(),
    created_at timestamptz not null default now(),
    constraint catalog_identity_singleton check (singleton)
);
insert into catalog_identity default values;
comment on table catalog_identity is 'One row: the id the markers of this catalog''s store and data directories name';

create table archive_root (
    kind text not null,
    machine text not null,
    path text not null,
    id uuid not null,
    initialised_at timestamptz not null default now(),
    constraint archive_root_pkey primary key (kind, machine, path),
    constraint archive_root_kind check (kind in ('store', 'data')),
    constraint archive_root_path_absolute check (left(path, 1) = '/')
);
comment on table archive_root is 'Where `ntt init` initialised a store or data directory: the machine (its /etc/machine-id), the absolute path and the id its marker holds';
