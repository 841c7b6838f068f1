//! The agent's Prometheus metrics and its `/metrics` and `/healthz` endpoints.
//!
//! Rules: files and bytes are counted from the catalog at each heartbeat (the difference since
//! the last one), so `rate()` over them gives files and bytes per second per stage.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The agent's metrics.
pub(crate) struct AgentMetrics {
    registry: Registry,
    running: Gauge,
    jobs: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    files: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
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
        }
    }
}

impl AgentMetrics {
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
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
