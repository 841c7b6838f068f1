//! NTT's Kubernetes controller: reconciles each `Medium` into per-stage `MediumJob`s.
//!
//! ```text
//!   leader (Lease) ──leads──▶ kube Controller: watch Medium + owned MediumJobs
//!                                   │
//!                                   ▼
//!                              reconcile (shell) ──▶ plan (pure) ──▶ Plan
//!                                   ▲                                  │
//!                                   └─── finalizer, jobs, status, events ◀┘
//!   metrics: /metrics /healthz /readyz
//! ```
//!
//! `plan` holds every decision and has no I/O; the reconcile shell observes, calls it and
//! carries out what it returned. Only the replica holding the Lease runs the Controller.

pub mod leader;
pub mod metrics;
pub mod plan;
pub mod plugin;
pub mod reconcile;

use std::sync::Arc;

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use ntt_crds::{Medium, MediumJob};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long reconciles in flight may finish after the Lease is lost or the controller is told
/// to stop: the timeout of one API call ([`reconcile`]'s calls each have one).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Watch only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// The plan's settings.
    pub settings: plan::Settings,
    /// Leader election.
    pub lease: leader::LeaseSettings,
}

/// Runs the controller until `stop` is cancelled: holds the Lease, and while it leads, runs
/// the reconcile loop; a lost Lease stops the loop until it is held again.
pub async fn run(
    client: kube::Client,
    config: Config,
    metrics: Arc<metrics::Metrics>,
    stop: CancellationToken,
) {
    let (leading_tx, mut leading) = watch::channel(false);
    let election = tokio::spawn(leader::run(
        client.clone(),
        config.lease.clone(),
        leading_tx,
        stop.clone(),
    ));
    metrics.set_ready(true);
    let context = Arc::new(reconcile::Context {
        client: client.clone(),
        settings: config.settings.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "ntt-controller".to_owned(),
                instance: Some(config.lease.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        lease_namespace: config.lease.namespace.clone(),
    });
    loop {
        // Follow until leading (or stopped).
        tokio::select! {
            () = stop.cancelled() => break,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break },
        }
        metrics.set_leader(true);
        tracing::info!(identity = %config.lease.identity, "leading: reconciling media");
        let lost = CancellationToken::new();
        let watch_lost = {
            let lost = lost.clone();
            let stop = stop.clone();
            let mut leading = leading.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = leading.wait_for(|l| !*l) => {}
                }
                lost.cancel();
            })
        };
        let (media, jobs): (Api<Medium>, Api<MediumJob>) = match &config.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let reconciling = Controller::new(media, watcher::Config::default())
            .owns(jobs, watcher::Config::default())
            .graceful_shutdown_on(lost.clone().cancelled_owned())
            .run(
                reconcile::reconcile,
                reconcile::error_policy,
                context.clone(),
            )
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "controller event");
                }
            });
        // The graceful shutdown waits for the reconciles in flight, but not forever: once the
        // grace is over they are dropped (every write they make is idempotent, and the next
        // leader reconciles every Medium again). A stop once waited more than 30 s here.
        let grace_over = async {
            lost.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = reconciling => {}
            () = grace_over => {
                tracing::warn!(identity = %config.lease.identity, "reconciles still running after the shutdown grace: dropped");
            }
        }
        watch_lost.abort();
        metrics.set_leader(false);
        tracing::info!(identity = %config.lease.identity, "not leading: reconciles stopped");
    }
    metrics.set_ready(false);
    let _ = election.await;
}
