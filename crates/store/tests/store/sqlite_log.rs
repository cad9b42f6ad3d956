//! SQLite's write-ahead log stays bounded under reads that never stop: the
//! checkpointer starts it over once it has grown, even though some read is
//! always in flight (a passive checkpoint alone never could); and its file
//! is cut back when the log starts over after a burst.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;
use waymark_domain::ClientId;
use waymark_store::testing;
use waymark_store::*;

/// Where the store's checkpointer starts the log over (4,096 pages of 4 KiB).
const RESTART_BYTES: u64 = 16 << 20;

/// What the log's file is cut back to when the log starts over
/// (`journal_size_limit`): a steady load reuses a file that large in place.
const KEEP_BYTES: u64 = 24 << 20;

/// A client of its own for a test.
async fn a_client(s: &dyn Store, ctx: &WriteContext, name: &str) -> ClientId {
    s.create_client(
        NewClient {
            name: name.into(),
            ..Default::default()
        },
        ctx,
    )
    .await
    .unwrap()
    .record
    .id
}

/// A note of `client` holding `text`.
fn note(client: ClientId, title: String, text: String) -> NewArtifact {
    NewArtifact {
        client_id: client,
        engagement_id: None,
        artifact_type: "note".into(),
        title,
        content: json!({ "text": text }),
        sources: None,
        note: None,
        provenance: "human".into(),
        pipeline: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_emptied_while_reads_never_stop() {
    testing::init_test_log();
    let db = testing::sqlite().await;
    let wal = db
        .dir
        .as_ref()
        .expect("a SQLite test database has a folder")
        .path()
        .join("waymark.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let s: Arc<dyn Store> = db.store.clone();
    let ctx = WriteContext::new("tok_test");
    let client = a_client(&*s, &ctx, "Big").await;
    let new = |i: usize, text: String| note(client, format!("Note {i}"), text);
    let first = s
        .create_artifact(new(0, "small".into()), &ctx)
        .await
        .unwrap()
        .record
        .summary
        .id;

    // Readers, always some in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (s, stop) = (s.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                s.get_artifact(first).await.unwrap();
                reads += 1;
            }
            reads
        }));
    }

    // Three times the restart size written, 200 KB a document.
    let mut written = 0u64;
    let mut ids = vec![first];
    let mut i = 1;
    while written < 3 * RESTART_BYTES {
        let text = format!("page {i} ") + &"lorem ipsum dolor sit amet ".repeat(7_500);
        written += text.len() as u64;
        let made = s.create_artifact(new(i, text), &ctx).await.unwrap();
        ids.push(made.record.summary.id);
        i += 1;
    }
    let grown = wal_size();

    // Small writes (each wakes the checkpointer) until the log's file is
    // back within bounds (it would hold all 48 MB had the log never started
    // over), the reads still going on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while wal_size() > KEEP_BYTES {
        assert!(
            Instant::now() < deadline,
            "the log is still {} bytes (it reached {grown}) after {written} bytes written",
            wal_size()
        );
        let made = s
            .create_artifact(new(i, "small".into()), &ctx)
            .await
            .unwrap();
        ids.push(made.record.summary.id);
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0, "every reader read");
    }
    // Nothing was lost on the way.
    for id in ids {
        s.get_artifact(id).await.unwrap();
    }
}

/// A log that grew while a long read held it, then was started over by a
/// writer (not by the checkpointer's truncation): SQLite reuses the file from
/// its start and would leave it at its high-water mark for good; the store
/// has it cut back at the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_started_over_by_a_writer_is_cut_back() {
    testing::init_test_log();
    let db = testing::sqlite().await;
    let dir = db
        .dir
        .as_ref()
        .expect("a SQLite test database has a folder");
    let wal = dir.path().join("waymark.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let s: Arc<dyn Store> = db.store.clone();
    let ctx = WriteContext::new("tok_test");
    let client = a_client(&*s, &ctx, "Burst").await;

    // A read transaction of its own holds the log while 36 MB of text go in, so
    // neither a checkpoint nor the checkpointer's restart can shorten it.
    let mut reader = sqlx::sqlite::SqliteConnection::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.path().join("waymark.db").display()
    ))
    .await
    .unwrap();
    let mut held = reader.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM artifacts")
        .fetch_one(&mut *held)
        .await
        .unwrap();
    for i in 0..180 {
        let text = format!("burst {i} ") + &"lorem ipsum dolor sit amet ".repeat(7_500);
        s.create_artifact(note(client, "Burst".into(), text), &ctx)
            .await
            .unwrap();
    }
    let grown = wal_size();
    assert!(grown > KEEP_BYTES, "the log grew to {grown} bytes");
    held.rollback().await.unwrap();
    reader.close().await.unwrap();

    // Small writes from now on: the log is copied back and started over
    // (by the checkpointer or by a writer), and the file must shrink.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while wal_size() > KEEP_BYTES {
        assert!(
            Instant::now() < deadline,
            "the log file is still {} bytes (it reached {grown})",
            wal_size()
        );
        s.create_artifact(note(client, format!("Small {i}"), "small".into()), &ctx)
            .await
            .unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
