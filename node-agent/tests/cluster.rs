//! The cluster end to end, in one test process: the in-memory API server, the controller
//! (in-process), `ntt agent` (the real binary, as the `DaemonSet` runs it), a real PostgreSQL,
//! real loop mounts. Media declared as `Medium` resources end `Copied` with the catalog and
//! the store right; an agent killed mid-copy is replaced and nothing is lost or duplicated;
//! deleting a running Medium cancels its job and keeps the evidence. Runs as root.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test with the error"
)]
#![allow(
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "test code: diagnostics on stderr, std::fs with unwrap is clear enough"
)]

#[path = "support/db.rs"]
mod db;
#[path = "support/host.rs"]
mod host;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use host::{Host, MIB, ext4};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use ntt_controller::leader::LeaseSettings;
use ntt_controller::metrics::Metrics;
use ntt_controller::plan::Settings;
use ntt_crds::{JobState, Medium, MediumJob, Phase, Stage};
use ntt_tests::apiserver::{ApiServer, builtin_types, resource_from_crd};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const NS: &str = "lab";
const NODE: &str = "dock-1";

struct Cluster {
    server: ApiServer,
    kubeconfig: std::path::PathBuf,
    media: Api<Medium>,
    jobs: Api<MediumJob>,
    controller: (CancellationToken, tokio::task::JoinHandle<()>),
}

impl Cluster {
    async fn start(host: &Host) -> Self {
        let mut types = vec![
            resource_from_crd(&Medium::crd()),
            resource_from_crd(&MediumJob::crd()),
        ];
        types.extend(builtin_types());
        let server = ApiServer::start(types).await.unwrap();
        let kubeconfig = host.root.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {NS}\ncurrent-context: test\n",
                server.url()
            ),
        )
        .unwrap();
        let config = ntt_controller::Config {
            namespace: Some(NS.to_owned()),
            settings: Settings {
                heartbeat_timeout: Duration::from_secs(4),
                backoff_base: Duration::from_millis(500),
                backoff_max: Duration::from_secs(2),
                max_attempts: 4,
            },
            lease: LeaseSettings::new(NS, "controller-0"),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(ntt_controller::run(
            server.client(NS),
            config,
            Arc::new(Metrics::default()),
            stop.clone(),
        ));
        let client = server.client(NS);
        Self {
            media: Api::namespaced(client.clone(), NS),
            jobs: Api::namespaced(client, NS),
            server,
            kubeconfig,
            controller: (stop, task),
        }
    }

    /// `ntt agent` for the node, as a child process.
    fn agent(&self, host: &Host, identity: &str) -> Child {
        host.command(&[
            "agent",
            "--node",
            NODE,
            "--namespace",
            NS,
            "--heartbeat",
            "1",
            "--workers",
            "2",
        ])
        .env("KUBECONFIG", &self.kubeconfig)
        .env("POD_NAME", identity)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
    }

    async fn apply(&self, manifest: &Value) {
        let medium: Medium = serde_json::from_value(manifest.clone()).unwrap();
        self.media
            .create(&PostParams::default(), &medium)
            .await
            .unwrap();
    }

    async fn until(
        &self,
        name: &str,
        what: &str,
        seconds: u64,
        check: impl Fn(&Medium) -> bool,
    ) -> Medium {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Ok(m) = self.media.get(name).await
                && check(&m)
            {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}: {what}; status {:?}; jobs {:?}",
                self.media.get(name).await.ok().and_then(|m| m.status),
                self.jobs.list(&ListParams::default()).await.ok().map(|l| l
                    .items
                    .iter()
                    .map(|j| (j.name_any(), j.status.clone()))
                    .collect::<Vec<_>>())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.controller.0.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.controller.1).await;
        drop(self.server);
    }
}

fn manifest(name: &str, source: &Value) -> Value {
    json!({
        "apiVersion": "ntt.hrdag.org/v1alpha1",
        "kind": "Medium",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": NODE, "source": source, "target": "Copied", "description": "end to end"},
    })
}

fn phase(m: &Medium) -> Phase {
    m.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn stop_agent(mut agent: Child) {
    // SIGTERM: the agent cancels its jobs and releases them.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
}

fn report(host: &Host, medium: &str) -> Value {
    let output = host.run(&["report", medium, "--json"]);
    assert!(output.status.success(), "ntt report {medium}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn tree(root: &Path, files: usize) {
    std::fs::create_dir_all(root.join("letters")).unwrap();
    for i in 0..files {
        std::fs::write(
            root.join(format!("letters/{i:05}.txt")),
            format!("letter {i}\n").repeat(50),
        )
        .unwrap();
    }
    std::fs::write(root.join("same-as-0.txt"), "letter 0\n".repeat(50)).unwrap();
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn media_declared_as_resources_end_copied_on_their_node(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let agent = cluster.agent(&host, "agent-a");
    // A directory and an ext4 image (mounted read-only through a loop device).
    let dir = host.root.join("photorec");
    tree(&dir, 20);
    let content = host.root.join("image-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("minutes.txt"), b"Minutes of the meeting\n").unwrap();
    let image = host.root.join("disk.img");
    ext4(&image, 16 * MIB, &content);
    cluster
        .apply(&manifest("recovered", &json!({"directory": dir})))
        .await;
    cluster
        .apply(&manifest("disk", &json!({"image": image})))
        .await;
    for name in ["recovered", "disk"] {
        let m = cluster
            .until(name, "copied", 120, |m| phase(m) == Phase::Completed)
            .await;
        let status = m.status.unwrap();
        assert!(
            status.medium_hash.is_some(),
            "{name}: the catalog hash is on the status"
        );
        assert!(
            status.is_true("Copied") && status.is_true("Ready"),
            "{name}"
        );
        let report = report(&host, name);
        assert_eq!(report["balances"], true, "{report}");
        assert_eq!(report["accounting"]["pending"], 0, "{report}");
        assert_eq!(report["accounting"]["failed"], 0, "{report}");
    }
    assert_eq!(report(&host, "recovered")["accounting"]["copied"], 21);
    let cat = host.run(&["cat", "disk", "minutes.txt"]);
    assert_eq!(cat.stdout, b"Minutes of the meeting\n");
    // One job per stage per medium, each succeeded and released.
    let jobs = cluster
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        jobs.len(),
        6,
        "{:?}",
        jobs.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );
    for job in &jobs {
        assert_eq!(
            job.status.as_ref().unwrap().state,
            JobState::Succeeded,
            "{}",
            job.name_any()
        );
        assert!(job.finalizers().is_empty(), "{} released", job.name_any());
        assert_eq!(
            job.status.as_ref().unwrap().agent.as_deref(),
            Some("agent-a")
        );
    }
    stop_agent(agent);
    cluster.stop().await;
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_agent_killed_mid_copy_is_replaced_and_nothing_is_lost_or_duplicated(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let mut first = cluster.agent(&host, "agent-a");
    let dir = host.root.join("big");
    tree(&dir, 3000);
    cluster
        .apply(&manifest("big", &json!({"directory": dir})))
        .await;
    // Wait for the copy job to run, then kill the agent without warning.
    let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
    loop {
        let jobs = cluster
            .jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        if jobs.iter().any(|j| {
            j.spec.stage == Stage::Copy
                && j.status
                    .as_ref()
                    .is_some_and(|s| s.state == JobState::Running)
        }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no copy job ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The job goes lost (no heartbeat) or is failed by the next agent at its start; a new
    // attempt completes.
    let second = cluster.agent(&host, "agent-b");
    cluster
        .until("big", "copied after the replacement", 180, |m| {
            phase(m) == Phase::Completed
        })
        .await;
    let report = report(&host, "big");
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["copied"], 3001, "{report}");
    assert_eq!(report["accounting"]["failed"], 0, "{report}");
    // Stored once: 3000 distinct letters (same-as-0 shares letter 0's blob).
    assert_eq!(report["content"]["distinct_blobs"], 3000, "{report}");
    let copies: Vec<MediumJob> = cluster
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.spec.stage == Stage::Copy)
        .collect();
    assert!(
        copies.iter().any(|j| j.spec.attempt >= 2
            && j.status.as_ref().is_some_and(
                |s| s.state == JobState::Succeeded && s.agent.as_deref() == Some("agent-b")
            )),
        "a later attempt by the new agent finished the copy"
    );
    let verify = host.run(&["verify", "--medium", "big"]);
    assert!(
        verify.status.success(),
        "the store holds what the catalog says"
    );
    stop_agent(second);
    cluster.stop().await;
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn deleting_a_running_medium_cancels_its_job_and_keeps_the_evidence(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let agent = cluster.agent(&host, "agent-a");
    let dir = host.root.join("deleted");
    tree(&dir, 3000);
    cluster
        .apply(&manifest("deleted", &json!({"directory": dir})))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
    loop {
        let jobs = cluster
            .jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        if jobs.iter().any(|j| {
            j.spec.stage == Stage::Copy
                && j.status
                    .as_ref()
                    .is_some_and(|s| s.state == JobState::Running)
        }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no copy job ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
        .media
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while cluster.media.get_opt("deleted").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the medium was not released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cluster
            .jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Retain: the catalog keeps the medium and what was copied; nothing is mounted.
    let report = report(&host, "deleted");
    assert_eq!(report["balances"], true, "{report}");
    let status = host.run(&["status", "--json"]);
    let media: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(media.as_array().unwrap().len(), 1);
    stop_agent(agent);
    cluster.stop().await;
}
