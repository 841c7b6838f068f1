-- `ntt verify --images`: each medium's image is re-hashed against the digest recorded when it
-- was imaged; when, and what was found, is kept on the medium.
alter table medium add column image_verified_at timestamptz;
alter table medium add column image_verify_outcome verify_outcome;
alter table medium add constraint medium_image_verified_pair
    check ((image_verified_at is null) = (image_verify_outcome is null));
comment on column medium.image_verified_at is 'when ntt verify --images last re-hashed the image against image_digest';
comment on column medium.image_verify_outcome is 'what that found: ok, mismatch, missing (no file at image_path on that host) or unreadable';
