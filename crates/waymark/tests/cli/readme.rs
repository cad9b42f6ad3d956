//! The README's walkthrough, run as a new user pastes it: its shell blocks in
//! order, in one bash, against `waymark serve` started by the first block.
//!
//! The script runs in a folder laid out like a checkout (`target/release/waymark`
//! is this build's binary, `examples/` the repository's); the only edits are
//! that `cargo build` is left out (the test already built it) and the server
//! listens on a free port instead of 8080. The script stops at the first
//! command that fails (`set -eu -o pipefail`), then the test reads what the
//! walkthrough left behind through the API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::process::Backend;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The ```sh blocks between "## Five-minute walkthrough" and the next `## `.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("## Five-minute walkthrough")
        .expect("the README has its walkthrough");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(lines), "```") => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (Some(lines), l) => lines.push(l),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed block in the walkthrough");
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A folder laid out like a checkout after `cargo build --release`.
fn checkout_like(dir: &Path) {
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_waymark"), release.join("waymark")).unwrap();
    std::os::unix::fs::symlink(repo().join("examples"), dir.join("examples")).unwrap();
}

/// What the test reads after the walkthrough, by the shell variables it set.
const READ_BACK: &str = r#"
echo "@@ intake $(curl -s -H "$H" $API/artifacts/$INTAKE | jq -c .)"
echo "@@ strategy $(curl -s -H "$H" $API/artifacts/$STRATEGY | jq -c .)"
echo "@@ plan_doc $(curl -s -H "$H" $API/artifacts/$PLAN | jq -c .)"
echo "@@ comments $(curl -s -H "$H" $API/artifacts/$PLAN/comments | jq -c .)"
echo "@@ mail $(curl -s -H "$H" $API/mail | jq -c .)"
echo "@@ unit $(curl -s -H "$H" $API/work/units/$UNIT | jq -c .)"
echo "@@ echo_unit $(curl -s -H "$H" $API/work/units/$ECHO_UNIT | jq -c .)"
echo "@@ journey $(curl -s -H "$H" $API/journeys/$JRN | jq -c .)"
echo "@@ sop $(curl -s -H "$H" $API/artifacts/$ART | jq -c .)"
echo "@@ sop_history $(curl -s -H "$H" $API/artifacts/$ART/history | jq -c .)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_top_to_bottom_sqlite() {
    the_readme_walkthrough_runs_top_to_bottom(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_top_to_bottom_postgres() {
    if let Some(b) = Backend::postgres().await {
        the_readme_walkthrough_runs_top_to_bottom(b).await;
    }
}

async fn the_readme_walkthrough_runs_top_to_bottom(backend: Backend) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = walkthrough_blocks(&readme);
    assert!(blocks.len() >= 6, "{} blocks", blocks.len());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut script =
        String::from("set -eu -o pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for block in &blocks {
        for line in block.lines() {
            if line.trim_start().starts_with("cargo build") {
                continue;
            }
            script.push_str(&line.replace("127.0.0.1:8080", &listen));
            script.push('\n');
        }
    }
    script.push_str(READ_BACK);

    let work = tempfile::tempdir().unwrap();
    checkout_like(work.path());
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("WAYMARK_LISTEN", &listen)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for var in [
        "WAYMARK_TOKEN",
        "WAYMARK_SERVER",
        "WAYMARK_ADMIN_TOKEN",
        "WAYMARK_DATABASE_URL",
        "WAYMARK_DATA_DIR",
        "WAYMARK_CONFIG",
        "WAYMARK_SMTP_URL",
        "WAYMARK_LLM_PROVIDER",
    ] {
        cmd.env_remove(var);
    }
    if let Some(url) = backend.database_url() {
        cmd.env("WAYMARK_DATABASE_URL", url);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the walkthrough finishes within five minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walkthrough stopped ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let read = |name: &str| -> Value {
        let prefix = format!("@@ {name} ");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in\n{stdout}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"))
    };
    let context = || format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");

    // The pipeline: the intake re-approved at its second version, the strategy
    // re-based onto it (after a refusal while the intake was a draft).
    let intake = read("intake");
    assert_eq!(intake["status"], "approved", "{intake}");
    assert_eq!(intake["version"], 2, "{intake}");
    let strategy = read("strategy");
    assert_eq!(strategy["status"], "approved", "{strategy}");
    assert!(
        strategy["sources"]
            .to_string()
            .contains(&format!("\"version\":{}", intake["version"])),
        "the strategy is built on the intake's new version: {strategy}"
    );
    assert!(
        stdout.contains("\"gated\""),
        "re-approval was refused first: {}",
        context()
    );

    // Review: Ana's comment on a section, her approval, then the journey.
    let plan = read("plan_doc");
    assert_eq!(plan["status"], "active", "{plan}");
    let comments = read("comments");
    let ana = comments["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "comment")
        .unwrap_or_else(|| panic!("Ana's comment is listed: {comments}"));
    assert_eq!(ana["section"], "/steps/1", "{comments}");
    assert_eq!(ana["author_name"], "Ana", "{comments}");
    let mail = read("mail");
    assert!(
        mail["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["recipient"] == "cfo@northwind.example" && m["status"] == "unsent"),
        "the review link's mail is in the outbox: {mail}"
    );

    // Work: the agent's task, the noop and the person's sign-off; the echo agent.
    let unit = read("unit");
    assert_eq!(unit["status"], "completed", "{unit}");
    let echo = read("echo_unit");
    assert_eq!(echo["tasks"][0]["status"], "completed", "{echo}");
    assert_eq!(
        echo["tasks"][0]["output"]["upper"], "HELLO FROM THE WALKTHROUGH",
        "{echo}"
    );

    // The journey the SOP became, started.
    let journey = read("journey");
    assert_eq!(journey["state"], "sandbox", "{journey}");
    assert_eq!(plan["journey_id"], journey["id"], "{plan}");

    // The CLI: four versions (update, file, rollback), approved by override.
    let sop = read("sop");
    assert_eq!(sop["status"], "approved", "{sop}");
    assert_eq!(sop["version"], 4, "{sop}");
    let history = read("sop_history");
    assert!(
        history.to_string().contains("approval_overridden"),
        "{history}"
    );
}
