//! `ntt copy`, `ntt cat`, `ntt report`, `ntt verify` and `ntt export-tree`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ntt_crds::BlobId;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::mount::attach;
use super::status::human_bytes;
use crate::catalog::Catalog;
use crate::catalog::media::{self, MediumRecord};
use crate::catalog::report::{self, Accounting, Content, FailureClass};
use crate::catalog::volumes::{self, VolumeRow};
use crate::copy::{self as stage, CopyOptions, CopyReport};
use crate::env;
use crate::export::TreeWriter;
use crate::store::Store;
use crate::volume::access::Settings;

/// Where the store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Root of the content-addressed store
    #[arg(long, global = true, env = env::STORE, default_value = env::DEFAULT_STORE)]
    pub store: PathBuf,
}

/// Options of `ntt copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// Concurrent copy workers in this process (other processes or hosts may run too)
    #[arg(long, env = env::WORKERS, default_value_t = 4)]
    pub workers: usize,
    /// Attempts after which a transient failure (I/O error, ...) is final
    #[arg(long, env = env::MAX_ATTEMPTS, default_value_t = 3)]
    pub max_attempts: i32,
    /// Seconds before the first retry of a failed file (doubled on each later attempt)
    #[arg(long, env = env::RETRY_DELAY, default_value_t = 2.0)]
    pub retry_delay: f64,
    /// Most files per batch (one claim, one store sync, one catalog commit each)
    #[arg(long, default_value_t = stage::DEFAULT_BATCH_FILES)]
    pub batch_files: i64,
    /// Most MiB per batch (a bigger file goes alone)
    #[arg(long, default_value_t = stage::DEFAULT_BATCH_MIB)]
    pub batch_mib: i64,
    /// Mount even if the medium's health is `failed`
    #[arg(long, env = env::FORCE)]
    pub force: bool,
    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

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

/// Options of `ntt report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// Print the report as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Options of `ntt verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The blobs of this medium
    #[arg(long)]
    pub medium: Option<String>,
    /// Every blob in the catalog
    #[arg(long)]
    pub all: bool,
    /// A random sample of this many blobs (of the medium, or of all)
    #[arg(long)]
    pub sample: Option<i64>,
    /// Print the outcome as JSON on stdout
    #[arg(long, env = env::JSON)]
    pub json: bool,
}

/// Options of `ntt export-tree`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The medium: its name, its hash, or a unique prefix of the hash
    pub medium: String,
    /// An empty (or new) directory on the store's filesystem
    pub dir: PathBuf,
}

fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<Store>> {
    Ok(Arc::new(Store::open(&args.store).with_context(|| {
        format!("cannot open the store at {}", args.store.display())
    })?))
}

/// `ntt copy`; `Ok(None)` when cancelled.
pub(super) async fn run_copy(
    catalog: &Catalog,
    settings: &Settings,
    store: &StoreArgs,
    args: CopyArgs,
    cancel: &CancellationToken,
    stdout: &mut impl Write,
) -> anyhow::Result<Option<CopyReport>> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    anyhow::ensure!(
        crate::catalog::load::published_entries(catalog.pool(), medium.id)
            .await?
            .is_some(),
        "medium {} is not enumerated yet: run `ntt enumerate {}` first",
        medium.name,
        medium.name
    );
    let store = open_store(store)?;
    let mut options = CopyOptions {
        workers: args.workers.clamp(1, 64),
        batch_files: args.batch_files.clamp(1, 100_000),
        batch_bytes: args.batch_mib.clamp(1, 1 << 20) << 20,
        ..CopyOptions::default()
    };
    options.retry.max_attempts = args.max_attempts.max(1);
    options.retry.backoff = std::time::Duration::from_secs_f64(args.retry_delay.clamp(0.0, 3600.0));
    let worker = format!(
        "{}:{}",
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        std::process::id()
    );
    let pending = report::content(catalog.pool(), medium.id)
        .await?
        .pending_bytes;
    let progress = stage::Progress::default();
    let ticker = crate::progress::Ticker::start(
        "copy",
        progress.clone(),
        Some(u64::try_from(pending).unwrap_or(0)),
    );
    let result = copy_remounting_once(
        catalog, settings, &medium, &store, &worker, options, &progress, args.force, cancel,
    )
    .await;
    ticker.finish().await;
    let Some(report) = result? else {
        return Ok(None);
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "{}: {} file(s) copied ({}), {} new blob(s), {} failure(s) recorded; {}",
            medium.name,
            report.copied,
            human_bytes(report.bytes),
            report.new_blobs,
            report.failures,
            if report.complete {
                "nothing is pending (see `ntt report`)"
            } else {
                "files are still pending: run again"
            }
        )?;
    }
    Ok(Some(report))
}

/// Attaches the medium and copies; when a volume is lost (its mount stops answering: a FUSE
/// driver died, a device went away), releases everything, attaches again and goes on, once. A
/// second loss stops the run: a medium that keeps dropping out needs a person (and its files
/// stay pending, not failed). `Ok(None)` when cancelled.
#[expect(
    clippy::too_many_arguments,
    reason = "the stage's whole input, as copy_medium takes it, plus how to attach"
)]
async fn copy_remounting_once(
    catalog: &Catalog,
    settings: &Settings,
    medium: &MediumRecord,
    store: &Arc<Store>,
    worker: &str,
    options: CopyOptions,
    progress: &stage::Progress,
    force: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<CopyReport>> {
    let mut total = CopyReport::default();
    let mut remounted = false;
    loop {
        let Some(attached) = attach(catalog, medium, settings, force, cancel).await? else {
            return Ok(None);
        };
        let readers: BTreeMap<i32, _> = attached
            .volumes
            .iter()
            .map(|v| (v.volume_no, v.reader.clone()))
            .collect();
        let result = stage::copy_medium(
            catalog.pool(),
            medium.id,
            readers,
            store.clone(),
            worker,
            options,
            progress,
            cancel,
        )
        .await;
        let released = attached.release();
        let (volume_no, so_far) = match result {
            Err(stage::CopyStageError::VolumeLost { volume_no, so_far }) => (volume_no, so_far),
            result => {
                let report = result.with_context(|| format!("copying {}", medium.name))?;
                released?;
                if cancel.is_cancelled() {
                    return Ok(None);
                }
                total.add(&report);
                return Ok(Some(total));
            }
        };
        total.add(&so_far);
        let detail = serde_json::json!({
            "volume_no": volume_no,
            "times": if remounted { 2 } else { 1 },
            "stopped": remounted,
        });
        crate::catalog::copying::record_problem(catalog.pool(), medium.id, "volume_lost", detail)
            .await?;
        if let Err(error) = released {
            // The next attach repairs what is left (a dead FUSE mount is unmounted).
            tracing::warn!(error = %error, "releasing the lost volume failed");
        }
        if remounted {
            return Err(stage::CopyStageError::VolumeLost { volume_no, so_far }).with_context(
                || {
                    format!(
                        "copying {} (its volumes were mounted again once already)",
                        medium.name
                    )
                },
            );
        }
        remounted = true;
        tracing::warn!(
            medium = %medium.name,
            volume = volume_no,
            "volume {volume_no} stopped answering: mounting it again (once)"
        );
        if cancel.is_cancelled() {
            return Ok(None);
        }
    }
}

/// `ntt cat`.
pub(super) async fn run_cat(
    catalog: &Catalog,
    store: &StoreArgs,
    args: CatArgs,
    stdout: &mut impl Write,
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
    let store = open_store(store)?;
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

/// The report of one medium.
#[derive(Debug, Serialize)]
struct MediumReport {
    name: String,
    hash: String,
    health: Option<String>,
    volumes: Vec<VolumeRow>,
    accounting: Accounting,
    balances: bool,
    content: Content,
    failures: Vec<FailureClass>,
    entry_errors: i64,
    problems: serde_json::Value,
    damage: crate::catalog::damage::DamageSummary,
}

async fn medium_report(catalog: &Catalog, medium: &MediumRecord) -> anyhow::Result<MediumReport> {
    let pool = catalog.pool();
    let accounting = report::accounting(pool, medium.id).await?;
    let problems: serde_json::Value =
        sqlx::query_scalar("select problems from medium where id = $1")
            .bind(medium.id.get())
            .fetch_one(pool)
            .await
            .context("read the medium's problems")?;
    Ok(MediumReport {
        name: medium.name.clone(),
        hash: medium.hash.clone(),
        health: medium.health.map(|h| format!("{h:?}").to_lowercase()),
        volumes: volumes::medium_volumes(pool, medium.id).await?,
        balances: accounting.balances(),
        accounting,
        content: report::content(pool, medium.id).await?,
        failures: report::failures(pool, medium.id).await?,
        entry_errors: report::entry_errors(pool, medium.id).await?,
        problems,
        damage: crate::catalog::damage::summary(pool, medium.id).await?,
    })
}

/// `ntt report`.
pub(super) async fn run_report(
    catalog: &Catalog,
    args: ReportArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let report = medium_report(catalog, &medium).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &report)?;
        writeln!(stdout)?;
        return Ok(());
    }
    let a = &report.accounting;
    let c = &report.content;
    writeln!(stdout, "medium   {} ({})", report.name, report.hash)?;
    writeln!(
        stdout,
        "health   {}",
        report.health.as_deref().unwrap_or("-")
    )?;
    for v in &report.volumes {
        writeln!(
            stdout,
            "volume   {} {} {} {}{}",
            v.volume_no,
            v.fs_type.as_deref().unwrap_or("-"),
            format!("{:?}", v.state).to_lowercase(),
            v.access
                .map_or_else(|| "-".to_owned(), |x| format!("{x:?}").to_lowercase()),
            v.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        stdout,
        "entries  {} = {} copied + {} excluded + {} failed + {} not a file + {} pending{}",
        a.entries,
        a.copied,
        a.excluded,
        a.failed,
        a.not_a_file,
        a.pending,
        if report.balances {
            ""
        } else {
            "  (DOES NOT BALANCE)"
        }
    )?;
    writeln!(
        stdout,
        "content  {} of {} files copied, {}; {} distinct blobs ({}), {} shared with other media; {} pending",
        c.copied_files,
        c.files,
        human_bytes(u64::try_from(c.copied_bytes).unwrap_or(0)),
        c.distinct_blobs,
        human_bytes(u64::try_from(c.distinct_bytes).unwrap_or(0)),
        c.shared_blobs,
        human_bytes(u64::try_from(c.pending_bytes).unwrap_or(0))
    )?;
    for failure in &report.failures {
        writeln!(
            stdout,
            "failed   {} file(s): {}",
            failure.files, failure.class
        )?;
    }
    if report.entry_errors > 0 {
        writeln!(
            stdout,
            "unread   {} entries could not be read by the walk (table entry_error)",
            report.entry_errors
        )?;
    }
    if report.problems.as_object().is_some_and(|p| !p.is_empty()) {
        writeln!(stdout, "problems {}", report.problems)?;
    }
    write_damage(&report, stdout)
}

/// The damage lines of `ntt report`.
fn write_damage(report: &MediumReport, stdout: &mut impl Write) -> anyhow::Result<()> {
    let d = &report.damage;
    if d.files > 0 {
        writeln!(
            stdout,
            "damaged  {} file(s) with {} on unreadable sectors ({} copied with zeros there): `ntt ls {} --damaged`",
            d.files,
            human_bytes(u64::try_from(d.bytes).unwrap_or(0)),
            d.copied,
            report.name
        )?;
    }
    for v in d.volumes.iter().filter(|v| v.bad_bytes > 0) {
        writeln!(
            stdout,
            "unread   volume {}: {} unreadable ({}): {} in files, {} free space, {} structures, {} unattributed",
            v.volume_no,
            human_bytes(u64::try_from(v.bad_bytes).unwrap_or(0)),
            v.method,
            human_bytes(u64::try_from(v.file_bytes).unwrap_or(0)),
            human_bytes(u64::try_from(v.free_bytes).unwrap_or(0)),
            human_bytes(u64::try_from(v.metadata_bytes).unwrap_or(0)),
            human_bytes(u64::try_from(v.unattributed_bytes).unwrap_or(0)),
        )?;
        for line in &v.structures {
            writeln!(stdout, "           structure hit: {line}")?;
        }
    }
    Ok(())
}

/// What `ntt verify` found.
#[derive(Debug, Default, Serialize)]
struct Verification {
    checked: u64,
    ok: u64,
    mismatched: Vec<String>,
    missing: Vec<String>,
    loads_validated: u64,
}

/// `ntt verify`; `Ok(false)` when something is wrong.
pub(super) async fn run_verify(
    catalog: &Catalog,
    store: &StoreArgs,
    args: VerifyArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    let pool = catalog.pool();
    anyhow::ensure!(
        (args.medium.is_some() || args.all || args.sample.is_some())
            && !(args.all && args.medium.is_some()),
        "say what to verify: --medium MEDIUM or --all, and/or --sample N"
    );
    let medium = match &args.medium {
        Some(given) => Some(media::resolve_medium(pool, given).await?.id),
        None => None,
    };
    let store = open_store(store)?;
    let blobs = report::blobs_to_verify(pool, medium, args.sample).await?;
    let mut found = Verification::default();
    for blob in blobs {
        let id = BlobId::try_from(blob.id.as_slice()).context("malformed blob id")?;
        let path = store.blob_path(&id);
        let outcome = tokio::task::spawn_blocking(move || -> std::io::Result<&'static str> {
            match fs_err::File::open(&path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok("missing"),
                Err(error) => Err(error),
                Ok(mut file) => {
                    let mut hasher = blake3::Hasher::new();
                    std::io::copy(&mut file, &mut hasher)?;
                    Ok(if hasher.finalize().as_bytes() == id.as_bytes() {
                        "ok"
                    } else {
                        "mismatch"
                    })
                }
            }
        })
        .await??;
        report::record_verification(pool, &blob.id, outcome).await?;
        found.checked += 1;
        match outcome {
            "ok" => found.ok += 1,
            "missing" => found.missing.push(id.to_hex()),
            _ => found.mismatched.push(id.to_hex()),
        }
    }
    if args.sample.is_none() {
        found.loads_validated = report::validate_loads(pool, medium)
            .await
            .context("a load's paths do not all have their inode")?;
    }
    let good = found.mismatched.is_empty() && found.missing.is_empty();
    if args.json {
        serde_json::to_writer_pretty(&mut *stdout, &found)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "{} blob(s) checked: {} ok, {} mismatched, {} missing",
            found.checked,
            found.ok,
            found.mismatched.len(),
            found.missing.len()
        )?;
        for id in &found.mismatched {
            writeln!(stdout, "mismatch {id}")?;
        }
        for id in &found.missing {
            writeln!(stdout, "missing  {id}")?;
        }
    }
    Ok(good)
}

/// `ntt export-tree`; `false` when some entries were refused (listed on stderr).
pub(super) async fn run_export(
    catalog: &Catalog,
    store: &StoreArgs,
    args: ExportArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    let medium = media::resolve_medium(catalog.pool(), &args.medium).await?;
    let store = open_store(store)?;
    let mut writer = TreeWriter::create(&args.dir)?;
    let (mut linked, mut skipped, mut refused) = (0u64, 0u64, 0u64);
    let mut failure = None;
    let listed = report::tree(catalog.pool(), medium.id, &mut |entry| {
        // `<volume>/<path>`: the path's bytes exactly as recorded; the writer refuses any
        // that would leave the directory.
        let mut path = entry.volume_no.to_string().into_bytes();
        path.push(b'/');
        path.extend_from_slice(&entry.path);
        let written = match (entry.kind.as_str(), &entry.blob_id, &entry.target) {
            ("dir", _, _) => writer.dir(&path),
            ("file", Some(blob), _) => {
                let id = BlobId::try_from(blob.as_slice()).map_err(std::io::Error::other)?;
                writer.link(&path, &store.blob_path(&id), store.root())
            }
            ("symlink", _, Some(link)) => writer.symlink(&path, link),
            _ => {
                skipped += 1;
                return Ok(());
            }
        };
        match written {
            Ok(Ok(())) => {
                if entry.kind == "file" {
                    linked += 1;
                }
                Ok(())
            }
            Ok(Err(refusal)) => {
                refused += 1;
                tracing::warn!(
                    volume = entry.volume_no,
                    path = %entry.path.escape_ascii(),
                    "not exported: {refusal}"
                );
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                failure = Some(error);
                Err(std::io::Error::other(message))
            }
        }
    })
    .await;
    if let Err(error) = listed {
        return Err(match failure {
            Some(failure) => anyhow::Error::new(failure),
            None => anyhow::Error::new(error),
        });
    }
    writeln!(
        stdout,
        "{}: {linked} file(s) linked under {}, {skipped} entries without stored content skipped, \
         {refused} refused",
        medium.name,
        args.dir.display()
    )?;
    if refused > 0 {
        tracing::error!(
            "{refused} entries of {} were not exported: their names would leave {} or clash \
             (listed above); their content is still in the store (`ntt cat`)",
            medium.name,
            args.dir.display()
        );
    }
    Ok(refused == 0)
}
