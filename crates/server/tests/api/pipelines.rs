//! Pipelines over HTTP: packs, intake validation, gating, the stale cascade,
//! re-approval, the board, lineage and generation plans.

use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::both_backends!(
    intake_is_validated_with_paths_and_warnings,
    gating_and_the_stale_cascade,
    unchanged_intake_flags_nothing,
    board_and_lineage_show_the_pipeline,
    plan_has_every_job_in_its_band,
    packs_are_listed_installed_and_checked,
);

const PACK: &str = "marketing-engagement";

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
    assert_eq!(pack.status, 200, "{}", pack.body);
    pack.body["artifact_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == ty)
        .unwrap_or_else(|| panic!("no type {ty}"))["example"]
        .clone()
}

async fn create(
    app: &TestApp,
    client: &str,
    eng: &str,
    ty: &str,
    content: Value,
) -> crate::helpers::Answer {
    app.post(
        "/api/v1/artifacts",
        json!({"client_id": client, "engagement_id": eng, "type": ty, "title": format!("{ty}"), "content": content}),
    )
    .await
}

async fn created(app: &TestApp, client: &str, eng: &str, ty: &str) -> String {
    let content = example(app, ty).await;
    let a = create(app, client, eng, ty, content).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

async fn move_to(app: &TestApp, id: &str, to: &str) -> Value {
    let a = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            crate::helpers::transition_body(to),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn approve(app: &TestApp, id: &str) -> Value {
    move_to(app, id, "in_review").await;
    move_to(app, id, "approved").await
}

async fn gating(app: &TestApp, eng: &str, ty: &str) -> Value {
    let g = app
        .get(&format!("/api/v1/engagements/{eng}/gating?type={ty}"))
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    g.body
}

/// Reopens the intake and writes `content` as its next version.
async fn new_intake_version(app: &TestApp, id: &str, content: Value) -> crate::helpers::Answer {
    let now = app.get(&format!("/api/v1/artifacts/{id}")).await;
    if now.body["status"] != "draft" {
        move_to(app, id, "draft").await;
    }
    let v = now.body["version"].as_i64().unwrap();
    app.put_content(id, &format!("\"{v}\""), json!({"content": content}))
        .await
}

async fn intake_is_validated_with_paths_and_warnings(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    let before = app.footprint().await;
    let missing = create(
        &app,
        &client,
        &eng,
        "intake",
        json!({"client_identity": {"website": "https://x.example"}, "goals_constraints": {}}),
    )
    .await;
    missing.assert_problem(422, "invalid");
    let pointers: Vec<&str> = missing.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    for p in [
        "/content/client_identity/client_name",
        "/content/client_identity/industry",
        "/content/client_identity/geography",
        "/content/goals_constraints/objective",
        "/content/offer_economics",
    ] {
        assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
    }
    assert_eq!(
        app.footprint().await,
        before,
        "a refused write changes nothing"
    );

    // Objective `leads`, no target audience: accepted, with the warning.
    let mut intake = example(&app, "intake").await;
    intake["goals_constraints"]["objective"] = json!("leads");
    intake["audience_market"]
        .as_object_mut()
        .unwrap()
        .remove("target_audience");
    let ok = create(&app, &client, &eng, "intake", intake.clone()).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(
        ok.body["warnings"],
        json!(["Lead-generation objective but no target audience."])
    );

    // The same answers from validate, which writes nothing.
    let v = app
        .post(
            "/api/v1/artifacts/validate",
            json!({"type": "intake", "content": intake}),
        )
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["ok"], true);
    assert_eq!(v.body["pack"], PACK);
    assert_eq!(v.body["warnings"].as_array().unwrap().len(), 1);
    // Hiring without an EVP, and the hiring section is then required.
    intake["goals_constraints"]["objective"] = json!("hiring");
    let v = app
        .post(
            "/api/v1/artifacts/validate",
            json!({"type": "intake", "content": intake.clone()}),
        )
        .await;
    assert_eq!(v.body["ok"], false);
    assert_eq!(v.body["errors"][0]["pointer"], "/content/hiring");
    intake["hiring"] = json!({"role_types": "Account executives"});
    let v = app
        .post(
            "/api/v1/artifacts/validate",
            json!({"type": "intake", "content": intake.clone()}),
        )
        .await;
    assert_eq!(v.body["ok"], true, "{}", v.body);
    assert!(
        v.body["warnings"][0].as_str().unwrap().contains("EVP"),
        "{}",
        v.body
    );
    // A student audience with high-ticket pricing.
    intake["goals_constraints"]["objective"] = json!("sales");
    intake["audience_market"]["target_audience"] = json!("University students in their final year");
    intake["offer_economics"]["pricing"]["tier"] = json!("high_ticket");
    let v = app
        .post(
            "/api/v1/artifacts/validate",
            json!({"type": "intake", "content": intake}),
        )
        .await;
    assert!(
        v.body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Student audience"),
        "{}",
        v.body
    );
    let unknown = app
        .post(
            "/api/v1/artifacts/validate",
            json!({"type": "nonsense", "content": {}}),
        )
        .await;
    unknown.assert_problem(422, "invalid");
    // A type outside the engagement's pack.
    let wrong = create(&app, &client, &eng, "wave_definition", json!({})).await;
    wrong.assert_problem(422, "invalid");
    assert!(
        wrong.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("intake, strategy")
    );
}

async fn gating_and_the_stale_cascade(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    assert_eq!(
        gating(&app, &eng, "strategy").await,
        json!({"type": "strategy", "allowed": false, "reasons": ["intake (missing)"]})
    );
    let intake = created(&app, &client, &eng, "intake").await;
    let g = gating(&app, &eng, "strategy").await;
    assert_eq!(g["reasons"], json!(["intake (draft - must be approved)"]));

    // Creating a gated type is refused with the reasons, and writes nothing.
    let before = app.footprint().await;
    let content = example(&app, "strategy").await;
    let refused = create(&app, &client, &eng, "strategy", content).await;
    refused.assert_problem(409, "gated");
    assert_eq!(
        refused.body["reasons"],
        json!(["intake (draft - must be approved)"])
    );
    assert_eq!(app.footprint().await, before);

    approve(&app, &intake).await;
    assert_eq!(gating(&app, &eng, "strategy").await["allowed"], true);
    let strategy = created(&app, &client, &eng, "strategy").await;
    let s = app.get(&format!("/api/v1/artifacts/{strategy}")).await;
    assert_eq!(
        s.body["sources"],
        json!([{"artifact_id": intake, "version": 1}])
    );
    assert_eq!(
        gating(&app, &eng, "creatives").await["reasons"],
        json!(["strategy (draft - must be approved)"])
    );
    approve(&app, &strategy).await;
    let creatives = created(&app, &client, &eng, "creatives").await;
    approve(&app, &creatives).await;
    assert_eq!(gating(&app, &eng, "execution").await["allowed"], true);

    // A new intake version makes strategy and creatives stale.
    let mut changed = example(&app, "intake").await;
    changed["client_identity"]["geography"] = json!("United States, Canada and Mexico");
    let w = new_intake_version(&app, &intake, changed).await;
    assert_eq!(w.status, 200, "{}", w.body);
    let flagged: Vec<&str> = w.body["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["artifact_id"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, [strategy.as_str(), creatives.as_str()]);

    let s = app.get(&format!("/api/v1/artifacts/{strategy}")).await;
    assert_eq!(s.body["status"], "stale");
    assert_eq!(
        s.body["stale_reason"],
        "Upstream intake changed from v1 to v2"
    );
    assert_eq!(
        s.body["stale_causes"][0]["category"], "upstream_changed",
        "{}",
        s.body
    );
    assert_eq!(s.body["stale_causes"][0]["from_version"], 1);
    assert_eq!(s.body["stale_causes"][0]["to_version"], 2);
    let c = app.get(&format!("/api/v1/artifacts/{creatives}")).await;
    assert_eq!(c.body["status"], "stale");
    assert_eq!(
        c.body["stale_reason"],
        "Upstream strategy is stale (intake changed from v1 to v2)"
    );
    assert_eq!(c.body["stale_causes"][0]["category"], "upstream_stale");
    let h = app
        .get(&format!("/api/v1/artifacts/{creatives}/history"))
        .await;
    let last = h.body["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "marked_stale");
    assert_eq!(last["to_status"], "stale");
    assert!(last["trace_id"].is_string(), "{last}");

    // Execution stays locked until both are re-approved.
    let content = example(&app, "execution").await;
    let refused = create(&app, &client, &eng, "execution", content.clone()).await;
    refused.assert_problem(409, "gated");
    assert_eq!(
        refused.body["reasons"],
        json!([
            "strategy (stale - must be re-approved)",
            "creatives (stale - must be re-approved)"
        ])
    );
    // Re-approving the strategy while the new intake is a draft would
    // re-base it onto an unapproved input: refused, with the reasons, and
    // nothing changes.
    let before = app.footprint().await;
    let early = app
        .post(
            &format!("/api/v1/artifacts/{strategy}/transitions"),
            json!({"to": "approved", "reason": "still valid"}),
        )
        .await;
    early.assert_problem(409, "gated");
    assert_eq!(
        early.body["reasons"],
        json!(["intake (draft - must be approved)"])
    );
    assert_eq!(app.footprint().await, before);
    approve(&app, &intake).await;
    let rebased = move_to(&app, &strategy, "approved").await;
    assert_eq!(rebased["version"], 2, "re-approval re-bases onto intake v2");
    assert_eq!(
        rebased["sources"],
        json!([{"artifact_id": intake, "version": 2}])
    );
    assert_eq!(rebased["stale_reason"], Value::Null);
    let refused = create(&app, &client, &eng, "execution", content.clone()).await;
    assert_eq!(
        refused.body["reasons"],
        json!(["creatives (stale - must be re-approved)"])
    );
    move_to(&app, &creatives, "approved").await;
    let ok = create(&app, &client, &eng, "execution", content).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let sources = ok.body["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["version"], 2, "built on the re-based strategy");
}

async fn unchanged_intake_flags_nothing(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    let intake = created(&app, &client, &eng, "intake").await;
    approve(&app, &intake).await;
    let strategy = created(&app, &client, &eng, "strategy").await;
    approve(&app, &strategy).await;
    let same = example(&app, "intake").await;
    let w = new_intake_version(&app, &intake, same).await;
    assert_eq!(w.status, 200, "{}", w.body);
    assert_eq!(w.body["version"], 2);
    assert_eq!(w.body["flagged"], json!([]));
    let s = app.get(&format!("/api/v1/artifacts/{strategy}")).await;
    assert_eq!(s.body["status"], "approved");
}

async fn board_and_lineage_show_the_pipeline(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    let intake = created(&app, &client, &eng, "intake").await;
    approve(&app, &intake).await;
    let strategy = created(&app, &client, &eng, "strategy").await;

    let board = app.get(&format!("/api/v1/engagements/{eng}/board")).await;
    assert_eq!(board.status, 200, "{}", board.body);
    let cols = board.body["columns"].as_array().unwrap();
    let types: Vec<&str> = cols.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "intake",
            "strategy",
            "creatives",
            "execution",
            "monitoring",
            "delivery"
        ]
    );
    assert_eq!(cols[0]["artifact"]["id"], intake.as_str());
    assert_eq!(cols[0]["artifact"]["status"], "approved");
    assert_eq!(cols[1]["artifact"]["status"], "draft");
    assert_eq!(cols[2]["artifact"], Value::Null);
    assert_eq!(
        cols[2]["gating"]["reasons"],
        json!(["strategy (draft - must be approved)"])
    );
    assert_eq!(
        cols[5]["requires"],
        json!(["intake", "strategy", "creatives", "execution"])
    );
    assert_eq!(board.body["counts"]["missing"], 4);

    let l = app
        .get(&format!("/api/v1/artifacts/{intake}/lineage"))
        .await;
    assert_eq!(l.status, 200, "{}", l.body);
    assert_eq!(l.body["upstream"], json!([]));
    assert_eq!(l.body["downstream"][0]["artifact_id"], strategy.as_str());
    assert_eq!(l.body["downstream"][0]["via"]["version"], 1);
    let l = app
        .get(&format!("/api/v1/artifacts/{strategy}/lineage"))
        .await;
    assert_eq!(l.body["upstream"][0]["artifact_id"], intake.as_str());
    assert_eq!(l.body["upstream"][0]["type"], "intake");
    let bad = app
        .get(&format!("/api/v1/artifacts/{strategy}/lineage?limit=0"))
        .await;
    bad.assert_problem(400, "invalid_query");
    let missing = app
        .get("/api/v1/artifacts/art_0192f5e0-0000-7000-8000-000000000000/lineage")
        .await;
    assert_eq!(missing.status, 404);
    let g = app
        .get(&format!("/api/v1/engagements/{eng}/gating?type=nope"))
        .await;
    g.assert_problem(400, "invalid_query");
}

async fn plan_has_every_job_in_its_band(app: TestApp) {
    let (client, eng) = engagement(&app).await;
    let default = app.get(&format!("/api/v1/engagements/{eng}/plan")).await;
    assert_eq!(default.status, 200, "{}", default.body);
    assert_eq!(default.body["saved"], false);

    let plan = app
        .post(&format!("/api/v1/engagements/{eng}/plan"), json!({}))
        .await;
    assert_eq!(plan.status, 201, "{}", plan.body);
    assert_eq!(plan.body["saved"], true);
    let jobs = plan.body["jobs"].as_array().unwrap();
    assert!(jobs.len() >= 25, "{} jobs", jobs.len());
    let bands = [
        ("strategy", 0, 99),
        ("creatives", 100, 199),
        ("execution", 200, 299),
        ("monitoring", 300, 399),
        ("delivery", 400, 499),
    ];
    let mut last = -1;
    for j in jobs {
        let m = j["module"].as_str().unwrap();
        let p = j["priority"].as_i64().unwrap();
        let (_, lo, hi) = bands.iter().find(|b| b.0 == m).unwrap();
        assert!((*lo..=*hi).contains(&p), "{j}");
        assert!(p >= last, "jobs come by priority");
        last = p;
        assert!(j["key"].is_string() && j["name"].is_string());
    }
    let strategy_jobs: Vec<&str> = jobs
        .iter()
        .filter(|j| j["module"] == "strategy")
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    let first_creative = jobs.iter().find(|j| j["module"] == "creatives").unwrap();
    let deps: Vec<&str> = first_creative["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let mut sorted = strategy_jobs.clone();
    sorted.sort();
    assert_eq!(deps, sorted, "creatives depend on every strategy job");
    // Nothing is approved: strategy jobs wait for the intake.
    assert_eq!(jobs[0]["status"], "blocked");
    assert_eq!(jobs[0]["reasons"], json!(["intake (missing)"]));

    let intake = created(&app, &client, &eng, "intake").await;
    approve(&app, &intake).await;
    let some = app
        .post(
            &format!("/api/v1/engagements/{eng}/plan"),
            json!({"deliverables": ["icp_definition", "positioning", "content_calendar_week1"]}),
        )
        .await;
    assert_eq!(some.status, 201, "{}", some.body);
    let jobs = some.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["status"], "ready");
    assert_eq!(
        jobs[2]["depends_on"],
        json!(["icp_definition", "positioning"])
    );
    assert_eq!(jobs[2]["status"], "blocked");
    let again = app.get(&format!("/api/v1/engagements/{eng}/plan")).await;
    assert_eq!(again.body["deliverables"], some.body["deliverables"]);

    let bad = app
        .post(
            &format!("/api/v1/engagements/{eng}/plan"),
            json!({"deliverables": ["icp_definition", "world_domination"]}),
        )
        .await;
    bad.assert_problem(422, "invalid");
    assert!(
        bad.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("world_domination")
    );
    let wrong_type = app
        .post(
            &format!("/api/v1/engagements/{eng}/plan"),
            json!({"deliverables": "all"}),
        )
        .await;
    wrong_type.assert_problem(422, "invalid");
    let still = app.get(&format!("/api/v1/engagements/{eng}/plan")).await;
    assert_eq!(
        still.body["deliverables"], some.body["deliverables"],
        "refused plans change nothing"
    );
}

async fn packs_are_listed_installed_and_checked(app: TestApp) {
    let list = app.get("/api/v1/packs").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "marketing-engagement",
        "client-onboarding",
        "insurance-migration",
        "data-flow",
        "renewal",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    // Every type of every pack: name, family, requires, schema, and an example the
    // server itself accepts.
    for n in &names {
        let p = app.get(&format!("/api/v1/packs/{n}")).await;
        for t in p.body["artifact_types"].as_array().unwrap() {
            assert!(t["family"] == "solution" || t["family"] == "journey", "{t}");
            assert!(t["requires"].is_array() && t["schema"].is_object());
            let v = app
                .post(
                    "/api/v1/artifacts/validate",
                    json!({"type": t["name"], "content": t["example"], "pack": n}),
                )
                .await;
            assert_eq!(v.body["ok"], true, "{n} {}: {}", t["name"], v.body);
        }
    }
    let renewal = app.get("/api/v1/packs/renewal").await;
    let types: Vec<&str> = renewal.body["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "assessment",
        "email_draft",
        "recommendation",
        "contract_analysis",
        "stakeholder_map",
        "pricing_table",
    ] {
        assert!(types.contains(&t), "{t}");
    }
    assert_eq!(app.get("/api/v1/packs/nope").await.status, 404);
    // A pack lists its journey templates, whole.
    let onboarding = app.get("/api/v1/packs/client-onboarding").await;
    let templates = onboarding.body["journey_templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1, "{}", onboarding.body);
    assert_eq!(templates[0]["name"], "client-onboarding");
    let stages: Vec<&str> = templates[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["sandbox", "pilot", "production"]);
    assert!(
        templates[0]["stages"][0]["exit"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    let marketing = app.get("/api/v1/packs/marketing-engagement").await;
    assert_eq!(marketing.body["journey_templates"], json!([]));

    // Install a pack of one's own, then use it.
    let schema = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"goal": {"type": "string"}}, "required": ["goal"]});
    let files = json!({
        "pack.yaml": "name: tiny\nversion: 0.1.0\ntypes:\n  - name: brief\n    family: solution\n    schema: schemas/brief.json\n    example: examples/brief.json\n",
        "schemas/brief.json": schema.to_string(),
        "examples/brief.json": "{\"goal\": \"grow\"}",
    });
    let installed = app.post("/api/v1/packs", json!({"files": files})).await;
    assert_eq!(installed.status, 201, "{}", installed.body);
    assert_eq!(installed.body["builtin"], false);
    let client = app.client("Tiny Co").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "T", "pack": "tiny"}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    let eid = e.body["id"].as_str().unwrap();
    let bad = create(&app, &client, eid, "brief", json!({})).await;
    bad.assert_problem(422, "invalid");
    assert_eq!(bad.body["errors"][0]["pointer"], "/content/goal");

    // A broken pack is refused with the file and line.
    let mut broken = files.clone();
    broken["pack.yaml"] = json!(
        "name: tiny\nversion: 0.2.0\ntypes:\n  - name: brief\n    family: solution\n    requires: [nothing]\n    schema: schemas/brief.json\n    example: examples/brief.json\n"
    );
    let refused = app.post("/api/v1/packs", json!({"files": broken})).await;
    refused.assert_problem(422, "invalid");
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("pack.yaml:6:16:"), "{message}");
    assert!(message.contains("unknown type `nothing`"), "{message}");
    let still = app.get("/api/v1/packs/tiny").await;
    assert_eq!(
        still.body["version"], "0.1.0",
        "a refused install changes nothing"
    );
    // A built-in name is taken.
    let mut taken = files.clone();
    taken["pack.yaml"] = json!(
        files["pack.yaml"]
            .as_str()
            .unwrap()
            .replace("name: tiny", "name: renewal")
    );
    app.post("/api/v1/packs", json!({"files": taken}))
        .await
        .assert_problem(409, "pack_name_taken");
    // Engagements need a pack the server has.
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "X", "pack": "no-such-pack"}),
        )
        .await;
    e.assert_problem(422, "invalid");
    assert_eq!(e.body["errors"][0]["pointer"], "/pack");
}
