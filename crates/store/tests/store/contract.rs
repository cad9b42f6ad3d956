//! The store contract: every backend must pass these, unchanged.

use std::sync::Arc;

use serde_json::json;
use waymark_domain::artifact::SourceRef;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{ArtifactId, ClientId};
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(
    status_columns_refuse_values_the_domain_does_not_know,
    clients_round_trip_and_paginate,
    client_patch_sets_and_clears,
    engagements_belong_to_a_client,
    artifact_versions_are_gap_free_and_guarded,
    content_hash_ignores_key_order,
    transitions_follow_the_lifecycle,
    rollback_writes_a_new_version,
    sources_are_checked_and_kept,
    artifact_list_filters,
    idempotency_keys_replay_or_refuse,
    tokens_are_found_by_hash_and_rotated,
    a_sign_in_link_is_redeemed_once,
    concurrent_writers_one_wins_per_version,
    gating_refuses_locked_types_and_defaults_sources,
    stale_cascade_flags_downstream_transitively,
    unchanged_content_flags_nothing,
    reapproval_rebases_sources,
    new_content_clears_stale,
    lineage_walks_both_ways,
    plans_and_installed_packs_round_trip,
    a_changed_generator_makes_what_it_built_stale,
);

fn ctx() -> WriteContext {
    WriteContext::new("tok_test")
}

fn store(db: &TestDb) -> Arc<dyn Store> {
    db.store.clone()
}

async fn client(s: &dyn Store, name: &str) -> ClientId {
    s.create_client(
        NewClient {
            name: name.into(),
            ..Default::default()
        },
        &ctx(),
    )
    .await
    .unwrap()
    .record
    .id
}

fn new_artifact(client_id: ClientId, ty: &str, content: serde_json::Value) -> NewArtifact {
    NewArtifact {
        client_id,
        engagement_id: None,
        artifact_type: ty.into(),
        title: format!("{ty} doc"),
        content,
        sources: None,
        note: None,
        provenance: "human".into(),
        pipeline: None,
    }
}

fn edit(content: serde_json::Value) -> NewVersion {
    NewVersion {
        content,
        sources: None,
        note: None,
        provenance: "human".into(),
        pipeline: None,
    }
}

async fn clients_round_trip_and_paginate(db: &TestDb) {
    let s = store(db);
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(client(&*s, &format!("Client {i}")).await);
    }
    let got = s.get_client(ids[2]).await.unwrap();
    assert_eq!(got.name, "Client 2");
    assert_eq!(got.attributes, json!({}));

    let mut seen = vec![];
    let mut page = PageRequest {
        limit: 2,
        cursor: None,
    };
    loop {
        let p = s.list_clients(page.clone()).await.unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.iter().map(|c| c.id));
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");

    let missing = ClientId::new();
    assert!(matches!(
        s.get_client(missing).await,
        Err(StoreError::NotFound { .. })
    ));
    let bad = s
        .list_clients(PageRequest {
            limit: 2,
            cursor: Some("nonsense".into()),
        })
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));
}

async fn client_patch_sets_and_clears(db: &TestDb) {
    let s = store(db);
    let id = s
        .create_client(
            NewClient {
                name: "Acme".into(),
                arr: Some(120_000.0),
                owner: Some("ana".into()),
                renewal_date: Some(time::macros::date!(2027 - 03 - 01)),
                attributes: Some(json!({"tier": "gold"})),
                ..Default::default()
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record
        .id;
    let c = s
        .update_client(
            id,
            ClientPatch {
                health_score: Some(Some(72.5)),
                owner: Some(None),
                ..Default::default()
            },
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(c.health_score, Some(72.5));
    assert_eq!(c.owner, None);
    assert_eq!(c.arr, Some(120_000.0));
    let again = s.get_client(id).await.unwrap();
    assert_eq!(
        again.renewal_date,
        Some(time::macros::date!(2027 - 03 - 01))
    );
    assert_eq!(again.attributes, json!({"tier": "gold"}));
    assert_eq!(again.owner, None);
    assert!(matches!(
        s.update_client(ClientId::new(), ClientPatch::default(), &ctx())
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn engagements_belong_to_a_client(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "A").await;
    let b = client(&*s, "B").await;
    let e = s
        .create_engagement(
            NewEngagement {
                client_id: a,
                name: "Retainer".into(),
                pack: "marketing-engagement".into(),
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record;
    assert_eq!(s.get_engagement(e.id).await.unwrap().client_id, a);
    assert_eq!(
        s.list_engagements(Some(a), PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        s.list_engagements(Some(b), PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let missing = s
        .create_engagement(
            NewEngagement {
                client_id: ClientId::new(),
                name: "x".into(),
                pack: "p".into(),
            },
            &ctx(),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::Invalid(ref f)) if f.pointer == "/client_id"));

    // An artifact cannot name another client's engagement.
    let mut art = new_artifact(b, "intake", json!({}));
    art.engagement_id = Some(e.id);
    let refused = s.create_artifact(art, &ctx()).await;
    assert!(matches!(refused, Err(StoreError::Invalid(ref f)) if f.pointer == "/engagement_id"));
    // Nor a client that does not exist (with or without sources).
    let nobody = s
        .create_artifact(new_artifact(ClientId::new(), "intake", json!({})), &ctx())
        .await;
    assert!(
        matches!(nobody, Err(StoreError::Invalid(ref f)) if f.pointer == "/client_id"),
        "{nobody:?}"
    );
    assert!(
        s.list_artifacts(ArtifactFilter::default(), PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn artifact_versions_are_gap_free_and_guarded(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "A").await;
    let a = s
        .create_artifact(new_artifact(c, "strategy", json!({"v": 1})), &ctx())
        .await
        .unwrap()
        .record;
    assert_eq!(a.summary.version, 1);
    assert_eq!(a.summary.status, ArtifactStatus::Draft);
    for v in 2..=4 {
        let got = s
            .write_content(a.summary.id, v - 1, edit(json!({"v": v})), &ctx())
            .await
            .unwrap();
        assert_eq!(got.artifact.summary.version, v);
        assert_eq!(got.artifact.content, json!({"v": v}));
    }
    // A stale version is refused and changes nothing.
    let stale = s
        .write_content(a.summary.id, 2, edit(json!({"v": "lost"})), &ctx())
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::VersionMismatch {
            expected: 2,
            current: 4
        })
    ));
    let now = s.get_artifact(a.summary.id).await.unwrap();
    assert_eq!(now.summary.version, 4);
    assert_eq!(now.content, json!({"v": 4}));

    let versions = s
        .list_versions(
            a.summary.id,
            PageRequest {
                limit: 3,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        versions.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let rest = s
        .list_versions(
            a.summary.id,
            PageRequest {
                limit: 3,
                cursor: versions.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(rest.next_cursor.is_none());
    assert_eq!(
        s.get_version(a.summary.id, 2).await.unwrap().content,
        json!({"v": 2})
    );
    assert!(matches!(
        s.get_version(a.summary.id, 9).await,
        Err(StoreError::NotFound {
            kind: "version",
            ..
        })
    ));
    assert!(matches!(
        s.get_version(ArtifactId::new(), 1).await,
        Err(StoreError::NotFound {
            kind: "artifact",
            ..
        })
    ));

    // Approved content is not editable.
    for to in [ArtifactStatus::InReview, ArtifactStatus::Approved] {
        s.transition(a.summary.id, to, None, None, false, &ctx())
            .await
            .unwrap();
    }
    let refused = s
        .write_content(a.summary.id, 4, edit(json!({"v": 5})), &ctx())
        .await;
    assert!(matches!(refused, Err(StoreError::NotEditable(_))));
    assert_eq!(
        s.get_artifact(a.summary.id).await.unwrap().summary.version,
        4
    );
}

async fn content_hash_ignores_key_order(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "A").await;
    let x: serde_json::Value =
        serde_json::from_str(r#"{"b": [1, 2.0, {"z": 1, "y": null}], "a": "é"}"#).unwrap();
    let y: serde_json::Value =
        serde_json::from_str(r#"{"a": "\u00e9", "b": [1, 2, {"y": null, "z": 1}]}"#).unwrap();
    let a1 = s
        .create_artifact(new_artifact(c, "intake", x), &ctx())
        .await
        .unwrap()
        .record;
    let a2 = s
        .create_artifact(new_artifact(c, "intake", y), &ctx())
        .await
        .unwrap()
        .record;
    assert_eq!(a1.summary.content_hash, a2.summary.content_hash);
    assert_eq!(
        a1.summary.content_hash,
        waymark_domain::content::content_hash(&json!({"a": "é", "b": [1, 2, {"y": null, "z": 1}]}))
            .to_string()
    );
    let v = s.get_version(a1.summary.id, 1).await.unwrap();
    assert_eq!(v.content_hash, a1.summary.content_hash);
}

async fn transitions_follow_the_lifecycle(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "A").await;
    let id = s
        .create_artifact(new_artifact(c, "sop", json!({})), &ctx())
        .await
        .unwrap()
        .record
        .summary
        .id;
    let refused = s
        .transition(id, ArtifactStatus::Approved, None, None, false, &ctx())
        .await;
    match refused {
        Err(StoreError::Transition(t)) => assert_eq!(
            t.allowed,
            vec![
                ArtifactStatus::InReview,
                ArtifactStatus::Cancelled,
                ArtifactStatus::Archived
            ]
        ),
        other => panic!("expected a refused transition, got {other:?}"),
    }
    assert!(matches!(
        s.transition(id, ArtifactStatus::Stale, None, None, false, &ctx())
            .await,
        Err(StoreError::Transition(_))
    ));
    let mut w = ctx();
    w.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    s.transition(
        id,
        ArtifactStatus::InReview,
        Some("ready for the client".into()),
        None,
        false,
        &w,
    )
    .await
    .unwrap();
    s.transition(
        id,
        ArtifactStatus::Draft,
        Some("withdrawn".into()),
        None,
        false,
        &w,
    )
    .await
    .unwrap();
    let h = s.history(id, PageRequest::default()).await.unwrap().items;
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].action, HistoryAction::Created);
    assert_eq!(h[1].action, HistoryAction::Transition);
    assert_eq!(h[1].from_status, Some(ArtifactStatus::Draft));
    assert_eq!(h[1].to_status, Some(ArtifactStatus::InReview));
    assert_eq!(h[1].reason.as_deref(), Some("ready for the client"));
    assert_eq!(
        h[1].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(h[2].to_status, Some(ArtifactStatus::Draft));
    assert_eq!(h[1].actor, "tok_test");
    let paged = s
        .history(
            id,
            PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let next = s
        .history(
            id,
            PageRequest {
                limit: 2,
                cursor: paged.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(next.items.len(), 1);
    assert_eq!(next.items[0].seq, h[2].seq);
}

async fn rollback_writes_a_new_version(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "A").await;
    let id = s
        .create_artifact(new_artifact(c, "plan", json!({"step": 1})), &ctx())
        .await
        .unwrap()
        .record
        .summary
        .id;
    s.write_content(id, 1, edit(json!({"step": 2})), &ctx())
        .await
        .unwrap();
    s.write_content(id, 2, edit(json!({"step": 3})), &ctx())
        .await
        .unwrap();
    let back = s.rollback(id, 3, 1, None, &ctx()).await.unwrap();
    assert_eq!(back.artifact.summary.version, 4);
    assert_eq!(back.artifact.content, json!({"step": 1}));
    assert_eq!(
        back.artifact.summary.content_hash,
        s.get_version(id, 1).await.unwrap().content_hash
    );
    assert_eq!(
        back.artifact.note.as_deref(),
        Some("Rolled back to version 1")
    );
    assert!(
        matches!(s.rollback(id, 4, 9, None, &ctx()).await, Err(StoreError::Invalid(ref f)) if f.pointer == "/to_version")
    );
    assert!(matches!(
        s.rollback(id, 3, 1, None, &ctx()).await,
        Err(StoreError::VersionMismatch { .. })
    ));
    let h = s.history(id, PageRequest::default()).await.unwrap().items;
    assert_eq!(h.last().unwrap().action, HistoryAction::RolledBack);
    assert_eq!(h.last().unwrap().version, Some(4));
}

async fn sources_are_checked_and_kept(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "A").await;
    let b = client(&*s, "B").await;
    let intake = s
        .create_artifact(new_artifact(a, "intake", json!({"x": 1})), &ctx())
        .await
        .unwrap()
        .record;
    let foreign = s
        .create_artifact(new_artifact(b, "intake", json!({"x": 1})), &ctx())
        .await
        .unwrap()
        .record;
    let src = SourceRef {
        artifact_id: intake.summary.id,
        version: 1,
    };

    let mut strat = new_artifact(a, "strategy", json!({"s": 1}));
    strat.sources = Some(vec![src]);
    let strat = s.create_artifact(strat, &ctx()).await.unwrap().record;
    assert_eq!(strat.sources, vec![src]);
    let plain = s
        .create_artifact(new_artifact(a, "strategy", json!({"s": 1})), &ctx())
        .await
        .unwrap()
        .record;
    assert_ne!(
        strat.inputs_hash, plain.inputs_hash,
        "inputs hash depends on sources"
    );

    // An edit without sources keeps them; an explicit list replaces them.
    let edited = s
        .write_content(strat.summary.id, 1, edit(json!({"s": 2})), &ctx())
        .await
        .unwrap();
    assert_eq!(edited.artifact.sources, vec![src]);
    assert_eq!(edited.artifact.inputs_hash, strat.inputs_hash);
    let mut cleared = edit(json!({"s": 3}));
    cleared.sources = Some(vec![]);
    assert!(
        s.write_content(strat.summary.id, 2, cleared, &ctx())
            .await
            .unwrap()
            .artifact
            .sources
            .is_empty()
    );
    assert_eq!(
        s.get_version(strat.summary.id, 2).await.unwrap().sources,
        vec![src]
    );

    for bad in [
        SourceRef {
            artifact_id: intake.summary.id,
            version: 2,
        },
        SourceRef {
            artifact_id: foreign.summary.id,
            version: 1,
        },
        SourceRef {
            artifact_id: ArtifactId::new(),
            version: 1,
        },
    ] {
        let mut x = new_artifact(a, "strategy", json!({}));
        x.sources = Some(vec![bad]);
        assert!(
            matches!(s.create_artifact(x, &ctx()).await, Err(StoreError::Invalid(ref f)) if f.pointer == "/sources/0")
        );
    }
}

async fn artifact_list_filters(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "A").await;
    let b = client(&*s, "B").await;
    let eng = s
        .create_engagement(
            NewEngagement {
                client_id: a,
                name: "E".into(),
                pack: "p".into(),
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record
        .id;
    let mut first = new_artifact(a, "intake", json!({}));
    first.engagement_id = Some(eng);
    first.title = "Client Intake 100% done_".into();
    let first = s
        .create_artifact(first, &ctx())
        .await
        .unwrap()
        .record
        .summary
        .id;
    let second = s
        .create_artifact(new_artifact(a, "strategy", json!({})), &ctx())
        .await
        .unwrap()
        .record
        .summary
        .id;
    s.create_artifact(new_artifact(b, "intake", json!({})), &ctx())
        .await
        .unwrap();
    s.transition(second, ArtifactStatus::InReview, None, None, false, &ctx())
        .await
        .unwrap();

    let ids = |f: ArtifactFilter| {
        let s = s.clone();
        async move {
            s.list_artifacts(f, PageRequest::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(ArtifactFilter {
            client_id: Some(a),
            ..Default::default()
        })
        .await,
        vec![second, first]
    );
    assert_eq!(
        ids(ArtifactFilter {
            engagement_id: Some(eng),
            ..Default::default()
        })
        .await,
        vec![first]
    );
    assert_eq!(
        ids(ArtifactFilter {
            client_id: Some(a),
            artifact_type: Some("intake".into()),
            ..Default::default()
        })
        .await,
        vec![first]
    );
    assert_eq!(
        ids(ArtifactFilter {
            status: Some(ArtifactStatus::InReview),
            ..Default::default()
        })
        .await,
        vec![second]
    );
    assert_eq!(
        ids(ArtifactFilter {
            q: Some("INTAKE 100%".into()),
            ..Default::default()
        })
        .await,
        vec![first]
    );
    assert!(
        ids(ArtifactFilter {
            q: Some("1000%".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        ids(ArtifactFilter {
            q: Some("done_".into()),
            ..Default::default()
        })
        .await,
        vec![first]
    );
    assert_eq!(ids(ArtifactFilter::default()).await.len(), 3);
}

async fn idempotency_keys_replay_or_refuse(db: &TestDb) {
    let s = store(db);
    let mut w = ctx();
    w.idempotency = Some(IdempotencyKey {
        scope: "tok_a".into(),
        key: "k1".into(),
        request_hash: "h1".into(),
    });
    let first = s
        .create_client(
            NewClient {
                name: "Once".into(),
                ..Default::default()
            },
            &w,
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = s
        .create_client(
            NewClient {
                name: "Once".into(),
                ..Default::default()
            },
            &w,
        )
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.record.id, first.record.id);
    assert_eq!(
        s.list_clients(PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let mut other = w.clone();
    other.idempotency.as_mut().unwrap().request_hash = "h2".into();
    assert!(matches!(
        s.create_client(
            NewClient {
                name: "Twice".into(),
                ..Default::default()
            },
            &other
        )
        .await,
        Err(StoreError::IdempotencyMismatch { .. })
    ));
    // Same key, another caller: a separate request.
    let mut scoped = w.clone();
    scoped.idempotency.as_mut().unwrap().scope = "tok_b".into();
    assert!(
        !s.create_client(
            NewClient {
                name: "Once".into(),
                ..Default::default()
            },
            &scoped
        )
        .await
        .unwrap()
        .replayed
    );
    assert_eq!(
        s.list_clients(PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

async fn tokens_are_found_by_hash_and_rotated(db: &TestDb) {
    let s = store(db);
    let t = s
        .create_token(NewToken::standalone("ci", Role::Admin, vec![1; 32]), &ctx())
        .await
        .unwrap();
    let found = s.token_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found.id, t.id);
    assert_eq!(found.role, Role::Admin);
    assert!(s.token_by_hash(&[2; 32]).await.unwrap().is_none());

    let admin = |h: u8| NewToken::standalone("admin (env)", Role::Admin, vec![h; 32]);
    assert!(!s.live_token_named("admin (env)").await.unwrap());
    assert!(s.replace_named_token(admin(7)).await.unwrap());
    assert!(
        !s.replace_named_token(admin(7)).await.unwrap(),
        "same secret: nothing to do"
    );
    assert!(s.replace_named_token(admin(8)).await.unwrap());
    let old = s.token_by_hash(&[7; 32]).await.unwrap().unwrap();
    assert!(old.revoked_at.is_some(), "the previous secret is revoked");
    assert!(
        s.token_by_hash(&[8; 32])
            .await
            .unwrap()
            .unwrap()
            .is_live(time::OffsetDateTime::now_utc())
    );
    assert!(
        s.replace_named_token(admin(7)).await.unwrap(),
        "an old secret can come back"
    );
    assert!(
        s.token_by_hash(&[7; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(s.live_token_named("admin (env)").await.unwrap());

    let expired = NewToken {
        expires_at: Some(time::OffsetDateTime::now_utc() - time::Duration::hours(1)),
        ..NewToken::standalone("old", Role::Operator, vec![9; 32])
    };
    s.create_token(expired, &ctx()).await.unwrap();
    assert!(!s.live_token_named("old").await.unwrap());
    assert!(
        !s.token_by_hash(&[9; 32])
            .await
            .unwrap()
            .unwrap()
            .is_live(time::OffsetDateTime::now_utc())
    );
}

async fn concurrent_writers_one_wins_per_version(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "A").await;
    let id = s
        .create_artifact(new_artifact(c, "doc", json!({"n": 0})), &ctx())
        .await
        .unwrap()
        .record
        .summary
        .id;
    // 20 writers all read version 1 and race; exactly one may win.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.write_content(id, 1, edit(json!({"n": i})), &ctx()).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::VersionMismatch { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(won, 1);
    // Then 20 writers that each retry until they land: a gap-free sequence.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    let v = s.get_artifact(id).await.unwrap().summary.version;
                    match s.write_content(id, v, edit(json!({"n": i})), &ctx()).await {
                        Ok(a) => return a.artifact.summary.version,
                        Err(StoreError::VersionMismatch { .. }) => continue,
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                }
            })
        })
        .collect();
    let mut versions = vec![];
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (3..=22).collect::<Vec<i64>>());
    let all = s
        .list_versions(
            id,
            PageRequest {
                limit: 200,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        all.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=22).collect::<Vec<i64>>()
    );
}

// --- pipelines ----------------------------------------------------------------

fn pipe(requires: &[&str]) -> Option<Pipeline> {
    Some(Pipeline {
        requires: requires.iter().map(|r| (*r).into()).collect(),
        generator: json!({"parameters": {"temperature": 0.2}}),
    })
}

async fn engagement(s: &dyn Store, client_id: ClientId) -> waymark_domain::EngagementId {
    s.create_engagement(
        NewEngagement {
            client_id,
            name: "Launch".into(),
            pack: "marketing-engagement".into(),
        },
        &ctx(),
    )
    .await
    .unwrap()
    .record
    .id
}

async fn in_pipeline(
    s: &dyn Store,
    client_id: ClientId,
    eng: waymark_domain::EngagementId,
    ty: &str,
    requires: &[&str],
) -> Result<Artifact> {
    let mut new = new_artifact(client_id, ty, json!({"about": ty}));
    new.engagement_id = Some(eng);
    new.pipeline = pipe(requires);
    s.create_artifact(new, &ctx()).await.map(|c| c.record)
}

async fn approve(s: &dyn Store, id: ArtifactId) -> Artifact {
    s.transition(id, ArtifactStatus::InReview, None, None, false, &ctx())
        .await
        .unwrap();
    s.transition(id, ArtifactStatus::Approved, None, None, false, &ctx())
        .await
        .unwrap()
}

/// intake -> strategy -> creatives, all approved.
async fn approved_chain(s: &dyn Store) -> (Artifact, Artifact, Artifact) {
    let c = client(s, "Acme").await;
    let e = engagement(s, c).await;
    let intake = in_pipeline(s, c, e, "intake", &[]).await.unwrap();
    approve(s, intake.summary.id).await;
    let strategy = in_pipeline(s, c, e, "strategy", &["intake"]).await.unwrap();
    approve(s, strategy.summary.id).await;
    let creatives = in_pipeline(s, c, e, "creatives", &["strategy"])
        .await
        .unwrap();
    let creatives = approve(s, creatives.summary.id).await;
    (
        intake,
        s.get_artifact(strategy.summary.id).await.unwrap(),
        creatives,
    )
}

async fn reopen_and_edit(s: &dyn Store, a: &Artifact, content: serde_json::Value) -> Written {
    s.transition(
        a.summary.id,
        ArtifactStatus::Draft,
        Some("changes".into()),
        None,
        false,
        &ctx(),
    )
    .await
    .unwrap();
    s.write_content(a.summary.id, a.summary.version, edit(content), &ctx())
        .await
        .unwrap()
}

async fn gating_refuses_locked_types_and_defaults_sources(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let e = engagement(&*s, c).await;
    let refused = in_pipeline(&*s, c, e, "strategy", &["intake"]).await;
    match refused {
        Err(StoreError::Gated(g)) => {
            assert_eq!(g.artifact_type, "strategy");
            assert_eq!(g.reasons, ["intake (missing)"]);
        }
        other => panic!("expected gating, got {other:?}"),
    }
    let intake = in_pipeline(&*s, c, e, "intake", &[]).await.unwrap();
    match in_pipeline(&*s, c, e, "strategy", &["intake"]).await {
        Err(StoreError::Gated(g)) => assert_eq!(g.reasons, ["intake (draft - must be approved)"]),
        other => panic!("expected gating, got {other:?}"),
    }
    let none = s
        .list_artifacts(
            ArtifactFilter {
                artifact_type: Some("strategy".into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty(), "a refused create writes nothing");

    approve(&*s, intake.summary.id).await;
    let strategy = in_pipeline(&*s, c, e, "strategy", &["intake"])
        .await
        .unwrap();
    assert_eq!(
        strategy.sources,
        [SourceRef {
            artifact_id: intake.summary.id,
            version: 1
        }],
        "sources default to the current upstream artifacts"
    );
    let current = s.current_artifacts(e).await.unwrap();
    let mut types: Vec<&str> = current.iter().map(|a| a.artifact_type.as_str()).collect();
    types.sort();
    assert_eq!(types, ["intake", "strategy"]);
}

async fn stale_cascade_flags_downstream_transitively(db: &TestDb) {
    let s = store(db);
    let (intake, strategy, creatives) = approved_chain(&*s).await;
    let written = reopen_and_edit(&*s, &intake, json!({"about": "intake, revised"})).await;
    let flagged: Vec<ArtifactId> = written.flagged.iter().map(|f| f.artifact_id).collect();
    assert_eq!(flagged, [strategy.summary.id, creatives.summary.id]);
    assert_eq!(
        written.flagged[0].reason,
        "Upstream intake changed from v1 to v2"
    );

    let st = s.get_artifact(strategy.summary.id).await.unwrap();
    assert_eq!(st.summary.status, ArtifactStatus::Stale);
    assert_eq!(
        st.summary.stale_reason.as_deref(),
        Some("Upstream intake changed from v1 to v2")
    );
    let cause = &st.summary.stale_causes[0];
    assert_eq!(
        cause.category,
        waymark_domain::cascade::StaleCategory::UpstreamChanged
    );
    assert_eq!((cause.from_version, cause.to_version), (1, Some(2)));
    assert_eq!(cause.dependency, intake.summary.id);

    let cr = s.get_artifact(creatives.summary.id).await.unwrap();
    assert_eq!(cr.summary.status, ArtifactStatus::Stale);
    assert_eq!(
        cr.summary.stale_reason.as_deref(),
        Some("Upstream strategy is stale (intake changed from v1 to v2)")
    );
    assert_eq!(
        cr.summary.stale_causes[0].root.artifact_id,
        intake.summary.id
    );

    let history = s
        .history(creatives.summary.id, PageRequest::default())
        .await
        .unwrap();
    let last = history.items.last().unwrap();
    assert_eq!(last.action, HistoryAction::MarkedStale);
    assert_eq!(last.from_status, Some(ArtifactStatus::Approved));
    assert_eq!(last.to_status, Some(ArtifactStatus::Stale));
    assert_eq!(last.version, Some(1));

    // Stale locks the downstream types.
    let c = intake.summary.client_id;
    let e = intake.summary.engagement_id.unwrap();
    match in_pipeline(&*s, c, e, "execution", &["strategy", "creatives"]).await {
        Err(StoreError::Gated(g)) => assert_eq!(
            g.reasons,
            [
                "strategy (stale - must be re-approved)",
                "creatives (stale - must be re-approved)"
            ]
        ),
        other => panic!("expected gating, got {other:?}"),
    }
}

async fn unchanged_content_flags_nothing(db: &TestDb) {
    let s = store(db);
    let (intake, strategy, _) = approved_chain(&*s).await;
    // Same content, keys in another order: the canonical hash is unchanged.
    let written = reopen_and_edit(&*s, &intake, json!({"about": "intake"})).await;
    assert_eq!(written.artifact.summary.version, 2);
    assert!(written.flagged.is_empty());
    let st = s.get_artifact(strategy.summary.id).await.unwrap();
    assert_eq!(st.summary.status, ArtifactStatus::Approved);
}

async fn reapproval_rebases_sources(db: &TestDb) {
    let s = store(db);
    let (intake, strategy, creatives) = approved_chain(&*s).await;
    reopen_and_edit(&*s, &intake, json!({"about": "intake, revised"})).await;
    // Not while the revised intake is a draft: that would re-base the
    // strategy onto an unapproved input.
    let early = s
        .transition(
            strategy.summary.id,
            ArtifactStatus::Approved,
            Some("still valid".into()),
            pipe(&["intake"]),
            false,
            &ctx(),
        )
        .await;
    match early {
        Err(StoreError::Gated(g)) => {
            assert_eq!(g.reasons, ["intake (draft - must be approved)"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.get_artifact(strategy.summary.id)
            .await
            .unwrap()
            .summary
            .status,
        ArtifactStatus::Stale
    );
    approve(&*s, intake.summary.id).await;
    let rebased = s
        .transition(
            strategy.summary.id,
            ArtifactStatus::Approved,
            Some("still valid".into()),
            pipe(&["intake"]),
            false,
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(rebased.summary.status, ArtifactStatus::Approved);
    assert_eq!(rebased.summary.version, 2);
    assert_eq!(rebased.content, strategy.content);
    assert_eq!(rebased.summary.content_hash, strategy.summary.content_hash);
    assert_eq!(rebased.sources[0].version, 2, "re-based onto intake v2");
    assert_ne!(rebased.inputs_hash, strategy.inputs_hash);
    assert_eq!(rebased.summary.stale_reason, None);
    assert!(rebased.summary.stale_causes.is_empty());
    // Same content: creatives stay stale until a person re-approves them too.
    let cr = s.get_artifact(creatives.summary.id).await.unwrap();
    assert_eq!(cr.summary.status, ArtifactStatus::Stale);
    let cr = s
        .transition(
            creatives.summary.id,
            ArtifactStatus::Approved,
            None,
            None,
            false,
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(cr.sources[0].version, 2, "re-based onto strategy v2");
    let history = s
        .history(strategy.summary.id, PageRequest::default())
        .await
        .unwrap();
    let actions: Vec<HistoryAction> = history
        .items
        .iter()
        .rev()
        .take(2)
        .map(|h| h.action)
        .collect();
    assert_eq!(actions, [HistoryAction::Transition, HistoryAction::Rebased]);
}

async fn new_content_clears_stale(db: &TestDb) {
    let s = store(db);
    let (intake, strategy, _) = approved_chain(&*s).await;
    reopen_and_edit(&*s, &intake, json!({"about": "intake, revised"})).await;
    let w = s
        .write_content(
            strategy.summary.id,
            1,
            edit(json!({"about": "regenerated"})),
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(w.artifact.summary.status, ArtifactStatus::Draft);
    assert_eq!(w.artifact.summary.stale_reason, None);
    // Without pipeline rules, an edit keeps the previous sources.
    assert_eq!(w.artifact.sources[0].version, 1);
    let mut again = edit(json!({"about": "regenerated twice"}));
    again.pipeline = pipe(&["intake"]);
    let w = s
        .write_content(strategy.summary.id, 2, again, &ctx())
        .await
        .unwrap();
    assert_eq!(
        w.artifact.sources[0].version, 2,
        "pipeline edits build on the current intake"
    );
}

async fn lineage_walks_both_ways(db: &TestDb) {
    let s = store(db);
    let (intake, strategy, creatives) = approved_chain(&*s).await;
    s.optimize().await.unwrap();
    let l = s.lineage(strategy.summary.id, 100).await.unwrap();
    assert_eq!(l.upstream.len(), 1);
    assert_eq!(l.upstream[0].artifact_id, intake.summary.id);
    assert_eq!((l.upstream[0].version, l.upstream[0].depth), (1, 1));
    assert_eq!(l.downstream.len(), 1);
    assert_eq!(l.downstream[0].artifact_id, creatives.summary.id);
    assert_eq!(l.downstream[0].via.artifact_id, strategy.summary.id);
    let l = s.lineage(intake.summary.id, 100).await.unwrap();
    let depths: Vec<(ArtifactId, i64)> = l
        .downstream
        .iter()
        .map(|n| (n.artifact_id, n.depth))
        .collect();
    assert_eq!(
        depths,
        [(strategy.summary.id, 1), (creatives.summary.id, 2)]
    );
    assert!(!l.truncated);
    let l = s.lineage(creatives.summary.id, 1).await.unwrap();
    assert_eq!(l.upstream.len(), 1);
    assert!(l.truncated);
    assert!(matches!(
        s.lineage(ArtifactId::new(), 10).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn plans_and_installed_packs_round_trip(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let e = engagement(&*s, c).await;
    assert!(s.get_plan(e).await.unwrap().is_none());
    let p = s
        .save_plan(e, Some(vec!["icp_definition".into()]), &ctx())
        .await
        .unwrap();
    assert_eq!(p.deliverables, Some(vec!["icp_definition".to_owned()]));
    let p = s.save_plan(e, None, &ctx()).await.unwrap();
    assert_eq!(p.deliverables, None);
    assert!(p.updated_at >= p.created_at);

    assert!(s.installed_pack("tiny").await.unwrap().is_none());
    let files =
        std::collections::BTreeMap::from([("pack.yaml".to_owned(), "name: tiny".to_owned())]);
    let mut pack = InstalledPack {
        name: "tiny".into(),
        version: "1.0.0".into(),
        digest: "sha256:aa".into(),
        files,
        installed_by: "tok_test".into(),
        installed_at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap(),
    };
    s.install_pack(pack.clone(), &[], &ctx()).await.unwrap();
    pack.version = "1.1.0".into();
    pack.digest = "sha256:bb".into();
    s.install_pack(pack.clone(), &[], &ctx()).await.unwrap();
    let got = s.installed_pack("tiny").await.unwrap().unwrap();
    assert_eq!((got.version.as_str(), got.files.len()), ("1.1.0", 1));
    assert_eq!(
        s.installed_pack_digest("tiny").await.unwrap().as_deref(),
        Some("sha256:bb")
    );
    assert_eq!(s.list_installed_packs().await.unwrap().len(), 1);
}

/// An engagement on the pack `tiny` with intake (a person's), strategy (from
/// `strategy_by`) and creatives (a person's on the strategy), all approved.
async fn tiny_chain(s: &dyn Store, c: ClientId, strategy_by: &str) -> [ArtifactId; 3] {
    let e = s
        .create_engagement(
            NewEngagement {
                client_id: c,
                name: format!("Tiny by {strategy_by}"),
                pack: "tiny".into(),
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record
        .id;
    let mut ids = Vec::new();
    for (ty, requires, provenance) in [
        ("intake", vec![], "human"),
        ("strategy", vec!["intake"], strategy_by),
        ("creatives", vec!["strategy"], "human"),
    ] {
        let mut new = new_artifact(c, ty, json!({"about": ty}));
        new.engagement_id = Some(e);
        new.pipeline = pipe(&requires);
        new.provenance = provenance.into();
        let a = s.create_artifact(new, &ctx()).await.unwrap().record;
        approve(s, a.summary.id).await;
        ids.push(a.summary.id);
    }
    [ids[0], ids[1], ids[2]]
}

async fn a_changed_generator_makes_what_it_built_stale(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let [intake, strategy, creatives] = tiny_chain(&*s, c, "template").await;
    let [_, written, on_written] = tiny_chain(&*s, c, "human").await;
    let pack = InstalledPack {
        name: "tiny".into(),
        version: "1.0.0".into(),
        digest: "sha256:aa".into(),
        files: Default::default(),
        installed_by: "tok_test".into(),
        installed_at: time::OffsetDateTime::now_utc(),
    };
    let none = s.install_pack(pack.clone(), &[], &ctx()).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
    let flagged = s
        .install_pack(pack, &["strategy".to_owned()], &ctx())
        .await
        .unwrap();
    let ids: Vec<ArtifactId> = flagged.iter().map(|f| f.artifact_id).collect();
    assert_eq!(
        ids,
        [strategy, creatives],
        "only what the generator built, and what is built on it"
    );

    let st = s.get_artifact(strategy).await.unwrap().summary;
    assert_eq!(st.status, ArtifactStatus::Stale);
    assert_eq!(
        st.stale_reason.as_deref(),
        Some("The strategy generator changed since v1 was generated")
    );
    assert_eq!(
        st.stale_causes[0].category,
        waymark_domain::cascade::StaleCategory::GeneratorChanged
    );
    assert!(st.stale_causes[0].root.generator_changed);
    let cr = s.get_artifact(creatives).await.unwrap().summary;
    assert_eq!(cr.status, ArtifactStatus::Stale);
    assert_eq!(
        cr.stale_reason.as_deref(),
        Some("Upstream strategy is stale (the strategy generator changed)")
    );
    assert_eq!(
        cr.stale_causes[0].category,
        waymark_domain::cascade::StaleCategory::UpstreamStale
    );
    for untouched in [intake, written, on_written] {
        assert_eq!(
            s.get_artifact(untouched).await.unwrap().summary.status,
            ArtifactStatus::Approved
        );
    }
    let history = s.history(strategy, PageRequest::default()).await.unwrap();
    let last = history.items.last().unwrap();
    assert_eq!(last.action, HistoryAction::MarkedStale);
    assert_eq!(
        last.reason.as_deref(),
        Some("The strategy generator changed since v1 was generated")
    );
}

async fn status_columns_refuse_values_the_domain_does_not_know(db: &TestDb) {
    let s: Arc<dyn Store> = db.store.clone();
    let c = s
        .create_client(
            NewClient {
                name: "Acme".into(),
                ..Default::default()
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record;
    let a = s
        .create_artifact(
            NewArtifact {
                client_id: c.id,
                engagement_id: None,
                artifact_type: "plan".into(),
                title: "Plan".into(),
                content: serde_json::json!({}),
                sources: None,
                note: None,
                provenance: "human".into(),
                pipeline: None,
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record;
    for statement in [
        "UPDATE artifacts SET status = 'nearly_approved'",
        "UPDATE artifacts SET status = 'Approved'",
    ] {
        assert!(db.execute_raw(statement).await.is_err(), "{statement}");
    }
    assert!(
        db.execute_raw("UPDATE artifacts SET status = 'in_review'")
            .await
            .is_ok()
    );
    assert_eq!(
        s.get_artifact(a.summary.id).await.unwrap().summary.status,
        waymark_domain::lifecycle::ArtifactStatus::InReview
    );
}

async fn a_sign_in_link_is_redeemed_once(db: &TestDb) {
    let s = store(db);
    let now = time::OffsetDateTime::now_utc();
    let link = |h: u8, kind, minutes: i64| NewToken {
        kind,
        expires_at: Some(now + time::Duration::minutes(minutes)),
        ..NewToken::standalone("sign-in link", Role::Operator, vec![h; 32])
    };
    let t = s
        .create_token(link(21, waymark_store::TokenKind::SignInLink, 15), &ctx())
        .await
        .unwrap();
    // Racing redemptions: exactly one wins.
    let (c1, c2) = (ctx(), ctx());
    let (a, b) = tokio::join!(
        s.redeem_sign_in_link(t.id, &c1),
        s.redeem_sign_in_link(t.id, &c2)
    );
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|x| **x).count(), 1);
    assert!(!s.redeem_sign_in_link(t.id, &ctx()).await.unwrap());
    assert!(s.get_token(t.id).await.unwrap().revoked_at.is_some());
    let expired = s
        .create_token(link(22, waymark_store::TokenKind::SignInLink, -1), &ctx())
        .await
        .unwrap();
    assert!(!s.redeem_sign_in_link(expired.id, &ctx()).await.unwrap());
    let api = s
        .create_token(link(23, waymark_store::TokenKind::Api, 15), &ctx())
        .await
        .unwrap();
    assert!(
        !s.redeem_sign_in_link(api.id, &ctx()).await.unwrap(),
        "only sign-in links are redeemed"
    );
    assert!(s.get_token(api.id).await.unwrap().revoked_at.is_none());
}
