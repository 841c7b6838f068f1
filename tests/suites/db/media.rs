use ntt_agent::catalog::CatalogError;
use ntt_agent::catalog::media::resolve_medium;
use ntt_tests::medium;
use sqlx::PgPool;

#[sqlx::test(migrator = "ntt_agent::catalog::MIGRATOR")]
async fn a_medium_is_found_by_name_hash_or_unique_hash_prefix(pool: PgPool) {
    let a = medium(&pool, "abcd0000000000000000000000000001", "zip-7").await;
    let b = medium(&pool, "abcd0000000000000000000000000002", "floppy-3").await;
    let c = medium(&pool, "ef010000000000000000000000000003", "abcd").await;

    assert_eq!(resolve_medium(&pool, "zip-7").await.unwrap().id, a);
    assert_eq!(
        resolve_medium(&pool, "abcd0000000000000000000000000002")
            .await
            .unwrap()
            .id,
        b
    );
    assert_eq!(resolve_medium(&pool, "ef01").await.unwrap().id, c);
    // A name wins over a hash prefix it looks like.
    assert_eq!(resolve_medium(&pool, "abcd").await.unwrap().id, c);

    let error = resolve_medium(&pool, "abcd0").await.unwrap_err();
    assert!(
        matches!(&error, CatalogError::MediumAmbiguous { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("zip-7") && error.to_string().contains("floppy-3"),
        "{error}"
    );

    let error = resolve_medium(&pool, "nothing").await.unwrap_err();
    assert!(
        matches!(error, CatalogError::MediumNotFound { .. }),
        "{error:?}"
    );
    // Too short to be a prefix: only names match.
    assert!(matches!(
        resolve_medium(&pool, "ef0").await.unwrap_err(),
        CatalogError::MediumNotFound { .. }
    ));
    // Wildcards are not prefixes.
    assert!(resolve_medium(&pool, "ab%d").await.is_err());
}
