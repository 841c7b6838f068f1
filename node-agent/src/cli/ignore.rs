//! `ntt ignore`: ignore patterns (matching paths are loaded and marked excluded, never
//! dropped).

use std::io::Write;

use crate::catalog::Catalog;
use crate::catalog::listing;
use crate::catalog::media::{self, MediumId};
use crate::enumerate::ignore;

/// `ntt ignore` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IgnoreCommand {
    /// Show the site defaults (and a medium's own patterns)
    List {
        /// Also this medium's patterns
        #[arg(long)]
        medium: Option<String>,
    },
    /// Record a pattern: site-wide, or for one medium
    Add {
        /// A regular expression over path bytes, matched anywhere in the path
        pattern: String,
        /// Only for this medium
        #[arg(long)]
        medium: Option<String>,
    },
    /// Remove a pattern
    Remove {
        /// The pattern as recorded
        pattern: String,
        /// The medium it was recorded for (none: a site default)
        #[arg(long)]
        medium: Option<String>,
    },
    /// Show the named presets and their patterns
    Presets,
}

async fn medium_id(catalog: &Catalog, given: Option<&str>) -> anyhow::Result<Option<MediumId>> {
    Ok(match given {
        Some(given) => Some(media::resolve_medium(catalog.pool(), given).await?.id),
        None => None,
    })
}

/// `ntt ignore ...`.
pub(super) async fn run(
    catalog: &Catalog,
    command: IgnoreCommand,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    match command {
        IgnoreCommand::List { medium } => {
            let id = medium_id(catalog, medium.as_deref()).await?;
            for stored in listing::ignore_patterns(catalog.pool(), id).await? {
                let scope = stored.medium.unwrap_or_else(|| "site".to_owned());
                writeln!(stdout, "{scope}\t{}", stored.pattern)?;
            }
        }
        IgnoreCommand::Add { pattern, medium } => {
            ignore::validate(&pattern)?;
            let id = medium_id(catalog, medium.as_deref()).await?;
            let added = listing::add_ignore_pattern(catalog.pool(), id, &pattern).await?;
            writeln!(
                stdout,
                "{} {pattern} ({}); it applies to loads made from now on",
                if added { "added" } else { "already there:" },
                medium.as_deref().unwrap_or("site default")
            )?;
        }
        IgnoreCommand::Remove { pattern, medium } => {
            let id = medium_id(catalog, medium.as_deref()).await?;
            anyhow::ensure!(
                listing::remove_ignore_pattern(catalog.pool(), id, &pattern).await?,
                "no ignore pattern {pattern:?} is recorded for {}",
                medium.as_deref().unwrap_or("the site")
            );
            writeln!(stdout, "removed {pattern}")?;
        }
        IgnoreCommand::Presets => {
            for (name, patterns) in ignore::PRESETS {
                for pattern in *patterns {
                    writeln!(stdout, "{name}\t{pattern}")?;
                }
            }
        }
    }
    Ok(())
}
