//! The PostgreSQL backend: any number of Waymark processes share one database.
//! Writers serialise on the rows they change (`SELECT ... FOR UPDATE`), commits
//! are durable with the server's settings (`synchronous_commit=on`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Result;
use crate::sql::{Db, SqlStore};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connects to the database at `url` (`postgres://user:pass@host:port/db`). Call
/// [`SqlStore::migrate`] before use.
pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore> {
    connect_with(PgConnectOptions::from_str(url)?, max_connections).await
}

/// Connects with explicit options (tests use them to pick a schema).
pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<SqlStore> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    Ok(SqlStore::new(Db::Postgres { pool }))
}
