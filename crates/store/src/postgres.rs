//! The PostgreSQL backend: any number of Waymark processes share one database.
//! Writers serialise on the rows they change (`SELECT ... FOR UPDATE`), commits
//! are durable with the server's settings (`synchronous_commit=on`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use crate::Result;
use crate::sql::SqlStore;
use crate::sql::db::Pools;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a statement waits for a connection before the store answers
/// `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the database at `url` (`postgres://user:pass@host:port/db`). Call
/// [`SqlStore::migrate`] before use.
pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore> {
    connect_with(PgConnectOptions::from_str(url)?, max_connections).await
}

/// Connects with explicit options (tests use them to pick a schema).
pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<SqlStore> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        // A request waits this long at most for a connection (while the
        // database restarts, say), then fails with 503 and Retry-After.
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    Ok(SqlStore::new(Pools::Postgres {
        pool,
        sealer: Default::default(),
    }))
}

/// Creates `schema` in the database at `url` and connects with it as the search
/// path, so that everything the store makes lives there (benchmarks and tests
/// get a fresh database this way). Answers the store and a URL that reaches it.
pub async fn connect_isolated(
    url: &str,
    schema: &str,
    max_connections: u32,
) -> Result<(SqlStore, String)> {
    check_schema_name(schema);
    let mut admin = PgConnection::connect(url).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let scoped = schema_url(url, schema);
    let store = connect(&scoped, max_connections).await?;
    Ok((store, scoped))
}

/// Drops a schema made by [`connect_isolated`], with everything in it.
pub async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    check_schema_name(schema);
    let mut admin = PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

fn check_schema_name(schema: &str) {
    assert!(
        !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "schema names are made by Waymark: lowercase, digits and _"
    );
}

/// `url` with its search path set to `schema`.
pub fn schema_url(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}
