//! The search benchmark's two halves, for `bench/search.sh`:
//!
//! ```text
//! search_bench build PATHS MEDIA MLOCATE_DB   # a synthetic catalog and the same paths for plocate
//! search_bench run NTT PLOCATE_DB QUERIES     # p50/p99 of ntt find/where beside plocate
//! ```
//! Both read `NTT_DATABASE_URL` (a migrated, empty catalog for `build`).
//!
//! The catalog is built the way enumeration and copying build it: each medium through the
//! loader (`Loader`), its names indexed after publish (`index_names`); one file in 50 is then
//! marked copied (a blob per content) so that `ntt where` has places to list. The media are made
//! of "collections" (a project folder, a camera dump, a home directory) drawn from a pool, so
//! the same trees recur across media as copies and backups do in a real archive; a few names
//! are not UTF-8 or hold a newline. `build` writes the same paths (`/=NNN=/` + the path) as an
//! mlocate database, which `plocate-build` turns into plocate's index.
//!
//! `run` draws its queries from the catalog's names (deterministically), runs each through
//! `ntt find --limit 0 --json` and `plocate -b -0` (basename only, like `--name`) as a user would, one
//! process per query, checks that both printed the same number of paths, and prints the
//! latencies.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "a benchmark that prints its report; counts far below 2^52"
)]

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use ntt_agent::catalog::entry::{Entry, EntryKind};
use ntt_agent::catalog::load::Loader;
use ntt_agent::catalog::media::{self, MediumId, MediumKind, NewMedium};
use ntt_agent::catalog::names;
use sqlx::PgPool;

/// splitmix64: a small deterministic generator (the corpus must be the same on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }
}

const SYLLABLES: [&str; 40] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "go", "hu", "ji", "ko", "la",
    "mo", "nu", "pa", "ri", "so", "tu", "va", "we", "xi", "yo", "za", "bri", "cha", "dro", "fla",
    "gre", "kri", "plo", "sta", "tre", "vin", "mar", "tel", "son",
];
const EXTENSIONS: [&str; 14] = [
    "pdf", "doc", "docx", "txt", "xls", "odt", "jpg", "png", "mp3", "html", "eml", "zip", "csv",
    "md",
];
const COMMON: [&[u8]; 10] = [
    b"README.md",
    b"index.html",
    b"LICENSE",
    b"Thumbs.db",
    b"desktop.ini",
    b"__init__.py",
    b".DS_Store",
    b"notes.txt",
    b"Makefile",
    b"favicon.ico",
];

/// A word of two to four syllables, from the collection's vocabulary.
fn word(rng: &mut Rng) -> String {
    let syllables = 2 + rng.below(3);
    (0..syllables).map(|_| *rng.pick(&SYLLABLES)).collect()
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A file name of the kind a collection holds.
fn file_name(rng: &mut Rng, camera: bool, sequence: &mut u32) -> Vec<u8> {
    if camera {
        *sequence += 1 + u32::try_from(rng.below(3)).unwrap_or(0);
        return match rng.below(3) {
            0 => format!("IMG_{:04}.JPG", *sequence % 10_000),
            1 => format!("DSC{:05}.JPG", *sequence % 100_000),
            _ => format!("P{:07}.jpg", *sequence),
        }
        .into_bytes();
    }
    let ext = rng.pick(&EXTENSIONS);
    let mut name = match rng.below(10) {
        0 => return rng.pick(&COMMON).to_vec(),
        1..=3 => format!(
            "{} {} {}.{ext}",
            capitalised(&word(rng)),
            word(rng),
            1985 + rng.below(40)
        ),
        4..=6 => format!("{}_{}_v{}.{ext}", word(rng), word(rng), rng.below(12)),
        _ => format!("{}-{}.{ext}", word(rng), rng.below(1000)),
    }
    .into_bytes();
    match rng.below(2000) {
        // Latin-1, as old media write it: not UTF-8.
        0 => name
            .splice(0..0, b"\xe9t\xe9 ".iter().copied())
            .for_each(drop),
        1 => name.splice(0..0, b"line\n".iter().copied()).for_each(drop),
        _ => {}
    }
    name
}

/// One collection: its paths (relative to where it is placed) with their kinds, in tree order
/// (a directory before its entries), and for each file a content key.
fn collection(seed: u64) -> Vec<(Vec<u8>, EntryKind, u64)> {
    let mut rng = Rng(seed);
    let camera = rng.below(4) == 0;
    let target = 2_000 + rng.below(18_000);
    let mut out = Vec::new();
    let root = format!("{} {}", capitalised(&word(&mut rng)), word(&mut rng)).into_bytes();
    out.push((root.clone(), EntryKind::Dir, 0));
    let mut taken = std::collections::HashSet::new();
    taken.insert(root.clone());
    let mut dirs = vec![(root, 0u32)];
    let mut sequence = 0;
    while let Some((dir, depth)) = dirs.pop() {
        if out.len() as u64 >= target {
            break;
        }
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..3 + rng.below(40) {
            names.insert(file_name(&mut rng, camera, &mut sequence));
        }
        for name in names {
            let mut path = dir.clone();
            path.push(b'/');
            path.extend_from_slice(&name);
            if !taken.insert(path.clone()) {
                continue;
            }
            let key = seed ^ (out.len() as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
            out.push((path, EntryKind::File, key));
        }
        if depth < 6 {
            for _ in 0..rng.below(5) {
                let mut path = dir.clone();
                path.push(b'/');
                path.extend_from_slice(word(&mut rng).as_bytes());
                if !taken.insert(path.clone()) {
                    continue;
                }
                out.push((path.clone(), EntryKind::Dir, 0));
                dirs.push((path, depth + 1));
            }
        }
    }
    out
}

fn entry(path: Vec<u8>, ino: u64, kind: EntryKind) -> Entry {
    Entry {
        path,
        ino,
        kind,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
        uid: 1000,
        gid: 1000,
        nlink: 1,
        size: 4096,
        rdev: None,
        mtime_ns: Some(1_100_000_000_000_000_000),
        ctime_ns: None,
        atime_ns: None,
        birth_ns: None,
        target: None,
    }
}

/// Writes one medium's tree as mlocate directory records: each directory (absolute, under
/// `/=NNN=`, a name no query matches), then its entries (0: a file, 1: a directory) and an end mark (2).
fn write_mlocate_tree(
    out: &mut impl Write,
    top: &[u8],
    paths: &[(Vec<u8>, EntryKind)],
) -> std::io::Result<()> {
    let mut children: BTreeMap<Vec<u8>, Vec<(u8, &[u8])>> = BTreeMap::new();
    children.entry(Vec::new()).or_default();
    for (path, kind) in paths {
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (path[..i].to_vec(), &path[i + 1..]),
            None => (Vec::new(), path.as_slice()),
        };
        let is_dir = *kind == EntryKind::Dir;
        children
            .entry(parent)
            .or_default()
            .push((u8::from(is_dir), name));
        if is_dir {
            children.entry(path.clone()).or_default();
        }
    }
    for (dir, entries) in children {
        out.write_all(&[0; 16])?; // time (8 bytes), nanoseconds (4), padding (4)
        out.write_all(top)?;
        if !dir.is_empty() {
            out.write_all(b"/")?;
            out.write_all(&dir)?;
        }
        out.write_all(b"\0")?;
        for (kind, name) in entries {
            out.write_all(&[kind])?;
            out.write_all(name)?;
            out.write_all(b"\0")?;
        }
        out.write_all(&[2])?;
    }
    Ok(())
}

async fn build(pool: &PgPool, total: u64, media_count: u64, mlocate: &str) -> anyhow::Result<()> {
    let per_medium = total / media_count.max(1);
    let mut db =
        BufWriter::new(fs_err::File::create(mlocate).with_context(|| format!("create {mlocate}"))?);
    // The header: magic, configuration size 0, version 0, no visibility check, the root.
    db.write_all(b"\0mlocate\0\0\0\0\0\0\0\0/\0")?;
    // The root lists the media's top directories.
    db.write_all(&[0; 16])?;
    db.write_all(b"/\0")?;
    for m in 0..media_count {
        db.write_all(format!("\x01={m:03}=\0").as_bytes())?;
    }
    db.write_all(&[2])?;
    let mut rng = Rng(42);
    let (mut paths_total, started) = (0u64, Instant::now());
    let mut copied: Vec<(MediumId, i64, u64)> = Vec::new();
    let mut collections = std::collections::HashMap::new();
    for m in 0..media_count {
        let name = format!("synthetic-{m:03}");
        let id = media::insert_medium(
            pool,
            &NewMedium {
                hash: format!("{:016x}{m:016x}", 0x5eed_u64).parse()?,
                name: name.clone(),
                kind: MediumKind::Image,
                source: format!("/images/{name}.img"),
                description: None,
                size_bytes: Some(1 << 30),
                model: None,
                serial: None,
            },
        )
        .await?;
        sqlx::query(
            "insert into volume (medium_id, volume_no, scheme, offset_bytes, length_bytes)
             values ($1, 0, 'none', 0, 1073741824)",
        )
        .bind(id.get())
        .execute(pool)
        .await?;
        let prefix = format!("backup {}", 1998 + m % 25).into_bytes();
        let mut paths: Vec<(Vec<u8>, EntryKind)> = vec![(prefix.clone(), EntryKind::Dir)];
        let mut keys = Vec::new();
        while (paths.len() as u64) < per_medium {
            // A pool of 400 collections: most media repeat some that others hold.
            let seed = 1 + rng.below(400);
            let mut placed = prefix.clone();
            placed.extend_from_slice(format!("/copy {}", paths.len()).as_bytes());
            paths.push((placed.clone(), EntryKind::Dir));
            keys.push(0);
            let made = collections.entry(seed).or_insert_with(|| collection(seed));
            for (path, kind, key) in made.iter() {
                if paths.len() as u64 >= per_medium {
                    break;
                }
                let mut full = placed.clone();
                full.push(b'/');
                full.extend_from_slice(path);
                paths.push((full, *kind));
                keys.push(*key);
            }
        }
        keys.insert(0, 0);
        let mut loader = Loader::begin(pool, id, 256 << 20).await?;
        for (ino, (path, kind)) in paths.iter().enumerate() {
            loader.add_entry(0, &entry(path.clone(), ino as u64 + 2, *kind), None)?;
            if loader.wants_flush() {
                loader.flush().await?;
            }
            if *kind == EntryKind::File && ino % 50 == 0 {
                copied.push((id, ino as i64 + 2, keys[ino]));
            }
        }
        loader.publish(&name, false).await?;
        names::index_names(pool, id).await?;
        write_mlocate_tree(&mut db, format!("/={m:03}=").as_bytes(), &paths)?;
        paths_total += paths.len() as u64;
        eprintln!(
            "medium {m}: {} paths ({paths_total} in all, {:.0} s)",
            paths.len(),
            started.elapsed().as_secs_f64()
        );
    }
    db.flush()?;
    mark_copied(pool, &copied).await?;
    sqlx::raw_sql("vacuum analyze").execute(pool).await?;
    let (names, size): (i64, String) = sqlx::query_as(
        "select (select count(*) from file_name),
                pg_size_pretty(pg_database_size(current_database()))",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "catalog: {paths_total} paths over {media_count} media, {names} distinct names, {} files copied, database {size}, built in {:.0} s",
        copied.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Marks files copied (medium, inode, content key): a blob per content (contents recur with
/// their collections).
async fn mark_copied(pool: &PgPool, copied: &[(MediumId, i64, u64)]) -> anyhow::Result<()> {
    for chunk in copied.chunks(50_000) {
        let media: Vec<i64> = chunk.iter().map(|c| c.0.get()).collect();
        let inodes: Vec<i64> = chunk.iter().map(|c| c.1).collect();
        let blobs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|c| blake3::hash(&c.2.to_le_bytes()).as_bytes().to_vec())
            .collect();
        sqlx::query(
            "insert into blob (id, size) select distinct b, 4096 from unnest($1::bytea[]) b
             on conflict do nothing",
        )
        .bind(&blobs)
        .execute(pool)
        .await?;
        sqlx::query(
            "update inode i set state = 'copied', blob_id = c.blob, copied_at = now()
             from unnest($1::bigint[], $2::bigint[], $3::bytea[]) as c (medium_id, ino, blob)
             where i.medium_id = c.medium_id and i.volume_no = 0 and i.ino = c.ino",
        )
        .bind(&media)
        .bind(&inodes)
        .bind(&blobs)
        .execute(pool)
        .await?;
        // As the copier records them beside the inodes (`blob_medium`, for `ntt where`).
        sqlx::query(
            "insert into blob_medium (blob_id, medium_id)
             select distinct blob, medium_id from unnest($1::bigint[], $2::bytea[]) as c (medium_id, blob)
             on conflict do nothing",
        )
        .bind(&media)
        .bind(&blobs)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// One query, as both tools take it.
struct Query {
    kind: &'static str,
    ntt: Vec<String>,
    plocate: Option<Vec<String>>,
}

/// Queries drawn from the catalog: name substrings, globs and `where` hashes.
async fn queries(pool: &PgPool, count: i64) -> anyhow::Result<Vec<Query>> {
    let names: Vec<String> = sqlx::query_scalar(
        r"select convert_from(name, 'UTF8') from file_name
          where octet_length(name) >= 8 and fold !~ '[\ufffd\n*?\[\]\\]'
          order by hash limit $1",
    )
    .bind(count * 2)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    let mut rng = Rng(7);
    for name in names.iter().take(usize::try_from(count)?) {
        let chars: Vec<char> = name.chars().collect();
        let len = 4 + usize::try_from(rng.below(3))?;
        let start = usize::try_from(rng.below((chars.len().saturating_sub(len) + 1) as u64))?;
        let part: String = chars[start..(start + len).min(chars.len())]
            .iter()
            .collect();
        out.push(Query {
            kind: "name substring",
            ntt: vec!["--name".into(), format!("*{part}*")],
            plocate: Some(vec![part]),
        });
    }
    for name in names.iter().skip(usize::try_from(count)?) {
        let chars: Vec<char> = name.chars().collect();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem.chars().count(), format!(".{ext}")),
            _ => (chars.len(), String::new()),
        };
        let keep = (3 + usize::try_from(rng.below(3))?).min(stem);
        let glob = format!("{}*{ext}", chars[..keep].iter().collect::<String>());
        out.push(Query {
            kind: "name glob",
            ntt: vec!["--name".into(), glob.clone()],
            plocate: Some(vec![glob]),
        });
    }
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar("select id from blob order by id limit $1")
        .bind(count)
        .fetch_all(pool)
        .await?;
    for blob in blobs {
        out.push(Query {
            kind: "where",
            ntt: vec![hex::encode(blob)],
            plocate: None,
        });
    }
    Ok(out)
}

/// Runs a command and returns (seconds, records printed, exit code): records end with
/// `separator`.
fn timed(
    program: &str,
    args: &[String],
    separator: u8,
) -> anyhow::Result<(f64, usize, Option<i32>)> {
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {program}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !matches!(output.status.code(), Some(0 | 1)) {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let lines = output.stdout.split(|&b| b == separator).count() - 1;
    Ok((seconds, lines, output.status.code()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(pool: &PgPool, ntt: &str, plocate_db: &str, count: i64) -> anyhow::Result<()> {
    let queries = queries(pool, count).await?;
    let mut times: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let (mut mismatches, mut matched) = (Vec::new(), 0usize);
    for query in &queries {
        let ntt_args: Vec<String> = if query.kind == "where" {
            std::iter::once("where".to_owned())
                .chain(query.ntt.iter().cloned())
                .chain(["--limit".to_owned(), "0".to_owned(), "--json".to_owned()])
                .collect()
        } else {
            ["find", "--limit", "0", "--json"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain(query.ntt.iter().cloned())
                .collect()
        };
        let (seconds, lines, code) = timed(ntt, &ntt_args, b'\n')?;
        times.entry((query.kind, "ntt")).or_default().push(seconds);
        if query.kind == "where" {
            ensure!(
                code == Some(0),
                "ntt where found nothing for {:?}",
                query.ntt
            );
        }
        if let Some(pattern) = &query.plocate {
            // `--`: a pattern may begin with `-` (`-719.`).
            let mut args = ["-d", plocate_db, "-b", "-0", "--"]
                .map(str::to_owned)
                .to_vec();
            args.extend(pattern.iter().cloned());
            let (seconds, found, _) = timed("plocate", &args, 0)?;
            times
                .entry((query.kind, "plocate"))
                .or_default()
                .push(seconds);
            matched += lines;
            if found != lines {
                mismatches.push(format!("{:?}: ntt {lines}, plocate {found}", query.ntt));
            }
        }
    }
    println!(
        "{:<16} {:>8} {:>10} {:>10} {:>10}",
        "query", "tool", "runs", "p50 ms", "p99 ms"
    );
    let mut p50 = BTreeMap::new();
    for ((kind, tool), mut seconds) in times {
        seconds.sort_by(f64::total_cmp);
        let (median, tail) = (percentile(&seconds, 0.5), percentile(&seconds, 0.99));
        println!(
            "{kind:<16} {tool:>8} {:>10} {:>10.1} {:>10.1}",
            seconds.len(),
            median * 1000.0,
            tail * 1000.0
        );
        p50.insert((kind, tool), (median, tail));
    }
    for kind in ["name substring", "name glob"] {
        if let (Some(ours), Some(theirs)) = (p50.get(&(kind, "ntt")), p50.get(&(kind, "plocate"))) {
            println!(
                "{kind}: ntt / plocate = {:.2}x at p50, {:.2}x at p99 (time)",
                ours.0 / theirs.0,
                ours.1 / theirs.1
            );
        }
    }
    println!("paths printed by ntt over the name queries: {matched}");
    ensure!(
        mismatches.is_empty(),
        "ntt and plocate disagree on {} queries: {mismatches:?}",
        mismatches.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("NTT_DATABASE_URL").context("NTT_DATABASE_URL is not set")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .context("connect")?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["build", paths, media, db] => build(&pool, paths.parse()?, media.parse()?, db).await,
        ["run", ntt, db, queries] => run(&pool, ntt, db, queries.parse()?).await,
        _ => bail!("usage: search_bench build PATHS MEDIA MLOCATE_DB | run NTT PLOCATE_DB QUERIES"),
    }
}
