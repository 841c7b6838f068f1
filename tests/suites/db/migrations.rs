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
