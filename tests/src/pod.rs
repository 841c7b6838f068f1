//! A pod of the rendered chart, run on this machine the way a container runtime runs it, so a
//! test sees exactly what the pod can reach.
//!
//! No container runtime can be had here, and what the chart mounts is the question (an agent run
//! on the host sees image and directory sources its pod would not). So [`Pod::command`] builds the
//! container from the rendered pod spec alone, with `unshare` and `chroot`:
//!
//! - a new mount namespace, and a root of its own (a `tmpfs`) holding what the agent image
//!   holds: this machine's `/usr` and `/etc` read-only (the image's Debian with its tools), and
//!   in `/usr/local/bin` only `ntt` (the binary under test, where the `Dockerfile` puts it);
//! - `/proc`, `/sys`, and empty `/tmp` and `/run`, as a privileged container gets them;
//! - every `volumeMount` of the container, from its `hostPath` volume (created for
//!   `DirectoryOrCreate`, required to be a directory or file for `Directory` and `File`),
//!   read-only where `readOnly`, with its `mountPropagation` (`None`: private;
//!   `HostToContainer`: a slave of the host's mount);
//! - the container's `command` and `args`, and its `env` with `fieldRef`s (node, pod name,
//!   namespace) and `secretKeyRef`s resolved from [`Context`];
//! - one stand-in: the API server credentials. A pod finds the API server from its service
//!   account; the in-memory API server speaks plain HTTP, so the harness mounts a kubeconfig
//!   at [`KUBECONFIG`] and sets `KUBECONFIG`.
//!
//! Everything else on this machine (the tests' scratch files, `/root`, `/home`, `/work`) is
//! out of the pod's sight. The mounts the pod's processes make end with them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where the harness mounts the kubeconfig in the pod.
pub const KUBECONFIG: &str = "/var/lib/ntt-test/kubeconfig";

/// What the cluster gives a pod that the rendered spec only names.
#[derive(Debug, Clone)]
pub struct Context {
    /// `spec.nodeName`.
    pub node: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// Secrets' values by (secret, key).
    pub secrets: BTreeMap<(String, String), String>,
    /// The kubeconfig standing in for the service account's credentials.
    pub kubeconfig: PathBuf,
    /// The binary installed as the image's `/usr/local/bin/ntt`.
    pub ntt: PathBuf,
    /// An empty directory on which the container's root is mounted (in its own namespace).
    pub root: PathBuf,
}

/// A pod template from a rendered workload, with its context.
#[derive(Debug, Clone)]
pub struct Pod {
    spec: Value,
    context: Context,
}

impl Pod {
    /// The pod of `workload` (a rendered `DaemonSet`, `Deployment` or `Job`).
    pub fn of(workload: &Value, context: Context) -> Self {
        let spec = workload["spec"]["template"]["spec"].clone();
        assert!(spec.is_object(), "no pod template in {workload}");
        Self { spec, context }
    }

    /// The rendered container `name` (an init container or a container).
    fn container(&self, name: &str) -> &Value {
        ["initContainers", "containers"]
            .iter()
            .filter_map(|list| self.spec[list].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("the pod has no container {name}"))
    }

    /// The container `name` as rendered: its command, args, env and mounts.
    pub fn command(&self, name: &str) -> Command {
        let container = self.container(name);
        let argv: Vec<String> = ["command", "args"]
            .iter()
            .filter_map(|k| container[k].as_array())
            .flatten()
            .map(|a| a.as_str().expect("argument is a string").to_owned())
            .collect();
        self.build(container, &argv)
    }

    /// `argv` run in a fresh container shaped as `name` (what `kubectl exec` would reach).
    pub fn exec(&self, name: &str, argv: &[&str]) -> Command {
        let argv: Vec<String> = argv.iter().map(|&a| a.to_owned()).collect();
        self.build(self.container(name), &argv)
    }

    fn build(&self, container: &Value, argv: &[String]) -> Command {
        assert!(!argv.is_empty(), "the container has no command");
        let root = &self.context.root;
        let mut script = Script(String::from("set -eu\n"));
        let mut line = |words: &[&str]| script.line(words);
        let at = |inside: &str| format!("{}{inside}", root.display());
        // The image.
        line(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "mode=0755",
            "ntt-pod",
            &at(""),
        ]);
        line(&["mount", "--make-private", &at("")]);
        for dir in ["/usr", "/etc"] {
            line(&["mkdir", &at(dir)]);
            line(&["mount", "--bind", "-o", "ro", dir, &at(dir)]);
        }
        line(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "mode=0755",
            "ntt-image",
            &at("/usr/local"),
        ]);
        line(&["mkdir", "-p", &at("/usr/local/bin")]);
        line(&["touch", &at("/usr/local/bin/ntt")]);
        let ntt = self.context.ntt.display().to_string();
        line(&[
            "mount",
            "--bind",
            "-o",
            "ro",
            &ntt,
            &at("/usr/local/bin/ntt"),
        ]);
        for (link, to) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            if Path::new("/usr").join(&to[4..]).exists() {
                line(&["ln", "-s", to, &at(link)]);
            }
        }
        // What a privileged container gets.
        for dir in [
            "/proc",
            "/sys",
            "/tmp",
            "/run",
            "/root",
            "/var/lib/ntt-test",
        ] {
            line(&["mkdir", "-p", &at(dir)]);
        }
        line(&["mount", "-t", "proc", "proc", &at("/proc")]);
        line(&["mount", "--rbind", "/sys", &at("/sys")]);
        line(&["mount", "-t", "tmpfs", "tmpfs", &at("/tmp")]);
        line(&["mount", "-t", "tmpfs", "tmpfs", &at("/run")]);
        // The volumes, parents before children.
        let mut mounts: Vec<&Value> = container["volumeMounts"]
            .as_array()
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        mounts.sort_by_key(|m| m["mountPath"].as_str().map(str::len));
        for mount in mounts {
            self.mount_volume(mount, &mut line, &at);
        }
        // The credentials' stand-in.
        line(&["touch", &at(KUBECONFIG)]);
        let kubeconfig = self.context.kubeconfig.display().to_string();
        line(&["mount", "--bind", "-o", "ro", &kubeconfig, &at(KUBECONFIG)]);
        // The process, with only its own environment.
        let mut exec = vec![
            "exec".to_owned(),
            "chroot".to_owned(),
            root.display().to_string(),
            "/usr/bin/env".to_owned(),
            "-i".to_owned(),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            "HOME=/root".to_owned(),
            format!("KUBECONFIG={KUBECONFIG}"),
        ];
        for (key, value) in self.env(container) {
            exec.push(format!("{key}={value}"));
        }
        exec.extend(argv.iter().cloned());
        let exec: Vec<&str> = exec.iter().map(String::as_str).collect();
        line(&exec);
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg(script.0)
            .current_dir("/");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
    }

    fn mount_volume(
        &self,
        mount: &Value,
        line: &mut impl FnMut(&[&str]),
        at: &impl Fn(&str) -> String,
    ) {
        let name = mount["name"].as_str().expect("volumeMount has a name");
        let target = mount["mountPath"]
            .as_str()
            .expect("volumeMount has a mountPath");
        let volume = self.spec["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name))
            .unwrap_or_else(|| panic!("volumeMount {name} names no volume"));
        let source = volume["hostPath"]["path"].as_str().unwrap_or_else(|| {
            panic!("volume {name} is not a hostPath (the harness has no other)")
        });
        let kind = volume["hostPath"]["type"].as_str().unwrap_or("");
        let file = match kind {
            "DirectoryOrCreate" => {
                line(&["mkdir", "-p", source]);
                false
            }
            "Directory" => {
                line(&["test", "-d", source]);
                false
            }
            "File" => {
                line(&["test", "-f", source]);
                true
            }
            "" => Path::new(source).is_file(),
            other => panic!("hostPath type {other} is not handled by the harness"),
        };
        let inside = at(target);
        if file {
            let parent = Path::new(&inside)
                .parent()
                .expect("a file has a parent")
                .display()
                .to_string();
            line(&["mkdir", "-p", &parent]);
            // The file may be there already, in a read-only mount (`/etc/machine-id`).
            line(&["sh", "-c", "test -e \"$1\" || touch \"$1\"", "sh", &inside]);
        } else {
            line(&["mkdir", "-p", &inside]);
        }
        line(&["mount", "--rbind", source, &inside]);
        if mount["readOnly"] == true {
            line(&["mount", "-o", "remount,bind,ro", &inside]);
        }
        match mount["mountPropagation"].as_str().unwrap_or("None") {
            "None" => line(&["mount", "--make-rprivate", &inside]),
            "HostToContainer" => line(&["mount", "--make-rslave", &inside]),
            other => panic!("mountPropagation {other} is not handled by the harness"),
        }
    }

    /// The container's environment, references resolved as the kubelet resolves them.
    fn env(&self, container: &Value) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let key = var["name"].as_str().expect("env has a name").to_owned();
            let value = if let Some(value) = var["value"].as_str() {
                value.to_owned()
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "spec.nodeName" => self.context.node.clone(),
                    "metadata.name" => self.context.name.clone(),
                    "metadata.namespace" => self.context.namespace.clone(),
                    other => panic!("fieldRef {other} is not handled by the harness"),
                }
            } else if let Some(secret) = var["valueFrom"]["secretKeyRef"].as_object() {
                let name = secret["name"].as_str().expect("secret name").to_owned();
                let key = secret["key"].as_str().expect("secret key").to_owned();
                self.context
                    .secrets
                    .get(&(name.clone(), key.clone()))
                    .unwrap_or_else(|| panic!("no secret {name} with key {key}"))
                    .clone()
            } else {
                panic!("env {key} has a source the harness does not handle: {var}");
            };
            all.push((key, value));
        }
        all
    }
}

/// A shell script, one command per line.
struct Script(String);

impl Script {
    fn line(&mut self, words: &[&str]) {
        let quoted: Vec<String> = words.iter().map(|w| quote(w)).collect();
        self.0.push_str(&quoted.join(" "));
        self.0.push('\n');
    }
}

/// `word` quoted for `sh`.
fn quote(word: &str) -> String {
    let mut quoted = String::from("'");
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// The `DaemonSet`, `Deployment` or `Job` named `name` among rendered documents.
pub fn workload<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let mut names = String::new();
            for d in documents {
                let _ = write!(names, " {}/{}", d["kind"], d["metadata"]["name"]);
            }
            panic!("no {kind} {name} in the rendered chart:{names}")
        })
}
