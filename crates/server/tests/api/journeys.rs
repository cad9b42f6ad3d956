//! Journeys over HTTP: seed 003's client onboarding replays — the sandbox
//! setup unit is run by the three agents, promotion is refused with the failed
//! checks until the metrics and the sign-off are in, a low pilot satisfaction
//! rolls the journey back by itself, and it finally completes in production.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::both_backends!(
    seed_003_onboarding_replays,
    bad_journey_input_is_refused_and_changes_nothing,
    a_paused_journey_holds_its_work_until_it_resumes,
);

const AGENTS: [&str; 3] = [
    "connector-installation-agent",
    "dataset-provisioning-agent",
    "search-quality-agent",
];

pub(crate) async fn agent_token(app: &TestApp, agent: &str) -> String {
    let r = app.post("/api/v1/agents", json!({"id": agent})).await;
    assert!(r.status.is_success(), "{}", r.body);
    let t = app
        .post("/api/v1/tokens", json!({"name": agent, "agent_id": agent}))
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    t.body["token"].as_str().unwrap().to_owned()
}

/// The agent claims its ready tasks and completes them.
pub(crate) async fn agent_works(app: &TestApp, agent: &str, token: &str) -> usize {
    let claimed = app
        .call_as(
            Some(token),
            Method::POST,
            &format!("/api/v1/agents/{agent}/claim"),
            Some(json!({"max": 10, "wait_s": 0})),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.body);
    let items = claimed.body.as_array().unwrap().clone();
    for c in &items {
        let id = c["task"]["id"].as_str().unwrap();
        let done = app
            .call_as(
                Some(token),
                Method::POST,
                &format!("/api/v1/work/tasks/{id}/complete"),
                Some(json!({"lease_token": c["lease_token"], "output": {"done_by": agent}})),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    items.len()
}

/// Completes every ready human task of the unit, in dependency order.
pub(crate) async fn humans_finish(app: &TestApp, unit: &str) {
    for _ in 0..10 {
        let u = app.get(&format!("/api/v1/work/units/{unit}")).await;
        let ready: Vec<String> = u.body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["executor"] == "human" && t["status"] == "ready")
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        if ready.is_empty() {
            return;
        }
        for id in ready {
            let r = app
                .post(
                    &format!("/api/v1/work/tasks/{id}/complete"),
                    json!({"output": {}}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
}

pub(crate) async fn event(app: &TestApp, j: &str, body: Value) -> crate::helpers::Answer {
    app.post(&format!("/api/v1/journeys/{j}/events"), body)
        .await
}

pub(crate) async fn metrics(app: &TestApp, j: &str, obs: Value) -> Value {
    let r = app
        .post(
            &format!("/api/v1/journeys/{j}/metrics"),
            json!({"observations": obs}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// The units of the journey's current visit of `stage`, by name.
pub(crate) fn units_of(detail: &Value, stage: &str, kind: &str) -> Vec<(String, String)> {
    let out: Vec<(String, String)> = detail["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["stage"] == stage && u["kind"] == kind)
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["unit_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out
}

pub(crate) async fn approved_artifact(app: &TestApp, client: &str, ty: &str) {
    let a = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": ty, "title": ty, "content": {"ok": true}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().unwrap();
    for to in ["in_review", "approved"] {
        let t = app
            .post(
                &format!("/api/v1/artifacts/{id}/transitions"),
                crate::helpers::transition_body(to),
            )
            .await;
        assert_eq!(t.status, 200, "{}", t.body);
    }
}

/// The unit is `status` now: completing, cancelling or failing its tasks
/// settles it in the same write, so nothing is waited for.
pub(crate) async fn assert_unit(app: &TestApp, unit: &str, status: &str) {
    let u = app.get(&format!("/api/v1/work/units/{unit}")).await;
    assert_eq!(u.body["status"], status, "unit {unit}: {}", u.body);
}

async fn seed_003_onboarding_replays(app: TestApp) {
    let client = app.client("Medtronic").await;
    let tokens: Vec<String> = {
        let mut t = vec![];
        for a in AGENTS {
            t.push(agent_token(&app, a).await);
        }
        t
    };
    let templates = app.get("/api/v1/journey-templates").await;
    assert_eq!(templates.status, 200, "{}", templates.body);
    let onboarding = templates.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "client-onboarding")
        .expect("client-onboarding ships");
    assert_eq!(onboarding["source"], "client-onboarding");

    let created = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "client-onboarding", "name": "Medtronic 2026"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["state"], "pending");
    assert_eq!(
        created.body["stages"],
        json!(["sandbox", "pilot", "production"])
    );
    let j = created.body["id"].as_str().unwrap().to_owned();
    let trace = created.body["trace_id"].clone();

    // Start: the sandbox's units of work start on the engine.
    let started = event(
        &app,
        &j,
        json!({"event": "start", "reason": "contract signed"}),
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.body["state"], "sandbox");
    let setup = units_of(&started.body, "sandbox", "activity");
    let names: Vec<&str> = setup.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(names, ["Sandbox setup", "Security audit"]);
    let unit = app.get(&format!("/api/v1/work/units/{}", setup[0].1)).await;
    let executors: Vec<&str> = unit.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["executor"].as_str().unwrap())
        .collect();
    assert_eq!(executors, AGENTS);
    assert!(
        unit.body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["trace_id"] == trace)
    );

    // Promotion is refused with every failed check: no data, no sign-off, work open.
    let refused = event(&app, &j, json!({"event": "promote"})).await;
    refused.assert_problem(409, "transition_refused");
    let reasons: Vec<&str> = refused.body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let text = reasons.join("\n");
    for name in [
        "connectors_syncing",
        "search_precision",
        "no_security_vulnerabilities",
        "stakeholder_demo_approved",
        "Sandbox setup",
        "Security audit",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("no data"), "{text}");

    // The three agents do the sandbox setup; a person runs the security scan.
    assert_eq!(agent_works(&app, AGENTS[0], &tokens[0]).await, 1);
    assert_eq!(agent_works(&app, AGENTS[1], &tokens[1]).await, 1);
    assert_eq!(agent_works(&app, AGENTS[2], &tokens[2]).await, 1);
    humans_finish(&app, &setup[1].1).await;
    assert_unit(&app, &setup[0].1, "completed").await;
    // The search-quality agent reports what it measured.
    let measured = app
        .call_as(
            Some(&tokens[2]),
            Method::POST,
            &format!("/api/v1/journeys/{j}/metrics"),
            Some(json!({"observations": [{"name": "search_precision", "value": 0.83}]})),
        )
        .await;
    assert_eq!(measured.status, 201, "{}", measured.body);
    metrics(
        &app,
        &j,
        json!([{"name": "connector_sync_rate", "value": 1.0}, {"name": "security_vulnerabilities", "value": 0}]),
    )
    .await;
    // Everything but the sign-off (and the pilot's own entry criteria): still
    // refused, and only for those.
    let refused = event(&app, &j, json!({"event": "promote"})).await;
    refused.assert_problem(409, "transition_refused");
    let reasons = refused.body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 2, "{}", refused.body);
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .contains("stakeholder_demo_approved")
    );
    assert!(
        reasons[1]
            .as_str()
            .unwrap()
            .contains("pilot_cohort_identified")
    );
    let v = app.get(&format!("/api/v1/journeys/{j}/validation")).await;
    assert_eq!(v.body["passed"], false);
    let signed = app
        .post(
            &format!("/api/v1/journeys/{j}/signoffs"),
            json!({"name": "client_stakeholder_demo", "note": "demo went well"}),
        )
        .await;
    assert_eq!(signed.status, 201, "{}", signed.body);
    let v = app.get(&format!("/api/v1/journeys/{j}/validation")).await;
    assert_eq!(v.body["passed"], true, "{}", v.body);
    // The pilot's entry criteria want an approved pilot plan.
    let refused = event(&app, &j, json!({"event": "promote"})).await;
    refused.assert_problem(409, "transition_refused");
    assert!(
        refused.body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("pilot_cohort_identified")
    );
    approved_artifact(&app, &client, "pilot_plan").await;
    let pilot = event(
        &app,
        &j,
        json!({"event": "promote", "reason": "sandbox exit met"}),
    )
    .await;
    assert_eq!(pilot.status, 200, "{}", pilot.body);
    assert_eq!(pilot.body["state"], "pilot");

    // A pilot satisfaction below 3.5 rolls the journey back by itself.
    let fired = metrics(
        &app,
        &j,
        json!([{"name": "user_satisfaction", "value": 3.2}]),
    )
    .await;
    assert_eq!(
        fired["rolled_back"]["trigger"], "user_satisfaction_low",
        "{fired}"
    );
    let d = app.get(&format!("/api/v1/journeys/{j}")).await.body;
    assert_eq!(d["state"], "rolling_back");
    assert_eq!(d["rollback_to"], "sandbox");
    let last = d["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "rollback");
    assert_eq!(last["automatic"], true);
    assert_eq!(last["trigger"], "user_satisfaction_low");
    // The pilot's work stopped; the rollback unit runs, then the journey returns.
    for (_, u) in units_of(&d, "pilot", "activity") {
        assert_unit(&app, &u, "cancelled").await;
    }
    let rollback = units_of(&d, "pilot", "rollback");
    assert_eq!(rollback[0].0, "Pilot rollback");
    let early = event(&app, &j, json!({"event": "complete_rollback"})).await;
    early.assert_problem(409, "transition_refused");
    humans_finish(&app, &rollback[0].1).await;
    assert_unit(&app, &rollback[0].1, "completed").await;
    let back = event(&app, &j, json!({"event": "complete_rollback"})).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["state"], "sandbox");

    // Promoted again (no stage skipped), the pilot runs anew and passes.
    let pilot = event(&app, &j, json!({"event": "promote"})).await;
    assert_eq!(pilot.status, 200, "{}", pilot.body);
    let pilot_units = units_of(&pilot.body, "pilot", "activity");
    let current = pilot_units.last().unwrap().1.clone();
    humans_finish(&app, &current).await; // deploy
    agent_works(&app, AGENTS[2], &tokens[2]).await; // monitor search quality
    humans_finish(&app, &current).await; // feedback, performance
    assert_unit(&app, &current, "completed").await;
    metrics(
        &app,
        &j,
        json!([{"name": "search_precision", "value": 0.88}, {"name": "user_satisfaction", "value": 4.3},
               {"name": "bug_count", "value": 0}, {"name": "p95_latency_ms", "value": 420}]),
    )
    .await;
    approved_artifact(&app, &client, "rollout_plan").await;
    let production = event(&app, &j, json!({"event": "promote"})).await;
    assert_eq!(production.status, 200, "{}", production.body);
    assert_eq!(production.body["state"], "production");

    // Production: the rollout, then the success metrics.
    for (_, u) in units_of(&production.body, "production", "activity") {
        for _ in 0..5 {
            humans_finish(&app, &u).await;
            agent_works(&app, AGENTS[2], &tokens[2]).await;
        }
        assert_unit(&app, &u, "completed").await;
    }
    let early = event(&app, &j, json!({"event": "complete"})).await;
    early.assert_problem(409, "transition_refused");
    metrics(
        &app,
        &j,
        json!([{"name": "user_adoption", "value": 0.74}, {"name": "search_satisfaction", "value": 4.6},
               {"name": "query_volume_growth", "value": 0.25}]),
    )
    .await;
    let done = event(&app, &j, json!({"event": "complete"})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["state"], "completed");
    assert_eq!(
        done.body["progress"],
        json!({"stages_done": 3, "stages_total": 3})
    );
    let history: Vec<(String, String, String)> = done.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["event"].as_str().unwrap().to_owned(),
                h["from"].as_str().unwrap().to_owned(),
                h["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("start", "pending", "sandbox"),
        ("promote", "sandbox", "pilot"),
        ("rollback", "pilot", "rolling_back"),
        ("complete_rollback", "rolling_back", "sandbox"),
        ("promote", "sandbox", "pilot"),
        ("promote", "pilot", "production"),
        ("complete", "production", "completed"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(history, expected);
    // Each promotion recorded the validation that allowed it.
    let promotions: Vec<&Value> = done.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "promote")
        .collect();
    assert!(promotions.iter().all(|h| h["validation"]["passed"] == true));
    let after = event(&app, &j, json!({"event": "cancel"})).await;
    after.assert_problem(409, "transition_refused");

    // The analytics reflect the run: one rollback, sandbox and pilot visited
    // twice, sandbox's first promotion refused on its exit criteria.
    let a = app
        .get("/api/v1/analytics/journeys?template=client-onboarding")
        .await
        .body;
    assert_eq!(
        (a["started"].as_u64(), a["completed"].as_u64()),
        (Some(1), Some(1)),
        "{a}"
    );
    assert_eq!(a["rollback_rate"], 1.0);
    assert_eq!(
        a["rollbacks_by_trigger"],
        json!({"user_satisfaction_low": 1})
    );
    let stage = |id: &str| {
        a["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    let (sandbox, pilot, production) = (stage("sandbox"), stage("pilot"), stage("production"));
    assert_eq!(
        (sandbox["visits"].as_u64(), sandbox["entered"].as_u64()),
        (Some(2), Some(1)),
        "{sandbox}"
    );
    assert_eq!(sandbox["first_pass_rate"], 0.0, "{sandbox}");
    assert_eq!(
        (pilot["visits"].as_u64(), pilot["rollbacks"].as_u64()),
        (Some(2), Some(1)),
        "{pilot}"
    );
    assert_eq!(production["time_in_stage"]["count"], 1, "{production}");
    assert_eq!(a["time_to_last_stage"]["count"], 1);
}

async fn bad_journey_input_is_refused_and_changes_nothing(app: TestApp) {
    let client = app.client("Acme").await;
    let bad = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "no-such-template"}),
        )
        .await;
    bad.assert_problem(422, "invalid");
    assert_eq!(bad.body["errors"][0]["pointer"], "/template");
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "client-onboarding"}),
        )
        .await;
    let j = j.body["id"].as_str().unwrap().to_owned();
    for (body, status, code) in [
        (json!({"event": "teleport"}), 422, "invalid"),
        (json!({"event": "promote"}), 409, "transition_refused"),
        (json!({"event": "complete"}), 409, "transition_refused"),
        (json!({"event": "start", "extra": 1}), 422, "invalid"),
    ] {
        let r = event(&app, &j, body).await;
        r.assert_problem(status, code);
    }
    let r = event(&app, &j, json!({"event": "start"})).await;
    assert_eq!(r.status, 200);
    let r = event(&app, &j, json!({"event": "rollback"})).await;
    r.assert_problem(422, "invalid");
    assert_eq!(r.body["errors"][0]["pointer"], "/trigger");
    let r = event(
        &app,
        &j,
        json!({"event": "promote", "overrides": ["stakeholder_demo_approved"]}),
    )
    .await;
    r.assert_problem(422, "invalid");
    for obs in [
        json!([]),
        json!([{"name": "bad name", "value": 1}]),
        json!([{"name": "x", "value": "high"}]),
        json!([{"name": "x", "value": 1, "at": "3000-01-01T00:00:00Z"}]),
    ] {
        let r = app
            .post(
                &format!("/api/v1/journeys/{j}/metrics"),
                json!({"observations": obs}),
            )
            .await;
        r.assert_problem(422, "invalid");
    }
    let d = app.get(&format!("/api/v1/journeys/{j}")).await;
    assert_eq!(d.body["history"].as_array().unwrap().len(), 1, "{}", d.body);
    assert_eq!(d.body["state"], "sandbox");
    let m = app.get(&format!("/api/v1/journeys/{j}/validation")).await;
    assert!(
        m.body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] != "passed" || c["name"] == "units_of_work"),
        "no observation was recorded: {}",
        m.body
    );
    // Someone else's journey id, or a wrongly-prefixed one.
    let other = app
        .get("/api/v1/journeys/jrn_00000000000000000000000000")
        .await;
    assert_eq!(other.status.as_u16(), 404);
    let wrong = app.get(&format!("/api/v1/journeys/{client}")).await;
    wrong.assert_problem(404, "not_found");
    assert!(
        wrong.body["detail"]
            .as_str()
            .unwrap()
            .contains("not a journey id")
    );
    // A template saved over the API is checked like a pack's.
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "Bad Name", "title": "", "stages": []}),
        )
        .await;
    t.assert_problem(422, "invalid");
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "client-onboarding", "title": "Mine", "stages": [{"id": "a", "name": "A"}]}),
        )
        .await;
    t.assert_problem(409, "template_exists");
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "quick-check", "title": "Quick check", "stages": [
                {"id": "check", "name": "Check", "exit": [{"name": "ok", "cel": "metrics.score >= 3.0"}]}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let list = app.get("/api/v1/journey-templates").await;
    assert!(
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "quick-check" && t["source"] == "api")
    );
}

async fn a_paused_journey_holds_its_work_until_it_resumes(app: TestApp) {
    let client = app.client("Acme").await;
    let token = agent_token(&app, "probe-agent").await;
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "probe", "title": "Probe", "stages": [
                {"id": "probe", "name": "Probe", "activities": [{"name": "Probes", "tasks": [
                    {"key": "first", "executor": "probe-agent"},
                    {"key": "second", "executor": "probe-agent"},
                    {"key": "after", "executor": "probe-agent", "depends_on": ["first"]}]}]}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "probe"}),
        )
        .await;
    assert_eq!(j.status, 201, "{}", j.body);
    let jid = j.body["id"].as_str().unwrap().to_owned();
    let started = app
        .post(
            &format!("/api/v1/journeys/{jid}/events"),
            json!({"event": "start"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let claim = |max: u32| {
        let app = &app;
        let token = token.clone();
        async move {
            let r = app
                .call_as(
                    Some(&token),
                    reqwest::Method::POST,
                    "/api/v1/agents/probe-agent/claim",
                    Some(json!({"max": max, "wait_s": 0})),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.as_array().unwrap().clone()
        }
    };
    // One task runs when the journey is paused; the other is held.
    let running = claim(1).await;
    assert_eq!(running.len(), 1);
    let paused = app
        .post(
            &format!("/api/v1/journeys/{jid}/events"),
            json!({"event": "pause"}),
        )
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert!(
        claim(10).await.is_empty(),
        "nothing of a paused journey is claimed"
    );
    let tasks = app
        .get(&format!("/api/v1/work/tasks?client_id={client}"))
        .await;
    let status_of = |tasks: &Value, key: &str| {
        tasks["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .unwrap()["status"]
            .clone()
    };
    let held_key = if running[0]["task"]["key"] == "first" {
        "second"
    } else {
        "first"
    };
    assert_eq!(status_of(&tasks.body, held_key), "held");
    // The task that was running finishes; what it readies is held too.
    let done = app
        .call_as(
            Some(&token),
            reqwest::Method::POST,
            &format!(
                "/api/v1/work/tasks/{}/complete",
                running[0]["task"]["id"].as_str().unwrap()
            ),
            Some(json!({"lease_token": running[0]["lease_token"], "output": {}})),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(claim(10).await.is_empty());
    // Resumed, everything ready is claimed again.
    let resumed = app
        .post(
            &format!("/api/v1/journeys/{jid}/events"),
            json!({"event": "resume"}),
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let after = claim(10).await;
    let expected = if running[0]["task"]["key"] == "first" {
        2
    } else {
        1
    };
    assert_eq!(after.len(), expected, "{after:?}");
    let tasks = app
        .get(&format!("/api/v1/work/tasks?client_id={client}"))
        .await;
    assert_eq!(status_of(&tasks.body, held_key), "running");
}
