//! `ntt enumerate`, `ntt ls`, `ntt ignore` and `ntt include`: load a medium's entries into the
//! catalog and read them back.

use std::io::Write;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio_util::sync::CancellationToken;

use super::mount::attach;
use crate::catalog::Catalog;
use crate::catalog::listing::{self, Listed};
use crate::catalog::media::{self, MediumId};
use crate::enumerate::ignore::{self, IgnoreSet, Origin, Pattern};
use crate::enumerate::{self as stage, EnumerateError, EnumerateOptions, EnumerateReport};
use crate::env;
use crate::volume::access::Settings;

/// Options of `ntt enumerate`.
#[derive(Debug, clap::Args)]
pub struct EnumerateArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,

    /// Build a new load beside the published one and swap it in when complete
    #[arg(long)]
    pub replace: bool,

    /// Another ignore pattern for this medium (a regular expression over path bytes; recorded)
    #[arg(long = "ignore", value_name = "REGEX", env = env::IGNORE, value_delimiter = '\n')]
    pub ignore: Vec<String>,

    /// Also apply a named preset of ignore patterns for this run (`predecessor`)
    #[arg(long, value_name = "NAME", env = env::IGNORE_PRESET)]
    pub ignore_preset: Option<String>,

    /// Directory readers per volume
    #[arg(long, env = env::WALK_THREADS, default_value_t = 4)]
    pub threads: usize,

    /// MiB of rows the load may hold to send them in key order (cheaper index builds); a
    /// medium with more rows is sent as walked
    #[arg(long, value_name = "MIB", env = env::SORT_MEMORY, default_value_t = crate::catalog::load::DEFAULT_SORT_MEMORY_MIB)]
    pub sort_memory: usize,

    /// Mount even if the medium's health is `failed`
    #[arg(long, env = env::FORCE)]
    pub force: bool,

    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Options of `ntt ls`.
#[derive(Debug, clap::Args)]
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
}

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

async fn medium_id(catalog: &Catalog, given: Option<&str>) -> anyhow::Result<Option<MediumId>> {
    Ok(match given {
        Some(given) => Some(media::resolve_medium(catalog.pool(), given).await?.id),
        None => None,
    })
}

/// The medium's ignore patterns: the preset, the patterns given now (stored on the medium) and
/// those stored before, the site's included.
async fn ignore_set(
    catalog: &Catalog,
    medium: &media::MediumRecord,
    args: &EnumerateArgs,
) -> anyhow::Result<IgnoreSet> {
    for pattern in &args.ignore {
        ignore::validate(pattern)?;
    }
    let mut patterns: Vec<Pattern> = Vec::new();
    if let Some(name) = &args.ignore_preset {
        patterns.extend(ignore::preset(name)?);
    }
    for pattern in &args.ignore {
        listing::add_ignore_pattern(catalog.pool(), Some(medium.id), pattern).await?;
    }
    for stored in listing::ignore_patterns(catalog.pool(), Some(medium.id)).await? {
        patterns.push(Pattern {
            text: stored.pattern,
            origin: if stored.medium.is_some() {
                Origin::Medium
            } else {
                Origin::Site
            },
        });
    }
    Ok(IgnoreSet::new(patterns)?)
}

/// `ntt enumerate`; `Ok(None)` when cancelled.
pub(super) async fn run_enumerate(
    catalog: &Catalog,
    settings: &Settings,
    args: EnumerateArgs,
    cancel: &CancellationToken,
    stdout: &mut impl Write,
) -> anyhow::Result<Option<EnumerateReport>> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    // Refused before anything is mounted (the stage checks again, and the swap under lock).
    if !args.replace
        && let Some(entries) =
            crate::catalog::load::published_entries(catalog.pool(), medium.id).await?
    {
        return Err(crate::catalog::load::LoadError::AlreadyLoaded {
            medium: medium.name.clone(),
            entries,
        }
        .into());
    }
    let ignore = ignore_set(catalog, &medium, &args).await?;
    let Some(attached) = attach(catalog, &medium, settings, args.force, cancel).await? else {
        return Ok(None);
    };
    let progress = std::sync::Arc::new(crate::progress::Counter::default());
    let options = EnumerateOptions {
        threads: args.threads.clamp(1, 64),
        replace: args.replace,
        sort_memory: args.sort_memory.saturating_mul(1 << 20),
        progress: progress.clone(),
    };
    let ticker = crate::progress::Ticker::start("enumerate", progress, None);
    let result = stage::enumerate(
        catalog.pool(),
        medium.id,
        &medium.name,
        &attached.volumes,
        &ignore,
        &options,
        cancel,
    )
    .await;
    ticker.finish().await;
    // The damage map, while the volumes are attached: every load gets one (a replaced load
    // starts without damaged ranges).
    let result = match result {
        Ok(mut report) => match super::damage::map_attached(catalog, &medium, &attached).await {
            Ok(damage) => {
                report.damage = damage;
                Ok(report)
            }
            Err(error) => {
                let released = attached.release();
                if let Err(release) = released {
                    tracing::warn!(error = %release, "releasing the volumes failed too");
                }
                return Err(error);
            }
        },
        Err(error) => Err(error),
    };
    // Released whatever happened: the mounts this run made go, `ntt mount`'s stay.
    let released = attached.release();
    let report = match result {
        Ok(report) => report,
        Err(EnumerateError::Cancelled) => {
            released?;
            return Ok(None);
        }
        Err(error) => {
            if let Err(release) = released {
                tracing::warn!(error = %release, "releasing the volumes failed too");
            }
            return Err(error).with_context(|| format!("cannot enumerate {}", medium.name));
        }
    };
    released?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
    } else {
        let counts = report.counts;
        writeln!(
            stdout,
            "{}: {} entries ({} inodes, {} excluded by ignore patterns, {} unreadable) from {} \
             volume(s){}",
            medium.name,
            counts.entries,
            counts.inodes,
            counts.excluded,
            counts.errors,
            report.volumes.len(),
            if report.replaced {
                "; the earlier load was replaced"
            } else {
                ""
            }
        )?;
        super::damage::write_reports(&medium.name, &report.damage, false, stdout)?;
    }
    Ok(Some(report))
}

/// `ntt ls`.
pub(super) async fn run_ls(
    catalog: &Catalog,
    args: LsArgs,
    stdout: &mut impl Write,
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
        args.damaged,
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

/// Path bytes for a terminal: printable UTF-8 as is, anything else escaped (`\n`, `\xNN`).
pub(super) fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        push_hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
        }
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(DIGITS[usize::from(byte & 15)]));
}

fn write_line(out: &mut impl Write, row: &Listed) -> std::io::Result<()> {
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
    if let Some(ranges) = &row.damaged_ranges {
        write!(out, "  DAMAGED {ranges}")?;
    }
    writeln!(out)
}

/// `ntt ignore ...`.
pub(super) async fn run_ignore(
    catalog: &Catalog,
    command: IgnoreCommand,
    stdout: &mut impl Write,
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

/// `ntt include`.
pub(super) async fn run_include(
    catalog: &Catalog,
    args: IncludeArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let bytes = args.path.as_bytes();
    let path = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let included = listing::include_paths(catalog.pool(), medium.id, args.volume, path).await?;
    writeln!(stdout, "{}: {included} path(s) included again", medium.name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_paths_escape_what_would_mislead() {
        assert_eq!(escape_path(b"plain/name.txt"), "plain/name.txt");
        assert_eq!(escape_path(b"a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape_path(b"back\\rslash"), "back\\\\rslash");
        assert_eq!(escape_path(b"x\x1cy"), "x\\x1cy");
        assert_eq!(escape_path(b"caf\xe9"), "caf\\xe9");
        assert_eq!(escape_path("ímynd".as_bytes()), "ímynd");
    }

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
