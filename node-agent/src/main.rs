//! `ntt`: the standalone command and (later) the node agent.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ntt_agent::{cli, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse();
    telemetry::init(args.log_format);
    let mut stdout = std::io::stdout().lock();
    match cli::run(args, &mut stdout).await {
        Ok(code) => code,
        Err(error) => {
            // The whole cause chain on one line, for the person at the terminal.
            let _ = writeln!(std::io::stderr(), "error: {}", cli::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
