//! The store's suites, in one binary: every test runs on a fresh SQLite file
//! and on a fresh PostgreSQL schema (see `waymark_store::testing`), with the
//! same body. `TEST_LOG=1` prints the store's logs (`TEST_LOG=debug` shows
//! every statement).

/// Runs each named `async fn(&TestDb)` on both backends.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    waymark_store::testing::init_test_log();
                    let db = super::testing::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    waymark_store::testing::init_test_log();
                    let Some(db) = super::testing::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

mod contract;
mod desk;
mod dump;
mod journey;
mod review_log;
mod search;
mod sqlite_log;
mod work;
