//! `file.extract`: reads an uploaded file's text (`waymark_files`) and
//! records it, indexed for search.
//!
//! The reading runs on a blocking thread with a time and size budget; a
//! panic in a parser is caught there. A file that cannot be read (encrypted,
//! corrupt, a zip bomb, too deep) is not a failed task: the file's status
//! says `failed` with the reason, and the task completes. Only trouble of the
//! worker's own (the object store or the database unreachable) fails the
//! attempt, to be retried.

use std::time::{Duration, Instant};

use serde_json::json;
use waymark_domain::FileId;
use waymark_files::{ExtractError, FileKind, Limits};
use waymark_store::{Extraction, FileStatus, Leased, Outcome, StoreError};

use crate::blobs::BlobError;
use crate::run::{Runtime, Step};

/// How long reading one file may take.
pub const TIME_BUDGET: Duration = Duration::from_secs(120);

pub(crate) async fn run(runtime: &Runtime, leased: &Leased) -> Step {
    let input = &leased.task.input;
    let Some(file_id) = input
        .get("file_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<FileId>().ok())
    else {
        return fail(
            "file.extract needs `input.file_id`, the id of an uploaded file",
            false,
        );
    };
    let file = match runtime.store.get_file(file_id).await {
        Ok(f) => f,
        // Deleted before its text was read: nothing to do.
        Err(StoreError::NotFound { .. }) => {
            return done(json!({"file_id": file_id.to_string(), "status": "deleted"}));
        }
        Err(e) => return fail(&format!("reading the file's record failed: {e}"), true),
    };
    if matches!(file.status, FileStatus::Extracted | FileStatus::Failed) {
        return done(summary(&file));
    }
    let Some(blobs) = &runtime.blobs else {
        return fail("this worker has no file storage configured", true);
    };
    let Some(kind) = FileKind::parse(&file.kind) else {
        return fail(&format!("unknown file kind {}", file.kind), false);
    };
    let started = Instant::now();
    let result = match blobs.fetch(&file.storage_key).await {
        Ok(path) => read(path, kind).await,
        Err(BlobError::Missing(key)) => Err(Failure {
            code: "missing",
            reason: format!(
                "the file's bytes are missing from the object store ({key}); upload it again"
            ),
        }),
        Err(e) => return fail(&format!("fetching the file failed: {e}"), true),
    };
    let ms = started.elapsed().as_millis() as i64;
    let extraction = match result {
        Ok(x) => Extraction {
            status: FileStatus::Extracted,
            reason: (!x.warnings.is_empty()).then(|| x.warnings.join("; ")),
            error_code: None,
            text: Some(x.text),
            truncated: x.truncated,
            pages: x.pages.map(i64::from),
            table: x.table.and_then(|t| serde_json::to_value(t).ok()),
            ms,
        },
        Err(f) => Extraction {
            status: FileStatus::Failed,
            reason: Some(f.reason),
            error_code: Some(f.code.to_owned()),
            text: None,
            truncated: false,
            pages: None,
            table: None,
            ms,
        },
    };
    match runtime
        .store
        .record_extraction(file_id, extraction, &runtime.ctx)
        .await
    {
        Ok(file) => done(summary(&file)),
        Err(StoreError::NotFound { .. }) => {
            done(json!({"file_id": file_id.to_string(), "status": "deleted"}))
        }
        Err(e) => fail(
            &format!("recording the text failed: {}", crate::error_chain(&e)),
            true,
        ),
    }
}

struct Failure {
    code: &'static str,
    reason: String,
}

/// Reads the staged file on a blocking thread, within the budgets.
async fn read(
    path: tempfile::TempPath,
    kind: FileKind,
) -> Result<waymark_files::Extracted, Failure> {
    let limits = Limits {
        deadline: Some(Instant::now() + TIME_BUDGET),
        ..Limits::default()
    };
    let joined = tokio::task::spawn_blocking(move || {
        let out = waymark_files::extract_guarded(&path, kind, &limits);
        drop(path);
        out
    })
    .await;
    match joined {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(Failure {
            code: e.code(),
            reason: e.to_string(),
        }),
        Err(e) => Err(Failure {
            code: ExtractError::Crashed(String::new()).code(),
            reason: format!("reading the file stopped unexpectedly ({e}); it cannot be read"),
        }),
    }
}

fn summary(f: &waymark_store::FileRecord) -> serde_json::Value {
    json!({
        "file_id": f.id.to_string(),
        "status": f.status.as_str(),
        "kind": f.kind,
        "text_chars": f.text_chars,
        "pages": f.pages,
        "error_code": f.error_code,
        "reason": f.status_reason,
    })
}

fn done(output: serde_json::Value) -> Step {
    Step::Finish(Outcome::Completed { output })
}

fn fail(error: &str, retryable: bool) -> Step {
    Step::Finish(Outcome::Failed {
        error: error.to_owned(),
        retryable,
    })
}
