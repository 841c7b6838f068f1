//! The controller's Prometheus metrics and its HTTP endpoints (`/metrics`, `/healthz`,
//! `/readyz`).
//!
//! Rules: counters only go up; the media-by-phase and jobs-by-state gauges are recomputed from
//! the last observation of each object, so a deleted object stops counting when it is forgotten.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ntt_crds::{JobState, Phase};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<Labels, Counter>,
    media: Family<Labels, Gauge>,
    jobs: Family<Labels, Gauge>,
    verified: Family<Labels, Gauge>,
    bad_blobs: Family<Labels, Gauge>,
    phases: Mutex<BTreeMap<String, Phase>>,
    states: Mutex<BTreeMap<String, JobState>>,
    ready: AtomicBool,
    leader: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ntt_controller");
        let reconciles = Counter::default();
        let errors = Family::<Labels, Counter>::default();
        let media = Family::<Labels, Gauge>::default();
        let jobs = Family::<Labels, Gauge>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by category",
            errors.clone(),
        );
        registry.register("media", "Media by phase", media.clone());
        registry.register("jobs", "MediumJobs by state", jobs.clone());
        let verified = Family::<Labels, Gauge>::default();
        let bad_blobs = Family::<Labels, Gauge>::default();
        registry.register(
            "medium_verified_timestamp_seconds",
            "When every blob of a copied medium was last found right (Unix time; 0: not now)",
            verified.clone(),
        );
        registry.register(
            "medium_bad_blobs",
            "Blobs of a medium its last verification found wrong",
            bad_blobs.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            media,
            jobs,
            verified,
            bad_blobs,
            phases: Mutex::new(BTreeMap::new()),
            states: Mutex::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// A reconcile started.
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    /// A reconcile failed.
    pub fn failed(&self, category: &str) {
        self.errors
            .get_or_create(&vec![("category".to_owned(), category.to_owned())])
            .inc();
    }

    /// The phase a Medium (by uid) was left in.
    pub fn observe_phase(&self, uid: &str, phase: Phase) {
        let mut phases = lock(&self.phases);
        phases.insert(uid.to_owned(), phase);
        self.media.clear();
        for phase in phases.values() {
            self.media
                .get_or_create(&vec![("phase".to_owned(), format!("{phase:?}"))])
                .inc();
        }
    }

    /// The state a job (by uid) was seen in.
    pub fn observe_job(&self, uid: &str, state: JobState) {
        let mut states = lock(&self.states);
        states.insert(uid.to_owned(), state);
        self.jobs.clear();
        for state in states.values() {
            self.jobs
                .get_or_create(&vec![("state".to_owned(), format!("{state:?}"))])
                .inc();
        }
    }

    /// What the verification of a Medium (by namespace and name) last found; `None` forgets
    /// it (deleted, or not verified by this controller).
    pub fn observe_verification(
        &self,
        namespace: &str,
        name: &str,
        verification: Option<&ntt_crds::VerificationStatus>,
    ) {
        let labels = vec![
            ("namespace".to_owned(), namespace.to_owned()),
            ("medium".to_owned(), name.to_owned()),
        ];
        if let Some(v) = verification {
            let at = v.last_verified_at.as_ref().map_or(0, |t| t.0.as_second());
            self.verified.get_or_create(&labels).set(at);
            self.bad_blobs.get_or_create(&labels).set(v.bad_blobs);
        } else {
            self.verified.remove(&labels);
            self.bad_blobs.remove(&labels);
        }
    }

    /// Marks the controller ready (its watches started) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks this replica the leader or not.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        let leader = u8::from(self.is_leader());
        out.insert_str(
            0,
            &format!("# HELP ntt_controller_leader Whether this replica holds the lease.\n# TYPE ntt_controller_leader gauge\nntt_controller_leader {leader}\n"),
        );
        out
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (the controller runs,
/// as leader or standby) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let for_metrics = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = for_metrics.clone();
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
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    if metrics.is_ready() {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
