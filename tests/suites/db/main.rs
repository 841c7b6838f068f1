//! The db tier: the catalog schema and its SQL against a real PostgreSQL, one database per test.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]

mod claims;
mod constraints;
mod holders;
mod media;
mod migrations;
mod names;
mod partitions;
