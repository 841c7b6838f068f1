//! `ntt init`: make (or confirm) the store and the data directory this catalog uses.

use std::io::Write;

use crate::catalog::Catalog;
use crate::env;
use crate::pipeline::Host;
use crate::pipeline::roots::{self, InitAction, InitOptions};

/// Options of `ntt init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Take over a store or data directory that holds files but no marker (made by an ntt
    /// from before markers)
    #[arg(long)]
    pub adopt: bool,

    /// Start a new, empty root where the catalog recorded one that is lost for good (its
    /// blobs or images then show as missing)
    #[arg(long)]
    pub replace: bool,

    /// Print JSON instead of text
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt init`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: InitArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let options = InitOptions {
        adopt: args.adopt,
        replace: args.replace,
    };
    let outcomes = roots::init(catalog, host, options).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &outcomes)?;
        writeln!(stdout)?;
        return Ok(());
    }
    for outcome in outcomes {
        let done = match outcome.action {
            InitAction::Present => "initialised already",
            InitAction::Created => "created",
            InitAction::Adopted => "adopted (its files kept)",
            InitAction::Replaced => "replaced by a new, empty one",
        };
        writeln!(
            stdout,
            "{} {}: {done} (id {})",
            outcome.kind,
            outcome.path.display(),
            outcome.id
        )?;
    }
    Ok(())
}
