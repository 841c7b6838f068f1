//! Claims and leases of the copy stage: which pending inode a worker gets, and when another run
//! may take it over. Pure SQL against a real PostgreSQL; the copying suite (root tier) proves
//! the same rules end to end with killed copy processes.

use std::collections::BTreeSet;
use std::time::Duration;

use ntt_agent::catalog::copying::{self, ErrorClass, Outcome, RetryPolicy};
use ntt_agent::catalog::media::MediumId;
use ntt_agent::catalog::partitions::ensure_medium_partitions;
use ntt_tests::{add_file, add_volume, medium};
use sqlx::PgPool;

const HASH: &str = "c1a1c1a1000000000000000000000001";
const LEASE: Duration = Duration::from_mins(15);

/// A medium of `files` pending 5-byte files on volume 0 (inodes 1..=files).
async fn medium_of(pool: &PgPool, files: i64) -> MediumId {
    let id = medium(pool, HASH, "leased").await;
    ensure_medium_partitions(pool, id).await.unwrap();
    add_volume(pool, id, 0).await;
    for ino in 1..=files {
        add_file(pool, id, 0, ino, format!("f{ino}").as_bytes()).await;
    }
    id
}

async fn claim(pool: &PgPool, medium: MediumId, worker: &str, max: i64) -> Vec<i64> {
    copying::claim(pool, medium, worker, max, i64::MAX, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|c| c.ino)
        .collect()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_dead_runs_leases_are_free_at_once_and_a_live_runs_are_not(pool: PgPool) {
    let medium = medium_of(&pool, 20).await;
    let first = copying::begin_run(&pool, "dock-1:100:a").await.unwrap();
    assert_eq!(claim(&pool, medium, "dock-1:100:a/0", 1000).await.len(), 20);
    let second = copying::begin_run(&pool, "dock-2:200:b").await.unwrap();
    assert!(
        claim(&pool, medium, "dock-2:200:b/0", 1000)
            .await
            .is_empty(),
        "a live run's leases are not taken"
    );
    let pending = copying::pending(&pool, medium).await.unwrap();
    assert_eq!((pending.total, pending.held), (20, 20));
    // The first run's session ends without a word, as a killed process's does.
    drop(first);
    let started = std::time::Instant::now();
    let again = loop {
        let again = claim(&pool, medium, "dock-2:200:b/0", 1000).await;
        if !again.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break again;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again.len(), 20, "taken over at once, not after 15 minutes");
    let pending = copying::pending(&pool, medium).await.unwrap();
    assert_eq!(
        (pending.total, pending.held),
        (20, 20),
        "now held by the second"
    );
    second.end().await.unwrap();
    let pending = copying::pending(&pool, medium).await.unwrap();
    assert_eq!(pending.held, 0, "an ended run holds nothing");
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn concurrent_workers_never_claim_an_inode_twice(pool: PgPool) {
    let medium = medium_of(&pool, 300).await;
    // Three: each run holds a connection of the test pool, and the claims need some too.
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let run = copying::begin_run(&pool, &format!("dock-1:{w}:t"))
                    .await
                    .unwrap();
                let mut mine = Vec::new();
                loop {
                    let batch = claim(&pool, medium, &format!("{}/0", run.name()), 7).await;
                    if batch.is_empty() {
                        break;
                    }
                    mine.extend(batch);
                }
                (run, mine)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut runs = Vec::new();
    for worker in workers {
        let (run, mine) = worker.await.unwrap();
        all.extend(mine);
        runs.push(run);
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 300, "every inode claimed exactly once");
    assert_eq!(distinct, (1..=300).collect());
    for run in runs {
        run.end().await.unwrap();
    }
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_batch_stops_at_its_byte_budget_and_a_big_file_goes_alone(pool: PgPool) {
    let medium = medium_of(&pool, 6).await;
    sqlx::query("update inode set size = 1000 where medium_id = $1 and ino = 1")
        .bind(medium.get())
        .execute(&pool)
        .await
        .unwrap();
    let run = copying::begin_run(&pool, "dock-1:1:t").await.unwrap();
    let worker = "dock-1:1:t/0";
    let budget = |pool: &PgPool| {
        let pool = pool.clone();
        async move {
            copying::claim(&pool, medium, worker, 100, 12, LEASE)
                .await
                .unwrap()
                .iter()
                .map(|c| c.ino)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(budget(&pool).await, [1], "over the budget alone, but taken");
    assert_eq!(
        budget(&pool).await,
        [2, 3],
        "5 + 5 fit in 12, a third does not"
    );
    assert_eq!(budget(&pool).await, [4, 5]);
    assert_eq!(budget(&pool).await, [6]);
    assert!(budget(&pool).await.is_empty());
    run.end().await.unwrap();
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_transient_failure_waits_out_its_backoff_even_when_its_run_dies(pool: PgPool) {
    let medium = medium_of(&pool, 3).await;
    let policy = RetryPolicy {
        max_attempts: 3,
        backoff: Duration::from_hours(1),
        history: 5,
    };
    let first = copying::begin_run(&pool, "dock-1:1:a").await.unwrap();
    let worker = "dock-1:1:a/0";
    assert_eq!(claim(&pool, medium, worker, 1).await, [1]);
    let failed = Outcome::Failed {
        class: ErrorClass::Io,
        message: "read error at sector 2048".to_owned(),
        permanent: false,
    };
    let recorded = copying::record(&pool, medium, worker, &[(0, 1, failed)], policy)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    let pending = copying::pending(&pool, medium).await.unwrap();
    assert_eq!((pending.total, pending.retrying), (3, 1));
    drop(first);
    let second = copying::begin_run(&pool, "dock-2:2:b").await.unwrap();
    let taken = claim(&pool, medium, "dock-2:2:b/0", 100).await;
    assert_eq!(
        taken,
        [2, 3],
        "the failed inode waits for its retry, whoever failed it"
    );
    assert!(
        copying::next_retry(&pool, medium).await.unwrap().is_some(),
        "its retry is scheduled"
    );
    // The backoff runs out: the next claim takes it, its attempt counted.
    sqlx::query("update inode set lease_until = now() - interval '1 second' where medium_id = $1 and ino = 1")
        .bind(medium.get())
        .execute(&pool)
        .await
        .unwrap();
    let retried = copying::claim(&pool, medium, "dock-2:2:b/0", 100, i64::MAX, LEASE)
        .await
        .unwrap();
    assert_eq!(
        retried
            .iter()
            .map(|c| (c.ino, c.attempts))
            .collect::<Vec<_>>(),
        [(1, 1)]
    );
    second.end().await.unwrap();
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn released_leases_are_taken_at_once_by_a_live_run(pool: PgPool) {
    let medium = medium_of(&pool, 4).await;
    let first = copying::begin_run(&pool, "dock-1:1:a").await.unwrap();
    assert_eq!(claim(&pool, medium, "dock-1:1:a/0", 100).await.len(), 4);
    let second = copying::begin_run(&pool, "dock-2:2:b").await.unwrap();
    assert!(claim(&pool, medium, "dock-2:2:b/0", 100).await.is_empty());
    copying::release_leases(&pool, medium, "dock-1:1:a/0")
        .await
        .unwrap();
    assert_eq!(
        claim(&pool, medium, "dock-2:2:b/0", 100).await,
        [1, 2, 3, 4],
        "given back while the first run lives"
    );
    first.end().await.unwrap();
    second.end().await.unwrap();
}
