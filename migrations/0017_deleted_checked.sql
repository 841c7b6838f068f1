-- When a deleted volume's recovered content was last checked against the live allocation and
-- the unread sectors (overwritten_ranges, damaged_ranges of its files): cleared when a load is
-- built, set once every file of the volume is checked; a copy checks the volumes without it
-- first, so a run killed between publishing a load and checking it copies nothing unchecked.
alter table volume
    add column deleted_checked_at timestamptz,
    add constraint volume_checked_only_deleted check (deleted_checked_at is null or role = 'deleted');
comment on column volume.deleted_checked_at is 'for a deleted volume: when its files'' recovered content was checked (null: not yet, for the current load)';
