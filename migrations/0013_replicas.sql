-- `ntt replicate --to ROOT`: second copies of the store, tracked per replica and blob.
--
-- A replica is a directory (another disk, a mount) laid out like the store and marked as a
-- replica of this catalog; `kind` leaves room for other targets (an object store) later. A row
-- of `blob_replica` is written only after the blob's file in the replica was re-read and found
-- to hash to its name, so a row says the replica holds the blob; `ntt verify --replica` re-hashes
-- them later and records what it finds.
create table replica (
    id text not null,
    kind text not null default 'directory',
    root text not null,
    created_at timestamptz not null default now(),
    replicated_at timestamptz,
    constraint replica_pkey primary key (id),
    constraint replica_kind_known check (kind in ('directory')),
    constraint replica_root_absolute check (root like '/%')
);
comment on table replica is 'a second copy of the store (ntt replicate): its id is the one in its root''s marker';
comment on column replica.root is 'where it was last replicated to (a path on the host that ran ntt replicate)';
comment on column replica.replicated_at is 'when the last ntt replicate run to it finished';

create table blob_replica (
    replica_id text not null,
    blob_id bytea not null,
    copied_at timestamptz not null default now(),
    verified_at timestamptz not null default now(),
    verify_outcome verify_outcome not null default 'ok',
    constraint blob_replica_pkey primary key (replica_id, blob_id),
    constraint blob_replica_replica_fkey foreign key (replica_id) references replica (id) on delete cascade,
    constraint blob_replica_blob_fkey foreign key (blob_id) references blob (id)
);
comment on table blob_replica is 'blobs a replica holds: copied, re-read and found right at copied_at; verified_at/verify_outcome: the last check';
create index blob_replica_verify_idx on blob_replica (replica_id, verified_at, blob_id);
create index blob_replica_blob_idx on blob_replica (blob_id);
