//! Files in the pages: `/files/{id}` (what the file is, its extracted text
//! or why it could not be read, its table's columns), its download, and the
//! upload form the client, engagement and artifact pages carry (`POST
//! /files`: the CSRF token comes first in the form, then the same upload as
//! the API's, [`routes::files::accept_upload`]).

use askama::Template;
use axum::Extension;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use subtle::ConstantTimeEq;
use waymark_domain::FileId;
use waymark_store::{FileFilter, FileRecord, FileStatus, PageRequest};

use super::csrf::{self, CsrfCookie};
use super::{Layout, PageError, Viewer, render};
use crate::AppState;
use crate::extract::path_id;
use crate::observe::TraceId;
use crate::routes;

/// A byte count as people read it: `512 B`, `14.2 KB`, `3.1 MB`.
pub fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// A file in a list.
pub struct FileRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub size: String,
    pub badge: super::artifacts::Badge,
    pub when: String,
}

impl From<&FileRecord> for FileRow {
    fn from(f: &FileRecord) -> Self {
        FileRow {
            id: f.id.to_string(),
            name: f.name.clone(),
            kind: waymark_files::FileKind::parse(&f.kind)
                .map(|k| k.label().to_owned())
                .unwrap_or_else(|| f.kind.clone()),
            size: size(f.size),
            badge: status_badge(f.status),
            when: super::artifacts::when(f.created_at),
        }
    }
}

/// A file status's badge: `extracted` reads as done, `failed` as bad.
pub fn status_badge(s: FileStatus) -> super::artifacts::Badge {
    let (tone, words) = match s {
        FileStatus::Stored => ("neutral", "stored"),
        FileStatus::Extracting => ("info", "reading text"),
        FileStatus::Extracted => ("ok", "text extracted"),
        FileStatus::Failed => ("bad", "text unreadable"),
    };
    super::artifacts::Badge {
        tone,
        words: words.to_owned(),
    }
}

/// The files of a client, an engagement or an artifact, newest first (at
/// most 50), for the pages that list them beside their upload form.
pub async fn listed(state: &AppState, filter: FileFilter) -> Result<Vec<FileRow>, PageError> {
    let page = state
        .store
        .list_files(
            filter,
            PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await?;
    Ok(page.items.iter().map(FileRow::from).collect())
}

/// The upload form's fields: where the file goes.
pub struct UploadTarget {
    pub client_id: String,
    pub engagement_id: Option<String>,
    pub artifact_id: Option<String>,
    /// The largest file accepted, as people read it.
    pub limit: String,
}

impl UploadTarget {
    pub fn new(
        state: &AppState,
        client: String,
        engagement: Option<String>,
        artifact: Option<String>,
    ) -> Self {
        UploadTarget {
            client_id: client,
            engagement_id: engagement,
            artifact_id: artifact,
            limit: size(state.http.upload_limit as i64),
        }
    }
}

struct TableView {
    rows: u64,
    columns: u64,
    headers: Vec<(String, String)>,
    sample: Vec<Vec<String>>,
}

fn table_view(t: &Value) -> Option<TableView> {
    let headers: Vec<String> = t
        .get("headers")?
        .as_array()?
        .iter()
        .map(|h| h.as_str().unwrap_or("").to_owned())
        .collect();
    let types: Vec<String> = t
        .get("column_types")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").replace('_', " "))
                .collect()
        })
        .unwrap_or_default();
    let sample = t
        .get("sample")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .take(10)
                .map(|r| {
                    r.as_array()
                        .map(|cells| {
                            cells
                                .iter()
                                .map(|c| c.as_str().unwrap_or("").to_owned())
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Some(TableView {
        rows: t.get("rows").and_then(Value::as_u64).unwrap_or(0),
        columns: t
            .get("columns")
            .and_then(Value::as_u64)
            .unwrap_or(headers.len() as u64),
        headers: headers
            .into_iter()
            .enumerate()
            .map(|(i, h)| (h, types.get(i).cloned().unwrap_or_default()))
            .collect(),
        sample,
    })
}

#[derive(Template)]
#[template(path = "file.html")]
struct FilePage {
    layout: Layout,
    notice: Option<&'static str>,
    file: FileRecord,
    kind: String,
    size: String,
    badge: super::artifacts::Badge,
    uploaded: String,
    extracted: Option<String>,
    client_name: String,
    staff: bool,
    engagement: Option<(String, String)>,
    artifact: Option<(String, String)>,
    text: Option<String>,
    table: Option<TableView>,
    working: bool,
}

/// `GET /files/{id}`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<super::Done>,
) -> Result<Response, PageError> {
    let id: FileId = path_id(&id)?;
    let file = routes::files::visible_file(&state, &caller, id).await?;
    let text = state.store.file_text(id).await?;
    let client_name = state.store.get_client(file.client_id).await?.name;
    let engagement = match file.engagement_id {
        Some(e) => Some((e.to_string(), state.store.get_engagement(e).await?.name)),
        None => None,
    };
    let artifact = match file.artifact_id {
        Some(a) => {
            let s = state.store.get_artifact_summary(a).await?;
            caller.sees_artifact(&s).then(|| (a.to_string(), s.title))
        }
        None => None,
    };
    render(&FilePage {
        layout: Layout::new(&state, file.name.clone(), Some(&caller), &csrf, "clients").await?,
        notice: q.notice(),
        kind: waymark_files::FileKind::parse(&file.kind)
            .map(|k| k.label().to_owned())
            .unwrap_or_else(|| file.kind.clone()),
        size: size(file.size),
        badge: status_badge(file.status),
        uploaded: super::artifacts::when(file.created_at),
        extracted: file.extracted_at.map(super::artifacts::when),
        client_name,
        staff: caller.is_staff(),
        engagement,
        artifact,
        text,
        table: file.table.as_ref().and_then(table_view),
        working: file.status == FileStatus::Extracting,
        file,
    })
}

/// `GET /files/{id}/download`: the file's bytes, for a signed-in person.
pub async fn download(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    Ok(routes::files::file_content(State(state), Extension(caller), Path(id)).await?)
}

/// `POST /files`: the pages' upload form. The CSRF token must be the form's
/// first field, so nothing is read of the file before it is checked. Answers
/// the file's page (303), or the page of the problem.
pub async fn upload(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    let forged = || {
        PageError::Forbidden(
            "This form has expired or did not come from this site. Reload the page and try again."
                .into(),
        )
    };
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
        || csrf::cookie_value(&headers, csrf::COOKIE).is_none()
    {
        return Err(forged());
    }
    let mut multipart = multipart.map_err(|_| {
        PageError::BadRequest("The upload could not be read; choose the file again.".into())
    })?;
    let first = multipart.next_field().await.map_err(|_| {
        PageError::BadRequest("The upload could not be read; choose the file again.".into())
    })?;
    let Some(first) = first.filter(|f| f.name() == Some(csrf::FIELD)) else {
        return Err(forged());
    };
    let sent = first.text().await.map_err(|_| forged())?;
    let key = state.link_key().await?;
    let expected = csrf::token(&key, &csrf.0);
    if !bool::from(expected.as_bytes().ct_eq(sent.trim().as_bytes())) {
        return Err(forged());
    }
    let (_, out) = routes::files::accept_upload(&state, &caller, &trace, multipart).await?;
    let done = if out.deduplicated {
        "file-known"
    } else {
        "uploaded"
    };
    Ok(Redirect::to(&format!("/files/{}?done={done}", out.file.id)).into_response())
}
