//! NTT's Kubernetes controller: reconciles each `Medium` into per-stage `MediumJob`s.
//!
//! ```text
//!   watch Medium + owned MediumJobs ──▶ reconcile (shell) ──▶ plan (pure) ──▶ Plan
//!                                           ▲                                  │
//!                                           └──── finalizer, jobs, status, events ◀┘
//! ```
//!
//! `plan` holds every decision and has no I/O; the reconcile shell observes, calls it and
//! carries out what it returned.

pub mod plan;
