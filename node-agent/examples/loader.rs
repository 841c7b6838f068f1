//! The loader alone, for `bench/enumerate.sh`: walks a mounted volume into memory first (not
//! timed), then feeds every entry to a new load of the medium and prints how long loading took
//! (row encoding, sorting and binary `COPY`, without the index builds and the swap that
//! `publish` does besides) and the rows loaded, as JSON.
//! Without the walk competing for the CPU, this is what compares with a plain `psql \copy`.
//!
//! ```text
//! NTT_DATABASE_URL=... cargo run --release --example loader -- MEDIUM_ID MEDIUM_NAME VOLUME_ROOT
//! ```
//! The medium must have volume 0; its published load is replaced.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use ntt_agent::catalog::load::Loader;
use ntt_agent::catalog::media::MediumId;
use ntt_agent::volume::reader::{VolumeReader, WalkItem};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: loader MEDIUM_ID MEDIUM_NAME VOLUME_ROOT";
    let medium: i64 = args.next().context(usage)?.parse().context(usage)?;
    let name = args.next().context(usage)?;
    let root = PathBuf::from(args.next().context(usage)?);
    let url = std::env::var("NTT_DATABASE_URL").context("NTT_DATABASE_URL is not set")?;

    let mut entries = Vec::new();
    let mut errors = 0u64;
    VolumeReader::Mounted { root: root.clone() }
        .walk(&mut |item| match item {
            WalkItem::Entry(entry) | WalkItem::Excluded { entry, .. } => entries.push(entry),
            WalkItem::Error { .. } => errors += 1,
        })
        .with_context(|| format!("walk {}", root.display()))?;
    anyhow::ensure!(
        errors == 0,
        "{errors} entries of {} cannot be read",
        root.display()
    );

    let pool = sqlx::PgPool::connect(&url).await.context("connect")?;
    let sort_mib = match std::env::var(ntt_agent::env::SORT_MEMORY) {
        Ok(mib) => mib
            .parse()
            .context("NTT_SORT_MEMORY is not a number of MiB")?,
        Err(_) => ntt_agent::catalog::load::DEFAULT_SORT_MEMORY_MIB,
    };
    let mut loader = Loader::begin(&pool, MediumId::new(medium), sort_mib << 20).await?;
    let started = std::time::Instant::now();
    let mut encoding = 0.0;
    for entry in &entries {
        let encode = std::time::Instant::now();
        loader.add_entry(0, entry, None)?;
        encoding += encode.elapsed().as_secs_f64();
        if loader.wants_flush() {
            loader.flush().await?;
        }
    }
    // The rows are held while fed, then sorted and sent: until PostgreSQL has them all, before
    // any index is built.
    loader.send_all().await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let counts = loader.publish(&name, true).await?;
    let report = serde_json::json!({
        "rows": counts.entries + counts.inodes,
        "load_seconds": load_seconds,
        "publish_seconds": counts.publish_seconds,
        "encoding_seconds": encoding,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}").context("write the report")?;
    Ok(())
}
