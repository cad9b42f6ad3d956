//! `waymark engagement ...`: a body of work for one client, run with one pack.

use std::path::PathBuf;
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
    /// Show the delivery: whether it can be exported, what blocks it (each with
    /// what to do), the manifest of approved artifacts, files and exports
    Delivery {
        /// Engagement id (eng_…)
        id: String,
    },
    /// Export the delivery (a ZIP: manifest, each artifact as JSON and Markdown,
    /// the attached files, a PDF report) and download it; refused, with what
    /// blocks it, until every artifact the delivery needs is approved
    Export {
        /// Engagement id (eng_…)
        id: String,
        /// Where to write the ZIP (default: `<engagement id>-<export id>.zip`)
        #[arg(long)]
        out: Option<PathBuf>,
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
        EngagementCommand::Delivery { id } => (api.get_delivery(&id).await?, delivery_summary),
        EngagementCommand::Export { id, out } => (export(api, &id, out).await?, export_summary),
    };
    Ok(render::output(json, &body, human))
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

/// `12.3 KB`.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    }
}

fn short(hash: &Value) -> String {
    render::plain(hash).chars().take(12).collect()
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Readiness and what blocks it, then the manifest, files and exports.
fn delivery_summary(d: &Value) -> String {
    let blockers = items(&d["blockers"]);
    let mut out = if d["ready"] == true {
        "ready: yes, every artifact the delivery needs is approved\n".to_owned()
    } else if blockers.is_empty() {
        "ready: no, the team is still preparing it\n".to_owned()
    } else {
        format!("ready: no, {} thing(s) to do first:\n", blockers.len())
    };
    for b in blockers {
        out.push_str(&format!("  - {}\n", render::plain(&b["message"])));
    }
    for l in items(&d["left_out"]) {
        out.push_str(&format!("  note: {}\n", render::plain(&l["message"])));
    }
    out.push_str("\nmanifest:\n");
    let manifest = items(&d["manifest"]);
    if manifest.is_empty() {
        out.push_str("(no approved artifact yet)\n");
    } else {
        out.push_str(&render::table(
            &[
                "type",
                "title",
                "version",
                "approved by",
                "approved at",
                "content hash",
            ],
            manifest.iter().map(|m| {
                vec![
                    render::plain(&m["type"]),
                    render::plain(&m["title"]),
                    render::plain(&m["version"]),
                    render::plain(&m["approved_by"]),
                    render::plain(&m["approved_at"]),
                    short(&m["content_hash"]),
                ]
            }),
        ));
    }
    let files = items(&d["files"]);
    if !files.is_empty() {
        out.push_str("\nfiles:\n");
        out.push_str(&render::table(
            &["name", "size", "sha256"],
            files.iter().map(|f| {
                vec![
                    render::plain(&f["name"]),
                    size(f["size"].as_u64().unwrap_or(0)),
                    short(&f["sha256"]),
                ]
            }),
        ));
    }
    let exports = items(&d["exports"]);
    if !exports.is_empty() {
        out.push_str("\nexports:\n");
        out.push_str(&render::table(
            &["id", "created_at", "by", "artifacts", "size", "sha256"],
            exports.iter().map(|x| {
                vec![
                    render::plain(&x["id"]),
                    render::plain(&x["created_at"]),
                    render::plain(&x["created_by_name"]),
                    render::plain(&x["artifacts"]),
                    size(x["size"].as_u64().unwrap_or(0)),
                    short(&x["sha256"]),
                ]
            }),
        ));
    }
    out
}

/// Posts the export and downloads its ZIP to `out` with progress on
/// standard error, checking its SHA-256; answers the export with `path`.
async fn export(api: &ApiClient, id: &str, out: Option<PathBuf>) -> Result<Value, CliError> {
    let mut x = api.create_export(id).await?;
    let export_id = x["id"]
        .as_str()
        .ok_or_else(|| CliError::UnexpectedResponse("an export without an id".into()))?
        .to_owned();
    let path = out.unwrap_or_else(|| PathBuf::from(format!("{id}-{export_id}.zip")));
    let bar = crate::progress::Progress::new(&format!("downloading {export_id}"), 100, "%", false);
    let mut shown = None;
    let (bytes, sha256) = api
        .download_export(id, &export_id, &path, |done, total| {
            // Whole tenths, so plain lines stay few.
            if let Some(total) = total.filter(|t| *t > 0) {
                let tenth = done * 10 / total;
                if shown != Some(tenth) {
                    shown = Some(tenth);
                    bar.set(tenth * 10, 100);
                }
            }
        })
        .await
        .inspect_err(|_| bar.abandon())?;
    bar.finish();
    if x["sha256"].as_str() != Some(sha256.as_str()) {
        return Err(CliError::Failed(format!(
            "the download of {export_id} ({bytes} bytes) does not match its SHA-256 {}; \
             download it again from {}",
            render::plain(&x["sha256"]),
            render::plain(&x["download_url"]),
        )));
    }
    x["path"] = Value::String(path.display().to_string());
    Ok(x)
}

/// The export made and where it was written.
fn export_summary(x: &Value) -> String {
    let mut out = render::fields(
        x,
        &[
            "id",
            "status",
            "artifacts",
            "files",
            "size",
            "sha256",
            "manifest_sha256",
            "created_at",
        ],
    );
    out.push_str(&format!(
        "written to {} (SHA-256 checked)\n",
        render::plain(&x["path"])
    ));
    out
}
