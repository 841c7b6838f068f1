//! NTT's pipeline stages as a library, shared by the standalone `ntt` command and the node agent.
//!
//! ```text
//!   SOURCE ─▶ identify ─▶ image (ddrescue) ─▶ volumes (loop, mount) ─▶ enumerate ─▶ copy ─▶ verify
//!                                                                         │            │
//!                                                         catalog (PostgreSQL) ◀───────┘
//!                                                                                  store (BLAKE3)
//! ```
//!
//! Rules of this crate: all SQL lives in [`catalog`]; every flag of the command line can also be
//! set from an `NTT_*` environment variable, named once in [`env`]; per-file problems are data,
//! never a reason to stop a stage.

pub mod agent;
pub mod catalog;
pub mod cli;
pub mod copy;
pub mod damage;
pub mod database_url;
pub mod descriptors;
pub mod enumerate;
pub mod env;
pub mod export;
pub mod imaging;
pub mod lock;
pub mod name_glob;
pub mod pipeline;
pub mod private_dir;
pub mod progress;
pub mod roots;
pub mod store;
pub mod telemetry;
pub mod volume;

/// The third-party fixtures of the unit tests: the integration tests' one helper.
#[cfg(test)]
#[path = "../tests/support/fixtures.rs"]
mod fixtures;

/// The error and its causes on one line, each cause once: drivers often repeat their source's
/// text in their own message, and printing both doubles every line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = current.source();
    }
    line
}

/// This host's name: the identity of a copy worker, of an agent without a pod name, and of
/// the store's temp files.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".to_owned())
}
