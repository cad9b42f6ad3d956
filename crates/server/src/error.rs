//! `ApiError`: every error the API answers, rendered as RFC 9457
//! `application/problem+json` with a stable snake_case `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use waymark_domain::FieldError;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_engine::EngineError;
use waymark_store::StoreError;

/// An RFC 9457 problem detail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:waymark:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The HTTP status text.
    pub title: String,
    pub status: u16,
    /// What went wrong and, where possible, what to do next.
    pub detail: String,
    /// Stable machine-readable code, e.g. `version_mismatch`.
    pub code: String,
    /// Field errors, each with a JSON Pointer into the request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// Statuses an artifact may move to, on a refused transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<ArtifactStatus>>,
    /// Further members specific to the problem (`current_version`...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, Value>,
}

/// One field error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemField {
    /// JSON Pointer to the field, e.g. `/content/title`.
    pub pointer: String,
    pub message: String,
}

/// An error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: no such record (or one the caller may not see).
    #[error("{0}")]
    NotFound(String),
    /// 400: the request is malformed (bad JSON, bad query, bad header).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 422: well-formed but invalid fields.
    #[error("{detail}")]
    Invalid {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 401: no usable token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 429: too many attempts; try again after `retry_after` seconds.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// 412: `If-Match` names a version that is no longer current.
    #[error("the artifact is at version {current}, not {expected}")]
    VersionMismatch { expected: i64, current: i64 },
    /// 428: a write that needs `If-Match` came without it.
    #[error("{0}")]
    PreconditionRequired(String),
    /// 409: the state of the record does not allow this.
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: String,
        allowed: Option<Vec<ArtifactStatus>>,
        extra: Box<serde_json::Map<String, Value>>,
    },
    /// 422: an `Idempotency-Key` sent again with another request.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// 413: the body is larger than the limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 413: an uploaded file is larger than the upload limit.
    #[error("the file is larger than the upload limit of {} bytes ({} MiB); split it or ask an admin to raise upload_limit", .limit, .limit / (1024 * 1024))]
    FileTooLarge { limit: u64 },
    /// 414: the URI is longer than the API reads.
    #[error(
        "the request's URI is {length} bytes, over the limit of {limit}; send long values in a request body, or a shorter cursor or id"
    )]
    UriTooLong { length: usize, limit: usize },
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 405: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 503: the database is unavailable (or its disk is full); answered
    /// with `Retry-After`.
    #[error("the database is unavailable; try again shortly")]
    Unavailable(#[source] StoreError),
    /// 500: a bug or an unexpected failure; logged, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn invalid(error: FieldError) -> Self {
        ApiError::Invalid {
            detail: format!("invalid field {}: {}", error.pointer, error.message),
            errors: vec![error],
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } | ApiError::IdempotencyKeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } | ApiError::FileTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Invalid { .. } => "invalid",
            ApiError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "too_many_attempts",
            ApiError::VersionMismatch { .. } => "version_mismatch",
            ApiError::PreconditionRequired(_) => "if_match_required",
            ApiError::Conflict { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::FileTooLarge { .. } => "file_too_large",
            ApiError::UriTooLong { .. } => "uri_too_long",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unavailable(StoreError::Full(_)) => "storage_full",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem document this error renders as.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let mut extra = serde_json::Map::new();
        let mut allowed = None;
        let mut errors = vec![];
        match self {
            ApiError::Invalid { errors: e, .. } => {
                errors = e
                    .iter()
                    .map(|f| ProblemField {
                        pointer: f.pointer.clone(),
                        message: f.message.clone(),
                    })
                    .collect();
            }
            ApiError::VersionMismatch { current, .. } => {
                extra.insert("current_version".into(), (*current).into());
            }
            ApiError::Conflict {
                allowed: a,
                extra: x,
                ..
            } => {
                allowed = a.clone();
                extra = (**x).clone();
            }
            _ => {}
        }
        let detail = match self {
            ApiError::VersionMismatch { .. } => format!(
                "{self}; read the artifact again (its ETag is the current version) and retry with that If-Match"
            ),
            ApiError::Unavailable(StoreError::Full(_)) => "the database's disk is full, so \
                nothing was written; reads go on working. Free space on the data folder's disk \
                (or grow it) and retry"
                .to_owned(),
            _ => self.to_string(),
        };
        Problem {
            problem_type: format!("urn:waymark:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
            errors,
            allowed,
            extra,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %error_chain(e.as_ref()), "request failed")
            }
            ApiError::Unavailable(e) => {
                tracing::error!(error = %error_chain(e), "database unavailable")
            }
            _ => {}
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Seconds a 503 asks the client to wait before retrying.
const UNAVAILABLE_RETRY_AFTER: u32 = 2;

pub use waymark_engine::error_chain;

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::Invalid { detail, errors } => ApiError::Invalid { detail, errors },
            EngineError::Refused {
                code,
                detail,
                extra,
            } => ApiError::Conflict {
                code,
                detail,
                allowed: None,
                extra: Box::new(extra),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::VersionMismatch { expected, current } => {
                ApiError::VersionMismatch { expected, current }
            }
            StoreError::Transition(t) => {
                let mut extra = serde_json::Map::new();
                extra.insert("from".into(), t.from.as_str().into());
                extra.insert("to".into(), t.to.as_str().into());
                ApiError::Conflict {
                    code: "illegal_transition",
                    detail: t.to_string(),
                    allowed: Some(t.allowed),
                    extra: Box::new(extra),
                }
            }
            StoreError::NotEditable(n) => {
                let mut extra = serde_json::Map::new();
                extra.insert("artifact_status".into(), n.status.as_str().into());
                ApiError::Conflict {
                    code: "not_editable",
                    detail: n.to_string(),
                    allowed: None,
                    extra: Box::new(extra),
                }
            }
            StoreError::Invalid(f) => ApiError::invalid(f),
            StoreError::Gated(g) => {
                let mut extra = serde_json::Map::new();
                extra.insert(
                    "artifact_type".into(),
                    Value::String(g.artifact_type.clone()),
                );
                extra.insert("reasons".into(), serde_json::json!(g.reasons));
                ApiError::Conflict {
                    code: "gated",
                    detail: format!(
                        "{} is locked until its inputs are approved: {}",
                        g.artifact_type,
                        g.reasons.join(", ")
                    ),
                    allowed: None,
                    extra: Box::new(extra),
                }
            }
            StoreError::IdempotencyMismatch { .. } => {
                ApiError::IdempotencyKeyReused(format!("{e}; use a new key for a new request"))
            }
            StoreError::Conflict(_) => ApiError::Conflict {
                code: "conflict",
                detail: e.to_string(),
                allowed: None,
                extra: Default::default(),
            },
            StoreError::Review(r) => {
                use waymark_domain::review::ReviewError as R;
                let code = match &r {
                    R::NotInReview { .. } => "not_in_review",
                    R::NotLatest { .. } => "not_latest_version",
                    R::HashMismatch { .. } => "content_hash_mismatch",
                    R::NotEligible { .. } => "not_eligible",
                    R::OwnWork => "own_work",
                    R::AlreadyApproved => "already_approved",
                };
                let mut extra = serde_json::Map::new();
                match &r {
                    R::NotLatest { latest, .. } => {
                        extra.insert("latest_version".into(), (*latest).into());
                    }
                    R::NotInReview { status } => {
                        extra.insert("artifact_status".into(), status.as_str().into());
                    }
                    _ => {}
                }
                let status_forbidden = matches!(r, R::NotEligible { .. } | R::OwnWork);
                if status_forbidden {
                    ApiError::Forbidden(r.to_string())
                } else {
                    ApiError::Conflict {
                        code,
                        detail: r.to_string(),
                        allowed: None,
                        extra: Box::new(extra),
                    }
                }
            }
            StoreError::Refused { code, detail } => ApiError::Conflict {
                code,
                detail,
                allowed: None,
                extra: Default::default(),
            },
            StoreError::Unavailable(_) | StoreError::Full(_) => ApiError::Unavailable(e),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}
