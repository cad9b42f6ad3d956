//! `waymark artifact ...`: versioned JSON documents with a review lifecycle.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::api::{ApiClient, ArtifactFilter, ContentUpdate, NewArtifact, SourceRef};
use crate::error::CliError;
use crate::operations::{Review, execute_review as review};
use crate::paging::Paging;
use crate::render;

#[derive(clap::Subcommand, Debug)]
pub enum ArtifactCommand {
    /// Create an artifact (version 1, status draft)
    Create {
        /// Client id (cli_…)
        #[arg(long = "client")]
        client_id: String,
        /// Engagement id (eng_…)
        #[arg(long = "engagement")]
        engagement_id: Option<String>,
        /// Artifact type from the engagement's pack, e.g. `strategy`
        #[arg(long = "type")]
        kind: String,
        /// Title
        #[arg(long)]
        title: String,
        #[command(flatten)]
        content: ContentSource,
        /// An input this artifact was derived from, as ARTIFACT_ID@VERSION (repeatable)
        #[arg(long = "source", value_name = "ID@VERSION", value_parser = parse_source)]
        sources: Vec<SourceRef>,
        /// A note recorded with the version
        #[arg(long)]
        note: Option<String>,
    },
    /// Show an artifact: its fields, then its content
    Get {
        /// Artifact id (art_…)
        id: String,
        /// Show this version instead of the latest
        #[arg(long)]
        version: Option<u64>,
    },
    /// List artifacts (without their content)
    List {
        /// Only this client's artifacts
        #[arg(long = "client")]
        client_id: Option<String>,
        /// Only this engagement's artifacts
        #[arg(long = "engagement")]
        engagement_id: Option<String>,
        /// Only artifacts of this type
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only artifacts in this status, e.g. `approved`
        #[arg(long)]
        status: Option<String>,
        /// Only artifacts whose title or content has every word given (full-text search; the last word may be the start of one)
        #[arg(long)]
        q: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Write new content as the next version
    Update {
        /// Artifact id (art_…)
        id: String,
        #[command(flatten)]
        content: ContentSource,
        /// An input this version was derived from, as ARTIFACT_ID@VERSION (repeatable)
        #[arg(long = "source", value_name = "ID@VERSION", value_parser = parse_source)]
        sources: Vec<SourceRef>,
        /// A note recorded with the version
        #[arg(long)]
        note: Option<String>,
        /// The optimistic-concurrency guard: only update if the artifact is still at
        /// this version (sent as `If-Match`). When omitted, the current version is
        /// fetched first, so a change made meanwhile by someone else can be overwritten.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<u64>,
    },
    /// List an artifact's versions
    Versions {
        /// Artifact id (art_…)
        id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show what changed between two versions (RFC 6902 operations)
    Diff {
        /// Artifact id (art_…)
        id: String,
        /// Older version
        #[arg(long)]
        from: u64,
        /// Newer version
        #[arg(long)]
        to: u64,
    },
    /// Make an earlier version's content the next version
    Rollback {
        /// Artifact id (art_…)
        id: String,
        /// The version whose content to restore
        #[arg(long = "to", value_name = "VERSION")]
        to_version: u64,
        /// The optimistic-concurrency guard: only roll back if the artifact is still at
        /// this version (sent as `If-Match`). When omitted, the current version is
        /// fetched first.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<u64>,
    },
    /// Move an artifact to another status, e.g. `in_review`
    Transition {
        /// Artifact id (art_…)
        id: String,
        /// Target status
        #[arg(long)]
        to: String,
        /// Why, kept in the artifact's history
        #[arg(long)]
        reason: Option<String>,
        /// Admins only, with --reason: approve past the type's approval policy
        /// (recorded as an override); otherwise approvals go through the client
        #[arg(long = "override")]
        override_policy: bool,
    },
    /// Show an artifact's status changes and edits
    History {
        /// Artifact id (art_…)
        id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Share it with the client for review (draft → in_review)
    Share {
        id: String,
        /// A message for the reviewers
        #[arg(long)]
        message: Option<String>,
    },
    /// Comment on it (a reply with --parent)
    Comment {
        id: String,
        body: String,
        /// The section it is about, e.g. `goals`
        #[arg(long)]
        section: Option<String>,
        /// Reply to this comment (cmt_…)
        #[arg(long = "parent")]
        parent_id: Option<String>,
        /// Only the team sees it
        #[arg(long)]
        internal: bool,
    },
    /// List its comments
    Comments {
        id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Approve a version (the latest by default) as an eligible reviewer
    Approve {
        id: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Reject it with a reason (it goes back to draft)
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Start a journey from an approved plan
    Implement {
        id: String,
        /// The journey template (the type's own by default)
        #[arg(long)]
        template: Option<String>,
    },
    /// What it was built from and what was built from it
    Lineage { id: String },
    /// Check content against a type's schema and rules without writing it
    Validate {
        /// The artifact type, e.g. `intake`
        #[arg(long = "type")]
        kind: String,
        /// The pack whose type it is (when several have one of that name)
        #[arg(long)]
        pack: Option<String>,
        #[command(flatten)]
        content: ContentSource,
    },
}

/// Where the content (a JSON object) comes from.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ContentSource {
    /// The content as a JSON object, e.g. '{"summary": "…"}'
    #[arg(long)]
    pub content: Option<String>,
    /// Read the content from a JSON file (`-` for stdin)
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

impl ContentSource {
    /// Reads and checks the content: it must be a JSON object.
    async fn read(&self) -> Result<Map<String, Value>, CliError> {
        let (flag, text) = match (&self.content, &self.file) {
            (Some(text), _) => ("--content".to_owned(), text.clone()),
            (None, Some(path)) => (format!("--file {}", path.display()), read_file(path).await?),
            (None, None) => return Err(CliError::input("pass --content or --file")),
        };
        match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(CliError::input(format!(
                "{flag}: the content must be a JSON object ({{...}}), not {}",
                kind_of(&other)
            ))),
            Err(err) => Err(CliError::input(format!("{flag}: not valid JSON: {err}"))),
        }
    }
}

async fn read_file(path: &Path) -> Result<String, CliError> {
    let result = if path == Path::new("-") {
        // A one-shot CLI read: blocking this thread until stdin closes is fine.
        std::io::read_to_string(std::io::stdin())
    } else {
        tokio::fs::read_to_string(path).await
    };
    result.map_err(|err| CliError::input(format!("--file {}: {err}", path.display())))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `art_…@3` → the source reference.
fn parse_source(s: &str) -> Result<SourceRef, String> {
    let (id, version) = s
        .rsplit_once('@')
        .ok_or_else(|| "expected ARTIFACT_ID@VERSION, e.g. art_123@2".to_owned())?;
    let version = version
        .parse()
        .map_err(|_| format!("`{version}` is not a version number"))?;
    Ok(SourceRef {
        artifact_id: id.to_owned(),
        version,
    })
}

/// What create, update, rollback and transition print: the artifact's key fields.
const SUMMARY: &[&str] = &[
    "id",
    "type",
    "title",
    "status",
    "version",
    "content_hash",
    "updated_at",
];
const DETAIL: &[&str] = &[
    "id",
    "client_id",
    "engagement_id",
    "type",
    "title",
    "status",
    "version",
    "content_hash",
    "inputs_hash",
    "sources",
    "note",
    "created_by",
    "created_at",
    "updated_at",
];
const VERSION_DETAIL: &[&str] = &[
    "artifact_id",
    "version",
    "content_hash",
    "inputs_hash",
    "sources",
    "author",
    "note",
    "created_at",
];
const LIST: &[&str] = &["id", "type", "title", "status", "version", "updated_at"];
const VERSIONS: &[&str] = &["version", "content_hash", "author", "note", "created_at"];
const HISTORY: &[&str] = &[
    "seq",
    "action",
    "from_status",
    "to_status",
    "version",
    "actor",
    "reason",
    "at",
];

pub(crate) async fn execute(
    api: &ApiClient,
    json: bool,
    cmd: ArtifactCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        ArtifactCommand::Create {
            client_id,
            engagement_id,
            kind,
            title,
            content,
            sources,
            note,
        } => {
            let new = NewArtifact {
                client_id,
                engagement_id,
                kind,
                title,
                content: content.read().await?,
                sources,
                note,
            };
            (api.create_artifact(&new).await?, summary)
        }
        ArtifactCommand::Get { id, version: None } => {
            (api.get_artifact(&id).await?, |v| detail(v, DETAIL))
        }
        ArtifactCommand::Get {
            id,
            version: Some(n),
        } => (api.get_version(&id, n).await?, |v| {
            detail(v, VERSION_DETAIL)
        }),
        ArtifactCommand::List {
            client_id,
            engagement_id,
            kind,
            status,
            q,
            paging,
        } => {
            let filter = ArtifactFilter {
                client_id,
                engagement_id,
                kind,
                status,
                q,
            };
            (
                paging
                    .fetch(async |page| api.list_artifacts(&filter, page).await)
                    .await?,
                |v| render::list(v, LIST),
            )
        }
        ArtifactCommand::Update {
            id,
            content,
            sources,
            note,
            if_match,
        } => {
            let update = ContentUpdate {
                content: content.read().await?,
                sources,
                note,
            };
            let version = match if_match {
                Some(version) => version,
                None => api.current_version(&id).await?,
            };
            (api.update_content(&id, version, &update).await?, summary)
        }
        ArtifactCommand::Versions { id, paging } => (
            paging
                .fetch(async |page| api.list_versions(&id, page).await)
                .await?,
            |v| render::list(v, VERSIONS),
        ),
        ArtifactCommand::Diff { id, from, to } => (api.diff(&id, from, to).await?, patch),
        ArtifactCommand::Rollback {
            id,
            to_version,
            if_match,
        } => {
            let version = match if_match {
                Some(version) => version,
                None => api.current_version(&id).await?,
            };
            (api.rollback(&id, to_version, version).await?, summary)
        }
        ArtifactCommand::Transition {
            id,
            to,
            reason,
            override_policy,
        } => (
            api.transition(&id, &to, reason.as_deref(), override_policy)
                .await?,
            summary,
        ),
        ArtifactCommand::History { id, paging } => (
            paging
                .fetch(async |page| api.history(&id, page).await)
                .await?,
            |v| render::list(v, HISTORY),
        ),
        ArtifactCommand::Share { id, message } => {
            return review(api, json, Review::Share { id, message }).await;
        }
        ArtifactCommand::Comment {
            id,
            body,
            section,
            parent_id,
            internal,
        } => {
            let c = Review::Comment {
                id,
                body,
                section,
                parent_id,
                internal,
            };
            return review(api, json, c).await;
        }
        ArtifactCommand::Comments { id, paging } => {
            return review(api, json, Review::Comments { id, paging }).await;
        }
        ArtifactCommand::Approve { id, version } => {
            return review(api, json, Review::Approve { id, version }).await;
        }
        ArtifactCommand::Reject { id, reason } => {
            return review(api, json, Review::Reject { id, reason }).await;
        }
        ArtifactCommand::Implement { id, template } => {
            return review(api, json, Review::Implement { id, template }).await;
        }
        ArtifactCommand::Lineage { id } => {
            return review(api, json, Review::Lineage { id }).await;
        }
        ArtifactCommand::Validate {
            kind,
            pack,
            content,
        } => {
            let content = content.read().await?;
            return review(
                api,
                json,
                Review::Validate {
                    kind,
                    pack,
                    content,
                },
            )
            .await;
        }
    };
    Ok(render::output(json, &body, human))
}

fn summary(artifact: &Value) -> String {
    render::fields(artifact, SUMMARY) + &render::warnings(artifact) + &render::flagged(artifact)
}

/// The fields, a blank line, then the content pretty-printed.
fn detail(value: &Value, fields: &[&str]) -> String {
    format!(
        "{}\n{}",
        render::fields(value, fields),
        render::json(&value["content"])
    )
}

/// A diff as a table of operations.
fn patch(diff: &Value) -> String {
    let ops = diff["patch"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let header = format!(
        "version {} → {}\n",
        render::plain(&diff["from"]),
        render::plain(&diff["to"])
    );
    if ops.is_empty() {
        return header + "(no changes)\n";
    }
    let rows = ops.iter().map(|op| {
        let value = match (op.get("value"), op["from"].as_str()) {
            (Some(value), _) => value.to_string(),
            (None, Some(from)) => format!("from {from}"),
            (None, None) => String::new(),
        };
        [render::plain(&op["op"]), render::plain(&op["path"]), value]
    });
    header + &render::table(&["op", "path", "value"], rows)
}
