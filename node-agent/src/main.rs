//! `ntt`: the standalone command and (later) the node agent.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ntt_agent::{cli, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse();
    telemetry::init(args.log_format);
    ntt_agent::descriptors::raise_limit();
    // The command runs on a worker thread and the main thread only waits: a signal sent to the
    // process goes to the main thread first, which must never be the one stuck in a hung read.
    let command = tokio::spawn(async move { cli::run(args, &mut std::io::stdout()).await });
    let outcome = match command.await {
        Ok(outcome) => outcome,
        Err(error) => Err(anyhow::Error::new(error).context("the command's task failed")),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // The whole cause chain on one line, for the person at the terminal.
            let _ = writeln!(std::io::stderr(), "error: {}", cli::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
