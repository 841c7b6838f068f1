//! `ntt serve`: the catalog's read-only queries (`find`, `where`, `overlap`, `report`, `status`)
//! over HTTP, for `kubectl ntt` through the API server's service proxy (the wire format is
//! [`ntt_crds::query`]).
//!
//! ```text
//!   kubectl ntt find ... ──▶ API server (authn, RBAC: get services/proxy)
//!        ──▶ GET /v1/find?arg=..  ──▶ clap (the `ntt find` options) ──▶ find::run ──▶ QueryAnswer
//! ```
//!
//! Rules: the arguments are parsed by the same definitions as `ntt`'s, so a query means what
//! the command means; nothing is read from this host's files (`where` takes a hash only); the
//! catalog connection is read-only and every statement has a time limit; an answer larger than
//! the limit is refused, never cut short silently; queries beyond the concurrency wait.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use ntt_crds::query::{ARG_PARAM, QueryAnswer};
use tokio_util::sync::CancellationToken;

use super::{find, overlap, report, status, where_is};
use crate::catalog::Catalog;

/// Options of `ntt serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// Queries answered at once (each holds one catalog connection); more wait their turn
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,

    /// Seconds one query may run (each statement, and the whole answer)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub query_timeout: u64,

    /// Largest answer in bytes: a query printing more fails and says so (narrow it, or a
    /// smaller --limit)
    #[arg(long, default_value_t = 64 << 20)]
    pub max_output: usize,
}

/// A query as `kubectl ntt` sends it: the `ntt` commands that only read the catalog, with
/// their own options.
#[derive(Debug, clap::Parser)]
#[command(
    name = "kubectl ntt",
    max_term_width = 100,
    disable_version_flag = true,
    no_binary_name = false
)]
enum Query {
    /// Paths across the archive (or --medium) by name glob, path text or regex, size, time,
    /// MIME type, state, kind or damage; exit 1 when nothing matches
    Find(Box<find::FindArgs>),
    /// Every medium, volume and path holding a content (a BLAKE3 hash; `kubectl ntt where`
    /// hashes a local file itself); exit 1 when the archive does not have it
    Where(where_is::WhereArgs),
    /// What a medium added to the archive and shares with whom; without one, the overlap of
    /// the largest media and the savings in registration order
    Overlap(overlap::OverlapArgs),
    /// A medium's accounting: entries, copies, exclusions, failures, dedup, problems
    Report(report::ReportArgs),
    /// Every medium in the catalog: stage, health, size
    Status {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
}

struct Served {
    catalog: Catalog,
    args: ServeArgs,
    permits: tokio::sync::Semaphore,
}

/// Serves queries on `listener` until `shutdown` (a query being answered finishes first).
async fn serve(
    listener: tokio::net::TcpListener,
    catalog: Catalog,
    args: ServeArgs,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(args.query_timeout.saturating_add(5));
    let served = Arc::new(Served {
        catalog,
        permits: tokio::sync::Semaphore::new(usize::try_from(args.concurrency).unwrap_or(1)),
        args,
    });
    let app = axum::Router::new()
        .route(
            "/v1/{command}",
            get(
                |State(served): State<Arc<Served>>,
                 Path(command): Path<String>,
                 RawQuery(query): RawQuery| async move {
                    let answer = answer(&served, &command, query.as_deref().unwrap_or("")).await;
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        serde_json::to_string(&answer).unwrap_or_default(),
                    )
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(served): State<Arc<Served>>| async move {
                let ping = tokio::time::timeout(
                    Duration::from_secs(5),
                    sqlx::query("select 1").execute(served.catalog.pool()),
                )
                .await;
                match ping {
                    Ok(Ok(_)) => (axum::http::StatusCode::OK, "ok".to_owned()),
                    Ok(Err(error)) => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        format!("the catalog does not answer: {error}"),
                    ),
                    Err(_) => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "the catalog does not answer within 5 s".to_owned(),
                    ),
                }
            }),
        )
        .with_state(served);
    // A stop lets the queries being answered finish; a client that keeps a connection open
    // does not hold the process past the longest query's time.
    let stopping = shutdown.clone();
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await });
    tokio::select! {
        ended = serving => ended,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs(), "stopped with connections still open");
            Ok(())
        }
    }
}

/// `ntt serve`: listens and answers until SIGINT or SIGTERM.
pub(super) async fn run(
    catalog: Catalog,
    args: ServeArgs,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, "answering catalog queries");
    serve(listener, catalog, args, cancel.clone())
        .await
        .context("serve catalog queries")
}

/// The answer to `command` with the arguments in `query`.
async fn answer(served: &Served, command: &str, query: &str) -> QueryAnswer {
    let mut words = vec![OsString::from("kubectl ntt"), OsString::from(command)];
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key != ARG_PARAM {
            return refused(&format!("unknown query parameter {key:?}"));
        }
        match URL_SAFE_NO_PAD.decode(value.as_bytes()) {
            Ok(bytes) => words.push(OsString::from_vec(bytes)),
            Err(error) => return refused(&format!("an argument is not base64url: {error}")),
        }
    }
    let parsed = match <Query as clap::Parser>::try_parse_from(words) {
        Ok(parsed) => parsed,
        Err(error) => {
            let text = error.render().to_string();
            let exit_code = u8::try_from(error.exit_code()).unwrap_or(2);
            return if error.use_stderr() {
                QueryAnswer {
                    exit_code,
                    stdout_b64: String::new(),
                    stderr: text,
                }
            } else {
                QueryAnswer {
                    exit_code,
                    stdout_b64: BASE64.encode(text),
                    stderr: String::new(),
                }
            };
        }
    };
    let Ok(_permit) = served.permits.acquire().await else {
        return failed(Vec::new(), String::new(), "the server is stopping");
    };
    let mut out = Capped {
        bytes: Vec::new(),
        max: served.args.max_output,
    };
    let mut notes = Vec::new();
    let catalog = &served.catalog;
    let ran = tokio::time::timeout(Duration::from_secs(served.args.query_timeout), async {
        match parsed {
            Query::Find(args) => find::run(catalog, *args, &mut out, &mut notes).await,
            Query::Where(args) => where_is::run_for_hash(catalog, args, &mut out).await,
            Query::Overlap(args) => overlap::run(catalog, args, &mut out).await.map(|()| true),
            Query::Report(args) => report::run(catalog, args, &mut out).await.map(|()| true),
            Query::Status { json } => status::run(catalog, json, &mut out).await.map(|()| true),
        }
    })
    .await;
    let notes = String::from_utf8_lossy(&notes).into_owned();
    match ran {
        Ok(Ok(found)) => QueryAnswer {
            exit_code: u8::from(!found),
            stdout_b64: BASE64.encode(&out.bytes),
            stderr: notes,
        },
        Ok(Err(error)) => failed(out.bytes, notes, &super::error_chain(&error)),
        Err(_) => failed(
            out.bytes,
            notes,
            &format!(
                "the query ran longer than {} s: narrow it",
                served.args.query_timeout
            ),
        ),
    }
}

/// Arguments refused before anything ran (exit 2, as a usage error).
fn refused(why: &str) -> QueryAnswer {
    QueryAnswer {
        exit_code: 2,
        stdout_b64: String::new(),
        stderr: format!("error: {why}\n"),
    }
}

/// A query that failed: what it printed before, and why (exit 1, as `ntt` exits on an error).
fn failed(printed: Vec<u8>, mut notes: String, why: &str) -> QueryAnswer {
    notes.push_str("error: ");
    notes.push_str(why);
    notes.push('\n');
    QueryAnswer {
        exit_code: 1,
        stdout_b64: BASE64.encode(printed),
        stderr: notes,
    }
}

/// The answer's bytes, refusing to grow past `max`.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.max {
            return Err(std::io::Error::other(format!(
                "the answer would be longer than {} bytes: narrow the query or give a smaller --limit",
                self.max
            )));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_past_the_limit_is_an_error_not_a_cut() {
        let mut out = Capped {
            bytes: Vec::new(),
            max: 8,
        };
        out.write_all(b"12345").unwrap();
        let error = out.write_all(b"6789").unwrap_err();
        assert!(error.to_string().contains("longer than 8 bytes"), "{error}");
        assert_eq!(out.bytes, b"12345");
    }

    #[test]
    fn queries_take_the_commands_own_options_and_nothing_else() {
        let parse = |args: &[&str]| {
            <Query as clap::Parser>::try_parse_from(
                std::iter::once("kubectl ntt").chain(args.iter().copied()),
            )
        };
        assert!(matches!(
            parse(&["find", "--iname", "*.pdf", "--limit", "5"]),
            Ok(Query::Find(_))
        ));
        assert!(matches!(parse(&["where", "abc"]), Ok(Query::Where(_))));
        // Commands that write or read this host's files are not queries.
        for command in ["ingest", "cat", "export-tree", "verify", "agent", "serve"] {
            assert!(parse(&[command]).is_err(), "{command}");
        }
        // Global options of `ntt` (a catalog URL, a store) are not taken either.
        assert!(parse(&["find", "--database-url", "postgres://elsewhere/x"]).is_err());
    }
}
