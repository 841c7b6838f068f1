-- `ntt verify` takes the least recently verified blobs first (never verified first), page by
-- page, so that runs with a budget cover the whole store over a cycle; this index serves that
-- order without sorting every blob.
create index blob_verify_order_idx on blob (verified_at nulls first, id);

-- A blob the store cannot read (an I/O error, not a missing file) is recorded as such, and
-- the verification goes on with the others.
alter type verify_outcome add value 'unreadable';
