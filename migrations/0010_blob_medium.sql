-- `ntt where` at archive scale: which media hold a content, without the partitions.
--
-- Finding the media that hold a blob through the partitioned `inode` table makes every new
-- connection plan over every medium's partition (70-95 ms of planning at 100 media, against 4 ms
-- of work). This table answers the same question from one small index. It is written by the
-- copier in the statement that marks inodes copied (same transaction), emptied for a medium by
-- the swap that publishes a new load (whose inodes hold no blob yet), and follows the medium on
-- purge. It may still name a medium that no longer holds the content (a file queued for copying
-- again after its damage shrank): readers take it as the media to look in, and the medium's own
-- partitions say what is there.
create table blob_medium (
    blob_id bytea not null,
    medium_id bigint not null,
    constraint blob_medium_pkey primary key (blob_id, medium_id),
    constraint blob_medium_blob_fkey foreign key (blob_id) references blob (id),
    constraint blob_medium_medium_fkey foreign key (medium_id) references medium (id) on delete cascade
);
comment on table blob_medium is 'media holding a file stored as this blob: every (blob, medium) some inode has, perhaps with a few no inode has any longer; the media to look in, not the answer';
create index blob_medium_medium_idx on blob_medium (medium_id);

insert into blob_medium (blob_id, medium_id)
select distinct blob_id, medium_id from inode where blob_id is not null;
