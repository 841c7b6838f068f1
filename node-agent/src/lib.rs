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

pub mod catalog;
pub mod cli;
pub mod copy;
pub mod damage;
pub mod database_url;
pub mod enumerate;
pub mod env;
pub mod export;
pub mod imaging;
pub mod lock;
pub mod progress;
pub mod store;
pub mod telemetry;
pub mod volume;
