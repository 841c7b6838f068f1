//! `ntt index-names [MEDIUM...]`: index the names of media for `ntt find` (copying does it too).

use std::io::Write;

use crate::catalog::names::{self, NamesIndexed};
use crate::catalog::{Catalog, media};
use crate::env;

/// Options of `ntt index-names`.
#[derive(Debug, clap::Args)]
pub struct IndexNamesArgs {
    /// The media (name, hash or unique hash prefix); without any, every enumerated medium whose
    /// names are not indexed (loads made before the name index, media not copied yet)
    pub media: Vec<String>,

    /// One JSON object per medium and line
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt index-names`.
pub(super) async fn run(
    catalog: &Catalog,
    args: IndexNamesArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    if args.media.is_empty() {
        todo = names::unindexed_media(catalog.pool()).await?;
    } else {
        for asked in &args.media {
            let found = media::resolve_medium(catalog.pool(), asked).await?;
            todo.push((found.id, found.name));
        }
    }
    for (id, name) in todo {
        let started = std::time::Instant::now();
        let outcome = names::index_names(catalog.pool(), id).await?;
        let seconds = started.elapsed().as_secs_f64();
        if args.json {
            let mut value = serde_json::to_value(outcome)?;
            value["medium"] = name.into();
            value["seconds"] = seconds.into();
            serde_json::to_writer(&mut *stdout, &value)?;
            writeln!(stdout)?;
            continue;
        }
        match outcome {
            NamesIndexed::Indexed {
                paths,
                names,
                new_names,
                fixed,
            } => writeln!(
                stdout,
                "{name}: {names} names over {paths} paths indexed ({new_names} new to the archive, {fixed} path hashes set) in {seconds:.1} s"
            )?,
            NamesIndexed::AlreadyIndexed => writeln!(stdout, "{name}: indexed already")?,
            NamesIndexed::NotEnumerated => {
                writeln!(stdout, "{name}: not enumerated, nothing to index")?;
            }
            NamesIndexed::Superseded => anyhow::bail!(
                "{name}: a new load was published while its names were indexed; run `ntt index-names {name}` again"
            ),
        }
    }
    Ok(())
}
