//! `/engagements/{id}/intake` and `/engagements/{id}/new/{type}`: the form of
//! an artifact type generated from its pack's JSON Schema (see
//! [`super::schema_form`]), for any pack. It creates the artifact, or writes
//! a new version of the current one while that is a draft or stale. Schema
//! errors come back at their fields (422); rule warnings never block and show
//! on the artifact page.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use waymark_domain::EngagementId;
use waymark_store::{ArtifactSummary, Engagement};

use super::csrf::{CsrfCookie, Form};
use super::schema_form::{self, FieldMessage};
use super::{Layout, PageError, Viewer, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{IfMatch, Json};
use crate::observe::TraceId;
use crate::routes;

#[derive(Template)]
#[template(path = "intake.html")]
struct FormPage {
    layout: Layout,
    engagement: Engagement,
    type_title: String,
    type_name: String,
    description: String,
    action: String,
    title: String,
    /// The artifact this form writes a new version of, if any.
    current: Option<ArtifactSummary>,
    /// Why the current artifact cannot take a new version, if it cannot.
    locked: Option<String>,
    fields: String,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// What the form is for: the engagement, the type's definition, its current artifact.
struct Target {
    engagement: Engagement,
    pack: std::sync::Arc<waymark_packs::Pack>,
    type_name: String,
    current: Option<ArtifactSummary>,
}

impl Target {
    fn def(&self) -> &waymark_packs::TypeDef {
        self.pack
            .artifact_type(&self.type_name)
            .expect("the type was found in this pack")
    }
}

async fn target(
    state: &AppState,
    caller: &Caller,
    id: &str,
    ty: Option<&str>,
) -> Result<Target, PageError> {
    let id: EngagementId = crate::extract::path_id(id)?;
    let engagement = routes::engagements::visible_engagement(state, caller, id).await?;
    caller.require_staff()?;
    let pack = waymark_engine::catalog::engagement_pack(&state.packs, &engagement.pack)
        .await
        .map_err(ApiError::from)?;
    let type_name = match ty {
        Some(t) => pack.artifact_type(t),
        // The intake: the type named so, else the first that needs nothing.
        None => pack
            .artifact_type("intake")
            .or_else(|| pack.types.iter().find(|t| t.requires.is_empty())),
    }
    .ok_or_else(|| ApiError::NotFound(format!("pack {} has no such type", pack.name)))?
    .name
    .clone();
    let current = state
        .store
        .current_artifacts(engagement.id)
        .await?
        .into_iter()
        .find(|a| a.artifact_type == type_name);
    Ok(Target {
        engagement,
        pack,
        type_name,
        current,
    })
}

#[allow(clippy::too_many_arguments)]
async fn show(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    t: Target,
    action: String,
    value: &Value,
    title: Option<String>,
    messages: Vec<FieldMessage>,
    top: Vec<String>,
    extra_rows: &HashMap<String, usize>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let warnings = if messages.is_empty() && top.is_empty() && !value.is_null() {
        t.def().check(value, "").warnings
    } else {
        vec![]
    };
    let fields = schema_form::fields_html(&t.def().schema, value, &messages, extra_rows);
    let locked = t
        .current
        .as_ref()
        .filter(|a| !a.status.is_editable())
        .map(|a| {
            format!(
                "The current {} is {}: reopen it as a draft on its page to change it.",
                t.def().title,
                a.status.as_str().replace('_', " ")
            )
        });
    let page = FormPage {
        layout: Layout::new(state, t.def().title.clone(), Some(caller), csrf, "clients").await?,
        title: title
            .or_else(|| t.current.as_ref().map(|a| a.title.clone()))
            .unwrap_or_else(|| format!("{} — {}", t.def().title, t.engagement.name)),
        type_title: t.def().title.clone(),
        type_name: t.def().name.clone(),
        description: t.def().description.clone(),
        action,
        current: t.current,
        locked,
        fields,
        errors: top,
        warnings,
        engagement: t.engagement,
    };
    render_status(status, &page)
}

/// `GET /engagements/{id}/intake`.
pub async fn intake(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    form(&state, &caller, &csrf, id, None).await
}

/// `GET /engagements/{id}/new/{type}`.
pub async fn new(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path((id, ty)): Path<(String, String)>,
) -> Result<Response, PageError> {
    form(&state, &caller, &csrf, id, Some(ty)).await
}

async fn form(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: String,
    ty: Option<String>,
) -> Result<Response, PageError> {
    let t = target(state, caller, &id, ty.as_deref()).await?;
    let action = format!("/engagements/{}/new/{}", t.engagement.id, t.def().name);
    let value = match &t.current {
        Some(a) => state.store.get_artifact(a.id).await?.content,
        None => json!({}),
    };
    show(
        state,
        caller,
        csrf,
        t,
        action,
        &value,
        None,
        vec![],
        vec![],
        &HashMap::new(),
        StatusCode::OK,
    )
    .await
}

/// `POST /engagements/{id}/new/{type}`: create or write a new version; "Add a
/// row" shows the form again with one more row, saving nothing.
pub async fn submit(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path((id, ty)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let t = target(&state, &caller, &id, Some(&ty)).await?;
    let action = format!("/engagements/{}/new/{}", t.engagement.id, t.def().name);
    let value = schema_form::value_from_form(&t.def().schema, &pairs);
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
    };
    let title = get("title").filter(|t| !t.is_empty());
    let mut extra_rows: HashMap<String, usize> = HashMap::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k == "_rows") {
        if let Some((pointer, n)) = v.rsplit_once('=')
            && let Ok(n) = n.parse::<usize>()
        {
            extra_rows.insert(pointer.to_owned(), n.min(50));
        }
        let _ = k;
    }
    if let Some(pointer) = get("_add") {
        *extra_rows.entry(pointer).or_insert(1) += 1;
        return show(
            &state,
            &caller,
            &csrf,
            t,
            action,
            &value,
            title,
            vec![],
            vec![],
            &extra_rows,
            StatusCode::OK,
        )
        .await;
    }
    let written = match &t.current {
        Some(a) => routes::artifacts::write_content(
            State(state.clone()),
            Extension(caller.clone()),
            Extension(trace),
            Path(a.id.to_string()),
            IfMatch(a.version),
            Json(routes::artifacts::WriteContent {
                content: value.clone(),
                sources: None,
                note: Some("edited in the form".into()),
            }),
        )
        .await
        .map(|_| a.id),
        None => routes::artifacts::create(
            &state,
            &caller,
            &trace,
            &HeaderMap::new(),
            json!({
                "client_id": t.engagement.client_id,
                "engagement_id": t.engagement.id,
                "type": t.def().name,
                "title": title.clone().unwrap_or_else(|| {
                    format!("{} — {}", t.def().title, t.engagement.name)
                }),
                "content": value,
            }),
        )
        .await
        .map(|(a, _)| a.summary.id),
    };
    match written {
        Ok(id) => Ok(Redirect::to(&format!("/artifacts/{id}?done=saved")).into_response()),
        Err(
            e @ (ApiError::Invalid { .. }
            | ApiError::Conflict { .. }
            | ApiError::Forbidden(_)
            | ApiError::VersionMismatch { .. }),
        ) => {
            let status = e.status();
            let p = e.problem();
            let messages: Vec<FieldMessage> = p
                .errors
                .iter()
                .map(|f| FieldMessage {
                    pointer: f
                        .pointer
                        .strip_prefix("/content")
                        .unwrap_or(&f.pointer)
                        .to_owned(),
                    message: f.message.clone(),
                })
                .collect();
            let top = vec![p.detail];
            show(
                &state,
                &caller,
                &csrf,
                t,
                action,
                &value,
                title,
                messages,
                top,
                &extra_rows,
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
