//! `kubectl ntt`: the kubectl plugin's commands over the API (`status`, `retry`, `pause`,
//! `resume`, `purge`, `report`, `find`, `where`, `overlap`), as functions of a client and an
//! output, so they are testable.
//!
//! Rules: `retry` sets the retry annotation to a new value (the time), which the controller
//! acts on once; `pause`/`resume` set and remove the pause annotation; `report` prints the
//! Medium's status and then the catalog's report; the catalog is asked through the API
//! server's service proxy to the release's catalog service (`ntt serve`, unprivileged, with a
//! read-only connection), never by exec into the privileged agent.

pub mod cli;

use std::io::Write;

use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use ntt_crds::Medium;
use ntt_crds::condition::{PAUSED_ANNOTATION, PURGE_ANNOTATION, RETRY_ANNOTATION};
use serde_json::json;

/// Why a plugin command failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The API refused or failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
    /// The target of `where` names no content.
    #[error(transparent)]
    Target(#[from] ntt_crds::query::TargetError),
    /// A catalog query could not be made or answered.
    #[error("{0}")]
    Query(String),
}

/// The plugin's client for `config`: an interactive command answers at once, so it does not
/// retry 429/503/504 (kube's default retries 503 up to 15 times with backoff growing to
/// minutes, which left `kubectl ntt find` silent for five minutes when the catalog service had
/// no ready pod); the server's message is shown instead, as kubectl shows it.
pub fn client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    kube::Client::try_from(config)
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
    let action = action.into();
    move |source| PluginError::Api { action, source }
}

/// `kubectl ntt status`: one line per Medium.
pub async fn status(
    client: kube::Client,
    namespace: Option<&str>,
    out: &mut impl Write,
) -> Result<(), PluginError> {
    let api: Api<Medium> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let media = api
        .list(&ListParams::default())
        .await
        .map_err(api_error("list media"))?;
    writeln!(
        out,
        "{:<12} {:<28} {:<12} {:<12} {:<11} {:<34} REASON",
        "NAMESPACE", "NAME", "PHASE", "NODE", "HEALTH", "PROGRESS"
    )?;
    for m in media.items {
        let status = m.status.clone().unwrap_or_default();
        let paused = m
            .annotations()
            .get(PAUSED_ANNOTATION)
            .is_some_and(|v| v == "true");
        let progress = status.progress.as_ref().map_or("-", |p| p.summary.as_str());
        writeln!(
            out,
            "{:<12} {:<28} {:<12} {:<12} {:<11} {:<34} {}{}",
            m.namespace().unwrap_or_default(),
            m.name_any(),
            format!("{:?}", status.phase),
            m.spec.node_name,
            status.health.as_deref().unwrap_or("-"),
            if progress.is_empty() { "-" } else { progress },
            status.reason.as_deref().unwrap_or("-"),
            if paused { " (paused)" } else { "" }
        )?;
        if let Some(error) = &status.last_error {
            writeln!(
                out,
                "{:<12} {:<28} last error ({:?}): {}",
                "", "", error.class, error.message
            )?;
        }
    }
    Ok(())
}

async fn annotate(
    api: &Api<Medium>,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), PluginError> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(api_error(format!("annotate medium {name}")))?;
    Ok(())
}

/// `kubectl ntt retry MEDIUM`: a new value of the retry annotation.
pub async fn retry(api: &Api<Medium>, name: &str, out: &mut impl Write) -> Result<(), PluginError> {
    let value = k8s_openapi::jiff::Timestamp::now().to_string();
    annotate(api, name, RETRY_ANNOTATION, Some(&value)).await?;
    writeln!(
        out,
        "medium {name}: retry requested ({RETRY_ANNOTATION}={value})"
    )?;
    Ok(())
}

/// `kubectl ntt purge MEDIUM --yes`: arms the purge (the purge annotation set to the Medium's
/// uid, which no manifest can know) and deletes the Medium, with its uid as the deletion's
/// precondition (a namesake made meanwhile is not deleted). Without `yes`, nothing is done.
pub async fn purge(
    api: &Api<Medium>,
    name: &str,
    yes: bool,
    out: &mut impl Write,
) -> Result<bool, PluginError> {
    let medium = api
        .get(name)
        .await
        .map_err(api_error(format!("read medium {name}")))?;
    let uid = medium.uid().unwrap_or_default();
    if !yes {
        writeln!(
            out,
            "medium {name}: deleting it with a purge removes its image and catalog rows for good \
             (stored content other media share stays); run again with --yes to do it"
        )?;
        return Ok(false);
    }
    annotate(api, name, PURGE_ANNOTATION, Some(&uid)).await?;
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    api.delete(name, &params)
        .await
        .map_err(api_error(format!("delete medium {name}")))?;
    writeln!(
        out,
        "medium {name}: purge armed ({PURGE_ANNOTATION}={uid}) and deletion requested; the \
         controller purges it, then it is gone"
    )?;
    Ok(true)
}

/// `kubectl ntt pause MEDIUM` / `resume MEDIUM`.
pub async fn pause(
    api: &Api<Medium>,
    name: &str,
    paused: bool,
    out: &mut impl Write,
) -> Result<(), PluginError> {
    annotate(api, name, PAUSED_ANNOTATION, paused.then_some("true")).await?;
    if paused {
        writeln!(
            out,
            "medium {name}: paused (a running job finishes; no new ones start)"
        )?;
    } else {
        writeln!(out, "medium {name}: resumed")?;
    }
    Ok(())
}

/// The first half of `kubectl ntt report MEDIUM`: the Medium's status; returns its node and
/// catalog hash (the second half asks the catalog service for the medium's report).
pub async fn report_status(
    api: &Api<Medium>,
    name: &str,
    out: &mut impl Write,
) -> Result<(String, Option<String>), PluginError> {
    let m = api
        .get(name)
        .await
        .map_err(api_error(format!("get medium {name}")))?;
    let status = m.status.clone().unwrap_or_default();
    writeln!(
        out,
        "medium   {} ({})",
        m.name_any(),
        status.medium_hash.as_deref().unwrap_or("not imaged yet")
    )?;
    writeln!(
        out,
        "phase    {:?} ({})",
        status.phase,
        status.reason.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "node     {}", m.spec.node_name)?;
    writeln!(out, "target   {:?}", m.spec.target)?;
    for condition in &status.conditions {
        writeln!(
            out,
            "         {} {} ({})",
            condition.type_, condition.status, condition.reason
        )?;
    }
    if let Some(error) = &status.last_error {
        writeln!(out, "error    {:?}: {}", error.class, error.message)?;
    }
    Ok((m.spec.node_name.clone(), status.medium_hash))
}

/// Where the catalog's query API (`ntt serve`) is: a Service reached through the API server's
/// service proxy, so Kubernetes authenticates the person and RBAC decides (`get` on
/// `services/proxy`), and nobody execs into the privileged agent.
#[derive(Debug, Clone)]
pub struct CatalogService {
    /// The release's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service's port name.
    pub port: String,
}

/// What a catalog query printed and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogAnswer {
    /// 0 answered, 1 nothing found or failed, 2 arguments refused.
    pub exit_code: u8,
    /// The printed bytes.
    pub stdout: Vec<u8>,
    /// Notes and errors.
    pub stderr: String,
}

/// Asks the catalog `command` (`find`, `where`, `overlap`, `report`, `status`) with `args` as
/// `ntt` takes them (byte-exact).
pub async fn query_catalog(
    client: &kube::Client,
    service: &CatalogService,
    command: &str,
    args: &[std::ffi::OsString],
) -> Result<CatalogAnswer, PluginError> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ntt_crds::query::{ARG_PARAM, QUERY_PREFIX, QueryAnswer};
    use std::os::unix::ffi::OsStrExt;
    let mut uri = format!(
        "/api/v1/namespaces/{}/services/{}:{}/proxy{QUERY_PREFIX}{command}",
        service.namespace, service.name, service.port
    );
    for (i, arg) in args.iter().enumerate() {
        uri.push(if i == 0 { '?' } else { '&' });
        uri.push_str(ARG_PARAM);
        uri.push('=');
        uri.push_str(&URL_SAFE_NO_PAD.encode(arg.as_bytes()));
    }
    let action = format!(
        "ask the catalog service {}/{} (`ntt serve`)",
        service.namespace, service.name
    );
    let request = axum::http::Request::get(uri)
        .body(Vec::new())
        .map_err(|e| PluginError::Query(format!("{action}: {e}")))?;
    let answer: QueryAnswer = client.request(request).await.map_err(api_error(action))?;
    let stdout = STANDARD
        .decode(answer.stdout_b64.as_bytes())
        .map_err(|e| PluginError::Query(format!("the catalog's answer is not base64: {e}")))?;
    Ok(CatalogAnswer {
        exit_code: answer.exit_code,
        stdout,
        stderr: answer.stderr,
    })
}
