//! Webhook subscriptions and their delivery log (admins only).
//!
//! A subscription names a URL, the event types it wants (none: all) and,
//! optionally, one client. Every event after its creation that it wants is
//! POSTed to the URL as a CloudEvent, signed per Standard Webhooks with the
//! subscription's secret, by `waymark_engine::delivery`. The secret is answered once,
//! at creation.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::webhook::WebhookSecret;
use waymark_domain::{ClientId, FieldError, WebhookId};
use waymark_store::{Delivery, NewWebhook, Page, Webhook};

use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, path_id};
use crate::observe::TraceId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// Most event types one subscription may name.
const MAX_TYPES: usize = 100;
/// Longest event type name.
const MAX_TYPE_LEN: usize = 100;
/// Longest description.
const MAX_DESCRIPTION: usize = 500;

/// A subscription to create.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: an absolute `http` or `https` URL.
    #[schema(
        max_length = 2048,
        pattern = "^\\s*[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\\S*)?\\s*$"
    )]
    pub url: String,
    /// Event types to deliver (`artifact.approved`, `comment.created`...);
    /// absent, empty or `["*"]` for all.
    #[schema(schema_with = event_types_schema)]
    pub event_types: Option<Vec<String>>,
    /// Only events of this client (`cli_…`).
    pub client_id: Option<String>,
    pub description: Option<String>,
    /// The signing secret, `whsec_` and base64 of the key; generated when absent.
    #[schema(
        pattern = "^(whsec_)?([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)$"
    )]
    pub secret: Option<String>,
}

/// A new subscription, with its signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_…`: verify each delivery's `webhook-signature` with it (Standard Webhooks).
    pub secret: String,
}

/// Checks a receiver URL: absolute, `http` or `https`, with a host; answers it
/// normalized.
fn parse_url(url: &str) -> Result<String, FieldError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(FieldError::new("/url", "must not be empty"));
    }
    if url.len() > MAX_URL {
        return Err(FieldError::new(
            "/url",
            format!("must be at most {MAX_URL} characters"),
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        FieldError::new(
            "/url",
            format!("must be an absolute URL such as https://hooks.example.com/waymark ({e})"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FieldError::new(
            "/url",
            format!("must use http or https, not {}", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new("/url", "must name a host"));
    }
    // Kept as parsed (normalized), which is exactly what is POSTed to.
    Ok(parsed.into())
}

/// Whether `t` is a dotted lowercase event type (`artifact.approved`).
fn is_event_type(t: &str) -> bool {
    let mut parts = 0;
    for part in t.split('.') {
        let mut chars = part.chars();
        let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !starts_well || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}

fn event_types_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::openapi::schema_json(serde_json::json!({
        "description": "Event types to deliver (`artifact.approved`, `comment.created`...);\nabsent, empty or `[\"*\"]` for all.",
        "type": ["array", "null"],
        "maxItems": MAX_TYPES,
        "items": {
            "type": "string",
            "maxLength": MAX_TYPE_LEN,
            "pattern": "^\\s*(\\*|[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+)\\s*$",
        },
    }))
}

/// Checks the event types; answers them without duplicates, in the order given.
fn parse_event_types(types: Vec<String>) -> Result<Vec<String>, FieldError> {
    if types.len() > MAX_TYPES {
        return Err(FieldError::new(
            "/event_types",
            format!("may name at most {MAX_TYPES} event types"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for (i, t) in types.into_iter().enumerate() {
        let t = t.trim().to_owned();
        if t != "*" && (t.len() > MAX_TYPE_LEN || !is_event_type(&t)) {
            return Err(FieldError::new(
                format!("/event_types/{i}"),
                "must be an event type such as artifact.approved (lowercase words joined by dots), or * for all",
            ));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

impl CreateWebhook {
    /// Validates the request; answers the subscription and its secret.
    fn validate(self) -> Result<NewWebhook, FieldError> {
        let url = parse_url(&self.url)?;
        let event_types = parse_event_types(self.event_types.unwrap_or_default())?;
        let client_id = self
            .client_id
            .as_deref()
            .map(|c| {
                c.trim()
                    .parse::<ClientId>()
                    .map_err(|e| FieldError::new("/client_id", e.to_string()))
            })
            .transpose()?;
        let description = self
            .description
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(FieldError::new(
                "/description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
        let secret = match self.secret {
            Some(s) => {
                let s = s.trim().to_owned();
                WebhookSecret::parse(&s).map_err(|e| FieldError::new("/secret", e.to_string()))?;
                s
            }
            None => WebhookSecret::generate().0,
        };
        Ok(NewWebhook {
            url,
            event_types,
            client_id,
            description,
            secret,
        })
    }
}

/// Subscribe a URL to events. The answer carries the signing secret, shown
/// this once. Deliveries start with the events after this one.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = WebhookCreated), (status = 403, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<CreateWebhook>,
) -> Result<(StatusCode, JsonOut<WebhookCreated>), ApiError> {
    caller.require_admin()?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/webhooks", &body)?;
    let new = body.validate().map_err(ApiError::invalid)?;
    let secret = new.secret.clone();
    let webhook = state.store.create_webhook(new, &ctx).await?;
    Ok((
        StatusCode::CREATED,
        JsonOut(WebhookCreated { webhook, secret }),
    ))
}

/// List subscriptions, newest first (without their secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(PageParams),
    responses((status = 200, body = Page<Webhook>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<PageParams>,
) -> Result<JsonOut<Page<Webhook>>, ApiError> {
    caller.require_admin()?;
    Ok(JsonOut(state.store.list_webhooks(params.page()?).await?))
}

/// Get a subscription (without its secret).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "A webhook id (whk_...)")),
    responses((status = 200, body = Webhook), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<Webhook>, ApiError> {
    caller.require_admin()?;
    let id: WebhookId = path_id(&id)?;
    Ok(JsonOut(state.store.get_webhook(id).await?))
}

/// Delete a subscription: nothing more is sent to it, pending deliveries are
/// abandoned; its delivery log stays in the audit trail.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "A webhook id (whk_...)")),
    responses((status = 204, description = "Deleted"), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let id: WebhookId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    state.store.delete_webhook(id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The deliveries of a subscription, newest first, each with its attempts.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "A webhook id (whk_...)"), PageParams),
    responses((status = 200, body = Page<Delivery>), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<JsonOut<Page<Delivery>>, ApiError> {
    caller.require_admin()?;
    let id: WebhookId = path_id(&id)?;
    Ok(JsonOut(
        state.store.list_deliveries(id, params.page()?).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("https://hooks.example.com/waymark?x=1").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/").is_ok());
        for bad in [
            "",
            "hooks.example.com/x",
            "/relative",
            "ftp://example.com/",
            "mailto:a@b.example",
            "file:///etc/passwd",
            "http://",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().pointer, "/url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert!(parse_url(&long).is_err());
    }

    #[test]
    fn event_types() {
        assert_eq!(
            parse_event_types(vec![
                "artifact.approved".into(),
                "*".into(),
                "artifact.approved".into(),
                "review_link.created".into(),
            ])
            .unwrap(),
            ["artifact.approved", "*", "review_link.created"]
        );
        for bad in [
            "",
            "artifact",
            "Artifact.approved",
            "artifact..x",
            "a.b c",
            ".a.b",
            "1a.b",
        ] {
            let e = parse_event_types(vec!["comment.created".into(), bad.into()]).unwrap_err();
            assert_eq!(e.pointer, "/event_types/1", "{bad}");
        }
    }
}
