//! The pages' static files, embedded in the binary: the stylesheet and one
//! small script of our own (live updates over the event stream; every page
//! works without it). Served with an `ETag` so browsers revalidate cheaply.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const FILES: &[Asset] = &[
    Asset {
        name: "waymark.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/waymark.css"),
    },
    Asset {
        name: "waymark.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/waymark.js"),
    },
];

/// Each file's `ETag`, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|f| format!("\"{}\"", &hex::encode(Sha256::digest(f.body))[..16]))
        .collect()
});

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|f| f.name == name) else {
        return super::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such file.".into(),
        );
    };
    let etag = &ETAGS[i];
    let cache = HeaderValue::from_static("public, max-age=300");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response();
    }
    let mut res = FILES[i].body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(FILES[i].content_type),
    );
    h.insert(header::CACHE_CONTROL, cache);
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    res
}
