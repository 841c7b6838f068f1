-- Deleted entries: each filesystem volume The Sleuth Kit reads gets a volume of role 'deleted'
-- (the same bytes, numbered after the discovered volumes) whose entries are the filesystem's
-- deleted directory entries, listed and recovered with The Sleuth Kit. Their accounting is the
-- deleted volume's, apart from the live one's. A recovered file whose content lies in units
-- that are now allocated to other files records those byte ranges: that content is not the
-- deleted file's.

alter table volume
    add column parent_volume_no integer,
    add constraint volume_parent_fkey foreign key (medium_id, parent_volume_no)
        references volume (medium_id, volume_no) on delete cascade,
    add constraint volume_deleted_has_parent check ((role = 'deleted') = (parent_volume_no is not null));
comment on column volume.parent_volume_no is 'for a deleted volume: the filesystem volume whose deleted entries it holds';

alter table volume
    drop constraint volume_only_filesystems_ready,
    add constraint volume_only_filesystems_ready check (state <> 'ready' or role in ('filesystem', 'deleted'));

alter table inode
    add column overwritten_ranges int8multirange,
    add constraint inode_overwritten_ranges_nonempty check (not isempty(overwritten_ranges));
comment on column inode.overwritten_ranges is 'for a deleted file: byte ranges of its recovered content that lie in units now allocated to other files (not the deleted file''s content)';
