//! Dumps and loads (`waymark export` / `waymark import`): every record out
//! of one database and into an empty one, on each backend and from SQLite to
//! PostgreSQL and back, reading back exactly what was written.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use waymark_domain::audit::Verifier;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::review::ApproverKind;
use waymark_domain::{ArtifactId, ClientId};
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(a_dump_loads_into_an_empty_database_as_it_was);

fn ctx(actor: &str) -> WriteContext {
    WriteContext::new(actor)
}

async fn client(s: &dyn Store, name: &str) -> ClientId {
    s.create_client(
        NewClient {
            name: name.into(),
            ..Default::default()
        },
        &ctx("usr_op"),
    )
    .await
    .unwrap()
    .record
    .id
}

async fn artifact(s: &dyn Store, c: ClientId, title: &str, content: Value) -> ArtifactId {
    s.create_artifact(
        NewArtifact {
            client_id: c,
            engagement_id: None,
            artifact_type: "migration_plan".into(),
            title: title.into(),
            content,
            sources: None,
            note: None,
            provenance: "human".into(),
            pipeline: None,
        },
        &ctx("usr_op"),
    )
    .await
    .unwrap()
    .record
    .summary
    .id
}

/// Some of everything: clients, artifacts with versions and history, a
/// share, a comment thread, a rejection, events and the audit chain.
async fn populate(s: &dyn Store) {
    let acme = client(s, "Acme \"quoted\" — ünïcode").await;
    let globex = client(s, "Globex").await;
    let plan = artifact(
        s,
        acme,
        "Migration plan",
        json!({"steps": ["inventory", "cutover"], "budget": 12.5, "done": false, "nested": {"z": 1, "a": null}}),
    )
    .await;
    artifact(
        s,
        globex,
        "Rollout",
        json!({"text": "line\nbreak \u{1F600}"}),
    )
    .await;
    let op = Reviewer {
        id: "usr_op".into(),
        name: "Operator".into(),
        kind: ApproverKind::Staff,
    };
    s.share(plan, Some("Have a look".into()), &op, &ctx("usr_op"))
        .await
        .unwrap();
    let first = s
        .add_comment(
            plan,
            NewComment {
                version: None,
                section: None,
                parent_id: None,
                body: "Why the cutover on a Friday?".into(),
                internal: false,
            },
            &op,
            &ctx("usr_op"),
        )
        .await
        .unwrap();
    s.add_comment(
        plan,
        NewComment {
            version: None,
            section: None,
            parent_id: Some(first.id),
            body: "internal: ask the DBA".into(),
            internal: true,
        },
        &op,
        &ctx("usr_op"),
    )
    .await
    .unwrap();
    s.transition(
        plan,
        ArtifactStatus::Draft,
        Some("needs a rollback step".into()),
        None,
        false,
        &ctx("usr_op"),
    )
    .await
    .unwrap();
}

/// Every dumped row by table (search rows without SQLite's own row number,
/// which each database numbers itself).
async fn rows(store: &SqlStore) -> BTreeMap<String, Vec<String>> {
    let tables = store.dump_tables().await.unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    store
        .dump_rows(&tables, &mut |t, r| {
            out.entry(t.to_owned()).or_default().push(r.to_owned());
            Ok(())
        })
        .await
        .unwrap();
    out
}

/// Loads `from` into `to` through the dump, as `waymark import` does.
async fn copy(from: &SqlStore, to: &SqlStore) {
    let tables = from.dump_tables().await.unwrap();
    let mut rows: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
    from.dump_rows(&tables, &mut |t, r| {
        rows.entry(t.to_owned())
            .or_default()
            .push(serde_json::from_str(r).unwrap());
        Ok(())
    })
    .await
    .unwrap();
    let mut loader = to.loader(from.backend()).await.unwrap();
    for name in loader.order() {
        if let Some(t) = tables.iter().find(|t| t.name == name) {
            let r = rows.remove(&name).unwrap_or_default();
            loader.load(t, &r).await.unwrap();
        }
    }
    loader.finish().await.unwrap();
}

async fn verify(s: &dyn Store) -> u64 {
    let mut v = Verifier::new();
    loop {
        let page = s.audit_chain(v.last_seq(), 50).await.unwrap();
        if page.is_empty() {
            break;
        }
        for r in &page {
            v.check(r).unwrap();
        }
    }
    let head = s.audit_head().await.unwrap();
    v.finish(head.seq, &head.hash).unwrap()
}

/// What a reader sees: artifacts with their versions and history, events,
/// what a search finds.
async fn reads(s: &dyn Store) -> Value {
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let clients = s.list_clients(page.clone()).await.unwrap();
    let mut out = vec![serde_json::to_value(&clients.items).unwrap()];
    for c in &clients.items {
        let arts = s
            .list_artifacts(
                ArtifactFilter {
                    client_id: Some(c.id),
                    ..Default::default()
                },
                page.clone(),
            )
            .await
            .unwrap();
        for a in &arts.items {
            out.push(serde_json::to_value(s.get_artifact(a.id).await.unwrap()).unwrap());
            out.push(
                serde_json::to_value(s.list_versions(a.id, page.clone()).await.unwrap().items)
                    .unwrap(),
            );
            out.push(
                serde_json::to_value(s.history(a.id, page.clone()).await.unwrap().items).unwrap(),
            );
        }
    }
    let events = s.events_after(0, EventScope::All, 500).await.unwrap();
    out.push(serde_json::to_value(&events).unwrap());
    let hits = s
        .search(
            &SearchQuery {
                q: "cutover".into(),
                kinds: Vec::new(),
                client_id: None,
                engagement_id: None,
                artifact_type: None,
                scope: Visibility::Staff,
                candidates: waymark_store::SEARCH_CANDIDATES,
            },
            page,
        )
        .await
        .unwrap();
    assert!(!hits.items.is_empty(), "the search index is rebuilt");
    // What is found; each database ranks it in its own way.
    let mut found: Vec<(String, String)> = hits
        .items
        .iter()
        .map(|h| (h.id.clone(), h.title.clone()))
        .collect();
    found.sort();
    out.push(serde_json::to_value(found).unwrap());
    Value::Array(out)
}

async fn a_dump_loads_into_an_empty_database_as_it_was(db: &TestDb) {
    populate(&*db.store).await;
    let target = match db.store.backend() {
        Backend::Sqlite => testing::sqlite().await,
        Backend::Postgres => testing::postgres().await.unwrap(),
    };
    copy(&db.store, &target.store).await;
    assert_eq!(rows(&target.store).await, rows(&db.store).await);
    assert_eq!(verify(&*target.store).await, verify(&*db.store).await);
    assert_eq!(reads(&*target.store).await, reads(&*db.store).await);

    // The loaded database goes on: new records number after the loaded ones.
    let before = target.store.last_event_seq().await.unwrap();
    let c = client(&*target.store, "After the move").await;
    artifact(&*target.store, c, "New", json!({})).await;
    assert!(target.store.last_event_seq().await.unwrap() > before);
    verify(&*target.store).await;

    // A database that holds records is refused, and left as it was.
    let err = target
        .store
        .loader(db.store.backend())
        .await
        .err()
        .expect("a database with records is refused");
    assert!(
        matches!(
            err,
            StoreError::Refused {
                code: "not_empty",
                ..
            }
        ),
        "{err}"
    );
    assert!(target.store.get_client(c).await.is_ok());
}

/// SQLite → PostgreSQL → SQLite: every row comes back as it was written,
/// and PostgreSQL answers the same reads as SQLite did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back_keeps_every_row() {
    testing::init_test_log();
    let Some(pg) = testing::postgres().await else {
        return;
    };
    let lite = testing::sqlite().await;
    populate(&*lite.store).await;
    copy(&lite.store, &pg.store).await;
    assert_eq!(verify(&*pg.store).await, verify(&*lite.store).await);
    assert_eq!(reads(&*pg.store).await, reads(&*lite.store).await);
    let back = testing::sqlite().await;
    copy(&pg.store, &back.store).await;
    // Documents come back as the same values, their keys in PostgreSQL's
    // order (it keeps JSON as values, not text); search_docs' first column is
    // SQLite's own row number.
    let strip = |rows: BTreeMap<String, Vec<String>>| {
        rows.into_iter()
            .map(|(table, rows)| {
                let mut rows: Vec<Value> = rows
                    .iter()
                    .map(|r| {
                        let mut cells: Vec<Value> = serde_json::from_str(r).unwrap();
                        if table == "search_docs" {
                            cells.remove(0);
                        }
                        for c in &mut cells {
                            if let Some(doc) = c
                                .as_str()
                                .filter(|t| t.starts_with('{') || t.starts_with('['))
                                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                            {
                                *c = doc;
                            }
                        }
                        Value::Array(cells)
                    })
                    .collect();
                rows.sort_by_key(|r| r.to_string());
                (table, rows)
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        strip(rows(&back.store).await),
        strip(rows(&lite.store).await)
    );
}
