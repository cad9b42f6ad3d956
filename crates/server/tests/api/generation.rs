//! Generation plans run on the work engine: `POST /engagements/{id}/plan/run`
//! queues `llm.generate` jobs that write their sections of each module's
//! artifact, with sources and inputs hashes; gated jobs wait; unchanged inputs
//! are up to date; an LLM provider answers when configured, the template when
//! not or when it fails.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use waymark_engine::run::{Engine, EngineSettings};
use waymark_llm::Llm;

use crate::fake_llm::{FakeLlm, user_message};
use crate::helpers::TestApp;

crate::both_backends!(
    the_marketing_plan_runs_to_completion_with_templates,
    runs_wait_for_their_module_and_refuse_bad_input,
    an_llm_provider_writes_sections_and_failures_fall_back,
    the_intake_chooses_the_deliverables,
    every_pack_with_generators_has_a_plan,
);

const PACK: &str = "marketing-engagement";

/// The embedded engine, stepped by the test: no task runs but when the test
/// says so, and no test waits on a clock.
fn start_engine(app: &TestApp, llm: Llm) -> Engine {
    Engine::new(
        app.store.clone(),
        EngineSettings {
            concurrency: 4,
            name: "generation-worker".into(),
            llm,
            ..EngineSettings::default()
        },
    )
}

async fn engagement(app: &TestApp) -> (String, String) {
    let client = app.client("Northwind Ledger").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Launch", "pack": PACK}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    (client, e.body["id"].as_str().unwrap().to_owned())
}

async fn example(app: &TestApp, ty: &str) -> Value {
    let pack = app.get(&format!("/api/v1/packs/{PACK}")).await;
    pack.body["artifact_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == ty)
        .unwrap()["example"]
        .clone()
}

/// An approved intake that lists no deliverables: the plan is every job.
async fn approved_intake(app: &TestApp, client: &str, eng: &str) -> String {
    let mut content = example(app, "intake").await;
    content.as_object_mut().unwrap().remove("deliverables");
    approved_intake_with(app, client, eng, content).await
}

async fn approved_intake_with(app: &TestApp, client: &str, eng: &str, content: Value) -> String {
    let a = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "engagement_id": eng, "type": "intake",
                   "title": "Intake", "content": content}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    approve(app, &id).await;
    id
}

async fn move_to(app: &TestApp, id: &str, to: &str) {
    let a = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            crate::helpers::transition_body(to),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn approve(app: &TestApp, id: &str) {
    move_to(app, id, "in_review").await;
    move_to(app, id, "approved").await;
}

async fn run(app: &TestApp, eng: &str, mode: &str) -> crate::helpers::Answer {
    app.post(
        &format!("/api/v1/engagements/{eng}/plan/run"),
        json!({"mode": mode}),
    )
    .await
}

async fn plan(app: &TestApp, eng: &str) -> Value {
    let p = app.get(&format!("/api/v1/engagements/{eng}/plan")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    p.body
}

fn statuses(plan: &Value) -> BTreeMap<String, String> {
    plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["key"].as_str().unwrap().to_owned(),
                j["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn module_jobs(plan: &Value, module: &str) -> Vec<String> {
    plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["module"] == module)
        .map(|j| j["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_unit(app: &TestApp, engine: &Engine, id: &str) -> Value {
    engine.run_until_idle().await.expect("the engine steps");
    let u = app.get(&format!("/api/v1/work/units/{id}")).await;
    assert_eq!(
        u.body["status"], "completed",
        "unit {id} once the engine is idle: {}",
        u.body
    );
    u.body
}

/// Runs every ready job and waits for them; answers the jobs queued.
async fn run_all_ready(app: &TestApp, engine: &Engine, eng: &str) -> Vec<String> {
    let r = run(app, eng, "all_ready").await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_unit(app, engine, r.body["unit_id"].as_str().unwrap()).await;
    r.body["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// The engagement's current artifact of `ty`, whole.
async fn current(app: &TestApp, eng: &str, ty: &str) -> Value {
    let board = app.get(&format!("/api/v1/engagements/{eng}/board")).await;
    let col = board.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == ty)
        .unwrap()
        .clone();
    let id = col["artifact"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {ty} artifact: {}", board.body));
    app.get(&format!("/api/v1/artifacts/{id}")).await.body
}

async fn the_marketing_plan_runs_to_completion_with_templates(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    // Nothing to build on yet: nothing runs, and the answer says why.
    let early = run(&app, &eng, "next").await;
    assert_eq!(early.status, 200, "{}", early.body);
    assert!(early.body["unit_id"].is_null());
    let reason = early.body["reason"].as_str().unwrap();
    assert!(reason.contains("intake (missing)"), "{reason}");

    let intake = approved_intake(&app, &client, &eng).await;
    let engine = start_engine(&app, Llm::new(None));
    let p = plan(&app, &eng).await;
    let strategy_jobs = module_jobs(&p, "strategy");
    assert_eq!(strategy_jobs.len(), 7);

    // Strategy: every job writes its section of the one strategy artifact.
    let queued = run_all_ready(&app, &engine, &eng).await;
    assert_eq!(queued, strategy_jobs);
    let strategy = current(&app, &eng, "strategy").await;
    assert_eq!(strategy["version"], 7, "one version per job");
    assert_eq!(strategy["status"], "draft");
    assert_eq!(strategy["provenance"], "template");
    for job in &strategy_jobs {
        assert!(
            strategy["content"][job].is_object() || strategy["content"][job].is_array(),
            "{job} missing"
        );
    }
    let summary = strategy["content"]["summary"].as_str().unwrap();
    assert!(summary.contains("Northwind Ledger"), "{summary}");
    assert!(
        !summary.contains("{{"),
        "placeholders are filled: {summary}"
    );
    let intake_now = app.get(&format!("/api/v1/artifacts/{intake}")).await.body;
    assert_eq!(
        strategy["sources"],
        json!([{"artifact_id": intake, "version": intake_now["version"]}])
    );
    let versions = app
        .get(&format!(
            "/api/v1/artifacts/{}/versions",
            strategy["id"].as_str().unwrap()
        ))
        .await;
    let notes: Vec<&str> = versions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["note"].as_str().unwrap_or(""))
        .collect();
    assert!(notes[0].starts_with("ICP Definition"), "{notes:?}");
    let p = plan(&app, &eng).await;
    let st = statuses(&p);
    for job in &strategy_jobs {
        assert_eq!(st[job], "completed", "{job}");
    }
    let first = &p["jobs"][0];
    assert_eq!(first["last_run"]["inputs_hash"], first["inputs_hash"]);
    assert_eq!(first["last_run"]["provenance"], "template");
    assert_eq!(first["last_run"]["task_status"], "completed");
    // Creatives wait for the strategy to be approved, and say so.
    let creative = module_jobs(&p, "creatives")[0].clone();
    assert_eq!(st[&creative], "blocked");
    let blocked = p["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == creative.as_str())
        .unwrap();
    assert_eq!(
        blocked["reasons"],
        json!(["strategy (draft - must be approved)"])
    );
    let idle = run(&app, &eng, "all_ready").await;
    assert_eq!(idle.status, 200, "{}", idle.body);
    assert!(idle.body["reason"].as_str().unwrap().contains("blocked"));

    // Each approval opens the next module.
    approve(&app, strategy["id"].as_str().unwrap()).await;
    assert_eq!(
        run_all_ready(&app, &engine, &eng).await,
        module_jobs(&p, "creatives")
    );
    let creatives = current(&app, &eng, "creatives").await;
    assert_eq!(creatives["version"], 6);
    let text = creatives["content"].to_string();
    assert!(
        text.contains("Northwind Ledger"),
        "found upstream in the intake"
    );
    approve(&app, creatives["id"].as_str().unwrap()).await;
    assert_eq!(
        run_all_ready(&app, &engine, &eng).await,
        module_jobs(&p, "execution")
    );
    let execution = current(&app, &eng, "execution").await;
    approve(&app, execution["id"].as_str().unwrap()).await;
    // Monitoring and delivery are both open now: one unit, one chain each.
    let last = run_all_ready(&app, &engine, &eng).await;
    let mut expected = module_jobs(&p, "monitoring");
    expected.extend(module_jobs(&p, "delivery"));
    assert_eq!(last, expected);
    let delivery = current(&app, &eng, "delivery").await;
    assert_eq!(delivery["version"], 3);
    let mut source_ids: Vec<&str> = delivery["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["artifact_id"].as_str().unwrap())
        .collect();
    source_ids.sort();
    let mut want = vec![
        intake.as_str(),
        strategy["id"].as_str().unwrap(),
        creatives["id"].as_str().unwrap(),
        execution["id"].as_str().unwrap(),
    ];
    want.sort();
    assert_eq!(source_ids, want);
    let lineage = app
        .get(&format!(
            "/api/v1/artifacts/{}/lineage",
            delivery["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(lineage.status, 200, "{}", lineage.body);
    assert_eq!(lineage.body["upstream"].as_array().unwrap().len(), 4);
    let monitoring = current(&app, &eng, "monitoring").await;
    approve(&app, monitoring["id"].as_str().unwrap()).await;
    approve(&app, delivery["id"].as_str().unwrap()).await;

    // Everything ran on the current inputs: up to date, nothing queued.
    let p = plan(&app, &eng).await;
    assert!(
        statuses(&p).values().all(|s| s == "completed"),
        "{:?}",
        statuses(&p)
    );
    assert_eq!(p["counts"]["completed"], 26);
    let done = run(&app, &eng, "all_ready").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["reason"], "every job is up to date");

    // The client changes the intake: the cascade flags what was built on it,
    // and the strategy jobs run again on the new version.
    move_to(&app, &intake, "draft").await;
    let v = app.get(&format!("/api/v1/artifacts/{intake}")).await.body["version"].clone();
    let mut content = example(&app, "intake").await;
    content.as_object_mut().unwrap().remove("deliverables");
    content["client_identity"]["client_name"] = json!("Northwind Ledger Inc.");
    let w = app
        .put_content(&intake, &format!("\"{v}\""), json!({"content": content}))
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    approve(&app, &intake).await;
    let s = current(&app, &eng, "strategy").await;
    assert_eq!(s["status"], "stale", "{}", s);
    let p = plan(&app, &eng).await;
    let st = statuses(&p);
    assert_eq!(st[&strategy_jobs[0]], "ready");
    assert_eq!(
        st[&creative], "blocked",
        "creatives wait for the strategy again"
    );
    assert_eq!(run_all_ready(&app, &engine, &eng).await, strategy_jobs);
    let s = current(&app, &eng, "strategy").await;
    assert_eq!(s["status"], "draft");
    assert_eq!(s["version"], 14);
    assert!(
        s["content"]["summary"]
            .as_str()
            .unwrap()
            .contains("Northwind Ledger Inc."),
        "{}",
        s["content"]["summary"]
    );
    let st = statuses(&plan(&app, &eng).await);
    assert_eq!(st[&strategy_jobs[0]], "completed");
    // Every generation left one audit record per task and no incident.
    let incidents = app.get("/api/v1/work/incidents").await;
    assert_eq!(incidents.body["items"], json!([]), "{}", incidents.body);
}

async fn runs_wait_for_their_module_and_refuse_bad_input(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    approved_intake(&app, &client, &eng).await;
    for (body, pointer) in [
        (json!({"mode": "sideways"}), "/mode"),
        (json!({"mode": "next", "extra": 1}), ""),
        (json!({"mode": 3}), "/mode"),
    ] {
        let r = app
            .post(&format!("/api/v1/engagements/{eng}/plan/run"), body.clone())
            .await;
        r.assert_problem(422, "invalid");
        if !pointer.is_empty() {
            assert_eq!(r.body["errors"][0]["pointer"], pointer, "{}", r.body);
        }
    }
    let units = app.get("/api/v1/work/units").await;
    assert_eq!(units.body["items"], json!([]), "refusals queue nothing");
    let other = app
        .get("/api/v1/engagements/eng_00000000000000000000000000/plan")
        .await;
    assert_eq!(other.status.as_u16(), 404, "{}", other.body);

    // No worker yet: the first job waits in the queue; the next run takes the
    // next job, which waits for the first one's unit (same artifact).
    let first = run(&app, &eng, "next").await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["queued"], json!(["icp_definition"]));
    let unit1 = first.body["unit_id"].as_str().unwrap().to_owned();
    assert_eq!(statuses(&first.body["plan"])["icp_definition"], "queued");
    let second = run(&app, &eng, "next").await;
    assert_eq!(second.status, 202, "{}", second.body);
    assert_eq!(second.body["queued"], json!(["positioning"]));
    let unit2 = second.body["unit_id"].as_str().unwrap().to_owned();
    let u2 = app.get(&format!("/api/v1/work/units/{unit2}")).await;
    assert_eq!(u2.body["depends_on_units"], json!([unit1]));
    assert_eq!(u2.body["status"], "pending");
    // llm.generate tasks come from plan runs only.
    let direct = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "x", "tasks": [
                {"key": "a", "executor": "llm.generate", "input": {"engagement_id": eng, "job": "icp_definition"}}]}),
        )
        .await;
    direct.assert_problem(422, "invalid");
    assert!(
        direct.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("plan/run")
    );

    let engine = start_engine(&app, Llm::new(None));
    wait_unit(&app, &engine, &unit1).await;
    wait_unit(&app, &engine, &unit2).await;
    let s = current(&app, &eng, "strategy").await;
    assert_eq!(s["version"], 2);
    assert!(s["content"]["icp_definition"].is_object());
    assert!(s["content"]["positioning"].is_object());
    assert!(s["content"].get("messaging_framework").is_none());
    let st = statuses(&plan(&app, &eng).await);
    assert_eq!(st["icp_definition"], "completed");
    assert_eq!(st["positioning"], "completed");
    assert_eq!(st["messaging_framework"], "ready");

    // A person's edit in between does not get overwritten blindly: the next
    // job builds on it.
    let id = s["id"].as_str().unwrap();
    let mut edited = s["content"].clone();
    edited["summary"] = json!("Edited by the strategist");
    let w = app
        .put_content(id, "\"2\"", json!({"content": edited}))
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let r = run(&app, &eng, "next").await;
    wait_unit(&app, &engine, r.body["unit_id"].as_str().unwrap()).await;
    let s = current(&app, &eng, "strategy").await;
    assert_eq!(s["version"], 4);
    assert!(s["content"]["positioning"].is_object(), "kept the others");
    assert!(s["content"]["messaging_framework"].is_object());
    // An approved artifact is not regenerated: its jobs say how to unlock it.
    approve(&app, id).await;
    let p = plan(&app, &eng).await;
    let job = p["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "content_pillars")
        .unwrap();
    assert_eq!(job["status"], "blocked");
    assert!(
        job["reasons"][0]
            .as_str()
            .unwrap()
            .contains("back to draft"),
        "{job}"
    );
}

async fn an_llm_provider_writes_sections_and_failures_fall_back(app: TestApp) {
    let fake = FakeLlm::openai("writer-1", None).await;
    let example_strategy = example(&app, "strategy").await;
    let section = example_strategy.clone();
    fake.set_reply(move |req| {
        let asked = user_message(req);
        let job = ["icp_definition", "positioning", "messaging_framework"]
            .into_iter()
            .find(|j| asked.contains(&format!("`{j}`")))
            .unwrap_or("icp_definition");
        json!({"summary": "Written by the model", job: section[job]}).to_string()
    });
    let (client, eng) = engagement(&app).await;
    approved_intake(&app, &client, &eng).await;
    let engine = start_engine(&app, fake.llm(true));
    let r = run(&app, &eng, "next").await;
    let unit = wait_unit(&app, &engine, r.body["unit_id"].as_str().unwrap()).await;
    let s = current(&app, &eng, "strategy").await;
    assert_eq!(s["provenance"], "openai:writer-1");
    assert_eq!(s["content"]["summary"], "Written by the model");
    assert_eq!(
        s["content"]["icp_definition"],
        example_strategy["icp_definition"]
    );
    let asked = user_message(&fake.requests()[0]);
    assert!(asked.contains("`icp_definition`"), "{asked}");
    assert!(
        asked.contains("Northwind Ledger"),
        "the sources are in the prompt"
    );
    assert_eq!(unit["tasks"][0]["output"]["provenance"], "openai:writer-1");

    // The provider fails: the template answers, and the output says why.
    fake.fail_with(500);
    let r = run(&app, &eng, "next").await;
    let unit = wait_unit(&app, &engine, r.body["unit_id"].as_str().unwrap()).await;
    let out = &unit["tasks"][0]["output"];
    assert_eq!(out["provenance"], "template");
    assert!(
        out["fallback_reason"].as_str().unwrap().contains("500"),
        "{out}"
    );
    let s = current(&app, &eng, "strategy").await;
    assert_eq!(s["provenance"], "template");
    assert_eq!(s["version"], 2);

    // An answer that does not fit the schema falls back too.
    fake.behave();
    fake.reply_with(json!({"summary": 42, "messaging_framework": "not an object"}).to_string());
    let r = run(&app, &eng, "next").await;
    let unit = wait_unit(&app, &engine, r.body["unit_id"].as_str().unwrap()).await;
    let out = &unit["tasks"][0]["output"];
    assert_eq!(out["provenance"], "template");
    assert!(
        out["fallback_reason"].as_str().unwrap().contains("schema"),
        "{out}"
    );
}

async fn the_intake_chooses_the_deliverables(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    let mut content = example(&app, "intake").await;
    content["deliverables"] = json!(["positioning", "carousel_templates"]);
    approved_intake_with(&app, &client, &eng, content).await;
    let p = plan(&app, &eng).await;
    assert_eq!(p["selected_by"], "intake", "{p}");
    assert_eq!(
        p["deliverables"],
        json!(["positioning", "carousel_templates"])
    );
    let keys: Vec<&str> = p["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    // What they need comes along: carousel templates wait on the strategy's
    // positioning (the module's dependency), nothing else of the pack.
    assert!(
        keys.contains(&"positioning") && keys.contains(&"carousel_templates"),
        "{keys:?}"
    );
    assert!(!keys.contains(&"email_sequence"), "{keys:?}");
    // A saved selection wins over the intake.
    let saved = app
        .post(
            &format!("/api/v1/engagements/{eng}/plan"),
            json!({"deliverables": ["icp_definition"]}),
        )
        .await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(saved.body["selected_by"], "saved");
    assert_eq!(saved.body["deliverables"], json!(["icp_definition"]));
}

async fn every_pack_with_generators_has_a_plan(app: TestApp) {
    let client = app.client("Generated Everywhere").await;
    for pack in [
        "client-onboarding",
        "insurance-migration",
        "renewal",
        "data-flow",
    ] {
        let e = app
            .post(
                "/api/v1/engagements",
                json!({"client_id": client, "name": pack, "pack": pack}),
            )
            .await;
        assert_eq!(e.status, 201, "{}", e.body);
        let eng = e.body["id"].as_str().unwrap().to_owned();
        let p = plan(&app, &eng).await;
        assert_eq!(p["selected_by"], "pack");
        let jobs = p["jobs"].as_array().unwrap();
        assert!(!jobs.is_empty(), "{pack}: {p}");
        // One job per type with a generator, named after it.
        for j in jobs {
            assert_eq!(j["key"], j["module"], "{pack}: {j}");
        }
    }
    // The onboarding plan runs from its first type on the templates.
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Onboarding", "pack": "client-onboarding"}),
        )
        .await;
    let eng = e.body["id"].as_str().unwrap().to_owned();
    let engine = start_engine(&app, Llm::new(None));
    let queued = run_all_ready(&app, &engine, &eng).await;
    assert_eq!(queued, ["onboarding_plan"]);
    let written = current(&app, &eng, "onboarding_plan").await;
    assert_eq!(written["version"], 1);
    assert_eq!(written["status"], "draft");
    // Its schema holds: the board shows no rule or schema problem, and the
    // next types wait for its approval.
    let p = plan(&app, &eng).await;
    let spec = p["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "integration_spec")
        .unwrap();
    assert_eq!(spec["status"], "blocked", "{spec}");
}
