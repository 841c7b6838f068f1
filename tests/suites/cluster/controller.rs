//! The controller against the in-memory API server, with a scripted stand-in for the node
//! agent (it claims, heartbeats and finishes jobs through the API, as the real agent will).

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ntt_controller::leader::LeaseSettings;
use ntt_controller::metrics::Metrics;
use ntt_controller::plan::Settings;
use ntt_crds::condition::{AGENT_FINALIZER, FIELD_MANAGER_AGENT};
use ntt_crds::{
    DeletionPolicy, ErrorClass, JobState, Medium, MediumJob, MediumSpec, Phase, Source, Stage,
    Target,
};
use ntt_tests::apiserver::{ApiServer, ntt_types};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NS: &str = "lab";

struct Replica {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl Replica {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the controller stops")
            .expect("the controller task does not panic");
    }
}

struct Cluster {
    server: ApiServer,
    media: Api<Medium>,
    jobs: Api<MediumJob>,
}

impl Cluster {
    async fn start() -> Self {
        let server = ApiServer::start(ntt_types()).await.expect("server starts");
        let client = server.client(NS);
        Self {
            media: Api::namespaced(client.clone(), NS),
            jobs: Api::namespaced(client, NS),
            server,
        }
    }

    fn replica(&self, identity: &str) -> Replica {
        let config = ntt_controller::Config {
            namespace: Some(NS.to_owned()),
            settings: Settings {
                heartbeat_timeout: Duration::from_secs(2),
                backoff_base: Duration::from_millis(300),
                backoff_max: Duration::from_secs(2),
                max_attempts: 2,
                unclaimed_warning: Duration::from_mins(5),
                verification: None,
            },
            lease: LeaseSettings {
                duration: Duration::from_secs(2),
                renew_deadline: Duration::from_millis(1500),
                retry_period: Duration::from_millis(200),
                ..LeaseSettings::new(NS, identity)
            },
        };
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(ntt_controller::run(
            self.server.client(NS),
            config,
            metrics.clone(),
            stop.clone(),
        ));
        Replica {
            stop,
            task,
            metrics,
        }
    }

    async fn create(&self, name: &str, target: Target) -> Medium {
        self.media
            .create(&PostParams::default(), &medium(name, target))
            .await
            .expect("medium created")
    }
    /// Waits until the Medium is gone (its finalizer released).
    async fn until_gone(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self
            .media
            .get_opt(name)
            .await
            .expect("get the medium")
            .is_some()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "medium {name} stays"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `check` holds for the Medium.
    async fn until(&self, name: &str, what: &str, check: impl Fn(&Medium) -> bool) -> Medium {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(m) = self.media.get(name).await
                && check(&m)
            {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}: {what}; status {:?}",
                self.media.get(name).await.ok().and_then(|m| m.status)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the active job of `stage` and returns its name.
    async fn job_for(&self, medium: &str, stage: Stage) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let jobs = self
                .jobs
                .list(&ListParams::default())
                .await
                .expect("list jobs")
                .items;
            if let Some(job) = jobs.iter().find(|j| {
                j.spec.medium == medium
                    && j.spec.stage == stage
                    && j.metadata.deletion_timestamp.is_none()
                    && !j.status.as_ref().is_some_and(|s| s.state.is_finished())
            }) {
                return job.name_any();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {stage:?} job for {medium}; jobs {:?}",
                jobs.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The stand-in agent.

    async fn claim(&self, job: &str) {
        self.jobs
            .patch(
                job,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": [AGENT_FINALIZER]}})),
            )
            .await
            .expect("claim: finalizer");
        self.agent_status(job, json!({"state": "Running", "agent": "stand-in", "startedAt": now(), "heartbeatAt": now()})).await;
    }

    async fn agent_status(&self, job: &str, status: serde_json::Value) {
        self.jobs
            .patch_status(
                job,
                &PatchParams::apply(FIELD_MANAGER_AGENT).force(),
                &Patch::Apply(json!({"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "MediumJob", "status": status})),
            )
            .await
            .expect("agent status");
    }

    async fn finish(&self, job: &str, error: Option<ErrorClass>) {
        let status = match error {
            None => {
                json!({"state": "Succeeded", "agent": "stand-in", "finishedAt": now(), "heartbeatAt": now(),
                           "result": {"mediumHash": "726cdff6dc73e3dd1abe0e4c9762dff5", "health": "ok"}})
            }
            Some(class) => {
                json!({"state": "Failed", "agent": "stand-in", "finishedAt": now(), "heartbeatAt": now(),
                                 "error": {"class": class, "message": "scripted failure"}})
            }
        };
        self.agent_status(job, status).await;
        self.jobs
            .patch(
                job,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .expect("release");
    }

    async fn run_stage(&self, medium: &str, stage: Stage) -> String {
        let job = self.job_for(medium, stage).await;
        self.claim(&job).await;
        self.finish(&job, None).await;
        job
    }

    fn writes(&self) -> u64 {
        let store = self.server.store();
        ["media", "mediumjobs"]
            .iter()
            .filter_map(|plural| store.resource("ntt.hrdag.org", "v1alpha1", plural))
            .map(|r| store.writes.get(&r).copied().unwrap_or(0))
            .sum()
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn medium(name: &str, target: Target) -> Medium {
    Medium::new(
        name,
        MediumSpec {
            node_name: "dock-1".to_owned(),
            source: Source {
                device: Some(format!("/dev/disk/by-id/usb-{name}")),
                ..Source::default()
            },
            target,
            description: Some("box 7".to_owned()),
            imaging: ntt_crds::ImagingOptions::default(),
            ignore: ntt_crds::IgnoreOptions::default(),
            deletion_policy: DeletionPolicy::Retain,
            force: None,
        },
    )
}

fn phase(m: &Medium) -> Phase {
    m.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn condition(m: &Medium, type_: &str) -> String {
    m.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_medium_goes_to_copied_one_job_per_stage_and_then_nothing_is_written() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica("a");
    cluster.create("disk-1", Target::Copied).await;
    let image = cluster.job_for("disk-1", Stage::Image).await;
    let job = cluster.jobs.get(&image).await.unwrap();
    assert_eq!(job.spec.node_name, "dock-1");
    assert_eq!(job.spec.description.as_deref(), Some("box 7"));
    assert_eq!(job.owner_references()[0].name, "disk-1");
    cluster.claim(&image).await;
    cluster
        .agent_status(&image, json!({"progress": {"stage": "Image", "percent": 40, "summary": "imaging 40%"}, "heartbeatAt": now()}))
        .await;
    let m = cluster
        .until("disk-1", "progress mirrored", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.percent == Some(40))
        })
        .await;
    assert_eq!(phase(&m), Phase::Imaging);
    cluster.finish(&image, None).await;
    cluster.run_stage("disk-1", Stage::Enumerate).await;
    cluster.run_stage("disk-1", Stage::Copy).await;
    let m = cluster
        .until("disk-1", "completed", |m| phase(m) == Phase::Completed)
        .await;
    let status = m.status.as_ref().unwrap();
    assert_eq!(
        status.medium_hash.as_deref(),
        Some("726cdff6dc73e3dd1abe0e4c9762dff5")
    );
    assert_eq!(status.observed_generation, Some(1));
    for type_ in ["Imaged", "Enumerated", "Copied", "Ready"] {
        assert_eq!(condition(&m, type_), "True", "{type_}");
    }
    assert_eq!(condition(&m, "Degraded"), "False");
    let managers: Vec<String> = m
        .managed_fields()
        .iter()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert!(
        managers.contains(&"ntt-controller".to_owned()),
        "{managers:?}"
    );
    assert_eq!(
        cluster
            .jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.server.client(NS), NS);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(
        reasons.contains(&"JobCreated".to_owned()) && reasons.contains(&"Completed".to_owned()),
        "{reasons:?}"
    );
    // Settled: no further writes to media or jobs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.writes();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.writes(),
        before,
        "a settled medium causes no writes"
    );
    replica.stop().await;
}

/// The decisions are the plan's (tests/plan.rs); this proves what only the running loop does:
/// with no event at all, its timed requeue notices the silence, and the lost job it releases is
/// really deleted by the server.
#[tokio::test]
async fn a_job_without_heartbeats_is_failed_as_lost_and_retried() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica("a");
    cluster.create("disk-5", Target::Imaged).await;
    let first = cluster.job_for("disk-5", Stage::Image).await;
    cluster.claim(&first).await;
    // The agent dies: no more heartbeats, no release.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let second = loop {
        let next = cluster.job_for("disk-5", Stage::Image).await;
        if next != first {
            break next;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new attempt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second, "disk-5-image-2");
    let lost = cluster.jobs.get_opt(&first).await.unwrap();
    if let Some(lost) = lost {
        let status = lost.status.unwrap();
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(status.error.unwrap().class, ErrorClass::Lost);
    }
    cluster.claim(&second).await;
    cluster.finish(&second, None).await;
    cluster
        .until("disk-5", "completed", |m| phase(m) == Phase::Completed)
        .await;
    // The lost job was cleaned up (deleted, and released since its agent never will).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.jobs.get_opt(&first).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the lost job stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica.stop().await;
}

#[tokio::test]
async fn deleting_a_medium_cancels_its_running_job_and_waits_for_the_agent() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica("a");
    cluster.create("disk-6", Target::Copied).await;
    let image = cluster.job_for("disk-6", Stage::Image).await;
    cluster.claim(&image).await;
    cluster
        .media
        .delete("disk-6", &DeleteParams::default())
        .await
        .unwrap();
    // The controller deletes the job; the agent still holds it (heartbeating) ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let job = cluster.jobs.get(&image).await.unwrap();
        if job.metadata.deletion_timestamp.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job is not cancelled"
        );
        cluster
            .agent_status(&image, json!({"heartbeatAt": now()}))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = cluster
        .until("disk-6", "deleting", |m| phase(m) == Phase::Deleting)
        .await;
    assert!(
        m.metadata.deletion_timestamp.is_some(),
        "held by the finalizer while the job runs"
    );
    // ... until it has released the medium.
    cluster.finish(&image, Some(ErrorClass::Cancelled)).await;
    cluster.until_gone("disk-6").await;
    assert!(cluster.jobs.get_opt(&image).await.unwrap().is_none());
    replica.stop().await;
}

#[tokio::test]
async fn a_purge_is_armed_at_deletion_time_only_and_runs_before_the_medium_goes() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica("a");
    // A manifest cannot declare a purge (a GitOps prune of it would destroy evidence).
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.media.clone().into_client(),
        "lab",
        &kube::api::ApiResource::erase::<Medium>(&()),
    );
    let mut manifest = serde_json::to_value(medium("disk-7", Target::Imaged)).unwrap();
    manifest["spec"]["deletionPolicy"] = serde_json::json!("Purge");
    let object: kube::api::DynamicObject = serde_json::from_value(manifest).unwrap();
    let refused = raw
        .create(&PostParams::default(), &object)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("deletionPolicy"), "{refused}");
    cluster
        .media
        .create(&PostParams::default(), &medium("disk-7", Target::Imaged))
        .await
        .unwrap();
    cluster.run_stage("disk-7", Stage::Image).await;
    cluster
        .until("disk-7", "imaged", |m| phase(m) == Phase::Completed)
        .await;
    // `kubectl ntt purge` without --yes does nothing.
    let mut said = Vec::new();
    assert!(
        !ntt_controller::plugin::purge(&cluster.media, "disk-7", false, &mut said)
            .await
            .unwrap()
    );
    let kept = cluster.media.get("disk-7").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none() && !kept.purge_armed());
    // With --yes: armed with the uid, deleted, purged, gone.
    assert!(
        ntt_controller::plugin::purge(&cluster.media, "disk-7", true, &mut said)
            .await
            .unwrap()
    );
    let purge = cluster.job_for("disk-7", Stage::Purge).await;
    let held = cluster.media.get_opt("disk-7").await.unwrap();
    assert!(
        held.is_some_and(|m| m.purge_armed()),
        "held, armed, until purged"
    );
    cluster.claim(&purge).await;
    cluster.finish(&purge, None).await;
    cluster.until_gone("disk-7").await;
    replica.stop().await;
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_acts_and_the_other_takes_over() {
    let cluster = Cluster::start().await;
    let a = cluster.replica("a");
    let b = cluster.replica("b");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(a.metrics.is_leader() || b.metrics.is_leader()) {
        assert!(tokio::time::Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!(a.metrics.is_leader() && b.metrics.is_leader()));
    cluster.create("disk-8", Target::Enumerated).await;
    cluster.run_stage("disk-8", Stage::Image).await;
    cluster.job_for("disk-8", Stage::Enumerate).await;
    let (leader, follower) = if a.metrics.is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(!follower.metrics.is_leader());
    leader.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !follower.metrics.is_leader() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower does not take over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let enumerate = cluster.job_for("disk-8", Stage::Enumerate).await;
    cluster.claim(&enumerate).await;
    cluster.finish(&enumerate, None).await;
    cluster
        .until("disk-8", "completed by the new leader", |m| {
            phase(m) == Phase::Completed
        })
        .await;
    let jobs = cluster
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        jobs.len(),
        2,
        "no job created twice: {:?}",
        jobs.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );
    follower.stop().await;
}

/// `GET path` over a plain TCP connection; the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica("a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(ntt_controller::metrics::serve(
        listener,
        replica.metrics.clone(),
        stop.clone().cancelled_owned(),
    ));
    cluster.create("disk-9", Target::Imaged).await;
    cluster.run_stage("disk-9", Stage::Image).await;
    cluster
        .until("disk-9", "completed", |m| phase(m) == Phase::Completed)
        .await;
    let (status, _) = http_get(addr, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    let (status, _) = http_get(addr, "/readyz").await;
    assert!(status.contains("200"), "{status}");
    let (status, body) = http_get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("ntt_controller_reconciles_total"), "{body}");
    assert!(
        body.contains("ntt_controller_media{phase=\"Completed\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("ntt_controller_jobs{state=\"Succeeded\"} 1"),
        "{body}"
    );
    assert!(body.contains("ntt_controller_leader 1"), "{body}");
    replica.stop().await;
    let (status, _) = http_get(addr, "/readyz").await;
    assert!(status.contains("503"), "stopped: not ready: {status}");
    stop.cancel();
    server.await.unwrap().unwrap();
}
