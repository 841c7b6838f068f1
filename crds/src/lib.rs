//! The API vocabulary of NTT, shared by the `ntt` binary (node agent) and the controller.
//!
//! ```text
//!   ntt-crds  (types + pure rules, no I/O)
//!     ├── id      MediumHash, BlobId
//!     └── health  Health, HealthThresholds
//!          ▲                       ▲
//!   ntt-agent (stages, catalog)   ntt-controller (reconcile)
//! ```
//!
//! Rules of this crate: no tokio, no sqlx, no nix, no kube client, no file system access. Every
//! public item is documented, because these docs become the CRD schema descriptions.
#![warn(missing_docs)]

pub mod health;
pub mod id;

pub use health::{Health, HealthThresholds};
pub use id::{BlobId, MediumHash, ParseIdError};
