//! The build lanes of a load (index and check steps, one connection each) and the repair of
//! duplicate keys a damaged or crafted filesystem makes.

use sqlx::PgPool;

use super::statements::{
    BUILD_RESET, INODE_STATISTICS, NO_DEDUP, PATH_STATISTICS, build_settings, run_steps,
};
use super::{LoadError, sql_error};
use crate::catalog::CatalogError;

/// One connection's steps, in order; `repair` runs when the first step (a key's unique index)
/// finds duplicate keys, and the step is then tried once more.
pub(super) struct Lane {
    pub(super) steps: Vec<String>,
    pub(super) repair: Option<Repair>,
}

impl Lane {
    pub(super) fn plain(steps: Vec<String>) -> Self {
        Self {
            steps,
            repair: None,
        }
    }
}

/// How a key's duplicates are made unique, each a problem of its entries (never a failed load).
#[derive(Debug, Clone, Copy)]
pub(super) enum Repair {
    /// One inode walked under several names without a link count that says so (a damaged or
    /// crafted filesystem: `debugfs ln`): one row stays; the paths are noted by
    /// [`super::Loader::finish_build`], once both tables are complete.
    Inodes(i64),
    /// Two entries with one name in one directory (a damaged or crafted directory): the first
    /// keeps the name, each other one is listed under the name, a NUL byte (which no name can
    /// hold) and `duplicate N`, and an entry error with the exact name says so.
    Paths(i64),
}

/// What the repairs changed: inodes loaded more than once (volume, inode), the surplus rows
/// removed, and entry errors added.
#[derive(Debug, Default)]
pub(super) struct Repaired {
    pub(super) inodes: Vec<(i32, i64)>,
    pub(super) merged: u64,
    pub(super) errors: u64,
}

impl Repaired {
    pub(super) fn merge(&mut self, other: Self) {
        self.inodes.extend(other.inodes);
        self.merged += other.merged;
        self.errors += other.errors;
    }
}

impl Repair {
    pub(super) async fn run(self, conn: &mut sqlx::PgConnection) -> Result<Repaired, LoadError> {
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
pub(super) fn inode_lanes(id: i64) -> Vec<Lane> {
    let key_lane = vec![
        format!(
            "create unique index inode_m{id}_next_pkey on inode_m{id}_next (ino, volume_no, medium_id)"
        ),
        format!(
            "alter table inode_m{id}_next add constraint inode_m{id}_next_pkey primary key using index inode_m{id}_next_pkey"
        ),
        // Before the foreign keys: with statistics (no blob yet), checking the blob key reads
        // the empty partial index of blob ids instead of every row (40 ms). A load with
        // exclusions is analysed again once they are marked ([`super::Loader::finish_build`]).
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

/// The path table's: the key, and the path -> inode and name indexes then the statistics.
pub(super) fn path_lanes(id: i64) -> Vec<Lane> {
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
            // The name search's: the paths of a medium with given names.
            format!("create index on path_m{id}_next (name_id)"),
            format!("analyze path_m{id}_next {PATH_STATISTICS}"),
        ]),
    ]
}

/// Runs each lane's steps on a connection of its own, all lanes at once; what the repairs
/// changed.
pub(super) async fn run_lanes(pool: &PgPool, lanes: Vec<Lane>) -> Result<Repaired, LoadError> {
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
pub(super) fn is_unique_violation(error: &LoadError) -> bool {
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
