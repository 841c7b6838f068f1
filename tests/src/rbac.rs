//! RBAC as the Helm chart grants it, to check the requests a component really made (recorded
//! by the in-memory API server) against what the chart lets it do. `helm` must be installed
//! (`scripts/setup` does).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::apiserver::Request;

/// One rule of a `Role` or `ClusterRole`, where it applies.
#[derive(Debug, Clone)]
struct Grant {
    /// The Role's namespace; `None` for a `ClusterRole` bound cluster-wide.
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    /// `resourceNames`: the objects the rule is limited to (empty: all).
    names: Vec<String>,
}

/// What the chart lets one service account do.
#[derive(Debug, Clone)]
pub struct Grants {
    /// The user the API server sees: `system:serviceaccount:<namespace>:<name>`.
    pub user: String,
    grants: Vec<Grant>,
}

/// The chart's manifests rendered by `helm template ntt` into `namespace`.
///
/// # Panics
///
/// When helm is missing or the chart does not render.
pub fn render_chart(namespace: &str) -> Vec<Value> {
    render_chart_with(namespace, &[])
}

/// [`render_chart`] with more `helm template` arguments (`--set-json`, `--values`, ...).
///
/// # Panics
///
/// When helm is missing or the chart does not render.
pub fn render_chart_with(namespace: &str, args: &[&str]) -> Vec<Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ntt");
    let output = Command::new("helm")
        .args(["template", "ntt"])
        .arg(chart)
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("helm runs (scripts/setup installs it)");
    assert!(
        output.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("YAML is UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| {
            let value: Value = serde::Deserialize::deserialize(d).ok()?;
            (!value.is_null()).then_some(value)
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Grants {
    /// What the chart, rendered into `namespace`, grants the service account `account`
    /// (`ntt-agent`, `ntt-controller`) through its `RoleBindings` and `ClusterRoleBindings`.
    pub fn of(documents: &[Value], namespace: &str, account: &str) -> Self {
        Self::of_subject(
            documents,
            namespace,
            &|s: &Value| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace
            },
            format!("system:serviceaccount:{namespace}:{account}"),
        )
    }

    /// What the chart grants the person `user` (a `User` subject of its bindings, as values
    /// such as `catalogApi.readers` bind them).
    pub fn of_user(documents: &[Value], namespace: &str, user: &str) -> Self {
        Self::of_subject(
            documents,
            namespace,
            &|s: &Value| s["kind"] == "User" && s["name"] == user,
            user.to_owned(),
        )
    }

    fn of_subject(
        documents: &[Value],
        namespace: &str,
        subject: &dyn Fn(&Value) -> bool,
        user: String,
    ) -> Self {
        let mut grants = Vec::new();
        for binding in documents.iter().filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            ) && d["subjects"]
                .as_array()
                .is_some_and(|subjects| subjects.iter().any(subject))
        }) {
            let cluster_wide = binding["kind"] == "ClusterRoleBinding";
            let role = &binding["roleRef"];
            let Some(found) = documents
                .iter()
                .find(|d| d["kind"] == role["kind"] && d["metadata"]["name"] == role["name"])
            else {
                continue;
            };
            let scope = (!cluster_wide).then(|| {
                binding["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(namespace)
                    .to_owned()
            });
            for rule in found["rules"].as_array().into_iter().flatten() {
                grants.push(Grant {
                    namespace: scope.clone(),
                    groups: strings(&rule["apiGroups"]),
                    resources: strings(&rule["resources"]),
                    verbs: strings(&rule["verbs"]),
                    names: strings(&rule["resourceNames"]),
                });
            }
        }
        Self { user, grants }
    }

    /// Whether a request is allowed.
    pub fn allows(&self, request: &Request) -> bool {
        self.grants.iter().any(|g| {
            g.namespace
                .as_ref()
                .is_none_or(|ns| request.namespace.as_ref() == Some(ns))
                && g.groups.contains(&request.group)
                && g.resources.contains(&request.resource)
                && g.verbs.contains(&request.verb)
                && (g.names.is_empty()
                    || request.name.as_ref().is_some_and(|n| g.names.contains(n)))
        })
    }

    /// The requests of this account that the chart does not allow.
    pub fn refused<'a>(&self, requests: &'a [Request]) -> Vec<&'a Request> {
        let mut refused: Vec<&Request> = requests
            .iter()
            .filter(|r| r.user == self.user && !self.allows(r))
            .collect();
        refused.sort();
        refused.dedup();
        refused
    }
}
