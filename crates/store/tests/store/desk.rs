//! The store contract for the desk: to-dos (references checked in the write,
//! the one list order, keyset pages, closing twice refused, the scope of a
//! client user), preferences (defaults stored on first read, partial
//! updates), stakeholders (kept per client); every write audited.

use std::sync::Arc;

use serde_json::json;
use time::macros::date;
use waymark_domain::ClientId;
use waymark_domain::journey::JourneyTemplate;
use waymark_domain::preferences::Theme;
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(
    todos_check_their_references_and_keep_one_order,
    closing_a_todo_twice_is_refused_and_reopening_works,
    a_client_users_scope_reaches_only_their_todos,
    preferences_start_as_defaults_and_merge_updates,
    stakeholders_are_kept_per_client,
);

fn ctx(actor: &str) -> WriteContext {
    let mut c = WriteContext::new(actor);
    c.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    c
}

async fn client(store: &Arc<dyn Store>, name: &str) -> ClientId {
    store
        .create_client(
            NewClient {
                name: name.into(),
                ..Default::default()
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record
        .id
}

async fn user(store: &Arc<dyn Store>, email: &str, role: Role, client: Option<ClientId>) -> User {
    store
        .create_user(
            NewUser {
                email: email.into(),
                name: email.into(),
                role,
                client_id: client,
                password_hash: None,
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
}

fn todo(title: &str, who: &User) -> NewTodo {
    NewTodo {
        title: title.into(),
        assigned_to: Some(Assignee::User(who.id)),
        due_date: None,
        priority: Priority::Medium,
        journey_id: None,
        step: None,
        client_id: None,
    }
}

fn invalid_at(err: StoreError, pointer: &str) {
    match err {
        StoreError::Invalid(f) => assert_eq!(f.pointer, pointer, "{}", f.message),
        other => panic!("expected invalid at {pointer}, got {other:?}"),
    }
}

/// The audit actions on `target`, oldest first (the log lists newest first).
async fn actions(store: &Arc<dyn Store>, target: &str) -> Vec<String> {
    let mut actions: Vec<String> = store
        .list_audit(
            AuditFilter {
                target: Some(target.into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.record.action)
        .collect();
    actions.reverse();
    actions
}

async fn todos_check_their_references_and_keep_one_order(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let acme = client(&store, "Acme").await;
    let beta = client(&store, "Beta").await;
    let ana = user(&store, "ana@team.example", Role::Operator, None).await;
    let template: JourneyTemplate = serde_json::from_value(json!({
        "name": "renewal", "title": "Renewal",
        "stages": [{"id": "kickoff", "name": "Kickoff"}, {"id": "close", "name": "Close"}]
    }))
    .unwrap();
    let journey = store
        .create_journey(
            NewJourney {
                client_id: acme,
                name: "Acme renewal".into(),
                template,
                source_artifact_id: None,
                input: serde_json::Value::Null,
                queue_item: None,
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;

    // References that do not fit are refused at their field, and write nothing.
    let missing_journey = NewTodo {
        journey_id: Some(waymark_domain::JourneyId::new()),
        ..todo("x", &ana)
    };
    invalid_at(
        store
            .create_todo(missing_journey, &ctx("ops"))
            .await
            .unwrap_err(),
        "/journey_id",
    );
    let bad_step = NewTodo {
        journey_id: Some(journey.id),
        step: Some("nowhere".into()),
        ..todo("x", &ana)
    };
    let err = store.create_todo(bad_step, &ctx("ops")).await.unwrap_err();
    assert!(err.to_string().contains("kickoff, close"), "{err}");
    invalid_at(err, "/step");
    let other_client = NewTodo {
        journey_id: Some(journey.id),
        client_id: Some(beta),
        ..todo("x", &ana)
    };
    invalid_at(
        store
            .create_todo(other_client, &ctx("ops"))
            .await
            .unwrap_err(),
        "/client_id",
    );
    let nobody = NewTodo {
        assigned_to: Some(Assignee::User(waymark_domain::UserId::new())),
        ..todo("x", &ana)
    };
    invalid_at(
        store.create_todo(nobody, &ctx("ops")).await.unwrap_err(),
        "/assigned_to",
    );
    let someone_elses_token = NewTodo {
        assigned_to: Some(Assignee::Token("tok_other".into())),
        ..todo("x", &ana)
    };
    invalid_at(
        store
            .create_todo(someone_elses_token, &ctx("tok_mine"))
            .await
            .unwrap_err(),
        "/assigned_to",
    );
    let none = store
        .list_todos(TodoFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // A to-do of a journey takes its client and may name a step.
    let call = store
        .create_todo(
            NewTodo {
                journey_id: Some(journey.id),
                step: Some("kickoff".into()),
                due_date: Some(date!(2026 - 03 - 02)),
                ..todo("Call the sponsor", &ana)
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    assert_eq!(call.client_id, Some(acme));
    assert_eq!(call.status, TodoStatus::Open);
    assert!(!call.completed);
    assert_eq!(call.assigned_to, Some(ana.id.to_string()));
    assert_eq!(call.created_by, "ops");
    assert_eq!(store.get_todo(call.id).await.unwrap(), call);
    assert_eq!(actions(&store, &call.id.to_string()).await, ["todo.create"]);
    // A token without a user takes its own to-dos.
    let own = store
        .create_todo(
            NewTodo {
                assigned_to: Some(Assignee::Token("tok_boot".into())),
                ..todo("Bootstrap chores", &ana)
            },
            &ctx("tok_boot"),
        )
        .await
        .unwrap()
        .record;
    assert_eq!(own.assigned_to.as_deref(), Some("tok_boot"));

    // The order: open first, then due date (none last), then priority, then id.
    let mk = |title: &str, due, priority| NewTodo {
        due_date: due,
        priority,
        ..todo(title, &ana)
    };
    let mut made = vec![];
    for (title, due, priority) in [
        ("later", Some(date!(2026 - 04 - 01)), Priority::Urgent),
        ("undated urgent", None, Priority::Urgent),
        ("soon low", Some(date!(2026 - 03 - 01)), Priority::Low),
        ("soon urgent", Some(date!(2026 - 03 - 01)), Priority::Urgent),
        ("undated low", None, Priority::Low),
        ("undated low 2", None, Priority::Low),
    ] {
        made.push(
            store
                .create_todo(mk(title, due, priority), &ctx("ops"))
                .await
                .unwrap()
                .record,
        );
    }
    // Completing one sends it after every open one.
    store
        .update_todo(
            made[2].id,
            TodoPatch {
                status: Some(TodoStatus::Completed),
                ..Default::default()
            },
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    let mine = TodoFilter {
        assigned_to: Some(ana.id.to_string()),
        ..Default::default()
    };
    let mut titles = vec![];
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_todos(
                mine.clone(),
                PageRequest {
                    limit: 2,
                    cursor: cursor.clone(),
                },
            )
            .await
            .unwrap();
        pages += 1;
        titles.extend(page.items.iter().map(|t| t.title.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        titles,
        [
            "soon urgent",
            "Call the sponsor",
            "later",
            "undated urgent",
            "undated low",
            "undated low 2",
            "soon low",
        ]
    );
    assert_eq!(pages, 4);
    // Filters combine.
    let open_of_acme = store
        .list_todos(
            TodoFilter {
                client_id: Some(acme),
                status: Some(TodoStatus::Open),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(open_of_acme.items.len(), 1);
    let of_journey = store
        .list_todos(
            TodoFilter {
                journey_id: Some(journey.id),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(of_journey.items[0].id, call.id);
    let closed = store
        .list_todos(
            TodoFilter {
                status: Some(TodoStatus::Completed),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(closed.items.len(), 1);
    assert!(closed.items[0].completed && closed.items[0].completed_at.is_some());
    // A cursor that is not one is refused at /cursor.
    for bad in ["x", "12_zz", "-1", "1_0193a0b2"] {
        let err = store
            .list_todos(
                TodoFilter::default(),
                PageRequest {
                    limit: 2,
                    cursor: Some(bad.into()),
                },
            )
            .await
            .unwrap_err();
        invalid_at(err, "/cursor");
    }

    // Fields change; an empty patch writes nothing; delete is audited.
    let changed = store
        .update_todo(
            call.id,
            TodoPatch {
                title: Some("Call the new sponsor".into()),
                due_date: Some(None),
                priority: Some(Priority::High),
                ..Default::default()
            },
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert_eq!(changed.title, "Call the new sponsor");
    assert_eq!(changed.due_date, None);
    assert_eq!(changed.priority, Priority::High);
    assert!(changed.updated_at > call.updated_at);
    assert_eq!(store.get_todo(call.id).await.unwrap(), changed);
    let same = store
        .update_todo(
            call.id,
            TodoPatch::default(),
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert_eq!(same, changed);
    store.delete_todo(call.id, &ctx("ops")).await.unwrap();
    assert!(matches!(
        store.get_todo(call.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store.delete_todo(call.id, &ctx("ops")).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert_eq!(
        actions(&store, &call.id.to_string()).await,
        ["todo.create", "todo.update", "todo.delete"]
    );
    let events = store.events_after(0, EventScope::All, 1000).await.unwrap();
    let of_call: Vec<&str> = events
        .iter()
        .filter(|e| e.subject == call.id.to_string())
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(of_call, ["todo.created", "todo.updated", "todo.deleted"]);
}

async fn closing_a_todo_twice_is_refused_and_reopening_works(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let ana = user(&store, "ana@team.example", Role::Operator, None).await;
    let t = store
        .create_todo(todo("Send the deck", &ana), &ctx("ops"))
        .await
        .unwrap()
        .record;
    let set = |status| TodoPatch {
        status: Some(status),
        ..Default::default()
    };
    let done = store
        .update_todo(
            t.id,
            set(TodoStatus::Completed),
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert!(done.completed && done.completed_at.is_some());
    for again in [TodoStatus::Completed, TodoStatus::Skipped] {
        let err = store
            .update_todo(t.id, set(again), &TodoScope::Everyone, &ctx("ops"))
            .await
            .unwrap_err();
        match err {
            StoreError::Refused { code, detail } => {
                assert_eq!(code, "todo_closed");
                assert!(detail.contains("completed already"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.get_todo(t.id).await.unwrap(), done);
    let reopened = store
        .update_todo(
            t.id,
            set(TodoStatus::Open),
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert_eq!(reopened.status, TodoStatus::Open);
    assert!(!reopened.completed && reopened.completed_at.is_none());
    let skipped = store
        .update_todo(
            t.id,
            set(TodoStatus::Skipped),
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert_eq!(skipped.status, TodoStatus::Skipped);
    assert!(!skipped.completed && skipped.completed_at.is_some());
    assert_eq!(
        actions(&store, &t.id.to_string()).await,
        ["todo.create", "todo.update", "todo.update", "todo.update"]
    );
}

async fn a_client_users_scope_reaches_only_their_todos(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let acme = client(&store, "Acme").await;
    let beta = client(&store, "Beta").await;
    let cleo = user(&store, "cleo@acme.example", Role::Client, Some(acme)).await;
    let ana = user(&store, "ana@team.example", Role::Operator, None).await;
    // A client user's to-do belongs to their client.
    let theirs = store
        .create_todo(todo("Sign the order form", &cleo), &ctx("ops"))
        .await
        .unwrap()
        .record;
    assert_eq!(theirs.client_id, Some(acme));
    // Not a to-do of another client.
    let wrong = NewTodo {
        client_id: Some(beta),
        ..todo("Beta's secret", &cleo)
    };
    invalid_at(
        store.create_todo(wrong, &ctx("ops")).await.unwrap_err(),
        "/assigned_to",
    );
    let teams = store
        .create_todo(
            NewTodo {
                client_id: Some(acme),
                ..todo("Prepare the QBR", &ana)
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    let scope = TodoScope::Assignee {
        assigned_to: cleo.id.to_string(),
        client_id: acme,
    };
    assert!(scope.reaches(&theirs) && !scope.reaches(&teams));
    let complete = TodoPatch {
        status: Some(TodoStatus::Completed),
        ..Default::default()
    };
    let err = store
        .update_todo(teams.id, complete.clone(), &scope, &ctx("cleo"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(store.get_todo(teams.id).await.unwrap(), teams);
    let done = store
        .update_todo(theirs.id, complete, &scope, &ctx("cleo"))
        .await
        .unwrap();
    assert!(done.completed);
    // Reassigned to the team, it leaves their reach.
    let moved = store
        .update_todo(
            theirs.id,
            TodoPatch {
                assigned_to: Some(Assignee::User(ana.id)),
                ..Default::default()
            },
            &TodoScope::Everyone,
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert!(!scope.reaches(&moved));
}

async fn preferences_start_as_defaults_and_merge_updates(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let p = store.preferences("usr_ana").await.unwrap();
    assert_eq!(p, waymark_domain::preferences::Preferences::default());
    let updated = store
        .update_preferences(
            "usr_ana",
            &json!({"theme": "dark", "notifications": {"daily_digest": true}}),
            &ctx("usr_ana"),
        )
        .await
        .unwrap();
    assert_eq!(updated.theme, Theme::Dark);
    assert!(updated.notifications.daily_digest && updated.notifications.email);
    assert_eq!(store.preferences("usr_ana").await.unwrap(), updated);
    // Another owner is untouched; the first update of someone new starts
    // from the defaults.
    assert_eq!(
        store.preferences("tok_boot").await.unwrap().theme,
        Theme::System
    );
    let first = store
        .update_preferences("usr_new", &json!({"queue_page_size": 50}), &ctx("usr_new"))
        .await
        .unwrap();
    assert_eq!(first.queue_page_size, 50);
    assert_eq!(first.theme, Theme::System);
    // An invalid update changes nothing.
    let err = store
        .update_preferences("usr_ana", &json!({"theme": "neon"}), &ctx("usr_ana"))
        .await
        .unwrap_err();
    invalid_at(err, "/theme");
    assert_eq!(store.preferences("usr_ana").await.unwrap(), updated);
    assert_eq!(actions(&store, "usr_ana").await, ["preferences.update"]);
}

async fn stakeholders_are_kept_per_client(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let acme = client(&store, "Acme").await;
    let beta = client(&store, "Beta").await;
    let new = |name: &str, client| NewStakeholder {
        client_id: client,
        name: name.into(),
        email: Some(format!("{}@example.com", name.to_lowercase())),
        role: "CFO".into(),
        influence: Influence::High,
        sentiment: Sentiment::Neutral,
        notes: String::new(),
    };
    let err = store
        .create_stakeholder(new("Ghost", ClientId::new()), &ctx("ops"))
        .await
        .unwrap_err();
    invalid_at(err, "/client_id");
    let mut ids = vec![];
    for name in ["Dana", "Eli", "Fay"] {
        ids.push(
            store
                .create_stakeholder(new(name, acme), &ctx("ops"))
                .await
                .unwrap()
                .record
                .id,
        );
    }
    let bea = store
        .create_stakeholder(new("Bea", beta), &ctx("ops"))
        .await
        .unwrap()
        .record;
    let first = store
        .list_stakeholders(
            acme,
            PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|s| s.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let second = store
        .list_stakeholders(
            acme,
            PageRequest {
                limit: 2,
                cursor: first.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.next_cursor.is_none());
    // Another client's stakeholder is not found under this client.
    assert!(matches!(
        store.get_stakeholder(acme, bea.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store
            .update_stakeholder(acme, bea.id, StakeholderPatch::default(), &ctx("ops"))
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store
            .delete_stakeholder(acme, bea.id, &ctx("ops"))
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
    let changed = store
        .update_stakeholder(
            acme,
            ids[0],
            StakeholderPatch {
                sentiment: Some(Sentiment::Negative),
                email: Some(None),
                notes: Some("Worried about the <b>price</b>".into()),
                ..Default::default()
            },
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert_eq!(changed.sentiment, Sentiment::Negative);
    assert_eq!(changed.email, None);
    assert_eq!(changed.notes, "Worried about the <b>price</b>");
    assert_eq!(store.get_stakeholder(acme, ids[0]).await.unwrap(), changed);
    store
        .delete_stakeholder(acme, ids[1], &ctx("ops"))
        .await
        .unwrap();
    assert_eq!(
        store
            .list_stakeholders(acme, PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        actions(&store, &ids[1].to_string()).await,
        ["stakeholder.create", "stakeholder.delete"]
    );
    assert_eq!(
        actions(&store, &ids[0].to_string()).await,
        ["stakeholder.create", "stakeholder.update"]
    );
}
