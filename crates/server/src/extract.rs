//! Extractors whose rejections are problem details: JSON bodies, queries, ids in
//! paths and the `If-Match` header.

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use waymark_domain::IdError;

use crate::error::ApiError;

/// A JSON body. Malformed JSON is a 400, a body of the wrong shape (unknown
/// fields, wrong types, missing fields) a 422 naming the field, a body over the
/// limit a 413, a body that is not JSON a 415.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::BytesRejection(e), limit))?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            // JSON Schema's integers include `54.0`: read integral numbers as
            // integers, then try again.
            Err(JsonRejection::JsonDataError(e))
                if e.body_text().contains("invalid type: floating point") =>
            {
                let mut value: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?;
                integral_numbers_as_integers(&mut value);
                from_value(value).map(Json)
            }
            Err(rejection) => Err(json_rejection(rejection, limit)),
        }
    }
}

/// An optional JSON body (`Option<Json<T>>`): none when the request has no
/// body at all; otherwise as [`Json`].
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers();
        let empty = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
            || (headers.get(axum::http::header::CONTENT_LENGTH).is_none()
                && headers.get(axum::http::header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(None);
        }
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Whether the body is declared JSON: `application/json` or `application/*+json`.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
}

fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType(
        "send the body as JSON with `Content-Type: application/json`".into(),
    )
}

/// Numbers with no fraction written as floats (`54.0`) become integers
/// (`54`), as JSON Schema counts them; others are left as they are.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f >= i64::MIN as f64
                && f < i64::MAX as f64
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// A JSON body that may be left out: a request without one reads as `{}`.
pub struct MaybeJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MaybeJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers();
        let empty = !headers.contains_key(axum::http::header::TRANSFER_ENCODING)
            && headers
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if empty {
            return from_value(serde_json::json!({})).map(MaybeJson);
        }
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| MaybeJson(v))
    }
}

/// The body limit in force, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: <path>: <msg>"
            let text = e.body_text();
            let inner = text
                .split_once("target type: ")
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or(text);
            let (pointer, message) = match inner.split_once(": ") {
                Some((path, msg)) if !path.contains(' ') => (to_pointer(path), msg.to_owned()),
                _ => (String::new(), inner.clone()),
            };
            ApiError::Invalid {
                detail: format!("the request body does not fit: {inner}"),
                errors: vec![waymark_domain::FieldError::new(pointer, message)],
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => not_json(),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit }
        }
        other => ApiError::bad_request("unreadable_body", other.body_text()),
    }
}

/// serde's path `a.b[2].c` as a JSON Pointer `/a/b/2/c`.
fn to_pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::new();
    for part in path.split('.') {
        let mut rest = part;
        while !rest.is_empty() {
            if let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                out.push('/');
                out.push_str(&stripped[..end]);
                rest = stripped.get(end + 1..).unwrap_or("");
            } else {
                let end = rest.find('[').unwrap_or(rest.len());
                out.push('/');
                out.push_str(&rest[..end].replace('~', "~0").replace('/', "~1"));
                rest = &rest[end..];
            }
        }
    }
    out
}

/// Reads a JSON value (taken whole, e.g. to hash it for idempotency) as `T`,
/// with the same 422 as [`Json`] when it does not fit.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::Invalid {
            detail: if path == "." {
                format!("the request body does not fit: {message}")
            } else {
                format!("the request body does not fit: {path}: {message}")
            },
            errors: vec![waymark_domain::FieldError::new(to_pointer(&path), message)],
        }
    })
}

/// A query string; a value of the wrong type is a 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| {
                let text = e.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_owned();
                ApiError::bad_request("invalid_query", format!("invalid query string: {text}"))
            })
    }
}

/// Parses an id taken from a path. An id of another kind, or no id at all,
/// names no record here: 404, saying why.
pub fn path_id<T: FromStr<Err = IdError>>(value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|e: IdError| ApiError::NotFound(e.to_string()))
}

/// Parses an id given as a query parameter (a filter): 400 when malformed.
pub fn query_id<T: FromStr<Err = IdError>>(name: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|e: IdError| ApiError::bad_request("invalid_query", format!("{name}: {e}")))
}

/// The version named by `If-Match: "<version>"`. Missing: 428.
pub struct IfMatch(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Err(ApiError::PreconditionRequired(
                "this write needs `If-Match: \"<version>\"` with the version you read (the ETag of GET /api/v1/artifacts/{id})".into(),
            ));
        };
        let text = value.to_str().unwrap_or("").trim();
        let unquoted = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        match unquoted.parse::<i64>() {
            Ok(v) if v >= 1 => Ok(IfMatch(v)),
            _ => Err(ApiError::bad_request(
                "invalid_if_match",
                format!(
                    "If-Match must be a version in quotes, like \"3\"; got `{}`",
                    text.chars().take(40).collect::<String>()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_pointer;

    #[test]
    fn serde_paths_become_pointers() {
        assert_eq!(to_pointer("title"), "/title");
        assert_eq!(to_pointer("sources[1].version"), "/sources/1/version");
        assert_eq!(to_pointer("."), "");
        assert_eq!(to_pointer("a/b"), "/a~1b");
    }
}
