//! `waymark engagement ...`: a body of work for one client, run with one pack.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{ApiClient, NewEngagement};
use crate::error::CliError;
use crate::paging::Paging;
use crate::render;

#[derive(clap::Subcommand, Debug)]
pub enum EngagementCommand {
    /// Create an engagement
    Create {
        /// Client id (cli_…)
        #[arg(long = "client")]
        client_id: String,
        /// Engagement name
        #[arg(long)]
        name: String,
        /// The pack that defines its artifact types, e.g. `marketing`
        #[arg(long)]
        pack: String,
    },
    /// List engagements
    List {
        /// Only this client's engagements
        #[arg(long = "client")]
        client_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one engagement
    Get {
        /// Engagement id (eng_…)
        id: String,
    },
    /// Show the generation plan: every job, its status and what it waits for
    Plan {
        /// Engagement id (eng_…)
        id: String,
    },
    /// Run the generation plan on the engine: the next ready job, or every ready one
    RunPlan {
        /// Engagement id (eng_…)
        id: String,
        /// Queue every ready job, not only the highest-priority one
        #[arg(long)]
        all: bool,
        /// Wait for the queued jobs to finish, showing progress, then show the plan
        #[arg(long)]
        wait: bool,
    },
}

const FIELDS: &[&str] = &["id", "client_id", "name", "pack", "created_at"];

pub(crate) async fn execute(
    api: &ApiClient,
    json: bool,
    cmd: EngagementCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        EngagementCommand::Create {
            client_id,
            name,
            pack,
        } => {
            let new = NewEngagement {
                client_id,
                name,
                pack,
            };
            (api.create_engagement(&new).await?, |v| {
                render::fields(v, FIELDS)
            })
        }
        EngagementCommand::List { client_id, paging } => {
            let client_id = client_id.as_deref();
            (
                paging
                    .fetch(async |page| api.list_engagements(client_id, page).await)
                    .await?,
                |v| render::list(v, FIELDS),
            )
        }
        EngagementCommand::Get { id } => (api.get_engagement(&id).await?, |v| {
            render::fields(v, FIELDS)
        }),
        EngagementCommand::Plan { id } => (api.get_plan(&id).await?, plan_table),
        EngagementCommand::RunPlan { id, all, wait } => {
            let run = api
                .run_plan(&id, if all { "all_ready" } else { "next" })
                .await?;
            let plan = match run["unit_id"].as_str() {
                Some(unit) if wait => {
                    wait_for_unit(api, unit).await?;
                    api.get_plan(&id).await?
                }
                _ => run["plan"].clone(),
            };
            (json!({"run": run, "plan": plan}), run_summary)
        }
    };
    Ok(if json {
        render::json(&body)
    } else {
        human(&body)
    })
}

/// The plan's jobs, one line each.
fn plan_table(plan: &Value) -> String {
    let jobs = plan["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows = jobs.iter().map(|j| {
        let reasons: Vec<String> = j["reasons"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(render::plain)
            .collect();
        vec![
            render::plain(&j["key"]),
            render::plain(&j["module"]),
            render::plain(&j["status"]),
            render::plain(&j["last_run"]["provenance"]),
            reasons.join("; "),
        ]
    });
    render::table(&["job", "module", "status", "provenance", "why"], rows)
}

/// What a run queued (or why nothing), then the plan.
fn run_summary(body: &Value) -> String {
    let run = &body["run"];
    let mut out = match run["unit_id"].as_str() {
        Some(unit) => {
            let queued: Vec<String> = run["queued"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(render::plain)
                .collect();
            format!(
                "queued {} job(s) in unit {unit}: {}\n\n",
                queued.len(),
                queued.join(", ")
            )
        }
        None => format!("nothing queued: {}\n\n", render::plain(&run["reason"])),
    };
    out.push_str(&plan_table(&body["plan"]));
    out
}

/// Polls the unit until it completes, with progress on standard error (a bar
/// on a terminal, a plain line at each change otherwise). An incident (a job
/// out of attempts) or a cancelled unit ends the wait with an error saying
/// what to do.
async fn wait_for_unit(api: &ApiClient, unit: &str) -> Result<(), CliError> {
    let bar = crate::progress::Progress::new(&format!("running {unit}"), 0, "jobs done", false);
    loop {
        let u = api.get_unit(unit).await?;
        bar.set(
            u["tasks_done"].as_u64().unwrap_or(0),
            u["tasks_total"].as_u64().unwrap_or(0),
        );
        match u["status"].as_str() {
            Some("completed") => {
                bar.finish();
                return Ok(());
            }
            Some(status @ ("cancelled" | "failed")) => {
                bar.abandon();
                return Err(CliError::Failed(format!(
                    "unit {unit} is {status}; see `GET /api/v1/work/units/{unit}`"
                )));
            }
            _ => {}
        }
        let open = u["incidents"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .find(|i| i["resolved_at"].is_null());
        if let Some(i) = open {
            bar.abandon();
            return Err(CliError::Failed(format!(
                "job {} failed: {}\nhint: resolve incident {} with POST /api/v1/work/incidents/{}/resolve \
                 {{\"action\": \"retry\" | \"skip\" | \"cancel\"}}",
                render::plain(&i["task_key"]),
                render::plain(&i["message"]),
                render::plain(&i["id"]),
                render::plain(&i["id"]),
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
