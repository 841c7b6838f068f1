//! `kubectl-ntt`: the kubectl plugin (`kubectl ntt status|retry|pause|resume|report`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::api::{Api, ListParams};
use ntt_controller::plugin;
use ntt_crds::Medium;

/// NTT media in a cluster: status, retry, pause, resume, report.
#[derive(Debug, Parser)]
#[command(name = "kubectl-ntt", version)]
struct Args {
    /// Namespace [default: the kubeconfig's]
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Every namespace (status)
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Namespace of the NTT release (where the agents run, for report)
    #[arg(long, global = true, env = "NTT_NAMESPACE", default_value = "ntt")]
    ntt_namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Media with phase, node, health, progress and reason
    Status,
    /// Retry a medium whose stage failed for good
    Retry {
        /// The Medium
        medium: String,
    },
    /// Start no new jobs for a medium (a running one finishes)
    Pause {
        /// The Medium
        medium: String,
    },
    /// Let a paused medium go on
    Resume {
        /// The Medium
        medium: String,
    },
    /// Delete a medium and remove its image and catalog rows (armed here, never in a manifest)
    Purge {
        /// The Medium
        medium: String,
        /// Really do it (without: say what it would do)
        #[arg(long)]
        yes: bool,
    },
    /// The Medium's status and the catalog's report (from the agent on its node)
    Report {
        /// The Medium
        medium: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "kubectl ntt: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default().await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let media: Api<Medium> = Api::namespaced(client.clone(), &namespace);
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Status => {
            let scope = (!args.all_namespaces).then_some(namespace.as_str());
            plugin::status(client, scope, &mut out).await?;
        }
        Command::Retry { medium } => plugin::retry(&media, &medium, &mut out).await?,
        Command::Pause { medium } => plugin::pause(&media, &medium, true, &mut out).await?,
        Command::Resume { medium } => plugin::pause(&media, &medium, false, &mut out).await?,
        Command::Purge { medium, yes } => {
            if !plugin::purge(&media, &medium, yes, &mut out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report { medium } => {
            let (node, hash) = plugin::report_status(&media, &medium, &mut out).await?;
            let Some(hash) = hash else {
                return Ok(ExitCode::SUCCESS);
            };
            // The catalog is reached through the agent on the medium's node.
            let pods: Api<k8s_openapi::api::core::v1::Pod> =
                Api::namespaced(client, &args.ntt_namespace);
            let agents = pods
                .list(
                    &ListParams::default()
                        .labels("app.kubernetes.io/component=agent")
                        .fields(&format!("spec.nodeName={node}")),
                )
                .await?;
            let Some(pod) = agents.items.first().and_then(|p| p.metadata.name.clone()) else {
                anyhow::bail!(
                    "no ntt agent runs on node {node} (namespace {})",
                    args.ntt_namespace
                );
            };
            drop(out);
            let status = std::process::Command::new("kubectl")
                .args([
                    "exec",
                    "-n",
                    &args.ntt_namespace,
                    &pod,
                    "--",
                    "ntt",
                    "report",
                    &hash,
                ])
                .status()?;
            return Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
