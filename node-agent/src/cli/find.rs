//! `ntt find`: paths across the archive by name, path, size, time, type, state or damage.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::text::{escape_path, human_bytes};
use crate::catalog::Catalog;
use crate::catalog::media;
use crate::catalog::search::{self, Filter, Found, Searched};
use crate::env;
use crate::name_glob::{NameGlob, name_of};

/// Options of `ntt find`.
#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches"
)]
pub struct FindArgs {
    /// Only this medium (name, hash or unique hash prefix); repeat for several. All by default
    #[arg(long = "medium", value_name = "MEDIUM")]
    pub media: Vec<String>,

    /// The name (last path component) matches this glob: `*`, `?`, `[a-z]`, `[!x]`; bytes
    /// that are not UTF-8 match themselves
    #[arg(long, value_name = "GLOB")]
    pub name: Option<OsString>,

    /// Like --name, ignoring case
    #[arg(long, value_name = "GLOB", conflicts_with = "name")]
    pub iname: Option<OsString>,

    /// The whole path (relative to its volume root) contains these bytes
    #[arg(long = "path", value_name = "TEXT")]
    pub path_contains: Option<OsString>,

    /// The whole path matches this regular expression (over bytes: `(?-u:\xff)` is the byte)
    #[arg(long, value_name = "RE")]
    pub regex: Option<String>,

    /// Size in bytes: `MIN..MAX`, `MIN..` or `..MAX` (both ends included), or exactly `N`;
    /// suffixes k, M, G, T (powers of 1024)
    #[arg(long, value_name = "RANGE")]
    pub size: Option<String>,

    /// Modification time: `FROM..TO` (TO excluded), `FROM..`, `..TO`, or one day; dates
    /// `YYYY-MM-DD` (UTC) or RFC 3339 times
    #[arg(long, value_name = "RANGE")]
    pub mtime: Option<String>,

    /// The stored content's MIME type starts with this (`image/`, `application/pdf`)
    #[arg(long)]
    pub mime: Option<String>,

    /// The path's state
    #[arg(long, value_parser = ["copied", "pending", "failed", "excluded", "not_a_file"])]
    pub state: Option<String>,

    /// Only files with content on unreadable areas
    #[arg(long)]
    pub damaged: bool,

    /// Entry kind
    #[arg(long, value_parser = ["file", "dir", "symlink", "block", "char", "fifo", "socket"])]
    pub kind: Option<String>,

    /// Also show, per file, how many other files (any medium; not its own hard links) hold
    /// the same content
    #[arg(long)]
    pub others: bool,

    /// Print at most this many matches (0: all)
    #[arg(long, default_value_t = 1000)]
    pub limit: u64,

    /// Print only the number of matches
    #[arg(long)]
    pub count: bool,

    /// One JSON object per line, with the exact path bytes in base64
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// `ntt find`: `false` (exit 1) when nothing matched; a note on `notes` when the limit cut the
/// list short.
pub(super) async fn run(
    catalog: &Catalog,
    args: FindArgs,
    stdout: &mut (impl Write + Send),
    notes: &mut impl Write,
) -> anyhow::Result<bool> {
    let media = media_to_search(catalog, &args.media).await?;
    let filter = filter(&args)?;
    let name = match (&args.name, &args.iname) {
        (Some(glob), _) => Some(NameGlob::new(glob.as_bytes(), false)?),
        (_, Some(glob)) => Some(NameGlob::new(glob.as_bytes(), true)?),
        _ => None,
    };
    let regex = args
        .regex
        .as_deref()
        .map(regex::bytes::Regex::new)
        .transpose()
        .context("--regex is not a valid regular expression")?;
    let limit = if args.count || args.limit == 0 {
        u64::MAX
    } else {
        args.limit
    };
    // With every filter in SQL, the query stops after the rows wanted (one more says whether
    // more match) instead of reading the whole medium.
    let in_sql_only = name.is_none() && regex.is_none();
    // A glob with a literal is served by the name index for media whose names are indexed
    // (one query for each run of them); the others are read path by path (same results).
    let like = name.as_ref().and_then(NameGlob::like_pattern);
    let mut printer = Printer {
        out: std::io::BufWriter::new(stdout),
        matched: 0,
        limit,
        count: args.count,
        json: args.json,
        name,
        regex,
        deleted: crate::catalog::deleted::deleted_volumes(catalog.pool()).await?,
    };
    let mut stopped = false;
    let mut next = 0;
    while next < media.len() && !stopped {
        if let Some(like) = like.as_deref().filter(|_| media[next].names_indexed) {
            let run = &media[next..];
            let run = &run[..run.iter().take_while(|m| m.names_indexed).count()];
            let ids: Vec<_> = run.iter().map(|m| m.id).collect();
            stopped = search::find_named(catalog.pool(), &ids, like, &filter, &mut |i, row| {
                printer.visit(&run[i], &row)
            })
            .await?;
            next += run.len();
        } else {
            let medium = &media[next];
            let rows = (in_sql_only && limit != u64::MAX)
                .then(|| i64::try_from(limit - printer.matched + 1).unwrap_or(i64::MAX));
            let filter = Filter {
                rows,
                ..filter.clone()
            };
            stopped = search::find_in_medium(catalog.pool(), medium.id, &filter, &mut |row| {
                printer.visit(medium, &row)
            })
            .await?;
            next += 1;
        }
    }
    let matched = printer.matched;
    if args.count {
        writeln!(printer.out, "{matched}")?;
    }
    printer.out.flush()?;
    if stopped {
        let _ = writeln!(
            notes,
            "{matched} shown; more match (--limit N for more, --limit 0 for all, --count to count)"
        );
    }
    Ok(matched > 0)
}

/// Where `find`'s matches go: the checks SQL does not make, then a line each (or a count).
struct Printer<W: Write> {
    out: std::io::BufWriter<W>,
    matched: u64,
    limit: u64,
    count: bool,
    json: bool,
    name: Option<NameGlob>,
    regex: Option<regex::bytes::Regex>,
    /// The deleted volumes of every medium: (medium id, volume number).
    deleted: std::collections::HashSet<(i64, i32)>,
}

impl<W: Write> Printer<W> {
    /// Prints `row` if it matches; `false` once the limit is reached (and more match).
    fn visit(&mut self, medium: &Searched, row: &Found) -> std::io::Result<bool> {
        if self
            .name
            .as_ref()
            .is_some_and(|g| !g.matches(name_of(&row.path)))
            || self.regex.as_ref().is_some_and(|r| !r.is_match(&row.path))
        {
            return Ok(true);
        }
        if self.matched == self.limit {
            return Ok(false);
        }
        self.matched += 1;
        if self.count {
        } else if self.json {
            let deleted = self.deleted.contains(&(medium.id.get(), row.volume_no));
            serde_json::to_writer(&mut self.out, &json_line(medium, row, deleted))?;
            writeln!(self.out)?;
        } else {
            let deleted = self.deleted.contains(&(medium.id.get(), row.volume_no));
            write_line(&mut self.out, medium, row, deleted)?;
        }
        Ok(true)
    }
}

/// The media to search, in the order they entered the catalog.
async fn media_to_search(catalog: &Catalog, asked: &[String]) -> anyhow::Result<Vec<Searched>> {
    let all = search::all_media(catalog.pool()).await?;
    if asked.is_empty() {
        return Ok(all);
    }
    let mut ids = Vec::new();
    for medium in asked {
        ids.push(media::resolve_medium(catalog.pool(), medium).await?.id);
    }
    Ok(all.into_iter().filter(|m| ids.contains(&m.id)).collect())
}

/// The SQL side of the search.
fn filter(args: &FindArgs) -> anyhow::Result<Filter> {
    let (min_size, max_size) = match &args.size {
        Some(range) => size_range(range).with_context(|| format!("--size {range}"))?,
        None => (None, None),
    };
    let (mtime_from, mtime_before) = match &args.mtime {
        Some(range) => time_range(range).with_context(|| format!("--mtime {range}"))?,
        None => (None, None),
    };
    Ok(Filter {
        path_contains: args.path_contains.as_ref().map(|p| p.as_bytes().to_vec()),
        min_size,
        max_size,
        mtime_from,
        mtime_before,
        mime_prefix: args.mime.clone(),
        state: args.state.clone(),
        damaged: args.damaged,
        kind: args.kind.clone(),
        count_others: args.others,
        rows: None,
    })
}

/// `10k..2M`, `..4096`, `1G..`, `512`: inclusive bounds in bytes.
fn size_range(text: &str) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let Some((low, high)) = text.split_once("..") else {
        let exact = size(text)?;
        return Ok((Some(exact), Some(exact)));
    };
    let bound = |s: &str| (!s.is_empty()).then(|| size(s)).transpose();
    let (low, high) = (bound(low)?, bound(high)?);
    anyhow::ensure!(low.is_some() || high.is_some(), "give at least one bound");
    if let (Some(low), Some(high)) = (low, high) {
        anyhow::ensure!(low <= high, "the range is empty ({low} > {high})");
    }
    Ok((low, high))
}

/// `512`, `10k`, `2M`, `1G`, `3T` (powers of 1024).
fn size(text: &str) -> anyhow::Result<i64> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        Some(b't' | b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let number: i64 = digits
        .parse()
        .with_context(|| format!("{text:?} is not a size (a number, then k, M, G or T)"))?;
    number
        .checked_mul(1 << shift)
        .filter(|n| *n >= 0)
        .with_context(|| format!("{text:?} is out of range"))
}

/// `1998-01-01..1999-01-01` (end excluded), `..2001-09-11`, `2003-05-01..`, one day, or RFC
/// 3339 times: nanoseconds since the epoch.
fn time_range(text: &str) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let Some((from, to)) = text.split_once("..") else {
        let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("{text:?} is not a day (YYYY-MM-DD) or a range FROM..TO"))?;
        let start = nanos(day.and_time(chrono::NaiveTime::MIN).and_utc())?;
        let end = start
            .checked_add(86_400 * 1_000_000_000)
            .context("the day is beyond what nanoseconds since 1970 can hold (1677-2262)")?;
        return Ok((Some(start), Some(end)));
    };
    let bound = |s: &str| (!s.is_empty()).then(|| instant(s)).transpose();
    let (from, to) = (bound(from)?, bound(to)?);
    anyhow::ensure!(from.is_some() || to.is_some(), "give at least one bound");
    if let (Some(from), Some(to)) = (from, to) {
        anyhow::ensure!(from < to, "the range is empty");
    }
    Ok((from, to))
}

/// A day (its first instant, UTC) or an RFC 3339 time, as nanoseconds since the epoch.
fn instant(text: &str) -> anyhow::Result<i64> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return nanos(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{text:?} is neither a day (YYYY-MM-DD) nor an RFC 3339 time"))?;
    nanos(time.to_utc())
}

fn nanos(time: chrono::DateTime<chrono::Utc>) -> anyhow::Result<i64> {
    time.timestamp_nanos_opt()
        .context("the time is beyond what nanoseconds since 1970 can hold (1677-2262)")
}

fn json_line(medium: &Searched, row: &Found, deleted: bool) -> serde_json::Value {
    serde_json::json!({
        "medium": medium.name,
        "medium_hash": medium.hash,
        "volume": row.volume_no,
        "path_b64": BASE64.encode(&row.path),
        "path": String::from_utf8_lossy(&row.path),
        "kind": row.kind,
        "size": row.size,
        "inode": u64::from_ne_bytes(row.ino.to_ne_bytes()),
        "mtime_ns": row.mtime_ns,
        "state": row.state,
        "blob": row.blob_id.as_ref().map(hex::encode),
        "mime": row.mime_type,
        "damaged": row.damaged,
        "deleted": deleted,
        "others": row.others,
    })
}

fn write_line(
    out: &mut impl Write,
    medium: &Searched,
    row: &Found,
    deleted: bool,
) -> std::io::Result<()> {
    write!(
        out,
        "{}  {}  {}  {}  {}",
        medium.name,
        row.volume_no,
        escape_path(&row.path),
        human_bytes(u64::try_from(row.size).unwrap_or_default()),
        row.state
    )?;
    if deleted {
        write!(out, "  deleted")?;
    }
    if row.damaged {
        write!(out, "  damaged")?;
    }
    if let Some(others) = row.others {
        write!(out, "  +{others} elsewhere")?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_size_ranges() {
        assert_eq!(size_range("10k..2M").unwrap(), (Some(10240), Some(2 << 20)));
        assert_eq!(size_range("..4096").unwrap(), (None, Some(4096)));
        assert_eq!(size_range("1G..").unwrap(), (Some(1 << 30), None));
        assert_eq!(size_range("512").unwrap(), (Some(512), Some(512)));
        assert!(size_range("..").is_err());
        assert!(size_range("2M..1k").is_err());
        assert!(size_range("ten").is_err());
        assert!(size_range("-5").is_err());
        assert!(size_range("9999999999T").is_err());
    }

    #[test]
    fn days_and_time_ranges() {
        let day = 86_400 * 1_000_000_000i64;
        let (from, to) = time_range("1970-01-02").unwrap();
        assert_eq!((from, to), (Some(day), Some(2 * day)));
        assert_eq!(
            time_range("1970-01-02..1970-01-04").unwrap(),
            (Some(day), Some(3 * day))
        );
        assert_eq!(
            time_range("..1970-01-01T00:00:01Z").unwrap(),
            (None, Some(1_000_000_000))
        );
        assert!(time_range("1970-01-04..1970-01-02").is_err());
        assert!(time_range("2262-04-11").is_err(), "its end is past 2^63 ns");
        assert!(time_range("yesterday").is_err());
        assert!(time_range("..").is_err());
    }
}
