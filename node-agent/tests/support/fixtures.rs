//! The third-party disk images the tests read (`tests/fixtures/third-party/`, in the
//! repository: a clone alone passes its tests). One helper for the unit tests (included by
//! `#[path]`) and the integration tests.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses part of the support module"
)]

use std::path::{Path, PathBuf};

/// The directory of the third-party fixtures.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/third-party")
}

/// The fixture `name`; it must be there.
pub fn fixture(name: &str) -> PathBuf {
    let path = dir().join(name);
    assert!(
        path.is_file(),
        "fixture {} is missing from the repository",
        path.display()
    );
    path
}
