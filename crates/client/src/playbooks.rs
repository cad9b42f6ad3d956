//! `waymark queue ...` and `waymark task ...`: the customer-success queue (an
//! owner's playbooks by score, rules runs, start, snooze, escalate, schedule)
//! and a person's to-dos.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::ApiClient;
use crate::error::CliError;
use crate::operations::{EngineTask, execute_engine_task};
use crate::paging::Paging;
use crate::render;

#[derive(clap::Subcommand, Debug)]
pub enum QueueCommand {
    /// An owner's queue, highest score first (`me` by default)
    List {
        /// `me`, a user id (usr_…) or an owner's name as written on clients
        #[arg(default_value = "me")]
        owner: String,
        /// Only this playbook template
        #[arg(long)]
        template: Option<String>,
        /// Only items at this step (`due`: not started)
        #[arg(long)]
        stage: Option<String>,
        /// At most this many items (1-200)
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One item with the factors of its score
    Show {
        /// Queue item id (qit_…)
        id: String,
    },
    /// Run the queue rules now (over every client, or one)
    Refresh {
        /// Only this client (cli_…)
        #[arg(long)]
        client: Option<String>,
    },
    /// Start an item's playbook
    Start {
        /// Queue item id (qit_…)
        id: String,
    },
    /// Put an item away until a time
    Snooze {
        /// Queue item id (qit_…)
        id: String,
        /// Until when (RFC 3339, e.g. 2027-01-15T09:00:00Z)
        #[arg(long)]
        until: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Hand an item to another member of the team (they are mailed)
    Escalate {
        /// Queue item id (qit_…)
        id: String,
        /// The new owner's user id (usr_…)
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Set an item's due date
    Schedule {
        /// Queue item id (qit_…)
        id: String,
        /// YYYY-MM-DD
        #[arg(long)]
        due: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TaskCommand {
    /// To-dos (yours by default), open first, with the engine's open human tasks
    List {
        /// `me`, `all` or a user id (usr_…)
        #[arg(long, default_value = "me")]
        assigned_to: String,
        /// open, completed or skipped
        #[arg(long)]
        status: Option<String>,
        /// Only this journey's (jrn_…)
        #[arg(long)]
        journey: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Add a to-do
    Add {
        title: String,
        /// YYYY-MM-DD
        #[arg(long)]
        due: Option<String>,
        /// low, medium, high or urgent
        #[arg(long)]
        priority: Option<String>,
        /// Assign it to this user (usr_…); yourself by default
        #[arg(long)]
        assign: Option<String>,
        /// The playbook journey it belongs to (jrn_…)
        #[arg(long)]
        journey: Option<String>,
        /// The journey's step it belongs to
        #[arg(long, requires = "journey")]
        step: Option<String>,
    },
    /// Mark a to-do done
    Complete { id: String },
    /// Skip a to-do
    Skip { id: String },
    /// Delete a to-do
    Delete { id: String },
    /// The work engine's tasks (units' steps), newest first
    Runs {
        /// pending, ready, held, running, completed, failed, blocked,
        /// cancelled or skipped
        #[arg(long)]
        status: Option<String>,
        /// Only this executor's, e.g. `llm` or an agent's capability
        #[arg(long)]
        executor: Option<String>,
        #[arg(long = "client")]
        client_id: Option<String>,
        #[arg(long = "unit")]
        unit_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one of the engine's tasks (tsk_…), with its output
    Show { id: String },
    /// Cancel one of the engine's tasks
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Incidents: tasks that failed for good and wait for a person
    Incidents {
        /// Resolved ones too
        #[arg(long)]
        resolved: bool,
        #[arg(long = "client")]
        client_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Resolve an incident (inc_…): retry, skip or cancel its task
    Resolve {
        id: String,
        /// retry, skip or cancel
        action: String,
        #[arg(long)]
        note: Option<String>,
    },
}

const ITEM_COLUMNS: &[&str] = &["score", "client", "playbook", "rule", "stage", "due", "id"];
const ITEM_FIELDS: &[&str] = &[
    "id",
    "client_name",
    "client_id",
    "template",
    "rule",
    "status",
    "stage",
    "reason",
    "score",
    "due",
    "overdue",
    "owner",
    "journey_id",
    "snoozed_until",
    "superseded_by",
    "outcome",
];
const TODO_COLUMNS: &[&str] = &[
    "id",
    "title",
    "status",
    "priority",
    "due_date",
    "assigned_to",
];
const TODO_FIELDS: &[&str] = &[
    "id",
    "title",
    "status",
    "completed",
    "priority",
    "due_date",
    "assigned_to",
    "client_id",
    "journey_id",
    "step",
    "created_at",
    "completed_at",
];

fn opt(query: &mut Vec<(&'static str, String)>, name: &'static str, v: Option<impl ToString>) {
    if let Some(v) = v {
        query.push((name, v.to_string()));
    }
}

/// The queue as a table, its stats under it.
fn queue_table(q: &Value) -> String {
    let items = q["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = if items.is_empty() {
        "(nothing in the queue)\n".to_owned()
    } else {
        render::table(
            ITEM_COLUMNS,
            items.iter().map(|i| {
                let due = match (render::plain(&i["due"]), i["overdue"].as_bool()) {
                    (d, Some(true)) => format!("{d} (overdue)"),
                    (d, _) => d,
                };
                vec![
                    format!("{:.1}", i["score"].as_f64().unwrap_or(0.0)),
                    render::plain(&i["client_name"]),
                    render::plain(&i["template"]),
                    render::plain(&i["rule"]),
                    match render::plain(&i["stage"]) {
                        s if s.is_empty() => "due".to_owned(),
                        s => s,
                    },
                    due,
                    render::plain(&i["id"]),
                ]
            }),
        )
    };
    let s = &q["stats"];
    out.push_str(&format!(
        "{} in the queue, {} overdue\n",
        s["total"].as_i64().unwrap_or(0),
        s["overdue"].as_i64().unwrap_or(0)
    ));
    if let Some(cursor) = q["next_cursor"].as_str() {
        out.push_str(&format!("more: pass --cursor {cursor}\n"));
    }
    out
}

/// One item with its factors.
fn item_block(item: &Value) -> String {
    let mut out = render::fields(item, ITEM_FIELDS);
    if let Some(factors) = item["factors"].as_array() {
        out.push_str("\nwhy this score:\n");
        out.push_str(&render::table(
            &["factor", "value", "weight", "contribution", "explanation"],
            factors.iter().map(|f| {
                vec![
                    render::plain(&f["input"]),
                    render::plain(&f["value"]),
                    render::plain(&f["weight"]),
                    render::plain(&f["contribution"]),
                    render::plain(&f["explanation"]),
                ]
            }),
        ));
    }
    out
}

/// What an action answers: the item.
fn action_block(v: &Value) -> String {
    match &v["item"] {
        Value::Null => render::fields(&v["journey"], &["id", "name", "state"]),
        item => item_block(item),
    }
}

fn refresh_block(v: &Value) -> String {
    let mut out = format!(
        "rules run over {} clients: {} opened, {} updated, {} reopened, {} closed, {} superseded\n",
        v["clients"], v["opened"], v["updated"], v["reopened"], v["closed"], v["superseded"]
    );
    for e in v["errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!("error: {}\n", render::plain(e)));
    }
    out
}

fn todo_list(v: &Value) -> String {
    let mut out = render::list(v, TODO_COLUMNS);
    if let Some(tasks) = v["engine_tasks"].as_array().filter(|t| !t.is_empty()) {
        out.push_str("\nhuman tasks of the engine (complete them with the work API):\n");
        out.push_str(&render::table(
            &["id", "title", "status", "client_id"],
            tasks.iter().map(|t| {
                vec![
                    render::plain(&t["id"]),
                    render::plain(&t["title"]),
                    render::plain(&t["status"]),
                    render::plain(&t["client_id"]),
                ]
            }),
        ));
    }
    out
}

pub(crate) async fn execute_queue(
    api: &ApiClient,
    json: bool,
    cmd: QueueCommand,
) -> Result<String, CliError> {
    let action = |id: &str, body: Value| {
        let path = ["queue", "items", id, "actions"].map(str::to_owned);
        async move {
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            api.send_json(Method::POST, &segments, &body).await
        }
    };
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        QueueCommand::List {
            owner,
            template,
            stage,
            limit,
            cursor,
        } => {
            let mut query = vec![];
            opt(&mut query, "template", template);
            opt(&mut query, "stage", stage);
            opt(&mut query, "limit", limit);
            opt(&mut query, "cursor", cursor);
            (api.get_json(&["queue", &owner], &query).await?, queue_table)
        }
        QueueCommand::Show { id } => (
            api.get_json(&["queue", "items", &id], &[]).await?,
            item_block,
        ),
        QueueCommand::Refresh { client } => {
            let body = match client {
                Some(c) => json!({ "client_id": c }),
                None => json!({}),
            };
            (
                api.send_json(Method::POST, &["queue", "refresh"], &body)
                    .await?,
                refresh_block,
            )
        }
        QueueCommand::Start { id } => (
            api.send_json(Method::POST, &["queue", "items", &id, "start"], &json!({}))
                .await?,
            |v| render::fields(v, &["id", "name", "template", "state", "client_id"]),
        ),
        QueueCommand::Snooze { id, until, reason } => (
            action(
                &id,
                json!({"action": "snooze", "until": until, "reason": reason}),
            )
            .await?,
            action_block,
        ),
        QueueCommand::Escalate { id, to, reason } => (
            action(
                &id,
                json!({"action": "escalate", "to": to, "reason": reason}),
            )
            .await?,
            action_block,
        ),
        QueueCommand::Schedule { id, due, reason } => (
            action(
                &id,
                json!({"action": "schedule", "due": due, "reason": reason}),
            )
            .await?,
            action_block,
        ),
    };
    Ok(render::output(json, &body, human))
}

pub(crate) async fn execute_task(
    api: &ApiClient,
    json: bool,
    cmd: TaskCommand,
) -> Result<String, CliError> {
    let one = |v: &Value| render::fields(v, TODO_FIELDS);
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        TaskCommand::List {
            assigned_to,
            status,
            journey,
            limit,
            cursor,
        } => {
            let mut query = vec![("assigned_to", assigned_to)];
            opt(&mut query, "status", status);
            opt(&mut query, "journey_id", journey);
            opt(&mut query, "limit", limit);
            opt(&mut query, "cursor", cursor);
            (api.get_json(&["tasks"], &query).await?, todo_list)
        }
        TaskCommand::Add {
            title,
            due,
            priority,
            assign,
            journey,
            step,
        } => {
            let mut body = json!({ "title": title });
            for (k, v) in [
                ("due_date", due),
                ("priority", priority),
                ("assigned_to", assign),
                ("journey_id", journey),
                ("step", step),
            ] {
                if let Some(v) = v {
                    body[k] = v.into();
                }
            }
            (api.send_json(Method::POST, &["tasks"], &body).await?, one)
        }
        TaskCommand::Complete { id } => (
            api.send_json(
                Method::PATCH,
                &["tasks", &id],
                &json!({"action": "complete"}),
            )
            .await?,
            one,
        ),
        TaskCommand::Skip { id } => (
            api.send_json(Method::PATCH, &["tasks", &id], &json!({"action": "skip"}))
                .await?,
            one,
        ),
        TaskCommand::Delete { id } => {
            api.send_json(Method::DELETE, &["tasks", &id], &Value::Null)
                .await?;
            (json!({"deleted": id}), |v| {
                format!("deleted {}\n", render::plain(&v["deleted"]))
            })
        }
        TaskCommand::Runs {
            status,
            executor,
            client_id,
            unit_id,
            paging,
        } => {
            let runs = EngineTask::Runs {
                status,
                executor,
                client_id,
                unit_id,
                paging,
            };
            return execute_engine_task(api, json, runs).await;
        }
        TaskCommand::Show { id } => {
            return execute_engine_task(api, json, EngineTask::Show { id }).await;
        }
        TaskCommand::Cancel { id, reason } => {
            return execute_engine_task(api, json, EngineTask::Cancel { id, reason }).await;
        }
        TaskCommand::Incidents {
            resolved,
            client_id,
            paging,
        } => {
            let incidents = EngineTask::Incidents {
                all: resolved,
                client_id,
                paging,
            };
            return execute_engine_task(api, json, incidents).await;
        }
        TaskCommand::Resolve { id, action, note } => {
            return execute_engine_task(api, json, EngineTask::Resolve { id, action, note }).await;
        }
    };
    Ok(render::output(json, &body, human))
}
