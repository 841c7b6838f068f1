//! The root tier in one binary: real loop devices, kernel and FUSE mounts, ddrescue, The
//! Sleuth Kit and PostgreSQL, each test in its own process (nextest) and one at a time (the
//! `privileged` test group). Runs as root; never skips. One binary, so that the support code
//! and the dependencies are compiled and linked once.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::single_range_in_vec_init,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "test code: small sizes, one bad range, diagnostics on stderr, std::fs with unwrap is clear enough"
)]

#[path = "../support/db.rs"]
mod db;
#[path = "../support/faulty_disk.rs"]
mod faulty_disk;
#[path = "../support/host.rs"]
mod host;

/// The cluster end to end: controller, API server and the agent as the chart's pod.
mod cluster;
/// `ntt copy`: the store, failing sectors, a full store, kills.
mod copying;
/// Damaged files: unreadable sectors mapped onto the files they hit.
mod damage;
/// `ntt enumerate`: real mounts and The Sleuth Kit into the catalog, byte-exact paths.
mod enumeration;
/// `ntt ingest`: the whole pipeline.
mod ingest;
/// `ntt mount` / `ntt unmount`: loop devices, kernel and FUSE mounts.
mod mounting;
/// Imaging: ddrescue on failing drives, identity, third-party images.
mod privileged;
