//! `ntt include MEDIUM PATH`: include excluded paths again (their files become pending).

use std::io::Write;

use crate::catalog::Catalog;
use crate::catalog::listing;
use crate::catalog::media;

/// Options of `ntt include`.
#[derive(Debug, clap::Args)]
pub struct IncludeArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// The path (and everything below it) to include again
    pub path: std::ffi::OsString,
    /// Only on this volume
    #[arg(long)]
    pub volume: Option<i32>,
}

/// `ntt include`.
pub(super) async fn run(
    catalog: &Catalog,
    args: IncludeArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let bytes = args.path.as_bytes();
    let path = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let included = listing::include_paths(catalog.pool(), medium.id, args.volume, path).await?;
    writeln!(stdout, "{}: {included} path(s) included again", medium.name)?;
    Ok(())
}
