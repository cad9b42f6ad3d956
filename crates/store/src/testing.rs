//! A fresh database per test: a SQLite file in a temporary folder, or a new
//! schema in the PostgreSQL database named by `WAYMARK_TEST_DATABASE_URL`.
//!
//! The PostgreSQL half is skipped, saying so, when the variable is unset outside
//! CI; with `CI` set it must be there.

use std::sync::Arc;

use crate::{SqlStore, postgres, sqlite};

/// The variable naming the PostgreSQL database tests may create schemas in.
pub const PG_ENV: &str = "WAYMARK_TEST_DATABASE_URL";

/// A migrated store that lives as long as this value.
pub struct TestDb {
    pub store: Arc<SqlStore>,
    /// For PostgreSQL: a URL that reaches this test's schema.
    pub url: Option<String>,
    /// For SQLite: the data folder.
    pub dir: Option<tempfile::TempDir>,
}

/// A new SQLite database in a temporary folder.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    let store = sqlite::open(&dir.path().join("waymark.db"), 4)
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    TestDb {
        store: Arc::new(store),
        url: None,
        dir: Some(dir),
    }
}

/// The PostgreSQL URL tests use, or `None` (with a line saying so) when the
/// PostgreSQL half is to be skipped. Panics in CI when the variable is unset.
pub fn postgres_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{PG_ENV} is unset in CI: the PostgreSQL half of the suite must run")
        }
        _ => {
            eprintln!(
                "SKIPPED (PostgreSQL): {PG_ENV} is unset; set it to a postgres:// URL to run the PostgreSQL half"
            );
            None
        }
    }
}

/// A new schema in the test PostgreSQL database, migrated, and a URL that
/// reaches it; `None` when the PostgreSQL half is skipped.
pub async fn postgres() -> Option<TestDb> {
    let base = postgres_url()?;
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let (store, url) = postgres::connect_isolated(&base, &schema, 8)
        .await
        .unwrap_or_else(|e| panic!("create a test schema in {PG_ENV}: {e}"));
    store.migrate().await.expect("migrate PostgreSQL");
    Some(TestDb {
        store: Arc::new(store),
        url: Some(url),
        dir: None,
    })
}

impl TestDb {
    /// Runs a raw SQL statement on this test's database, behind the store's back
    /// (to tamper with rows, as an attacker with database access would).
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        use sqlx::Connection;
        if let Some(url) = &self.url {
            let mut c = sqlx::PgConnection::connect(url).await?;
            Ok(sqlx::query(sql).execute(&mut c).await?.rows_affected())
        } else {
            let dir = self
                .dir
                .as_ref()
                .expect("a SQLite test database has a folder");
            let url = format!("sqlite://{}", dir.path().join("waymark.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await?;
            Ok(sqlx::query(sql).execute(&mut c).await?.rows_affected())
        }
    }
}
