//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, so a write
//! that was answered survives a killed process, and even a power cut. Writes
//! go through one connection that commits in groups (SQLite has one writer at
//! a time; see [`crate::sql::writer`]), reads through a separate read-only
//! pool.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::Result;
use crate::sql::SqlStore;
use crate::sql::db::Pools;
use crate::sql::writer::{WAL_KEEP_BYTES, WAL_LIMIT_PAGES, Writer};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows the write connection's thread may hand over before the writer has
/// taken any (sqlx's default is 50).
const WRITE_ROW_BUFFER: usize = 1024;

/// Opens (creating if missing) the database file at `path`. Call
/// [`SqlStore::migrate`] before use.
pub async fn open(path: &Path, read_connections: u32) -> Result<SqlStore> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("journal_size_limit", WAL_KEEP_BYTES.to_string());
    // Each write runs in a savepoint (see the writer), which copies every
    // page it changes to a sub-journal: kept in memory rather than spilled
    // into a temporary file created and deleted per write.
    let writes = options
        .clone()
        .pragma("wal_autocheckpoint", WAL_LIMIT_PAGES.to_string())
        .pragma("temp_store", "memory")
        // The connection's thread hands its rows over without waiting for
        // each fiftieth to be taken (a claim or a finish reads hundreds).
        .row_buffer_size(WRITE_ROW_BUFFER)
        .connect()
        .await?;
    let write = Writer::new(writes, options.connect().await?);
    let read = SqlitePoolOptions::new()
        .max_connections(read_connections.max(1))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.read_only(true))
        .await?;
    Ok(SqlStore::new(Pools::Sqlite { read, write }))
}

/// Writes a consistent snapshot of the database at `from` into the new file
/// `to` (`VACUUM INTO`), through a read-only connection of its own: a running
/// server keeps reading and writing meanwhile, and the snapshot holds every
/// write committed before it began and none after.
pub async fn snapshot(from: &Path, to: &Path) -> Result<()> {
    let mut conn = SqliteConnectOptions::from_str("sqlite://")?
        .filename(from)
        .read_only(true)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let target = to.to_string_lossy().into_owned();
    let done = sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(&mut conn)
        .await;
    conn.close().await?;
    done?;
    Ok(())
}
