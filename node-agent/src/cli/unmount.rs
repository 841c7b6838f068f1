//! `ntt unmount MEDIUM`: take a medium's mounts down and release its loop devices.

use std::io::Write;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::pipeline::{self, Host};

/// Options of `ntt unmount`.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
}

/// `ntt unmount`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: UnmountArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let released = pipeline::attach::unmount(host, &medium).await?;
    writeln!(
        stdout,
        "{}: {} mount(s) released, {} stale loop device(s) detached",
        medium.name,
        released.unmounted.len(),
        released.detached.len()
    )?;
    Ok(())
}
