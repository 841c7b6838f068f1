//! The `ntt` command line. Every flag can also be set from the `NTT_*` variable named in
//! [`crate::env`]; data goes to stdout, logs and errors to stderr.

mod agent;
mod copy;
mod damage;
mod enumerate;
mod image;
mod ingest;
mod mount;
mod status;
mod volumes;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, ConnectOptions, media};
use crate::database_url::DatabaseUrl;
use crate::env;
use crate::telemetry::LogFormat;

/// NTT ("No Two Things") ingests storage media into a deduplicated, content-addressed archive
/// with a PostgreSQL catalog.
#[derive(Debug, Parser)]
#[command(name = "ntt", version, max_term_width = 100)]
pub struct Args {
    /// PostgreSQL URL of the catalog [default: the local database `scripts/setup` provisions]
    #[arg(
        long,
        global = true,
        env = env::DATABASE_URL,
        default_value = env::DEFAULT_DATABASE_URL,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Seconds to wait for a catalog connection
    #[arg(long, global = true, env = env::CONNECT_TIMEOUT, default_value_t = 10)]
    pub connect_timeout: u64,

    /// Log format on stderr
    #[arg(long, global = true, env = env::LOG_FORMAT, value_enum, default_value = "plain")]
    pub log_format: LogFormat,

    /// Host settings
    #[command(flatten)]
    pub host: image::HostArgs,

    /// Mount settings
    #[command(flatten)]
    pub mounts: mount::MountSettings,

    /// The store
    #[command(flatten)]
    pub store: copy::StoreArgs,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the catalog database
    Db {
        /// What to do with the database
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The whole pipeline for one source (device, image file or directory): image, volumes,
    /// enumerate, copy, verify a sample, report; run again to continue after a stop
    Ingest(ingest::IngestArgs),
    /// Identify a medium and image it with ddrescue (devices) or register its image (files)
    Image(image::ImageArgs),
    /// Find (once) and show a medium's partitions and filesystems
    Volumes(volumes::VolumesArgs),
    /// Attach a medium's filesystems read-only (kernel, FUSE, or The Sleuth Kit) and record how
    Mount(mount::MountArgs),
    /// Unmount a medium's filesystems and release its loop devices
    Unmount(mount::UnmountArgs),
    /// Walk a medium's volumes and load every entry into the catalog
    Enumerate(enumerate::EnumerateArgs),
    /// List a medium's entries from the catalog
    Ls(enumerate::LsArgs),
    /// Map the image's unreadable areas onto the medium's files again (after a later rescue)
    Damage(damage::DamageArgs),
    /// Manage ignore patterns (matching paths are loaded and marked excluded, never dropped)
    Ignore {
        /// What to do
        #[command(subcommand)]
        command: enumerate::IgnoreCommand,
    },
    /// Include excluded paths again (and make their files pending for copying)
    Include(enumerate::IncludeArgs),
    /// Copy a medium's pending files into the store (several processes may run at once)
    Copy(copy::CopyArgs),
    /// Print the stored content of a path
    Cat(copy::CatArgs),
    /// A medium's accounting: entries, copies, exclusions, failures, dedup, problems
    Report(copy::ReportArgs),
    /// Re-hash blobs in the store and check the catalog's loads
    Verify(copy::VerifyArgs),
    /// Recreate a medium's tree as hard links into the store
    ExportTree(copy::ExportArgs),
    /// Run as the node agent of a cluster: run the MediumJobs of this node
    Agent(agent::AgentArgs),
    /// Show every medium in the catalog: stage, health, size
    Status {
        /// Print a JSON array instead of a table
        #[arg(long, env = env::JSON)]
        json: bool,
    },
}

/// `ntt db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations (safe to run repeatedly and concurrently)
    Migrate,
    /// Check the database is reachable and at this binary's schema
    Check,
}

impl Args {
    fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let url: DatabaseUrl = self
            .database_url
            .parse()
            .context("check NTT_DATABASE_URL")?;
        let mut options = ConnectOptions::new(url);
        options.connect_timeout = Duration::from_secs(self.connect_timeout.max(1));
        Ok(options)
    }
}

/// The error and its causes on one line, each cause once: drivers often repeat their source's
/// text in their own message, and printing both doubles every line.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const EXIT_CANCELLED: u8 = 130;

/// A token cancelled on the first SIGINT or SIGTERM. Later signals change nothing: what is
/// running (ddrescue saving its mapfile) is always waited for.
fn cancel_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::warn!("stopping: finishing what is running so it can be resumed");
        cancel.cancel();
    });
    Ok(token)
}

/// The catalog pool for a command: every copy worker holds a connection while it claims or
/// commits, so a pool smaller than the workers made them time out waiting for one (seen with
/// `--workers 16` and a pool of 8).
fn connections_for(command: &Command, default: u32) -> u32 {
    let workers = match command {
        Command::Copy(a) => a.workers,
        Command::Ingest(a) => a.workers,
        Command::Agent(a) => a.workers.saturating_mul(a.max_jobs.max(1)),
        _ => 0,
    };
    default.max(u32::try_from(workers.min(256)).unwrap_or(256) + 4)
}

/// Runs one command; the exit code is non-zero on failure.
#[expect(
    clippy::too_many_lines,
    reason = "one short arm per subcommand: a flat dispatch reads best"
)]
pub async fn run(args: Args, stdout: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut options = args.connect_options()?;
    options.max_connections = connections_for(&args.command, options.max_connections);
    match args.command {
        Command::Image(image_args) => {
            let cancel = cancel_on_signals()?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            let report = image::run(&catalog, &args.host, image_args, &cancel, stdout).await?;
            if report.end == crate::imaging::ImageEnd::Cancelled {
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
        }
        Command::Agent(agent_args) => {
            let cancel = cancel_on_signals()?;
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            agent::run_agent(
                catalog,
                &args.host,
                settings,
                &args.store,
                agent_args,
                &cancel,
            )
            .await?;
        }
        Command::Ingest(ingest_args) => {
            let cancel = cancel_on_signals()?;
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if !ingest::run_ingest(
                &catalog,
                &args.host,
                &settings,
                &args.store,
                ingest_args,
                &cancel,
                stdout,
            )
            .await?
            {
                tracing::warn!("stopped; run the same command again to continue");
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
        }
        Command::Db {
            command: DbCommand::Migrate,
        } => {
            let mut options = options;
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
        Command::Db {
            command: DbCommand::Check,
        } => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            writeln!(
                stdout,
                "catalog at {} is reachable and up to date",
                options.url
            )?;
        }
        Command::Volumes(volume_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            volumes::run(&catalog, volume_args, stdout).await?;
        }
        Command::Mount(mount_args) => {
            let cancel = cancel_on_signals()?;
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if !mount::run_mount(&catalog, &settings, mount_args, &cancel, stdout).await? {
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
        }
        Command::Unmount(unmount_args) => {
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            mount::run_unmount(&catalog, &settings, unmount_args, stdout).await?;
        }
        Command::Enumerate(enumerate_args) => {
            let cancel = cancel_on_signals()?;
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if enumerate::run_enumerate(&catalog, &settings, enumerate_args, &cancel, stdout)
                .await?
                .is_none()
            {
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
        }
        Command::Damage(damage_args) => {
            let cancel = cancel_on_signals()?;
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if damage::run_damage(&catalog, &settings, damage_args, &cancel, stdout)
                .await?
                .is_none()
            {
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
        }
        Command::Ls(ls_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            enumerate::run_ls(&catalog, ls_args, stdout).await?;
        }
        Command::Ignore { command } => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            enumerate::run_ignore(&catalog, command, stdout).await?;
        }
        Command::Include(include_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            enumerate::run_include(&catalog, include_args, stdout).await?;
        }
        Command::Copy(copy_args) => {
            let cancel = cancel_on_signals()?;
            let settings = args.mounts.settings(&args.host)?;
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if copy::run_copy(&catalog, &settings, &args.store, copy_args, &cancel, stdout)
                .await?
                .is_none()
            {
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
        }
        Command::Cat(cat_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            copy::run_cat(&catalog, &args.store, cat_args, stdout).await?;
        }
        Command::Report(report_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            copy::run_report(&catalog, report_args, stdout).await?;
        }
        Command::Verify(verify_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if !copy::run_verify(&catalog, &args.store, verify_args, stdout).await? {
                return Ok(ExitCode::from(1));
            }
        }
        Command::ExportTree(export_args) => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            if !copy::run_export(&catalog, &args.store, export_args, stdout).await? {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Status { json } => {
            let catalog = Catalog::connect(&options).await?;
            catalog.check_schema().await?;
            let media = media::list_media(catalog.pool()).await?;
            if json {
                status::write_json(&media, stdout)?;
            } else {
                status::write_table(&media, stdout)?;
                if media.is_empty() {
                    tracing::info!("no media in the catalog yet");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn the_pool_has_a_connection_per_copy_worker_and_some_to_spare() {
        let parse = |argv: &[&str]| Args::try_parse_from(argv).expect("arguments parse").command;
        assert_eq!(
            connections_for(&parse(&["ntt", "copy", "m", "--workers", "16"]), 8),
            20
        );
        assert_eq!(
            connections_for(&parse(&["ntt", "copy", "m", "--workers", "2"]), 8),
            8
        );
        assert_eq!(
            connections_for(&parse(&["ntt", "ingest", "/dev/sdz", "--workers", "12"]), 8),
            16
        );
        assert_eq!(
            connections_for(
                &parse(&[
                    "ntt",
                    "agent",
                    "--node",
                    "n",
                    "--workers",
                    "8",
                    "--max-jobs",
                    "2"
                ]),
                8
            ),
            20
        );
        assert_eq!(connections_for(&parse(&["ntt", "status"]), 8), 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn error_chain_prints_each_cause_once() {
        let inner = std::io::Error::other("connection refused");
        let error = anyhow::Error::new(Repeats(inner)).context("cannot connect");
        assert_eq!(
            error_chain(&error),
            "cannot connect: outer: connection refused"
        );
    }
}
