//! `ntt verify`: re-hash stored blobs and check the catalog's loads.

use std::io::Write;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::env;
use crate::pipeline::verify::{Budget, VerifyScope};
use crate::pipeline::{self, Host};

/// Options of `ntt verify`.
#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches"
)]
pub struct VerifyArgs {
    /// The blobs of this medium
    #[arg(long)]
    pub medium: Option<String>,
    /// Every blob in the catalog
    #[arg(long)]
    pub all: bool,
    /// The copies a replica holds (its id, printed by `ntt replicate`) instead of the store's
    #[arg(long, value_name = "ID", conflicts_with_all = ["medium", "all", "orphans", "images", "older_than"])]
    pub replica: Option<String>,
    /// At most this many blobs (of the medium, or of all), the least recently verified
    #[arg(long)]
    pub sample: Option<u64>,
    /// Stop taking blobs after this much time (`90s`, `45m`, `8h`, `2d`) or data (`500G`,
    /// `2T`); the next run goes on with the blobs this one did not reach
    #[arg(long, value_name = "DURATION|BYTES")]
    pub budget: Option<Budget>,
    /// Only blobs not found right within this time (`30d`, `12h`): the others count as
    /// verified (a cycle of runs re-hashes each blob once per period)
    #[arg(long, value_name = "DURATION", value_parser = age)]
    pub older_than: Option<std::time::Duration>,
    /// Blobs hashed at once (default: the number of cores)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also list store files the catalog has no blob for
    #[arg(long)]
    pub orphans: bool,
    /// Also re-hash each medium's image (of the medium, or all) against the digest recorded
    /// at imaging; an image not on this host is `missing`
    #[arg(long)]
    pub images: bool,
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
    let jobs = super::default_jobs(args.jobs);
    if let Some(replica) = &args.replica {
        let found =
            pipeline::verify::verify_replica(catalog, replica, args.sample, args.budget, jobs)
                .await?;
        if args.json {
            serde_json::to_writer_pretty(&mut *stdout, &found)?;
            writeln!(stdout)?;
        } else {
            writeln!(stdout, "replica {replica}: {found}")?;
        }
        return Ok(found.is_good());
    }
    anyhow::ensure!(
        (args.medium.is_some() || args.all || args.sample.is_some() || args.budget.is_some())
            && !(args.all && args.medium.is_some()),
        "say what to verify: --medium MEDIUM or --all, and/or --sample N or --budget B"
    );
    anyhow::ensure!(
        !(args.orphans && args.medium.is_some()),
        "--orphans looks at the whole store: use it without --medium"
    );
    let medium = match &args.medium {
        Some(given) => Some(media::resolve_medium(catalog.pool(), given).await?),
        None => None,
    };
    let stale_before = match args.older_than {
        Some(age) => {
            let now = crate::catalog::report::now(catalog.pool()).await?;
            Some(now - chrono::Duration::from_std(age)?)
        }
        None => None,
    };
    let found = pipeline::verify::verify(
        catalog,
        host,
        VerifyScope {
            medium: medium.as_ref(),
            sample: args.sample,
            budget: args.budget,
            stale_before,
            jobs,
            orphans: args.orphans,
            images: args.images,
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

/// A duration as `--budget` writes time (`90s`, `45m`, `8h`, `2d`).
fn age(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<Budget>()? {
        Budget::Time(age) => Ok(age),
        Budget::Bytes(_) => Err(format!(
            "{text:?} is not a duration: a number then s, m, h or d"
        )),
    }
}
