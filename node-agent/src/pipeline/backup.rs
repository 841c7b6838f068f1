//! Catalog backups: `pg_dump` in its custom format into a directory, checked, rotated; and the
//! restore of such a dump into an empty database.
//!
//! Rules:
//! - A dump is written under a hidden `.partial` name, read back whole (`pg_restore` into
//!   `/dev/null`: every data block decompresses), synced, then renamed to
//!   `ntt-catalog-<UTC time>.dump`: a dump with that name is complete.
//! - Rotation removes only files named like our dumps, oldest first, and never the one just
//!   made; anything else in the directory is left alone.
//! - The password never appears on a command line: the tools get the URL without it and the
//!   password through `PGPASSWORD`.
//! - A restore goes only into a database without tables of its own, in one transaction (all or
//!   nothing), then migrates the schema up to this binary's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Serialize;

use crate::catalog::{Catalog, ConnectOptions};
use crate::database_url::DatabaseUrl;

/// How dump files are named: the prefix, a UTC time that sorts as text, the suffix.
const PREFIX: &str = "ntt-catalog-";
const SUFFIX: &str = ".dump";

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL tool could not be started.
    #[error("cannot run {tool} (install the PostgreSQL client tools, as new as the server)")]
    Tool {
        /// Which one.
        tool: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// Which one.
        tool: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// The restore's target holds tables already.
    #[error(
        "the database {url} is not empty ({tables} table(s)): restore into a new, empty database (createdb), then point NTT_DATABASE_URL at it"
    )]
    NotEmpty {
        /// The target, password hidden.
        url: String,
        /// How many tables it has.
        tables: i64,
    },
    /// The catalog could not be read or migrated.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// A query failed.
    #[error("{0}")]
    Query(String),
}

type Result<T> = std::result::Result<T, BackupError>;

/// What a backup made.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// The dump.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Entries in its table of contents.
    pub entries: usize,
    /// Older dumps removed by the rotation.
    pub removed: Vec<PathBuf>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restore {
    /// Media in the restored catalog.
    pub media: i64,
    /// Blobs in it.
    pub blobs: i64,
    /// Migrations applied after the restore (a dump of an older schema).
    pub migrations_applied: usize,
}

/// The URL without its password (for a command line), and the password.
fn libpq(url: &DatabaseUrl) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url.expose()) else {
        return (url.expose().to_owned(), None);
    };
    let mut password = parsed.password().map(percent_decode);
    let _ = parsed.set_password(None);
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| {
            if key == "password" {
                password = Some(value.into_owned());
                None
            } else {
                Some((key.into_owned(), value.into_owned()))
            }
        })
        .collect();
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    (parsed.to_string(), password)
}

/// A percent-encoded URL component, decoded.
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| text.to_owned(), |(_, value)| value.into_owned())
}

/// Runs a PostgreSQL tool; its output when it succeeds.
fn tool(name: &'static str, mut command: Command) -> Result<Output> {
    let output = command
        .output()
        .map_err(|source| BackupError::Tool { tool: name, source })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(BackupError::Failed {
            tool: name,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs a PostgreSQL tool against `url` (the password through the environment).
fn run(name: &'static str, url: &DatabaseUrl, args: &[&std::ffi::OsStr]) -> Result<Output> {
    let (conninfo, password) = libpq(url);
    let mut command = Command::new(name);
    command.args(args).arg(format!("--dbname={conninfo}"));
    command.env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    tool(name, command)
}

/// Reads a whole dump: `pg_restore --file=/dev/null` decompresses every data block (a damaged
/// or short data section fails); returns the entries of its table of contents
/// (`pg_restore --list`, which reads only the header and the table).
fn read_back(dump: &Path) -> Result<usize> {
    let mut whole = Command::new("pg_restore");
    whole.arg("--file=/dev/null").arg(dump);
    tool("pg_restore", whole)?;
    let mut list = Command::new("pg_restore");
    list.arg("--list").arg(dump);
    let output = tool("pg_restore", list)?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .count())
}

/// Whether `name` is one of our dumps.
fn is_dump(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|stamp| {
            stamp.len() == 20
                && stamp
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'T' || b == b'Z' || b == b'.')
        })
}

/// Dumps the catalog at `url` into `dir` (made if missing), checks the dump, and keeps the
/// newest `keep` dumps there (at least the new one).
pub fn backup(url: &DatabaseUrl, dir: &Path, keep: usize) -> Result<Backup> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io {
            action,
            path,
            source,
        }
    };
    fs_err::create_dir_all(dir).map_err(io("cannot create the backup directory", dir))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let name = format!("{PREFIX}{stamp}{SUFFIX}");
    let path = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial"));
    let dumped = run(
        "pg_dump",
        url,
        &[
            "--format=custom".as_ref(),
            "--file".as_ref(),
            partial.as_os_str(),
        ],
    )
    .and_then(|_| read_back(&partial));
    let entries = match dumped {
        Ok(entries) => entries,
        Err(error) => {
            let _ = fs_err::remove_file(&partial);
            return Err(error);
        }
    };
    let file = fs_err::File::open(&partial).map_err(io("cannot open the dump", &partial))?;
    file.sync_all()
        .map_err(io("cannot sync the dump", &partial))?;
    let bytes = file
        .metadata()
        .map_err(io("cannot read the dump's size", &partial))?
        .len();
    drop(file);
    if path.exists() {
        let _ = fs_err::remove_file(&partial);
        return Err(BackupError::Io {
            action: "a dump of this very millisecond exists already:",
            path,
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    fs_err::rename(&partial, &path).map_err(io("cannot name the dump", &path))?;
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync the backup directory", dir))?;
    let mut dumps: Vec<String> = fs_err::read_dir(dir)
        .map_err(io("cannot list the backup directory", dir))?
        .filter_map(std::result::Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| is_dump(name))
        .collect();
    // Newest first: the names sort by their UTC time.
    dumps.sort_unstable_by(|a, b| b.cmp(a));
    let mut removed = Vec::new();
    for old in dumps.into_iter().skip(keep.max(1)) {
        if old == name {
            continue;
        }
        let old = dir.join(old);
        fs_err::remove_file(&old).map_err(io("cannot remove an old dump", &old))?;
        removed.push(old);
    }
    Ok(Backup {
        path,
        bytes,
        entries,
        removed,
    })
}

/// Restores `dump` (made by [`backup`], or any custom-format dump of a catalog) into the empty
/// database of `options`, in one transaction, then migrates it to this binary's schema.
pub async fn restore(options: &ConnectOptions, dump: &Path) -> Result<Restore> {
    let file = dump.to_path_buf();
    tokio::task::spawn_blocking(move || read_back(&file))
        .await
        .map_err(|e| BackupError::Query(format!("reading the dump did not finish: {e}")))??;
    let mut migrating = options.clone();
    migrating.statement_timeout = None;
    let catalog = Catalog::connect(&migrating).await?;
    let query =
        |e: sqlx::Error| BackupError::Query(format!("cannot read the target database: {e}"));
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
           and n.nspname not like 'pg\\_toast%'",
    )
    .fetch_one(catalog.pool())
    .await
    .map_err(query)?;
    if tables > 0 {
        return Err(BackupError::NotEmpty {
            url: options.url.redacted(),
            tables,
        });
    }
    let url = options.url.clone();
    let file = dump.to_path_buf();
    tokio::task::spawn_blocking(move || {
        run(
            "pg_restore",
            &url,
            &[
                "--no-owner".as_ref(),
                "--no-privileges".as_ref(),
                "--exit-on-error".as_ref(),
                "--single-transaction".as_ref(),
                file.as_os_str(),
            ],
        )
    })
    .await
    .map_err(|e| BackupError::Query(format!("the restore did not finish: {e}")))??;
    let migrations_applied = catalog.migrate().await?;
    let media: i64 = sqlx::query_scalar("select count(*) from medium")
        .fetch_one(catalog.pool())
        .await
        .map_err(query)?;
    let blobs: i64 = sqlx::query_scalar("select count(*) from blob")
        .fetch_one(catalog.pool())
        .await
        .map_err(query)?;
    Ok(Restore {
        media,
        blobs,
        migrations_applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url_for_the_environment() {
        let url: DatabaseUrl = "postgres://ntt:s%2Fecret@db.lab:5433/ntt?sslmode=require"
            .parse()
            .unwrap();
        let (conninfo, password) = libpq(&url);
        assert_eq!(conninfo, "postgres://ntt@db.lab:5433/ntt?sslmode=require");
        assert_eq!(password.as_deref(), Some("s/ecret"));
        let url: DatabaseUrl = "postgres://ntt@localhost/ntt?password=pw&sslmode=disable"
            .parse()
            .unwrap();
        let (conninfo, password) = libpq(&url);
        assert_eq!(conninfo, "postgres://ntt@localhost/ntt?sslmode=disable");
        assert_eq!(password.as_deref(), Some("pw"));
        let url: DatabaseUrl = "postgres://ntt@localhost/ntt".parse().unwrap();
        assert_eq!(
            libpq(&url),
            ("postgres://ntt@localhost/ntt".to_owned(), None)
        );
    }

    #[test]
    fn only_our_dumps_are_rotated() {
        assert!(is_dump("ntt-catalog-20261207T213000.123Z.dump"));
        for other in [
            "ntt-catalog-latest.dump",
            ".ntt-catalog-20261207T213000.123Z.dump.partial",
            "ntt-catalog-20261207T213000.123Z.dump.gpg",
            "notes.txt",
        ] {
            assert!(!is_dump(other), "{other}");
        }
    }
}
