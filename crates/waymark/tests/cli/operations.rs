//! The rest of the API from the CLI, against a running server: `client
//! update`, the review commands of `artifact` (validate, share, comment,
//! approve, reject, lineage, implement), `journey`, `unit` (with `--wait`
//! and its progress lines), the engine's side of `task` (runs, show,
//! incidents, resolve), `agent` and `webhook`. Tables for people, `--json`
//! for scripts, clear errors.

use std::process::Output;

use serde_json::{Value, json};

use crate::process::{Backend, Server};

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

fn table(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_api_from_the_cli() {
    let backend = Backend::sqlite();
    let server = Server::start(&backend).await;
    let cli = |args: &[&str]| server.cli(args);

    // Clients change.
    let client = id(&json_of(&cli(&[
        "client",
        "create",
        "Harbour Works",
        "--json",
    ])));
    let updated = json_of(&cli(&[
        "client",
        "update",
        &client,
        "--owner",
        "bob",
        "--health-score",
        "62",
        "--json",
    ]));
    assert_eq!(updated["owner"], "bob");
    assert_eq!(updated["health_score"].as_f64(), Some(62.0));
    let shown = table(&cli(&[
        "client",
        "update",
        &client,
        "--name",
        "Harbour Works Ltd",
    ]));
    assert!(shown.contains("Harbour Works Ltd"), "{shown}");
    let nothing = cli(&["client", "update", &client]);
    assert!(!nothing.status.success());
    assert!(text(&nothing.stderr).contains("name what to change"));

    // Content is checked without writing it.
    let checked = json_of(&cli(&[
        "artifact",
        "validate",
        "--type",
        "intake",
        "--pack",
        "marketing-engagement",
        "--content",
        r#"{"client_identity": {"website": "https://x.example"}}"#,
        "--json",
    ]));
    assert_eq!(checked["ok"], false, "{checked}");
    assert!(!checked["errors"].as_array().unwrap().is_empty());
    let said = table(&cli(&[
        "artifact",
        "validate",
        "--type",
        "intake",
        "--pack",
        "marketing-engagement",
        "--content",
        "{}",
    ]));
    assert!(said.starts_with("not valid\nerror "), "{said}");

    // Review: share, comment, reply, approve as the client's contact.
    let create = |title: &str| {
        id(&json_of(&cli(&[
            "artifact",
            "create",
            "--client",
            &client,
            "--type",
            "note",
            "--title",
            title,
            "--content",
            r#"{"text": "cutover on Friday"}"#,
            "--json",
        ])))
    };
    let plan = create("Cutover plan");
    let shared = json_of(&cli(&[
        "artifact",
        "share",
        &plan,
        "--message",
        "Have a look",
        "--json",
    ]));
    assert_eq!(shared["status"], "in_review");
    let comment = json_of(&cli(&[
        "artifact",
        "comment",
        &plan,
        "Why a Friday?",
        "--json",
    ]));
    let reply = json_of(&cli(&[
        "artifact",
        "comment",
        &plan,
        "internal: ask the DBA",
        "--parent",
        &id(&comment),
        "--internal",
        "--json",
    ]));
    assert_eq!(reply["parent_id"], comment["id"]);
    assert_eq!(reply["internal"], true);
    let comments = json_of(&cli(&["artifact", "comments", &plan, "--json"]));
    // The share's message, the question and the reply.
    assert_eq!(comments["items"].as_array().unwrap().len(), 3, "{comments}");
    assert!(table(&cli(&["artifact", "comments", &plan])).contains("Why a Friday?"));

    // The team does not approve for the client: a clear refusal.
    let refused = cli(&["artifact", "approve", &plan]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("403"),
        "{}",
        text(&refused.stderr)
    );
    let contact = id(&json_of(&cli(&[
        "user",
        "create",
        "--email",
        "dana@harbour.test",
        "--name",
        "Dana",
        "--role",
        "client",
        "--client-id",
        &client,
        "--json",
    ])));
    let secret = json_of(&cli(&[
        "token",
        "create",
        "--name",
        "dana",
        "--user-id",
        &contact,
        "--json",
    ]))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let approved = json_of(&cli(&[
        "artifact", "approve", &plan, "--token", &secret, "--json",
    ]));
    assert_eq!(approved["artifact"]["status"], "approved", "{approved}");
    let other = create("Rollback plan");
    cli(&["artifact", "share", &other]);
    let rejected = json_of(&cli(&[
        "artifact",
        "reject",
        &other,
        "--reason",
        "no rollback step",
        "--token",
        &secret,
        "--json",
    ]));
    assert_eq!(rejected["artifact"]["status"], "draft", "{rejected}");
    assert_eq!(rejected["comment"]["kind"], "rejection");
    let lineage = table(&cli(&["artifact", "lineage", &plan]));
    assert!(lineage.contains("upstream: (none)"), "{lineage}");

    // Journeys: create, start, a metric, a sign-off, validation, history.
    let journey = id(&json_of(&cli(&[
        "journey",
        "create",
        "--client",
        &client,
        "--template",
        "client-onboarding",
        "--json",
    ])));
    let started = json_of(&cli(&["journey", "event", &journey, "start", "--json"]));
    assert_eq!(started["stage"], "sandbox", "{started}");
    let shown = table(&cli(&["journey", "get", &journey]));
    assert!(
        shown.contains("sandbox") && shown.contains("unit"),
        "{shown}"
    );
    let recorded = json_of(&cli(&[
        "journey",
        "metric",
        &journey,
        "search_precision=0.83",
        "--json",
    ]));
    assert_eq!(recorded["recorded"][0]["value"], 0.83, "{recorded}");
    let said = table(&cli(&[
        "journey",
        "metric",
        &journey,
        "search_precision=0.85",
    ]));
    assert!(
        said.contains("search_precision") && said.contains("0.85"),
        "{said}"
    );
    let bad = cli(&["journey", "metric", &journey, "search_precision"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("name=value"));
    let signed = json_of(&cli(&[
        "journey",
        "signoff",
        &journey,
        "client_stakeholder_demo",
        "--json",
    ]));
    assert_eq!(signed["name"], "client_stakeholder_demo");
    let promote = cli(&["journey", "event", &journey, "promote"]);
    assert!(!promote.status.success(), "promotion waits for the units");
    let validation = table(&cli(&["journey", "validation", &journey]));
    assert!(validation.contains("check"), "{validation}");
    let history = json_of(&cli(&["journey", "history", &journey, "--json"]));
    assert!(!history["items"].as_array().unwrap().is_empty());
    assert!(table(&cli(&["journey", "list", "--client", &client])).contains(&journey));

    // Units: submit and wait (plain progress lines off a terminal).
    let dir = tempfile::tempdir().unwrap();
    let unit_file = dir.path().join("unit.json");
    std::fs::write(
        &unit_file,
        json!({"client_id": client, "name": "setup", "tasks": [
            {"key": "a", "executor": "noop", "input": 1},
            {"key": "b", "executor": "noop", "depends_on": ["a"]},
            {"key": "c", "executor": "noop", "depends_on": ["b"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let path = unit_file.display().to_string();
    let waited = cli(&["unit", "submit", &path, "--wait"]);
    let out = table(&waited);
    assert!(out.contains("completed"), "{out}");
    assert!(
        text(&waited.stderr).contains("unit: 3/3 tasks"),
        "{}",
        text(&waited.stderr)
    );
    let units = json_of(&cli(&["unit", "list", "--client", &client, "--json"]));
    let unit = units["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        json_of(&cli(&["unit", "get", &unit, "--json"]))["tasks_done"],
        3
    );
    let runs = json_of(&cli(&["task", "runs", "--unit", &unit, "--json"]));
    let runs = runs["items"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|t| t["status"] == "completed"));
    let one = json_of(&cli(&[
        "task",
        "show",
        runs[0]["id"].as_str().unwrap(),
        "--json",
    ]));
    assert_eq!(one["unit_id"], unit.as_str());

    // Agents, and an incident a person resolves.
    let agent = json_of(&cli(&[
        "agent",
        "register",
        "flaky",
        "--capability",
        "flaky",
        "--json",
    ]));
    assert_eq!(agent["id"], "flaky");
    assert!(table(&cli(&["agent", "list"])).contains("flaky"));
    assert_eq!(
        json_of(&cli(&["agent", "get", "flaky", "--json"]))["id"],
        "flaky"
    );
    let agent_secret = json_of(&cli(&[
        "token",
        "create",
        "--name",
        "flaky",
        "--agent-id",
        "flaky",
        "--json",
    ]))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(
        &unit_file,
        json!({"client_id": client, "name": "import", "tasks": [
            {"key": "load", "executor": "flaky", "max_attempts": 1},
        ]})
        .to_string(),
    )
    .unwrap();
    json_of(&cli(&["unit", "submit", &path, "--json"]));
    let http = reqwest::Client::new();
    let claimed: Value = http
        .post(format!("{}/api/v1/agents/flaky/claim", server.url))
        .bearer_auth(&agent_secret)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = claimed[0]["task"]["id"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("{}/api/v1/work/tasks/{task}/fail", server.url))
        .bearer_auth(&agent_secret)
        .json(&json!({"lease_token": claimed[0]["lease_token"], "error": "the source refused us"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let incidents = json_of(&cli(&["task", "incidents", "--json"]));
    let incident = &incidents["items"][0];
    assert!(incident["message"].as_str().unwrap().contains("refused us"));
    assert!(table(&cli(&["task", "incidents"])).contains("refused us"));
    let resolved = json_of(&cli(&[
        "task",
        "resolve",
        incident["id"].as_str().unwrap(),
        "skip",
        "--note",
        "loaded by hand",
        "--json",
    ]));
    assert_eq!(resolved["resolution"], "skip");
    let open = json_of(&cli(&["task", "incidents", "--json"]));
    assert!(open["items"].as_array().unwrap().is_empty());
    let wrong = cli(&["task", "resolve", incident["id"].as_str().unwrap(), "shrug"]);
    assert!(!wrong.status.success());

    // Webhooks: the secret once, list, show, deliveries, delete.
    let hook = json_of(&cli(&[
        "webhook",
        "create",
        "http://127.0.0.1:9/hook",
        "--type",
        "artifact.approved",
        "--client",
        &client,
        "--json",
    ]));
    assert!(hook["secret"].as_str().is_some_and(|s| !s.is_empty()));
    let hook_id = id(&hook);
    assert!(table(&cli(&["webhook", "list"])).contains(&hook_id));
    assert_eq!(
        json_of(&cli(&["webhook", "get", &hook_id, "--json"]))["url"],
        hook["url"]
    );
    json_of(&cli(&["webhook", "deliveries", &hook_id, "--json"]));
    assert!(table(&cli(&["webhook", "delete", &hook_id])).contains("deleted"));
    let gone = cli(&["webhook", "get", &hook_id]);
    assert!(!gone.status.success());
    assert!(text(&gone.stderr).contains("404"), "{}", text(&gone.stderr));

    server.stop_gracefully().await;
}
