//! The name index: the loader's name hashes, indexing after publish, a new load, a second
//! medium sharing names, and deletion. The find suite (`node-agent/tests/cli.rs`) proves the
//! searches return the same paths with and without it.

use std::collections::BTreeSet;

use ntt_agent::catalog::media::{self, MediumId};
use ntt_agent::catalog::names::{self, NamesIndexed};
use ntt_agent::catalog::search::{self, Filter};
use ntt_agent::name_glob::{name_hash, name_of};
use ntt_tests::{add_volume, medium, publish as load};
use sqlx::PgPool;

/// The hashes the index finds for a `LIKE` pattern, per medium.
async fn found(pool: &PgPool, like: &str) -> Vec<(i64, BTreeSet<i64>)> {
    let mut rows: Vec<_> = names::media_with_names(pool, like)
        .await
        .unwrap()
        .into_iter()
        .map(|(m, hashes)| (m.get(), hashes.into_iter().collect::<BTreeSet<_>>()))
        .collect();
    rows.sort();
    rows
}

/// What the name search streams for `like` over `media`: (index in `media`, path).
async fn searched(pool: &PgPool, media: &[MediumId], like: &str) -> Vec<(usize, Vec<u8>)> {
    let mut rows = Vec::new();
    let stopped = search::find_named(pool, media, like, &Filter::default(), &mut |i, row| {
        rows.push((i, row.path));
        Ok(true)
    })
    .await
    .unwrap();
    assert!(!stopped);
    rows
}

fn hashes(names: &[&[u8]]) -> BTreeSet<i64> {
    names.iter().map(|n| name_hash(n)).collect()
}

/// Whether the medium's names are indexed.
async fn indexed(pool: &PgPool, medium: MediumId) -> bool {
    sqlx::query_scalar("select names_indexed_at is not null from medium where id = $1")
        .bind(medium.get())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn names_are_indexed_after_publish_once_per_archive_and_again_after_a_new_load(pool: PgPool) {
    let first = medium(&pool, "aaaaaaaa000000000000000000000001", "box-1").await;
    let second = medium(&pool, "bbbbbbbb000000000000000000000002", "box-2").await;
    add_volume(&pool, first, 0).await;
    add_volume(&pool, second, 0).await;
    // Nothing enumerated yet: nothing to index.
    assert_eq!(
        names::index_names(&pool, first).await.unwrap(),
        NamesIndexed::NotEnumerated
    );
    let paths: [&[u8]; 6] = [
        b"Annual Report.PDF",
        b"docs/annual report.pdf",
        b"docs/old/annual report.pdf",
        b"docs/caf\xe9 \xff.txt",
        b"photos/IMG_0001.JPG",
        b"photos/IMG_0001.JPG",
    ];
    load(&pool, first, "box-1", &paths).await;
    // The loader wrote every path's name hash, except the entry it renamed for repeating a
    // name in its directory (its name is now the old one, a NUL and "duplicate 2").
    let rows: Vec<(Vec<u8>, Option<i64>)> =
        sqlx::query_as("select path, name_id from path where medium_id = $1 order by path")
            .bind(first.get())
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 6);
    let stale: Vec<_> = rows
        .iter()
        .filter(|(path, id)| *id != Some(name_hash(name_of(path))))
        .map(|(path, _)| path.clone())
        .collect();
    assert_eq!(stale, [b"photos/IMG_0001.JPG\0duplicate 2".to_vec()]);
    // Published, not yet indexed: the index knows nothing of it.
    assert!(!indexed(&pool, first).await);
    assert!(found(&pool, "%report%").await.is_empty());

    let outcome = names::index_names(&pool, first).await.unwrap();
    assert_eq!(
        outcome,
        NamesIndexed::Indexed {
            paths: 6,
            names: 5,
            new_names: 5,
            fixed: 1
        }
    );
    assert!(indexed(&pool, first).await);
    let reports: [&[u8]; 2] = [b"Annual Report.PDF", b"annual report.pdf"];
    assert_eq!(
        found(&pool, "%report%").await,
        [(first.get(), hashes(&reports))]
    );
    // Not UTF-8: the lone bytes fold to U+FFFD, the rest is found.
    assert_eq!(
        found(&pool, "caf%.txt").await,
        [(first.get(), hashes(&[b"caf\xe9 \xff.txt"]))]
    );
    assert_eq!(
        found(&pool, "%\u{fffd} \u{fffd}%").await,
        [(first.get(), hashes(&[b"caf\xe9 \xff.txt"]))]
    );
    // Every path's hash is right now.
    let wrong: i64 =
        sqlx::query_scalar("select count(*) from path where medium_id = $1 and name_id is null")
            .bind(first.get())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(wrong, 0);
    assert_eq!(
        names::index_names(&pool, first).await.unwrap(),
        NamesIndexed::AlreadyIndexed
    );

    // A second medium: the names the archive has are not added again.
    load(
        &pool,
        second,
        "box-2",
        &[b"backup/annual report.pdf", b"backup/budget.xls"],
    )
    .await;
    assert_eq!(
        names::index_names(&pool, second).await.unwrap(),
        NamesIndexed::Indexed {
            paths: 2,
            names: 2,
            new_names: 1,
            fixed: 0
        }
    );
    assert_eq!(
        found(&pool, "%report%").await,
        [
            (first.get(), hashes(&reports)),
            (second.get(), hashes(&[b"annual report.pdf"]))
        ]
    );

    // A new load of the first medium: unindexed at publish (searched by its paths), its old
    // names no longer lead to it, and indexing it again records the new ones.
    load(&pool, first, "box-1", &[b"letters/draft report.odt"]).await;
    assert!(!indexed(&pool, first).await);
    assert_eq!(
        found(&pool, "%report%").await,
        [(second.get(), hashes(&[b"annual report.pdf"]))]
    );
    assert_eq!(
        names::unindexed_media(&pool).await.unwrap(),
        [(first, "box-1".to_owned())]
    );
    names::index_names(&pool, first).await.unwrap();
    assert_eq!(
        found(&pool, "%report%").await,
        [
            (first.get(), hashes(&[b"draft report.odt"])),
            (second.get(), hashes(&[b"annual report.pdf"]))
        ]
    );
    assert!(names::unindexed_media(&pool).await.unwrap().is_empty());

    // The search, medium by medium, in the order asked.
    assert_eq!(
        searched(&pool, &[second, first], "%report%").await,
        [
            (0, b"backup/annual report.pdf".to_vec()),
            (1, b"letters/draft report.odt".to_vec())
        ]
    );
    // A purge that drops a medium's partitions after the name index named it (its rows go
    // with the medium, a moment later): the search skips it and finds the others.
    ntt_agent::catalog::partitions::drop_medium_partitions(&pool, second)
        .await
        .unwrap();
    assert_eq!(
        searched(&pool, &[second, first], "%report%").await,
        [(1, b"letters/draft report.odt".to_vec())]
    );

    // Deleting a medium forgets which names it held.
    assert!(media::delete_medium(&pool, second).await.unwrap());
    assert_eq!(
        found(&pool, "%report%").await,
        [(first.get(), hashes(&[b"draft report.odt"]))]
    );
}
