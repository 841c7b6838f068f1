//! Loading a walk into the catalog: binary `COPY` into tables built beside the published load,
//! published by one short swap transaction.
//!
//! Rules: rows go in bounded `COPY` batches and no transaction spans the walk. Up to the sort
//! memory ([`DEFAULT_SORT_MEMORY_MIB`]) they are held during the walk and sent after it in the
//! order of each table's key, in one transaction per table (so the index builds find them
//! sorted); beyond it they stream as walked, each batch its own transaction. The new load lives in `inode_m<id>_next`, `path_m<id>_next` and `entry_error_m<id>_next`
//! until it is complete, indexed, reconciled (paths loaded = entries walked) and analysed; only
//! then does one transaction drop the old partitions (with `--replace`) and attach the new ones.
//! A failure or a kill at any point before that leaves the published load untouched; the next
//! run drops the half-built tables and starts again. Hard links: one inode row, many path rows.
//!
//! Here: the [`Loader`] and its writer task. Beside it: the `COPY` encoding (`copy_rows`), the
//! rows held for sorting (`sorted`), the build lanes and duplicate-key repairs (`repair`), and
//! the SQL statements and session settings (`statements`).

use std::collections::HashSet;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::CatalogError;
use super::entry::{Entry, EntryKind};
use super::media::MediumId;

mod copy_rows;
mod repair;
mod sorted;
mod statements;

pub use copy_rows::CopyRows;
use repair::{Repaired, inode_lanes, path_lanes, run_lanes};
use sorted::{Held, HeldRow, Place, sort_inodes, sort_paths};
use statements::{BUILD_RESET, INODE_STATISTICS, build_settings, copy_statement, run_steps};

/// What a load holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LoadCounts {
    /// Entries the walk produced (one path row each).
    pub entries: u64,
    /// Inode rows (hard links share one).
    pub inodes: u64,
    /// Paths marked excluded by an ignore pattern.
    pub excluded: u64,
    /// Entries and directories that could not be read.
    pub errors: u64,
    /// Seconds spent sending rows (`COPY`).
    pub copy_seconds: f64,
    /// Seconds spent sorting the held rows into key order.
    pub sort_seconds: f64,
    /// Seconds spent indexing, checking and publishing.
    pub publish_seconds: f64,
}

/// Why a load was not published.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The medium is loaded already and `--replace` was not given.
    #[error(
        "medium {medium} is enumerated already ({entries} entries); pass --replace to build a new load and swap it in"
    )]
    AlreadyLoaded {
        /// The medium's name.
        medium: String,
        /// What its load holds.
        entries: i64,
    },
    /// The rows PostgreSQL took into a new table do not add up to what was walked.
    #[error(
        "the load does not reconcile: the walk made {walked} {table} rows but {loaded} were loaded"
    )]
    Mismatch {
        /// Which table.
        table: &'static str,
        /// Rows the walk made for it.
        walked: u64,
        /// Rows PostgreSQL reported loading (the sum of its `COPY n` counts).
        loaded: u64,
    },
    /// The writer task ended without saying why.
    #[error("the load writer stopped")]
    WriterGone,
    /// A value does not fit its column.
    #[error("{what} {value} of {path} does not fit the catalog")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
        /// The entry (lossy).
        path: String,
    },
}

fn sql_error(operation: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |e| CatalogError::from_sqlx(operation, e)
}

/// Flush a table's rows once they take this many bytes.
const FLUSH_BYTES: usize = 4 << 20;

/// Size of the `CopyData` messages a batch is sent in.
const COPY_MESSAGE_BYTES: usize = 64 << 10;

/// MiB of encoded rows (and their places) a load holds in memory, by default, so that it can
/// send each table in the order of its key once the walk is done (`--sort-memory`); a walk
/// that makes more sends what it holds, in the order walked, and the rest as it comes (batches
/// of 4 MiB).
///
/// Why: PostgreSQL builds an index from rows it finds already in key order with one pass of
/// comparisons instead of a full sort (its quicksort checks for sorted input first). Sending
/// the rows of the bench corpus (223 043 entries, 50 MB of rows) sorted took the path key's
/// build from 339 to 172 ms of CPU and each of the three inode-number indexes' from about 150
/// to 100 ms, for the cost of sorting in this process. The `COPY`s then run after the walk
/// instead of beside it; on two cores that leaves the total work, and so the time, lower. At
/// 256 MiB this covers about 900 000 entries (some 300 bytes each); a bigger medium loads
/// unsorted as before.
pub const DEFAULT_SORT_MEMORY_MIB: usize = 256;

/// The tables of a load, in the order of [`Loaded`]'s counts.
const TABLES: [&str; 3] = ["inode", "path", "entry_error"];

/// Rows PostgreSQL took into each of [`TABLES`] (its `COPY n` counts, summed).
type Loaded = [u64; 3];

/// What the writer did: seconds spent in `COPY`, and rows loaded per table.
type Written = (f64, Loaded);

/// What a writer is given to do.
#[derive(Debug)]
enum Job {
    /// `COPY` a batch into [`TABLES`]`[table]` with `statement`.
    Copy {
        table: usize,
        statement: String,
        payload: Vec<u8>,
    },
    /// Begin a transaction and run this in it (the `TRUNCATE` that lets the batches that
    /// follow be written frozen and in order).
    Begin(String),
    /// Commit it.
    Commit,
}

/// The task that sends batches with `COPY` on a connection of its own.
#[derive(Debug)]
struct Writer {
    sender: tokio::sync::mpsc::Sender<Job>,
    task: tokio::task::JoinHandle<Result<Written, LoadError>>,
}

impl Writer {
    async fn start(pool: &PgPool) -> Result<Self, LoadError> {
        let mut conn = pool
            .acquire()
            .await
            .map_err(sql_error("connect the load writer"))?;
        // A crash loses at most the last batches of a load that is rebuilt anyway: no need to
        // wait for each batch's WAL flush.
        sqlx::raw_sql("set synchronous_commit = off")
            .execute(&mut *conn)
            .await
            .map_err(sql_error("configure the load writer"))?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Job>(2);
        let task = tokio::spawn(async move {
            let mut busy = 0.0;
            let mut loaded: Loaded = [0; 3];
            let mut open = false;
            while let Some(job) = receiver.recv().await {
                let started = std::time::Instant::now();
                let done = match job {
                    Job::Copy {
                        table,
                        statement,
                        payload,
                    } => copy_batch(&mut conn, &statement, &payload)
                        .await
                        .map(|rows| loaded[table] += rows),
                    Job::Begin(statement) => {
                        open = true;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("begin; {statement}")))
                            .execute(&mut *conn)
                            .await
                            .map(drop)
                            .map_err(sql_error("begin a load transaction"))
                    }
                    Job::Commit => {
                        open = false;
                        sqlx::raw_sql("commit")
                            .execute(&mut *conn)
                            .await
                            .map(drop)
                            .map_err(sql_error("commit a load transaction"))
                    }
                };
                if let Err(error) = done {
                    // Never hand a connection in a failed transaction back to the pool.
                    conn.close_on_drop();
                    return Err(error.into());
                }
                busy += started.elapsed().as_secs_f64();
            }
            if open {
                // The load was given up before its commit (an error elsewhere, a cancel).
                conn.close_on_drop();
            }
            Ok((busy, loaded))
        });
        Ok(Self { sender, task })
    }

    /// Closes the writer and waits for it to send what it was given: its seconds in `COPY`
    /// and rows loaded. `sent` is false when a batch could not be handed over (the writer
    /// stopped early); its own error is the one reported.
    async fn finish(self, sent: bool) -> Result<Written, LoadError> {
        drop(self.sender);
        let written = self.task.await.map_err(|_| LoadError::WriterGone)??;
        if sent {
            Ok(written)
        } else {
            Err(LoadError::WriterGone)
        }
    }
}

/// A load being built beside the published one.
#[derive(Debug)]
pub struct Loader {
    pool: PgPool,
    conn: PoolConnection<Postgres>,
    /// Two writers on connections of their own: inode rows go to the first, path and error
    /// rows to the second, so the two tables' COPYs run at once (on two cores, the load alone
    /// takes about as long as the bigger table's COPY instead of both).
    writers: Option<[Writer; 2]>,
    id: i64,
    inodes: CopyRows,
    paths: CopyRows,
    errors: CopyRows,
    counts: LoadCounts,
    /// (volume, inode) of hard-linked files and of every entry of readers without link counts,
    /// so each inode gets one row.
    linked: HashSet<(i32, u64)>,
    dedupe_all: HashSet<i32>,
    /// Rows held to be sent in key order, until they outgrow `hold_bytes`.
    held: Option<Held>,
    hold_bytes: usize,
    /// What the index builds found duplicated and repaired.
    repaired: Repaired,
}

/// The inode number as stored: the same 64 bits, as `bigint`.
fn ino_as_bigint(ino: u64) -> i64 {
    i64::from_ne_bytes(ino.to_ne_bytes())
}

impl Loader {
    /// Drops any half-built load of the medium and creates empty tables for a new one.
    /// Rows are held until they take `hold_bytes` (see [`DEFAULT_SORT_MEMORY_MIB`]).
    pub async fn begin(
        pool: &PgPool,
        medium: MediumId,
        hold_bytes: usize,
    ) -> Result<Self, LoadError> {
        let mut conn = pool
            .acquire()
            .await
            .map_err(sql_error("connect for the load"))?;
        let id = medium.get();
        let ddl = format!(
            "drop table if exists entry_error_m{id}_next, path_m{id}_next, inode_m{id}_next;
             create table inode_m{id}_next (like inode including defaults including constraints);
             create table path_m{id}_next (like path including defaults including constraints);
             create table entry_error_m{id}_next (like entry_error including defaults including constraints);
             alter table inode_m{id}_next add constraint inode_m{id}_next_medium check (medium_id = {id});
             alter table path_m{id}_next add constraint path_m{id}_next_medium check (medium_id = {id});
             alter table entry_error_m{id}_next add constraint entry_error_m{id}_next_medium check (medium_id = {id});
             create index on inode_m{id}_next (medium_id, error_class) where state = 'failed';
             create index on inode_m{id}_next (blob_id) where blob_id is not null;
             create index on inode_m{id}_next (medium_id, volume_no) where damaged_ranges is not null;
             create index on entry_error_m{id}_next (medium_id, volume_no, path);"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&mut *conn)
            .await
            .map_err(sql_error("create the tables of a new load"))?;
        let writers = [Writer::start(pool).await?, Writer::start(pool).await?];
        Ok(Self {
            pool: pool.clone(),
            conn,
            writers: Some(writers),
            id,
            inodes: CopyRows::default(),
            paths: CopyRows::default(),
            errors: CopyRows::default(),
            counts: LoadCounts::default(),
            linked: HashSet::new(),
            dedupe_all: HashSet::new(),
            held: Some(Held::default()),
            hold_bytes,
            repaired: Repaired::default(),
        })
    }

    /// Treats every entry of this volume as a possible hard link (readers that report no link
    /// counts, such as The Sleuth Kit, where one inode can also have several names or streams).
    pub fn dedupe_every_inode_of(&mut self, volume_no: i32) {
        self.dedupe_all.insert(volume_no);
    }

    /// Adds one walked entry: a path row, and an inode row unless the inode has one already.
    pub fn add_entry(
        &mut self,
        volume_no: i32,
        entry: &Entry,
        excluded: Option<&str>,
    ) -> Result<(), LoadError> {
        let out_of_range = |what, value| LoadError::OutOfRange {
            what,
            value,
            path: String::from_utf8_lossy(&entry.path).into_owned(),
        };
        let ino = ino_as_bigint(entry.ino);
        self.paths.row(6).int8(self.id).int4(volume_no);
        let path_start = self.paths.len() + 4;
        self.paths
            .bytea(&entry.path)
            .int8(ino)
            .opt_text(excluded)
            .int8(crate::name_glob::name_hash(crate::name_glob::name_of(
                &entry.path,
            )));
        if let Some(held) = &mut self.held {
            let (start, len) = self.paths.last_row();
            held.paths.push(HeldRow {
                key: (volume_no, path_start, entry.path.len()),
                start,
                len,
            });
        }
        self.counts.entries += 1;
        if excluded.is_some() {
            self.counts.excluded += 1;
        }
        let shared = (entry.nlink > 1 && entry.kind != EntryKind::Dir)
            || self.dedupe_all.contains(&volume_no);
        if shared && !self.linked.insert((volume_no, entry.ino)) {
            return Ok(());
        }
        let size = i64::try_from(entry.size).map_err(|_| out_of_range("size", entry.size))?;
        let nlink = i64::try_from(entry.nlink).map_err(|_| out_of_range("nlink", entry.nlink))?;
        let mode = i32::try_from(entry.mode & 0o7777).unwrap_or(0);
        let state = if entry.kind == EntryKind::File {
            "pending"
        } else {
            "not_a_file"
        };
        self.inodes
            .row(16)
            .int8(self.id)
            .int4(volume_no)
            .int8(ino)
            .text(kind_label(entry.kind))
            .int4(mode)
            .int8(i64::try_from(entry.uid).map_err(|_| out_of_range("uid", entry.uid))?)
            .int8(i64::try_from(entry.gid).map_err(|_| out_of_range("gid", entry.gid))?)
            .int8(nlink)
            .int8(size)
            .opt_int8(entry.rdev.map(ino_as_bigint))
            .opt_int8(entry.mtime_ns)
            .opt_int8(entry.ctime_ns)
            .opt_int8(entry.atime_ns)
            .opt_int8(entry.birth_ns)
            .opt_bytea(entry.target.as_deref())
            .text(state);
        if let Some(held) = &mut self.held {
            let (start, len) = self.inodes.last_row();
            held.inodes.push(HeldRow {
                key: (ino, volume_no),
                start,
                len,
            });
        }
        self.counts.inodes += 1;
        Ok(())
    }

    /// Records an entry or directory that could not be read.
    pub fn add_error(&mut self, volume_no: i32, path: &[u8], error: &std::io::Error) {
        let message = error.to_string();
        self.errors
            .row(5)
            .int8(self.id)
            .int4(volume_no)
            .bytea(path)
            .opt_int4(error.raw_os_error())
            .text(if message.is_empty() {
                "unreadable"
            } else {
                &message
            });
        self.counts.errors += 1;
    }

    /// Whether enough rows are held to send them.
    pub fn wants_flush(&self) -> bool {
        match &self.held {
            Some(held) => {
                held.bytes() + self.inodes.len() + self.paths.len() + self.errors.len()
                    > self.hold_bytes
            }
            None => {
                self.inodes.len() >= FLUSH_BYTES
                    || self.paths.len() >= FLUSH_BYTES
                    || self.errors.len() >= FLUSH_BYTES
            }
        }
    }

    /// What the load holds so far.
    pub fn counts(&self) -> LoadCounts {
        self.counts
    }

    /// Hands the held rows to the writers (one `COPY` per table and batch); waits only when a
    /// writer is two batches behind, so walking and sending overlap.
    pub async fn flush(&mut self) -> Result<(), LoadError> {
        if self.held.is_some() && !self.wants_flush() {
            return Ok(());
        }
        // Rows held outgrew their memory: send them in the order walked, the rest as they come.
        let held = self.held.take();
        if held.is_some() {
            tracing::debug!(
                entries = self.counts.entries,
                "the load outgrew its memory for sorting; sending rows as walked"
            );
        }
        self.send_streamed(held).await
    }

    /// Hands the rows held to the writers (inode rows to the first, path and error rows to the
    /// second): in the order of `held`'s places, in batches, or each table as one batch.
    async fn send_streamed(&mut self, held: Option<Held>) -> Result<(), LoadError> {
        let id = self.id;
        let inodes = std::mem::take(&mut self.inodes);
        let paths = std::mem::take(&mut self.paths);
        let errors = std::mem::take(&mut self.errors);
        let Some(writers) = &self.writers else {
            return Err(LoadError::WriterGone);
        };
        let (inode_places, path_places) = held.map(Held::places).unzip();
        let (to_inodes, to_paths) = (&writers[0].sender, &writers[1].sender);
        let (inodes_sent, paths_sent) = tokio::join!(
            send_rows(to_inodes, 0, id, inodes, inode_places, false),
            async {
                send_rows(to_paths, 1, id, paths, path_places, false).await
                    && send_rows(to_paths, 2, id, errors, None, false).await
            },
        );
        if inodes_sent && paths_sent {
            return Ok(());
        }
        // A writer stopped on an error: report that error.
        let mut first_error = None;
        for writer in self.writers.take().into_iter().flatten() {
            if let Err(error) = writer.finish(true).await {
                first_error.get_or_insert(error);
            }
        }
        Err(first_error.unwrap_or(LoadError::WriterGone))
    }

    /// Sends the rest, indexes and checks the new tables, and publishes them: one transaction
    /// drops the old load (only when `replace`) and attaches the new one.
    pub async fn publish(
        mut self,
        medium_name: &str,
        replace: bool,
    ) -> Result<LoadCounts, LoadError> {
        let started = std::time::Instant::now();
        if self.writers.is_some() {
            self.load_and_index(true).await?;
        } else {
            // Everything was sent already ([`Loader::send_all`]).
            let (inode, path) = tokio::join!(
                run_lanes(&self.pool, inode_lanes(self.id)),
                run_lanes(&self.pool, path_lanes(self.id)),
            );
            self.repaired.merge(inode?);
            self.repaired.merge(path?);
        }
        self.finish_build().await?;
        let mut counts = self.swap(medium_name, replace).await?;
        counts.publish_seconds = started.elapsed().as_secs_f64();
        Ok(counts)
    }

    /// Sends every row and waits until PostgreSQL has them all, without indexing (which
    /// [`Loader::publish`] then does): for measuring the load alone (`examples/loader.rs`).
    pub async fn send_all(&mut self) -> Result<(), LoadError> {
        self.load_and_index(false).await
    }

    /// Sends what is held (sorted into key order first, unless the load outgrew the sort
    /// memory), and with `index`, indexes each table as soon as its own rows are in: the path
    /// table's `COPY` is the shorter, so its index builds run while the inode rows are still
    /// loading. Every row walked must have been loaded ([`LoadError::Mismatch`] otherwise).
    async fn load_and_index(&mut self, index: bool) -> Result<(), LoadError> {
        let Some([inode_writer, path_writer]) = self.writers.take() else {
            return Err(LoadError::WriterGone);
        };
        let inodes = std::mem::take(&mut self.inodes);
        let paths = std::mem::take(&mut self.paths);
        let errors = std::mem::take(&mut self.errors);
        // Held rows go in one transaction per table that first empties the table (it is empty:
        // nothing was sent yet), so that PostgreSQL writes them frozen and never looks for room
        // in pages already written: the table then holds them in the order sent, which the
        // index builds find sorted. (Rows a later transaction adds go wherever there is room,
        // and each reader of unfrozen rows checks their transaction and sets hint bits.)
        let frozen = self.held.is_some();
        let (inode_order, path_order) = match self.held.take() {
            Some(held) => (Some(held.inodes), Some(held.paths)),
            None => (None, None),
        };
        let (id, walked, pool) = (self.id, self.counts, &self.pool);
        // The inode side goes first: its COPY is the longer, and its first batches are queued
        // before the path side sorts its rows (on this thread, while the writer works).
        let inode_side = async move {
            let sorting = std::time::Instant::now();
            let inode_order = inode_order.map(sort_inodes);
            let sort_seconds = sorting.elapsed().as_secs_f64();
            let sent = in_transaction(
                &inode_writer.sender,
                frozen.then(|| format!("truncate inode_m{id}_next")),
                send_rows(&inode_writer.sender, 0, id, inodes, inode_order, frozen),
            )
            .await;
            let (seconds, loaded) = inode_writer.finish(sent).await?;
            reconcile(0, walked.inodes, loaded)?;
            let repaired = if index {
                run_lanes(pool, inode_lanes(id)).await?
            } else {
                Repaired::default()
            };
            Ok::<_, LoadError>((seconds, sort_seconds, repaired))
        };
        let path_side = async move {
            // Let the inode side queue its first batches.
            tokio::task::yield_now().await;
            let sorting = std::time::Instant::now();
            let path_order = path_order.map(|rows| sort_paths(&paths.buf, rows));
            let sort_seconds = sorting.elapsed().as_secs_f64();
            let rows = async {
                send_rows(&path_writer.sender, 1, id, paths, path_order, frozen).await
                    && send_rows(&path_writer.sender, 2, id, errors, None, frozen).await
            };
            let sent = in_transaction(
                &path_writer.sender,
                frozen.then(|| format!("truncate path_m{id}_next, entry_error_m{id}_next")),
                rows,
            )
            .await;
            let (seconds, loaded) = path_writer.finish(sent).await?;
            reconcile(1, walked.entries, loaded)?;
            reconcile(2, walked.errors, loaded)?;
            let repaired = if index {
                run_lanes(pool, path_lanes(id)).await?
            } else {
                Repaired::default()
            };
            Ok::<_, LoadError>((seconds, sort_seconds, repaired))
        };
        // Both sides run to their end, also when one fails: a connection is never dropped in
        // the middle of a statement.
        let (inode_side, path_side) = tokio::join!(inode_side, path_side);
        let ((inode_copy, inode_sort, inode_repaired), (path_copy, path_sort, path_repaired)) =
            (inode_side?, path_side?);
        self.repaired.merge(inode_repaired);
        self.repaired.merge(path_repaired);
        self.counts.copy_seconds += inode_copy.max(path_copy);
        self.counts.sort_seconds = inode_sort + path_sort;
        Ok(())
    }

    /// The checks that need both tables, and the exclusions; on the load's own connection.
    async fn finish_build(&mut self) -> Result<(), LoadError> {
        let id = self.id;
        let conn = &mut *self.conn;
        let mut steps = vec![
            build_settings(),
            // NOT VALID: enforced for every later write, but the rows just loaded are not
            // re-checked (a full join, a third of the build time): the loader wrote each path's
            // inode row before or with it, and the primary keys already caught any duplicate.
            // `ntt verify` validates it (`alter table ... validate constraint`).
            format!(
                "alter table path_m{id}_next add constraint path_m{id}_inode_fkey foreign key (medium_id, volume_no, ino)
                 references inode_m{id}_next (medium_id, volume_no, ino) on delete cascade not valid"
            ),
            format!("analyze entry_error_m{id}_next"),
        ];
        if self.counts.excluded > 0 {
            steps.push(super::states::exclusion_update(
                id,
                &format!("inode_m{id}_next"),
                &format!("path_m{id}_next"),
            ));
            steps.push(format!("analyze inode_m{id}_next {INODE_STATISTICS}"));
        }
        steps.push(BUILD_RESET.to_owned());
        run_steps(conn, &steps).await?;
        self.counts.errors += self.repaired.errors;
        self.counts.inodes = self.counts.inodes.saturating_sub(self.repaired.merged);
        if !self.repaired.inodes.is_empty() {
            let (volumes, inodes): (Vec<i32>, Vec<i64>) = std::mem::take(&mut self.repaired.inodes)
                .into_iter()
                .unzip();
            let noted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "insert into entry_error_m{id}_next (medium_id, volume_no, path, errno, message)
                 select {id}, p.volume_no, p.path, null,
                        format('inode %s was walked under %s names but its link count is %s: its metadata is loaded once',
                               p.ino, count(*) over (partition by p.volume_no, p.ino), i.nlink)
                   from unnest($1::int[], $2::bigint[]) as d (volume_no, ino)
                   join path_m{id}_next p on p.volume_no = d.volume_no and p.ino = d.ino
                   join inode_m{id}_next i on i.volume_no = d.volume_no and i.ino = d.ino"
            )))
            .bind(volumes)
            .bind(inodes)
            .execute(&mut *conn)
            .await
            .map_err(sql_error("note inodes walked more than once"))?;
            self.counts.errors += noted.rows_affected();
        }
        Ok(())
    }

    /// Drops the old load (only when `replace`) and attaches the new one, in one transaction.
    async fn swap(mut self, medium_name: &str, replace: bool) -> Result<LoadCounts, LoadError> {
        let id = self.id;
        let conn = &mut *self.conn;
        let mut transaction = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(sql_error("begin the swap"))?;
        sqlx::raw_sql("set local lock_timeout = '60s'")
            .execute(&mut *transaction)
            .await
            .map_err(sql_error("set the lock timeout"))?;
        let (enumerated, entries): (Option<chrono::DateTime<chrono::Utc>>, Option<i64>) =
            sqlx::query_as(
                "select enumerated_at, entries_walked from medium where id = $1 for update",
            )
            .bind(id)
            .fetch_one(&mut *transaction)
            .await
            .map_err(sql_error("lock the medium"))?;
        if enumerated.is_some() && !replace {
            return Err(LoadError::AlreadyLoaded {
                medium: medium_name.to_owned(),
                entries: entries.unwrap_or(0),
            });
        }
        if enumerated.is_none() {
            // Partitions made ahead of a load (ensure_medium_partitions) hold nothing; a load
            // that is not recorded as published must not be dropped silently.
            let rows: i64 = sqlx::query_scalar(
                "select (select count(*) from inode where medium_id = $1)
                      + (select count(*) from path where medium_id = $1)",
            )
            .bind(id)
            .fetch_one(&mut *transaction)
            .await
            .map_err(sql_error("check for an unpublished load"))?;
            if rows > 0 {
                return Err(LoadError::AlreadyLoaded {
                    medium: medium_name.to_owned(),
                    entries: rows,
                });
            }
        }
        // The names of the old load: the new one's are indexed after publish
        // ([`super::names::index_names`]); until then the medium is searched by its paths.
        // The contents of the old load: the new one's inodes hold no blob until copied.
        let swap = format!(
            "delete from file_name_medium where medium_id = {id};
             delete from blob_medium where medium_id = {id};
             drop table if exists entry_error_m{id}, copy_error_m{id}, path_m{id}, inode_m{id};
             alter table inode_m{id}_next rename to inode_m{id};
             alter table path_m{id}_next rename to path_m{id};
             alter table entry_error_m{id}_next rename to entry_error_m{id};
             alter table inode_m{id} rename constraint inode_m{id}_next_pkey to inode_m{id}_pkey;
             alter table path_m{id} rename constraint path_m{id}_next_pkey to path_m{id}_pkey;
             alter table inode attach partition inode_m{id} for values in ({id});
             alter table path attach partition path_m{id} for values in ({id});
             alter table entry_error attach partition entry_error_m{id} for values in ({id});
             alter table inode_m{id} drop constraint inode_m{id}_next_medium;
             alter table path_m{id} drop constraint path_m{id}_next_medium;
             alter table entry_error_m{id} drop constraint entry_error_m{id}_next_medium;
             select ensure_medium_partitions({id});"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(swap))
            .execute(&mut *transaction)
            .await
            .map_err(sql_error("publish the new load"))?;
        let counts = self.counts;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "update medium set enumerated_at = now(), entries_walked = $2, inodes_loaded = $3,
                               paths_excluded = $4, entry_errors = $5, names_indexed_at = null
             where id = $1",
        )
        .bind(id)
        .bind(as_i64(counts.entries))
        .bind(as_i64(counts.inodes))
        .bind(as_i64(counts.excluded))
        .bind(as_i64(counts.errors))
        .execute(&mut *transaction)
        .await
        .map_err(sql_error("record the load"))?;
        transaction
            .commit()
            .await
            .map_err(sql_error("commit the swap"))?;
        Ok(counts)
    }
}

/// One `COPY` of a binary payload; the rows it loaded.
async fn copy_batch(
    conn: &mut PoolConnection<Postgres>,
    statement: &str,
    payload: &[u8],
) -> Result<u64, CatalogError> {
    let mut copy = conn
        .copy_in_raw(statement)
        .await
        .map_err(sql_error("start a COPY"))?;
    // In messages of 64 KiB, like psql's: the server reads each message whole into a buffer of
    // the statement's, which a 4 MiB message made grow (and copy itself) anew for every batch.
    for message in payload.chunks(COPY_MESSAGE_BYTES) {
        if let Err(error) = copy.send(message).await {
            let _ = copy.abort("send failed").await;
            return Err(sql_error("send COPY rows")(error));
        }
    }
    copy.finish().await.map_err(sql_error("finish a COPY"))
}

/// Sends `rows` as `COPY` batches of [`TABLES`]`[table]`: in the order of `places` (start and
/// length of each row), in batches of [`FLUSH_BYTES`], or all in one batch without them.
/// False when the writer is gone (it stopped on an error, which its task reports).
async fn send_rows(
    sender: &tokio::sync::mpsc::Sender<Job>,
    table: usize,
    id: i64,
    mut rows: CopyRows,
    places: Option<Vec<Place>>,
    frozen: bool,
) -> bool {
    let statement = copy_statement(table, id, frozen);
    let job = |payload| Job::Copy {
        table,
        statement: statement.clone(),
        payload,
    };
    let Some(places) = places else {
        return rows.is_empty() || sender.send(job(rows.take_payload())).await.is_ok();
    };
    let mut batch = CopyRows::default();
    for (start, len) in places {
        batch.raw_row(&rows.buf[start..][..len]);
        if batch.len() >= FLUSH_BYTES && sender.send(job(batch.take_payload())).await.is_err() {
            return false;
        }
    }
    batch.is_empty() || sender.send(job(batch.take_payload())).await.is_ok()
}

/// Sends `rows` in a transaction that begins with `begin` (when given).
async fn in_transaction(
    sender: &tokio::sync::mpsc::Sender<Job>,
    begin: Option<String>,
    rows: impl std::future::Future<Output = bool>,
) -> bool {
    let Some(begin) = begin else {
        return rows.await;
    };
    sender.send(Job::Begin(begin)).await.is_ok()
        && rows.await
        && sender.send(Job::Commit).await.is_ok()
}

/// Checks that PostgreSQL took every row walked into [`TABLES`]`[table]`.
fn reconcile(table: usize, walked: u64, loaded: Loaded) -> Result<(), LoadError> {
    if walked == loaded[table] {
        return Ok(());
    }
    Err(LoadError::Mismatch {
        table: TABLES[table],
        walked,
        loaded: loaded[table],
    })
}

/// The entries of the medium's published load, or `None` when it has none.
pub async fn published_entries(pool: &PgPool, medium: MediumId) -> Result<Option<i64>, LoadError> {
    let row: Option<(Option<chrono::DateTime<chrono::Utc>>, Option<i64>)> =
        sqlx::query_as("select enumerated_at, entries_walked from medium where id = $1")
            .bind(medium.get())
            .fetch_optional(pool)
            .await
            .map_err(sql_error("look up the medium's load"))?;
    Ok(match row {
        Some((Some(_), entries)) => Some(entries.unwrap_or(0)),
        _ => None,
    })
}

/// The catalog's `entry_kind` label.
pub const fn kind_label(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Block => "block",
        EntryKind::Char => "char",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_keep_all_64_bits() {
        assert_eq!(ino_as_bigint(5), 5);
        assert_eq!(ino_as_bigint(u64::MAX), -1);
        assert_eq!(
            u64::from_ne_bytes(ino_as_bigint(1 << 63).to_ne_bytes()),
            1 << 63
        );
    }
}
