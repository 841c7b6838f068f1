//! The cluster end to end, in one test process: the in-memory API server, the controller
//! (in-process), `ntt agent` (the real binary, as the `DaemonSet` runs it), a real PostgreSQL,
//! real loop mounts. Media declared as `Medium` resources end `Copied` with the catalog and
//! the store right; an agent killed mid-copy is replaced and nothing is lost or duplicated;
//! deleting a running Medium cancels its job and keeps the evidence. Runs as root.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::host::{Host, MIB, ext4, register};
use crate::{faulty_disk, host};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ntt_controller::leader::LeaseSettings;
use ntt_controller::metrics::Metrics;
use ntt_controller::plan::Settings;
use ntt_crds::condition;
use ntt_crds::{ErrorClass, JobState, Medium, MediumJob, Phase, Stage};
use ntt_tests::apiserver::{ApiServer, ntt_types};
use ntt_tests::pod::Pod;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const NS: &str = "lab";
const NODE: &str = "dock-1";
/// Who the controller and the agents are to the API server: the chart's service accounts
/// (the chart rendered into `NS`), so their requests are checked against its RBAC.
const CONTROLLER_USER: &str = "system:serviceaccount:lab:ntt-controller";
const AGENT_USER: &str = "system:serviceaccount:lab:ntt-agent";

struct Cluster {
    server: ApiServer,
    kubeconfig: std::path::PathBuf,
    media: Api<Medium>,
    jobs: Api<MediumJob>,
    controller: (CancellationToken, tokio::task::JoinHandle<()>),
    /// The controller's metrics.
    metrics: Arc<Metrics>,
}

impl Cluster {
    async fn start(host: &Host) -> Self {
        Self::start_verifying(host, None).await
    }

    /// [`Cluster::start`] with the controller scheduling verifications as `verification` says.
    async fn start_verifying(
        host: &Host,
        verification: Option<ntt_controller::plan::VerifySettings>,
    ) -> Self {
        let server = ApiServer::start(ntt_types()).await.unwrap();
        let kubeconfig = host.root.join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig(NS, AGENT_USER)).unwrap();
        let config = ntt_controller::Config {
            namespace: Some(NS.to_owned()),
            settings: Settings {
                heartbeat_timeout: Duration::from_secs(4),
                backoff_base: Duration::from_millis(500),
                backoff_max: Duration::from_secs(2),
                max_attempts: 4,
                unclaimed_warning: Duration::from_secs(20),
                verification,
            },
            lease: LeaseSettings::new(NS, "controller-0"),
        };
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let task = tokio::spawn(ntt_controller::run(
            server.client_as(NS, CONTROLLER_USER).await,
            config,
            metrics.clone(),
            stop.clone(),
        ));
        let client = server.client(NS);
        Self {
            media: Api::namespaced(client.clone(), NS),
            jobs: Api::namespaced(client, NS),
            server,
            kubeconfig,
            controller: (stop, task),
            metrics,
        }
    }

    /// `ntt agent` for the node, as a child process, with its metrics on a free local port.
    fn agent(&self, host: &Host, identity: &str) -> (Child, u16) {
        self.agent_logging(host, identity, Stdio::inherit())
    }

    /// [`Cluster::agent`] with its log (stderr) sent to `log`.
    fn agent_logging(&self, host: &Host, identity: &str, log: Stdio) -> (Child, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = host.command(&[
            "agent",
            "--node",
            NODE,
            "--namespace",
            NS,
            "--heartbeat",
            "1",
            "--workers",
            "2",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            // What the admin allows: the tests' loop devices and their scratch directory.
            "--allow-device",
            "/dev/loop*",
        ]);
        command.arg("--allow-root").arg(&host.root);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        (host.start(&mut command), port)
    }

    /// The chart's agent pod on this host ([`ntt_tests::pod`]): the chart rendered with this
    /// test's values (image and directory sources below `intake`, loop devices allowed, the
    /// node's directories under `node/`), its init container (`ntt init`) run to completion,
    /// then its agent container started as rendered, metrics on a free local port.
    fn chart_agent(&self, host: &Host, identity: &str, intake: &Path) -> (Child, u16, Pod) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let node = host.root.join("node");
        let at = |dir: &str| node.join(dir).display().to_string();
        let values = [
            format!("agent.sourcePaths=[{}]", json!(intake)),
            r#"agent.allowDevices=["/dev/loop*"]"#.to_owned(),
            format!("agent.dataDir.hostPath={}", json!(at("images"))),
            format!("agent.store.hostPath={}", json!(at("store"))),
            format!("agent.lockDir={}", json!(at("lock"))),
            format!("agent.mountDir={}", json!(at("mnt"))),
            "agent.heartbeatInterval=1".to_owned(),
            "agent.workers=2".to_owned(),
            "agent.logJson=false".to_owned(),
            format!("metrics.agentPort={port}"),
        ];
        let mut args = Vec::new();
        for value in &values {
            args.extend(["--set-json", value.as_str()]);
        }
        let documents = ntt_tests::rbac::render_chart_with(NS, &args);
        let daemonset = ntt_tests::pod::workload(&documents, "DaemonSet", "ntt-agent");
        let root = host.root.join(format!("pod-{identity}"));
        std::fs::create_dir_all(&root).unwrap();
        let pod = Pod::of(
            daemonset,
            ntt_tests::pod::Context {
                node: NODE.to_owned(),
                name: identity.to_owned(),
                namespace: NS.to_owned(),
                secrets: [(
                    ("ntt-database".to_owned(), "url".to_owned()),
                    host.url.clone(),
                )]
                .into(),
                kubeconfig: self.kubeconfig.clone(),
                ntt: env!("CARGO_BIN_EXE_ntt").into(),
                root,
            },
        );
        let init = pod.command("init").output().unwrap();
        assert!(
            init.status.success(),
            "the init container failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut command = pod.command("agent");
        command.stdout(Stdio::null()).stderr(Stdio::inherit());
        (host.start(&mut command), port, pod)
    }

    async fn apply(&self, manifest: &Value) {
        let medium: Medium = serde_json::from_value(manifest.clone()).unwrap();
        self.media
            .create(&PostParams::default(), &medium)
            .await
            .unwrap();
    }
    /// Waits until the Medium is gone (its finalizer released).
    async fn until_gone(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        while self.media.get_opt(name).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "medium {name} stays"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    /// Waits until a copy job runs.
    async fn until_copy_runs(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
        loop {
            let jobs = self.jobs.list(&ListParams::default()).await.unwrap().items;
            if jobs.iter().any(|j| {
                j.spec.stage == Stage::Copy
                    && j.status
                        .as_ref()
                        .is_some_and(|s| s.state == JobState::Running)
            }) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no copy job ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every request the controller and the agents made is one the chart's RBAC allows (a
    /// real API server would have refused the others with 403).
    fn assert_rbac(&self) {
        let documents = ntt_tests::rbac::render_chart(NS);
        let requests = self.server.requests();
        for account in ["ntt-controller", "ntt-agent"] {
            let grants = ntt_tests::rbac::Grants::of(&documents, NS, account);
            assert!(
                requests.iter().any(|r| r.user == grants.user),
                "{account} made requests as {}",
                grants.user
            );
            let refused = grants.refused(&requests);
            assert!(
                refused.is_empty(),
                "{account} made requests its RBAC refuses: {refused:#?}"
            );
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

/// SIGTERM: the agent interrupts its jobs, releases them and exits.
async fn stop_agent(mut agent: Child) {
    assert!(
        terminate(&mut agent, Duration::from_mins(1))
            .await
            .success()
    );
}

/// The body of `GET path` on the local port.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
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

/// An example manifest from `examples/`, its source replaced by one made here, taken to
/// `Copied`.
fn example(file: &str, source: &Value) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let mut manifest: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["spec"]["source"] = source.clone();
    manifest["spec"]["target"] = json!("Copied");
    manifest["spec"]["nodeName"] = json!(NODE);
    manifest
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn the_example_media_end_copied_through_the_chart_s_pod_and_purge_keeps_registered_images(
    pool: PgPool,
) {
    // The agent runs as the chart's DaemonSet pod (rendered, not hand-written): it sees the
    // node's /dev, its own directories and the admin's intake directory, nothing else.
    let host = Host::bare(&pool).await;
    let cluster = Cluster::start(&host).await;
    let intake = host.root.join("intake");
    std::fs::create_dir_all(&intake).unwrap();
    let (agent, port, pod) = cluster.chart_agent(&host, "agent-a", &intake);
    let ntt = |args: &[&str]| {
        let mut argv = vec!["ntt"];
        argv.extend_from_slice(args);
        let output = pod.exec("agent", &argv).output().unwrap();
        assert!(
            output.status.success(),
            "ntt {args:?} in the pod: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let report = |medium: &str| -> Value {
        serde_json::from_slice(&ntt(&["report", medium, "--json"])).unwrap()
    };
    // A failing drive (FUSE, EIO on one range) holding an ext4, read through a loop device.
    let content = host.root.join("drive-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("ledger.txt"), b"accounts 1998\n").unwrap();
    let drive_fs = host.root.join("drive.fs");
    ext4(&drive_fs, 16 * MIB, &content);
    let mut disk_bytes = std::fs::read(&drive_fs).unwrap();
    disk_bytes.resize(usize::try_from(16 * MIB).unwrap(), 0);
    let mut disk = faulty_disk::FaultyDisk::start(
        disk_bytes,
        faulty_disk::Faults {
            bad: vec![15 * MIB..15 * MIB + 8192],
            ..faulty_disk::Faults::default()
        },
    );
    let device = disk.attach();
    // An ext4 image (registered, mounted read-only) and a directory.
    let content = host.root.join("image-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("minutes.txt"), b"Minutes of the meeting\n").unwrap();
    let image = intake.join("laptop.img");
    ext4(&image, 16 * MIB, &content);
    let dir = intake.join("photorec");
    tree(&dir, 20);
    // The drive is imaged first (target Imaged), then undocked: every later stage must work
    // from the image alone.
    let mut drive = example("device.yaml", &json!({"device": device}));
    drive["spec"]["target"] = json!("Imaged");
    cluster.apply(&drive).await;
    cluster
        .apply(&example("image.yaml", &json!({"image": image})))
        .await;
    cluster
        .apply(&example("directory.yaml", &json!({"directory": dir})))
        .await;
    // An image beside the intake, not in it: the pod does not see it (an agent on the host
    // would have refused it as outside the roots).
    let outside = host.root.join("elsewhere.img");
    std::fs::copy(&image, &outside).unwrap();
    cluster
        .apply(&manifest("elsewhere", &json!({"image": outside})))
        .await;
    let refused = cluster
        .until("elsewhere", "refused", 60, |m| phase(m) == Phase::Failed)
        .await;
    let error = refused.status.unwrap().last_error.unwrap();
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(
        error.message.contains("missing") && error.message.contains("cannot be resolved"),
        "the pod does not see it: {}",
        error.message
    );
    let imaged = cluster
        .until("box-7-disk-2", "imaged", 180, |m| {
            phase(m) == Phase::Completed
                && m.status
                    .as_ref()
                    .is_some_and(|s| s.is_true(condition::UNDOCKABLE))
        })
        .await;
    let undockable = imaged.status.unwrap();
    let undockable = undockable.condition(condition::UNDOCKABLE).unwrap();
    assert!(
        undockable.message.contains("may be undocked"),
        "{undockable:?}"
    );
    // Undocked: no loop device reads the FUSE file any more, and the file itself is gone.
    // (The device's number is free for other tests to take, so it is not asked about.)
    let file = disk.file();
    disk.detach();
    let readers = std::process::Command::new("losetup")
        .arg("--associated")
        .arg(&file)
        .output()
        .unwrap();
    assert!(readers.status.success());
    assert!(
        readers.stdout.is_empty(),
        "the drive is undocked: {}",
        String::from_utf8_lossy(&readers.stdout)
    );
    drop(disk);
    assert!(!file.exists(), "the drive is gone");
    cluster
        .media
        .patch(
            "box-7-disk-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": "Copied"}})),
        )
        .await
        .unwrap();
    for name in ["box-7-disk-2", "donor-12-laptop", "box-7-carved"] {
        let m = cluster
            .until(name, "copied", 180, |m| {
                phase(m) == Phase::Completed
                    && m.status.as_ref().is_some_and(|s| s.is_true("Copied"))
            })
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
        // Catalog names are `<namespace>/<name>`.
        let report = report(&format!("{NS}/{name}"));
        assert_eq!(report["balances"], true, "{report}");
        assert_eq!(report["accounting"]["pending"], 0, "{report}");
    }
    let drive = cluster
        .media
        .get("box-7-disk-2")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        drive.health.as_deref(),
        Some("incomplete"),
        "the bad range was not read"
    );
    assert!(drive.is_true("Degraded"));
    assert_eq!(
        ntt(&["cat", "lab/box-7-disk-2", "ledger.txt"]),
        b"accounts 1998\n"
    );
    assert_eq!(
        ntt(&["cat", "lab/donor-12-laptop", "minutes.txt"]),
        b"Minutes of the meeting\n"
    );
    assert_eq!(report("lab/box-7-carved")["accounting"]["copied"], 21);
    let carved = cluster
        .media
        .get("box-7-carved")
        .await
        .unwrap()
        .status
        .unwrap();
    let progress = carved.progress.unwrap();
    assert_eq!(progress.percent, Some(100));
    assert!(
        progress.summary.contains("21 copied"),
        "{}",
        progress.summary
    );
    // One job per stage per medium, each succeeded and released by this agent; every job
    // after imaging carries the hash the Medium recorded.
    let jobs: Vec<MediumJob> = cluster
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.spec.medium != "elsewhere")
        .collect();
    assert_eq!(
        jobs.len(),
        9,
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
        if job.spec.stage != Stage::Image {
            assert_eq!(
                job.spec.medium_hash,
                job.status
                    .as_ref()
                    .unwrap()
                    .result
                    .as_ref()
                    .unwrap()
                    .medium_hash,
                "{}",
                job.name_any()
            );
        }
    }
    // The agent's metrics count what it did.
    let metrics = http_get(port, "/metrics").await;
    assert!(
        metrics.contains("ntt_agent_jobs_total{stage=\"copy\",outcome=\"succeeded\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("ntt_agent_running_jobs 0"), "{metrics}");
    assert!(http_get(port, "/healthz").await.contains("ok"));
    // Purged (`kubectl ntt purge donor-12-laptop --yes`): the catalog forgets the medium; the
    // registered image, which is evidence NTT did not write, stays untouched.
    let mut said = Vec::new();
    assert!(
        ntt_controller::plugin::purge(&cluster.media, "donor-12-laptop", true, &mut said)
            .await
            .unwrap()
    );
    cluster.until_gone("donor-12-laptop").await;
    let media: Value = serde_json::from_slice(&ntt(&["status", "--json"])).unwrap();
    let names: Vec<&str> = media
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"lab/donor-12-laptop") && names.len() == 2,
        "{names:?}"
    );
    assert!(image.exists(), "the registered image is evidence and stays");
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_agent_killed_mid_copy_is_replaced_and_nothing_is_lost_or_duplicated(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (mut first, _) = cluster.agent(&host, "agent-a");
    let dir = host.root.join("big");
    tree(&dir, 3000);
    cluster
        .apply(&manifest("big", &json!({"directory": dir})))
        .await;
    // Wait for the copy job to run, then kill the agent without warning.
    cluster.until_copy_runs().await;
    first.kill().unwrap();
    first.wait().unwrap();
    // No heartbeat: the controller fails the job as lost; only then does a new agent start,
    // and a new attempt completes.
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let jobs = cluster
            .jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let lost = jobs.iter().any(|j| {
            j.spec.stage == Stage::Copy
                && j.status.as_ref().is_some_and(|s| {
                    s.state == JobState::Failed
                        && s.error
                            .as_ref()
                            .is_some_and(|e| e.class == ntt_crds::ErrorClass::Lost)
                })
        });
        if lost {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was not found lost"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (second, _) = cluster.agent(&host, "agent-b");
    cluster
        .until("big", "copied after the replacement", 180, |m| {
            phase(m) == Phase::Completed
        })
        .await;
    let report = report(&host, "lab/big");
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
    let verify = host.run(&["verify", "--medium", "lab/big"]);
    assert!(
        verify.status.success(),
        "the store holds what the catalog says"
    );
    stop_agent(second).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

/// In the cluster: the archive disk holding the store goes away under a
/// running agent (its mount point is left, empty). The agent claims nothing, exits with the
/// reason, and cannot start again until the disk is back; then the medium completes.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_agent_whose_store_goes_away_claims_nothing_and_exits(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let log = host.root.join("agent-a.log");
    let (mut agent, port) = cluster.agent_logging(
        &host,
        "agent-a",
        std::fs::File::create(&log).unwrap().into(),
    );
    until_serving(port).await;
    // The disk goes away: an empty directory where the store was.
    let (store, away) = (host.root.join("store"), host.root.join("store-disk"));
    std::fs::rename(&store, &away).unwrap();
    std::fs::create_dir(&store).unwrap();
    let dir = host.root.join("letters");
    tree(&dir, 5);
    cluster
        .apply(&manifest("letters", &json!({"directory": dir})))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent kept running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let said = std::fs::read_to_string(&log).unwrap();
    eprintln!("agent-a:\n{said}");
    assert!(!status.success());
    assert!(
        said.contains("not initialised") && said.contains("store"),
        "the agent says why it stopped"
    );
    let jobs = cluster
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        !jobs.is_empty(),
        "the controller asked for the medium to be imaged"
    );
    assert!(
        jobs.iter()
            .all(|j| j.status.as_ref().is_none_or(|s| s.agent.is_none())),
        "no job was claimed"
    );
    assert!(
        std::fs::read_dir(&store).unwrap().next().is_none(),
        "nothing was written where the store was"
    );
    // An agent started now refuses at once (in the chart, its `ntt init` would).
    let output = host.run(&["agent", "--node", NODE]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not initialised"));
    // The disk is back: a new agent finishes the medium.
    std::fs::remove_dir(&store).unwrap();
    std::fs::rename(&away, &store).unwrap();
    let (second, _) = cluster.agent(&host, "agent-b");
    cluster
        .until("letters", "copied once the store is back", 120, |m| {
            phase(m) == Phase::Completed
        })
        .await;
    assert_eq!(report(&host, "lab/letters")["accounting"]["copied"], 6);
    stop_agent(second).await;
    cluster.stop().await;
}

/// Whoever may create a Medium names a path on a node, and the agent reads it
/// as root. The node's system disk, a device of the wrong kind, a directory outside the allowed
/// roots (or reached through a link out of them), NTT's own mount directory and a directory
/// declared as an image are each refused before anything is read, permanently, with the rule.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn media_naming_what_the_admin_did_not_allow_are_refused_with_the_rule(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    let system_disk = std::fs::read_dir("/sys/block")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| !name.starts_with("loop") && !name.starts_with("zram"))
        .map(|name| format!("/dev/{name}"))
        .expect("the machine has a disk");
    let escape = host.root.join("escape");
    std::os::unix::fs::symlink("/etc", &escape).unwrap();
    let case = host.root.join("case");
    tree(&case, 2);
    let refused = [
        (
            "system-disk",
            json!({"device": system_disk}),
            "device-not-allowed",
        ),
        (
            "not-a-disk",
            json!({"device": "/dev/zero"}),
            "kind-mismatch",
        ),
        ("outside", json!({"directory": "/etc"}), "outside-roots"),
        (
            "through-a-link",
            json!({"directory": escape}),
            "outside-roots",
        ),
        (
            "own-mounts",
            json!({"directory": host.root.join("mnt")}),
            "ntt-directory",
        ),
        ("not-an-image", json!({"image": case}), "kind-mismatch"),
    ];
    std::fs::create_dir_all(host.root.join("mnt")).unwrap();
    for (name, source, _) in &refused {
        cluster.apply(&manifest(name, source)).await;
    }
    for (name, _, rule) in &refused {
        let medium = cluster
            .until(name, "refused", 60, |m| phase(m) == Phase::Failed)
            .await;
        let status = medium.status.unwrap();
        let error = status.last_error.unwrap();
        assert_eq!(error.class, ErrorClass::Permanent, "{name}");
        assert!(
            error.message.contains(rule) && error.message.contains("allowlist"),
            "{name}: {}",
            error.message
        );
        assert_eq!(status.attempts, 1, "{name}: refused once, not retried");
    }
    // An allowed device that is mounted is refused too: an image of a disk being written is of
    // no single moment (and the node's own disks are mounted).
    let filesystem = host.root.join("mounted.img");
    ext4(&filesystem, 8 * MIB, &case);
    let output = std::process::Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&filesystem)
        .output()
        .unwrap();
    let device = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let point = host.root.join("mounted");
    std::fs::create_dir_all(&point).unwrap();
    host::run(
        std::process::Command::new("mount")
            .args(["-o", "ro"])
            .arg(&device)
            .arg(&point),
    );
    cluster
        .apply(&manifest("mounted", &json!({"device": device})))
        .await;
    let medium = cluster
        .until("mounted", "refused", 60, |m| phase(m) == Phase::Failed)
        .await;
    let error = medium.status.unwrap().last_error.unwrap();
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(error.message.contains("in use"), "{}", error.message);
    host::run(std::process::Command::new("umount").arg(&point));
    host::run(std::process::Command::new("losetup").arg("-d").arg(&device));
    let media: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(media, 0, "nothing was registered or imaged");
    stop_agent(agent).await;
    cluster.stop().await;
}

/// Waits until the job has ended (succeeded or failed) and returns it.
async fn until_job_ends(cluster: &Cluster, name: &str) -> MediumJob {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let job = cluster.jobs.get(name).await.unwrap();
        if job
            .status
            .as_ref()
            .is_some_and(|s| matches!(s.state, JobState::Succeeded | JobState::Failed))
        {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {name} never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A MediumJob is a command to a privileged agent. One made by hand (no
/// owning Medium) and a hand-made purge of a Medium that is not being deleted are refused
/// without anything being run; the medium and its catalog rows stay.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn hand_made_jobs_and_purges_are_refused(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    let dir = host.root.join("letters");
    tree(&dir, 3);
    cluster
        .apply(&manifest("letters", &json!({"directory": dir})))
        .await;
    let medium = cluster
        .until("letters", "copied", 120, |m| phase(m) == Phase::Completed)
        .await;
    let hash = medium.status.as_ref().unwrap().medium_hash.clone().unwrap();
    let other = host.root.join("other");
    tree(&other, 1);
    let spec = |stage: &str, source: &Value, hash: Option<&str>| {
        json!({"medium": "letters", "stage": stage, "nodeName": NODE, "attempt": 1,
               "source": source, "target": "Copied", "mediumHash": hash})
    };
    let owner = json!([{"apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "Medium",
                        "name": "letters", "uid": medium.uid().unwrap(), "controller": true}]);
    let hand_made = [
        (
            "no-owner",
            json!({"name": "no-owner", "namespace": NS}),
            spec("Image", &json!({"directory": other}), None),
            "no owning Medium",
        ),
        (
            "other-source",
            json!({"name": "other-source", "namespace": NS, "ownerReferences": owner}),
            spec("Image", &json!({"directory": other}), None),
            "source",
        ),
        (
            "purge-unasked",
            json!({"name": "purge-unasked", "namespace": NS, "ownerReferences": owner}),
            spec("Purge", &json!({"directory": dir}), Some(&hash)),
            "not being deleted",
        ),
    ];
    for (name, metadata, spec, _) in &hand_made {
        let job: MediumJob = serde_json::from_value(json!({
            "apiVersion": "ntt.hrdag.org/v1alpha1", "kind": "MediumJob",
            "metadata": metadata, "spec": spec,
        }))
        .unwrap();
        cluster
            .jobs
            .create(&PostParams::default(), &job)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, _, _, why) in &hand_made {
        let job = until_job_ends(&cluster, name).await;
        let status = job.status.unwrap();
        assert_eq!(status.state, JobState::Failed, "{name}");
        let error = status.error.unwrap();
        assert_eq!(error.class, ErrorClass::Permanent, "{name}");
        assert!(
            error.message.contains("not a job the controller made") && error.message.contains(why),
            "{name}: {}",
            error.message
        );
    }
    // Nothing ran: one medium in the catalog, still whole.
    let media: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(media, 1);
    assert_eq!(report(&host, "lab/letters")["accounting"]["copied"], 4);
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn deleting_a_running_medium_cancels_its_job_and_keeps_the_evidence(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    let dir = host.root.join("deleted");
    tree(&dir, 3000);
    cluster
        .apply(&manifest("deleted", &json!({"directory": dir})))
        .await;
    cluster.until_copy_runs().await;
    cluster
        .media
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    cluster.until_gone("deleted").await;
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
    let report = report(&host, "lab/deleted");
    assert_eq!(report["balances"], true, "{report}");
    let status = host.run(&["status", "--json"]);
    let media: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(media.as_array().unwrap().len(), 1);
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

/// An ext4 image holding one file whose content is `word`.
fn small_image(host: &Host, word: &str) -> std::path::PathBuf {
    let content = host.root.join(format!("{word}-content"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("note.txt"), word).unwrap();
    let image = host.root.join(format!("{word}.img"));
    ext4(&image, 8 * MIB, &content);
    image
}

/// Catalog names from `ntt status --json`.
fn catalog_names(host: &Host) -> Vec<String> {
    let status = host.run(&["status", "--json"]);
    let media: Value = serde_json::from_slice(&status.stdout).unwrap();
    let mut names: Vec<String> = media
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// A purge acts on the medium whose hash the Medium's status recorded, never on one
/// found by name: not the standalone medium called `2024` (a name that also looks like a hash
/// prefix), not the one a Medium `2024` of another namespace would have.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_purge_removes_only_the_medium_whose_hash_the_status_recorded(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    let bystander = register(&host, &small_image(&host, "bystander"), "2024");
    let neighbour = register(&host, &small_image(&host, "neighbour"), "other/2024");
    for name in ["2024", "other/2024"] {
        let output = host.run(&["enumerate", name, "--json"]);
        assert!(output.status.success(), "ntt enumerate {name}");
    }
    let mut ours = manifest("2024", &json!({"image": small_image(&host, "ours")}));
    ours["spec"]["target"] = json!("Enumerated");
    cluster.apply(&ours).await;
    let done = cluster
        .until("2024", "enumerated", 120, |m| phase(m) == Phase::Completed)
        .await;
    let hash = done.status.unwrap().medium_hash.unwrap();
    assert_ne!(hash, bystander);
    let entries = |name: &str| report(&host, name)["accounting"]["entries"].clone();
    let before = (entries("2024"), entries("other/2024"));
    assert!(before.0.as_i64().unwrap() > 0 && before.1.as_i64().unwrap() > 0);
    assert_eq!(catalog_names(&host), ["2024", "lab/2024", "other/2024"]);
    // Armed at deletion time, as `kubectl ntt purge 2024 --yes` does.
    let mut said = Vec::new();
    assert!(
        ntt_controller::plugin::purge(&cluster.media, "2024", true, &mut said)
            .await
            .unwrap()
    );
    cluster.until_gone("2024").await;
    assert_eq!(catalog_names(&host), ["2024", "other/2024"]);
    for (name, hash) in [("2024", &bystander), ("other/2024", &neighbour)] {
        assert_eq!(report(&host, name)["hash"], json!(hash));
    }
    assert_eq!(
        (entries("2024"), entries("other/2024")),
        before,
        "both keep their loads"
    );
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

/// Seconds of CPU the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    #[expect(clippy::cast_precision_loss, reason = "a few seconds of ticks")]
    let seconds = ticks as f64 / 100.0;
    seconds
}

/// SIGTERM, then waits up to `limit` for the exit; its status. Async: the API server the agent
/// talks to on its way out runs on this test's runtime.
async fn terminate(agent: &mut Child, limit: Duration) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the agent did not stop within {limit:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the agent's /healthz answers.
async fn until_serving(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent stops on SIGTERM whether idle or running a stage; a stage stopped by
/// the shutdown ends `Interrupted`, and the controller runs it again at once without counting
/// an attempt, so a rolling upgrade never fails a Medium.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn sigterm_stops_the_agent_idle_or_mid_stage_and_the_stage_goes_on_uncounted(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (mut idle, port) = cluster.agent(&host, "agent-idle");
    until_serving(port).await;
    assert!(
        terminate(&mut idle, Duration::from_secs(10))
            .await
            .success()
    );

    let (mut first, _) = cluster.agent(&host, "agent-a");
    let dir = host.root.join("busy");
    tree(&dir, 3000);
    cluster
        .apply(&manifest("busy", &json!({"directory": dir})))
        .await;
    cluster.until_copy_runs().await;
    assert!(
        terminate(&mut first, Duration::from_secs(30))
            .await
            .success()
    );
    // The interrupted job is recorded on the Medium, and replaced at once (the controller
    // deletes a superseded job).
    let waiting = cluster
        .until("busy", "the interruption recorded", 30, |m| {
            m.status
                .as_ref()
                .and_then(|s| s.last_error.as_ref())
                .is_some_and(|e| e.class == ErrorClass::Interrupted)
        })
        .await
        .status
        .unwrap();
    assert_eq!(waiting.attempts, 1, "{waiting:?}");
    assert_eq!(waiting.phase, Phase::Copying, "{waiting:?}");
    let (second, _) = cluster.agent(&host, "agent-b");
    let done = cluster
        .until("busy", "copied by the new agent", 180, |m| {
            phase(m) == Phase::Completed
        })
        .await;
    assert_eq!(
        done.status.unwrap().attempts,
        1,
        "the interrupted attempt is not counted"
    );
    let copies: Vec<MediumJob> = cluster
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.spec.stage == Stage::Copy)
        .collect();
    let last = copies.iter().max_by_key(|j| j.spec.attempt).unwrap();
    assert_eq!(last.spec.attempt, 2);
    assert_eq!(
        last.status.as_ref().map(|s| (s.state, s.agent.clone())),
        Some((JobState::Succeeded, Some("agent-b".to_owned())))
    );
    let report = report(&host, "lab/busy");
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["copied"], 3001, "{report}");
    stop_agent(second).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

/// With the API server gone, the agent's watch retries with backoff: it does not
/// spin, and SIGTERM still stops it.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn without_an_api_server_the_agent_idles_and_still_stops(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (mut agent, port) = cluster.agent(&host, "agent-a");
    until_serving(port).await;
    cluster.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_seconds(agent.id());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_seconds(agent.id()) - before;
    assert!(
        used < 0.5,
        "the agent used {used:.2} s of CPU in 5 s without an API server"
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert!(
        terminate(&mut agent, Duration::from_secs(10))
            .await
            .success()
    );
}

/// The Medium `slow`: 300 files of 64 KiB on an ext4 image, enumerated, then moved onto a
/// slow disk (every read waits 40 ms) and taken on to `Copied`, so its copy outlasts several
/// heartbeats. Needs an agent running.
async fn slow_medium(host: &Host, cluster: &Cluster, pool: &PgPool) -> faulty_disk::FaultyDisk {
    let content = host.root.join("slow-content");
    std::fs::create_dir_all(&content).unwrap();
    for f in 0..300u64 {
        std::fs::write(
            content.join(format!("f{f:03}.bin")),
            faulty_disk::disk_content(64 * 1024, f),
        )
        .unwrap();
    }
    let image = host.root.join("slow.img");
    ext4(&image, 32 * MIB, &content);
    let mut slow = manifest("slow", &json!({"image": image}));
    slow["spec"]["target"] = json!("Enumerated");
    cluster.apply(&slow).await;
    cluster
        .until("slow", "enumerated", 120, |m| {
            phase(m) == Phase::Completed
                && m.status.as_ref().is_some_and(|s| s.is_true("Enumerated"))
        })
        .await;
    let disk = faulty_disk::FaultyDisk::start(
        std::fs::read(&image).unwrap(),
        faulty_disk::Faults::default(),
    );
    disk.set_delay(Duration::from_millis(40));
    sqlx::query("update medium set image_path = $1 where name = 'lab/slow'")
        .bind(disk.file().to_str().unwrap())
        .execute(pool)
        .await
        .unwrap();
    cluster
        .media
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": "Copied"}})),
        )
        .await
        .unwrap();
    disk
}

/// Waits until the copy job of `slow` runs and has heartbeated at least twice.
async fn until_copy_beats(cluster: &Cluster) {
    let mut beats = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while beats.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no heartbeats");
        for job in cluster
            .jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            if job.spec.stage == Stage::Copy
                && let Some(status) = job.status
                && status.state == JobState::Running
                && let Some(beat) = status.heartbeat_at
            {
                beats.insert(beat.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An agent restarted with the same name (a container restart keeps the pod name)
/// fails and releases the job its previous life left running at once, instead of leaving it
/// to the controller's lost-agent deadline; the copy then completes.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_agent_restarted_under_the_same_name_sweeps_its_own_leftovers(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (first, _) = cluster.agent(&host, "agent-a");
    let disk = slow_medium(&host, &cluster, &pool).await;
    until_copy_beats(&cluster).await;
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    let (again, _) = cluster.agent(&host, "agent-a");
    let swept = cluster
        .until("slow", "the leftover failed by the sweep", 30, |m| {
            m.status
                .as_ref()
                .and_then(|s| s.last_error.as_ref())
                .is_some_and(|e| e.class == ErrorClass::Transient && e.message.contains("stopped"))
        })
        .await;
    assert_eq!(
        swept.status.unwrap().last_error.unwrap().message,
        "the agent running it (agent-a) stopped; the job is retried"
    );
    disk.set_delay(Duration::ZERO);
    cluster
        .until("slow", "copied", 180, |m| {
            phase(m) == Phase::Completed && m.status.as_ref().is_some_and(|s| s.is_true("Copied"))
        })
        .await;
    let report = report(&host, "lab/slow");
    assert_eq!(report["accounting"]["copied"], 300, "{report}");
    stop_agent(again).await;
    // What the killed agents left attached goes first, then the disk.
    assert!(host.run(&["unmount", "lab/slow"]).status.success());
    drop(disk);
    cluster.assert_rbac();
    cluster.stop().await;
}

/// A node whose agent never comes back. The lost attempt is retried, and the new
/// job waits saying why (`Scheduled`: `AgentLost`, once the agent's Lease ran out), with one
/// Warning event once it has waited past `--unclaimed-warning`; nothing is failed for it.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_node_whose_agent_never_comes_back_says_so_and_fails_nothing(pool: PgPool) {
    use k8s_openapi::api::events::v1::Event;
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (first, _) = cluster.agent(&host, "agent-a");
    let disk = slow_medium(&host, &cluster, &pool).await;
    until_copy_beats(&cluster).await;
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    let waiting = cluster
        .until("slow", "waiting for a lost agent", 60, |m| {
            m.status
                .as_ref()
                .and_then(|s| s.condition(condition::SCHEDULED))
                .is_some_and(|c| c.reason == condition::reason::AGENT_LOST)
        })
        .await;
    let status = waiting.status.unwrap();
    assert_ne!(status.phase, Phase::Failed, "{status:?}");
    assert_eq!(status.last_error.map(|e| e.class), Some(ErrorClass::Lost));
    let events: Api<Event> = Api::namespaced(cluster.server.client(NS), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let warned = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("JobUnclaimed"))
            .count();
        if warned > 0 {
            assert_eq!(warned, 1, "warned once");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no JobUnclaimed event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let medium = cluster.media.get("slow").await.unwrap().status.unwrap();
    assert_ne!(medium.phase, Phase::Failed);
    // What the killed agents left attached goes first, then the disk.
    assert!(host.run(&["unmount", "lab/slow"]).status.success());
    drop(disk);
    cluster.assert_rbac();
    cluster.stop().await;
}

/// An agent killed (SIGKILL) mid-copy after several heartbeats, twice in a row.
/// Every heartbeat keeps the job `Running` (it carries all the agent's fields; server-side
/// apply drops the ones left out), so the controller's lost-agent deadline applies and a new agent finishes the copy,
/// taking over the dead run's leases at once: every file copied exactly once.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn an_agent_killed_after_several_heartbeats_is_found_lost_and_replaced(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (first, _) = cluster.agent(&host, "agent-a");
    let disk = slow_medium(&host, &cluster, &pool).await;
    let copy_job = |jobs: Vec<MediumJob>| {
        jobs.into_iter()
            .filter(|j| j.spec.stage == Stage::Copy)
            .max_by_key(|j| j.spec.attempt)
    };
    // Two kills in a row: each agent is killed after several heartbeats of its copy attempt,
    // each attempt is found lost, the next agent takes the next attempt.
    let mut agent = first;
    for attempt in 1..=2 {
        let mut beats = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        while beats.len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "attempt {attempt}: no heartbeats: {beats:?}"
            );
            if let Some(job) = copy_job(
                cluster
                    .jobs
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items,
            ) && job.spec.attempt == attempt
                && let Some(status) = job.status
                && let Some(beat) = status.heartbeat_at
            {
                assert_eq!(
                    status.state,
                    JobState::Running,
                    "attempt {attempt} after {} heartbeats",
                    beats.len()
                );
                beats.insert(beat.0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        agent.kill().unwrap();
        agent.wait().unwrap();
        cluster
            .until("slow", "the job found lost and retried", 60, |m| {
                m.status.as_ref().is_some_and(|s| {
                    s.last_error
                        .as_ref()
                        .is_some_and(|e| e.class == ErrorClass::Lost)
                        && s.current_job
                            .as_deref()
                            .is_some_and(|j| j.ends_with(&format!("-copy-{}", attempt + 1)))
                })
            })
            .await;
        if attempt == 1 {
            agent = cluster.agent(&host, "agent-b").0;
        }
    }
    disk.set_delay(Duration::ZERO);
    let (second, _) = cluster.agent(&host, "agent-c");
    cluster
        .until("slow", "copied by the third agent", 180, |m| {
            phase(m) == Phase::Completed && m.status.as_ref().is_some_and(|s| s.is_true("Copied"))
        })
        .await;
    let report = report(&host, "lab/slow");
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["copied"], 300, "{report}");
    assert_eq!(report["accounting"]["pending"], 0, "{report}");
    assert_eq!(report["content"]["distinct_blobs"], 300, "{report}");
    assert!(
        host.run(&["verify", "--medium", "lab/slow"])
            .status
            .success()
    );
    stop_agent(second).await;
    drop(disk);
    cluster.stop().await;
}

/// A job that waits says why. With no agent on the node the Medium's `Scheduled`
/// condition says `NoAgent` (and a Warning event follows once the wait is long); once an agent
/// announces itself (its node Lease) and claims the job, `Scheduled` is True.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_waiting_job_says_why_it_waits(pool: PgPool) {
    use k8s_openapi::api::coordination::v1::Lease;
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let image = small_image(&host, "waiting");
    cluster
        .apply(&manifest("waiting", &json!({"image": image})))
        .await;
    let waiting = cluster
        .until("waiting", "waiting for an agent", 30, |m| {
            m.status
                .as_ref()
                .and_then(|s| s.condition(condition::SCHEDULED))
                .is_some_and(|c| c.status == "False" && c.reason == condition::reason::NO_AGENT)
        })
        .await;
    let message = waiting
        .status
        .unwrap()
        .condition(condition::SCHEDULED)
        .unwrap()
        .message
        .clone();
    assert!(message.contains("dock-1"), "{message}");
    let (agent, _) = cluster.agent(&host, "agent-a");
    cluster
        .until("waiting", "copied", 120, |m| {
            phase(m) == Phase::Completed && m.status.as_ref().is_some_and(|s| s.is_true("Copied"))
        })
        .await;
    let leases: Api<Lease> = Api::namespaced(cluster.server.client(NS), NS);
    let lease = leases
        .get(&condition::agent_lease_name(NODE))
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("agent-a"));
    assert!(spec.renew_time.is_some());
    let annotations = lease.metadata.annotations.unwrap();
    assert_eq!(
        annotations
            .get(condition::MAX_JOBS_ANNOTATION)
            .map(String::as_str),
        Some("1")
    );
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

/// An API server that refuses writes now and then, drops every watch midway and
/// delivers events late slows a Medium down but never breaks it: the agent's claim, heartbeat
/// and final status writes and the controller's status writes are refused a few times each,
/// and the Medium still ends `Copied` with every file once.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn api_server_faults_slow_a_medium_down_but_never_break_it(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    cluster.server.delay_events(Duration::from_millis(100));
    cluster.server.refuse("patch", "mediumjobs/status", 3);
    cluster.server.refuse("patch", "media/status", 3);
    cluster.server.refuse("create", "mediumjobs", 1);
    let (agent, _) = cluster.agent(&host, "agent-a");
    let dir = host.root.join("faulty");
    tree(&dir, 500);
    cluster
        .apply(&manifest("faulty", &json!({"directory": dir})))
        .await;
    cluster
        .until("faulty", "enumerated", 120, |m| {
            m.status.as_ref().is_some_and(|s| s.is_true("Enumerated"))
        })
        .await;
    cluster.server.drop_watches();
    cluster.server.refuse("patch", "mediumjobs/status", 2);
    let done = cluster
        .until("faulty", "copied despite the faults", 180, |m| {
            phase(m) == Phase::Completed && m.status.as_ref().is_some_and(|s| s.is_true("Copied"))
        })
        .await;
    let status = done.status.unwrap();
    assert_eq!(
        status.attempts, 1,
        "no attempt was lost to a fault: {status:?}"
    );
    let report = report(&host, "lab/faulty");
    assert_eq!(report["balances"], true, "{report}");
    assert_eq!(report["accounting"]["copied"], 501, "{report}");
    let refused = cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.resource == "mediumjobs/status" && r.verb == "patch")
        .count();
    assert!(refused > 5, "the status writes went on: {refused}");
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}

/// `ntt ls MEDIUM --damaged --json`: the damaged paths.
fn damaged_paths(host: &Host, medium: &str) -> Vec<String> {
    host::ls_damaged(host, medium)
        .iter()
        .map(|v| v["path"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_raised_profile_images_the_drive_again_and_recopies_what_it_rescued(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    // A drive whose one block of `ledger.bin` fails its first two reads: the default passes
    // leave it unread, the thorough ones (retries) read it.
    let content = host.root.join("drive-content");
    std::fs::create_dir_all(&content).unwrap();
    let ledger = faulty_disk::disk_content(256 * 1024, 3);
    std::fs::write(content.join("ledger.bin"), &ledger).unwrap();
    let drive_fs = host.root.join("drive.fs");
    host::sparse_file(&drive_fs, 16 * MIB);
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&content)
        .arg(&drive_fs)
        .status()
        .unwrap();
    assert!(made.success());
    let block = host::ext4_blocks(&drive_fs, "ledger.bin")[0] + 8;
    let disk_bytes = std::fs::read(&drive_fs).unwrap();
    let mut disk = faulty_disk::FaultyDisk::start(
        disk_bytes,
        faulty_disk::Faults {
            flaky: vec![(block * 4096..(block + 1) * 4096, 2)],
            ..faulty_disk::Faults::default()
        },
    );
    let device = disk.attach();
    let mut drive = manifest("ledger-drive", &json!({"device": device}));
    drive["spec"]["imaging"] = json!({"profile": "Default", "stallTimeoutSeconds": 300});
    cluster.apply(&drive).await;
    let first = cluster
        .until("ledger-drive", "copied", 180, |m| {
            phase(m) == Phase::Completed
        })
        .await;
    let status = first.status.unwrap();
    assert_eq!(status.health.as_deref(), Some("incomplete"), "{status:?}");
    assert_eq!(
        status.imaged_profile,
        Some(ntt_crds::ImagingProfile::Default)
    );
    assert_eq!(status.source.as_deref(), device.to_str());
    assert!(status.is_true(condition::READY) && !status.is_true(condition::STALLED));
    assert_eq!(damaged_paths(&host, "lab/ledger-drive"), ["ledger.bin"]);
    // The image job's last progress is ddrescue's: what it rescued, and that 4 KiB is not.
    let image_job = cluster.jobs.get("ledger-drive-image-1").await.unwrap();
    let progress = image_job.status.unwrap().progress.unwrap();
    let size = i64::try_from(16 * MIB).unwrap();
    assert_eq!(progress.bytes_rescued, Some(size - 4096), "{progress:?}");
    assert!(progress.percent.is_some_and(|p| p < 100), "{progress:?}");
    assert!(
        progress
            .summary
            .starts_with("imaged, health incomplete: 99.97% rescued"),
        "{progress:?}"
    );

    // Thorough, with retries: imaged again from the same mapfile, mapped and copied again.
    cluster
        .media
        .patch(
            "ledger-drive",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imaging": {"profile": "Thorough", "retries": 2}}})),
        )
        .await
        .unwrap();
    let second = cluster
        .until("ledger-drive", "imaged again and copied", 180, |m| {
            phase(m) == Phase::Completed
                && m.status
                    .as_ref()
                    .is_some_and(|s| s.imaged_profile == Some(ntt_crds::ImagingProfile::Thorough))
        })
        .await;
    let status = second.status.unwrap();
    assert_eq!(status.health.as_deref(), Some("ok"), "{status:?}");
    assert!(!status.is_true(condition::DEGRADED), "{status:?}");
    assert!(damaged_paths(&host, "lab/ledger-drive").is_empty());
    assert_eq!(
        host.run(&["cat", "lab/ledger-drive", "ledger.bin"]).stdout,
        ledger
    );
    let image_job = cluster.jobs.get("ledger-drive-image-2").await.unwrap();
    assert_eq!(image_job.spec.imaging.retries, Some(2));
    let progress = image_job.status.unwrap().progress.unwrap();
    assert_eq!(progress.bytes_rescued, Some(size), "{progress:?}");
    assert_eq!((progress.percent, progress.bytes_bad), (Some(100), Some(0)));
    for stage in ["enumerate", "copy"] {
        let job = cluster
            .jobs
            .get(&format!("ledger-drive-{stage}-2"))
            .await
            .unwrap();
        assert_eq!(
            job.spec.image_profile,
            Some(ntt_crds::ImagingProfile::Thorough)
        );
        assert_eq!(job.status.unwrap().state, JobState::Succeeded);
    }
    let report = report(&host, "lab/ledger-drive");
    assert_eq!(report["balances"], true, "{report}");
    stop_agent(agent).await;
    disk.detach();
    cluster.assert_rbac();
    cluster.stop().await;
}

/// A drive less than half of which could be rescued has health `failed`, and
/// its volumes are not mounted: enumeration fails for good and says, in the Medium's terms, how
/// to force it. A force naming another hash forces nothing; the recorded hash mounts it, and
/// what was readable is enumerated and copied.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_failed_drive_is_mounted_only_once_its_force_confirms_its_hash(pool: PgPool) {
    let host = Host::new(&pool).await;
    let cluster = Cluster::start(&host).await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    // A 4 MiB ext4 at the start of a 12 MiB drive whose last 8 MiB cannot be read.
    let content = host.root.join("drive-content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("notes.txt"), b"field notes\n").unwrap();
    let drive_fs = host.root.join("drive.fs");
    ext4(&drive_fs, 4 * MIB, &content);
    let mut disk_bytes = std::fs::read(&drive_fs).unwrap();
    disk_bytes.resize(usize::try_from(12 * MIB).unwrap(), 0);
    let mut disk = faulty_disk::FaultyDisk::start(
        disk_bytes,
        faulty_disk::Faults {
            bad: vec![4 * MIB..12 * MIB],
            ..faulty_disk::Faults::default()
        },
    );
    let device = disk.attach();
    cluster
        .apply(&manifest("weak-drive", &json!({"device": device})))
        .await;
    let refused = cluster
        .until("weak-drive", "enumeration refused", 300, |m| {
            phase(m) == Phase::Failed
        })
        .await;
    let status = refused.status.unwrap();
    assert_eq!(status.health.as_deref(), Some("failed"), "{status:?}");
    let hash = status.medium_hash.clone().unwrap();
    let error = status.last_error.clone().unwrap();
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(
        error
            .message
            .contains(&format!("set spec.force: {hash} (its medium hash)")),
        "{}",
        error.message
    );
    assert!(status.is_true(condition::STALLED), "{status:?}");
    let enumerate = cluster.jobs.get("weak-drive-enumerate-1").await.unwrap();
    assert!(!enumerate.spec.force);
    assert_eq!(enumerate.status.unwrap().state, JobState::Failed);

    // A force naming another medium: nothing runs.
    let force = |value: &str| {
        let media = cluster.media.clone();
        let value = value.to_owned();
        async move {
            media
                .patch(
                    "weak-drive",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"force": value}})),
                )
                .await
                .unwrap();
        }
    };
    force("ffffffffffffffffffffffffffffffff").await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.server.client(NS), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while !events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some("ForceNotConfirmed"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ForceNotConfirmed event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cluster
            .jobs
            .get_opt("weak-drive-enumerate-2")
            .await
            .unwrap()
            .is_none(),
        "an unconfirmed force starts nothing"
    );
    assert_eq!(
        phase(&cluster.media.get("weak-drive").await.unwrap()),
        Phase::Failed
    );

    // The recorded hash: enumeration runs again, forced, and the readable file is copied.
    force(&hash).await;
    let copied = cluster
        .until("weak-drive", "copied", 180, |m| {
            phase(m) == Phase::Completed
        })
        .await;
    let status = copied.status.unwrap();
    assert!(status.is_true("Copied") && !status.is_true(condition::STALLED));
    assert_eq!(status.health.as_deref(), Some("failed"));
    for name in ["weak-drive-enumerate-2", "weak-drive-copy-1"] {
        let job = cluster.jobs.get(name).await.unwrap();
        assert!(job.spec.force, "{name}");
        assert_eq!(job.status.unwrap().state, JobState::Succeeded, "{name}");
    }
    assert_eq!(
        host.run(&["cat", "lab/weak-drive", "notes.txt"]).stdout,
        b"field notes\n"
    );
    let report = report(&host, "lab/weak-drive");
    assert_eq!(report["balances"], true, "{report}");
    stop_agent(agent).await;
    disk.detach();
    cluster.assert_rbac();
    cluster.stop().await;
}

/// Waits until the controller's metric `series` satisfies `check` (the metrics follow the
/// status a reconcile writes, a moment later).
async fn until_metric(cluster: &Cluster, series: &str, check: impl Fn(f64) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !metric(cluster, series).is_some_and(&check) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series}: {}",
            cluster.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a metric line of the controller (`name{labels}`), if exposed.
fn metric(cluster: &Cluster, series: &str) -> Option<f64> {
    cluster.metrics.render().lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

/// Periodic verification in the cluster: two media sharing a file are verified by verify
/// jobs the controller makes (Verified, the last verified time, metrics); a byte flipped in
/// the shared blob is found when one Medium is asked to verify (the annotation): it becomes
/// Degraded naming the blob and both media, with a Warning event, and the other Medium is
/// asked and finds it too.
#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn copied_media_are_verified_on_a_schedule_and_a_flipped_byte_degrades_every_holder(
    pool: PgPool,
) {
    use k8s_openapi::api::events::v1::Event;
    let host = Host::new(&pool).await;
    let cluster = Cluster::start_verifying(
        &host,
        Some(ntt_controller::plan::VerifySettings {
            interval: Duration::from_secs(6),
            budget: Duration::from_mins(1),
        }),
    )
    .await;
    let (agent, _) = cluster.agent(&host, "agent-a");
    let shared = "the same report, on two media\n".repeat(200);
    for name in ["first", "second"] {
        let dir = host.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.txt"), &shared).unwrap();
        std::fs::write(dir.join("own.txt"), format!("only on {name}\n")).unwrap();
        cluster
            .apply(&manifest(name, &json!({"directory": dir})))
            .await;
    }
    let verified = |m: &Medium| {
        m.status
            .as_ref()
            .and_then(|s| s.condition(condition::VERIFIED))
            .is_some_and(|c| c.status == "True")
    };
    for name in ["first", "second"] {
        let medium = cluster
            .until(name, "verified by a verify job", 120, verified)
            .await;
        let status = medium.status.unwrap();
        assert_eq!(status.phase, Phase::Completed);
        let state = status.verification.unwrap();
        assert!(state.last_verified_at.is_some(), "{state:?}");
        assert_eq!(state.bad_blobs, 0);
        assert!(
            state
                .job
                .as_deref()
                .is_some_and(|j| j.starts_with(&format!("{name}-verify-"))),
            "{state:?}"
        );
        until_metric(
            &cluster,
            &format!(
                "ntt_controller_medium_verified_timestamp_seconds{{namespace=\"{NS}\",medium=\"{name}\"}}"
            ),
            |t| t > 1.0e9,
        )
        .await;
    }
    // The catalog says the same: each medium fully verified.
    let unverified: i64 =
        sqlx::query_scalar("select count(*) from medium where verified_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unverified, 0);
    // A byte flipped in the shared blob, then `first` asked to verify now.
    let blob = blake3::hash(shared.as_bytes()).to_hex().to_string();
    let path = host
        .root
        .join("store")
        .join(&blob[..2])
        .join(&blob[2..4])
        .join(&blob);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7] ^= 0x20;
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    #[allow(
        clippy::permissions_set_readonly_false,
        reason = "the test tampers on purpose"
    )]
    permissions.set_readonly(false);
    std::fs::set_permissions(&path, permissions).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    cluster
        .media
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {condition::VERIFY_ANNOTATION: "now"}}}),
            ),
        )
        .await
        .unwrap();
    let degraded = |m: &Medium| {
        m.status
            .as_ref()
            .and_then(|s| s.condition(condition::DEGRADED))
            .is_some_and(|c| c.status == "True" && c.reason == condition::reason::FIXITY_FAILED)
    };
    for name in ["first", "second"] {
        let medium = cluster
            .until(name, "degraded by the flipped byte", 120, degraded)
            .await;
        let status = medium.status.unwrap();
        let message = &status.condition(condition::DEGRADED).unwrap().message;
        assert!(
            message.starts_with("1 blob(s) of this medium failed verification")
                && message.contains(&format!("{blob} mismatch (held by lab/first, lab/second)")),
            "{message}"
        );
        assert_eq!(
            status.condition(condition::VERIFIED).unwrap().reason,
            condition::reason::FIXITY_FAILED
        );
        let state = status.verification.unwrap();
        assert_eq!(state.bad_blobs, 1);
        assert!(state.last_verified_at.is_none());
        until_metric(
            &cluster,
            &format!("ntt_controller_medium_bad_blobs{{namespace=\"{NS}\",medium=\"{name}\"}}"),
            |bad| (bad - 1.0).abs() < f64::EPSILON,
        )
        .await;
    }
    // `second` was asked by the controller, not by a person.
    let second = cluster.media.get("second").await.unwrap();
    assert!(
        second
            .annotations()
            .get(condition::VERIFY_ANNOTATION)
            .is_some_and(|v| v.starts_with("fixity-failed-")),
        "{:?}",
        second.annotations()
    );
    // A Warning event on each, naming the blob.
    let events: Api<Event> = Api::namespaced(cluster.server.client(NS), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let warned: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(condition::reason::FIXITY_FAILED)
                    && e.note.as_deref().is_some_and(|n| n.contains(&blob))
            })
            .filter_map(|e| e.regarding.and_then(|r| r.name))
            .collect();
        if warned.contains(&"first".to_owned()) && warned.contains(&"second".to_owned()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FixityFailed event on both: {warned:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The catalog agrees: the blob is recorded wrong and neither medium is fully verified.
    let outcome: String =
        sqlx::query_scalar("select verify_outcome::text from blob where encode(id, 'hex') = $1")
            .bind(&blob)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(outcome, "mismatch");
    let verified: i64 =
        sqlx::query_scalar("select count(*) from medium where verified_at is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(verified, 0);
    stop_agent(agent).await;
    cluster.assert_rbac();
    cluster.stop().await;
}
