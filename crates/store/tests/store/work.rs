//! The store contract for the work engine: units, tasks, leases, retries,
//! incidents, cancellation, fairness, agents. Every backend must pass these.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use waymark_domain::ClientId;
use waymark_domain::work::{Resolution, TaskSpec, TaskStatus, UnitStatus, check_tasks};
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(
    a_dag_runs_in_dependency_order,
    leases_refuse_foreign_and_expired_tokens,
    exhausted_attempts_raise_an_incident_that_a_person_resolves,
    skip_and_cancel_resolutions,
    cancelling_a_task_cancels_what_is_downstream,
    units_wait_on_units,
    claiming_is_fair_across_clients_and_follows_priority,
    tasks_made_ready_follow_priority_and_take_turns,
    concurrent_claimers_never_share_a_task,
    human_tasks_need_no_lease_others_do,
    agents_register_and_are_seen,
    a_replayed_submission_creates_nothing,
    generation_results_are_written_once_with_their_completion,
    every_claimed_task_has_a_lease_of_its_own,
    attempts_are_rows_with_their_outcomes,
    a_retry_that_came_due_is_claimable_now,
);

fn ctx(actor: &str) -> WriteContext {
    WriteContext::new(actor)
}

async fn client(store: &Arc<dyn Store>, name: &str) -> ClientId {
    store
        .create_client(
            NewClient {
                name: name.into(),
                ..Default::default()
            },
            &ctx("t"),
        )
        .await
        .unwrap()
        .record
        .id
}

fn unit(client: ClientId, tasks: Value) -> NewUnit {
    let specs: Vec<TaskSpec> = serde_json::from_value(tasks).unwrap();
    NewUnit {
        client_id: client,
        name: "unit".into(),
        tasks: check_tasks(specs).unwrap(),
        depends_on_units: vec![],
        origin: None,
        plan: None,
    }
}

fn engine(max: usize) -> Claim {
    Claim {
        lane: "engine".into(),
        max,
        lease: Duration::from_secs(30),
        worker: "test".into(),
    }
}

fn done(l: &Leased) -> Finish {
    Finish {
        task_id: l.task.id,
        lease_token: Some(l.lease_token.clone()),
        outcome: Outcome::Completed {
            output: json!({"ok": l.task.key}),
        },
    }
}

fn failed(l: &Leased, retryable: bool) -> Finish {
    Finish {
        task_id: l.task.id,
        lease_token: Some(l.lease_token.clone()),
        outcome: Outcome::Failed {
            error: "boom".into(),
            retryable,
        },
    }
}

fn keys(claimed: &[Leased]) -> BTreeSet<String> {
    claimed.iter().map(|l| l.task.key.clone()).collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

async fn finish_ok(store: &Arc<dyn Store>, f: Vec<Finish>) -> Vec<Finished> {
    store
        .finish(f, &ctx("worker"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

async fn status_of(store: &Arc<dyn Store>, unit: &Unit, key: &str) -> TaskStatus {
    let detail = store.get_unit(unit.id).await.unwrap();
    detail.tasks.iter().find(|t| t.key == key).unwrap().status
}

fn diamond(c: ClientId) -> NewUnit {
    unit(
        c,
        json!([
            {"key": "a", "executor": "noop"},
            {"key": "b", "executor": "noop", "depends_on": ["a"]},
            {"key": "c", "executor": "noop", "depends_on": ["a"]},
            {"key": "d", "executor": "noop", "depends_on": ["b", "c"], "max_attempts": 2,
             "backoff": {"initial_s": 0, "max_s": 0}},
        ]),
    )
}

async fn a_dag_runs_in_dependency_order(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let u = store
        .submit_unit(diamond(c), &ctx("ops"))
        .await
        .unwrap()
        .record;
    assert_eq!(u.status, UnitStatus::Running);
    assert_eq!(u.tasks_total, 4);

    let first = store.claim(engine(10)).await.unwrap();
    assert_eq!(keys(&first), set(&["a"]), "only the root is ready");
    assert_eq!(first[0].task.attempts, 1);
    assert_eq!(first[0].task.status, TaskStatus::Running);
    assert!(first[0].lease_token.starts_with("wml_"));
    assert!(store.claim(engine(10)).await.unwrap().is_empty());

    let out = finish_ok(&store, vec![done(&first[0])]).await;
    assert_eq!(out[0].status, TaskStatus::Completed);
    let second = store.claim(engine(10)).await.unwrap();
    assert_eq!(keys(&second), set(&["b", "c"]));
    // Both in one batch: d's two dependencies count once each.
    finish_ok(&store, second.iter().map(done).collect()).await;
    let third = store.claim(engine(10)).await.unwrap();
    assert_eq!(keys(&third), set(&["d"]));
    finish_ok(&store, vec![done(&third[0])]).await;

    let detail = store.get_unit(u.id).await.unwrap();
    assert_eq!(detail.unit.status, UnitStatus::Completed);
    assert_eq!(detail.unit.tasks_done, 4);
    assert!(detail.unit.finished_at.is_some());
    assert_eq!(detail.counts.get("completed"), Some(&4));
    let d = detail.tasks.iter().find(|t| t.key == "d").unwrap();
    assert_eq!(d.output, Some(json!({"ok": "d"})));
    assert_eq!(d.depends_on, vec!["b".to_owned(), "c".to_owned()]);

    // One audit record and one event per completion, and the unit's.
    let events = store
        .events_after(0, EventScope::All, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect::<Vec<_>>();
    assert_eq!(events.iter().filter(|t| *t == "task.completed").count(), 4);
    assert_eq!(events.iter().filter(|t| *t == "unit.completed").count(), 1);
    assert!(events.contains(&"unit.created".to_owned()));
}

async fn leases_refuse_foreign_and_expired_tokens(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    store
        .submit_unit(
            unit(
                c,
                json!([{"key": "a", "executor": "noop", "backoff": {"initial_s": 0, "max_s": 0}}]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap();
    let mut short = engine(1);
    short.lease = Duration::from_millis(300);
    let leased = store.claim(short.clone()).await.unwrap().remove(0);

    // A foreign token: refused, nothing changes.
    let mut foreign = done(&leased);
    foreign.lease_token = Some("wml_00000000000000000000000000000000".into());
    let answer = store.finish(vec![foreign], &ctx("w")).await.unwrap();
    assert!(
        matches!(
            &answer[0],
            Err(StoreError::Refused {
                code: "lease_foreign",
                ..
            })
        ),
        "{answer:?}"
    );
    let err = store
        .heartbeat(leased.task.id, "wml_nope", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Refused {
            code: "lease_foreign",
            ..
        }
    ));
    let t = store.get_task(leased.task.id).await.unwrap();
    assert_eq!(t.status, TaskStatus::Running);

    // A heartbeat extends the lease.
    let until = store
        .heartbeat(
            leased.task.id,
            &leased.lease_token,
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert!(until >= leased.lease_expires_at);

    tokio::time::sleep(Duration::from_millis(450)).await;
    let err = store
        .heartbeat(leased.task.id, &leased.lease_token, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                code: "lease_expired",
                ..
            }
        ),
        "{err:?}"
    );
    let answer = store.finish(vec![done(&leased)], &ctx("w")).await.unwrap();
    assert!(matches!(
        &answer[0],
        Err(StoreError::Refused {
            code: "lease_expired",
            ..
        })
    ));
    assert_eq!(
        store.get_task(leased.task.id).await.unwrap().status,
        TaskStatus::Running
    );

    // The sweep counts the expired lease as a failed attempt; someone else retries.
    assert_eq!(store.expire_leases(100).await.unwrap(), 1);
    let t = store.get_task(leased.task.id).await.unwrap();
    assert_eq!(t.status, TaskStatus::Ready);
    assert_eq!(t.attempts, 1);
    assert!(t.last_error.unwrap().contains("lease expired"));
    let again = store.claim(engine(1)).await.unwrap().remove(0);
    assert_eq!(again.task.attempts, 2);
    // The first lease cannot finish the second attempt.
    let answer = store.finish(vec![done(&leased)], &ctx("w")).await.unwrap();
    assert!(matches!(
        &answer[0],
        Err(StoreError::Refused {
            code: "lease_foreign",
            ..
        })
    ));
    finish_ok(&store, vec![done(&again)]).await;
    let answer = store.finish(vec![done(&again)], &ctx("w")).await.unwrap();
    assert!(
        matches!(
            &answer[0],
            Err(StoreError::Refused {
                code: "task_not_running",
                ..
            })
        ),
        "a second completion is refused"
    );
    let completions = store
        .events_after(0, EventScope::All, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "task.completed")
        .count();
    assert_eq!(completions, 1);
}

async fn exhausted_attempts_raise_an_incident_that_a_person_resolves(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let u = store
        .submit_unit(
            unit(
                c,
                json!([
                    {"key": "a", "executor": "noop", "max_attempts": 2,
                     "backoff": {"initial_s": 0, "max_s": 0}},
                    {"key": "b", "executor": "noop", "depends_on": ["a"]},
                    {"key": "c", "executor": "noop", "depends_on": ["b"]},
                ]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    let a = store.claim(engine(1)).await.unwrap().remove(0);
    let r = finish_ok(&store, vec![failed(&a, true)]).await;
    assert_eq!(
        r[0].status,
        TaskStatus::Ready,
        "retried while attempts remain"
    );
    let a2 = store.claim(engine(1)).await.unwrap().remove(0);
    assert_eq!(a2.task.attempts, 2);
    let r = finish_ok(&store, vec![failed(&a2, true)]).await;
    assert_eq!(r[0].status, TaskStatus::Failed);

    let detail = store.get_unit(u.id).await.unwrap();
    assert_eq!(detail.unit.status, UnitStatus::Failed);
    assert_eq!(status_of(&store, &u, "b").await, TaskStatus::Blocked);
    assert_eq!(status_of(&store, &u, "c").await, TaskStatus::Blocked);
    assert_eq!(detail.incidents.len(), 1);
    let incident = &detail.incidents[0];
    assert!(
        incident.message.contains("after 2 attempt"),
        "{}",
        incident.message
    );
    assert_eq!(incident.task_key, "a");
    let open = store
        .list_incidents(true, Some(c), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(open.items.len(), 1);
    assert!(store.claim(engine(5)).await.unwrap().is_empty());

    let resolved = store
        .resolve_incident(
            incident.id,
            Resolution::Retry,
            Some("fixed the input".into()),
            &ctx("ana"),
        )
        .await
        .unwrap();
    assert_eq!(resolved.resolution, Some(Resolution::Retry));
    assert_eq!(resolved.resolved_by.as_deref(), Some("ana"));
    let again = store
        .resolve_incident(incident.id, Resolution::Skip, None, &ctx("ana"))
        .await
        .unwrap_err();
    assert!(matches!(
        again,
        StoreError::Refused {
            code: "incident_resolved",
            ..
        }
    ));
    assert_eq!(
        store.get_unit(u.id).await.unwrap().unit.status,
        UnitStatus::Running
    );
    assert_eq!(status_of(&store, &u, "b").await, TaskStatus::Pending);

    let a3 = store.claim(engine(1)).await.unwrap().remove(0);
    assert_eq!(a3.task.key, "a");
    assert_eq!(a3.task.attempts, 1, "a retry starts fresh attempts");
    finish_ok(&store, vec![done(&a3)]).await;
    let b = store.claim(engine(5)).await.unwrap();
    assert_eq!(keys(&b), set(&["b"]));
}

async fn skip_and_cancel_resolutions(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let spec = json!([
        {"key": "a", "executor": "noop", "max_attempts": 1},
        {"key": "b", "executor": "noop", "depends_on": ["a"]},
    ]);
    // Skip: the dependent goes ahead.
    let u = store
        .submit_unit(unit(c, spec.clone()), &ctx("ops"))
        .await
        .unwrap()
        .record;
    let a = store.claim(engine(1)).await.unwrap().remove(0);
    finish_ok(&store, vec![failed(&a, false)]).await;
    let inc = store.get_unit(u.id).await.unwrap().incidents.remove(0);
    store
        .resolve_incident(inc.id, Resolution::Skip, None, &ctx("ana"))
        .await
        .unwrap();
    assert_eq!(status_of(&store, &u, "a").await, TaskStatus::Skipped);
    let b = store.claim(engine(1)).await.unwrap().remove(0);
    assert_eq!(b.task.key, "b");
    finish_ok(&store, vec![done(&b)]).await;
    let detail = store.get_unit(u.id).await.unwrap();
    assert_eq!(detail.unit.status, UnitStatus::Completed);
    assert_eq!(detail.unit.tasks_done, 2);

    // Cancel: the unit is cancelled whole.
    let u = store
        .submit_unit(unit(c, spec), &ctx("ops"))
        .await
        .unwrap()
        .record;
    let a = store.claim(engine(1)).await.unwrap().remove(0);
    finish_ok(&store, vec![failed(&a, true)]).await;
    let inc = store.get_unit(u.id).await.unwrap().incidents.remove(0);
    store
        .resolve_incident(
            inc.id,
            Resolution::Cancel,
            Some("client withdrew".into()),
            &ctx("ana"),
        )
        .await
        .unwrap();
    let detail = store.get_unit(u.id).await.unwrap();
    assert_eq!(detail.unit.status, UnitStatus::Cancelled);
    assert!(
        detail
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Cancelled)
    );
    assert!(store.claim(engine(5)).await.unwrap().is_empty());
}

async fn cancelling_a_task_cancels_what_is_downstream(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let u = store
        .submit_unit(diamond(c), &ctx("ops"))
        .await
        .unwrap()
        .record;
    let a = store.claim(engine(1)).await.unwrap().remove(0);
    finish_ok(&store, vec![done(&a)]).await;
    let b = store
        .get_unit(u.id)
        .await
        .unwrap()
        .tasks
        .into_iter()
        .find(|t| t.key == "b")
        .unwrap();
    let cancelled = store
        .cancel_task(b.id, Some("not needed".into()), &ctx("ana"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(status_of(&store, &u, "d").await, TaskStatus::Cancelled);
    assert_eq!(
        status_of(&store, &u, "c").await,
        TaskStatus::Ready,
        "a sibling is untouched"
    );
    let err = store
        .cancel_task(b.id, None, &ctx("ana"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Refused {
            code: "task_finished",
            ..
        }
    ));
    let cl = store.claim(engine(5)).await.unwrap();
    assert_eq!(keys(&cl), set(&["c"]));
    finish_ok(&store, vec![done(&cl[0])]).await;
    let detail = store.get_unit(u.id).await.unwrap();
    assert_eq!(detail.unit.status, UnitStatus::Cancelled);
    assert_eq!(
        (detail.unit.tasks_done, detail.unit.tasks_cancelled),
        (2, 2)
    );

    // Cancelling a unit voids the leases of its running tasks.
    let u = store
        .submit_unit(diamond(c), &ctx("ops"))
        .await
        .unwrap()
        .record;
    let a = store.claim(engine(1)).await.unwrap().remove(0);
    let cu = store.cancel_unit(u.id, None, &ctx("ana")).await.unwrap();
    assert_eq!(cu.status, UnitStatus::Cancelled);
    let answer = store.finish(vec![done(&a)], &ctx("w")).await.unwrap();
    assert!(matches!(
        &answer[0],
        Err(StoreError::Refused {
            code: "task_not_running",
            ..
        })
    ));
}

async fn units_wait_on_units(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let first = store
        .submit_unit(
            unit(c, json!([{"key": "x", "executor": "noop"}])),
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    let mut second = unit(
        c,
        json!([{"key": "y", "executor": "noop"}, {"key": "z", "executor": "noop", "depends_on": ["y"]}]),
    );
    second.depends_on_units = vec![first.id];
    let second = store.submit_unit(second, &ctx("ops")).await.unwrap().record;
    assert_eq!(second.status, UnitStatus::Pending);
    assert_eq!(second.depends_on_units, vec![first.id]);
    let listed = store
        .list_units(Some(c), PageRequest::default())
        .await
        .unwrap();
    let in_list = listed.items.iter().find(|u| u.id == second.id).unwrap();
    assert_eq!(
        in_list.depends_on_units,
        vec![first.id],
        "lists show what a unit waits on"
    );
    let x = store.claim(engine(10)).await.unwrap();
    assert_eq!(
        keys(&x),
        set(&["x"]),
        "the second unit's root waits for the first unit"
    );
    finish_ok(&store, vec![done(&x[0])]).await;
    assert_eq!(
        store.get_unit(second.id).await.unwrap().unit.status,
        UnitStatus::Running
    );
    let y = store.claim(engine(10)).await.unwrap();
    assert_eq!(keys(&y), set(&["y"]));

    // Another client's unit cannot be depended on.
    let other = client(&store, "Other").await;
    let mut foreign = unit(other, json!([{"key": "q", "executor": "noop"}]));
    foreign.depends_on_units = vec![first.id];
    let err = store.submit_unit(foreign, &ctx("ops")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref f) if f.pointer == "/depends_on_units/0"),
        "{err:?}"
    );
}

async fn claiming_is_fair_across_clients_and_follows_priority(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let big = client(&store, "Big").await;
    let small = client(&store, "Small").await;
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"key": format!("a{i}"), "executor": "noop"}))
        .collect();
    store
        .submit_unit(unit(big, Value::Array(many)), &ctx("ops"))
        .await
        .unwrap();
    // Half of the big client's queue is worked through...
    let mut drained = 0;
    while drained < 500 {
        let batch = store.claim(engine(100)).await.unwrap();
        drained += batch.len();
        finish_ok(&store, batch.iter().map(done).collect()).await;
    }
    // ...then a small client arrives with ten: they take turns, not wait behind 500.
    let few: Vec<Value> = (0..10)
        .map(|i| json!({"key": format!("b{i}"), "executor": "noop"}))
        .collect();
    store
        .submit_unit(unit(small, Value::Array(few)), &ctx("ops"))
        .await
        .unwrap();
    let next = store.claim(engine(20)).await.unwrap();
    let smalls = next.iter().filter(|l| l.task.client_id == small).count();
    assert_eq!(smalls, 10, "{:?}", keys(&next));

    // Priority comes first: lower runs first.
    let c = client(&store, "Prio").await;
    store
        .submit_unit(
            unit(
                c,
                json!([
                    {"key": "late", "executor": "noop", "priority": 5},
                    {"key": "urgent", "executor": "noop", "priority": -5},
                ]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap();
    let first = store.claim(engine(1)).await.unwrap();
    assert_eq!(first[0].task.key, "urgent");
}

/// Tasks a finish makes ready go in priority order too, and two clients'
/// take turns: each's are keyed from its own clock.
async fn tasks_made_ready_follow_priority_and_take_turns(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let d = client(&store, "Dag").await;
    let e = client(&store, "Other").await;
    for c in [d, e] {
        store
            .submit_unit(
                unit(
                    c,
                    json!([
                        {"key": "root", "executor": "noop"},
                        {"key": "x1", "executor": "noop", "depends_on": ["root"]},
                        {"key": "x2", "executor": "noop", "depends_on": ["root"]},
                        {"key": "soon", "executor": "noop", "priority": -1, "depends_on": ["root"]},
                    ]),
                ),
                &ctx("ops"),
            )
            .await
            .unwrap();
    }
    let roots = store.claim(engine(2)).await.unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(keys(&roots), set(&["root"]));
    finish_ok(&store, roots.iter().map(done).collect()).await;
    let mut order = vec![];
    loop {
        let next = store.claim(engine(1)).await.unwrap();
        let Some(l) = next.first() else { break };
        order.push((l.task.client_id, l.task.key.clone()));
        finish_ok(&store, next.iter().map(done).collect()).await;
    }
    assert_eq!(order.len(), 6, "{order:?}");
    assert!(order[..2].iter().all(|o| o.1 == "soon"), "{order:?}");
    for pair in order[2..].chunks(2) {
        assert_ne!(pair[0].0, pair[1].0, "the clients take turns: {order:?}");
    }
}

async fn concurrent_claimers_never_share_a_task(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let tasks: Vec<Value> = (0..400)
        .map(|i| json!({"key": format!("t{i}"), "executor": "noop"}))
        .collect();
    store
        .submit_unit(unit(c, Value::Array(tasks)), &ctx("ops"))
        .await
        .unwrap();
    let mut handles = vec![];
    for w in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let mut claim = engine(7);
                claim.worker = format!("w{w}");
                let batch = store.claim(claim).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.iter().map(|l| l.task.id));
                for r in store
                    .finish(batch.iter().map(done).collect(), &ctx("w"))
                    .await
                    .unwrap()
                {
                    r.unwrap();
                }
            }
            mine
        }));
    }
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    for h in handles {
        for id in h.await.unwrap() {
            *all.entry(id.to_string()).or_default() += 1;
        }
    }
    assert_eq!(all.len(), 400);
    assert!(all.values().all(|&n| n == 1), "a task was claimed twice");
    let counts: BTreeMap<TaskStatus, i64> =
        store.count_tasks(None).await.unwrap().into_iter().collect();
    assert_eq!(counts.get(&TaskStatus::Completed), Some(&400));
}

async fn human_tasks_need_no_lease_others_do(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let u = store
        .submit_unit(
            unit(
                c,
                json!([
                    {"key": "review", "executor": "human"},
                    {"key": "auto", "executor": "noop"},
                ]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    let detail = store.get_unit(u.id).await.unwrap();
    let human = detail.tasks.iter().find(|t| t.key == "review").unwrap();
    let auto = detail.tasks.iter().find(|t| t.key == "auto").unwrap();
    assert_eq!(human.status, TaskStatus::Ready);
    // Workers never claim it.
    let claimed = store.claim(engine(10)).await.unwrap();
    assert_eq!(keys(&claimed), set(&["auto"]));
    let answer = store
        .finish(
            vec![Finish {
                task_id: auto.id,
                lease_token: None,
                outcome: Outcome::Completed { output: json!({}) },
            }],
            &ctx("ana"),
        )
        .await
        .unwrap();
    assert!(matches!(
        &answer[0],
        Err(StoreError::Refused {
            code: "lease_required",
            ..
        })
    ));
    let r = finish_ok(
        &store,
        vec![Finish {
            task_id: human.id,
            lease_token: None,
            outcome: Outcome::Completed {
                output: json!({"approved": true}),
            },
        }],
    )
    .await;
    assert_eq!(r[0].status, TaskStatus::Completed);
    assert_eq!(
        store.get_task(human.id).await.unwrap().output,
        Some(json!({"approved": true}))
    );
}

async fn agents_register_and_are_seen(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let (agent, created) = store
        .register_agent(
            NewAgent {
                id: "search-quality-agent".into(),
                description: "Tunes search".into(),
                capabilities: vec!["search".into()],
            },
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(agent.capabilities, vec!["search".to_owned()]);
    let (again, created) = store
        .register_agent(
            NewAgent {
                id: "search-quality-agent".into(),
                description: "Tunes search relevance".into(),
                capabilities: vec!["search".into(), "ranking".into()],
            },
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.description, "Tunes search relevance");
    assert_eq!(again.created_at, agent.created_at);
    store.touch_agent("search-quality-agent").await.unwrap();
    let list = store.list_agents().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].last_seen_at.is_some());
    assert!(matches!(
        store.get_agent("nobody").await,
        Err(StoreError::NotFound { .. })
    ));

    // Its tasks wait in its own lane.
    let c = client(&store, "Acme").await;
    store
        .submit_unit(
            unit(
                c,
                json!([{"key": "tune", "executor": "search-quality-agent"}]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert!(store.claim(engine(5)).await.unwrap().is_empty());
    let mut claim = engine(5);
    claim.lane = "search-quality-agent".into();
    assert_eq!(keys(&store.claim(claim).await.unwrap()), set(&["tune"]));
}

async fn a_replayed_submission_creates_nothing(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let mut with_key = ctx("ops");
    with_key.idempotency = Some(IdempotencyKey {
        scope: "tok_x".into(),
        key: "k1".into(),
        request_hash: "h".into(),
    });
    let first = store.submit_unit(diamond(c), &with_key).await.unwrap();
    let second = store.submit_unit(diamond(c), &with_key).await.unwrap();
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.record.id, second.record.id);
    let counts: i64 = store
        .count_tasks(None)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(counts, 4);
}

fn generated(
    l: &Leased,
    eng: waymark_domain::EngagementId,
    client: ClientId,
    base: Option<(waymark_domain::ArtifactId, i64)>,
    summary: &str,
) -> Generated {
    Generated {
        task_id: l.task.id,
        lease_token: l.lease_token.clone(),
        engagement_id: eng,
        job_key: "icp".into(),
        client_id: client,
        artifact_type: "strategy".into(),
        title: "Strategy".into(),
        base,
        content: json!({"summary": summary}),
        sources: vec![],
        provenance: "template".into(),
        pipeline: Pipeline {
            requires: vec![],
            generator: json!({"generator": {"t": 1}, "job": "icp"}),
        },
        note: "ICP".into(),
        output: json!({"job": "icp"}),
    }
}

async fn generation_results_are_written_once_with_their_completion(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let eng = store
        .create_engagement(
            NewEngagement {
                client_id: c,
                name: "Launch".into(),
                pack: "marketing-engagement".into(),
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record
        .id;
    let job_unit = || {
        let mut u = unit(
            c,
            json!([{"key": "icp", "executor": "llm.generate", "input": {}}]),
        );
        u.plan = Some(PlanLink {
            engagement_id: eng,
            jobs: vec![(0, "icp".into())],
        });
        u
    };
    store.submit_unit(job_unit(), &ctx("ops")).await.unwrap();
    // The job is queued: a second run of it is refused and creates nothing.
    let err = store
        .submit_unit(job_unit(), &ctx("ops"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                code: "plan_job_queued",
                ..
            }
        ),
        "{err:?}"
    );
    let units = store
        .list_units(Some(c), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(units.items.len(), 1);
    let records = store.plan_jobs(eng).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].task_status, Some(TaskStatus::Ready));
    assert!(records[0].inputs_hash.is_none());

    let leased = store.claim(engine(1)).await.unwrap().remove(0);
    // A foreign lease, or an artifact that is not the one the job read: refused,
    // nothing written, the task still running.
    let mut foreign = generated(&leased, eng, c, None, "x");
    foreign.lease_token = "wml_00000000000000000000000000000000".into();
    let err = store
        .finish_generation(foreign, &ctx("w"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                code: "lease_foreign",
                ..
            }
        ),
        "{err:?}"
    );
    let ghost = Some((waymark_domain::ArtifactId::new(), 1));
    let err = store
        .finish_generation(generated(&leased, eng, c, ghost, "x"), &ctx("w"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.current_artifacts(eng).await.unwrap().is_empty());
    assert_eq!(
        store.get_task(leased.task.id).await.unwrap().status,
        TaskStatus::Running
    );

    let done = store
        .finish_generation(generated(&leased, eng, c, None, "first"), &ctx("w"))
        .await
        .unwrap();
    assert_eq!(done.version, 1);
    let art = store.get_artifact(done.artifact_id).await.unwrap();
    assert_eq!(art.content, json!({"summary": "first"}));
    assert_eq!(art.provenance, "template");
    assert_eq!(art.inputs_hash, done.inputs_hash);
    let task = store.get_task(leased.task.id).await.unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.output.as_ref().unwrap()["version"], 1);
    assert_eq!(task.output.as_ref().unwrap()["job"], "icp");
    let record = &store.plan_jobs(eng).await.unwrap()[0];
    assert_eq!(
        record.inputs_hash.as_deref(),
        Some(done.inputs_hash.as_str())
    );
    assert_eq!(record.artifact_id, Some(done.artifact_id));
    assert_eq!(record.task_status, Some(TaskStatus::Completed));
    // The same result again: refused, still one version.
    let err = store
        .finish_generation(generated(&leased, eng, c, None, "again"), &ctx("w"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                code: "task_not_running",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store
            .get_artifact(done.artifact_id)
            .await
            .unwrap()
            .summary
            .version,
        1
    );

    // A second run, while a person writes version 2: the job's result on
    // version 1 is refused; on version 2 it is written as version 3.
    store.submit_unit(job_unit(), &ctx("ops")).await.unwrap();
    let leased = store.claim(engine(1)).await.unwrap().remove(0);
    store
        .write_content(
            done.artifact_id,
            1,
            NewVersion {
                content: json!({"summary": "by hand"}),
                sources: None,
                note: None,
                provenance: "human".into(),
                pipeline: None,
            },
            &ctx("ana"),
        )
        .await
        .unwrap();
    let err = store
        .finish_generation(
            generated(&leased, eng, c, Some((done.artifact_id, 1)), "stale base"),
            &ctx("w"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let again = store
        .finish_generation(
            generated(&leased, eng, c, Some((done.artifact_id, 2)), "second"),
            &ctx("w"),
        )
        .await
        .unwrap();
    assert_eq!((again.artifact_id, again.version), (done.artifact_id, 3));
    let versions = store
        .list_versions(done.artifact_id, PageRequest::default())
        .await
        .unwrap();
    let summaries: Vec<&Value> = versions
        .items
        .iter()
        .map(|v| &v.content["summary"])
        .collect();
    assert_eq!(
        summaries,
        [&json!("first"), &json!("by hand"), &json!("second")]
    );
    // The artifact's and the task's audit records chain in one transaction.
    let mut v = waymark_domain::audit::Verifier::new();
    loop {
        let page = store.audit_chain(v.last_seq(), 50).await.unwrap();
        if page.is_empty() {
            break;
        }
        for r in &page {
            v.check(r).unwrap();
        }
    }
    assert!(v.last_seq() > 0);
}

async fn every_claimed_task_has_a_lease_of_its_own(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let a = client(&store, "Acme").await;
    let b = client(&store, "Globex").await;
    for c in [a, b] {
        store
            .submit_unit(
                unit(
                    c,
                    json!([{"key": "x", "executor": "noop"}, {"key": "y", "executor": "noop"}]),
                ),
                &ctx("ops"),
            )
            .await
            .unwrap();
    }
    let claimed = store.claim(engine(10)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let tokens: BTreeSet<&str> = claimed.iter().map(|l| l.lease_token.as_str()).collect();
    assert_eq!(tokens.len(), 4, "one token per task, not one per claim");
    let (one, two) = (&claimed[0], &claimed[1]);
    assert_ne!(one.task.client_id, two.task.client_id);

    // One task's token neither completes, fails nor heartbeats another task.
    for outcome in [
        Outcome::Completed { output: json!({}) },
        Outcome::Failed {
            error: "no".into(),
            retryable: false,
        },
    ] {
        let answer = store
            .finish(
                vec![Finish {
                    task_id: two.task.id,
                    lease_token: Some(one.lease_token.clone()),
                    outcome,
                }],
                &ctx("w"),
            )
            .await
            .unwrap();
        assert!(
            matches!(
                &answer[0],
                Err(StoreError::Refused {
                    code: "lease_foreign",
                    ..
                })
            ),
            "{answer:?}"
        );
    }
    let err = store
        .heartbeat(two.task.id, &one.lease_token, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Refused {
            code: "lease_foreign",
            ..
        }
    ));
    let untouched = store.get_task(two.task.id).await.unwrap();
    assert_eq!(untouched.status, TaskStatus::Running);
    assert_eq!(untouched.lease_expires_at, Some(two.lease_expires_at));
    assert_eq!(untouched.output, None);

    // Each token finishes its own task.
    let out = finish_ok(&store, claimed.iter().map(done).collect()).await;
    assert!(out.iter().all(|f| f.status == TaskStatus::Completed));
}

async fn attempts_are_rows_with_their_outcomes(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    let u = store
        .submit_unit(
            unit(
                c,
                json!([
                    {"key": "flaky", "executor": "noop", "max_attempts": 5,
                     "backoff": {"initial_s": 0, "max_s": 0}},
                    {"key": "slow", "executor": "noop", "max_attempts": 3,
                     "backoff": {"initial_s": 0, "max_s": 0}},
                    {"key": "ask", "executor": "human"},
                    {"key": "stop", "executor": "noop", "backoff": {"initial_s": 0, "max_s": 0}},
                ]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    let id_of = |key: &str, claimed: &[Leased]| claimed.iter().find(|l| l.task.key == key).cloned();

    // flaky fails twice, then completes: three attempts.
    let mut slow = None;
    let mut stop = None;
    for round in 0..3 {
        let mut claim = engine(10);
        claim.worker = format!("worker-{round}");
        claim.lease = Duration::from_millis(if round == 0 { 200 } else { 30_000 });
        let claimed = store.claim(claim).await.unwrap();
        if round == 0 {
            slow = id_of("slow", &claimed);
            stop = id_of("stop", &claimed);
        }
        let flaky = id_of("flaky", &claimed).expect("flaky is claimed again");
        let finish = if round < 2 {
            failed(&flaky, true)
        } else {
            done(&flaky)
        };
        finish_ok(&store, vec![finish]).await;
    }
    let flaky = store
        .get_unit(u.id)
        .await
        .unwrap()
        .tasks
        .into_iter()
        .find(|t| t.key == "flaky")
        .unwrap();
    let log = store.task_attempts(flaky.id).await.unwrap();
    let outcomes: Vec<_> = log.iter().map(|a| a.outcome).collect();
    use waymark_domain::work::AttemptOutcome as A;
    assert_eq!(outcomes, vec![A::Failed, A::Failed, A::Completed]);
    assert_eq!(
        log.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(log[0].error.as_deref(), Some("boom"));
    assert_eq!(log[2].error, None);
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a.worker.as_deref(), Some(format!("worker-{i}").as_str()));
        let (start, end) = (a.started_at.unwrap(), a.ended_at.unwrap());
        assert!(end >= start);
        assert!(a.duration_ms.is_some());
    }

    // slow's and stop's leases (200 ms) run out: an expired attempt each,
    // then a running one.
    let slow = slow.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.expire_leases(100).await.unwrap(), 2);
    let again = store.claim(engine(10)).await.unwrap();
    let slow2 = id_of("slow", &again).unwrap();
    let stop2 = id_of("stop", &again).unwrap();
    let log = store.task_attempts(slow.task.id).await.unwrap();
    assert_eq!(
        log.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![A::Expired, A::Running]
    );
    assert!(log[0].error.as_deref().unwrap().contains("lease expired"));
    assert_eq!(log[1].ended_at, None);
    assert_eq!(log[1].duration_ms, None);
    // The expired attempt's lease cannot write the running one.
    let answer = store.finish(vec![done(&slow)], &ctx("w")).await.unwrap();
    assert!(matches!(
        &answer[0],
        Err(StoreError::Refused {
            code: "lease_foreign",
            ..
        })
    ));
    finish_ok(&store, vec![done(&slow2)]).await;

    // stop is cancelled while its second attempt runs: that attempt closes
    // as cancelled.
    let stop = stop.unwrap();
    store
        .cancel_task(stop.task.id, Some("not needed".into()), &ctx("ops"))
        .await
        .unwrap();
    let log = store.task_attempts(stop.task.id).await.unwrap();
    assert_eq!(
        log.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![A::Expired, A::Cancelled]
    );
    assert_eq!(log[1].error.as_deref(), Some("not needed"));
    // ... and its lease can no longer finish it.
    let answer = store.finish(vec![done(&stop2)], &ctx("w")).await.unwrap();
    assert!(answer[0].is_err());

    // A person completes the human task nobody claimed: one attempt, theirs.
    let ask = store
        .get_unit(u.id)
        .await
        .unwrap()
        .tasks
        .into_iter()
        .find(|t| t.key == "ask")
        .unwrap();
    assert!(store.task_attempts(ask.id).await.unwrap().is_empty());
    store
        .finish(
            vec![Finish {
                task_id: ask.id,
                lease_token: None,
                outcome: Outcome::Completed {
                    output: json!({"answer": 42}),
                },
            }],
            &ctx("usr_ana"),
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let log = store.task_attempts(ask.id).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, A::Completed);
    assert_eq!(log[0].worker.as_deref(), Some("usr_ana"));

    // A task that does not exist has no attempts to list.
    let missing = waymark_domain::TaskId::new();
    assert!(matches!(
        store.task_attempts(missing).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A claimer that found nothing asks how long to sleep: a retry that came due
/// in between is claimable now (not forgotten until the next wake-up).
async fn a_retry_that_came_due_is_claimable_now(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let c = client(&store, "Acme").await;
    store
        .submit_unit(
            unit(
                c,
                json!([{"key": "a", "executor": "noop", "backoff": {"initial_s": 0.2, "max_s": 0.2}}]),
            ),
            &ctx("ops"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.next_run_in("engine").await.unwrap(),
        Some(Duration::ZERO)
    );
    let leased = store.claim(engine(1)).await.unwrap().remove(0);
    assert_eq!(
        store.next_run_in("engine").await.unwrap(),
        None,
        "nothing ready"
    );
    finish_ok(&store, vec![failed(&leased, true)]).await;
    let wait = store.next_run_in("engine").await.unwrap().expect("a retry");
    assert!(wait <= Duration::from_millis(200), "{wait:?}");
    assert!(
        store.claim(engine(1)).await.unwrap().is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store.next_run_in("engine").await.unwrap(),
        Some(Duration::ZERO)
    );
    let again = store.claim(engine(1)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].task.id, leased.task.id);
}
