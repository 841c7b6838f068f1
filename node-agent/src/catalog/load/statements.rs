//! The SQL of a load: its `COPY` statements, build session settings and statistics targets.

use std::time::Duration;

use super::{LoadError, sql_error};

/// Statement timeout for the index builds and checks of a big load.
pub(super) const BUILD_TIMEOUT: Duration = Duration::from_mins(30);

/// Storage option of the two non-unique indexes a load builds. Their keys repeat only for hard
/// links (the path→inode index) or never (the claim index), so merging duplicates into posting
/// lists saves no space, but the build compares every key with the one before it to look for
/// them (`_bt_keep_natts_fast`, 3 % of a load's CPU). Attaching the partition reuses the
/// indexes all the same: PostgreSQL matches them by columns and predicate, not storage options.
pub(super) const NO_DEDUP: &str = "with (deduplicate_items = off)";

/// The inode columns the catalog's queries filter, join or group on: statistics of the others
/// (times, mode, owner, target) only cost time at publish (about half of ANALYZE).
/// Autovacuum's later analyze still covers every column.
pub(super) const INODE_STATISTICS: &str = "(medium_id, volume_no, ino, kind, state, size, blob_id, lease_until, error_class, attempts, damaged_ranges)";
/// The path columns likewise; `path` itself stays, for the planner's prefix-range estimates.
pub(super) const PATH_STATISTICS: &str =
    "(medium_id, volume_no, ino, path, excluded_reason, name_id)";

/// Rows ANALYZE samples per column at publish: 300 times this. The planner's choices on a fresh
/// load (every file pending, a handful of kinds) need no finer statistics, and the default
/// (100: 30 000 rows, histograms of 100 buckets over paths) cost five times as much CPU, a
/// quarter of the publish time on 2 cores. Autovacuum analyses again with the server's target
/// once copying has changed a tenth of the rows.
pub(super) const PUBLISH_STATISTICS_TARGET: u32 = 10;

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
pub(super) fn build_settings() -> String {
    format!(
        "set statement_timeout = {}; set default_statistics_target = {PUBLISH_STATISTICS_TARGET};
         set synchronous_commit = off; set max_parallel_maintenance_workers = 0;
         set synchronize_seqscans = off; set max_parallel_workers_per_gather = 0",
        BUILD_TIMEOUT.as_millis()
    )
}

/// Undoes [`build_settings`] before the swap and before a connection goes back to the pool.
pub(super) const BUILD_RESET: &str =
    "reset statement_timeout; reset default_statistics_target; reset synchronous_commit;
     reset max_parallel_maintenance_workers; reset synchronize_seqscans;
     reset max_parallel_workers_per_gather";

/// The `COPY` statement of [`super::TABLES`]`[table]` of the load of medium `id`; `frozen` in the
/// transaction that emptied the table.
pub(super) fn copy_statement(table: usize, id: i64, frozen: bool) -> String {
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
            "copy path_m{id}_next (medium_id, volume_no, path, ino, excluded_reason, name_id)
             from stdin ({options})"
        ),
        _ => format!(
            "copy entry_error_m{id}_next (medium_id, volume_no, path, errno, message)
             from stdin ({options})"
        ),
    }
}

/// Runs DDL steps one after the other, logging how long each took.
pub(super) async fn run_steps(
    conn: &mut sqlx::PgConnection,
    steps: &[String],
) -> Result<(), LoadError> {
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
