//! `ntt-controller`: reconciles `Medium` resources into per-stage `MediumJob`s.
//!
//! The reconcile loop arrives with the Kubernetes API (issue 8); until then this binary only
//! parses its configuration and refuses to start, so a deployment cannot mistake it for a
//! working controller.

use std::process::ExitCode;

use clap::Parser;

/// NTT's Kubernetes controller.
#[derive(Debug, Parser)]
#[command(name = "ntt-controller", version)]
struct Args {
    /// Log filter in `tracing` `EnvFilter` syntax
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(args.log_filter.as_str())
        .with_writer(std::io::stderr)
        .init();
    tracing::error!(
        version = env!("CARGO_PKG_VERSION"),
        "the controller's reconcile loop is not built yet; nothing to run"
    );
    ExitCode::FAILURE
}
