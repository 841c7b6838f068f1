use ntt_agent::catalog::media::{self, MediumId};
use ntt_agent::catalog::partitions::{
    drop_medium_partitions, ensure_medium_partitions, medium_partitions,
};
use ntt_agent::catalog::{CatalogError, Constraint};
use ntt_tests::{add_file, add_volume, medium};
use sqlx::PgPool;

// Two hashes that share their first 8 characters: the predecessor named partitions from those
// 8 characters, so these two media shared (and clobbered) one partition.
const HASH_A: &str = "deadbeef00000000000000000000000a";
const HASH_B: &str = "deadbeef00000000000000000000000b";

async fn count(pool: &PgPool, table: &str, medium: MediumId) -> i64 {
    let sql = format!("select count(*) from {table} where medium_id = $1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(medium.get())
        .fetch_one(pool)
        .await
        .unwrap()
}

fn expected_partitions(medium: MediumId) -> Vec<String> {
    let mut names: Vec<String> = ["copy_error", "entry_error", "inode", "path"]
        .iter()
        .map(|t| format!("{t}_m{}", medium.get()))
        .collect();
    names.sort();
    names
}

async fn foreign_keys_of(pool: &PgPool, medium: MediumId) -> Vec<String> {
    sqlx::query_scalar(
        "select conname::text from pg_constraint
         where contype = 'f' and conname like $1 order by 1",
    )
    .bind(format!("%\\_m{}\\_inode\\_fkey", medium.get()))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn creating_a_mediums_partitions_twice_is_a_noop(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    assert!(medium_partitions(&pool, id).await.unwrap().is_empty());
    ensure_medium_partitions(&pool, id).await.unwrap();
    add_volume(&pool, id, 0).await;
    add_file(&pool, id, 0, 12, b"docs/report.doc").await;
    let partitions = medium_partitions(&pool, id).await.unwrap();
    let keys = foreign_keys_of(&pool, id).await;
    assert_eq!(partitions, expected_partitions(id));
    assert_eq!(keys.len(), 2, "{keys:?}");

    ensure_medium_partitions(&pool, id).await.unwrap();
    assert_eq!(medium_partitions(&pool, id).await.unwrap(), partitions);
    assert_eq!(foreign_keys_of(&pool, id).await, keys);
    assert_eq!(
        count(&pool, "path", id).await,
        1,
        "rows survive the second call"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn concurrent_callers_create_each_partition_once(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { ensure_medium_partitions(&pool, id).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        medium_partitions(&pool, id).await.unwrap(),
        expected_partitions(id)
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn media_whose_hashes_share_a_prefix_get_distinct_partitions(pool: PgPool) {
    let a = medium(&pool, HASH_A, "a").await;
    let b = medium(&pool, HASH_B, "b").await;
    for id in [a, b] {
        ensure_medium_partitions(&pool, id).await.unwrap();
        add_volume(&pool, id, 0).await;
        add_file(&pool, id, 0, 12, b"same/path").await;
        add_file(&pool, id, 0, 13, b"other").await;
    }
    let partitions_a = medium_partitions(&pool, a).await.unwrap();
    let partitions_b = medium_partitions(&pool, b).await.unwrap();
    assert_eq!(partitions_a, expected_partitions(a));
    assert_eq!(partitions_b, expected_partitions(b));
    assert!(partitions_a.iter().all(|p| !partitions_b.contains(p)));

    // Replacing A (drop, recreate, reload) never touches B.
    drop_medium_partitions(&pool, a).await.unwrap();
    assert!(medium_partitions(&pool, a).await.unwrap().is_empty());
    assert_eq!(count(&pool, "inode", b).await, 2);
    assert_eq!(count(&pool, "path", b).await, 2);
    ensure_medium_partitions(&pool, a).await.unwrap();
    assert_eq!(
        count(&pool, "inode", a).await,
        0,
        "A's replacement starts empty"
    );
    add_file(&pool, a, 0, 99, b"new").await;
    assert_eq!(count(&pool, "path", a).await, 1);
    assert_eq!(count(&pool, "path", b).await, 2);

    // Deleting A entirely never touches B.
    drop_medium_partitions(&pool, a).await.unwrap();
    assert!(media::delete_medium(&pool, a).await.unwrap());
    assert_eq!(count(&pool, "volume", b).await, 1);
    assert_eq!(count(&pool, "inode", b).await, 2);
    assert_eq!(medium_partitions(&pool, b).await.unwrap(), partitions_b);
    drop_medium_partitions(&pool, a).await.unwrap();
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn the_same_inode_number_on_two_volumes_is_two_rows(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    ensure_medium_partitions(&pool, id).await.unwrap();
    add_volume(&pool, id, 0).await;
    add_volume(&pool, id, 1).await;
    add_file(&pool, id, 0, 2, b"a").await;
    add_file(&pool, id, 1, 2, b"a").await;
    assert_eq!(count(&pool, "inode", id).await, 2);
    assert_eq!(count(&pool, "path", id).await, 2);
    let volumes: Vec<i32> = sqlx::query_scalar(
        "select volume_no from inode where medium_id = $1 and ino = 2 order by volume_no",
    )
    .bind(id.get())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(volumes, [0, 1]);
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn partitions_for_an_unknown_medium_are_refused(pool: PgPool) {
    let error = ensure_medium_partitions(&pool, MediumId::new(4242))
        .await
        .unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::PartitionMediumFkey),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_foreign_table_with_a_partitions_name_is_never_adopted(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    let sql = format!("create table path_m{} (x int)", id.get());
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    let error = ensure_medium_partitions(&pool, id).await.unwrap_err();
    assert!(
        matches!(
            &error,
            CatalogError::Violation {
                constraint: Constraint::PartitionNameConflict,
                ..
            }
        ),
        "{error:?}"
    );
}
