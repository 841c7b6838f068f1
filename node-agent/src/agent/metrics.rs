//! The agent's Prometheus metrics and its `/metrics` and `/healthz` endpoints.
//!
//! Rules: files and bytes are counted from the catalog at each heartbeat (the difference since
//! the last one), so `rate()` over them gives files and bytes per second per stage.
//! `/healthz` fails when the agent's main loop (which wakes at least once a second) has not
//! come round for [`LIVENESS_LIMIT`]: a loop stuck in a call that never returns, which only a
//! restart ends. An unreachable API server or database does not fail it (a restart would not
//! help, and would interrupt a running imaging).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// How long the main loop may go without coming round before `/healthz` fails.
pub(crate) const LIVENESS_LIMIT: std::time::Duration = std::time::Duration::from_mins(3);

/// The agent's metrics.
pub(crate) struct AgentMetrics {
    registry: Registry,
    running: Gauge,
    jobs: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    files: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    /// When the main loop last came round.
    looped: std::sync::Mutex<std::time::Instant>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_owned(), value.to_owned())]
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ntt_agent");
        let running = Gauge::default();
        let jobs = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let files = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        registry.register("running_jobs", "Jobs running on this node", running.clone());
        registry.register("jobs", "Jobs finished, by stage and outcome", jobs.clone());
        registry.register("job_errors", "Failed jobs by error class", errors.clone());
        registry.register(
            "files",
            "Files (entries for enumeration) processed, by stage",
            files.clone(),
        );
        registry.register("bytes", "Bytes copied, by stage", bytes.clone());
        Self {
            registry,
            running,
            jobs,
            errors,
            files,
            bytes,
            looped: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

/// Whether a loop last seen at `looped` is alive at `now` (pure): `Err` says since when not.
pub(crate) fn liveness(looped: std::time::Instant, now: std::time::Instant) -> Result<(), String> {
    let quiet = now.saturating_duration_since(looped);
    if quiet > LIVENESS_LIMIT {
        return Err(format!(
            "the agent's main loop has not come round for {} s (limit {} s)",
            quiet.as_secs(),
            LIVENESS_LIMIT.as_secs()
        ));
    }
    Ok(())
}

impl AgentMetrics {
    /// The main loop came round.
    pub(crate) fn looped(&self) {
        if let Ok(mut looped) = self.looped.lock() {
            *looped = std::time::Instant::now();
        }
    }

    /// `/healthz`: whether the main loop comes round.
    fn health(&self) -> Result<(), String> {
        let looped = self
            .looped
            .lock()
            .map_err(|_| "the liveness stamp is poisoned".to_owned())?;
        liveness(*looped, std::time::Instant::now())
    }

    /// A job started.
    pub(crate) fn started(&self) {
        self.running.inc();
    }

    /// A job ended.
    pub(crate) fn finished(&self, stage: &str, outcome: &str, class: Option<&str>) {
        self.running.dec();
        self.jobs
            .get_or_create(&vec![
                ("stage".to_owned(), stage.to_owned()),
                ("outcome".to_owned(), outcome.to_owned()),
            ])
            .inc();
        if let Some(class) = class {
            self.errors.get_or_create(&label("class", class)).inc();
        }
    }

    /// Files and bytes processed since the last heartbeat.
    pub(crate) fn processed(&self, stage: &str, files: u64, bytes: u64) {
        self.files
            .get_or_create(&label("stage", stage))
            .inc_by(files);
        self.bytes
            .get_or_create(&label("stage", stage))
            .inc_by(bytes);
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` until `stop`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let health = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let health = health.health();
                async move {
                    match health {
                        Ok(()) => (axum::http::StatusCode::OK, "ok".to_owned()),
                        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn liveness_fails_only_once_the_loop_is_quiet_past_the_limit() {
        let now = Instant::now();
        let at = |ago: Duration| now.checked_sub(ago).unwrap();
        assert_eq!(liveness(at(Duration::from_secs(1)), now), Ok(()));
        assert_eq!(liveness(at(LIVENESS_LIMIT), now), Ok(()));
        let stuck = liveness(at(LIVENESS_LIMIT + Duration::from_secs(5)), now).unwrap_err();
        assert!(stuck.contains("185 s"), "{stuck}");
        // A stamp from after `now` (another thread) is alive.
        assert_eq!(liveness(now + Duration::from_secs(1), now), Ok(()));
    }
}
