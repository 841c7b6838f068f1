-- Inode keys lead with the inode number.
--
-- Within a medium's partition medium_id is one value and volume_no nearly always one too, so
-- keys that began (medium_id, volume_no, ino) made every comparison of an index build tie on
-- two columns before reaching the inode number: building the inode key, the claim index and
-- the path -> inode index of a 220 000-entry load took 40 % more CPU than with the inode
-- number first, and those builds are most of a load's publish time. Lookups give all three
-- columns, so the order costs them nothing; foreign keys match a unique index by its set of
-- columns, whatever their order. The path key stays (medium_id, volume_no, path): listings
-- and exports read it in that order.

-- Dropping the key drops every partition's key with it and the per-partition foreign keys
-- that reference them (path_mN and copy_error_mN -> inode_mN); they are made again below.
alter table inode drop constraint inode_pkey cascade;
alter table inode add constraint inode_pkey primary key (ino, volume_no, medium_id);

-- Copy claims take pending files in inode order (the order files were laid down on most
-- filesystems); expired leases are filtered, never sorted.
drop index inode_pending_idx;
create index inode_pending_idx on inode (ino, volume_no, medium_id) where state = 'pending';

drop index path_inode_idx;
create index path_inode_idx on path (ino, volume_no, medium_id);

-- The per-partition foreign keys of every medium that has partitions.
do $$
declare
    m bigint;
begin
    for m in select id from medium where to_regclass('inode_m' || id) is not null order by id loop
        perform ensure_medium_partitions(m);
    end loop;
end;
$$;
