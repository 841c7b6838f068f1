//! `ntt export-tree MEDIUM DIR`: the medium's tree as hard links into the store, never
//! written outside DIR.

use std::io::Write;
use std::path::PathBuf;

use super::text::escape_path;
use crate::catalog::Catalog;
use crate::catalog::media;
use crate::pipeline::{self, Host};

/// Options of `ntt export-tree`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// An empty (or new) directory on the store's filesystem
    pub dir: PathBuf,
}

/// `ntt export-tree`; `false` when some entries were refused (listed on stderr).
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: ExportArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let done = pipeline::export::export_tree(catalog, host, &medium, &args.dir).await?;
    for refused in &done.refused {
        tracing::warn!(
            volume = refused.volume_no,
            path = %escape_path(&refused.path),
            "not exported: {}",
            refused.refusal
        );
    }
    writeln!(
        stdout,
        "{}: {} file(s) linked under {}, {} entries without stored content skipped, {} refused",
        medium.name,
        done.linked,
        args.dir.display(),
        done.skipped,
        done.refused.len()
    )?;
    if !done.refused.is_empty() {
        tracing::error!(
            "{} entries of {} were not exported: their names would leave {} or clash \
             (listed above); their content is still in the store (`ntt cat`)",
            done.refused.len(),
            medium.name,
            args.dir.display()
        );
    }
    Ok(done.refused.is_empty())
}
