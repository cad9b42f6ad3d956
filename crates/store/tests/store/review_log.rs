//! The store contract for review, the audit chain and the event outbox: every
//! backend must pass these, unchanged.

use std::sync::Arc;

use serde_json::json;
use waymark_domain::audit::{ChainBreak, Verifier};
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::review::{ApprovalPolicy, ApproverKind, Approvers, Decision, ReviewError};
use waymark_domain::{ArtifactId, ClientId};
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(
    approvals_follow_the_policy_and_bind_to_the_version,
    rejection_returns_to_draft_with_the_reason,
    comments_check_sections_threads_and_internal,
    every_write_is_audited_and_the_chain_verifies,
    a_tampered_row_is_named,
    events_follow_commit_order_and_scope,
    concurrent_review_stays_consistent,
    many_writers_keep_the_log_gap_free_and_chained,
    two_processes_append_to_one_chain,
    writes_committed_together_succeed_and_fail_apart,
);

fn ctx(actor: &str) -> WriteContext {
    WriteContext::new(actor)
}

fn store(db: &TestDb) -> Arc<dyn Store> {
    db.store.clone()
}

fn person(id: &str, kind: ApproverKind) -> Reviewer {
    Reviewer {
        id: id.into(),
        name: format!("name of {id}"),
        kind,
    }
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

async fn artifact(s: &dyn Store, c: ClientId, content: serde_json::Value) -> ArtifactId {
    s.create_artifact(
        NewArtifact {
            client_id: c,
            engagement_id: None,
            artifact_type: "migration_plan".into(),
            title: "Migration plan".into(),
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

async fn verify(s: &dyn Store) -> Result<u64, ChainBreak> {
    let mut v = Verifier::new();
    loop {
        let page = s.audit_chain(v.last_seq(), 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        for r in &page {
            v.check(r)?;
        }
    }
    let head = s.audit_head().await.unwrap();
    v.finish(head.seq, &head.hash)
}

async fn approvals_follow_the_policy_and_bind_to_the_version(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let id = artifact(&*s, c, json!({"phases": [1, 2]})).await;
    let policy = ApprovalPolicy {
        required: 2,
        approvers: Approvers::Client,
    };
    let ana = person("usr_ana", ApproverKind::ClientContact);
    let bo = person("rvl_bo", ApproverKind::Reviewer);
    let op = person("usr_op", ApproverKind::Staff);
    // Not shared yet.
    let e = s
        .approve(id, 1, None, &ana, policy, &ctx("usr_ana"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        StoreError::Review(ReviewError::NotInReview { .. })
    ));
    let shared = s
        .share(id, Some("Please review".into()), &op, &ctx("usr_op"))
        .await
        .unwrap();
    assert_eq!(shared.summary.status, ArtifactStatus::InReview);
    assert!(shared.summary.shared_at.is_some());
    let hash = shared.summary.content_hash.clone();
    // Staff are not eligible under a client policy; a wrong hash is refused.
    assert!(matches!(
        s.approve(id, 1, None, &op, policy, &ctx("usr_op")).await,
        Err(StoreError::Review(ReviewError::NotEligible { .. }))
    ));
    assert!(matches!(
        s.approve(id, 1, Some("00".into()), &ana, policy, &ctx("usr_ana"))
            .await,
        Err(StoreError::Review(ReviewError::HashMismatch { .. }))
    ));
    assert!(matches!(
        s.approve(id, 2, None, &ana, policy, &ctx("usr_ana")).await,
        Err(StoreError::Review(ReviewError::NotLatest { .. }))
    ));
    let first = s
        .approve(id, 1, Some(hash.clone()), &ana, policy, &ctx("usr_ana"))
        .await
        .unwrap();
    assert_eq!(
        first.decision,
        Decision::Recorded {
            count: 1,
            required: 2
        }
    );
    assert_eq!(first.artifact.summary.status, ArtifactStatus::InReview);
    assert!(matches!(
        s.approve(id, 1, None, &ana, policy, &ctx("usr_ana")).await,
        Err(StoreError::Review(ReviewError::AlreadyApproved))
    ));
    let second = s
        .approve(id, 1, None, &bo, policy, &ctx("rvl_bo"))
        .await
        .unwrap();
    assert_eq!(second.decision, Decision::Approved { count: 2 });
    assert_eq!(second.artifact.summary.status, ArtifactStatus::Approved);
    let state = s.review_state(id, policy).await.unwrap();
    assert_eq!(state.approvals.len(), 2);
    assert_eq!((state.required, state.round), (2, 1));
    assert!(state.approvals.iter().all(|a| a.content_hash == hash));
    // Nobody approves their own work, even under an `any` policy.
    let own = artifact(&*s, c, json!({"x": 1})).await;
    s.share(own, None, &op, &ctx("usr_op")).await.unwrap();
    let any = ApprovalPolicy {
        required: 1,
        approvers: Approvers::Any,
    };
    assert!(matches!(
        s.approve(own, 1, None, &op, any, &ctx("usr_op")).await,
        Err(StoreError::Review(ReviewError::OwnWork))
    ));
    let other_op = person("usr_op2", ApproverKind::Staff);
    let done = s
        .approve(own, 1, None, &other_op, any, &ctx("usr_op2"))
        .await
        .unwrap();
    assert_eq!(done.artifact.summary.status, ArtifactStatus::Approved);
}

async fn rejection_returns_to_draft_with_the_reason(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let id = artifact(&*s, c, json!({"a": 1})).await;
    let op = person("usr_op", ApproverKind::Staff);
    let ana = person("usr_ana", ApproverKind::ClientContact);
    let policy = ApprovalPolicy::default();
    s.share(id, None, &op, &ctx("usr_op")).await.unwrap();
    let (a, comment) = s
        .reject(
            id,
            "Wave 2 is too early".into(),
            &ana,
            policy,
            &ctx("usr_ana"),
        )
        .await
        .unwrap();
    assert_eq!(a.summary.status, ArtifactStatus::Draft);
    assert_eq!(comment.kind, CommentKind::Rejection);
    assert_eq!(comment.body, "Wave 2 is too early");
    let listed = s
        .list_comments(id, false, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    // A second round: the approval of round 1 does not carry over.
    s.share(id, None, &op, &ctx("usr_op")).await.unwrap();
    let st = s.review_state(id, policy).await.unwrap();
    assert_eq!((st.round, st.approvals.len()), (2, 0));
    s.reject(id, "x".into(), &ana, policy, &ctx("usr_ana"))
        .await
        .unwrap();
    assert!(matches!(
        s.reject(id, "again".into(), &ana, policy, &ctx("usr_ana"))
            .await,
        Err(StoreError::Review(ReviewError::NotInReview { .. }))
    ));
}

async fn comments_check_sections_threads_and_internal(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let id = artifact(
        &*s,
        c,
        json!({"phases": [{"name": "pilot"}, {"name": "waves"}]}),
    )
    .await;
    let op = person("usr_op", ApproverKind::Staff);
    let ana = person("usr_ana", ApproverKind::ClientContact);
    let new = |body: &str, section: Option<&str>| NewComment {
        version: None,
        section: section.map(str::to_owned),
        parent_id: None,
        body: body.into(),
        internal: false,
    };
    let top = s
        .add_comment(
            id,
            new("Phase 2 dates?", Some("/phases/1")),
            &ana,
            &ctx("usr_ana"),
        )
        .await
        .unwrap();
    assert_eq!(top.section.as_deref(), Some("/phases/1"));
    assert_eq!(top.version, 1);
    let e = s
        .add_comment(id, new("?", Some("/phases/7")), &ana, &ctx("usr_ana"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref f) if f.pointer == "/section"),
        "{e:?}"
    );
    let reply = s
        .add_comment(
            id,
            NewComment {
                parent_id: Some(top.id),
                ..new("Moved to March", None)
            },
            &op,
            &ctx("usr_op"),
        )
        .await
        .unwrap();
    assert_eq!(reply.parent_id, Some(top.id));
    let internal = s
        .add_comment(
            id,
            NewComment {
                internal: true,
                ..new("Client is slow to answer", None)
            },
            &op,
            &ctx("usr_op"),
        )
        .await
        .unwrap();
    let e = s
        .add_comment(
            id,
            NewComment {
                parent_id: Some(internal.id),
                ..new("public reply", None)
            },
            &op,
            &ctx("usr_op"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(ref f) if f.pointer == "/internal"));
    let public = s
        .list_comments(id, false, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(public.items.len(), 2);
    assert!(public.items.iter().all(|c| !c.internal));
    let all = s
        .list_comments(id, true, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    let resolved = s.resolve_comment(top.id, &ctx("usr_ana")).await.unwrap();
    assert!(resolved.resolved_at.is_some());
    assert_eq!(resolved.resolved_by.as_deref(), Some("usr_ana"));
    // A comment on another artifact is not a parent here.
    let other = artifact(&*s, c, json!({})).await;
    let e = s
        .add_comment(
            other,
            NewComment {
                parent_id: Some(top.id),
                ..new("x", None)
            },
            &op,
            &ctx("usr_op"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(ref f) if f.pointer == "/parent_id"));
}

async fn every_write_is_audited_and_the_chain_verifies(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let id = artifact(&*s, c, json!({"a": 1})).await;
    let w = s
        .write_content(
            id,
            1,
            NewVersion {
                content: json!({"a": 2}),
                sources: None,
                note: None,
                provenance: "human".into(),
                pipeline: None,
            },
            &ctx("usr_op"),
        )
        .await
        .unwrap();
    s.share(
        id,
        None,
        &person("usr_op", ApproverKind::Staff),
        &ctx("usr_op"),
    )
    .await
    .unwrap();
    let page = s
        .list_audit(
            AuditFilter {
                target: Some(id.to_string()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    let actions: Vec<&str> = page
        .items
        .iter()
        .map(|e| e.record.action.as_str())
        .collect();
    assert_eq!(
        actions,
        ["artifact.share", "artifact.write", "artifact.create"]
    );
    let write = &page.items[1].record;
    assert_eq!(
        write.after_hash.as_deref(),
        Some(w.artifact.summary.content_hash.as_str())
    );
    assert_ne!(write.before_hash, write.after_hash);
    assert_eq!(write.client_id.as_deref(), Some(c.to_string().as_str()));
    assert_eq!(write.actor, "usr_op");
    let by_client = s
        .list_audit(
            AuditFilter {
                client_id: Some(c),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(by_client.items.len(), 4, "client, artifact, write, share");
    // A refused write leaves no record.
    let before = s.audit_head().await.unwrap();
    assert!(
        s.approve(
            id,
            9,
            None,
            &person("usr_ana", ApproverKind::ClientContact),
            ApprovalPolicy::default(),
            &ctx("usr_ana")
        )
        .await
        .is_err()
    );
    assert_eq!(s.audit_head().await.unwrap().seq, before.seq);
    assert_eq!(verify(&*s).await, Ok(before.seq as u64));
}

async fn a_tampered_row_is_named(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    for i in 0..5 {
        artifact(&*s, c, json!({ "i": i })).await;
    }
    let n = verify(&*s).await.unwrap();
    assert_eq!(n, 6);
    let changed = db
        .execute_raw("UPDATE audit_log SET actor = 'usr_mallory' WHERE seq = 4")
        .await
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(verify(&*s).await, Err(ChainBreak::Altered { seq: 4 }));
    db.execute_raw("DELETE FROM audit_log WHERE seq = 4")
        .await
        .unwrap();
    assert!(matches!(
        verify(&*s).await,
        Err(ChainBreak::Gap { found: 5, .. })
    ));
}

async fn events_follow_commit_order_and_scope(db: &TestDb) {
    let s = store(db);
    let start = s.last_event_seq().await.unwrap();
    let a = client(&*s, "A").await;
    let b = client(&*s, "B").await;
    let in_a = artifact(&*s, a, json!({"a": 1})).await;
    let in_b = artifact(&*s, b, json!({"b": 1})).await;
    let op = person("usr_op", ApproverKind::Staff);
    s.share(in_a, Some("Have a look".into()), &op, &ctx("usr_op"))
        .await
        .unwrap();
    s.share(in_b, None, &op, &ctx("usr_op")).await.unwrap();
    s.add_comment(
        in_a,
        NewComment {
            version: None,
            section: None,
            parent_id: None,
            body: "internal note".into(),
            internal: true,
        },
        &op,
        &ctx("usr_op"),
    )
    .await
    .unwrap();
    let all = s.events_after(start, EventScope::All, 100).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, ((start + 1)..=(start + 7)).collect::<Vec<_>>());
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "client.created",
            "client.created",
            "artifact.created",
            "artifact.created",
            "artifact.shared",
            "artifact.shared",
            "comment.created"
        ]
    );
    let for_a = s
        .events_after(start, EventScope::Client(a), 100)
        .await
        .unwrap();
    assert_eq!(for_a.len(), 1, "only A's shared artifact: {for_a:?}");
    assert_eq!(for_a[0].event_type, "artifact.shared");
    assert_eq!(for_a[0].data["message"], "Have a look");
    assert_eq!(for_a[0].subject, in_a.to_string());
    let staff = s.events_after(start, EventScope::Staff, 100).await.unwrap();
    assert_eq!(staff.len(), 7);
    let ce = all[4].cloudevent("https://waymark.example");
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["type"], "artifact.shared");
    assert!(ce["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(s.event_seq(all[4].id).await.unwrap(), Some(all[4].seq));
}

async fn concurrent_review_stays_consistent(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let id = artifact(&*s, c, json!({"n": 0})).await;
    // 50 writers race on one draft: each version is written once, gap-free.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let cur = s.get_artifact(id).await.unwrap().summary.version;
                let r = s
                    .write_content(
                        id,
                        cur,
                        NewVersion {
                            content: json!({ "n": i }),
                            sources: None,
                            note: None,
                            provenance: "human".into(),
                            pipeline: None,
                        },
                        &ctx("usr_op"),
                    )
                    .await;
                match r {
                    Ok(_) => return true,
                    Err(StoreError::VersionMismatch { .. } | StoreError::Conflict(_)) => continue,
                    Err(e) => panic!("{e:?}"),
                }
            }
            false
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() {
            won += 1;
        }
    }
    let a = s.get_artifact(id).await.unwrap();
    assert_eq!(a.summary.version, 1 + won);
    let versions = s
        .list_versions(
            id,
            PageRequest {
                limit: 200,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let numbers: Vec<i64> = versions.items.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=a.summary.version).collect::<Vec<_>>());
    // Then 50 concurrent comments and approvals by 10 people, one policy of 3.
    let op = person("usr_op", ApproverKind::Staff);
    s.share(id, None, &op, &ctx("usr_op")).await.unwrap();
    let policy = ApprovalPolicy {
        required: 3,
        approvers: Approvers::Client,
    };
    let version = a.summary.version;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let who = person(&format!("usr_c{}", i % 10), ApproverKind::ClientContact);
            if i % 2 == 0 {
                s.add_comment(
                    id,
                    NewComment {
                        version: None,
                        section: None,
                        parent_id: None,
                        body: format!("comment {i}"),
                        internal: false,
                    },
                    &who,
                    &ctx(&who.id),
                )
                .await
                .map(|_| None)
            } else {
                s.approve(id, version, None, &who, policy, &ctx(&who.id))
                    .await
                    .map(|d| Some(d.decision))
            }
        }));
    }
    let mut approved = 0;
    let mut recorded = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Some(Decision::Approved { .. })) => approved += 1,
            Ok(Some(Decision::Recorded { .. })) => recorded += 1,
            Ok(None) => {}
            Err(StoreError::Review(
                ReviewError::AlreadyApproved | ReviewError::NotInReview { .. },
            ))
            | Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(approved, 1, "the artifact is approved exactly once");
    assert_eq!(recorded, 2);
    let st = s.review_state(id, policy).await.unwrap();
    assert_eq!(st.status, ArtifactStatus::Approved);
    assert_eq!(st.approvals.len(), 3);
    let mut approvers: Vec<&str> = st.approvals.iter().map(|a| a.approver.as_str()).collect();
    approvers.dedup();
    assert_eq!(approvers.len(), 3, "no double approval");
    let comments = s
        .list_comments(
            id,
            true,
            PageRequest {
                limit: 200,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(comments.items.len(), 25);
    let history = s
        .history(
            id,
            PageRequest {
                limit: 200,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let to_approved = history
        .items
        .iter()
        .filter(|h| h.to_status == Some(ArtifactStatus::Approved))
        .count();
    assert_eq!(to_approved, 1);
    assert!(verify(&*s).await.is_ok(), "the audit chain is unbroken");
}

async fn many_writers_keep_the_log_gap_free_and_chained(db: &TestDb) {
    let s = store(db);
    let start = s.last_event_seq().await.unwrap();
    // A reader follows the events while 16 writers write 20 clients each: it
    // never sees a gap, and once it has seen event n it has seen all before.
    let follower = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut cursor = start;
            let mut seen = Vec::new();
            for _ in 0..10_000 {
                let page = s.events_after(cursor, EventScope::All, 50).await.unwrap();
                for e in &page {
                    assert_eq!(e.seq, cursor + 1, "a reader never skips an event");
                    cursor = e.seq;
                    seen.push(e.subject.clone());
                }
                if seen.len() >= 320 {
                    break;
                }
                if page.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
            seen
        })
    };
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    ids.push(
                        client(&*s, &format!("writer {w} client {i}"))
                            .await
                            .to_string(),
                    );
                }
                ids
            })
        })
        .collect();
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let mut seen = follower.await.unwrap();
    assert_eq!(seen.len(), 320);
    seen.sort();
    written.sort();
    assert_eq!(seen, written, "every write's event, once");
    let all = s.events_after(start, EventScope::All, 1000).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((start + 1)..=(start + 320)).collect::<Vec<_>>()
    );
    // The audit chain verifies end to end, with a record per write.
    let n = verify(&*s).await.unwrap();
    let creates = s
        .list_audit(
            AuditFilter {
                client_id: None,
                actor: None,
                target: None,
                from: None,
                to: None,
            },
            PageRequest {
                limit: 200,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert!(n >= 320, "{n}");
    assert!(
        creates
            .items
            .iter()
            .all(|e| e.record.action == "client.create")
    );
}

async fn two_processes_append_to_one_chain(db: &TestDb) {
    // Each process numbers after the heads its own last write left: the
    // other's writes in between must be seen, never overwritten or forked.
    let a = store(db);
    let b: Arc<dyn Store> = db.another_store().await;
    let start = a.last_event_seq().await.unwrap();
    let mut written = Vec::new();
    for i in 0..6 {
        written.push(client(&*a, &format!("a {i}")).await.to_string());
        written.push(client(&*b, &format!("b {i}")).await.to_string());
        written.push(client(&*b, &format!("b again {i}")).await.to_string());
    }
    for s in [&a, &b] {
        let all = s.events_after(start, EventScope::All, 100).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            ((start + 1)..=(start + 18)).collect::<Vec<_>>(),
            "one gap-free numbering across both processes"
        );
        assert_eq!(
            all.iter().map(|e| e.subject.clone()).collect::<Vec<_>>(),
            written,
            "events in the order the writes committed"
        );
        assert!(verify(&**s).await.is_ok(), "one unbroken audit chain");
    }
    b.close().await;
}

async fn writes_committed_together_succeed_and_fail_apart(db: &TestDb) {
    // 48 writers at once (SQLite commits them in groups): a writer that fails
    // after writing leaves nothing behind, one that is cancelled midway
    // leaves all or nothing, and every answered write is readable at once.
    let s = store(db);
    let start = s.last_event_seq().await.unwrap();
    s.create_user(
        NewUser {
            email: "taken@example.com".into(),
            name: "Taken".into(),
            role: Role::Operator,
            client_id: None,
            password_hash: None,
        },
        &ctx("usr_admin"),
    )
    .await
    .unwrap();
    let keyed = |i: usize| WriteContext {
        idempotency: Some(IdempotencyKey {
            scope: "tok_test".into(),
            key: format!("key {i}"),
            request_hash: format!("request {i}"),
        }),
        ..ctx("usr_admin")
    };
    let user = |email: String| NewUser {
        email,
        name: "Someone".into(),
        role: Role::Operator,
        client_id: None,
        password_hash: None,
    };
    let mut tasks = Vec::new();
    let mut cancelled = Vec::new();
    for i in 0..48 {
        let s = s.clone();
        let keyed = keyed(i);
        let task = match i % 3 {
            // Answered writes: readable the moment they are answered.
            0 => tokio::spawn(async move {
                let id = client(&*s, &format!("kept {i}")).await;
                assert_eq!(s.get_client(id).await.unwrap().name, format!("kept {i}"));
                true
            }),
            // Failing after its idempotency key was written: the key goes too.
            1 => tokio::spawn(async move {
                let err = s
                    .create_user(user("taken@example.com".into()), &keyed)
                    .await
                    .unwrap_err();
                assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
                false
            }),
            // Cancelled at some point of its write.
            _ => {
                let t = tokio::spawn(async move {
                    client(&*s, &format!("cancelled {i}")).await;
                    true
                });
                cancelled.push(i);
                t
            }
        };
        tasks.push((i, task));
    }
    for (n, (i, t)) in tasks.into_iter().enumerate() {
        if i % 3 == 2 {
            if n % 2 == 0 {
                tokio::task::yield_now().await;
            }
            t.abort();
            let _ = t.await;
        } else {
            t.await.unwrap();
        }
    }
    // The failed writers' keys were rolled back with them: reusing one
    // creates the user now, for the request it comes with.
    for i in (0..48).filter(|i| i % 3 == 1) {
        let u = s
            .create_user(user(format!("fresh{i}@example.com")), &keyed(i))
            .await
            .unwrap();
        assert_eq!(u.email, format!("fresh{i}@example.com"));
    }
    let names: Vec<String> = s
        .list_clients(PageRequest {
            limit: 200,
            cursor: None,
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.name)
        .collect();
    for i in (0..48).filter(|i| i % 3 == 0) {
        assert!(
            names.contains(&format!("kept {i}")),
            "kept {i} in {names:?}"
        );
    }
    // Each client written has exactly its one event: a cancelled write left
    // its client, audit record and event together or not at all.
    let events = s.events_after(start, EventScope::All, 1000).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((start + 1)..=(start + events.len() as i64)).collect::<Vec<_>>()
    );
    let client_events = events
        .iter()
        .filter(|e| e.event_type == "client.created")
        .count();
    assert_eq!(client_events, names.len(), "{names:?}");
    assert!(verify(&*s).await.is_ok(), "one unbroken audit chain");
    // And the store goes on writing.
    let id = client(&*s, "after").await;
    assert_eq!(s.get_client(id).await.unwrap().name, "after");
}

/// PostgreSQL: entries a write queued and committed but that no pass sealed
/// (its process died first, or its pass has not run yet) are numbered before
/// those of any later write, even one that finds the log free and seals its
/// own: events follow the order of the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_queued_before_a_write_are_numbered_before_it_postgres() {
    testing::init_test_log();
    let Some(db) = testing::postgres().await else {
        return;
    };
    let s = store(&db);
    let start = s.last_event_seq().await.unwrap();
    db.execute_raw(
        r#"INSERT INTO log_pending (batch) VALUES ('{"at": "2026-12-01T00:00:00Z",
            "actor": "usr_gone", "entries": [{"action": "client.create", "trace_id": null,
            "client_id": null, "target": "cli_gone", "before_hash": null, "after_hash": null,
            "events": [{"event_type": "client.created", "subject": "cli_gone",
            "client_id": null, "audience": "staff", "data": {}}]}]}')"#,
    )
    .await
    .unwrap();
    let after = client(&*s, "After").await;
    let all = s.events_after(start, EventScope::All, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.subject.clone()).collect::<Vec<_>>(),
        ["cli_gone".to_owned(), after.to_string()],
        "the entry queued first is numbered first"
    );
    assert_eq!(all[1].seq, all[0].seq + 1);
    assert!(verify(&*s).await.is_ok(), "one unbroken audit chain");
}
