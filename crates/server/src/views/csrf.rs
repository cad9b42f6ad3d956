//! Cross-site request forgery: every form carries a token derived from a
//! random cookie of the browser (`waymark_csrf`, HttpOnly, SameSite=Strict)
//! under a server key, and every form post must bring both. A page from another
//! site can neither read the cookie nor compute the token, and browsers say
//! where a request came from (`Sec-Fetch-Site`), which is checked too.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::PageError;
use crate::AppState;
use crate::extract::BodyLimit;

/// The cookie the token is derived from.
pub const COOKIE: &str = "waymark_csrf";
/// The form field that carries the token.
pub const FIELD: &str = "csrf";

/// The browser's CSRF cookie, placed in the request by [`ensure_cookie`].
#[derive(Debug, Clone)]
pub struct CsrfCookie(pub String);

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Middleware for the pages: makes sure the browser has a CSRF cookie, setting
/// a new one on the response when it had none.
pub async fn ensure_cookie(mut req: Request, next: Next) -> Response {
    let existing = cookie_value(req.headers(), COOKIE)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    let fresh = existing.is_none();
    let value = existing.unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    req.extensions_mut().insert(CsrfCookie(value.clone()));
    let mut res = next.run(req).await;
    if fresh
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/"
        ))
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The token forms carry for this cookie.
pub fn token(key: &[u8], cookie: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"csrf\0");
    mac.update(cookie.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A form post (`application/x-www-form-urlencoded`) whose CSRF token was
/// checked; refused with a page saying to reload otherwise.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let forged = || {
            PageError::Forbidden(
                "This form has expired or did not come from this site. Reload the page and try again."
                    .into(),
            )
        };
        if req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err(forged());
        }
        let cookie = req
            .extensions()
            .get::<CsrfCookie>()
            .map(|c| c.0.clone())
            .filter(|_| cookie_value(req.headers(), COOKIE).is_some())
            .ok_or_else(forged)?;
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(1 << 20);
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                PageError::BadRequest("The form is larger than this server accepts.".into())
            })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| PageError::BadRequest("The form could not be read.".into()))?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == FIELD)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let key = state.link_key().await.map_err(PageError::from)?;
        let expected = token(&key, &cookie);
        if !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
            return Err(forged());
        }
        serde_urlencoded::from_bytes(&body)
            .map(Form)
            .map_err(|e| PageError::BadRequest(format!("The form is incomplete: {e}.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_key_and_the_cookie() {
        let t = token(b"k", "c");
        assert_eq!(t.len(), 64);
        assert_eq!(t, token(b"k", "c"));
        assert_ne!(t, token(b"k2", "c"));
        assert_ne!(t, token(b"k", "c2"));
    }

    #[test]
    fn cookies_are_read_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; waymark_csrf=abc"),
        );
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "b"), None);
    }
}
