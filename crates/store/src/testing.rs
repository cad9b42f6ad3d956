//! A fresh database per test: a SQLite file in a temporary folder, or a new
//! schema in the PostgreSQL database named by `WAYMARK_TEST_DATABASE_URL`.
//!
//! Without the variable, the PostgreSQL half uses a local server as the README
//! describes it (`postgres://postgres@127.0.0.1:5432`, trust authentication),
//! in a database `waymark_test` it creates when missing. When neither answers
//! it is skipped, saying so, outside CI; with `CI` set it must run.
//!
//! `TEST_LOG` turns logs on in the test's output ([`init_test_log`]).

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

/// The local server tried when [`PG_ENV`] is unset.
pub const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The database made on [`LOCAL_SERVER`] for the tests' schemas.
const LOCAL_DATABASE: &str = "waymark_test";

/// The PostgreSQL URL tests use, or `None` (with a line saying so) when the
/// PostgreSQL half is to be skipped. Panics in CI when there is none.
pub async fn postgres_url() -> Option<String> {
    static FOUND: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Ok(url) = std::env::var(PG_ENV)
        && !url.is_empty()
    {
        return Some(url);
    }
    if let Some(url) = FOUND.get() {
        return Some(url.clone());
    }
    match local_database().await {
        Ok(url) => Some(FOUND.get_or_init(|| url).clone()),
        Err(e) if std::env::var_os("CI").is_some() => panic!(
            "{PG_ENV} is unset and {LOCAL_SERVER} does not answer ({e}) in CI: the PostgreSQL half of the suite must run"
        ),
        Err(e) => {
            eprintln!(
                "SKIPPED (PostgreSQL): {PG_ENV} is unset and {LOCAL_SERVER} does not answer ({e}); start PostgreSQL or set {PG_ENV} to a postgres:// URL to run the PostgreSQL half"
            );
            None
        }
    }
}

/// Makes [`LOCAL_DATABASE`] on [`LOCAL_SERVER`] if it is missing; answers its URL.
async fn local_database() -> std::result::Result<String, sqlx::Error> {
    use sqlx::Connection;
    let connect = sqlx::PgConnection::connect(&format!("{LOCAL_SERVER}/postgres"));
    let mut admin = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(LOCAL_DATABASE)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        let made = sqlx::query(&format!("CREATE DATABASE {LOCAL_DATABASE}"))
            .execute(&mut admin)
            .await;
        match made {
            Ok(_) => {}
            // Another test binary made it meanwhile.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e),
        }
    }
    let _ = admin.close().await;
    Ok(format!("{LOCAL_SERVER}/{LOCAL_DATABASE}"))
}

/// With `TEST_LOG` set, logs go to the test's output (once per process):
/// `TEST_LOG=1` at `info`, or any filter (`TEST_LOG=debug`,
/// `TEST_LOG=waymark_engine=trace,sqlx::query=debug`).
pub fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(filter) = std::env::var("TEST_LOG") else {
            return;
        };
        let filter = match filter.as_str() {
            "" | "1" | "true" => "info".to_owned(),
            f => f.to_owned(),
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

/// A new schema in the test PostgreSQL database, migrated, and a URL that
/// reaches it; `None` when the PostgreSQL half is skipped.
pub async fn postgres() -> Option<TestDb> {
    let base = postgres_url().await?;
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
    /// Another store on this test's database, as a second process has.
    pub async fn another_store(&self) -> Arc<SqlStore> {
        let store = match (&self.url, &self.dir) {
            (Some(url), _) => postgres::connect(url, 4).await,
            (None, Some(dir)) => sqlite::open(&dir.path().join("waymark.db"), 2).await,
            (None, None) => unreachable!("a test database has a URL or a folder"),
        };
        Arc::new(store.expect("open the test database again"))
    }

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
