//! `ntt where FILE|BLAKE3`: every medium, volume and path that holds this content.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ntt_crds::BlobId;

use super::text::{escape_path, human_bytes, short_hash};
use crate::catalog::Catalog;
use crate::catalog::search::{self, Place};
use crate::env;

/// Options of `ntt where`.
#[derive(Debug, clap::Args)]
pub struct WhereArgs {
    /// A local file (its content is hashed here) or a BLAKE3 hash (64 hex digits)
    pub target: std::ffi::OsString,

    /// Print one JSON object: the blob and its places, with exact path bytes in base64
    #[arg(long, env = env::JSON)]
    pub json: bool,

    /// List at most this many places (0: all); the totals are always given
    #[arg(long, default_value_t = 1000)]
    pub limit: u64,
}

/// `ntt where`; `false` (exit 1) when the store does not hold the content.
pub(super) async fn run(
    catalog: &Catalog,
    args: WhereArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let id = ntt_crds::query::content_of(&args.target)?;
    answer(catalog, &id, &args, stdout).await
}

/// `ntt where` for a query from elsewhere (`ntt serve`): the target must be a hash, never a
/// file of this host.
pub(super) async fn run_for_hash(
    catalog: &Catalog,
    args: WhereArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let text = args.target.to_string_lossy().to_ascii_lowercase();
    let id: BlobId = text.parse().map_err(|e| {
        anyhow::anyhow!(
            "{text} is not a BLAKE3 hash (64 hex digits): {e}; kubectl ntt where hashes a local file itself"
        )
    })?;
    answer(catalog, &id, &args, stdout).await
}

/// Every place holding `id`, as `args` asks.
async fn answer(
    catalog: &Catalog,
    id: &BlobId,
    args: &WhereArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let id = *id;
    let blob = search::blob(catalog.pool(), &id).await?;
    let limit = (args.limit > 0).then(|| i64::try_from(args.limit).unwrap_or(i64::MAX));
    let places = match blob {
        Some(_) => search::places(catalog.pool(), &id, limit).await?,
        None => Vec::new(),
    };
    // The totals: from the places when they are all listed, from the catalog when capped.
    let capped = limit.is_some_and(|l| usize::try_from(l).is_ok_and(|l| places.len() >= l));
    let (paths, files, media) = if capped {
        search::count_places(catalog.pool(), &id).await?
    } else {
        totals(&places)
    };
    if args.json {
        let value = serde_json::json!({
            "blob": id.to_hex(),
            "stored": blob.is_some(),
            "size": blob.as_ref().map(|b| b.size),
            "stored_at": blob.as_ref().map(|b| b.stored_at),
            "damaged_source": blob.as_ref().map(|b| b.damaged_source),
            "media": media,
            "files": files,
            "paths": paths,
            "places": places.iter().map(json_place).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut *stdout, &value)?;
        writeln!(stdout)?;
        return Ok(blob.is_some());
    }
    let Some(blob) = blob else {
        writeln!(stdout, "{}: not in the archive", id.to_hex())?;
        return Ok(false);
    };
    writeln!(
        stdout,
        "{}  {}  stored {}{}",
        id.to_hex(),
        human_bytes(u64::try_from(blob.size).unwrap_or_default()),
        blob.stored_at.format("%Y-%m-%d %H:%M"),
        if blob.damaged_source {
            "  (some copy came from a damaged source: zeros where it was unreadable)"
        } else {
            ""
        }
    )?;
    for place in &places {
        let mut notes = Vec::new();
        if place.damaged {
            notes.push("damaged".to_owned());
        }
        if let Some(reason) = &place.excluded_reason {
            notes.push(format!("excluded: {reason}"));
        }
        writeln!(
            stdout,
            "{}  {}  registered {}  volume {}  {}{}",
            place.medium,
            short_hash(&place.medium_hash),
            place.registered_at.format("%Y-%m-%d"),
            place.volume_no,
            escape_path(&place.path),
            if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            }
        )?;
    }
    writeln!(
        stdout,
        "{paths} place(s): {files} file(s) on {media} medium/media"
    )?;
    if usize::try_from(paths).is_ok_and(|p| p > places.len()) {
        writeln!(
            stdout,
            "(the first {} listed: --limit N for more, --limit 0 for all)",
            places.len()
        )?;
    }
    Ok(true)
}

/// Paths, files and media among `places`.
fn totals(places: &[Place]) -> (i64, i64, i64) {
    let files: std::collections::BTreeSet<_> = places
        .iter()
        .map(|p| (p.medium_hash.as_str(), p.volume_no, p.ino))
        .collect();
    let media: std::collections::BTreeSet<_> = files.iter().map(|f| f.0).collect();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    (count(places.len()), count(files.len()), count(media.len()))
}

fn json_place(place: &Place) -> serde_json::Value {
    serde_json::json!({
        "medium": place.medium,
        "medium_hash": place.medium_hash,
        "registered_at": place.registered_at,
        "volume": place.volume_no,
        "inode": u64::from_ne_bytes(place.ino.to_ne_bytes()),
        "path": String::from_utf8_lossy(&place.path),
        "path_b64": BASE64.encode(&place.path),
        "excluded_reason": place.excluded_reason,
        "damaged": place.damaged,
    })
}
