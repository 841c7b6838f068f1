//! `ntt verify`: re-hash stored blobs and check the catalog's loads.

use std::io::Write;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::env;
use crate::pipeline::{self, Host, verify::VerifyScope};

/// Options of `ntt verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The blobs of this medium
    #[arg(long)]
    pub medium: Option<String>,
    /// Every blob in the catalog
    #[arg(long)]
    pub all: bool,
    /// A random sample of this many blobs (of the medium, or of all)
    #[arg(long)]
    pub sample: Option<i64>,
    /// Print the outcome as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt verify`; `false` when a blob is wrong or missing.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: VerifyArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    anyhow::ensure!(
        (args.medium.is_some() || args.all || args.sample.is_some())
            && !(args.all && args.medium.is_some()),
        "say what to verify: --medium MEDIUM or --all, and/or --sample N"
    );
    let medium = match &args.medium {
        Some(given) => Some(media::resolve_medium(catalog.pool(), given).await?),
        None => None,
    };
    let found = pipeline::verify::verify(
        catalog,
        host,
        VerifyScope {
            medium: medium.as_ref(),
            sample: args.sample,
        },
    )
    .await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &found)?;
        writeln!(stdout)?;
    } else {
        writeln!(stdout, "{found}")?;
    }
    Ok(found.is_good())
}
