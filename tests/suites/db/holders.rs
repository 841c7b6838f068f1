//! Which media hold a content (`blob_medium`, what `ntt where` reads instead of planning over
//! every partition): written by the copier with the inodes it marks copied, emptied for a
//! medium by its next load, gone with the medium. A medium listed there that no longer holds
//! the content adds nothing to the answer: `where` reads the medium's own partitions.

use std::time::Duration;

use ntt_agent::catalog::copying::{self, Outcome, RetryPolicy};
use ntt_agent::catalog::media::{self, MediumId};
use ntt_agent::catalog::partitions::drop_medium_partitions;
use ntt_agent::catalog::search;
use ntt_crds::BlobId;
use ntt_tests::{add_volume, medium, publish};
use sqlx::PgPool;

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    backoff: Duration::from_secs(1),
    history: 5,
};

/// Copies every pending file of the medium through the copier's claim and record, each file
/// `ino` with the content `contents(ino)`.
async fn copy_all(pool: &PgPool, medium: MediumId, contents: impl Fn(i64) -> &'static [u8]) {
    let run = copying::begin_run(pool, "dock-1:1:holders").await.unwrap();
    let worker = "dock-1:1:holders/0";
    let claimed = copying::claim(pool, medium, worker, 100, i64::MAX, Duration::from_mins(15))
        .await
        .unwrap();
    assert!(!claimed.is_empty());
    let results: Vec<_> = claimed
        .iter()
        .map(|c| {
            let content = contents(c.ino);
            let outcome = Outcome::Copied {
                blob: BlobId::from_bytes(*blake3::hash(content).as_bytes()),
                size: content.len() as u64,
                mime: "text/plain".to_owned(),
            };
            (c.volume_no, c.ino, outcome)
        })
        .collect();
    let recorded = copying::record(pool, medium, worker, &results, POLICY)
        .await
        .unwrap();
    assert_eq!(recorded, claimed.len() as u64);
    run.end().await.unwrap();
}

fn blob(content: &[u8]) -> BlobId {
    BlobId::from_bytes(*blake3::hash(content).as_bytes())
}

/// The media `blob_medium` lists for the content.
async fn holders(pool: &PgPool, content: &[u8]) -> Vec<i64> {
    sqlx::query_scalar("select medium_id from blob_medium where blob_id = $1 order by medium_id")
        .bind(blob(content).as_bytes().as_slice())
        .fetch_all(pool)
        .await
        .unwrap()
}

/// What `ntt where` lists for the content: (medium, path) in its order.
async fn places(pool: &PgPool, content: &[u8]) -> Vec<(String, String)> {
    search::places(pool, &blob(content), None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.medium, String::from_utf8(p.path).unwrap()))
        .collect()
}

const REPORT: &[u8] = b"the annual report\n";
const OTHER: &[u8] = b"a different file\n";

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn the_media_holding_a_content_follow_copies_new_loads_and_purges(pool: PgPool) {
    let first = medium(&pool, "aaaaaaaa000000000000000000000001", "box-1").await;
    let second = medium(&pool, "bbbbbbbb000000000000000000000002", "box-2").await;
    add_volume(&pool, first, 0).await;
    add_volume(&pool, second, 0).await;
    publish(
        &pool,
        first,
        "box-1",
        &[b"report.txt", b"copy of report.txt", b"other.txt"],
    )
    .await;
    publish(&pool, second, "box-2", &[b"r.txt"]).await;
    assert!(
        holders(&pool, REPORT).await.is_empty(),
        "nothing copied yet"
    );
    assert!(places(&pool, REPORT).await.is_empty());

    // The copier records, with the inodes, which media hold each content: once per medium.
    copy_all(&pool, first, |ino| if ino == 102 { OTHER } else { REPORT }).await;
    copy_all(&pool, second, |_| REPORT).await;
    assert_eq!(holders(&pool, REPORT).await, [first.get(), second.get()]);
    assert_eq!(holders(&pool, OTHER).await, [first.get()]);
    let pairs: i64 = sqlx::query_scalar("select count(*) from blob_medium")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pairs, 3, "a pair once, however many files hold it");
    assert_eq!(
        places(&pool, REPORT).await,
        [
            ("box-1".to_owned(), "copy of report.txt".to_owned()),
            ("box-1".to_owned(), "report.txt".to_owned()),
            ("box-2".to_owned(), "r.txt".to_owned()),
        ]
    );
    assert_eq!(
        search::count_places(&pool, &blob(REPORT)).await.unwrap(),
        (3, 3, 2)
    );

    // A new load of box-1: its inodes hold no content until copied, so box-1 is no longer
    // listed; box-2 still is.
    publish(&pool, first, "box-1", &[b"new.txt"]).await;
    assert_eq!(holders(&pool, REPORT).await, [second.get()]);
    assert!(holders(&pool, OTHER).await.is_empty());
    assert_eq!(
        places(&pool, REPORT).await,
        [("box-2".to_owned(), "r.txt".to_owned())]
    );
    assert!(places(&pool, OTHER).await.is_empty());

    // A medium listed that does not hold the content (as after a file is queued again when
    // its damage shrank): the answer comes from its partitions, so it adds nothing.
    sqlx::query("insert into blob_medium (blob_id, medium_id) values ($1, $2)")
        .bind(blob(OTHER).as_bytes().as_slice())
        .bind(second.get())
        .execute(&pool)
        .await
        .unwrap();
    assert!(places(&pool, OTHER).await.is_empty());
    assert_eq!(
        search::count_places(&pool, &blob(OTHER)).await.unwrap(),
        (0, 0, 0)
    );

    // A purge drops the medium's partitions, then the medium (its rows here with it): in
    // between, `where` leaves it out and lists the others.
    copy_all(&pool, first, |_| REPORT).await;
    drop_medium_partitions(&pool, second).await.unwrap();
    assert_eq!(holders(&pool, REPORT).await, [first.get(), second.get()]);
    assert_eq!(
        places(&pool, REPORT).await,
        [("box-1".to_owned(), "new.txt".to_owned())]
    );
    assert_eq!(
        search::count_places(&pool, &blob(REPORT)).await.unwrap(),
        (1, 1, 1)
    );
    assert!(media::delete_medium(&pool, second).await.unwrap());
    assert_eq!(holders(&pool, REPORT).await, [first.get()]);
    drop_medium_partitions(&pool, first).await.unwrap();
    assert!(media::delete_medium(&pool, first).await.unwrap());
    assert!(holders(&pool, REPORT).await.is_empty());
    assert!(places(&pool, REPORT).await.is_empty());
}
