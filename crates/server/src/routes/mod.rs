//! HTTP handlers, one module per resource. Each handler parses its input,
//! calls the store (which applies the domain rules), and renders the answer.

pub mod artifacts;
pub mod clients;
pub mod delivery;
pub mod desk;
pub mod engagements;
pub mod events;
pub mod files;
pub mod journeys;
pub mod packs;
pub mod people;
pub mod pipelines;
pub mod playbooks;
pub mod review;
pub mod search;
pub mod service;
pub mod webhooks;
pub mod work;

use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use waymark_store::{IdempotencyKey, PageRequest, WriteContext};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::observe::TraceId;

/// `limit` and `cursor` of a list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageParams {
    /// At most this many items, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "limit must be from 1 to 200",
            ));
        }
        Ok(PageRequest {
            limit,
            cursor: self.cursor.clone(),
        })
    }
}

/// The context of a write: who, under which trace.
pub fn write_context(caller: &Caller, trace: &TraceId) -> Result<WriteContext, ApiError> {
    let mut ctx = WriteContext::new(caller.actor());
    ctx.actor_name = Some(caller.actor_name());
    ctx.trace_id = Some(trace.0.clone());
    Ok(ctx)
}

/// The context of a creating request: [`write_context`] with its
/// `Idempotency-Key`, when sent, bound to the request (its path and its body,
/// as canonical JSON). The same key with the same request answers what the
/// first answered; with another request, it is refused.
pub fn creating_context(
    caller: &Caller,
    trace: &TraceId,
    headers: &HeaderMap,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<WriteContext, ApiError> {
    let mut ctx = write_context(caller, trace)?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key.to_str().unwrap_or("").trim();
        if key.is_empty() || key.len() > 255 {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible characters",
            ));
        }
        let body = serde_json::to_value(body).map_err(|e| ApiError::Internal(Box::new(e)))?;
        let canonical = waymark_domain::content::canonical_json(&body);
        let mut hash = Sha256::new();
        hash.update(path.as_bytes());
        hash.update(b"\n");
        hash.update(canonical.as_bytes());
        ctx.idempotency = Some(IdempotencyKey {
            scope: caller.actor(),
            key: key.to_owned(),
            request_hash: hex::encode(hash.finalize()),
        });
    }
    Ok(ctx)
}
