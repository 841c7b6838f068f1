//! `ntt agent`: run as the node agent of a cluster (see [`crate::agent`]).

use std::time::Duration;

use anyhow::Context as _;

use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentConfig};
use crate::catalog::Catalog;
use crate::pipeline::Host;

/// Options of `ntt agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The node this agent runs on (its jobs have `spec.nodeName` equal to it)
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// This agent's identity in job status [default: the host name]
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch only this namespace [default: all]
    #[arg(long, env = "NTT_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Jobs run at once on this node (never two of one medium)
    #[arg(long, env = "NTT_AGENT_MAX_JOBS", default_value_t = 1)]
    pub max_jobs: usize,
    /// Seconds between heartbeats (the controller's timeout must be several times longer)
    #[arg(long, env = "NTT_HEARTBEAT_INTERVAL", default_value_t = 10)]
    pub heartbeat: u64,
    /// Copy workers per job
    #[arg(long, env = crate::env::WORKERS, default_value_t = 4)]
    pub workers: usize,
    /// MiB of rows an enumeration may hold to send them in key order
    #[arg(long, value_name = "MIB", env = crate::env::SORT_MEMORY, default_value_t = crate::catalog::load::DEFAULT_SORT_MEMORY_MIB)]
    pub sort_memory: usize,
    /// Address of /metrics and /healthz (empty: none)
    #[arg(long, env = "NTT_METRICS_ADDR", default_value = "0.0.0.0:8081")]
    pub metrics_addr: String,
    /// A glob of device paths Media may name (declared or resolved path; `*` does not cross
    /// `/`), for example `/dev/disk/by-id/usb-*`; repeatable. None: no device is imaged
    #[arg(long = "allow-device", value_name = "GLOB", env = crate::env::ALLOW_DEVICES, value_delimiter = ',')]
    pub allow_devices: Vec<String>,
    /// A directory below which Media may name image files and directory sources; repeatable.
    /// None: no image file or directory is read
    #[arg(long = "allow-root", value_name = "DIR", env = crate::env::ALLOW_ROOTS, value_delimiter = ',')]
    pub allow_roots: Vec<std::path::PathBuf>,
    /// Namespace of the node's Lease `ntt-agent-<node>` by which the agent announces itself
    /// (the chart's release namespace) [default: --namespace, else none]
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
}

/// `ntt agent`: runs until SIGTERM or SIGINT.
pub(super) async fn run(
    catalog: Catalog,
    host: &Host,
    args: AgentArgs,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let allow = agent::admit::allowlist(&args.allow_devices, &args.allow_roots)
        .context("check --allow-device (NTT_ALLOW_DEVICES)")?;
    if allow.devices.is_empty() && allow.roots.is_empty() {
        tracing::warn!(
            "nothing is allowed (--allow-device, --allow-root): every Medium will be refused"
        );
    }
    let config = AgentConfig {
        allow,
        node: args.node,
        identity: args.identity.unwrap_or_else(crate::host_name),
        namespace: args.namespace.clone(),
        max_jobs: args.max_jobs,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
        workers: args.workers,
        sort_memory_mib: args.sort_memory,
        metrics_addr: args.metrics_addr,
        lease_namespace: args.lease_namespace.or_else(|| args.namespace.clone()),
    };
    agent::run(catalog, host.clone(), config, cancel).await?;
    Ok(())
}
