//! Journeys from the other seeds, over HTTP: seed 000's insurance migration
//! runs from a migration plan through review, approval and implement to a
//! journey running one wave unit per wave definition, and on to completion;
//! seed 002's data flow passes its four milestones with their handoff
//! contracts enforced and one trace id throughout. The client's operations
//! and the templates' analytics reflect those runs.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use waymark_store::Role;

use crate::fixtures::person;
use crate::helpers::TestApp;
use crate::journeys::{
    agent_token, agent_works, assert_unit, event, humans_finish, metrics, units_of,
};
use crate::work::stepped_engine;
use waymark_engine::run::Engine;

crate::both_backends!(
    seed_000_insurance_migration_runs_from_plan_to_waves,
    seed_002_data_flow_hands_off_through_four_milestones,
    an_agent_cannot_complete_a_milestone_without_its_contract,
    bridge_bad_input_is_refused_and_changes_nothing,
    task_outputs_report_metrics_that_criteria_and_triggers_see,
);

const PACK: &str = "insurance-migration";

async fn example(app: &TestApp, ty: &str) -> Value {
    let pack = app.get(&format!("/api/v1/packs/{PACK}")).await;
    pack.body["artifact_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == ty)
        .unwrap_or_else(|| panic!("{PACK} has no type {ty}"))["example"]
        .clone()
}

async fn artifact(
    app: &TestApp,
    client: &str,
    eng: &str,
    ty: &str,
    title: &str,
    content: Value,
) -> String {
    let a = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "engagement_id": eng, "type": ty, "title": title, "content": content}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

/// Shares and approves (as the admin, overriding the approval policy) an
/// artifact.
async fn approve(app: &TestApp, id: &str) {
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

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/artifacts/{id}")).await.body
}

fn ago(days: i64) -> String {
    (OffsetDateTime::now_utc() - time::Duration::days(days))
        .format(&Rfc3339)
        .unwrap()
}

/// Agents and people work the units until every one is completed.
async fn run_units(app: &TestApp, units: &[(String, String)], agents: &[(&str, &str)]) {
    for _ in 0..20 {
        for (agent, token) in agents {
            agent_works(app, agent, token).await;
        }
        let mut open = 0;
        for (_, unit) in units {
            humans_finish(app, unit).await;
            let u = app.get(&format!("/api/v1/work/units/{unit}")).await;
            if u.body["status"] != "completed" {
                open += 1;
            }
        }
        if open == 0 {
            return;
        }
    }
    panic!("the units never completed: {units:?}");
}

async fn seed_000_insurance_migration_runs_from_plan_to_waves(app: TestApp) {
    let client = app.client("Great Lakes Mutual").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Core policy migration", "pack": PACK}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    let eng = e.body["id"].as_str().unwrap().to_owned();
    let cfo = person(&app, "cfo@glm.example", Role::Client, Some(&client)).await;
    let agents: Vec<(&str, String)> = {
        let mut v = vec![];
        for a in [
            "data-profiling-agent",
            "migration-agent",
            "reconciliation-agent",
        ] {
            v.push((a, agent_token(&app, a).await));
        }
        v
    };
    let agents: Vec<(&str, &str)> = agents.iter().map(|(a, t)| (*a, t.as_str())).collect();

    // The migration plan goes through review: shared, approved by the client.
    let plan = artifact(
        &app,
        &client,
        &eng,
        "migration_plan",
        "PolicyOne to the cloud platform",
        example(&app, "migration_plan").await,
    )
    .await;
    let early = app
        .post(&format!("/api/v1/artifacts/{plan}/implement"), json!({}))
        .await;
    early.assert_problem(409, "not_approved");
    let shared = app
        .post(&format!("/api/v1/artifacts/{plan}/share"), json!({}))
        .await;
    assert_eq!(shared.status, 200, "{}", shared.body);
    let approved = app
        .call_as(
            Some(&cfo.token),
            Method::POST,
            &format!("/api/v1/artifacts/{plan}/approve"),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["artifact"]["status"], "approved");

    // Two wave definitions, approved; a third stays in draft.
    let mut titles = vec![];
    for (seq, wave_id, name) in [
        (1, "wave-01", "Ohio homeowners"),
        (2, "wave-02", "Ohio personal auto"),
        (3, "wave-03", "Michigan"),
    ] {
        let mut content = example(&app, "wave_definition").await;
        content["wave_id"] = json!(wave_id);
        content["name"] = json!(name);
        content["sequence"] = json!(seq);
        let title = format!("Wave {seq}: {name}");
        let w = artifact(&app, &client, &eng, "wave_definition", &title, content).await;
        if seq < 3 {
            approve(&app, &w).await;
            titles.push(title);
        }
    }

    // Implement: the plan's type names the insurance-migration journey.
    let implemented = app
        .call(
            Method::POST,
            &format!("/api/v1/artifacts/{plan}/implement"),
            None,
            &[],
        )
        .await;
    assert_eq!(implemented.status, 201, "{}", implemented.body);
    let j = implemented.body["id"].as_str().unwrap().to_owned();
    assert_eq!(implemented.body["template"], "insurance-migration");
    assert_eq!(implemented.body["source_artifact_id"], plan.as_str());
    assert_eq!(implemented.body["name"], "PolicyOne to the cloud platform");
    assert_eq!(implemented.body["state"], "pending");
    let a = status_of(&app, &plan).await;
    assert_eq!(a["status"], "implemented");
    assert_eq!(a["journey_id"], j.as_str());
    // The journey moves the artifact; a person cannot, and it is implemented once.
    app.post(
        &format!("/api/v1/artifacts/{plan}/transitions"),
        json!({"to": "active"}),
    )
    .await
    .assert_problem(409, "journey_linked");
    app.post(&format!("/api/v1/artifacts/{plan}/implement"), json!({}))
        .await
        .assert_problem(409, "already_implemented");
    let history = app
        .get(&format!("/api/v1/artifacts/{plan}/history"))
        .await
        .body;
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["from_status"].as_str(), last["to_status"].as_str()),
        (Some("approved"), Some("implemented")),
        "{last}"
    );

    // Start: the artifact goes active; discovery's work starts.
    let started = event(&app, &j, json!({"event": "start"})).await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.body["state"], "discovery");
    assert_eq!(status_of(&app, &plan).await["status"], "active");
    let discovery = units_of(&started.body, "discovery", "activity");
    // Promotion waits for the mapping and the work (a failed first pass).
    let refused = event(&app, &j, json!({"event": "promote"})).await;
    refused.assert_problem(409, "transition_refused");
    let reasons = refused.body["reasons"].to_string();
    assert!(reasons.contains("product_mapping_complete"), "{reasons}");
    assert!(reasons.contains("Discovery"), "{reasons}");
    run_units(&app, &discovery, &agents).await;
    metrics(
        &app,
        &j,
        json!([{"name": "product_mapping_coverage", "value": 1.0}]),
    )
    .await;
    // Wave migration's entry needs the coexistence blueprint.
    let refused = event(&app, &j, json!({"event": "promote"})).await;
    refused.assert_problem(409, "transition_refused");
    assert!(
        refused.body["reasons"]
            .to_string()
            .contains("coexistence_blueprint"),
        "{}",
        refused.body
    );
    let workflow = artifact(
        &app,
        &client,
        &eng,
        "workflow",
        "New business",
        example(&app, "workflow").await,
    )
    .await;
    approve(&app, &workflow).await;
    let blueprint = artifact(
        &app,
        &client,
        &eng,
        "coexistence_blueprint",
        "Coexistence",
        example(&app, "coexistence_blueprint").await,
    )
    .await;
    approve(&app, &blueprint).await;
    let waves = event(
        &app,
        &j,
        json!({"event": "promote", "reason": "wave plan agreed"}),
    )
    .await;
    assert_eq!(waves.status, 200, "{}", waves.body);
    assert_eq!(waves.body["state"], "wave_migration");

    // One wave unit per approved wave definition, each task carrying its wave.
    let wave_units = units_of(&waves.body, "wave_migration", "activity");
    let names: Vec<&str> = wave_units.iter().map(|u| u.0.as_str()).collect();
    let expected: Vec<String> = titles.iter().map(|t| format!("Wave: {t}")).collect();
    assert_eq!(names, expected);
    for ((_, unit), wave_id) in wave_units.iter().zip(["wave-01", "wave-02"]) {
        let u = app.get(&format!("/api/v1/work/units/{unit}")).await.body;
        let extract = u["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == "extract")
            .unwrap()
            .clone();
        assert_eq!(extract["executor"], "migration-agent");
        assert_eq!(extract["input"]["step"], "extract");
        assert_eq!(
            extract["input"]["wave_definition"]["content"]["wave_id"], wave_id,
            "{extract}"
        );
        assert_eq!(extract["trace_id"], implemented.body["trace_id"]);
    }

    // The client's operations: the journey, its stage, progress and open work.
    let ops = app
        .get(&format!("/api/v1/clients/{client}/operations"))
        .await;
    assert_eq!(ops.status, 200, "{}", ops.body);
    let op = &ops.body["journeys"][0];
    assert_eq!(op["id"], j.as_str());
    assert_eq!(op["state"], "wave_migration");
    assert_eq!(op["progress"], json!({"stages_done": 1, "stages_total": 3}));
    assert_eq!(op["open_tasks"].as_array().unwrap().len(), 10, "{op}");
    assert_eq!(ops.body["open_tasks"], 10);
    assert_eq!(ops.body["open_incidents"], 0);
    assert_eq!(op["validation"]["passed"], false);
    assert_eq!(ops.body["by_state"], json!({"wave_migration": 1}));

    // The client's people follow the journey's progress; another client's do not see it.
    let mine = app
        .call_as(Some(&cfo.token), Method::GET, "/api/v1/journeys", None)
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["items"][0]["id"], j.as_str());
    let seen = app
        .call_as(
            Some(&cfo.token),
            Method::GET,
            &format!("/api/v1/journeys/{j}"),
            None,
        )
        .await;
    assert_eq!(seen.body["progress"]["stages_done"], 1, "{}", seen.body);
    let other = app.client("Other Mutual").await;
    let stranger = person(&app, "x@other.example", Role::Client, Some(&other)).await;
    let r = app
        .call_as(
            Some(&stranger.token),
            Method::GET,
            &format!("/api/v1/journeys/{j}"),
            None,
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .call_as(Some(&stranger.token), Method::GET, "/api/v1/journeys", None)
        .await;
    assert_eq!(r.body["items"], json!([]));
    let r = app
        .call_as(
            Some(&stranger.token),
            Method::GET,
            &format!("/api/v1/journeys?client_id={client}"),
            None,
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .call_as(
            Some(&cfo.token),
            Method::GET,
            &format!("/api/v1/clients/{client}/operations"),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // The waves run; the reconciliation is in; validation, then completion.
    run_units(&app, &wave_units, &agents).await;
    metrics(
        &app,
        &j,
        json!([
            {"name": "waves_reconciled_ratio", "value": 1.0},
            {"name": "records_migrated_ratio", "value": 1.0},
            {"name": "open_sev1_defects", "value": 0},
        ]),
    )
    .await;
    let validation = event(&app, &j, json!({"event": "promote"})).await;
    assert_eq!(validation.status, 200, "{}", validation.body);
    assert_eq!(validation.body["state"], "validation");
    run_units(
        &app,
        &units_of(&validation.body, "validation", "activity"),
        &agents,
    )
    .await;
    metrics(
        &app,
        &j,
        json!([
            {"name": "premium_variance_ratio", "value": 0.00005},
            {"name": "reconciliation_rate", "value": 0.9995, "at": ago(2)},
            {"name": "reconciliation_rate", "value": 0.9996, "at": ago(1)},
            {"name": "reconciliation_rate", "value": 0.9997},
        ]),
    )
    .await;
    let s = app
        .post(
            &format!("/api/v1/journeys/{j}/signoffs"),
            json!({"name": "finance_signoff"}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let done = event(&app, &j, json!({"event": "complete"})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["state"], "completed");
    assert_eq!(status_of(&app, &plan).await["status"], "completed");

    // Every task of the journey carries the trace id of the request that created it.
    let d = app.get(&format!("/api/v1/journeys/{j}")).await.body;
    for u in d["units"].as_array().unwrap() {
        let unit = app
            .get(&format!(
                "/api/v1/work/units/{}",
                u["unit_id"].as_str().unwrap()
            ))
            .await
            .body;
        for t in unit["tasks"].as_array().unwrap() {
            assert_eq!(t["trace_id"], implemented.body["trace_id"], "{t}");
        }
    }

    // The analytics reflect the run.
    let a = app
        .get("/api/v1/analytics/journeys?template=insurance-migration")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = a.body;
    assert_eq!(
        (
            a["journeys"].as_u64(),
            a["started"].as_u64(),
            a["completed"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{a}"
    );
    assert_eq!(a["success_rate"], 1.0);
    assert_eq!(a["rollback_rate"], 0.0);
    let stages: Vec<&str> = a["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["discovery", "wave_migration", "validation"]);
    // Discovery's first promotion was refused on its exit criteria; the others passed first.
    assert_eq!(a["stages"][0]["first_pass_rate"], 0.0, "{a}");
    assert_eq!(a["stages"][0]["exit_attempts"], 3, "{a}");
    assert_eq!(a["stages"][1]["first_pass_rate"], 1.0, "{a}");
    assert_eq!(a["stages"][2]["first_pass_rate"], 1.0, "{a}");
    for s in a["stages"].as_array().unwrap() {
        assert_eq!(s["time_in_stage"]["count"], 1, "{s}");
        assert!(
            s["time_in_stage"]["median_s"].as_f64().unwrap() > 0.0,
            "{s}"
        );
    }
    assert_eq!(a["time_to_last_stage"]["count"], 1);
    assert!(a["bottleneck"]["stage"].is_string(), "{a}");
    app.get("/api/v1/analytics/journeys")
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/analytics/journeys?template=nope")
        .await
        .assert_problem(400, "invalid_query");
}

async fn data_flow(app: &TestApp, client: &str, input: Value, traceparent: &str) -> Value {
    let created = app
        .call(
            Method::POST,
            "/api/v1/journeys",
            Some(json!({"client_id": client, "template": "data-flow", "input": input})),
            &[("traceparent", traceparent)],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let j = created.body["id"].as_str().unwrap().to_owned();
    let started = event(app, &j, json!({"event": "start"})).await;
    assert_eq!(started.status, 200, "{}", started.body);
    started.body
}

/// The milestones unit's tasks, by key, once the engine ran what it could:
/// the unit is then `status`.
async fn milestones(app: &TestApp, engine: &Engine, journey: &Value, status: &str) -> Vec<Value> {
    let units = units_of(journey, "processing", "activity");
    assert_eq!(units.len(), 1, "{journey}");
    assert_eq!(units[0].0, "Processing milestones");
    engine.run_until_idle().await.expect("the engine steps");
    assert_unit(app, &units[0].1, status).await;
    let u = app
        .get(&format!("/api/v1/work/units/{}", units[0].1))
        .await
        .body;
    u["tasks"].as_array().unwrap().clone()
}

async fn seed_002_data_flow_hands_off_through_four_milestones(app: TestApp) {
    let engine = stepped_engine(&app);
    let client = app.client("Smart City Data").await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // Sensor readings of a city's districts: one reading is far off.
    let mut csv = String::from("district,reading,recorded_on,sensor\n");
    let districts = [
        "harbour",
        "old town",
        "harbour",
        "university",
        "harbour",
        "station",
    ];
    let mut total = 0.0;
    for day in 1..=28 {
        let reading = 40.0 + f64::from(day % 5) + f64::from(day) * 0.5;
        total += reading;
        let district = districts[day as usize % districts.len()];
        csv.push_str(&format!(
            "{district},{reading},2026-02-{day:02},s-{}\n",
            day % 4
        ));
    }
    csv.push_str("harbour,990,2026-03-01,s-9\n");
    total += 990.0;
    let file = app.upload(&client, "readings.csv", csv.into_bytes()).await;
    let j = data_flow(
        &app,
        &client,
        json!({"file_id": file}),
        &format!("00-{trace}-00f067aa0ba902b7-01"),
    )
    .await;
    assert_eq!(j["trace_id"], trace);
    let tasks = milestones(&app, &engine, &j, "completed").await;
    let keys: Vec<&str> = tasks.iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["uploaded", "parsed", "semantic", "insights"]);
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["trace_id"], trace, "{t}");
        // Each output keeps its contract; each input is the previous output.
        for f in t["contract"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            assert!(!t["output"][f].is_null(), "{} lacks {f}: {t}", t["key"]);
        }
        if i > 0 {
            assert_eq!(t["handoff_from"], tasks[i - 1]["key"]);
            for (k, v) in tasks[i - 1]["output"].as_object().unwrap() {
                assert_eq!(&t["input"][k], v, "{} did not receive {k}", t["key"]);
            }
        }
    }
    assert_eq!(
        tasks[0]["contract"],
        json!(["file_id", "validation_status", "storage_location"])
    );
    // Every step worked on the real file.
    let uploaded = &tasks[0]["output"];
    assert_eq!(uploaded["file"]["kind"], "csv");
    assert_eq!(uploaded["file"]["name"], "readings.csv");
    assert_eq!(uploaded["validation_status"], "valid");
    let parsed = &tasks[1]["output"]["parse_result"];
    assert_eq!(parsed["table"]["rows"], 29, "{parsed}");
    assert_eq!(parsed["table"]["columns"], 4);
    assert_eq!(parsed["table"]["column_types"][2], "date");
    let meaning = &tasks[2]["output"]["semantic_result"];
    assert_eq!(meaning["provider"], "template");
    assert!(
        meaning["summary"]
            .as_str()
            .unwrap()
            .starts_with("A table of 29 rows and 4 columns"),
        "{meaning}"
    );
    assert!(
        meaning["keywords"]
            .as_array()
            .unwrap()
            .contains(&json!("harbour")),
        "{meaning}"
    );
    let out = &tasks[3]["output"];
    assert_eq!(out["file_id"], file);
    assert_eq!(out["insights_result"]["status"], "generated");
    let artifact = out["insights_result"]["artifact_id"].as_str().unwrap();
    let report = app.get(&format!("/api/v1/artifacts/{artifact}")).await.body;
    assert_eq!(report["type"], "insights_report");
    assert_eq!(report["client_id"], client);
    assert_eq!(report["provenance"], format!("file:{file}"));
    let content = &report["content"];
    assert_eq!(content["file_id"], file);
    assert_eq!(content["trace_id"], trace);
    // The figures are the file's own.
    let metric = |name: &str| {
        content["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no metric {name}: {content}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!((metric("reading total") - total).abs() < 0.01, "{content}");
    assert_eq!(metric("rows"), 29.0);
    assert!(
        content["anomalies"][0]
            .as_str()
            .unwrap()
            .contains("reading is 990"),
        "{content}"
    );
    // And fit the pack's type.
    let pack = waymark_packs::builtin()
        .iter()
        .find(|p| p.name == "data-flow")
        .unwrap();
    let checked = pack
        .artifact_type("insights_report")
        .unwrap()
        .check(content, "");
    assert_eq!(checked.errors, vec![], "{content}");
    // The data quality score is a metric of the journey.
    let observed = app
        .store
        .journey_metrics(j["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    let quality = observed
        .iter()
        .find(|m| m.name == "data_quality_score")
        .unwrap_or_else(|| panic!("no data_quality_score among {observed:?}"));
    assert_eq!(
        Some(quality.value),
        content["data_quality"]["score"].as_f64()
    );
    let done = event(
        &app,
        j["id"].as_str().unwrap(),
        json!({"event": "complete"}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["state"], "completed");
    // Every history entry carries the journey's trace id.
    for h in done.body["history"].as_array().unwrap() {
        assert!(h["trace_id"].is_string(), "{h}");
    }

    // A file the client does not have stops the first milestone: it fails
    // with an incident and the next one never starts.
    let broken = data_flow(
        &app,
        &client,
        json!({"file_id": format!("fil_{}", "0".repeat(32))}),
        &format!("00-{}-00f067aa0ba902b7-01", "a".repeat(32)),
    )
    .await;
    let tasks = milestones(&app, &engine, &broken, "failed").await;
    assert_eq!(tasks[0]["status"], "failed", "{}", tasks[0]);
    let error = tasks[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("no file fil_") && error.contains("upload it first"),
        "{error}"
    );
    assert_eq!(tasks[1]["status"], "blocked");
    assert!(tasks[1]["input"].get("file_id").is_none(), "{}", tasks[1]);
    let bj = broken["id"].as_str().unwrap();
    let ops = app
        .get(&format!("/api/v1/clients/{client}/operations"))
        .await
        .body;
    let op = ops["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == bj)
        .unwrap()
        .clone();
    assert_eq!(op["open_incidents"].as_array().unwrap().len(), 1, "{op}");
    assert!(
        op["open_incidents"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no file fil_")
    );
    assert_eq!(ops["by_state"], json!({"completed": 1, "processing": 1}));
    let refused = event(&app, bj, json!({"event": "complete"})).await;
    refused.assert_problem(409, "transition_refused");
    let cancelled = event(&app, bj, json!({"event": "cancel", "reason": "bad upload"})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);

    // The analytics: two started, one completed, one cancelled.
    let a = app
        .get("/api/v1/analytics/journeys?template=data-flow")
        .await
        .body;
    assert_eq!(
        (
            a["started"].as_u64(),
            a["completed"].as_u64(),
            a["cancelled"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{a}"
    );
    assert_eq!(a["success_rate"], 0.5);
    assert_eq!(a["cancellation_rate"], 0.5);
    assert_eq!(a["stages"][0]["entered"], 2);
    // Both met the stage's exit criteria (a dry run) on the first attempt:
    // the broken one was held by its failed milestone, not by its criteria.
    assert_eq!(a["stages"][0]["exit_attempts"], 2);
    assert_eq!(a["stages"][0]["first_pass_rate"], 1.0);
}

async fn an_agent_cannot_complete_a_milestone_without_its_contract(app: TestApp) {
    let engine = stepped_engine(&app);
    let client = app.client("Parsers Inc").await;
    let token = agent_token(&app, "parser-agent").await;
    let mut template = app.get("/api/v1/journey-templates").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "data-flow")
        .unwrap()
        .clone();
    template["name"] = json!("agent-data-flow");
    template.as_object_mut().unwrap().remove("source");
    template["stages"][0]["milestones"][1]["executor"] = json!("parser-agent");
    template["stages"][0]["milestones"][1]["input"] = json!({});
    let saved = app.post("/api/v1/journey-templates", template).await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    let file = app
        .upload(&client, "notes.txt", b"Parser notes.".to_vec())
        .await;
    let created = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "agent-data-flow",
            "input": {"file_id": file}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let j = created.body["id"].as_str().unwrap().to_owned();
    let started = event(&app, &j, json!({"event": "start"})).await;
    assert_eq!(started.status, 200, "{}", started.body);

    // The upload runs on the engine; the parser receives its output.
    engine.run_until_idle().await.expect("the engine steps");
    let c = app
        .call_as(
            Some(&token),
            Method::POST,
            "/api/v1/agents/parser-agent/claim",
            Some(json!({"max": 1, "wait_s": 0})),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let claimed = c.body.as_array().unwrap().clone();
    assert_eq!(claimed.len(), 1, "{}", c.body);
    let c = &claimed[0];
    assert_eq!(c["task"]["key"], "parsed");
    assert_eq!(c["task"]["input"]["validation_status"], "valid");
    assert_eq!(c["task"]["input"]["file_id"], file);
    let id = c["task"]["id"].as_str().unwrap();
    let complete = |output: Value| {
        let app = &app;
        let token = token.clone();
        let lease = c["lease_token"].clone();
        async move {
            app.call_as(
                Some(&token),
                Method::POST,
                &format!("/api/v1/work/tasks/{id}/complete"),
                Some(json!({"lease_token": lease, "output": output})),
            )
            .await
        }
    };
    // An output missing a contract field is refused, and changes nothing.
    let bad = complete(json!({"file_id": file, "rows": 10})).await;
    bad.assert_problem(422, "invalid");
    assert_eq!(
        bad.body["errors"][0]["pointer"], "/output/parse_result",
        "{}",
        bad.body
    );
    let t = app.get(&format!("/api/v1/work/tasks/{id}")).await.body;
    assert_eq!(t["status"], "running");
    assert!(t["output"].is_null());
    let good = complete(
        json!({"file_id": file, "parse_result": {"rows": 10}, "semantic_result": {"entities": 3}}),
    )
    .await;
    assert_eq!(good.status, 200, "{}", good.body);
    let tasks = milestones(&app, &engine, &started.body, "completed").await;
    assert_eq!(tasks[2]["input"]["semantic_result"], json!({"entities": 3}));
}

async fn bridge_bad_input_is_refused_and_changes_nothing(app: TestApp) {
    let client = app.client("Great Lakes Mutual").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Migration", "pack": PACK}),
        )
        .await;
    let eng = e.body["id"].as_str().unwrap().to_owned();
    let plan = artifact(
        &app,
        &client,
        &eng,
        "migration_plan",
        "Plan",
        example(&app, "migration_plan").await,
    )
    .await;
    approve(&app, &plan).await;
    // A free-form document's type names no journey template.
    let memo = app.artifact(&client, "memo", json!({"text": "hi"})).await;
    approve(&app, &memo).await;
    let implement = |id: String, body: Option<Value>| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/artifacts/{id}/implement"),
                body,
                &[],
            )
            .await
        }
    };
    implement(memo.clone(), None)
        .await
        .assert_problem(409, "no_journey_template");
    implement(plan.clone(), Some(json!({"template": "nope"})))
        .await
        .assert_problem(422, "invalid");
    implement(plan.clone(), Some(json!({"bogus": 1})))
        .await
        .assert_problem(422, "invalid");
    let r = implement(plan.clone(), Some(json!({"input": [1]}))).await;
    r.assert_problem(422, "invalid");
    assert_eq!(r.body["errors"][0]["pointer"], "/input");
    let malformed = app
        .http
        .post(format!("{}/api/v1/artifacts/{plan}/implement", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"template\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    implement("art_01a1fcd5b0d474a2baf78e0d12c80a27".into(), None)
        .await
        .assert_problem(404, "not_found");
    // A client user cannot implement; a person cannot move the plan to
    // implemented by hand.
    let cfo = person(&app, "cfo@glm.example", Role::Client, Some(&client)).await;
    let r = app
        .call_as(
            Some(&cfo.token),
            Method::POST,
            &format!("/api/v1/artifacts/{plan}/implement"),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    app.post(
        &format!("/api/v1/artifacts/{plan}/transitions"),
        json!({"to": "implemented"}),
    )
    .await
    .assert_problem(409, "implement_instead");
    // A journey cannot be made from a draft artifact.
    let draft = artifact(
        &app,
        &client,
        &eng,
        "migration_plan",
        "Draft plan",
        example(&app, "migration_plan").await,
    )
    .await;
    let r = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "insurance-migration", "source_artifact_id": draft}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("only an approved artifact"),
        "{}",
        r.body
    );
    // Nothing changed.
    assert_eq!(status_of(&app, &plan).await["status"], "approved");
    assert!(status_of(&app, &plan).await["journey_id"].is_null());
    assert_eq!(status_of(&app, &draft).await["status"], "draft");
    let list = app
        .get(&format!("/api/v1/journeys?client_id={client}"))
        .await;
    assert_eq!(list.body["items"], json!([]));
    // Operations of a client that does not exist.
    app.get("/api/v1/clients/cli_01a1fcd5b0d474a2baf78e0d12c80a27/operations")
        .await
        .assert_problem(404, "not_found");
}

/// Completes the one ready task of `executor` in the journey's unit with `output`.
async fn complete_with(
    app: &TestApp,
    unit: &str,
    key: &str,
    token: Option<&str>,
    output: Value,
) -> Value {
    let u = app.get(&format!("/api/v1/work/units/{unit}")).await.body;
    let task = u["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap()
        .clone();
    let id = task["id"].as_str().unwrap();
    let mut body = json!({"output": output});
    if let Some(token) = token {
        let agent = task["executor"].as_str().unwrap();
        let c = app
            .call_as(
                Some(token),
                Method::POST,
                &format!("/api/v1/agents/{agent}/claim"),
                Some(json!({"max": 5, "wait_s": 0})),
            )
            .await;
        let mine = c
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["task"]["id"] == id)
            .unwrap()
            .clone();
        body["lease_token"] = mine["lease_token"].clone();
    }
    let r = app
        .call_as(
            Some(token.unwrap_or(&app.token)),
            Method::POST,
            &format!("/api/v1/work/tasks/{id}/complete"),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn task_outputs_report_metrics_that_criteria_and_triggers_see(app: TestApp) {
    let engine = stepped_engine(&app);
    let client = app.client("Medtronic").await;
    let created = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "client-onboarding"}),
        )
        .await;
    let j = created.body["id"].as_str().unwrap().to_owned();
    let started = event(&app, &j, json!({"event": "start"})).await;
    let units = units_of(&started.body, "sandbox", "activity");
    let token = agent_token(&app, "connector-installation-agent").await;
    // An agent's output reports a metric: the exit criteria see it.
    complete_with(
        &app,
        &units[0].1,
        "install_connectors",
        Some(&token),
        json!({"installed": true, "metrics": {"connector_sync_rate": 1.0, "bad name": 3}}),
    )
    .await;
    let v = app
        .get(&format!("/api/v1/journeys/{j}/validation"))
        .await
        .body;
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "connectors_syncing")
        .unwrap()
        .clone();
    assert_eq!(check["outcome"], "passed", "{check}");
    let d = app.get(&format!("/api/v1/journeys/{j}")).await.body;
    assert_eq!(d["state"], "sandbox");
    // A person's scan reports vulnerabilities: the trigger rolls the journey back.
    complete_with(
        &app,
        &units[1].1,
        "security_scan",
        None,
        json!({"metrics": {"security_vulnerabilities": 2}}),
    )
    .await;
    let d = app.get(&format!("/api/v1/journeys/{j}")).await.body;
    assert_eq!(d["state"], "rolling_back", "{d}");
    let last = d["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["trigger"].as_str(), last["automatic"].as_bool()),
        (Some("security_vulnerability"), Some(true)),
        "{last}"
    );

    // A built-in executor's output does the same through the embedded workers.
    let template = json!({"name": "probe", "title": "Probe", "stages": [{
        "id": "watch", "name": "Watch",
        "activities": [{"name": "Probe", "tasks": [
            {"key": "probe", "executor": "noop", "input": {"metrics": {"error_rate": 0.4}}}
        ]}],
        "rollback": {"triggers": [{"trigger": "performance_degradation", "metric": "error_rate", "op": ">", "threshold": 0.2}]}
    }]});
    let saved = app.post("/api/v1/journey-templates", template).await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    let p = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "probe"}),
        )
        .await;
    let pj = p.body["id"].as_str().unwrap().to_owned();
    event(&app, &pj, json!({"event": "start"})).await;
    engine.run_until_idle().await.expect("the engine steps");
    let state = app.get(&format!("/api/v1/journeys/{pj}")).await.body;
    assert_eq!(state["state"], "rolling_back", "{state}");
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["trigger"], "performance_degradation");
}
