//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas never both act.
//!
//! Rules: a replica leads while it holds the Lease and has renewed it within `renew_deadline`
//! (shorter than the lease duration, so it stops acting before anyone else may take over);
//! another replica takes the Lease only after it expired (`renewTime + leaseDurationSeconds`);
//! every change is a replace with the read `resourceVersion`, so of two racing replicas one
//! gets 409 and stays a follower. On shutdown the leader gives the Lease up at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// A leader that could not renew for this long stops acting.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Defaults for `identity`: 15 s leases, renewed every 2 s, given up after 10 s.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            name: "ntt-controller".to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// One acquire-or-renew attempt: `Ok(true)` when this replica holds the Lease now.
async fn try_hold(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(current) = api.get_opt(&settings.name).await? else {
        {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(settings.identity.clone()),
                    lease_duration_seconds: Some(seconds(settings.duration)),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        }
    };
    let spec = current.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(settings.identity.as_str());
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(duration)) => {
            renewed.0 + SignedDuration::from_secs(i64::from(duration)) <= now
        }
        _ => true,
    };
    if !ours && !expired && spec.holder_identity.is_some() {
        return Ok(false);
    }
    let mut lease = current.clone();
    let mut next = spec.clone();
    if !ours {
        next.holder_identity = Some(settings.identity.clone());
        next.acquire_time = Some(MicroTime(now));
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    next.renew_time = Some(MicroTime(now));
    next.lease_duration_seconds = Some(seconds(settings.duration));
    lease.spec = Some(next);
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Gives the Lease up if this replica holds it.
async fn release(api: &Api<Lease>, settings: &LeaseSettings) {
    let Ok(Some(mut lease)) = api.get_opt(&settings.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(error) = api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(%error, "cannot give the lease up; the next leader waits for it to expire");
    }
}

/// Holds the Lease while it can; `leading` says whether this replica leads. Returns when
/// `stop` is cancelled, after giving the Lease up.
pub async fn run(
    client: kube::Client,
    settings: LeaseSettings,
    leading: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut last_held: Option<tokio::time::Instant> = None;
    loop {
        let attempt = tokio::time::timeout(
            settings.retry_period.max(Duration::from_secs(1)),
            try_hold(&api, &settings),
        )
        .await;
        let now = tokio::time::Instant::now();
        match attempt {
            Ok(Ok(true)) => last_held = Some(now),
            Ok(Ok(false)) => last_held = None,
            Ok(Err(error)) => tracing::warn!(%error, "lease renewal failed"),
            Err(_) => tracing::warn!("lease renewal timed out"),
        }
        let leads = last_held.is_some_and(|t| now.duration_since(t) < settings.renew_deadline);
        if *leading.borrow() != leads {
            tracing::info!(identity = %settings.identity, leader = leads, "leadership changed");
            leading.send_replace(leads);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(settings.retry_period) => {}
        }
    }
    leading.send_replace(false);
    // Bounded: a shutdown must not hang on an unreachable API server (the lease then expires).
    if tokio::time::timeout(
        settings.retry_period.max(Duration::from_secs(2)) * 2,
        release(&api, &settings),
    )
    .await
    .is_err()
    {
        tracing::warn!("giving the lease up timed out; the next leader waits for it to expire");
    }
}
