//! `ntt db migrate`, `check`, `backup` and `restore`.

use std::io::Write;
use std::process::ExitCode;

use super::DbCommand;
use crate::catalog::{Catalog, ConnectOptions};
use crate::env;
use crate::pipeline::backup;

/// Options of `ntt db backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The directory of the dumps (made if missing)
    pub dir: std::path::PathBuf,
    /// Dumps to keep there, the newest (older `ntt-catalog-*.dump` files are removed)
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Print the outcome as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Options of `ntt db restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A dump made by `ntt db backup`
    pub dump: std::path::PathBuf,
    /// Print the outcome as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

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
        DbCommand::Backup(args) => {
            let url = options.url.clone();
            let dir = args.dir.clone();
            let keep = usize::try_from(args.keep).unwrap_or(usize::MAX);
            let made =
                tokio::task::spawn_blocking(move || backup::backup(&url, &dir, keep)).await??;
            if args.json {
                serde_json::to_writer_pretty(&mut *stdout, &made)?;
                writeln!(stdout)?;
            } else {
                writeln!(
                    stdout,
                    "catalog dumped to {} ({} bytes, {} entries); {} older dump(s) removed",
                    made.path.display(),
                    made.bytes,
                    made.entries,
                    made.removed.len()
                )?;
            }
        }
        DbCommand::Restore(args) => {
            let restored = backup::restore(&options, &args.dump).await?;
            if args.json {
                serde_json::to_writer_pretty(&mut *stdout, &restored)?;
                writeln!(stdout)?;
            } else {
                writeln!(
                    stdout,
                    "restored {} into {}: {} media, {} blobs ({} migration(s) applied); check the store against it with `ntt verify --all`",
                    args.dump.display(),
                    options.url,
                    restored.media,
                    restored.blobs,
                    restored.migrations_applied
                )?;
            }
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
