//! Clients: the organisations being served.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;
use waymark_domain::client::{check_arr, check_attributes, check_score, parse_name};
use waymark_domain::{ClientId, FieldError};
use waymark_store::{Client, ClientPatch, NewClient, Page};

use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, from_value, path_id};
use crate::observe::TraceId;

/// A client to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    #[schema(value_type = crate::openapi::Name, inline)]
    pub name: String,
    /// Annual recurring revenue, not negative.
    #[schema(minimum = 0)]
    pub arr: Option<f64>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub renewal_date: Option<String>,
    #[schema(minimum = 0, maximum = 100)]
    pub health_score: Option<f64>,
    #[schema(minimum = 0, maximum = 100)]
    pub risk_score: Option<f64>,
    #[schema(minimum = 0, maximum = 100)]
    pub opportunity_score: Option<f64>,
    #[schema(value_type = Option<crate::openapi::Name>, inline)]
    pub owner: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
}

/// Changes to a client: a field left out stays as it is, `null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    #[schema(value_type = Option<crate::openapi::Name>, inline)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    /// Annual recurring revenue, not negative.
    #[schema(value_type = Option<f64>, minimum = 0)]
    pub arr: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Date)]
    pub renewal_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 100)]
    pub health_score: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 100)]
    pub risk_score: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 100)]
    pub opportunity_score: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<crate::openapi::Name>, inline)]
    pub owner: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
}

/// Present-and-null as `Some(None)`, absent (via `default`) as `None`.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_date(value: &str, pointer: &str) -> Result<time::Date, FieldError> {
    waymark_domain::dates::parse(value)
        .ok_or_else(|| FieldError::new(pointer, "must be a date as YYYY-MM-DD"))
}

fn parse_owner(value: &str) -> Result<String, FieldError> {
    parse_name(value, "/owner")
}

impl CreateClient {
    fn validate(self) -> Result<NewClient, FieldError> {
        let score = |v: Option<f64>, p: &str| v.map(|s| check_score(s, p)).transpose();
        score(self.health_score, "/health_score")?;
        score(self.risk_score, "/risk_score")?;
        score(self.opportunity_score, "/opportunity_score")?;
        self.arr.map(|a| check_arr(a, "/arr")).transpose()?;
        if let Some(a) = &self.attributes {
            check_attributes(a, "/attributes")?;
        }
        Ok(NewClient {
            name: parse_name(&self.name, "/name")?,
            arr: self.arr,
            renewal_date: self
                .renewal_date
                .as_deref()
                .map(|d| parse_date(d, "/renewal_date"))
                .transpose()?,
            health_score: self.health_score,
            risk_score: self.risk_score,
            opportunity_score: self.opportunity_score,
            owner: self.owner.as_deref().map(parse_owner).transpose()?,
            attributes: self.attributes,
        })
    }
}

impl UpdateClient {
    fn validate(self) -> Result<ClientPatch, FieldError> {
        let score = |v: Option<Option<f64>>, p: &str| -> Result<_, FieldError> {
            if let Some(Some(s)) = v {
                check_score(s, p)?;
            }
            Ok(v)
        };
        if let Some(Some(a)) = self.arr {
            check_arr(a, "/arr")?;
        }
        if let Some(a) = &self.attributes {
            check_attributes(a, "/attributes")?;
        }
        Ok(ClientPatch {
            name: self
                .name
                .as_deref()
                .map(|n| parse_name(n, "/name"))
                .transpose()?,
            arr: self.arr,
            renewal_date: match self.renewal_date {
                None => None,
                Some(None) => Some(None),
                Some(Some(d)) => Some(Some(parse_date(&d, "/renewal_date")?)),
            },
            health_score: score(self.health_score, "/health_score")?,
            risk_score: score(self.risk_score, "/risk_score")?,
            opportunity_score: score(self.opportunity_score, "/opportunity_score")?,
            owner: match self.owner {
                None => None,
                Some(None) => Some(None),
                Some(Some(o)) => Some(Some(parse_owner(&o)?)),
            },
            attributes: self.attributes,
        })
    }
}

/// Create a client.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body = CreateClient,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated request")),
    responses((status = 201, body = Client), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, JsonOut<Client>), ApiError> {
    caller.require_staff()?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/clients", &body)?;
    let input: CreateClient = from_value(body)?;
    let new = input.validate().map_err(ApiError::invalid)?;
    let created = state.store.create_client(new, &ctx).await?;
    if !created.replayed {
        super::playbooks::signals_changed(&state, created.record.id, &ctx).await;
    }
    Ok((StatusCode::CREATED, JsonOut(created.record)))
}

/// List clients, newest first.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", params(PageParams),
    responses((status = 200, body = Page<Client>)), security(("bearer" = [])))]
pub async fn list_clients(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<PageParams>,
) -> Result<JsonOut<Page<Client>>, ApiError> {
    let page = params.page()?;
    if caller.is_staff() {
        return Ok(JsonOut(state.store.list_clients(page).await?));
    }
    // A client user's list is their own client, on one page.
    let items = match caller.client_scope() {
        Some(c) if page.cursor().is_none() && caller.link.is_none() => {
            vec![state.store.get_client(c).await?]
        }
        _ => vec![],
    };
    Ok(JsonOut(Page {
        items,
        next_cursor: None,
    }))
}

/// Get a client.
#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients",
    params(("id" = String, Path, description = "A client id (cli_...)")),
    responses((status = 200, body = Client), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<Client>, ApiError> {
    let id: ClientId = path_id(&id)?;
    caller.check_client(id)?;
    Ok(JsonOut(state.store.get_client(id).await?))
}

/// Change a client's name or signals; the queue rules run over it after.
#[utoipa::path(patch, path = "/api/v1/clients/{id}", tag = "clients", request_body = UpdateClient,
    params(("id" = String, Path, description = "A client id (cli_...)")),
    responses((status = 200, body = Client), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<UpdateClient>,
) -> Result<JsonOut<Client>, ApiError> {
    let id: ClientId = path_id(&id)?;
    caller.check_client(id)?;
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace)?;
    let patch = body.validate().map_err(ApiError::invalid)?;
    let client = state.store.update_client(id, patch, &ctx).await?;
    // Its signals may have changed: the queue rules run over it (the
    // answer is the client as updated, before the run).
    super::playbooks::signals_changed(&state, id, &ctx).await;
    Ok(JsonOut(client))
}
