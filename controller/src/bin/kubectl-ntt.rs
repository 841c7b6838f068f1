//! `kubectl-ntt`: the kubectl plugin (`kubectl ntt status|retry|pause|resume|purge|report|find|
//! where|overlap`); the commands are in `ntt_controller::plugin::cli`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ntt_controller::plugin::{self, cli::Args};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let ran = async {
        let client = plugin::client(kube::Config::infer().await?)?;
        let code = plugin::cli::run(
            args,
            client,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        )
        .await?;
        anyhow::Ok(code)
    };
    match ran.await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "kubectl ntt: {error:#}");
            ExitCode::FAILURE
        }
    }
}
