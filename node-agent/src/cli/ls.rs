//! `ntt ls MEDIUM [PATH]`: a medium's entries from the catalog.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::text::escape_path;
use crate::catalog::Catalog;
use crate::catalog::listing::{self, Listed};
use crate::catalog::media;
use crate::env;

/// Options of `ntt ls`.
#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches"
)]
pub struct LsArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,

    /// Only this path and what is below it (bytes as given, relative to the volume root)
    pub path_prefix: Option<std::ffi::OsString>,

    /// Only this volume
    #[arg(long)]
    pub volume: Option<i32>,

    /// One JSON object per line, with the exact path bytes in base64
    #[arg(long, env = env::JSON)]
    pub json: bool,

    /// Only files with content on unreadable sectors (with the damaged byte ranges)
    #[arg(long)]
    pub damaged: bool,

    /// Only deleted entries (listed and recovered with The Sleuth Kit; marked DELETED, with
    /// the ranges of recovered content that now belong to live files)
    #[arg(long)]
    pub deleted: bool,

    /// Also show, per copied file, how many other files (any medium; not its own hard links)
    /// hold the same content
    #[arg(long)]
    pub others: bool,
}

/// `ntt ls`.
pub(super) async fn run(
    catalog: &Catalog,
    args: LsArgs,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let prefix = args.path_prefix.as_ref().map(|p| {
        let bytes = p.as_bytes();
        bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec()
    });
    let json = args.json;
    let mut out = std::io::BufWriter::new(stdout);
    let count = listing::list_paths(
        catalog.pool(),
        medium.id,
        args.volume,
        prefix.as_deref(),
        listing::Only {
            damaged: args.damaged,
            deleted: args.deleted,
        },
        args.others,
        &mut |row| {
            if json {
                serde_json::to_writer(&mut out, &json_line(&row))?;
                writeln!(out)
            } else {
                write_line(&mut out, &row)
            }
        },
    )
    .await?;
    out.flush()?;
    if count == 0
        && media::resolve_medium(catalog.pool(), &args.medium)
            .await
            .is_ok()
    {
        tracing::info!("nothing listed: is the medium enumerated (`ntt enumerate`)?");
    }
    Ok(())
}

fn json_line(row: &Listed) -> serde_json::Value {
    let state = if row.excluded_reason.is_some() {
        "excluded"
    } else {
        row.state.as_str()
    };
    serde_json::json!({
        "volume": row.volume_no,
        "path_b64": BASE64.encode(&row.path),
        "path": String::from_utf8_lossy(&row.path),
        "kind": row.kind,
        "size": row.size,
        "inode": u64::from_ne_bytes(row.ino.to_ne_bytes()),
        "nlink": row.nlink,
        "mtime_ns": row.mtime_ns,
        "target_b64": row.target.as_ref().map(|t| BASE64.encode(t)),
        "state": state,
        "excluded_reason": row.excluded_reason,
        "blob": row.blob_id.as_ref().map(hex::encode),
        "damaged_ranges": row.damaged_ranges.as_deref().map(parse_ranges),
        "deleted": row.deleted,
        "overwritten_ranges": row.overwritten_ranges.as_deref().map(parse_ranges),
        "others": row.others,
    })
}

/// PostgreSQL's `{[0,4096),[8192,9000)}` as `[[0,4096],[8192,9000]]` (start inclusive, end
/// exclusive).
fn parse_ranges(text: &str) -> Vec<[u64; 2]> {
    text.trim_matches(|c| c == '{' || c == '}')
        .split("),")
        .filter_map(|part| {
            let (start, end) = part
                .trim_matches(|c| c == '[' || c == ')')
                .split_once(',')?;
            Some([start.trim().parse().ok()?, end.trim().parse().ok()?])
        })
        .collect()
}

fn write_line(out: &mut (impl Write + Send), row: &Listed) -> std::io::Result<()> {
    let mtime = row
        .mtime_ns
        .and_then(|ns| {
            chrono::DateTime::from_timestamp_nanos(ns)
                .format("%Y-%m-%d %H:%M")
                .to_string()
                .into()
        })
        .unwrap_or_else(|| "-".to_owned());
    let state = if row.excluded_reason.is_some() {
        "excluded"
    } else {
        row.state.as_str()
    };
    write!(
        out,
        "{:<7} {:>12} {:<16} {:<10} {}:{}",
        row.kind,
        row.size,
        mtime,
        state,
        row.volume_no,
        escape_path(&row.path)
    )?;
    if let Some(target) = &row.target {
        write!(out, " -> {}", escape_path(target))?;
    }
    if let Some(others) = row.others {
        write!(out, "  (+{others} elsewhere)")?;
    }
    if row.deleted {
        write!(out, "  DELETED")?;
    }
    if let Some(ranges) = &row.overwritten_ranges {
        write!(out, "  OVERWRITTEN {ranges}")?;
    }
    if let Some(ranges) = &row.damaged_ranges {
        write!(out, "  DAMAGED {ranges}")?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_ranges_read_from_their_text_form() {
        assert_eq!(
            parse_ranges("{[0,4096),[8192,9000)}"),
            [[0, 4096], [8192, 9000]]
        );
        assert_eq!(parse_ranges("{[5,6)}"), [[5, 6]]);
        assert!(parse_ranges("{}").is_empty());
    }
}
