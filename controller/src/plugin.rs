//! `kubectl ntt`: the kubectl plugin's commands over the API (`status`, `retry`, `pause`,
//! `resume`, `purge`, `report`), as functions of a client and an output, so they are testable.
//!
//! Rules: `retry` sets the retry annotation to a new value (the time), which the controller
//! acts on once; `pause`/`resume` set and remove the pause annotation; `report` prints the
//! Medium's status and then the catalog report from the agent on the Medium's node.

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
/// catalog hash (the second half asks the agent on that node).
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
