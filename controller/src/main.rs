//! `ntt-controller`: reconciles `Medium` resources into per-stage `MediumJob`s.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ntt_controller::{Config, leader, metrics, plan};
use tokio_util::sync::CancellationToken;

/// NTT's Kubernetes controller.
#[derive(Debug, Parser)]
#[command(name = "ntt-controller", version)]
struct Args {
    /// Log filter in `tracing` `EnvFilter` syntax
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
    /// Log lines as JSON
    #[arg(long, env = "NTT_LOG_JSON")]
    log_json: bool,
    /// Watch only this namespace (default: all namespaces)
    #[arg(long, env = "NTT_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the leader-election Lease (the controller's own)
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (its pod name)
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Address of /metrics, /healthz and /readyz
    #[arg(long, env = "NTT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// A running job without a heartbeat for this many seconds is failed as lost
    #[arg(long, env = "NTT_HEARTBEAT_TIMEOUT", default_value_t = 300)]
    heartbeat_timeout: u64,
    /// First retry delay in seconds (doubled per attempt)
    #[arg(long, env = "NTT_BACKOFF_BASE", default_value_t = 30)]
    backoff_base: u64,
    /// Longest retry delay in seconds
    #[arg(long, env = "NTT_BACKOFF_MAX", default_value_t = 3600)]
    backoff_max: u64,
    /// Attempts of a stage before a transient failure is terminal (not `ntt copy
    /// --max-attempts`, which counts the attempts at one file)
    #[arg(long, env = "NTT_MAX_STAGE_ATTEMPTS", default_value_t = 5)]
    max_stage_attempts: i32,
    /// Seconds a job may wait for an agent to claim it before a Warning event says so
    #[arg(long, env = "NTT_UNCLAIMED_WARNING", default_value_t = 300)]
    unclaimed_warning: u64,
    /// Seconds between verifications of a copied medium's stored content (each blob re-hashed
    /// once per interval); 0 schedules none
    #[arg(long, env = "NTT_VERIFY_INTERVAL", default_value_t = 30 * 86_400)]
    verify_interval: u64,
    /// Seconds one verify job may run (a longer verification continues in the next job)
    #[arg(long, env = "NTT_VERIFY_BUDGET", default_value_t = 3600)]
    verify_budget: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(args.log_filter.as_str())
        .with_writer(std::io::stderr);
    if args.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ntt-controller failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let identity = match args.identity {
        Some(identity) => identity,
        None => nix_hostname(),
    };
    let config = Config {
        namespace: args.namespace,
        settings: plan::Settings {
            heartbeat_timeout: Duration::from_secs(args.heartbeat_timeout),
            backoff_base: Duration::from_secs(args.backoff_base),
            backoff_max: Duration::from_secs(args.backoff_max),
            max_attempts: args.max_stage_attempts.max(1),
            unclaimed_warning: Duration::from_secs(args.unclaimed_warning),
            verification: (args.verify_interval > 0).then(|| plan::VerifySettings {
                interval: Duration::from_secs(args.verify_interval),
                budget: Duration::from_secs(args.verify_budget.max(1)),
            }),
        },
        lease: leader::LeaseSettings::new(&args.lease_namespace, &identity),
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    let server = tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
        stop.clone().cancelled_owned(),
    ));
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            tracing::info!("shutting down");
            stop.cancel();
        })
    };
    ntt_controller::run(client, config, metrics, stop.clone()).await;
    stop.cancel();
    signals.abort();
    server.await.context("the metrics server panicked")??;
    Ok(())
}

fn nix_hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "ntt-controller".to_owned())
}
