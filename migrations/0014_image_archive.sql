-- `ntt archive MEDIUM --to ROOT`: a medium's image kept compressed (independent zstd frames and
-- an index beside them), re-read and compared with the image's digest before the raw image is
-- removed; stages that need the raw image restore it from here first.
alter table medium add column archive_path text;
alter table medium add column archive_bytes bigint;
alter table medium add column archived_at timestamptz;
alter table medium add constraint medium_archive_complete
    check ((archive_path is null) = (archived_at is null) and (archive_path is null) = (archive_bytes is null));
alter table medium add constraint medium_archive_bytes_nonnegative check (archive_bytes >= 0);
comment on column medium.archive_path is 'the compressed image (ntt archive): zstd frames, index at archive_path || ''.idx''';
comment on column medium.archive_bytes is 'its size';
comment on column medium.archived_at is 'when it was written and found to hold the image (digest compared)';
