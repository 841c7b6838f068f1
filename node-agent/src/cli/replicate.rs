//! `ntt replicate --to ROOT`: a second copy of the store.

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::env;
use crate::pipeline::replicate::ReplicateOptions;
use crate::pipeline::{self, Host};

/// Options of `ntt replicate`.
#[derive(Debug, clap::Args)]
pub struct ReplicateArgs {
    /// The replica: a directory (another disk, a mount) marked as this catalog's replica
    #[arg(long, value_name = "ROOT")]
    pub to: std::path::PathBuf,
    /// Make ROOT, an empty directory, a new replica
    #[arg(long)]
    pub new: bool,
    /// Blobs copied at once (default: the number of cores)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the outcome as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt replicate`; `false` when store blobs were found wrong (not replicated).
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: ReplicateArgs,
    cancel: &CancellationToken,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let done = pipeline::replicate::replicate(
        catalog,
        host,
        &args.to,
        ReplicateOptions {
            new: args.new,
            jobs: super::default_jobs(args.jobs),
        },
        cancel,
    )
    .await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &done)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "replica {} at {}: {} blob(s) copied ({} bytes), {} found there already, {} replaced, {} lacking",
            done.replica,
            done.root.display(),
            done.copied,
            done.bytes,
            done.adopted,
            done.replaced,
            done.lacking
        )?;
        for id in &done.store_wrong {
            writeln!(
                stdout,
                "not replicated, the store's copy is wrong: {id} (run `ntt verify --all`)"
            )?;
        }
    }
    Ok(done.store_wrong.is_empty())
}
