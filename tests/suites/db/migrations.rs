use ntt_agent::catalog::{Catalog, CatalogError, MIGRATOR};

fn newest_known() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap()
}
use sqlx::PgPool;

/// Tables, columns, constraints and functions of the public schema, as one sorted listing.
async fn schema_listing(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select format('column %s.%s %s %s', table_name, column_name, data_type, is_nullable)
           from information_schema.columns where table_schema = 'public'
         union all
         select format('constraint %s on %s: %s', conname, conrelid::regclass,
                       pg_get_constraintdef(oid))
           from pg_constraint where connamespace = 'public'::regnamespace
         union all
         select format('index %s', indexname) from pg_indexes where schemaname = 'public'
         union all
         select format('function %s', proname) from pg_proc
           where pronamespace = 'public'::regnamespace
         union all
         select format('type %s', typname) from pg_type
           where typnamespace = 'public'::regnamespace and typtype = 'e'
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn migrations_apply_to_an_empty_database_and_are_a_noop_the_second_time(pool: PgPool) {
    let catalog = Catalog::from_pool(pool.clone());
    assert!(
        schema_listing(&pool).await.is_empty(),
        "the test database starts empty"
    );

    let applied = catalog.migrate().await.unwrap();
    assert_eq!(applied, MIGRATOR.iter().count());
    catalog.check_schema().await.unwrap();
    let after_first = schema_listing(&pool).await;
    for expected in [
        "type copy_state",
        "type error_class",
        "type health",
        "type entry_kind",
        "type medium_kind",
        "function ensure_medium_partitions",
        "index inode_pending_idx",
    ] {
        assert!(
            after_first.iter().any(|l| l == expected),
            "missing {expected}"
        );
    }

    assert_eq!(
        catalog.migrate().await.unwrap(),
        0,
        "second run applies nothing"
    );
    assert_eq!(
        schema_listing(&pool).await,
        after_first,
        "second run changes nothing"
    );
}

#[sqlx::test(migrations = false)]
async fn unmigrated_database_is_reported_as_such(pool: PgPool) {
    let catalog = Catalog::from_pool(pool);
    let error = catalog.check_schema().await.unwrap_err();
    assert!(
        matches!(error, CatalogError::NotMigrated { pending } if pending == MIGRATOR.iter().count()),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("run `ntt db migrate`"),
        "{error}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn database_with_a_newer_schema_is_refused(pool: PgPool) {
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values (99990101000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let error = Catalog::from_pool(pool).check_schema().await.unwrap_err();
    assert!(
        matches!(
            error,
            CatalogError::SchemaTooNew {
                applied: 99_990_101_000_000,
                known
            } if known == newest_known()
        ),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn modified_migration_is_refused(pool: PgPool) {
    sqlx::query("update _sqlx_migrations set checksum = '\\x00' where version = 1")
        .execute(&pool)
        .await
        .unwrap();
    let error = Catalog::from_pool(pool).check_schema().await.unwrap_err();
    assert!(
        matches!(
            error,
            CatalogError::SchemaMismatch {
                version: 1,
                problem: "modified since it was applied",
                ..
            }
        ),
        "{error:?}"
    );
}

/// Applies the migrations up to `version` only, as a catalog made by an older release has them.
async fn migrate_up_to(pool: &PgPool, version: i64) {
    let before: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    sqlx::migrate::Migrator::with_migrations(before)
        .run(pool)
        .await
        .unwrap();
}

/// 0006 re-keys the inode tables: a catalog loaded under 0005 keeps every row, and its
/// per-partition foreign keys (dropped with the old key) are made again and still enforced.
#[sqlx::test(migrations = false)]
async fn re_keying_inodes_keeps_a_loaded_catalog_and_its_foreign_keys(pool: PgPool) {
    migrate_up_to(&pool, 5).await;
    sqlx::raw_sql(
        "insert into medium (id, hash, name, kind, source) overriding system value
             values (7, 'deadbeef00000000000000000000000a', 'old', 'image', '/old.img');
         insert into volume (medium_id, volume_no, scheme, offset_bytes, length_bytes)
             values (7, 0, 'none', 0, 1048576);
         select ensure_medium_partitions(7);
         insert into inode (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, state)
             values (7, 0, 12, 'file', 33188, 0, 0, 2, 5, 'pending'),
                    (7, 0, 13, 'file', 33188, 0, 0, 1, 5, 'pending');
         insert into path (medium_id, volume_no, path, ino)
             values (7, 0, 'a', 12), (7, 0, 'b', 12), (7, 0, 'c', 13);
         insert into copy_error (medium_id, volume_no, ino, attempt, class, message)
             values (7, 0, 13, 1, 'io', 'Input/output error');",
    )
    .execute(&pool)
    .await
    .unwrap();

    let catalog = Catalog::from_pool(pool.clone());
    assert_eq!(
        catalog.migrate().await.unwrap(),
        MIGRATOR.iter().count() - 5
    );
    catalog.check_schema().await.unwrap();

    let key: String = sqlx::query_scalar(
        "select pg_get_constraintdef(oid) from pg_constraint where conname = 'inode_m7_pkey'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(key, "PRIMARY KEY (ino, volume_no, medium_id)");
    let rows: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from inode where medium_id = 7),
                (select count(*) from path where medium_id = 7),
                (select count(*) from copy_error where medium_id = 7)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(rows, (2, 3, 1));
    let foreign_keys: Vec<String> = sqlx::query_scalar(
        "select conname::text from pg_constraint
          where contype = 'f' and confrelid = 'inode_m7'::regclass order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        foreign_keys,
        ["copy_error_m7_inode_fkey", "path_m7_inode_fkey"]
    );
    let orphan =
        sqlx::query("insert into path (medium_id, volume_no, path, ino) values (7, 0, 'd', 99)")
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(
        orphan.to_string().contains("path_m7_inode_fkey"),
        "{orphan}"
    );
    // The cascade still goes from an inode to its paths and errors.
    sqlx::query("delete from inode where medium_id = 7 and ino = 13")
        .execute(&pool)
        .await
        .unwrap();
    let left: (i64, i64) = sqlx::query_as(
        "select (select count(*) from path where medium_id = 7),
                (select count(*) from copy_error where medium_id = 7)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, (2, 0));
}

/// 0010 lists which media hold each content (`blob_medium`) from the copies a catalog made
/// under 0009 already holds: `ntt where` finds them after the upgrade.
#[sqlx::test(migrations = false)]
async fn media_holding_a_content_are_listed_for_copies_made_before_the_upgrade(pool: PgPool) {
    migrate_up_to(&pool, 9).await;
    sqlx::raw_sql(
        "insert into medium (id, hash, name, kind, source) overriding system value
             values (7, 'deadbeef00000000000000000000000a', 'old', 'image', '/old.img'),
                    (8, 'deadbeef00000000000000000000000b', 'older', 'image', '/older.img');
         insert into volume (medium_id, volume_no, scheme, offset_bytes, length_bytes)
             values (7, 0, 'none', 0, 1048576), (8, 0, 'none', 0, 1048576);
         select ensure_medium_partitions(7);
         select ensure_medium_partitions(8);
         insert into blob (id, size) values (decode(repeat('aa', 32), 'hex'), 5),
                                            (decode(repeat('bb', 32), 'hex'), 5);
         insert into inode (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, state, blob_id)
             values (7, 0, 12, 'file', 33188, 0, 0, 1, 5, 'copied', decode(repeat('aa', 32), 'hex')),
                    (7, 0, 13, 'file', 33188, 0, 0, 1, 5, 'copied', decode(repeat('aa', 32), 'hex')),
                    (7, 0, 14, 'file', 33188, 0, 0, 1, 5, 'pending', null),
                    (8, 0, 12, 'file', 33188, 0, 0, 1, 5, 'copied', decode(repeat('aa', 32), 'hex')),
                    (8, 0, 15, 'file', 33188, 0, 0, 1, 5, 'copied', decode(repeat('bb', 32), 'hex'));",
    )
    .execute(&pool)
    .await
    .unwrap();

    let catalog = Catalog::from_pool(pool.clone());
    assert_eq!(
        catalog.migrate().await.unwrap(),
        MIGRATOR.iter().count() - 9
    );
    catalog.check_schema().await.unwrap();
    let pairs: Vec<(String, i64)> = sqlx::query_as(
        "select encode(substr(blob_id, 1, 1), 'hex'), medium_id from blob_medium order by 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        pairs,
        [
            ("aa".to_owned(), 7),
            ("aa".to_owned(), 8),
            ("bb".to_owned(), 8)
        ]
    );
}
