//! The `http.webhook` executor: POSTs a claimed task to `input.url`, signed as
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! with the server's task-webhook secret (`GET /api/v1/work/webhook-secret`).
//!
//! A 2xx answer means the receiver took the task: its lease is extended to the
//! task's timeout, and the receiver completes or fails it later by calling
//! `POST /api/v1/work/tasks/{id}/complete|fail` with the lease token (as the
//! bearer, or in the body). Other answers are failed attempts: retried for
//! 408, 425, 429 and 5xx and for network errors, final for other 4xx. A task
//! whose receiver never calls back fails when its lease expires at the
//! timeout, and is retried like any other.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use waymark_domain::webhook::{WebhookSecret, sign};
use waymark_store::{Leased, Outcome, Store, StoreError};

use crate::run::{Runtime, Step};

/// The name of the server key task POSTs are signed with.
pub const SECRET_KEY: &str = "task-webhooks";

/// The longest a POST may take before it counts as a failed attempt.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// The task-webhook secret, shared by every server and worker through the
/// database.
pub async fn secret(store: &dyn Store) -> Result<WebhookSecret, StoreError> {
    let key = store.server_key(SECRET_KEY).await?;
    WebhookSecret::from_key(key).map_err(|e| StoreError::Conflict(e.to_string()))
}

fn failed(error: String, retryable: bool) -> Step {
    Step::Finish(Outcome::Failed { error, retryable })
}

/// POSTs a claimed `http.webhook` task to its receiver.
pub(crate) async fn run(rt: &Runtime, leased: &Leased) -> Step {
    let task = &leased.task;
    let Some(url) = task.input.get("url").and_then(|u| u.as_str()) else {
        return failed("the task has no input.url to POST to".into(), false);
    };
    let secret = match secret(&*rt.store).await {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot read the signing secret: {e}"), true),
    };
    let callback = |action: &str| {
        rt.public_url.as_ref().map(|base| {
            format!(
                "{}/api/v1/work/tasks/{}/{action}",
                base.trim_end_matches('/'),
                task.id
            )
        })
    };
    let deadline = OffsetDateTime::now_utc() + Duration::from_secs(task.timeout_s.max(1) as u64);
    let body = json!({
        "type": "task.assigned",
        "task": {
            "id": task.id,
            "unit_id": task.unit_id,
            "client_id": task.client_id,
            "key": task.key,
            "name": task.name,
            "input": task.input,
            "attempt": task.attempts,
            "max_attempts": task.max_attempts,
            "trace_id": task.trace_id,
        },
        "lease_token": leased.lease_token,
        "respond_by": deadline.format(&time::format_description::well_known::Rfc3339).ok(),
        "callbacks": {
            "complete": callback("complete"),
            "fail": callback("fail"),
            "heartbeat": callback("heartbeat"),
        },
    });
    let payload = body.to_string();
    let msg_id = format!("{}_{}", task.id, task.attempts);
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let signature = match sign(&secret, &msg_id, ts, payload.as_bytes()) {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot sign the POST: {e}"), false),
    };
    let mut req = rt
        .http
        .post(url)
        .timeout(POST_TIMEOUT)
        .header("content-type", "application/json")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature);
    if let Some(trace) = &task.trace_id {
        req = req.header("x-waymark-trace-id", trace);
    }
    let res = match req.body(payload).send().await {
        Ok(r) => r,
        Err(e) => {
            return failed(
                format!("POST {url} failed: {}", crate::error_chain(&e)),
                true,
            );
        }
    };
    let status = res.status().as_u16();
    if !(200..300).contains(&status) {
        let text: String = res
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let retryable = matches!(status, 408 | 425 | 429 | 500..);
        return failed(format!("POST {url} answered {status}: {text}"), retryable);
    }
    // Taken: the receiver holds the lease until the task's timeout.
    match rt
        .store
        .heartbeat(
            task.id,
            &leased.lease_token,
            Duration::from_secs(task.timeout_s.max(1) as u64),
        )
        .await
    {
        Ok(_) => Step::Recorded,
        // The receiver called back before we got here: nothing left to do.
        Err(StoreError::Refused { .. }) => Step::Recorded,
        Err(e) => {
            tracing::warn!(task = %task.id, error = %e, "could not extend the lease of a delivered task");
            Step::Recorded
        }
    }
}
