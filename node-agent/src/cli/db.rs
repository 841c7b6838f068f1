//! `ntt db migrate` and `ntt db check`.

use std::io::Write;
use std::process::ExitCode;

use super::DbCommand;
use crate::catalog::{Catalog, ConnectOptions};

/// `ntt db ...`.
pub(super) async fn run(
    mut options: ConnectOptions,
    command: &DbCommand,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Migrate => {
            // Migrations may rewrite large tables; they are never cut off by a timeout.
            options.statement_timeout = None;
            let catalog = Catalog::connect(&options).await?;
            let applied = catalog.migrate().await?;
            writeln!(
                stdout,
                "catalog at {} is up to date ({applied} migration(s) applied)",
                options.url
            )?;
        }
        DbCommand::Check => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            writeln!(
                stdout,
                "catalog at {} is reachable and up to date",
                options.url
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
