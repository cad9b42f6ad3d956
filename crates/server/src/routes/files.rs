//! Uploaded files (`/api/v1/files`): upload, metadata, download, text,
//! delete.
//!
//! An upload is `multipart/form-data` with one `file` part and the
//! `client_id` (and optionally `engagement_id` or `artifact_id`) it is for.
//! The part is streamed to a staging file while it is hashed and counted,
//! never held whole in memory; past the upload limit the request is refused
//! (413) and nothing is kept. Its kind is decided from its bytes
//! (`waymark_files::detect`), whatever its name says; a kind outside the
//! allow-list is refused (415). Only then are the bytes put into the object
//! store, under their hash, and the file recorded with the task that will
//! read its text. The same bytes for the same client answer the file already
//! stored (200, `deduplicated: true`).
//!
//! Who may do what: the team works with every client's files; a client user
//! uploads and reads their own client's (another client's answer 404, as
//! missing ones do); deleting is for admins and operators. Review links and
//! task leases reach no files.

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::{ArtifactId, ClientId, EngagementId, FieldError, FileId, UnitId};
use waymark_engine::blobs::Blobs;
use waymark_files::FileKind;
use waymark_store::{FileFilter, FileRecord, FileStatus, NewFile, Page, Role};

use super::{PageParams, write_context};
use crate::AppState;
use crate::auth::{Caller, not_found};
use crate::error::{ApiError, Problem};
use crate::extract::{Query, path_id, query_id};
use crate::observe::TraceId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload_file, list_files))
        // The upload counts the file's bytes itself (see [`upload_file`]);
        // the server's body limit, meant for JSON, does not apply to it.
        .layer(DefaultBodyLimit::disable())
        .routes(routes!(get_file, delete_file))
        .routes(routes!(file_content))
        .routes(routes!(file_text))
        .routes(routes!(extract_fields))
}

/// Bytes of form fields other than the file.
const MAX_FIELD: usize = 200;

/// The form of `POST /api/v1/files`; any other part is refused (422).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file (its name is kept, sanitised).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The client it belongs to (a client user's own client when left out).
    client_id: Option<String>,
    /// An engagement of that client.
    engagement_id: Option<String>,
    /// An artifact of that client it is attached to.
    artifact_id: Option<String>,
}

/// A file, with where to get it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileOut {
    #[serde(flatten)]
    pub file: FileRecord,
    /// True when the client already had these bytes: this is that file.
    pub deduplicated: bool,
    /// The unit of work whose task reads its text, when one was queued.
    #[schema(value_type = Option<String>)]
    pub extraction_unit_id: Option<UnitId>,
    pub links: FileLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileLinks {
    /// This record.
    #[serde(rename = "self")]
    pub this: String,
    /// Its bytes.
    pub content: String,
    /// Its extracted text.
    pub text: String,
    /// Its page.
    pub page: String,
}

impl FileOut {
    pub fn new(file: FileRecord, deduplicated: bool, unit: Option<UnitId>) -> Self {
        let id = file.id;
        Self {
            file,
            deduplicated,
            extraction_unit_id: unit,
            links: FileLinks {
                this: format!("/api/v1/files/{id}"),
                content: format!("/api/v1/files/{id}/content"),
                text: format!("/api/v1/files/{id}/text"),
                page: format!("/files/{id}"),
            },
        }
    }
}

/// Refuses review links and task leases: they reach no files.
fn require_person_or_team(caller: &Caller) -> Result<(), ApiError> {
    if caller.link.is_some() || caller.lease.is_some() {
        return Err(ApiError::Forbidden(
            "a review link or a task's lease reaches no files; use a personal token".into(),
        ));
    }
    Ok(())
}

/// A file the caller may see, or 404 exactly as for a missing one.
pub async fn visible_file(
    state: &AppState,
    caller: &Caller,
    id: FileId,
) -> Result<FileRecord, ApiError> {
    require_person_or_team(caller)?;
    let file = match state.store.get_file(id).await {
        Err(waymark_store::StoreError::NotFound { .. }) => return Err(not_found("file", id)),
        other => other?,
    };
    if !caller.sees_client(file.client_id) {
        return Err(not_found("file", id));
    }
    Ok(file)
}

fn blobs(state: &AppState) -> Result<&Blobs, ApiError> {
    state.blobs.as_ref().ok_or_else(|| {
        ApiError::Unavailable(waymark_store::StoreError::Refused {
            code: "no_file_storage",
            detail: "this server has no file storage configured".into(),
        })
    })
}

/// What was read of the form.
#[derive(Default)]
struct Form {
    client_id: Option<String>,
    engagement_id: Option<String>,
    artifact_id: Option<String>,
    file: Option<Staged>,
}

/// The file part, staged.
struct Staged {
    path: tempfile::TempPath,
    name: String,
    declared: Option<String>,
    size: u64,
    sha256: String,
}

fn multipart_problem(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid_upload",
        format!(
            "the upload could not be read ({e}); send multipart/form-data with a `file` part \
             and `client_id`, and send it again whole if it was cut off"
        ),
    )
}

/// Reads the form, streaming the file part to a staging file.
async fn read_form(
    mut multipart: Multipart,
    staging: &std::path::Path,
    limit: u64,
) -> Result<Form, ApiError> {
    let mut form = Form::default();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_problem)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                if form.file.is_some() {
                    return Err(ApiError::invalid(FieldError::new(
                        "/file",
                        "send one file per upload",
                    )));
                }
                let original = field.file_name().unwrap_or("").to_owned();
                let declared = field.content_type().map(str::to_owned);
                let path = tempfile::Builder::new()
                    .prefix("upload-")
                    .tempfile_in(staging)
                    .map_err(|e| ApiError::Internal(Box::new(e)))?
                    .into_temp_path();
                let mut out = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| ApiError::Internal(Box::new(e)))?;
                let mut hasher = Sha256::new();
                let mut size: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
                    size += chunk.len() as u64;
                    if size > limit {
                        return Err(ApiError::FileTooLarge { limit });
                    }
                    hasher.update(&chunk);
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| ApiError::Internal(Box::new(e)))?;
                }
                out.flush()
                    .await
                    .map_err(|e| ApiError::Internal(Box::new(e)))?;
                out.sync_all()
                    .await
                    .map_err(|e| ApiError::Internal(Box::new(e)))?;
                form.file = Some(Staged {
                    path,
                    name: waymark_files::sanitize_name(&original),
                    declared,
                    size,
                    sha256: hex::encode(hasher.finalize()),
                });
            }
            "client_id" | "engagement_id" | "artifact_id" => {
                let mut value = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
                    value.extend_from_slice(&chunk);
                    if value.len() > MAX_FIELD {
                        return Err(ApiError::invalid(FieldError::new(
                            format!("/{name}"),
                            "is too long for an id",
                        )));
                    }
                }
                let value = String::from_utf8(value)
                    .map_err(|_| {
                        ApiError::invalid(FieldError::new(format!("/{name}"), "must be text"))
                    })?
                    .trim()
                    .to_owned();
                let value = (!value.is_empty()).then_some(value);
                match name.as_str() {
                    "client_id" => form.client_id = value,
                    "engagement_id" => form.engagement_id = value,
                    _ => form.artifact_id = value,
                }
            }
            other => {
                return Err(ApiError::invalid(FieldError::new(
                    format!("/{}", other.chars().take(64).collect::<String>()),
                    "is not a field of an upload; send file, client_id, engagement_id or artifact_id",
                )));
            }
        }
    }
    Ok(form)
}

fn parse_field<T: std::str::FromStr>(
    value: &Option<String>,
    pointer: &str,
) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    value
        .as_deref()
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| ApiError::invalid(FieldError::new(pointer, e.to_string())))
        })
        .transpose()
}

/// Upload a file for a client (multipart: `file`, `client_id`, optionally
/// `engagement_id` or `artifact_id`). Its kind is decided from its bytes;
/// its text is extracted by a task of the engine.
#[utoipa::path(post, path = "/api/v1/files", tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileOut, description = "Stored; its text is being extracted"),
        (status = 200, body = FileOut, description = "The client already had these bytes"),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn upload_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, JsonOut<FileOut>), ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "{e}; upload a file as multipart/form-data with a `file` part"
        ))
    })?;
    let (status, out) = accept_upload(&state, &caller, &trace, multipart).await?;
    Ok((status, JsonOut(out)))
}

/// Reads an upload's form (after any fields the caller consumed first, such
/// as a page's CSRF token), checks and stores the file, and records it:
/// what `POST /api/v1/files` and the pages' upload forms do.
pub async fn accept_upload(
    state: &AppState,
    caller: &Caller,
    trace: &TraceId,
    multipart: Multipart,
) -> Result<(StatusCode, FileOut), ApiError> {
    require_person_or_team(caller)?;
    let blobs = blobs(state)?;
    let form = read_form(multipart, blobs.staging(), state.http.upload_limit).await?;
    let Some(staged) = form.file else {
        return Err(ApiError::invalid(FieldError::new(
            "/file",
            "is required: the file to upload",
        )));
    };
    let requested: Option<ClientId> = parse_field(&form.client_id, "/client_id")?;
    let client = match (caller.client_scope(), requested) {
        (Some(own), Some(c)) if c != own => return Err(not_found("client", c)),
        (Some(own), _) => own,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(ApiError::invalid(FieldError::new(
                "/client_id",
                "is required: the client the file belongs to (cli_...)",
            )));
        }
    };
    caller.check_client(client)?;
    let engagement_id: Option<EngagementId> = parse_field(&form.engagement_id, "/engagement_id")?;
    let artifact_id: Option<ArtifactId> = parse_field(&form.artifact_id, "/artifact_id")?;
    if let Some(a) = artifact_id
        && !caller.is_staff()
    {
        // A client user attaches files only to what they can see.
        let summary = state.store.get_artifact_summary(a).await;
        match summary {
            Ok(s) if caller.sees_artifact(&s) => {}
            _ => {
                return Err(ApiError::invalid(FieldError::new(
                    "/artifact_id",
                    format!("no artifact {a} of client {client}"),
                )));
            }
        }
    }
    if staged.size == 0 {
        return Err(ApiError::invalid(FieldError::new("/file", "is empty")));
    }
    // What the bytes are, whatever the name says.
    let kind = {
        let path = staged.path.to_path_buf();
        let name = staged.name.clone();
        let declared = staged.declared.clone();
        tokio::task::spawn_blocking(move || {
            waymark_files::detect(&path, &name, declared.as_deref())
        })
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
        .map_err(|refusal| ApiError::UnsupportedMediaType(refusal.to_string()))?
    };
    if let Some(existing) = state.store.file_by_hash(client, &staged.sha256).await? {
        return Ok((StatusCode::OK, FileOut::new(existing, true, None)));
    }
    let key = Blobs::key(client, &staged.sha256);
    let existed = blobs.exists(&key).await.map_err(blob_error)?;
    if !existed {
        blobs
            .put_file(&key, &staged.path)
            .await
            .map_err(blob_error)?;
    }
    drop(staged.path);
    let ctx = write_context(caller, trace)?;
    let new = NewFile {
        client_id: client,
        engagement_id,
        artifact_id,
        name: staged.name,
        kind: kind.as_str().to_owned(),
        mime: kind.mime().to_owned(),
        size: staged.size as i64,
        sha256: staged.sha256,
        storage_key: key.clone(),
        extract: kind.extractable(),
    };
    match state.store.create_file(new, &ctx).await {
        Ok(created) => {
            let status = if created.replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((
                status,
                FileOut::new(
                    created.record.file,
                    created.replayed,
                    created.record.unit_id,
                ),
            ))
        }
        Err(e) => {
            // Refused: leave no object that no row refers to.
            if !existed
                && !state.store.object_in_use(&key).await.unwrap_or(true)
                && let Err(err) = blobs.delete(&key).await
            {
                tracing::warn!(key, error = %err, "removing the object of a refused upload failed");
            }
            Err(e.into())
        }
    }
}

fn blob_error(e: waymark_engine::blobs::BlobError) -> ApiError {
    tracing::error!(error = %e, "object store");
    ApiError::Unavailable(waymark_store::StoreError::Refused {
        code: "file_storage_unavailable",
        detail: format!("{e}; try again later"),
    })
}

/// Filters of the file list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FileListParams {
    /// A client (cli_...); a client user sees only their own.
    #[param(pattern = "^cli_[0-9a-f]{32}$")]
    pub client_id: Option<String>,
    /// An engagement (eng_...).
    #[param(pattern = "^eng_[0-9a-f]{32}$")]
    pub engagement_id: Option<String>,
    /// An artifact (art_...).
    #[param(pattern = "^art_[0-9a-f]{32}$")]
    pub artifact_id: Option<String>,
    /// At most this many items, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^fil_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// Files, newest first.
#[utoipa::path(get, path = "/api/v1/files", tag = "files", params(FileListParams),
    responses((status = 200, body = Page<FileRecord>), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_files(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<FileListParams>,
) -> Result<JsonOut<Page<FileRecord>>, ApiError> {
    require_person_or_team(&caller)?;
    let page = PageParams {
        limit: p.limit,
        cursor: p.cursor.clone(),
    }
    .page()?;
    let mut filter = FileFilter {
        client_id: p
            .client_id
            .as_deref()
            .map(|v| query_id("client_id", v))
            .transpose()?,
        engagement_id: p
            .engagement_id
            .as_deref()
            .map(|v| query_id("engagement_id", v))
            .transpose()?,
        artifact_id: p
            .artifact_id
            .as_deref()
            .map(|v| query_id("artifact_id", v))
            .transpose()?,
    };
    if let Some(own) = caller.client_scope() {
        if filter.client_id.is_some_and(|c| c != own) {
            return Ok(JsonOut(Page {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
        filter.client_id = Some(own);
    } else if !caller.is_staff() {
        return Err(ApiError::Forbidden(
            "this token reaches no client's files".into(),
        ));
    }
    Ok(JsonOut(state.store.list_files(filter, page).await?))
}

/// A file's record.
#[utoipa::path(get, path = "/api/v1/files/{id}", tag = "files",
    params(("id" = String, Path, description = "A file id (fil_...)")),
    responses((status = 200, body = FileOut), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<FileOut>, ApiError> {
    let file = visible_file(&state, &caller, path_id(&id)?).await?;
    Ok(JsonOut(FileOut::new(file, false, None)))
}

/// A file's text, as extracted.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileText {
    #[schema(value_type = String)]
    pub file_id: FileId,
    pub status: FileStatus,
    /// Why it could not be read (`failed`).
    pub status_reason: Option<String>,
    pub error_code: Option<String>,
    /// The text (none until extracted, or when it could not be read).
    pub text: Option<String>,
    /// Whether the text was cut at the extraction's size budget.
    pub truncated: bool,
    pub pages: Option<i64>,
    /// Rows, columns, headers, column types and a sample, for tables.
    #[schema(value_type = Option<Object>)]
    pub table: Option<serde_json::Value>,
}

/// The text extracted from a file (`status` says whether it is there yet).
#[utoipa::path(get, path = "/api/v1/files/{id}/text", tag = "files",
    params(("id" = String, Path, description = "A file id (fil_...)")),
    responses((status = 200, body = FileText), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn file_text(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<FileText>, ApiError> {
    let file = visible_file(&state, &caller, path_id(&id)?).await?;
    let text = state.store.file_text(file.id).await?;
    Ok(JsonOut(FileText {
        file_id: file.id,
        status: file.status,
        status_reason: file.status_reason,
        error_code: file.error_code,
        text,
        truncated: file.text_truncated,
        pages: file.pages,
        table: file.table,
    }))
}

/// `attachment` with the name: an ASCII fallback and the UTF-8 name
/// (RFC 6266 / RFC 8187).
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// A file's bytes, with its media type and name.
#[utoipa::path(get, path = "/api/v1/files/{id}/content", tag = "files",
    params(("id" = String, Path, description = "A file id (fil_...)")),
    responses((status = 200, description = "The file's bytes, with the media type of its kind (text kinds in UTF-8)",
            content(("application/pdf"),
                ("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
                ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                ("text/csv"), ("text/plain"), ("text/markdown"), ("application/json"),
                ("image/png"), ("image/jpeg"))),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn file_content(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let file = visible_file(&state, &caller, path_id(&id)?).await?;
    let (size, stream) = blobs(&state)?
        .stream(&file.storage_key)
        .await
        .map_err(blob_error)?;
    let mime = match FileKind::parse(&file.kind) {
        Some(FileKind::Csv | FileKind::Text | FileKind::Markdown | FileKind::Json) => {
            format!("{}; charset=utf-8", file.mime)
        }
        _ => file.mime.clone(),
    };
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(&mime));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&file.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=0"),
    );
    Ok(res)
}

/// Delete a file (admins and operators): its record, its search entry, and
/// its bytes when nothing else refers to them.
#[utoipa::path(delete, path = "/api/v1/files/{id}", tag = "files",
    params(("id" = String, Path, description = "A file id (fil_...)")),
    responses((status = 204, description = "Deleted"), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let file = visible_file(&state, &caller, path_id(&id)?).await?;
    if !(caller.is_staff() && matches!(caller.role, Role::Admin | Role::Operator)) {
        return Err(ApiError::Forbidden(
            "only admins and operators delete files".into(),
        ));
    }
    let ctx = write_context(&caller, &trace)?;
    let (deleted, in_use) = state.store.delete_file(file.id, &ctx).await?;
    if !in_use
        && let Some(blobs) = &state.blobs
        && let Err(e) = blobs.delete(&deleted.storage_key).await
    {
        tracing::warn!(file = %deleted.id, error = %e, "removing a deleted file's bytes failed");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What to extract from a file.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractRequest {
    /// An artifact type of a pack (the file's engagement's pack, or the one
    /// pack that has it): the answer fits its schema and becomes an artifact.
    #[serde(rename = "type")]
    pub artifact_type: Option<String>,
    /// A JSON Schema to fill instead (the answer is returned, no artifact).
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    /// With `type`: write a new version of this artifact instead of creating one.
    pub artifact_id: Option<String>,
    /// With `type`: the new artifact's title (default: the type's title and the file's name).
    pub title: Option<String>,
}

/// What an extraction gave.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtractOut {
    #[schema(value_type = String)]
    pub file_id: FileId,
    /// The fields, as they fit the schema.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    /// Who filled them: `ollama:<model>`, `openai:<model>` or `template`.
    pub provenance: String,
    /// Answers the provider gave (a second one when the first did not fit).
    pub attempts: u32,
    /// Why the template answered instead of a provider, if it did.
    pub fallback: Option<String>,
    /// The artifact written (with `type`).
    #[schema(value_type = Option<Object>)]
    pub artifact: Option<waymark_store::Artifact>,
}

/// The type a `type` names for this file: from the file's engagement's pack,
/// else the one pack that has it.
async fn type_for(
    state: &AppState,
    file: &FileRecord,
    name: &str,
) -> Result<
    (
        std::sync::Arc<waymark_packs::Pack>,
        usize,
        Option<EngagementId>,
    ),
    ApiError,
> {
    if let Some(e) = file.engagement_id {
        let engagement = state.store.get_engagement(e).await?;
        let pack = waymark_engine::catalog::engagement_pack(&state.packs, &engagement.pack).await?;
        return match pack.types.iter().position(|t| t.name == name) {
            Some(i) => Ok((pack, i, Some(e))),
            None => Err(ApiError::invalid(FieldError::new(
                "/type",
                format!(
                    "the file's engagement uses pack {}, which has no type `{name}`; its types are {}",
                    pack.name,
                    pack.type_names().join(", ")
                ),
            ))),
        };
    }
    let mut found = Vec::new();
    for (pack, _) in state.packs.list().await? {
        if let Some(i) = pack.types.iter().position(|t| t.name == name) {
            found.push((pack.clone(), i));
        }
    }
    match found.len() {
        1 => {
            let (pack, i) = found.remove(0);
            Ok((pack, i, None))
        }
        0 => Err(ApiError::invalid(FieldError::new(
            "/type",
            format!("no pack has an artifact type `{name}`"),
        ))),
        _ => Err(ApiError::invalid(FieldError::new(
            "/type",
            format!(
                "several packs have a type `{name}`; attach the file to an engagement of the pack you mean"
            ),
        ))),
    }
}

/// Fill a schema from a file's text: a pack type's (`type`, e.g. `renewal`'s
/// `contract_analysis`: the answer becomes an artifact whose provenance is
/// the provider and whose `file_id` is the file) or one sent (`schema`). The
/// LLM's answer is checked against the schema and asked again once with the
/// errors; an answer that still does not fit is refused with them (422).
#[utoipa::path(post, path = "/api/v1/files/{id}/extract", tag = "files", request_body = ExtractRequest,
    params(("id" = String, Path, description = "A file id (fil_...)")),
    responses((status = 201, body = ExtractOut, description = "An artifact was written"),
        (status = 200, body = ExtractOut, description = "The fields of the schema sent"),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The file's text is not read (yet)"),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn extract_fields(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<serde_json::Value>,
) -> Result<(StatusCode, JsonOut<ExtractOut>), ApiError> {
    let file = visible_file(&state, &caller, path_id(&id)?).await?;
    caller.require_staff()?;
    let req: ExtractRequest = crate::extract::from_value(body)?;
    match file.status {
        FileStatus::Extracted => {}
        FileStatus::Extracting => {
            return Err(ApiError::Conflict {
                code: "text_not_ready",
                detail: format!(
                    "the text of file {} is still being read; try again when its status is `extracted`",
                    file.id
                ),
                allowed: None,
                extra: Box::default(),
            });
        }
        FileStatus::Failed | FileStatus::Stored => {
            return Err(ApiError::Conflict {
                code: "no_text",
                detail: format!(
                    "file {} has no text to extract fields from{}",
                    file.id,
                    file.status_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                allowed: None,
                extra: Box::default(),
            });
        }
    }
    let text = state.store.file_text(file.id).await?.unwrap_or_default();
    let mut fixed = serde_json::Map::new();
    match (&req.artifact_type, req.schema) {
        (Some(name), None) => {
            let (pack, index, engagement) = type_for(&state, &file, name).await?;
            let ty = &pack.types[index];
            if ty.schema.pointer("/properties/file_id").is_some() {
                fixed.insert("file_id".into(), file.id.to_string().into());
            }
            let check = |v: &serde_json::Value| ty.schema_errors(v, "/content");
            let guidance = ty.generator.as_ref().and_then(|g| g.prompt.as_deref());
            let filled = fill(&state, &ty.schema, &check, &text, &file, guidance, fixed).await?;
            let ctx = write_context(&caller, &trace)?;
            let artifact = match &req.artifact_id {
                Some(a) => {
                    let a: ArtifactId = a.parse().map_err(|e: waymark_domain::IdError| {
                        ApiError::invalid(FieldError::new("/artifact_id", e.to_string()))
                    })?;
                    let current = match state.store.get_artifact_summary(a).await {
                        Ok(s) if s.client_id == file.client_id && s.artifact_type == ty.name => s,
                        _ => {
                            return Err(ApiError::invalid(FieldError::new(
                                "/artifact_id",
                                format!("no {} artifact {a} of client {}", ty.name, file.client_id),
                            )));
                        }
                    };
                    let pipeline = current
                        .engagement_id
                        .map(|_| waymark_engine::catalog::pipeline_of(ty));
                    state
                        .store
                        .write_content(
                            a,
                            current.version,
                            waymark_store::NewVersion {
                                content: filled.content.clone(),
                                sources: None,
                                note: Some(format!(
                                    "Extracted from file {} ({})",
                                    file.name, file.id
                                )),
                                provenance: filled.provenance.clone(),
                                pipeline,
                            },
                            &ctx,
                        )
                        .await?;
                    state.store.get_artifact(a).await?
                }
                None => {
                    let title = match &req.title {
                        Some(t) => waymark_domain::artifact::parse_title(t, "/title")
                            .map_err(ApiError::invalid)?,
                        None => format!("{} of {}", ty.title, file.name)
                            .chars()
                            .take(200)
                            .collect(),
                    };
                    state
                        .store
                        .create_artifact(
                            waymark_store::NewArtifact {
                                client_id: file.client_id,
                                engagement_id: engagement,
                                artifact_type: ty.name.clone(),
                                title,
                                content: filled.content.clone(),
                                sources: None,
                                note: Some(format!(
                                    "Extracted from file {} ({})",
                                    file.name, file.id
                                )),
                                provenance: filled.provenance.clone(),
                                pipeline: engagement
                                    .map(|_| waymark_engine::catalog::pipeline_of(ty)),
                            },
                            &ctx,
                        )
                        .await?
                        .record
                }
            };
            Ok((
                StatusCode::CREATED,
                JsonOut(ExtractOut {
                    file_id: file.id,
                    content: filled.content,
                    provenance: filled.provenance,
                    attempts: filled.attempts,
                    fallback: filled.fallback,
                    artifact: Some(artifact),
                }),
            ))
        }
        (None, Some(schema)) => {
            if req.artifact_id.is_some() || req.title.is_some() {
                return Err(ApiError::invalid(FieldError::new(
                    "/artifact_id",
                    "artifact_id and title go with `type`; a `schema` answers its fields only",
                )));
            }
            let schema = waymark_packs::Schema::compile(schema)
                .map_err(|m| ApiError::invalid(FieldError::new("/schema", m)))?;
            let check = |v: &serde_json::Value| schema.errors(v, "/content");
            let filled = fill(&state, &schema.value, &check, &text, &file, None, fixed).await?;
            Ok((
                StatusCode::OK,
                JsonOut(ExtractOut {
                    file_id: file.id,
                    content: filled.content,
                    provenance: filled.provenance,
                    attempts: filled.attempts,
                    fallback: filled.fallback,
                    artifact: None,
                }),
            ))
        }
        _ => Err(ApiError::invalid(FieldError::new(
            "/type",
            "send either `type` (an artifact type of a pack) or `schema` (a JSON Schema), not both",
        ))),
    }
}

async fn fill(
    state: &AppState,
    schema: &serde_json::Value,
    check: &(dyn Fn(&serde_json::Value) -> Vec<FieldError> + Sync),
    text: &str,
    file: &FileRecord,
    guidance: Option<&str>,
    fixed: serde_json::Map<String, serde_json::Value>,
) -> Result<waymark_engine::fields::Filled, ApiError> {
    let req = waymark_engine::fields::FieldsRequest {
        schema,
        check,
        text,
        name: &file.name,
        guidance,
        fixed,
    };
    waymark_engine::fields::fill(&state.llm, &req)
        .await
        .map_err(|n| {
            let who = if n.provenance == "template" {
                match &n.fallback {
                    Some(why) => format!("the template provider (the LLM gave no answer: {why})"),
                    None => "the template provider (no LLM provider is configured)".to_owned(),
                }
            } else {
                format!(
                    "{} ({} answer{})",
                    n.provenance,
                    n.attempts,
                    if n.attempts == 1 { "" } else { "s" }
                )
            };
            ApiError::Invalid {
                detail: format!(
                    "the fields {who} read from the file do not fit the schema; see errors"
                ),
                errors: n.errors,
            }
        })
}
