//! `examples/agent.py`, the standard-library Python agent, against a running
//! server: it registers, claims, completes and fails tasks with its lease.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::process::{Backend, Server};

const AGENT: &str = "echo-agent";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent.py")
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the agent to completion with the given environment (nothing inherited
/// from the test's own WAYMARK_* variables).
async fn run_agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args(args)
        .env_remove("WAYMARK_SERVER")
        .env_remove("WAYMARK_TOKEN")
        .env_remove("WAYMARK_AGENT_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn get(http: &reqwest::Client, server: &Server, path: &str) -> Value {
    let res = http
        .get(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.unwrap()
}

/// POSTs as the admin; answers the body of the 201.
async fn post(http: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    let res = http
        .post(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "POST {path} {body}: {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_agent_completes_and_fails_its_tasks() {
    if !python_available() {
        eprintln!("skipped: python3 is not on PATH");
        return;
    }
    let backend = Backend::sqlite();
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let client = post(&http, &server, "/api/v1/clients", json!({"name": "Acme"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = post(
        &http,
        &server,
        "/api/v1/agents",
        json!({"id": AGENT, "capabilities": ["text"], "description": "Counts words"}),
    )
    .await;
    assert_eq!(agent["id"], AGENT);
    let token = post(
        &http,
        &server,
        "/api/v1/tokens",
        json!({"name": "echo", "agent_id": AGENT}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let words = post(
        &http,
        &server,
        "/api/v1/work/units",
        json!({"client_id": client, "name": "Words", "tasks": [
            {"key": "count", "executor": AGENT, "input": {"text": "hello agent world"}},
            {"key": "then", "executor": AGENT, "depends_on": ["count"],
             "input": {"text": "after the count", "sleep_s": 0.2}},
        ]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doomed = post(
        &http,
        &server,
        "/api/v1/work/units",
        json!({"client_id": client, "name": "Doomed", "tasks": [
            {"key": "explode", "executor": AGENT, "input": {"fail": "boom"}, "max_attempts": 1},
        ]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Without a token it says which variable to set.
    let out = run_agent(
        &["--once", "--agent-id", AGENT],
        &[("WAYMARK_SERVER", &server.url)],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WAYMARK_TOKEN"),
        "{}",
        text(&out)
    );
    // With a token the server does not know, it says to check it.
    let out = run_agent(
        &["--once", "--agent-id", AGENT, "--wait", "0"],
        &[
            ("WAYMARK_SERVER", &server.url),
            ("WAYMARK_TOKEN", "wm_not_a_token_0123456789abcdef"),
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("check WAYMARK_TOKEN"),
        "{}",
        text(&out)
    );

    // `--once` handles one batch: the dependent task is claimed by a later run.
    let env = [
        ("WAYMARK_SERVER", server.url.as_str()),
        ("WAYMARK_TOKEN", token.as_str()),
    ];
    let args = [
        "--once",
        "--agent-id",
        AGENT,
        "--max",
        "5",
        "--wait",
        "5",
        "--capabilities",
        "text,echo",
    ];
    let mut stdout = String::new();
    let mut settled = false;
    for _ in 0..5 {
        let out = run_agent(&args, &env).await;
        assert!(out.status.success(), "{}", text(&out));
        stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        let tasks = get(
            &http,
            &server,
            &format!("/api/v1/work/tasks?executor={AGENT}"),
        )
        .await;
        let tasks = tasks["items"].as_array().unwrap();
        assert_eq!(tasks.len(), 3);
        if tasks
            .iter()
            .all(|t| t["status"] == "completed" || t["status"] == "failed")
        {
            settled = true;
            break;
        }
    }
    assert!(settled, "the agent did not finish every task:\n{stdout}");

    let unit = get(&http, &server, &format!("/api/v1/work/units/{words}")).await;
    assert_eq!(unit["status"], "completed", "{unit}");
    let task = |key: &str| {
        unit["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .unwrap()
            .clone()
    };
    let count = task("count");
    assert_eq!(count["status"], "completed");
    assert_eq!(
        count["output"],
        json!({"words": 3, "upper": "HELLO AGENT WORLD"})
    );
    assert_eq!(count["claimed_by"], AGENT);
    let then = task("then");
    assert_eq!(then["status"], "completed");
    assert_eq!(
        then["output"],
        json!({"slept_s": 0.2, "words": 3, "upper": "AFTER THE COUNT"})
    );
    for t in [&count, &then] {
        let line = format!(
            "completed {} key={}",
            t["id"].as_str().unwrap(),
            t["key"].as_str().unwrap()
        );
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }

    let unit = get(&http, &server, &format!("/api/v1/work/units/{doomed}")).await;
    let explode = &unit["tasks"][0];
    assert_eq!(explode["status"], "failed", "{unit}");
    assert!(
        explode["last_error"].as_str().unwrap().contains("boom"),
        "{explode}"
    );
    let explode_id = explode["id"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("failed {explode_id} key=explode")),
        "{stdout}"
    );
    let incidents = get(&http, &server, "/api/v1/work/incidents").await;
    let incident = incidents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["task_id"] == explode_id)
        .unwrap_or_else(|| panic!("no incident for {explode_id}: {incidents}"));
    assert!(incident["resolved_at"].is_null(), "{incident}");

    // Registered (its token updated the capabilities) and online after its claims.
    let agents = get(&http, &server, "/api/v1/agents").await;
    let echo = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == AGENT)
        .unwrap_or_else(|| panic!("no {AGENT}: {agents}"));
    assert_eq!(echo["status"], "online", "{echo}");
    assert_eq!(echo["capabilities"], json!(["text", "echo"]), "{echo}");
    assert_eq!(echo["description"], "Counts words", "{echo}");
}
