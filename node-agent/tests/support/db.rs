//! The test's own database, as a URL the `ntt` binary can be given.

use sqlx::PgPool;

/// The URL of the test's own database: `DATABASE_URL` with the database name replaced.
pub(crate) async fn url_of(pool: &PgPool) -> String {
    let name: String = sqlx::query_scalar("select current_database()::text")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the db tier");
    let (without_query, query) = base
        .split_once('?')
        .map_or((base.as_str(), None), |(u, q)| (u, Some(q)));
    let prefix = without_query
        .rsplit_once('/')
        .expect("DATABASE_URL has a database")
        .0;
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}
