-- A content sample beyond the edges the medium hash covers.
--
-- The medium hash (size, model, serial, first and last MiB) is a lookup key, not proof: two
-- drives with the same size and blank edges share it. A source that matches a known hash is
-- checked against the medium's sample (image files) or against the image's rescued bytes
-- (devices) before it continues that medium.
alter table medium add column identity_sample bytea;
alter table medium add constraint medium_identity_sample_length
    check (identity_sample is null or length(identity_sample) = 32);
comment on column medium.identity_sample is 'BLAKE3 of 64 blocks of 4 KiB evenly spaced between the edges (offsets and bytes; unreadable blocks as zeros), recorded when an image file is registered; null before it was recorded or when the edges cover the whole source';
