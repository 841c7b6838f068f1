//! `ntt cat MEDIUM PATH`: a file's stored content.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use ntt_crds::BlobId;

use crate::catalog::Catalog;
use crate::catalog::media;
use crate::catalog::report;
use crate::pipeline::{self, Host};

/// Options of `ntt cat`.
#[derive(Debug, clap::Args)]
pub struct CatArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// The path as `ntt ls` lists it (exact bytes; a leading `/` is ignored)
    pub path: std::ffi::OsString,
    /// The volume, when several have this path
    #[arg(long)]
    pub volume: Option<i32>,
}

/// `ntt cat`.
pub(super) async fn run(
    catalog: &Catalog,
    host: &Host,
    args: CatArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let bytes = args.path.as_bytes();
    let path = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let found = report::path_inodes(catalog.pool(), medium.id, args.volume, path).await?;
    let shown = OsStr::from_bytes(path).to_string_lossy();
    let entry = match found.as_slice() {
        [] => anyhow::bail!("{} has no path {shown:?} (see `ntt ls`)", medium.name),
        [one] => one,
        many => anyhow::bail!(
            "{shown:?} is on volumes {}: pass --volume",
            many.iter()
                .map(|e| e.volume_no.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    anyhow::ensure!(
        entry.kind == "file",
        "{shown:?} is a {}, not a file",
        entry.kind
    );
    let Some(blob) = &entry.blob_id else {
        let why = match (
            entry.state.as_str(),
            &entry.excluded_reason,
            &entry.error_message,
        ) {
            (_, Some(reason), _) => format!("it is excluded ({reason})"),
            ("failed", _, Some(message)) => format!("copying it failed: {message}"),
            (state, _, _) => format!("it is {state}, not copied yet (`ntt copy`)"),
        };
        anyhow::bail!("{shown:?} has no stored content: {why}");
    };
    let id = BlobId::try_from(blob.as_slice()).context("a blob id in the catalog is malformed")?;
    let store = pipeline::copy::open_store(host)?;
    let mut file = store.open_blob(&id)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        stdout.write_all(&buffer[..n])?;
    }
    stdout.flush()?;
    Ok(())
}
