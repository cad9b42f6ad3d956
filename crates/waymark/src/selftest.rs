//! `waymark selftest`: the pipeline wiring check, eight steps over the HTTP API
//! against a temporary database (an in-process server) or a running server.
//!
//! 1. Create an intake.
//! 2. Strategy is gated while the intake is a draft.
//! 3. Approve the intake.
//! 4. Strategy is open.
//! 5. Create a strategy built on the intake.
//! 6. Creatives are gated while the strategy is a draft.
//! 7. Approve the strategy: creatives are open.
//! 8. Change the intake: the strategy is flagged stale.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use waymark_server::auth::{generate_secret, hash_secret};
use waymark_server::{AppState, HttpSettings};
use waymark_store::{NewToken, Role, Store, sqlite};

use crate::serve::build_info;

#[derive(Debug, clap::Args)]
pub struct SelftestArgs {
    /// Check this running server instead of a temporary one (it writes a
    /// client, an engagement and artifacts there). Only this flag names it:
    /// WAYMARK_SERVER does not, so a plain `waymark selftest` never writes
    /// into a live server.
    #[arg(long)]
    server: Option<String>,
    /// API token for --server
    #[arg(long, env = "WAYMARK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, body) = self.call(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path} answered {status}: {}",
                body["detail"].as_str().unwrap_or("(no detail)")
            );
        }
        Ok(body)
    }

    async fn gating(&self, eng: &str, ty: &str) -> Result<Value> {
        self.ok(
            Method::GET,
            &format!("/engagements/{eng}/gating?type={ty}"),
            None,
        )
        .await
    }

    /// Shares the artifact, then approves it as the admin, overriding the
    /// approval policy (recorded as such): the check is of the pipeline's
    /// wiring, not of client review.
    async fn approve(&self, id: &str) -> Result<Value> {
        for to in ["in_review", "approved"] {
            self.ok(
                Method::POST,
                &format!("/artifacts/{id}/transitions"),
                Some(json!({"to": to, "reason": "selftest", "override": to == "approved"})),
            )
            .await?;
        }
        self.ok(Method::GET, &format!("/artifacts/{id}"), None)
            .await
    }
}

/// What the steps share.
#[derive(Default)]
struct Run {
    client: String,
    engagement: String,
    intake: String,
    strategy: String,
    examples: Value,
}

pub async fn run(args: SelftestArgs) -> Result<bool> {
    let http = reqwest::Client::new();
    let mut local = None;
    let api = match args.server {
        Some(server) => Api {
            http,
            base: server.trim_end_matches('/').to_owned(),
            token: args
                .token
                .ok_or_else(|| anyhow!("--server needs --token (or WAYMARK_TOKEN)"))?,
        },
        None => {
            let (base, token, guard) = temporary_server().await?;
            local = Some(guard);
            Api { http, base, token }
        }
    };
    println!("waymark selftest against {}", api.base);

    let mut run = Run::default();
    if let Err(e) = setup(&api, &mut run).await {
        println!("FAIL  setup: {e:#}");
        return Ok(false);
    }
    let mut failed = 0;
    for (n, name) in STEPS.iter().enumerate() {
        let outcome = if failed > 0 {
            Err(anyhow!("not run: an earlier step failed"))
        } else {
            step(&api, &mut run, n + 1).await
        };
        match outcome {
            Ok(note) => println!("PASS  {}. {name}{note}", n + 1),
            Err(e) => {
                failed += 1;
                println!("FAIL  {}. {name}: {e:#}", n + 1);
            }
        }
    }
    if let Some((stop, server, _dir)) = local {
        let _ = stop.send(());
        let _ = server.await;
    }
    println!("{} of {} steps passed", STEPS.len() - failed, STEPS.len());
    Ok(failed == 0)
}

const STEPS: [&str; 8] = [
    "Create intake artifact",
    "Strategy gating (intake draft)",
    "Approve intake artifact",
    "Strategy gating (intake approved)",
    "Create strategy artifact",
    "Creatives gating (strategy draft)",
    "Creatives gating (strategy approved)",
    "Stale cascade",
];

async fn setup(api: &Api, run: &mut Run) -> Result<()> {
    let pack = api
        .ok(Method::GET, "/packs/marketing-engagement", None)
        .await?;
    run.examples = pack["artifact_types"].clone();
    let client = api
        .ok(
            Method::POST,
            "/clients",
            Some(json!({"name": "Selftest client"})),
        )
        .await?;
    run.client = client["id"].as_str().unwrap_or_default().to_owned();
    let eng = api
        .ok(
            Method::POST,
            "/engagements",
            Some(json!({"client_id": run.client, "name": "Selftest", "pack": "marketing-engagement"})),
        )
        .await?;
    run.engagement = eng["id"].as_str().unwrap_or_default().to_owned();
    Ok(())
}

fn example(run: &Run, ty: &str) -> Result<Value> {
    run.examples
        .as_array()
        .and_then(|types| types.iter().find(|t| t["name"] == ty))
        .map(|t| t["example"].clone())
        .ok_or_else(|| anyhow!("the pack has no {ty} example"))
}

async fn create(api: &Api, run: &Run, ty: &str) -> Result<String> {
    let body = json!({"client_id": run.client, "engagement_id": run.engagement, "type": ty,
                      "title": format!("Selftest {ty}"), "content": example(run, ty)?});
    let a = api.ok(Method::POST, "/artifacts", Some(body)).await?;
    let id = a["id"].as_str().unwrap_or_default().to_owned();
    ensure!(id.starts_with("art_"), "no artifact id in the answer");
    Ok(id)
}

fn blocked(g: &Value) -> Result<String> {
    ensure!(g["allowed"] == false, "gating allowed it: {g}");
    let reasons: Vec<&str> = g["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(
        reasons.iter().any(|r| r.contains("approved")),
        "no reason mentions approval: {reasons:?}"
    );
    Ok(format!(" ({})", reasons.join(", ")))
}

fn open(g: &Value) -> Result<String> {
    ensure!(g["allowed"] == true, "gating refused it: {}", g["reasons"]);
    Ok(String::new())
}

async fn step(api: &Api, run: &mut Run, n: usize) -> Result<String> {
    match n {
        1 => {
            run.intake = create(api, run, "intake").await?;
            Ok(format!(" ({})", run.intake))
        }
        2 => blocked(&api.gating(&run.engagement, "strategy").await?),
        3 => {
            let a = api.approve(&run.intake).await?;
            ensure!(a["status"] == "approved", "status is {}", a["status"]);
            Ok(String::new())
        }
        4 => open(&api.gating(&run.engagement, "strategy").await?),
        5 => {
            run.strategy = create(api, run, "strategy").await?;
            let s = api
                .ok(Method::GET, &format!("/artifacts/{}", run.strategy), None)
                .await?;
            ensure!(
                s["sources"][0]["artifact_id"] == run.intake.as_str(),
                "the strategy is not built on the intake: {}",
                s["sources"]
            );
            Ok(format!(" ({}, built on the intake v1)", run.strategy))
        }
        6 => blocked(&api.gating(&run.engagement, "creatives").await?),
        7 => {
            api.approve(&run.strategy).await?;
            open(&api.gating(&run.engagement, "creatives").await?)
        }
        8 => {
            api.ok(
                Method::POST,
                &format!("/artifacts/{}/transitions", run.intake),
                Some(json!({"to": "draft", "reason": "selftest: change the intake"})),
            )
            .await?;
            let mut content = example(run, "intake")?;
            content["client_identity"]["geography"] = json!("Selftest geography");
            let req = api
                .http
                .put(format!(
                    "{}/api/v1/artifacts/{}/content",
                    api.base, run.intake
                ))
                .bearer_auth(&api.token)
                .header("If-Match", "\"1\"")
                .json(&json!({"content": content}));
            let res = req.send().await?;
            ensure!(
                res.status().is_success(),
                "new intake version refused: {}",
                res.status()
            );
            let s = api
                .ok(Method::GET, &format!("/artifacts/{}", run.strategy), None)
                .await?;
            ensure!(
                s["status"] == "stale",
                "the strategy is {}, not stale",
                s["status"]
            );
            Ok(format!(" ({})", s["stale_reason"].as_str().unwrap_or("")))
        }
        _ => bail!("no step {n}"),
    }
}

type LocalServer = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    tempfile::TempDir,
);

/// An in-process server on a temporary SQLite file, with a fresh admin token.
async fn temporary_server() -> Result<(String, String, LocalServer)> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let store = sqlite::open(&dir.path().join("selftest.db"), 4).await?;
    store.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(store);
    let token = generate_secret();
    store
        .create_token(
            NewToken::standalone("selftest", Role::Admin, hash_secret(&token)),
            &waymark_store::WriteContext::new("system"),
        )
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(store, HttpSettings::default(), build_info());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(waymark_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok((base, token, (stop, server, dir)))
}
