//! The store contract for journeys: transitions recorded with their history and
//! the units they start, refused when the journey moved; metrics; sign-offs.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;
use waymark_domain::ClientId;
use waymark_domain::journey::{Event, JourneyTemplate, Phase, Position};
use waymark_domain::work::{TaskSpec, UnitStatus, check_tasks};
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(
    transitions_are_recorded_with_their_units_and_history,
    ratings_are_given_once_and_summed_per_template,
);

fn ctx(actor: &str) -> WriteContext {
    let mut c = WriteContext::new(actor);
    c.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    c
}

fn template() -> JourneyTemplate {
    serde_json::from_value(json!({
        "name": "onboarding",
        "title": "Onboarding",
        "stages": [
            {"id": "sandbox", "name": "Sandbox",
             "activities": [{"name": "Sandbox setup", "tasks": [{"key": "install", "executor": "noop"}]}]},
            {"id": "pilot", "name": "Pilot"}
        ]
    }))
    .unwrap()
}

fn unit(client: ClientId, name: &str) -> NewUnit {
    let specs: Vec<TaskSpec> =
        serde_json::from_value(json!([{"key": "install", "executor": "human"}])).unwrap();
    NewUnit {
        client_id: client,
        name: name.into(),
        tasks: check_tasks(specs).unwrap(),
        depends_on_units: vec![],
        origin: None,
        plan: None,
    }
}

async fn transitions_are_recorded_with_their_units_and_history(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let client = store
        .create_client(
            NewClient {
                name: "Medtronic".into(),
                ..Default::default()
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record
        .id;
    let j = store
        .create_journey(
            NewJourney {
                client_id: client,
                name: "Medtronic 2026".into(),
                template: template(),
                source_artifact_id: None,
                input: serde_json::Value::Null,
                queue_item: None,
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    assert_eq!(j.state, "pending");
    assert_eq!(j.stages, ["sandbox", "pilot"]);
    let start = Position {
        phase: Phase::Active,
        stage: Some(0),
        rollback_to: None,
        paused: false,
    };
    let started = store
        .journey_event(
            JourneyTransition {
                journey_id: j.id,
                from: Position::PENDING,
                to: start,
                event: Event::Start,
                reason: Some("contract signed".into()),
                trigger: None,
                automatic: false,
                validation: None,
                overrides: vec![],
                units: vec![(unit(client, "Sandbox setup"), UnitKind::Activity)],
                outcome: None,
                item: None,
            },
            &ctx("ana"),
        )
        .await
        .unwrap();
    assert_eq!(started.state, "sandbox");
    assert!(started.started_at.is_some() && started.stage_started_at.is_some());
    let units = store.journey_units(j.id).await.unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].stage, "sandbox");
    assert_eq!(units[0].status, UnitStatus::Running);
    // The unit's tasks carry the journey's trace id.
    let detail = store.get_unit(units[0].unit_id).await.unwrap();
    assert_eq!(
        detail.tasks[0].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // Decided on a position the journey has left: refused, nothing changes.
    let err = store
        .journey_event(
            JourneyTransition {
                journey_id: j.id,
                from: Position::PENDING,
                to: start,
                event: Event::Start,
                reason: None,
                trigger: None,
                automatic: false,
                validation: None,
                overrides: vec![],
                units: vec![(unit(client, "again"), UnitKind::Activity)],
                outcome: None,
                item: None,
            },
            &ctx("ana"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.journey_units(j.id).await.unwrap().len(), 1);
    assert_eq!(store.journey_history(j.id).await.unwrap().len(), 1);

    let now = OffsetDateTime::now_utc();
    store
        .record_metrics(
            j.id,
            vec![NewObservation {
                name: "search_precision".into(),
                value: 0.83,
                at: now,
            }],
            &ctx("search-quality-agent"),
        )
        .await
        .unwrap();
    let metrics = store.journey_metrics(j.id).await.unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].stage.as_deref(), Some("sandbox"));
    let s1 = store
        .sign_off(
            j.id,
            "client_stakeholder_demo".into(),
            Some("great demo".into()),
            &ctx("cfo"),
        )
        .await
        .unwrap();
    let s2 = store
        .sign_off(
            j.id,
            "client_stakeholder_demo".into(),
            None,
            &ctx("someone"),
        )
        .await
        .unwrap();
    assert_eq!(s2.signed_by, s1.signed_by, "a sign-off is given once");
    assert_eq!(store.signoffs(j.id).await.unwrap().len(), 1);

    // Cancelling stops the journey's open work.
    let cancelled = store
        .journey_event(
            JourneyTransition {
                journey_id: j.id,
                from: start,
                to: Position {
                    phase: Phase::Cancelled,
                    ..start
                },
                event: Event::Cancel,
                reason: Some("client paused the project".into()),
                trigger: None,
                automatic: false,
                validation: None,
                overrides: vec![],
                units: vec![],
                outcome: None,
                item: None,
            },
            &ctx("ana"),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert!(cancelled.finished_at.is_some());
    let units = store.journey_units(j.id).await.unwrap();
    assert_eq!(units[0].status, UnitStatus::Cancelled);
    let history = store.journey_history(j.id).await.unwrap();
    let events: Vec<Event> = history.iter().map(|h| h.event).collect();
    assert_eq!(events, [Event::Start, Event::Cancel]);
    assert_eq!(history[0].reason.as_deref(), Some("contract signed"));
    assert_eq!(history[1].from, "sandbox");
    assert_eq!(history[1].to, "cancelled");

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
}

async fn ratings_are_given_once_and_summed_per_template(db: &TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let client = store
        .create_client(
            NewClient {
                name: "Acme".into(),
                owner: Some("ana".into()),
                ..Default::default()
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record
        .id;
    let j = store
        .create_journey(
            NewJourney {
                client_id: client,
                name: "Acme 2026".into(),
                template: template(),
                source_artifact_id: None,
                input: serde_json::Value::Null,
                queue_item: None,
            },
            &ctx("ops"),
        )
        .await
        .unwrap()
        .record;
    let rate = |who: &'static str, score| {
        let store = store.clone();
        async move {
            store
                .rate_stage(
                    NewRating {
                        journey_id: j.id,
                        stage: "sandbox".into(),
                        score,
                        comment: Some("fine".into()),
                    },
                    &ctx(who),
                )
                .await
        }
    };
    let first = rate("usr_cleo", 4).await.unwrap();
    assert_eq!(first.score, 4);
    match rate("usr_cleo", 2).await {
        Err(StoreError::Refused { code, .. }) => assert_eq!(code, "already_rated"),
        other => panic!("a second rating by the same person: {other:?}"),
    }
    rate("usr_dan", 5).await.unwrap();
    let all = store.journey_ratings(j.id).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.rated_by.as_str(), r.score))
            .collect::<Vec<_>>(),
        [("usr_cleo", 4), ("usr_dan", 5)]
    );
    let mut scores = store.template_ratings("onboarding", 10).await.unwrap();
    scores.sort();
    assert_eq!(
        scores,
        [(4, Some("ana".to_owned())), (5, Some("ana".to_owned()))]
    );
    assert!(
        store
            .template_ratings("other", 10)
            .await
            .unwrap()
            .is_empty()
    );
}
