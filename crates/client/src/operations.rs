//! `waymark journey|unit|agent|webhook ...`, the engine's side of `waymark
//! task ...` (runs and incidents), and the review commands of `waymark
//! artifact ...`: thin commands over the API, a table or field block for
//! people, the server's JSON with `--json`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::api::{ApiClient, Page};
use crate::clients::parse_object;
use crate::error::CliError;
use crate::paging::Paging;
use crate::progress::Progress;
use crate::render;

/// Adds `limit` and `cursor` of a page to a query.
fn paged(mut query: Vec<(&'static str, String)>, page: &Page) -> Vec<(&'static str, String)> {
    if let Some(limit) = page.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &page.cursor {
        query.push(("cursor", cursor.clone()));
    }
    query
}

/// `name` as a query parameter when given.
fn opt(query: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<String>) {
    if let Some(v) = value {
        query.push((name, v));
    }
}

/// Drops the `null` members of a request body: optional fields not given
/// are not sent.
fn body(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// A list, every page with `--all`.
async fn list(
    api: &ApiClient,
    paging: &Paging,
    segments: &[&str],
    query: Vec<(&'static str, String)>,
) -> Result<Value, CliError> {
    paging
        .fetch(async |page| api.get_json(segments, &paged(query.clone(), page)).await)
        .await
}

async fn post(api: &ApiClient, segments: &[&str], b: Value) -> Result<Value, CliError> {
    api.send_json(Method::POST, segments, &body(b)).await
}

/// A JSON document read from a file (`-`: stdin), or given inline.
async fn read_json(path: &PathBuf) -> Result<Value, CliError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        tokio::fs::read_to_string(path).await
    }
    .map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::input(format!("{}: not valid JSON: {e}", path.display())))
}

// --- journeys ------------------------------------------------------------------

#[derive(clap::Subcommand, Debug)]
pub enum JourneyCommand {
    /// List journeys, newest first
    List {
        /// Only this client's (cli_…)
        #[arg(long = "client")]
        client_id: Option<String>,
        /// Only journeys of this template
        #[arg(long)]
        template: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a journey: its state, stage and units
    Get { id: String },
    /// Start a journey of a template for a client (it waits for `event start`)
    Create {
        /// Client id (cli_…)
        #[arg(long = "client")]
        client_id: String,
        /// The template, e.g. `client-onboarding`
        #[arg(long)]
        template: String,
        /// A name (the template's by default)
        #[arg(long)]
        name: Option<String>,
        /// The journey's input as a JSON object
        #[arg(long, value_parser = parse_object)]
        input: Option<Map<String, Value>>,
    },
    /// Send an event: start, promote, rollback, complete_rollback, cancel,
    /// complete, pause, resume
    Event {
        id: String,
        event: String,
        /// The rollback trigger that fired (for `rollback`)
        #[arg(long)]
        trigger: Option<String>,
        /// Why, recorded in the history
        #[arg(long)]
        reason: Option<String>,
        /// Promote over an inconclusive check of this name (repeatable)
        #[arg(long = "override")]
        overrides: Vec<String>,
    },
    /// Record metric observations, e.g. `search_precision=0.83`
    Metric {
        id: String,
        /// name=value pairs
        #[arg(required = true, value_parser = parse_observation)]
        observations: Vec<(String, f64)>,
    },
    /// Record a sign-off of the current stage, e.g. `client_stakeholder_demo`
    Signoff {
        id: String,
        name: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Check the current stage's exit criteria now
    Validation { id: String },
    /// The journey's transitions and what allowed them
    History { id: String },
}

fn parse_observation(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=value, e.g. search_precision=0.83, not {s}"))?;
    let value = value
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{name}: {value} is not a number"))?;
    Ok((name.trim().to_owned(), value))
}

const JOURNEY_FIELDS: &[&str] = &[
    "id",
    "name",
    "client_id",
    "template",
    "state",
    "phase",
    "stage",
    "stages",
    "paused",
    "created_at",
    "updated_at",
];
const JOURNEY_COLUMNS: &[&str] = &["id", "name", "template", "state", "stage", "updated_at"];

fn journey(v: &Value) -> String {
    let mut out = render::fields(v, JOURNEY_FIELDS);
    if let Some(units) = v["units"].as_array().filter(|u| !u.is_empty()) {
        out.push('\n');
        out += &render::table(
            &["unit", "stage", "status"],
            units.iter().map(|u| {
                vec![
                    render::plain(&u["name"]),
                    render::plain(&u["stage"]),
                    render::plain(&u["status"]),
                ]
            }),
        );
    }
    if let Some(reasons) = v["reasons"].as_array() {
        for r in reasons {
            out += &format!("refused: {}\n", render::plain(r));
        }
    }
    out
}

fn validation(v: &Value) -> String {
    let checks = v["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = format!("{}\n", render::plain(&v["summary"]));
    out += &render::table(
        &["check", "outcome", "message"],
        checks.iter().map(|c| {
            vec![
                render::plain(&c["name"]),
                render::plain(&c["outcome"]),
                render::plain(&c["message"]),
            ]
        }),
    );
    out
}

pub(crate) async fn execute_journey(
    api: &ApiClient,
    json: bool,
    cmd: JourneyCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        JourneyCommand::List {
            client_id,
            template,
            paging,
        } => {
            let mut q = Vec::new();
            opt(&mut q, "client_id", client_id);
            opt(&mut q, "template", template);
            (list(api, &paging, &["journeys"], q).await?, |v| {
                render::list(v, JOURNEY_COLUMNS)
            })
        }
        JourneyCommand::Get { id } => (api.get_json(&["journeys", &id], &[]).await?, journey),
        JourneyCommand::Create {
            client_id,
            template,
            name,
            input,
        } => (
            post(
                api,
                &["journeys"],
                json!({"client_id": client_id, "template": template, "name": name, "input": input}),
            )
            .await?,
            journey,
        ),
        JourneyCommand::Event {
            id,
            event,
            trigger,
            reason,
            overrides,
        } => (
            post(
                api,
                &["journeys", &id, "events"],
                json!({"event": event, "trigger": trigger, "reason": reason,
                       "overrides": overrides}),
            )
            .await?,
            journey,
        ),
        JourneyCommand::Metric { id, observations } => {
            let observations: Vec<Value> = observations
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            (
                post(
                    api,
                    &["journeys", &id, "metrics"],
                    json!({"observations": observations}),
                )
                .await?,
                |v| {
                    let recorded = v["recorded"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let mut out = render::table(
                        &["metric", "value", "stage", "at"],
                        recorded.iter().map(|o| {
                            vec![
                                render::plain(&o["name"]),
                                render::plain(&o["value"]),
                                render::plain(&o["stage"]),
                                render::plain(&o["at"]),
                            ]
                        }),
                    );
                    if !v["rolled_back"].is_null() {
                        out += &format!(
                            "a rollback trigger fired: {}\n",
                            render::plain(&v["rolled_back"])
                        );
                    }
                    out
                },
            )
        }
        JourneyCommand::Signoff { id, name, note } => (
            post(
                api,
                &["journeys", &id, "signoffs"],
                json!({"name": name, "note": note}),
            )
            .await?,
            |v| render::fields(v, &["name", "stage", "signed_by", "at", "note"]),
        ),
        JourneyCommand::Validation { id } => (
            api.get_json(&["journeys", &id, "validation"], &[]).await?,
            validation,
        ),
        JourneyCommand::History { id } => (
            api.get_json(&["journeys", &id, "history"], &[]).await?,
            |v| render::list(v, &["seq", "at", "event", "from", "to", "actor", "reason"]),
        ),
    };
    Ok(render::output(json, &body, human))
}

// --- units ---------------------------------------------------------------------

#[derive(clap::Subcommand, Debug)]
pub enum UnitCommand {
    /// Submit a unit of work: a JSON file of `{client_id, name, tasks: [...]}`
    /// (`-` for stdin)
    Submit {
        file: PathBuf,
        /// Wait until it completes (or fails), showing progress
        #[arg(long)]
        wait: bool,
    },
    /// List units
    List {
        #[arg(long = "client")]
        client_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a unit and its tasks
    Get { id: String },
    /// Cancel a unit: its tasks not yet finished are cancelled
    Cancel { id: String },
}

const UNIT_FIELDS: &[&str] = &[
    "id",
    "name",
    "client_id",
    "status",
    "tasks_total",
    "tasks_done",
    "tasks_cancelled",
    "created_at",
    "finished_at",
];

fn unit(v: &Value) -> String {
    let mut out = render::fields(v, UNIT_FIELDS);
    if let Some(tasks) = v["tasks"].as_array().filter(|t| !t.is_empty()) {
        out.push('\n');
        out += &render::table(
            &["key", "executor", "status", "attempts", "id"],
            tasks.iter().map(|t| {
                vec![
                    render::plain(&t["key"]),
                    render::plain(&t["executor"]),
                    render::plain(&t["status"]),
                    render::plain(&t["attempts"]),
                    render::plain(&t["id"]),
                ]
            }),
        );
    }
    out
}

/// Whether a unit has finished (its status is no longer running or waiting).
fn finished(unit: &Value) -> bool {
    matches!(
        unit["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

pub(crate) async fn execute_unit(
    api: &ApiClient,
    json: bool,
    cmd: UnitCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        UnitCommand::Submit { file, wait } => {
            let definition = read_json(&file).await?;
            let mut unit_json = post(api, &["work", "units"], definition).await?;
            if wait {
                let id = unit_json["id"].as_str().unwrap_or_default().to_owned();
                let count = |u: &Value, f: &str| u[f].as_u64().unwrap_or(0);
                let total = count(&unit_json, "tasks_total");
                let bar = Progress::new("unit", total, "tasks", false);
                while !finished(&unit_json) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    unit_json = api.get_json(&["work", "units", &id], &[]).await?;
                    let done =
                        count(&unit_json, "tasks_done") + count(&unit_json, "tasks_cancelled");
                    bar.set(done, total);
                }
                bar.finish();
            }
            (unit_json, unit)
        }
        UnitCommand::List { client_id, paging } => {
            let mut q = Vec::new();
            opt(&mut q, "client_id", client_id);
            (list(api, &paging, &["work", "units"], q).await?, |v| {
                render::list(
                    v,
                    &[
                        "id",
                        "name",
                        "status",
                        "tasks_done",
                        "tasks_total",
                        "created_at",
                    ],
                )
            })
        }
        UnitCommand::Get { id } => (api.get_json(&["work", "units", &id], &[]).await?, unit),
        UnitCommand::Cancel { id } => (
            post(api, &["work", "units", &id, "cancel"], json!({})).await?,
            unit,
        ),
    };
    Ok(render::output(json, &body, human))
}

// --- engine tasks and incidents (`waymark task ...`) ---------------------------

const RUN_FIELDS: &[&str] = &[
    "id",
    "key",
    "name",
    "unit_id",
    "client_id",
    "executor",
    "status",
    "attempts",
    "max_attempts",
    "run_at",
    "lease_expires_at",
    "error",
];
const RUN_COLUMNS: &[&str] = &["id", "key", "executor", "status", "attempts"];
const INCIDENT_COLUMNS: &[&str] = &["id", "task_key", "message", "opened_at", "resolution"];

fn run(v: &Value) -> String {
    let mut out = render::fields(v, RUN_FIELDS);
    if !v["output"].is_null() {
        out += &format!("\n{}", render::json(&v["output"]));
    }
    out
}

/// `waymark task runs|show|cancel|incidents|resolve`: the work engine's tasks.
pub(crate) async fn execute_engine_task(
    api: &ApiClient,
    json: bool,
    cmd: EngineTask,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        EngineTask::Runs {
            status,
            executor,
            client_id,
            unit_id,
            paging,
        } => {
            let mut q = Vec::new();
            opt(&mut q, "status", status);
            opt(&mut q, "executor", executor);
            opt(&mut q, "client_id", client_id);
            opt(&mut q, "unit_id", unit_id);
            (list(api, &paging, &["work", "tasks"], q).await?, |v| {
                render::list(v, RUN_COLUMNS)
            })
        }
        EngineTask::Show { id } => (api.get_json(&["work", "tasks", &id], &[]).await?, run),
        EngineTask::Cancel { id, reason } => (
            post(
                api,
                &["work", "tasks", &id, "cancel"],
                json!({"reason": reason}),
            )
            .await?,
            run,
        ),
        EngineTask::Incidents {
            all,
            client_id,
            paging,
        } => {
            let mut q = vec![("status", if all { "all" } else { "open" }.to_owned())];
            opt(&mut q, "client_id", client_id);
            (list(api, &paging, &["work", "incidents"], q).await?, |v| {
                render::list(v, INCIDENT_COLUMNS)
            })
        }
        EngineTask::Resolve { id, action, note } => (
            post(
                api,
                &["work", "incidents", &id, "resolve"],
                json!({"action": action, "note": note}),
            )
            .await?,
            |v| {
                render::fields(
                    v,
                    &["id", "task_key", "resolution", "resolved_at", "message"],
                )
            },
        ),
    };
    Ok(render::output(json, &body, human))
}

/// The engine's tasks as `waymark task` shows them (beside the to-dos).
#[derive(Debug)]
pub(crate) enum EngineTask {
    Runs {
        status: Option<String>,
        executor: Option<String>,
        client_id: Option<String>,
        unit_id: Option<String>,
        paging: Paging,
    },
    Show {
        id: String,
    },
    Cancel {
        id: String,
        reason: Option<String>,
    },
    Incidents {
        all: bool,
        client_id: Option<String>,
        paging: Paging,
    },
    Resolve {
        id: String,
        action: String,
        note: Option<String>,
    },
}

// --- agents --------------------------------------------------------------------

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// List external agents and when each was last seen
    List,
    /// Show an agent
    Get { id: String },
    /// Register an agent (or update its description and capabilities)
    Register {
        /// The agent's id, e.g. `research-bot`
        id: String,
        #[arg(long)]
        description: Option<String>,
        /// An executor it runs (repeatable), e.g. `--capability research`
        #[arg(long = "capability")]
        capabilities: Vec<String>,
    },
}

const AGENT_FIELDS: &[&str] = &[
    "id",
    "status",
    "description",
    "capabilities",
    "last_seen_at",
    "created_at",
];

pub(crate) async fn execute_agent(
    api: &ApiClient,
    json: bool,
    cmd: AgentCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        AgentCommand::List => (api.get_json(&["agents"], &[]).await?, |v| {
            render::list(v, &["id", "status", "capabilities", "last_seen_at"])
        }),
        AgentCommand::Get { id } => (api.get_json(&["agents", &id], &[]).await?, |v| {
            render::fields(v, AGENT_FIELDS)
        }),
        AgentCommand::Register {
            id,
            description,
            capabilities,
        } => {
            let capabilities = (!capabilities.is_empty()).then_some(capabilities);
            (
                post(
                    api,
                    &["agents"],
                    json!({"id": id, "description": description, "capabilities": capabilities}),
                )
                .await?,
                |v| render::fields(v, AGENT_FIELDS),
            )
        }
    };
    Ok(render::output(json, &body, human))
}

// --- webhooks ------------------------------------------------------------------

#[derive(clap::Subcommand, Debug)]
pub enum WebhookCommand {
    /// Subscribe a URL to events (signed; the secret is shown once)
    Create {
        url: String,
        /// Only these event types (repeatable), e.g. `--type artifact.approved`
        #[arg(long = "type")]
        event_types: Vec<String>,
        /// Only this client's events (cli_…)
        #[arg(long = "client")]
        client_id: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List webhook subscriptions
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a subscription
    Get { id: String },
    /// Delete a subscription
    Delete { id: String },
    /// Its deliveries: each event's attempts and answers
    Deliveries {
        id: String,
        #[command(flatten)]
        paging: Paging,
    },
}

const WEBHOOK_FIELDS: &[&str] = &[
    "id",
    "url",
    "event_types",
    "client_id",
    "description",
    "secret",
    "created_at",
];

pub(crate) async fn execute_webhook(
    api: &ApiClient,
    json: bool,
    cmd: WebhookCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        WebhookCommand::Create {
            url,
            event_types,
            client_id,
            description,
        } => {
            let event_types = (!event_types.is_empty()).then_some(event_types);
            (
                post(
                    api,
                    &["webhooks"],
                    json!({"url": url, "event_types": event_types, "client_id": client_id,
                           "description": description}),
                )
                .await?,
                |v| render::fields(v, WEBHOOK_FIELDS),
            )
        }
        WebhookCommand::List { paging } => {
            (list(api, &paging, &["webhooks"], Vec::new()).await?, |v| {
                render::list(v, &["id", "url", "event_types", "created_at"])
            })
        }
        WebhookCommand::Get { id } => (api.get_json(&["webhooks", &id], &[]).await?, |v| {
            render::fields(v, WEBHOOK_FIELDS)
        }),
        WebhookCommand::Delete { id } => {
            api.send_json(Method::DELETE, &["webhooks", &id], &Value::Null)
                .await?;
            (json!({"id": id, "deleted": true}), |v| {
                format!("deleted {}\n", render::plain(&v["id"]))
            })
        }
        WebhookCommand::Deliveries { id, paging } => (
            list(api, &paging, &["webhooks", &id, "deliveries"], Vec::new()).await?,
            |v| {
                render::list(
                    v,
                    &[
                        "event_type",
                        "status",
                        "attempts",
                        "last_status",
                        "delivered_at",
                    ],
                )
            },
        ),
    };
    Ok(render::output(json, &body, human))
}

// --- review (`waymark artifact share|comment|approve|reject|...`) -----------

/// The review commands of `waymark artifact`.
#[derive(Debug)]
pub(crate) enum Review {
    Share {
        id: String,
        message: Option<String>,
    },
    Comment {
        id: String,
        body: String,
        section: Option<String>,
        parent_id: Option<String>,
        internal: bool,
    },
    Comments {
        id: String,
        paging: Paging,
    },
    Approve {
        id: String,
        version: Option<u64>,
    },
    Reject {
        id: String,
        reason: String,
    },
    Implement {
        id: String,
        template: Option<String>,
    },
    Lineage {
        id: String,
    },
    Validate {
        kind: String,
        pack: Option<String>,
        content: Map<String, Value>,
    },
}

/// What an approval or a rejection answers: the artifact as it is now.
fn decided(v: &Value) -> String {
    render::fields(&v["artifact"], &["id", "status", "version"])
}

const COMMENT_COLUMNS: &[&str] = &["id", "author_name", "section", "internal", "body"];

fn lineage(v: &Value) -> String {
    let row = |a: &Value| {
        vec![
            render::plain(&a["depth"]),
            render::plain(&a["artifact_id"]),
            render::plain(&a["type"]),
            render::plain(&a["status"]),
            render::plain(&a["version"]),
            render::plain(&a["title"]),
        ]
    };
    let side = |name: &str| -> String {
        let items = v[name].as_array().map(Vec::as_slice).unwrap_or_default();
        if items.is_empty() {
            return format!("{name}: (none)\n");
        }
        format!(
            "{name}:\n{}",
            render::table(
                &["depth", "artifact", "type", "status", "version", "title"],
                items.iter().map(row)
            )
        )
    };
    format!("{}{}", side("upstream"), side("downstream"))
}

pub(crate) async fn execute_review(
    api: &ApiClient,
    json: bool,
    cmd: Review,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        Review::Share { id, message } => (
            post(
                api,
                &["artifacts", &id, "share"],
                json!({"message": message}),
            )
            .await?,
            |v| render::fields(v, &["id", "status", "version", "shared_at"]),
        ),
        Review::Comment {
            id,
            body,
            section,
            parent_id,
            internal,
        } => (
            post(
                api,
                &["artifacts", &id, "comments"],
                json!({"body": body, "section": section, "parent_id": parent_id,
                       "internal": internal}),
            )
            .await?,
            |v| {
                render::fields(
                    v,
                    &[
                        "id",
                        "artifact_id",
                        "version",
                        "section",
                        "internal",
                        "body",
                    ],
                )
            },
        ),
        Review::Comments { id, paging } => (
            list(api, &paging, &["artifacts", &id, "comments"], Vec::new()).await?,
            |v| render::list(v, COMMENT_COLUMNS),
        ),
        Review::Approve { id, version } => {
            let version = match version {
                Some(v) => v,
                None => api.current_version(&id).await?,
            };
            (
                post(
                    api,
                    &["artifacts", &id, "approve"],
                    json!({"version": version}),
                )
                .await?,
                decided,
            )
        }
        Review::Reject { id, reason } => (
            post(
                api,
                &["artifacts", &id, "reject"],
                json!({"reason": reason}),
            )
            .await?,
            decided,
        ),
        Review::Implement { id, template } => (
            post(
                api,
                &["artifacts", &id, "implement"],
                json!({"template": template}),
            )
            .await?,
            journey,
        ),
        Review::Lineage { id } => (
            api.get_json(&["artifacts", &id, "lineage"], &[]).await?,
            lineage,
        ),
        Review::Validate {
            kind,
            pack,
            content,
        } => (
            post(
                api,
                &["artifacts", "validate"],
                json!({"type": kind, "pack": pack, "content": content}),
            )
            .await?,
            |v| {
                let mut out = format!(
                    "{}\n",
                    if v["ok"] == json!(true) {
                        "valid"
                    } else {
                        "not valid"
                    }
                );
                for e in v["errors"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    out += &format!(
                        "error {}: {}\n",
                        render::plain(&e["pointer"]),
                        render::plain(&e["message"])
                    );
                }
                out + &render::warnings(v)
            },
        ),
    };
    Ok(render::output(json, &body, human))
}
