//! The catalog: every SQL statement NTT runs lives in this module and its children.
//!
//! Rules of this module:
//! * functions take `impl PgExecutor`, so callers choose pool, connection or transaction;
//! * every database error leaves through [`CatalogError::from_sqlx`], which turns a violated
//!   named constraint into a typed [`Constraint`] and bad values into `InvalidValue`;
//! * the schema is only changed by [`MIGRATOR`] (forward-only files in `migrations/`), and every
//!   command other than `ntt db migrate` first checks the database is exactly at this binary's
//!   schema ([`Catalog::check_schema`]).

mod constraint;
pub mod copying;
pub mod damage;
pub mod deleted;
pub mod entry;
pub mod listing;
pub mod load;
pub mod media;
pub mod names;
pub mod overlap;
pub mod partitions;
pub mod replicas;
pub mod report;
pub mod roots;
pub mod search;
pub mod states;
pub mod volumes;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;

pub use constraint::Constraint;

use crate::database_url::DatabaseUrl;

/// The catalog schema: the files in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Errors from catalog operations.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No connection could be opened.
    #[error("cannot connect to the catalog database at {url} ({hint})")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// What to check, from the kind of failure.
        hint: &'static str,
        /// What the driver reported.
        #[source]
        source: sqlx::Error,
    },
    /// The database has no catalog schema, or an older one than this binary.
    #[error(
        "the catalog database is not migrated ({pending} migration(s) pending): run `ntt db migrate`"
    )]
    NotMigrated {
        /// How many of this binary's migrations are not applied.
        pending: usize,
    },
    /// The database has migrations this binary does not know: it is older than the schema.
    #[error(
        "the catalog database has schema version {applied}, newer than this binary's \
         {known}: upgrade ntt"
    )]
    SchemaTooNew {
        /// The newest applied version.
        applied: i64,
        /// The newest version this binary knows.
        known: i64,
    },
    /// An applied migration differs from this binary's file of the same version, or failed.
    #[error(
        "catalog migration {version} ({description}) is {problem}; the schema needs repair by hand"
    )]
    SchemaMismatch {
        /// The migration version.
        version: i64,
        /// Its description.
        description: String,
        /// What is wrong: "modified since it was applied" or "marked as failed".
        problem: &'static str,
    },
    /// Applying migrations failed.
    #[error("failed to migrate the catalog database")]
    Migrate {
        /// What sqlx reported.
        #[source]
        source: MigrateError,
    },
    /// A named constraint of the schema was violated.
    #[error("{operation}: {constraint}")]
    Violation {
        /// What was being done.
        operation: &'static str,
        /// Which constraint refused it.
        constraint: Constraint,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A value was not acceptable to its column type (unknown enum label, bad number, ...).
    #[error("{operation}: invalid value")]
    InvalidValue {
        /// What was being done.
        operation: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The statement ran longer than the statement timeout.
    #[error("{operation}: timed out")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// No medium has this name, hash or hash prefix.
    #[error("no medium is called {given:?} or has a hash starting with it (see `ntt status`)")]
    MediumNotFound {
        /// What was given.
        given: String,
    },
    /// A copy run's name is in use by a live run (names are unique per process start).
    #[error("the copy run {run} is running already")]
    RunTaken {
        /// The run's name.
        run: String,
    },
    /// A hash prefix matches several media.
    #[error("{given:?} matches several media ({candidates}): give more of the hash")]
    MediumAmbiguous {
        /// What was given.
        given: String,
        /// The matching names and hashes.
        candidates: String,
    },
    /// Any other database failure.
    #[error("{operation} failed")]
    Query {
        /// What was being done.
        operation: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

impl CatalogError {
    fn connect(url: &DatabaseUrl, source: sqlx::Error) -> Self {
        let code = source
            .as_database_error()
            .and_then(|e| e.code().map(std::borrow::Cow::into_owned));
        let hint = match code.as_deref() {
            // invalid_catalog_name
            Some("3D000") => "the database does not exist: run `scripts/setup` or create it",
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => "check the user and password in NTT_DATABASE_URL",
            Some(_) => "the server refused the connection",
            None => {
                "is PostgreSQL running? `scripts/setup` starts it; set NTT_DATABASE_URL to use \
                 another database"
            }
        };
        Self::Connect {
            url: url.redacted(),
            hint,
            source,
        }
    }

    /// Classifies a driver error from `operation`: violated named constraints become
    /// [`CatalogError::Violation`], data exceptions (SQLSTATE class 22) `InvalidValue`,
    /// cancelled statements `Timeout`, the rest `Query`.
    pub fn from_sqlx(operation: &'static str, source: sqlx::Error) -> Self {
        let Some(database) = source.as_database_error() else {
            return Self::Query { operation, source };
        };
        if let Some(constraint) = database.constraint().and_then(Constraint::from_name) {
            return Self::Violation {
                operation,
                constraint,
                source,
            };
        }
        match database.code().as_deref() {
            Some(code) if code.starts_with("22") => Self::InvalidValue { operation, source },
            Some("57014") => Self::Timeout { operation, source },
            _ => Self::Query { operation, source },
        }
    }

    /// The violated constraint, if this error is a violation.
    pub fn constraint(&self) -> Option<Constraint> {
        match self {
            Self::Violation { constraint, .. } => Some(*constraint),
            _ => None,
        }
    }
}

/// Connection settings for [`Catalog::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Where the catalog is.
    pub url: DatabaseUrl,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// Longest any one statement may run; `None` for no limit (migrations).
    pub statement_timeout: Option<Duration>,
    /// Size of the connection pool.
    pub max_connections: u32,
    /// Every transaction read-only (`ntt serve`: queries from elsewhere never write).
    pub read_only: bool,
}

impl ConnectOptions {
    /// Defaults for a command-line run against `url`.
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            // Long enough for a busy local server, short enough that a wrong URL fails while the
            // person who typed it is still looking.
            connect_timeout: Duration::from_secs(10),
            // No catalog statement of a command-line run should take longer; bulk loads set
            // their own.
            statement_timeout: Some(Duration::from_mins(5)),
            max_connections: 8,
            read_only: false,
        }
    }
}

/// A connection pool to the catalog database.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: PgPool,
}

impl Catalog {
    /// Opens a pool and its first connection, so an unreachable database fails here with its
    /// cause.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, CatalogError> {
        // Index builds of a big load take seconds by design: a slow statement is worth a debug
        // line, not a warning on every enumeration.
        let mut connect = sqlx::ConnectOptions::log_slow_statements(
            options.url.connect_options().application_name("ntt"),
            log::LevelFilter::Debug,
            std::time::Duration::from_secs(1),
        );
        if let Some(timeout) = options.statement_timeout {
            connect =
                connect.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        // No JIT compilation: the catalog's statements are short or bulk, and a search over
        // many partitions that the planner costs high was compiled for 8 s to run for 0.4 s.
        connect = connect.options([("jit", "off")]);
        if options.read_only {
            connect = connect.options([("default_transaction_read_only", "on")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_lazy_with(connect.clone());
        // The pool's first connection, kept for the command's queries (a connection costs a
        // server process and an authentication: a third of a short query's time). The pool
        // reports most failures (auth failed, no such database) as they are, but retries a
        // refused connection until its timeout and then says only "timed out": when it has no
        // connection within a second, open one directly, which fails with the cause a person
        // needs to fix it.
        if let Ok(Ok(connection)) =
            tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await
        {
            drop(connection);
            return Ok(Self { pool });
        }
        let first = tokio::time::timeout(options.connect_timeout, async {
            use sqlx::Connection;
            sqlx::PgConnection::connect_with(&connect).await
        })
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        .map_err(|source| CatalogError::connect(&options.url, source))?;
        {
            use sqlx::Connection;
            first
                .close()
                .await
                .map_err(|source| CatalogError::connect(&options.url, source))?;
        }
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool, for executors.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies every pending migration; returns how many were applied. Safe to run
    /// concurrently (sqlx takes an advisory lock) and a no-op when up to date.
    pub async fn migrate(&self) -> Result<usize, CatalogError> {
        let before = self.applied_versions().await?.len();
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| CatalogError::Migrate { source })?;
        let after = self.applied_versions().await?.len();
        Ok(after.saturating_sub(before))
    }

    /// Succeeds only when the database holds exactly the migrations this binary knows.
    pub async fn check_schema(&self) -> Result<(), CatalogError> {
        let applied = self.applied_versions().await?;
        let known: Vec<_> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .collect();
        let newest_known = known.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some(newest) = applied.iter().map(|a| a.version).max()
            && newest > newest_known
        {
            return Err(CatalogError::SchemaTooNew {
                applied: newest,
                known: newest_known,
            });
        }
        for applied in &applied {
            let Some(migration) = known.iter().find(|m| m.version == applied.version) else {
                continue;
            };
            let problem = if !applied.success {
                Some("marked as failed")
            } else if applied.checksum != migration.checksum.as_ref() {
                Some("modified since it was applied")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CatalogError::SchemaMismatch {
                    version: applied.version,
                    description: migration.description.to_string(),
                    problem,
                });
            }
        }
        let pending = known
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .count();
        if pending > 0 {
            return Err(CatalogError::NotMigrated { pending });
        }
        Ok(())
    }

    async fn applied_versions(&self) -> Result<Vec<AppliedMigration>, CatalogError> {
        let exists = sqlx::query_scalar!(
            r#"select to_regclass('_sqlx_migrations') is not null as "exists!""#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| CatalogError::from_sqlx("read the schema version", e))?;
        if !exists {
            return Ok(Vec::new());
        }
        sqlx::query_as!(
            AppliedMigration,
            r#"select version, success, checksum from _sqlx_migrations order by version"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| CatalogError::from_sqlx("read the schema version", e))
    }
}

struct AppliedMigration {
    version: i64,
    success: bool,
    checksum: Vec<u8>,
}
