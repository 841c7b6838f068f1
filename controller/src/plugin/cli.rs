//! The plugin's command line (`kubectl ntt …`): parsed here and run against a client, so the
//! whole command (arguments passed byte-exact, local hashing, printed bytes, exit codes) is
//! testable without a binary; `bin/kubectl-ntt.rs` only builds the client.

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};
use kube::api::Api;
use ntt_crds::Medium;

use super::{CatalogAnswer, CatalogService, PluginError};

/// NTT media in a cluster: status, retry, pause, resume, purge, report; the catalog: find,
/// where, overlap.
#[derive(Debug, Parser)]
#[command(name = "kubectl-ntt", version)]
pub struct Args {
    /// Namespace [default: the kubeconfig's]
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Every namespace (status)
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Namespace of the NTT release (where its catalog service runs)
    #[arg(long, global = true, env = "NTT_NAMESPACE", default_value = "ntt")]
    ntt_namespace: String,
    /// The catalog service (`ntt serve`) of the release: NAME or NAME:PORT
    #[arg(
        long,
        global = true,
        env = "NTT_CATALOG_SERVICE",
        default_value = "ntt-catalog:http"
    )]
    catalog_service: String,
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
    /// The Medium's status and the catalog's report
    Report {
        /// The Medium
        medium: String,
    },
    /// Paths across the archive: `ntt find`'s options (`kubectl ntt find --help` lists them)
    #[command(disable_help_flag = true)]
    Find {
        /// Options and patterns, as `ntt find` takes them
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
    /// Every medium, volume and path holding a content: a local file (hashed here) or a
    /// BLAKE3 hash; exit 1 when the archive does not have it
    Where {
        /// A local file or a BLAKE3 hash (64 hex digits)
        target: OsString,
        /// Print one JSON object (exact path bytes in base64)
        #[arg(long)]
        json: bool,
        /// List at most this many places (0: all); the totals are always given
        #[arg(long)]
        limit: Option<u64>,
    },
    /// What a medium added to the archive and shares with whom: `ntt overlap`'s options
    #[command(disable_help_flag = true)]
    Overlap {
        /// Options and the medium, as `ntt overlap` takes them
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
}

/// Runs the command `args` with `client`: what it prints goes to `out`, the catalog's notes and
/// errors to `err`; the exit code is the command's (`ntt`'s own for catalog queries).
///
/// # Errors
///
/// The API or the catalog service failed, a local file could not be read, or output failed.
pub async fn run(
    args: Args,
    client: kube::Client,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<u8, PluginError> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let media: Api<Medium> = Api::namespaced(client.clone(), &namespace);
    let service = catalog_service(&args);
    match args.command {
        Command::Status => {
            let scope = (!args.all_namespaces).then_some(namespace.as_str());
            super::status(client, scope, out).await?;
        }
        Command::Retry { medium } => super::retry(&media, &medium, out).await?,
        Command::Pause { medium } => super::pause(&media, &medium, true, out).await?,
        Command::Resume { medium } => super::pause(&media, &medium, false, out).await?,
        Command::Purge { medium, yes } => {
            if !super::purge(&media, &medium, yes, out).await? {
                return Ok(1);
            }
        }
        Command::Report { medium } => {
            let (_, hash) = super::report_status(&media, &medium, out).await?;
            let Some(hash) = hash else {
                return Ok(0);
            };
            writeln!(out)?;
            let answer = ask(&client, &service, "report", vec![hash.into()]).await?;
            return print(&answer, out, err);
        }
        Command::Find { args: query } => {
            let answer = ask(&client, &service, "find", query).await?;
            return print(&answer, out, err);
        }
        Command::Where {
            target,
            json,
            limit,
        } => {
            let mut query = vec![OsString::from(
                ntt_crds::query::content_of(&target)?.to_hex(),
            )];
            if json {
                query.push("--json".into());
            }
            if let Some(limit) = limit {
                query.extend(["--limit".into(), limit.to_string().into()]);
            }
            let answer = ask(&client, &service, "where", query).await?;
            return print(&answer, out, err);
        }
        Command::Overlap { args: query } => {
            let answer = ask(&client, &service, "overlap", query).await?;
            return print(&answer, out, err);
        }
    }
    Ok(0)
}

/// The release's catalog service, from `--ntt-namespace` and `--catalog-service NAME[:PORT]`.
fn catalog_service(args: &Args) -> CatalogService {
    let (name, port) = args
        .catalog_service
        .split_once(':')
        .unwrap_or((args.catalog_service.as_str(), "http"));
    CatalogService {
        namespace: args.ntt_namespace.clone(),
        name: name.to_owned(),
        port: port.to_owned(),
    }
}

/// Asks the release's catalog service.
async fn ask(
    client: &kube::Client,
    service: &CatalogService,
    command: &str,
    query: Vec<OsString>,
) -> Result<CatalogAnswer, PluginError> {
    super::query_catalog(client, service, command, &query).await
}

/// Prints an answer as `ntt` would have, and exits with its code.
fn print(
    answer: &CatalogAnswer,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<u8, PluginError> {
    out.write_all(&answer.stdout)?;
    out.flush()?;
    err.write_all(answer.stderr.as_bytes())?;
    Ok(answer.exit_code)
}
