//! `waymark engagement plan|run-plan` against a running server: the plan's
//! jobs run on the server's workers with the template provider.

use serde_json::{Value, json};

use crate::process::{Backend, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_plan_sqlite() {
    a_plan_runs_from_the_cli(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_plan_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    a_plan_runs_from_the_cli(b).await;
}

fn ok_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn a_plan_runs_from_the_cli(backend: Backend) {
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let client = server
        .post(
            &http,
            "/api/v1/clients",
            json!({"name": "Northwind Ledger"}),
        )
        .await;
    let eng = server
        .post(
            &http,
            "/api/v1/engagements",
            json!({"client_id": client["id"], "name": "Launch", "pack": "marketing-engagement"}),
        )
        .await;
    let eng = eng["id"].as_str().unwrap().to_owned();

    // Nothing to build on: the command says why, and succeeds.
    let out = server.cli(&["engagement", "run-plan", &eng]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nothing queued") && text.contains("intake (missing)"),
        "{text}"
    );

    let pack: Value = http
        .get(format!("{}/api/v1/packs/marketing-engagement", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let example = pack["artifact_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "intake")
        .unwrap()["example"]
        .clone();
    let intake = server
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": client["id"], "engagement_id": eng, "type": "intake",
                   "title": "Intake", "content": example}),
        )
        .await;
    let intake = intake["id"].as_str().unwrap().to_owned();
    ok_json(&server.cli(&[
        "artifact",
        "transition",
        &intake,
        "--to",
        "in_review",
        "--json",
    ]));
    ok_json(&server.cli(&[
        "artifact",
        "transition",
        &intake,
        "--to",
        "approved",
        "--override",
        "--reason",
        "approved on the kick-off call",
        "--json",
    ]));

    // The intake lists its deliverables: they, not every job of the pack,
    // are the plan (four of them build the strategy).
    let out = server.cli(&["engagement", "run-plan", &eng, "--all", "--wait", "--json"]);
    // Not on a terminal, the wait shows plain progress lines on stderr.
    let progress = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        progress
            .lines()
            .any(|l| l.starts_with("running uow_") && l.ends_with("/4 jobs done")),
        "{progress}"
    );
    let run = ok_json(&out);
    assert_eq!(run["run"]["queued"].as_array().unwrap().len(), 4, "{run}");
    assert_eq!(run["plan"]["selected_by"], "intake", "{run}");
    let jobs = run["plan"]["jobs"].as_array().unwrap();
    let done: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "completed").collect();
    assert_eq!(done.len(), 4, "waited until every strategy job ran");
    assert!(
        done.iter()
            .all(|j| j["last_run"]["provenance"] == "template")
    );

    let table = server.cli(&["engagement", "plan", &eng]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().next().unwrap().contains("status"), "{text}");
    let icp = text
        .lines()
        .find(|l| l.starts_with("icp_definition"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        icp.contains("completed") && icp.contains("template"),
        "{icp}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("carousel_templates")
            && l.contains("blocked")
            && l.contains("strategy (draft")),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("brand_kit_suggestions")),
        "not among the intake's deliverables: {text}"
    );
    server.stop_gracefully().await;
}
