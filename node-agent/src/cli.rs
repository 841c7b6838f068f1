//! The `ntt` command line. Every flag can also be set from the `NTT_*` variable named in
//! [`crate::env`]; data goes to stdout, logs and errors to stderr.

mod agent;
mod archive;
mod cat;
mod copy;
mod damage;
mod db;
mod enumerate;
mod export;
mod find;
mod ignore;
mod image;
mod include;
mod index_names;
mod ingest;
mod init;
mod ls;
mod map;
mod mount;
mod overlap;
mod replicate;
mod report;
mod serve;
mod settings;
mod status;
mod text;
mod unmount;
mod verify;
mod volumes;
mod where_is;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, ConnectOptions};
use crate::database_url::DatabaseUrl;
use crate::env;
use crate::pipeline::{Class, Host, PipelineError};
use crate::roots::RootKind;
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

    /// Host settings: where images, locks, mounts and the store are
    #[command(flatten)]
    pub host: settings::HostArgs,

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
    /// Make (or confirm) the store and the data directory: every other command refuses
    /// them until they hold this catalog's marker (safe to run again)
    Init(init::InitArgs),
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
    Unmount(unmount::UnmountArgs),
    /// Walk a medium's volumes and load every entry into the catalog
    Enumerate(enumerate::EnumerateArgs),
    /// List a medium's entries from the catalog
    Ls(ls::LsArgs),
    /// Draw the rescue map (finished, bad and untried areas, volumes, damaged files) in the
    /// terminal, or as SVG
    Map(map::MapArgs),
    /// Map the image's unreadable areas onto the medium's files again (after a later rescue)
    Damage(damage::DamageArgs),
    /// Manage ignore patterns (matching paths are loaded and marked excluded, never dropped)
    Ignore {
        /// What to do
        #[command(subcommand)]
        command: ignore::IgnoreCommand,
    },
    /// Include excluded paths again (and make their files pending for copying)
    Include(include::IncludeArgs),
    /// Copy a medium's pending files into the store (several processes may run at once)
    Copy(copy::CopyArgs),
    /// Print the stored content of a path
    Cat(cat::CatArgs),
    /// A medium's accounting: entries, copies, exclusions, failures, dedup, problems
    Report(report::ReportArgs),
    /// Paths across the archive (or --medium) by name glob, path text or regex, size, time,
    /// MIME type, state, kind or damage; exit 1 when nothing matches
    Find(find::FindArgs),
    /// What a medium added to the archive and shares with whom; without one, the overlap of
    /// the largest media and the savings in registration order
    Overlap(overlap::OverlapArgs),
    /// Every medium, volume and path holding a content: a local file (hashed here) or a
    /// BLAKE3 hash; exit 1 when the archive does not have it
    Where(where_is::WhereArgs),
    /// Index the names of media for `ntt find` (copying does it; this does it for media
    /// enumerated before the name index or not copied)
    IndexNames(index_names::IndexNamesArgs),
    /// Re-hash blobs in the store and check the catalog's loads
    Verify(verify::VerifyArgs),
    /// Keep a medium's raw image compressed (zstd frames) under ROOT, read it back and compare
    /// its digest, then remove the raw image; stages that need it restore it
    Archive(archive::ArchiveArgs),
    /// Copy every blob a replica (another disk or mount) lacks into it, each read back and
    /// hashed there, tracked in the catalog; run again to continue after a stop
    Replicate(replicate::ReplicateArgs),
    /// Recreate a medium's tree as hard links into the store
    ExportTree(export::ExportArgs),
    /// Run as the node agent of a cluster: run the MediumJobs of this node
    Agent(agent::AgentArgs),
    /// Answer read-only catalog queries over HTTP (find, where, overlap, report, status) for
    /// `kubectl ntt`, through a read-only catalog connection
    Serve(serve::ServeArgs),
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
    /// Dump the catalog (`pg_dump`, custom format) into DIR as
    /// `ntt-catalog-<UTC time>.dump`, read it back, and keep the newest `--keep` dumps there
    Backup(db::BackupArgs),
    /// Restore a dump of `ntt db backup` into an empty database (the one `NTT_DATABASE_URL`
    /// names), in one transaction, then migrate it to this binary's schema
    Restore(db::RestoreArgs),
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

/// How many blobs or frames a command works on at once unless told: the cores.
fn default_jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
}

/// The error and its causes on one line, each cause once.
pub fn error_chain(error: &anyhow::Error) -> String {
    crate::error_chain(error.as_ref())
}

/// Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const EXIT_CANCELLED: u8 = 130;

/// Exit code of a copy (`ntt copy`, `ntt ingest`) that ended with files still pending: nothing
/// is lost and running it again continues (sysexits' `EX_TEMPFAIL`).
const EXIT_PENDING: u8 = 75;

/// A token cancelled on the first SIGINT or SIGTERM: what is running (ddrescue saving its
/// mapfile, a copy batch, releasing mounts) finishes so the next run resumes cleanly. A second
/// signal exits at once (a hung driver must not keep the person at the terminal waiting); the
/// next run repairs whatever that leaves attached.
fn cancel_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let cancel = token.clone();
    // On a thread and a runtime of their own: a read hanging in a FUSE driver or on a dying
    // device can hold every worker of the main runtime, and the signals must still be heard.
    let (ready, installed) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    std::thread::Builder::new()
        .name("ntt-signals".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(anyhow::Error::new(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let handlers = signal(SignalKind::interrupt())
                    .context("install the SIGINT handler")
                    .and_then(|interrupt| {
                        signal(SignalKind::terminate())
                            .context("install the SIGTERM handler")
                            .map(|terminate| (interrupt, terminate))
                    });
                let (mut interrupt, mut terminate) = match handlers {
                    Ok(handlers) => {
                        let _ = ready.send(Ok(()));
                        handlers
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::warn!(
                    "stopping: finishing what is running so it can be resumed (a second Ctrl-C exits at once)"
                );
                cancel.cancel();
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::error!(
                    "second signal: exiting now; the next run repairs what is left attached"
                );
                std::process::exit(i32::from(EXIT_CANCELLED));
            });
        })
        .context("start the signal thread")?;
    installed
        .recv()
        .context("the signal thread ended before installing its handlers")??;
    Ok(token)
}

/// The catalog pool for a command: every copy worker holds a connection while it claims or
/// commits, so a pool smaller than the workers made them time out waiting for one (seen with
/// `--workers 16` and a pool of 8).
///
/// A query command runs one statement at a time: one connection, which every statement then
/// reuses (a larger pool opened another whenever a statement began before the last one's
/// connection was back in it, a server process and an authentication each time).
fn connections_for(command: &Command, default: u32) -> u32 {
    if matches!(
        command,
        Command::Where(_) | Command::Find(_) | Command::Overlap(_) | Command::Status { .. }
    ) {
        return 1;
    }
    if let Command::Serve(a) = command {
        return a.concurrency;
    }
    let workers = match command {
        Command::Copy(a) => a.workers,
        Command::Ingest(a) => a.workers,
        Command::Agent(a) => a.workers.saturating_mul(a.max_jobs.max(1)),
        _ => 0,
    };
    default.max(u32::try_from(workers.min(256)).unwrap_or(256) + 4)
}

/// Whether the command runs long enough to be stopped by Ctrl-C or SIGTERM (the others end
/// at the signal, as any command does).
const fn is_long(command: &Command) -> bool {
    matches!(
        command,
        Command::Ingest(_)
            | Command::Image(_)
            | Command::Mount(_)
            | Command::Enumerate(_)
            | Command::Damage(_)
            | Command::Copy(_)
            | Command::Replicate(_)
            | Command::Agent(_)
            | Command::Serve(_)
    )
}

/// The roots a command reads or writes, checked before it starts: the store for what copies,
/// reads or verifies blobs; the data directory for what writes or reads images.
const fn roots_used(command: &Command) -> &'static [RootKind] {
    match command {
        Command::Ingest(_) | Command::Agent(_) => &[RootKind::Store, RootKind::Data],
        Command::Copy(_)
        | Command::Cat(_)
        | Command::Verify(_)
        | Command::Replicate(_)
        | Command::ExportTree(_) => &[RootKind::Store],
        Command::Image(_)
        | Command::Volumes(_)
        | Command::Mount(_)
        | Command::Enumerate(_)
        | Command::Damage(_)
        | Command::Archive(_)
        | Command::Map(_) => &[RootKind::Data],
        Command::Db { .. }
        | Command::Init(_)
        | Command::Unmount(_)
        | Command::Ls(_)
        | Command::Ignore { .. }
        | Command::Include(_)
        | Command::Report(_)
        | Command::Where(_)
        | Command::Find(_)
        | Command::Overlap(_)
        | Command::IndexNames(_)
        | Command::Serve(_)
        | Command::Status { .. } => &[],
    }
}

/// Runs one command; the exit code is non-zero on failure.
pub async fn run(args: Args, stdout: &mut (impl Write + Send)) -> anyhow::Result<ExitCode> {
    let mut options = args.connect_options()?;
    options.max_connections = connections_for(&args.command, options.max_connections);
    if let Command::Serve(serve) = &args.command {
        // Queries from people elsewhere: a connection that cannot write, and a time limit
        // per statement as per answer.
        options.read_only = true;
        options.statement_timeout = Some(Duration::from_secs(serve.query_timeout));
    }
    if let Command::Db { command } = &args.command {
        return db::run(options, command, stdout).await;
    }
    let cancel = if is_long(&args.command) {
        cancel_on_signals()?
    } else {
        CancellationToken::new()
    };
    let catalog = Catalog::connect(&options).await?;
    catalog.check_schema().await?;
    let host = args.host.host()?;
    crate::pipeline::roots::check(&catalog, &host, roots_used(&args.command)).await?;
    match dispatch(args.command, catalog, &host, &cancel, stdout).await {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::from(1)),
        Err(error)
            if matches!(
                error.downcast_ref::<PipelineError>(),
                Some(e) if e.class() == Class::Interrupted
            ) =>
        {
            tracing::warn!("stopped; run the same command again to continue");
            Ok(ExitCode::from(EXIT_CANCELLED))
        }
        Err(error)
            if matches!(
                error.downcast_ref::<PipelineError>(),
                Some(PipelineError::Pending { .. })
            ) =>
        {
            let _ = writeln!(std::io::stderr(), "error: {}", error_chain(&error));
            Ok(ExitCode::from(EXIT_PENDING))
        }
        Err(error) => Err(error),
    }
}

/// One command against the catalog; `false` when it found something wrong (a verification,
/// an export with refused entries) and must exit 1.
async fn dispatch(
    command: Command,
    catalog: Catalog,
    host: &Host,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    match command {
        Command::Db { .. } => unreachable!("handled before connecting"),
        Command::Init(args) => init::run(&catalog, host, args, stdout).await?,
        Command::Ingest(args) => ingest::run(&catalog, host, args, cancel, stdout).await?,
        Command::Image(args) => {
            if !image::run(&catalog, host, args, cancel, stdout).await? {
                return Err(PipelineError::Interrupted.into());
            }
        }
        Command::Volumes(args) => volumes::run(&catalog, args, stdout).await?,
        Command::Mount(args) => {
            if !mount::run(&catalog, host, args, cancel, stdout).await? {
                return Err(PipelineError::Interrupted.into());
            }
        }
        Command::Unmount(args) => unmount::run(&catalog, host, args, stdout).await?,
        Command::Enumerate(args) => enumerate::run(&catalog, host, args, cancel, stdout).await?,
        Command::Ls(args) => ls::run(&catalog, args, stdout).await?,
        Command::Damage(args) => damage::run(&catalog, host, args, cancel, stdout).await?,
        Command::Ignore { command } => ignore::run(&catalog, command, stdout).await?,
        Command::Include(args) => include::run(&catalog, args, stdout).await?,
        Command::Copy(args) => copy::run(&catalog, host, args, cancel, stdout).await?,
        Command::Cat(args) => cat::run(&catalog, host, args, stdout).await?,
        Command::Where(args) => return where_is::run(&catalog, args, stdout).await,
        Command::Find(args) => {
            return find::run(&catalog, args, stdout, &mut std::io::stderr()).await;
        }
        Command::Map(args) => map::run(&catalog, args, stdout).await?,
        Command::Overlap(args) => overlap::run(&catalog, args, stdout).await?,
        Command::IndexNames(args) => index_names::run(&catalog, args, stdout).await?,
        Command::Report(args) => report::run(&catalog, args, stdout).await?,
        Command::Verify(args) => return verify::run(&catalog, host, args, stdout).await,
        Command::Archive(args) => archive::run(&catalog, host, args, stdout).await?,
        Command::Replicate(args) => {
            return replicate::run(&catalog, host, args, cancel, stdout).await;
        }
        Command::ExportTree(args) => return export::run(&catalog, host, args, stdout).await,
        Command::Agent(args) => agent::run(catalog, host, args, cancel).await?,
        Command::Serve(args) => serve::run(catalog, args, cancel).await?,
        Command::Status { json } => status::run(&catalog, json, stdout).await?,
    }
    Ok(true)
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
        assert_eq!(connections_for(&parse(&["ntt", "ls", "m"]), 8), 8);
        assert_eq!(connections_for(&parse(&["ntt", "status"]), 8), 1);
        assert_eq!(
            connections_for(&parse(&["ntt", "find", "--name", "x"]), 8),
            1
        );
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
