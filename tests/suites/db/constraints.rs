use std::collections::BTreeSet;

use ntt_agent::catalog::media::{self, MediumKind, NewMedium};
use ntt_agent::catalog::partitions::ensure_medium_partitions;
use ntt_agent::catalog::{CatalogError, Constraint};
use ntt_tests::medium;
use sqlx::PgPool;

const HASH_A: &str = "aaaaaaaa000000000000000000000001";

fn classify(error: sqlx::Error) -> CatalogError {
    CatalogError::from_sqlx("test", error)
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn every_schema_constraint_has_a_typed_variant_and_no_variant_is_stale(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    ensure_medium_partitions(&pool, id).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "select conname::text from pg_constraint
         where connamespace = 'public'::regnamespace and contype in ('p', 'u', 'c', 'f')
           and conrelid <> '_sqlx_migrations'::regclass",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut seen = BTreeSet::new();
    for name in &names {
        let constraint = Constraint::from_name(name)
            .unwrap_or_else(|| panic!("constraint {name} has no catalog::Constraint variant"));
        seen.insert(constraint.name());
    }
    // The two names raised by the partition functions are not pg_constraint rows.
    let raised = [
        Constraint::PartitionMediumFkey,
        Constraint::PartitionNameConflict,
    ];
    for constraint in Constraint::ALL {
        assert!(
            seen.contains(constraint.name()) || raised.contains(constraint),
            "variant {constraint:?} names no constraint of the schema"
        );
    }
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_known_hash_or_name_is_refused_with_a_typed_error(pool: PgPool) {
    medium(&pool, HASH_A, "first").await;
    let again = NewMedium {
        hash: HASH_A.parse().unwrap(),
        name: "second".into(),
        kind: MediumKind::Device,
        source: "/dev/sdz".into(),
        description: None,
        size_bytes: None,
        model: None,
        serial: None,
    };
    let error = media::insert_medium(&pool, &again).await.unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::MediumHashTaken),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("already in the catalog"),
        "{error}"
    );

    let same_name = NewMedium {
        hash: "bbbbbbbb000000000000000000000002".parse().unwrap(),
        name: "first".into(),
        ..again
    };
    let error = media::insert_medium(&pool, &same_name).await.unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::MediumNameTaken),
        "{error:?}"
    );

    let control = NewMedium {
        hash: "cccccccc000000000000000000000003".parse().unwrap(),
        name: "bad\nname".into(),
        ..same_name
    };
    let error = media::insert_medium(&pool, &control).await.unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::MediumNameFormat),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_size_beyond_bigint_is_an_invalid_value_not_a_wraparound(pool: PgPool) {
    let huge = NewMedium {
        hash: HASH_A.parse().unwrap(),
        name: "huge".into(),
        kind: MediumKind::Image,
        source: "/x".into(),
        description: None,
        size_bytes: Some(u64::MAX),
        model: None,
        serial: None,
    };
    let error = media::insert_medium(&pool, &huge).await.unwrap_err();
    assert!(
        matches!(error, CatalogError::InvalidValue { .. }),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn malformed_hash_written_behind_the_types_back_is_refused_by_the_schema(pool: PgPool) {
    let error = sqlx::query(
        "insert into medium (hash, name, kind, source) values ('ABC', 'x', 'image', '/x')",
    )
    .execute(&pool)
    .await
    .map_err(classify)
    .unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::MediumHashFormat),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn unknown_enum_label_is_an_invalid_value(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    let error = sqlx::query("update medium set health = $1::text::health where id = $2")
        .bind("excellent")
        .bind(id.get())
        .execute(&pool)
        .await
        .map_err(classify)
        .unwrap_err();
    assert!(
        matches!(error, CatalogError::InvalidValue { .. }),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn inode_and_path_rules_are_enforced_per_partition(pool: PgPool) {
    let id = medium(&pool, HASH_A, "a").await;
    ensure_medium_partitions(&pool, id).await.unwrap();
    sqlx::query(
        "insert into volume (medium_id, volume_no, scheme, offset_bytes, length_bytes)
         values ($1, 0, 'none', 0, 1048576)",
    )
    .bind(id.get())
    .execute(&pool)
    .await
    .unwrap();
    let insert_inode = |ino: i64, volume: i32, kind: &'static str, state: &'static str| {
        sqlx::query(
            "insert into inode (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, state)
             values ($1, $2, $3, $4::text::entry_kind, 33188, 0, 0, 1, 10, $5::text::copy_state)",
        )
        .bind(id.get())
        .bind(volume)
        .bind(ino)
        .bind(kind)
        .bind(state)
        .execute(&pool)
    };
    insert_inode(12, 0, "file", "pending").await.unwrap();

    let cases = [
        (
            insert_inode(12, 0, "file", "pending").await,
            Constraint::InodePkey,
        ),
        (
            insert_inode(13, 7, "file", "pending").await,
            Constraint::InodeVolumeFkey,
        ),
        (
            insert_inode(14, 0, "file", "copied").await,
            Constraint::InodeCopiedHasBlob,
        ),
        (
            insert_inode(15, 0, "dir", "pending").await,
            Constraint::InodeNotAFileIffNotFile,
        ),
        (
            insert_inode(16, 0, "file", "not_a_file").await,
            Constraint::InodeNotAFileIffNotFile,
        ),
        (
            insert_inode(17, 0, "file", "failed").await,
            Constraint::InodeFailedHasClass,
        ),
    ];
    for (result, expected) in cases {
        let error = classify(result.unwrap_err());
        assert_eq!(error.constraint(), Some(expected), "{error:?}");
    }

    let error = sqlx::query(
        "insert into path (medium_id, volume_no, path, ino) values ($1, 0, '\\x2f6e6f6e65', 999)",
    )
    .bind(id.get())
    .execute(&pool)
    .await
    .map_err(classify)
    .unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::PathInodeFkey),
        "{error:?}"
    );

    let error = sqlx::query("update inode set blob_id = $1, state = 'copied' where ino = 12")
        .bind(vec![7_u8; 32])
        .execute(&pool)
        .await
        .map_err(classify)
        .unwrap_err();
    assert_eq!(
        error.constraint(),
        Some(Constraint::InodeBlobFkey),
        "{error:?}"
    );
}
