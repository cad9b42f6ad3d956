//! Engagements: pieces of work for a client, each naming its pack.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use waymark_domain::client::{parse_name, parse_pack_name};
use waymark_domain::{ClientId, EngagementId, FieldError};
use waymark_store::{Engagement, NewEngagement, Page};

use super::{PageParams, creating_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, from_value, path_id, query_id};
use crate::observe::TraceId;

/// An engagement to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEngagement {
    pub client_id: ClientId,
    #[schema(value_type = crate::openapi::Name, inline)]
    pub name: String,
    /// The pack whose templates it uses, e.g. `marketing-engagement`.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    pub pack: String,
}

impl CreateEngagement {
    fn validate(self) -> Result<NewEngagement, FieldError> {
        Ok(NewEngagement {
            client_id: self.client_id,
            name: parse_name(&self.name, "/name")?,
            pack: parse_pack_name(&self.pack, "/pack")?,
        })
    }
}

/// Filters of the engagement list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EngagementQuery {
    /// Only this client's engagements.
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Create an engagement.
#[utoipa::path(post, path = "/api/v1/engagements", tag = "engagements", request_body = CreateEngagement,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated request")),
    responses((status = 201, body = Engagement), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_engagement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<Engagement>), ApiError> {
    caller.require_staff()?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/engagements", &body)?;
    let input: CreateEngagement = from_value(body)?;
    let new = input.validate().map_err(ApiError::invalid)?;
    if state.packs.get(&new.pack).await?.is_none() {
        let known: Vec<String> = state
            .packs
            .list()
            .await?
            .iter()
            .map(|(p, _)| p.name.clone())
            .collect();
        return Err(ApiError::invalid(FieldError::new(
            "/pack",
            format!(
                "no pack `{}`; available: {} (or install one with `waymark pack install`)",
                new.pack,
                known.join(", ")
            ),
        )));
    }
    let created = state.store.create_engagement(new, &ctx).await?;
    Ok((StatusCode::CREATED, JsonOut(created.record)))
}

/// List engagements, newest first.
#[utoipa::path(get, path = "/api/v1/engagements", tag = "engagements", params(EngagementQuery),
    responses((status = 200, body = Page<Engagement>)), security(("bearer" = [])))]
pub async fn list_engagements(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<EngagementQuery>,
) -> Result<JsonOut<Page<Engagement>>, ApiError> {
    let mut client = q
        .client_id
        .as_deref()
        .map(|c| query_id::<ClientId>("client_id", c))
        .transpose()?;
    if !caller.is_staff() {
        // A client user lists their own client's engagements, whatever they ask for.
        match (caller.client_scope(), client) {
            (Some(own), None) => client = Some(own),
            (Some(own), Some(asked)) if own == asked => {}
            _ => {
                return Ok(JsonOut(Page {
                    items: vec![],
                    next_cursor: None,
                }));
            }
        }
    }
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    Ok(JsonOut(state.store.list_engagements(client, page).await?))
}

/// Get an engagement.
#[utoipa::path(get, path = "/api/v1/engagements/{id}", tag = "engagements",
    params(("id" = String, Path, description = "An engagement id (eng_...)")),
    responses((status = 200, body = Engagement), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_engagement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<Engagement>, ApiError> {
    let id: EngagementId = path_id(&id)?;
    Ok(JsonOut(visible_engagement(&state, &caller, id).await?))
}

/// The engagement, or 404 (as for a missing one) when the caller may not see
/// its client.
pub async fn visible_engagement(
    state: &AppState,
    caller: &Caller,
    id: EngagementId,
) -> Result<Engagement, ApiError> {
    let e = state.store.get_engagement(id).await?;
    if caller.sees_client(e.client_id) {
        Ok(e)
    } else {
        Err(crate::auth::not_found("engagement", id))
    }
}
