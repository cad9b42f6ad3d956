//! The data flow's executors: an uploaded file (`input.file_id`) through
//! the `data-flow` pack's four milestones, each handing its output to the
//! next (the output is the input with the step's fields set over it, so the
//! chain carries everything, the journey's trace id included).
//!
//! - `file.inspect` (uploaded): the stored file, its hash, kind, size and
//!   where it is kept; `validation_status` is `valid` (the upload checked its
//!   size, kind and name).
//! - `file.parse` (parsed): its text, and for tables the rows, columns and
//!   inferred column types. It waits (retries) while the file's text is
//!   still being read; a file that could not be read fails it for good, with
//!   the reason.
//! - `file.semantic` (semantic): the LLM provider's summary, entities and
//!   keywords, in a fixed shape; the template provider's
//!   ([`waymark_domain::dataflow::semantic`]) when there is no provider or
//!   its answer does not fit.
//! - `file.insights` (insights): an `insights_report` artifact of the
//!   client, drawn from the file's figures and meaning
//!   ([`waymark_domain::dataflow::insights`]), with the file as its source
//!   (`file_id`, provenance `file:<id>`), and the data quality score
//!   reported as a metric of the journey.
//!
//! A file is read only by a task of its own client: another client's file
//! id fails the task as a missing file would.

use serde_json::{Map, Value, json};
use waymark_domain::FileId;
use waymark_domain::dataflow::{self, Semantic, Table};
use waymark_llm::{Prompt, json_object};
use waymark_store::{FileRecord, FileStatus, Leased, NewArtifact, Outcome, StoreError};

use crate::run::{Runtime, Step};

fn done(output: Value) -> Step {
    Step::Finish(Outcome::Completed { output })
}

fn fail(error: impl Into<String>, retryable: bool) -> Step {
    Step::Finish(Outcome::Failed {
        error: error.into(),
        retryable,
    })
}

/// The task's input with `fields` set over it, and the trace id.
fn handed_on(leased: &Leased, fields: Value) -> Value {
    let mut out = match &leased.task.input {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Value::Object(f) = fields {
        out.extend(f);
    }
    if let Some(t) = &leased.task.trace_id {
        out.entry("trace_id").or_insert_with(|| t.clone().into());
    }
    Value::Object(out)
}

/// The file the task names, if it is of the task's client.
async fn task_file(rt: &Runtime, leased: &Leased) -> Result<FileRecord, Step> {
    let Some(id) = leased
        .task
        .input
        .get("file_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<FileId>().ok())
    else {
        return Err(fail(
            format!(
                "{} needs `input.file_id`, the id of an uploaded file (fil_...)",
                leased.task.executor
            ),
            false,
        ));
    };
    match rt.store.get_file(id).await {
        Ok(f) if f.client_id == leased.task.client_id => Ok(f),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(fail(
            format!("no file {id} of this task's client; upload it first"),
            false,
        )),
        Err(e) => Err(fail(format!("reading file {id} failed: {e}"), true)),
    }
}

/// `file.inspect`.
pub(crate) async fn inspect(rt: &Runtime, leased: &Leased) -> Step {
    let file = match task_file(rt, leased).await {
        Ok(f) => f,
        Err(step) => return step,
    };
    let location = match &rt.blobs {
        Some(b) => format!("{b:?}: {}", file.storage_key),
        None => file.storage_key.clone(),
    };
    done(handed_on(
        leased,
        json!({
            "file_id": file.id.to_string(),
            "validation_status": "valid",
            "storage_location": location,
            "file": {
                "name": file.name,
                "kind": file.kind,
                "media_type": file.mime,
                "size_bytes": file.size,
                "sha256": file.sha256,
                "uploaded_by": file.uploaded_by_name,
            },
            "validation_checks": [
                {"check": "size_limit", "outcome": "passed"},
                {"check": "media_type_allowed", "outcome": "passed", "message": format!("{} by its content", file.kind)},
                {"check": "name_sanitised", "outcome": "passed"},
            ],
        }),
    ))
}

/// The file's text once it is read; a step to finish with otherwise.
async fn read_text(rt: &Runtime, file: &FileRecord) -> Result<String, Step> {
    match file.status {
        FileStatus::Extracted => match rt.store.file_text(file.id).await {
            Ok(t) => Ok(t.unwrap_or_default()),
            Err(e) => Err(fail(format!("reading the file's text failed: {e}"), true)),
        },
        FileStatus::Extracting => Err(fail(
            format!(
                "the text of {} is still being read; waiting for it",
                file.name
            ),
            true,
        )),
        FileStatus::Failed | FileStatus::Stored => Err(fail(
            format!(
                "{} has no readable text: {}",
                file.name,
                file.status_reason.as_deref().unwrap_or("its kind has none")
            ),
            false,
        )),
    }
}

/// The task's file and its text, for the steps that read it.
async fn file_with_text(rt: &Runtime, leased: &Leased) -> Result<(FileRecord, String), Step> {
    let file = task_file(rt, leased).await?;
    let text = read_text(rt, &file).await?;
    Ok((file, text))
}

fn table_of(file: &FileRecord, text: &str) -> Option<Table> {
    match file.kind.as_str() {
        "csv" => Table::from_text(text, false),
        "xlsx" => Table::from_text(text, true),
        _ => None,
    }
}

/// `file.parse`.
pub(crate) async fn parse(rt: &Runtime, leased: &Leased) -> Step {
    let (file, text) = match file_with_text(rt, leased).await {
        Ok(ft) => ft,
        Err(step) => return step,
    };
    let excerpt: String = text.chars().take(2000).collect();
    done(handed_on(
        leased,
        json!({
            "file_id": file.id.to_string(),
            "parse_result": {
                "status": if file.text_truncated { "partial" } else { "parsed" },
                "format": file.kind,
                "characters": file.text_chars,
                "pages": file.pages,
                "truncated": file.text_truncated,
                "table": file.table,
                "excerpt": excerpt,
            },
        }),
    ))
}

/// The meaning of the text: the provider's, or the template's with why.
async fn meaning(
    rt: &Runtime,
    text: &str,
    table: Option<&Table>,
) -> (Semantic, String, Option<String>) {
    let template = || dataflow::semantic(text, table);
    if rt.llm.settings().is_none() {
        return (template(), "template".into(), None);
    }
    let document: String = text
        .chars()
        .take(crate::fields::MAX_DOCUMENT_CHARS)
        .collect();
    let prompt = Prompt {
        system: Some(
            "You read business documents and data and describe their meaning exactly.".into(),
        ),
        history: Vec::new(),
        user: format!(
            "Describe this document. Answer with one JSON object and nothing else: \
             {{\"summary\": \"two or three sentences\", \"entities\": [{{\"name\": \"...\", \"type\": \
             \"one of {}\", \"mentions\": 1}}], \"keywords\": [\"...\"]}}.\n\nDocument:\n\"\"\"\n{document}\n\"\"\"",
            dataflow::ENTITY_TYPES.join(", ")
        ),
        temperature: Some(0.0),
        json: true,
    };
    match rt.llm.complete(&prompt, None).await {
        Ok(answer) => match json_object(&answer.text).map(|v| dataflow::check_semantic(&v)) {
            Some(Ok(s)) => (s, answer.provenance, None),
            Some(Err(why)) => (
                template(),
                "template".into(),
                Some(format!(
                    "{}'s answer does not fit: {why}",
                    answer.provenance
                )),
            ),
            None => (
                template(),
                "template".into(),
                Some(format!(
                    "{}'s answer is not a JSON object",
                    answer.provenance
                )),
            ),
        },
        Err(e) => (template(), "template".into(), Some(e.to_string())),
    }
}

/// `file.semantic`.
pub(crate) async fn semantic(rt: &Runtime, leased: &Leased) -> Step {
    let (file, text) = match file_with_text(rt, leased).await {
        Ok(ft) => ft,
        Err(step) => return step,
    };
    let table = table_of(&file, &text);
    let (s, provider, fallback) = meaning(rt, &text, table.as_ref()).await;
    done(handed_on(
        leased,
        json!({
            "file_id": file.id.to_string(),
            "content_id": format!("sha256:{}", file.sha256),
            "storage_status": "stored",
            "semantic_result": {
                "summary": s.summary,
                "entities": s.entities,
                "keywords": s.keywords,
                "provider": provider,
                "fallback": fallback,
            },
        }),
    ))
}

/// `file.insights`.
pub(crate) async fn insights(rt: &Runtime, leased: &Leased) -> Step {
    let (file, text) = match file_with_text(rt, leased).await {
        Ok(ft) => ft,
        Err(step) => return step,
    };
    let table = table_of(&file, &text);
    // The meaning handed on by `file.semantic`, else the template's.
    let handed = leased
        .task
        .input
        .get("semantic_result")
        .and_then(|v| dataflow::check_semantic(v).ok());
    let meaning = handed.unwrap_or_else(|| dataflow::semantic(&text, table.as_ref()));
    let content = dataflow::insights(
        &file.name,
        &file.id.to_string(),
        table.as_ref(),
        &meaning,
        leased.task.trace_id.as_deref(),
    );
    let score = content["data_quality"]["score"].as_f64().unwrap_or(0.0);
    let findings = content["key_findings"].as_array().map_or(0, Vec::len);
    let title: String = content["title"].as_str().unwrap_or("Insights").to_owned();
    // Idempotent across retries: one insights artifact per task.
    let mut ctx = rt.ctx.clone();
    ctx.idempotency = Some(waymark_store::IdempotencyKey {
        scope: "engine".into(),
        key: format!("file.insights:{}", leased.task.id),
        request_hash: leased.task.id.to_string(),
    });
    let created = rt
        .store
        .create_artifact(
            NewArtifact {
                client_id: file.client_id,
                engagement_id: None,
                artifact_type: "insights_report".into(),
                title,
                content,
                sources: Some(Vec::new()),
                note: Some(format!("Drawn from file {} ({})", file.name, file.id)),
                provenance: format!("file:{}", file.id),
                pipeline: None,
            },
            &ctx,
        )
        .await;
    let artifact = match created {
        Ok(c) => c.record,
        Err(e) => return fail(format!("writing the insights report failed: {e}"), true),
    };
    done(handed_on(
        leased,
        json!({
            "file_id": file.id.to_string(),
            "insights_result": {
                "status": "generated",
                "artifact_id": artifact.summary.id.to_string(),
                "findings": findings,
                "data_quality_score": score,
            },
            "metrics": {"data_quality_score": score},
        }),
    ))
}
