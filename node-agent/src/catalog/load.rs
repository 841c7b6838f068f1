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

use std::collections::HashSet;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::CatalogError;
use super::entry::{Entry, EntryKind};
use super::media::MediumId;

/// The binary `COPY` header: signature, flags, length of the header extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows of one table in PostgreSQL's binary `COPY` format, behind the format's header.
#[derive(Debug, Default)]
pub struct CopyRows {
    buf: Vec<u8>,
    rows: u64,
    /// Where the last row started.
    last_row: usize,
}

impl CopyRows {
    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.start_row();
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn start_row(&mut self) {
        if self.buf.is_empty() {
            // Room for a whole batch at once: growing by doubling copied every batch's bytes
            // again and touched fresh pages each time.
            self.buf.reserve(FLUSH_BYTES + (64 << 10));
            self.buf.extend_from_slice(COPY_HEADER);
        }
        self.rows += 1;
        self.last_row = self.buf.len();
    }

    /// Appends a row another `CopyRows` encoded.
    fn raw_row(&mut self, row: &[u8]) {
        self.start_row();
        self.buf.extend_from_slice(row);
    }

    /// Where the last row lies: its start and length.
    fn last_row(&self) -> (usize, usize) {
        (self.last_row, self.buf.len() - self.last_row)
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A SQL NULL.
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// An `integer`.
    pub fn int4(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    /// A `bigint`.
    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    /// A nullable `bigint`.
    pub fn opt_int8(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int8(value),
            None => self.null(),
        }
    }

    /// A nullable `integer`.
    pub fn opt_int4(&mut self, value: Option<i32>) -> &mut Self {
        match value {
            Some(value) => self.int4(value),
            None => self.null(),
        }
    }

    /// A `bytea`: the exact bytes.
    pub fn bytea(&mut self, value: &[u8]) -> &mut Self {
        self.field(value)
    }

    /// A nullable `bytea`.
    pub fn opt_bytea(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(value) => self.field(value),
            None => self.null(),
        }
    }

    /// A `text` or an enum label (both travel as UTF-8 text in binary `COPY`).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    /// A nullable `text`.
    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// Rows held.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The complete `COPY ... (FORMAT binary)` payload (header, rows, trailer); empties `self`.
    pub fn take_payload(&mut self) -> Vec<u8> {
        let mut payload = std::mem::take(&mut self.buf);
        if payload.is_empty() {
            payload.extend_from_slice(COPY_HEADER);
        }
        payload.extend_from_slice(&(-1i16).to_be_bytes());
        self.rows = 0;
        self.last_row = 0;
        payload
    }
}

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

/// A held row: the key it is sent in the order of, and where it lies in its table's rows.
#[derive(Debug, Clone, Copy)]
struct HeldRow<K> {
    key: K,
    start: usize,
    len: usize,
}

/// Where a row lies in its table's rows: start and length.
type Place = (usize, usize);

/// The inode key's order: inode number (as stored, signed), then volume.
type InodeKey = (i64, i32);
/// The path key's order: volume, then the path's bytes (their start and length in the rows).
type PathKey = (i32, usize, usize);

/// The places of the rows a load holds while the walk lasts.
#[derive(Debug, Default)]
struct Held {
    inodes: Vec<HeldRow<InodeKey>>,
    paths: Vec<HeldRow<PathKey>>,
}

impl Held {
    /// Bytes the places take.
    fn bytes(&self) -> usize {
        self.inodes.len() * std::mem::size_of::<HeldRow<InodeKey>>()
            + self.paths.len() * std::mem::size_of::<HeldRow<PathKey>>()
    }

    /// Where each row lies (start, length), inode rows and path rows, in the places' order.
    fn places(self) -> (Vec<Place>, Vec<Place>) {
        (places(&self.inodes), places(&self.paths))
    }
}

/// Where each row lies (start, length).
fn places<K>(rows: &[HeldRow<K>]) -> Vec<Place> {
    rows.iter().map(|row| (row.start, row.len)).collect()
}

/// Inode rows in key order.
fn sort_inodes(mut rows: Vec<HeldRow<InodeKey>>) -> Vec<Place> {
    rows.sort_unstable_by_key(|row| row.key);
    places(&rows)
}

/// Path rows in key order: volume, then the path's bytes compared as PostgreSQL compares
/// `bytea` (bytewise, a prefix first).
fn sort_paths(paths: &[u8], mut rows: Vec<HeldRow<PathKey>>) -> Vec<Place> {
    let bytes = |(_, start, len): PathKey| &paths[start..][..len];
    rows.sort_unstable_by(|a, b| {
        a.key
            .0
            .cmp(&b.key.0)
            .then_with(|| bytes(a.key).cmp(bytes(b.key)))
    });
    places(&rows)
}

/// Statement timeout for the index builds and checks of a big load.
const BUILD_TIMEOUT: Duration = Duration::from_mins(30);

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
        self.paths.row(5).int8(self.id).int4(volume_no);
        let path_start = self.paths.len() + 4;
        self.paths.bytea(&entry.path).int8(ino).opt_text(excluded);
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
        let swap = format!(
            "drop table if exists entry_error_m{id}, copy_error_m{id}, path_m{id}, inode_m{id};
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
                               paths_excluded = $4, entry_errors = $5
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

/// One connection's steps, in order; `repair` runs when the first step (a key's unique index)
/// finds duplicate keys, and the step is then tried once more.
struct Lane {
    steps: Vec<String>,
    repair: Option<Repair>,
}

impl Lane {
    fn plain(steps: Vec<String>) -> Self {
        Self {
            steps,
            repair: None,
        }
    }
}

/// How a key's duplicates are made unique, each a problem of its entries (never a failed load).
#[derive(Debug, Clone, Copy)]
enum Repair {
    /// One inode walked under several names without a link count that says so (a damaged or
    /// crafted filesystem: `debugfs ln`): one row stays; the paths are noted by
    /// [`Loader::finish_build`], once both tables are complete.
    Inodes(i64),
    /// Two entries with one name in one directory (a damaged or crafted directory): the first
    /// keeps the name, each other one is listed under the name, a NUL byte (which no name can
    /// hold) and `duplicate N`, and an entry error with the exact name says so.
    Paths(i64),
}

/// What the repairs changed: inodes loaded more than once (volume, inode), the surplus rows
/// removed, and entry errors added.
#[derive(Debug, Default)]
struct Repaired {
    inodes: Vec<(i32, i64)>,
    merged: u64,
    errors: u64,
}

impl Repaired {
    fn merge(&mut self, other: Self) {
        self.inodes.extend(other.inodes);
        self.merged += other.merged;
        self.errors += other.errors;
    }
}

impl Repair {
    async fn run(self, conn: &mut sqlx::PgConnection) -> Result<Repaired, LoadError> {
        match self {
            Self::Inodes(id) => {
                let rows: Vec<(i32, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "with extra as (
                         delete from inode_m{id}_next i
                          using (select ctid, row_number() over (partition by volume_no, ino order by ctid) as n
                                   from inode_m{id}_next) d
                          where i.ctid = d.ctid and d.n > 1
                      returning i.volume_no, i.ino)
                     select volume_no, ino, count(*) from extra group by volume_no, ino"
                )))
                .fetch_all(&mut *conn)
                .await
                .map_err(sql_error("merge inodes walked more than once"))?;
                tracing::warn!(
                    inodes = rows.len(),
                    "inodes walked under several names without a link count that says so: loaded once each"
                );
                Ok(Repaired {
                    merged: rows.iter().map(|r| u64::try_from(r.2).unwrap_or(0)).sum(),
                    inodes: rows.into_iter().map(|(v, i, _)| (v, i)).collect(),
                    errors: 0,
                })
            }
            Self::Paths(id) => {
                let noted: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "with d as (
                         select ctid, path, row_number() over (partition by volume_no, path order by ctid) as n
                           from path_m{id}_next),
                     moved as (
                         update path_m{id}_next p
                            set path = p.path || '\\x00'::bytea || convert_to('duplicate ' || d.n, 'UTF8')
                           from d
                          where p.ctid = d.ctid and d.n > 1
                      returning p.volume_no, p.ino, d.n, d.path as name),
                     noted as (
                         insert into entry_error_m{id}_next (medium_id, volume_no, path, errno, message)
                         select {id}, volume_no, name, null,
                                format('another entry of its directory has the same name: this one (inode %s) is listed under the name, a NUL byte and ''duplicate %s''', ino, n)
                           from moved
                      returning 1)
                     select count(*) from noted"
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(sql_error("rename entries that repeat a name"))?;
                tracing::warn!(
                    entries = noted,
                    "entries repeating a name in their directory: listed under a suffixed name"
                );
                Ok(Repaired {
                    errors: u64::try_from(noted).unwrap_or(0),
                    ..Repaired::default()
                })
            }
        }
    }
}

/// The inode table's index builds, keys, checks and statistics, on two lanes: the key (then
/// the foreign keys and statistics) and the claim index.
///
/// All of it after the bulk load (building an index from sorted rows is several times cheaper
/// than maintaining it row by row during `COPY`), matching the parent's indexes so that
/// attaching reuses them instead of building again. Index builds take SHARE locks, which do
/// not conflict with each other; a step that needs more waits for the other lanes' statement on
/// that table, never for a whole lane (every step is its own transaction), so the lanes cannot
/// deadlock. Each index starts at once on a lane of its own, so the cores stay busy.
fn inode_lanes(id: i64) -> Vec<Lane> {
    let key_lane = vec![
        format!(
            "create unique index inode_m{id}_next_pkey on inode_m{id}_next (ino, volume_no, medium_id)"
        ),
        format!(
            "alter table inode_m{id}_next add constraint inode_m{id}_next_pkey primary key using index inode_m{id}_next_pkey"
        ),
        // Before the foreign keys: with statistics (no blob yet), checking the blob key reads
        // the empty partial index of blob ids instead of every row (40 ms). A load with
        // exclusions is analysed again once they are marked ([`Loader::finish_build`]).
        format!("analyze inode_m{id}_next {INODE_STATISTICS}"),
        format!(
            "alter table inode_m{id}_next add constraint inode_volume_fkey foreign key (medium_id, volume_no)
             references volume (medium_id, volume_no) on delete cascade"
        ),
        format!(
            "alter table inode_m{id}_next add constraint inode_blob_fkey foreign key (blob_id) references blob (id)"
        ),
    ];
    vec![
        Lane {
            steps: key_lane,
            repair: Some(Repair::Inodes(id)),
        },
        Lane::plain(vec![format!(
            "create index on inode_m{id}_next (ino, volume_no, medium_id) {NO_DEDUP} where state = 'pending'"
        )]),
    ]
}

/// The path table's: the key, and the path -> inode index then the statistics.
fn path_lanes(id: i64) -> Vec<Lane> {
    vec![
        Lane {
            steps: vec![
                format!(
                    "create unique index path_m{id}_next_pkey on path_m{id}_next (medium_id, volume_no, path)"
                ),
                format!(
                    "alter table path_m{id}_next add constraint path_m{id}_next_pkey primary key using index path_m{id}_next_pkey"
                ),
            ],
            repair: Some(Repair::Paths(id)),
        },
        Lane::plain(vec![
            format!("create index on path_m{id}_next (ino, volume_no, medium_id) {NO_DEDUP}"),
            format!("analyze path_m{id}_next {PATH_STATISTICS}"),
        ]),
    ]
}

/// Runs each lane's steps on a connection of its own, all lanes at once; what the repairs
/// changed.
async fn run_lanes(pool: &PgPool, lanes: Vec<Lane>) -> Result<Repaired, LoadError> {
    let runs = lanes.into_iter().map(|lane| async move {
        let mut conn = pool
            .acquire()
            .await
            .map_err(sql_error("connect an index builder"))?;
        run_steps(&mut conn, &[build_settings()]).await?;
        let mut repaired = Repaired::default();
        if let Some((first, rest)) = lane.steps.split_first() {
            match (
                run_steps(&mut conn, std::slice::from_ref(first)).await,
                lane.repair,
            ) {
                (Err(error), Some(repair)) if is_unique_violation(&error) => {
                    repaired = repair.run(&mut conn).await?;
                    run_steps(&mut conn, std::slice::from_ref(first)).await?;
                }
                (result, _) => result?,
            }
            run_steps(&mut conn, rest).await?;
        }
        run_steps(&mut conn, &[BUILD_RESET.to_owned()]).await?;
        Ok::<_, LoadError>(repaired)
    });
    let mut repaired = Repaired::default();
    for result in futures_util::future::join_all(runs).await {
        repaired.merge(result?);
    }
    Ok(repaired)
}

/// Whether a build step failed on a duplicate key (SQLSTATE 23505).
fn is_unique_violation(error: &LoadError) -> bool {
    let LoadError::Catalog(
        CatalogError::Query { source, .. } | CatalogError::Violation { source, .. },
    ) = error
    else {
        return false;
    };
    source
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "23505")
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

/// Storage option of the two non-unique indexes a load builds. Their keys repeat only for hard
/// links (the path→inode index) or never (the claim index), so merging duplicates into posting
/// lists saves no space, but the build compares every key with the one before it to look for
/// them (`_bt_keep_natts_fast`, 3 % of a load's CPU). Attaching the partition reuses the
/// indexes all the same: PostgreSQL matches them by columns and predicate, not storage options.
const NO_DEDUP: &str = "with (deduplicate_items = off)";

/// The inode columns the catalog's queries filter, join or group on: statistics of the others
/// (times, mode, owner, target) only cost time at publish (about half of ANALYZE).
/// Autovacuum's later analyze still covers every column.
const INODE_STATISTICS: &str = "(medium_id, volume_no, ino, kind, state, size, blob_id, lease_until, error_class, attempts, damaged_ranges)";
/// The path columns likewise; `path` itself stays, for the planner's prefix-range estimates.
const PATH_STATISTICS: &str = "(medium_id, volume_no, ino, path, excluded_reason)";

/// Rows ANALYZE samples per column at publish: 300 times this. The planner's choices on a fresh
/// load (every file pending, a handful of kinds) need no finer statistics, and the default
/// (100: 30 000 rows, histograms of 100 buckets over paths) cost five times as much CPU, a
/// quarter of the publish time on 2 cores. Autovacuum analyses again with the server's target
/// once copying has changed a tenth of the rows.
const PUBLISH_STATISTICS_TARGET: u32 = 10;

/// Session settings of the connections that build a load. Their commits do not wait for the
/// WAL to reach the disk (a dozen flushes of 5-40 ms each on a busy disk): a crash before the
/// swap leaves only the `_next` tables, which the next load drops, and the swap's own commit,
/// made after [`BUILD_RESET`], flushes everything written before it. No parallel workers for
/// the index builds: the four build lanes already keep both cores busy, and a parallel build
/// sorts into temporary files and merges them (PostgreSQL's CPU per load 1.59-1.69 s with
/// them, 1.46-1.54 s without: medians of 6-10 alternating runs on the 223 043-entry corpus);
/// no parallel workers for the foreign-key checks either (starting them costs more than they
/// save on a saturated machine). No synchronized scans: a build that joined another's scan of
/// the table midway would read the rows out of key order, and sort them in full.
fn build_settings() -> String {
    format!(
        "set statement_timeout = {}; set default_statistics_target = {PUBLISH_STATISTICS_TARGET};
         set synchronous_commit = off; set max_parallel_maintenance_workers = 0;
         set synchronize_seqscans = off; set max_parallel_workers_per_gather = 0",
        BUILD_TIMEOUT.as_millis()
    )
}

/// Undoes [`build_settings`] before the swap and before a connection goes back to the pool.
const BUILD_RESET: &str =
    "reset statement_timeout; reset default_statistics_target; reset synchronous_commit;
     reset max_parallel_maintenance_workers; reset synchronize_seqscans;
     reset max_parallel_workers_per_gather";

/// The `COPY` statement of [`TABLES`]`[table]` of the load of medium `id`; `frozen` in the
/// transaction that emptied the table.
fn copy_statement(table: usize, id: i64, frozen: bool) -> String {
    let options = if frozen {
        "format binary, freeze"
    } else {
        "format binary"
    };
    match table {
        0 => format!(
            "copy inode_m{id}_next (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, rdev,
                                   mtime_ns, ctime_ns, atime_ns, birth_ns, target, state)
             from stdin ({options})"
        ),
        1 => format!(
            "copy path_m{id}_next (medium_id, volume_no, path, ino, excluded_reason)
             from stdin ({options})"
        ),
        _ => format!(
            "copy entry_error_m{id}_next (medium_id, volume_no, path, errno, message)
             from stdin ({options})"
        ),
    }
}

/// Runs DDL steps one after the other, logging how long each took.
async fn run_steps(conn: &mut sqlx::PgConnection, steps: &[String]) -> Result<(), LoadError> {
    for step in steps {
        let started = std::time::Instant::now();
        sqlx::raw_sql(sqlx::AssertSqlSafe(step.clone()))
            .execute(&mut *conn)
            .await
            .map_err(sql_error("index and check the new load"))?;
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), step = %step.split_whitespace().take(8).collect::<Vec<_>>().join(" "), "load build step");
    }
    Ok(())
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
    fn binary_copy_payload_has_header_rows_and_trailer() {
        let mut rows = CopyRows::default();
        rows.row(3).int8(42).bytea(b"a\nb").null();
        assert_eq!(rows.rows(), 1);
        let payload = rows.take_payload();
        assert!(payload.starts_with(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"));
        let body = &payload[19..];
        assert_eq!(&body[..2], &3i16.to_be_bytes());
        assert_eq!(&body[2..6], &8i32.to_be_bytes());
        assert_eq!(&body[6..14], &42i64.to_be_bytes());
        assert_eq!(&body[14..18], &3i32.to_be_bytes());
        assert_eq!(&body[18..21], b"a\nb");
        assert_eq!(&body[21..25], &(-1i32).to_be_bytes());
        assert_eq!(&body[25..], &(-1i16).to_be_bytes());
        assert!(rows.is_empty(), "taking the payload empties the rows");
    }

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
