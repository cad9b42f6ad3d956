//! [`ApiClient`]: a typed client of the Waymark HTTP API (`/api/v1`).
//!
//! Requests are typed structs that serialize to exactly the fields the server
//! accepts; responses come back as the server's JSON ([`serde_json::Value`]) so
//! that `--json` can print them unchanged and new fields need no client release.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, ETAG, HeaderMap, IF_MATCH};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{CliError, Problem};

/// A client of one Waymark server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// `POST /clients`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewClient {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arr: Option<serde_json::Number>,
    /// `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_score: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opportunity_score: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
}

/// `POST /engagements`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewEngagement {
    pub client_id: String,
    pub name: String,
    pub pack: String,
}

/// An input an artifact version was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRef {
    pub artifact_id: String,
    pub version: u64,
}

/// `POST /artifacts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewArtifact {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub content: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `PUT /artifacts/{id}/content`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContentUpdate {
    pub content: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Filters of `GET /artifacts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArtifactFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

/// `POST /users`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    /// `admin`, `operator` or `client`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `POST /tokens`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewToken {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Where a list starts and how long a page is; the server picks defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Page {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl ApiClient {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`),
    /// authenticating with `token` when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, CliError> {
        let base = Url::parse(base_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| {
                CliError::input(format!(
                    "--server: `{base_url}` is not an http(s) URL such as http://127.0.0.1:8080"
                ))
            })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("waymark-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| CliError::from_reqwest(base_url, err))?;
        Ok(Self { http, base, token })
    }

    /// The server this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    // Clients

    pub async fn create_client(&self, body: &NewClient) -> Result<Value, CliError> {
        self.json(self.request(Method::POST, &["clients"]).json(body))
            .await
    }

    pub async fn list_clients(&self, page: &Page) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["clients"]).query(page))
            .await
    }

    pub async fn get_client(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["clients", id])).await
    }

    // Engagements

    pub async fn create_engagement(&self, body: &NewEngagement) -> Result<Value, CliError> {
        self.json(self.request(Method::POST, &["engagements"]).json(body))
            .await
    }

    pub async fn list_engagements(
        &self,
        client_id: Option<&str>,
        page: &Page,
    ) -> Result<Value, CliError> {
        let mut req = self.request(Method::GET, &["engagements"]);
        if let Some(client_id) = client_id {
            req = req.query(&[("client_id", client_id)]);
        }
        self.json(req.query(page)).await
    }

    pub async fn get_engagement(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["engagements", id]))
            .await
    }

    pub async fn get_plan(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["engagements", id, "plan"]))
            .await
    }

    /// `mode`: `next` or `all_ready`.
    pub async fn run_plan(&self, id: &str, mode: &str) -> Result<Value, CliError> {
        self.json(
            self.request(Method::POST, &["engagements", id, "plan", "run"])
                .json(&serde_json::json!({ "mode": mode })),
        )
        .await
    }

    pub async fn get_unit(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["work", "units", id]))
            .await
    }

    // Delivery

    /// `GET /engagements/{id}/delivery`: the manifest, blockers, analytics, exports.
    pub async fn get_delivery(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["engagements", id, "delivery"]))
            .await
    }

    /// `POST /engagements/{id}/exports`: builds an export (409 with the
    /// blockers while something blocks the delivery).
    pub async fn create_export(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::POST, &["engagements", id, "exports"]))
            .await
    }

    /// Downloads export `export_id` of engagement `id` into `out` (through
    /// `<out>.part`, renamed once complete), calling `progress(done, total)`
    /// as bytes arrive. Answers the bytes written and their SHA-256 (hex).
    pub async fn download_export(
        &self,
        id: &str,
        export_id: &str,
        out: &std::path::Path,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<(u64, String), CliError> {
        use sha2::{Digest, Sha256};
        use tokio::io::AsyncWriteExt;
        let server = self.base.as_str().trim_end_matches('/');
        let mut resp = self
            .request(Method::GET, &["engagements", id, "exports", export_id])
            .send()
            .await
            .map_err(|err| CliError::from_reqwest(server, err))?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let text = resp
                .text()
                .await
                .map_err(|err| CliError::from_reqwest(server, err))?;
            return Err(api_error(status, &headers, text));
        }
        let total = resp.content_length();
        let part = {
            let mut name = out.as_os_str().to_owned();
            name.push(".part");
            std::path::PathBuf::from(name)
        };
        let mut file = tokio::fs::File::create(&part).await?;
        let mut hash = Sha256::new();
        let mut done = 0u64;
        progress(0, total);
        let written: Result<(), CliError> = async {
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|err| CliError::from_reqwest(server, err))?
            {
                file.write_all(&chunk).await?;
                hash.update(&chunk);
                done += chunk.len() as u64;
                progress(done, total);
            }
            file.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        drop(file);
        tokio::fs::rename(&part, out).await?;
        Ok((done, format!("{:x}", hash.finalize())))
    }

    // Artifacts

    pub async fn create_artifact(&self, body: &NewArtifact) -> Result<Value, CliError> {
        self.json(self.request(Method::POST, &["artifacts"]).json(body))
            .await
    }

    pub async fn list_artifacts(
        &self,
        filter: &ArtifactFilter,
        page: &Page,
    ) -> Result<Value, CliError> {
        let req = self
            .request(Method::GET, &["artifacts"])
            .query(filter)
            .query(page);
        self.json(req).await
    }

    /// The latest version of an artifact.
    pub async fn get_artifact(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &["artifacts", id]))
            .await
    }

    /// The artifact's current version: the `ETag` of `GET /artifacts/{id}`
    /// (falling back to the body's `version`), to send as `If-Match`.
    pub async fn current_version(&self, id: &str) -> Result<u64, CliError> {
        let (body, headers) = self
            .send(self.request(Method::GET, &["artifacts", id]))
            .await?;
        headers
            .get(ETAG)
            .and_then(|etag| etag.to_str().ok())
            .and_then(parse_etag)
            .or_else(|| body["version"].as_u64())
            .ok_or_else(|| {
                CliError::UnexpectedResponse(format!("artifact {id} came without a version"))
            })
    }

    /// Writes new content as the next version, if the artifact is still at `if_match`.
    pub async fn update_content(
        &self,
        id: &str,
        if_match: u64,
        body: &ContentUpdate,
    ) -> Result<Value, CliError> {
        let req = self
            .request(Method::PUT, &["artifacts", id, "content"])
            .header(IF_MATCH, etag(if_match))
            .json(body);
        self.json(req).await
    }

    pub async fn list_versions(&self, id: &str, page: &Page) -> Result<Value, CliError> {
        let req = self
            .request(Method::GET, &["artifacts", id, "versions"])
            .query(page);
        self.json(req).await
    }

    pub async fn get_version(&self, id: &str, version: u64) -> Result<Value, CliError> {
        let version = version.to_string();
        self.json(self.request(Method::GET, &["artifacts", id, "versions", &version]))
            .await
    }

    /// The RFC 6902 patch turning version `from` into version `to`.
    pub async fn diff(&self, id: &str, from: u64, to: u64) -> Result<Value, CliError> {
        let req = self
            .request(Method::GET, &["artifacts", id, "diff"])
            .query(&[("from", from), ("to", to)]);
        self.json(req).await
    }

    /// Makes the content of `to_version` the next version, if still at `if_match`.
    pub async fn rollback(
        &self,
        id: &str,
        to_version: u64,
        if_match: u64,
    ) -> Result<Value, CliError> {
        let req = self
            .request(Method::POST, &["artifacts", id, "rollback"])
            .header(IF_MATCH, etag(if_match))
            .json(&json!({ "to_version": to_version }));
        self.json(req).await
    }

    /// Moves the artifact to status `to` (e.g. `in_review`).
    pub async fn transition(
        &self,
        id: &str,
        to: &str,
        reason: Option<&str>,
        override_policy: bool,
    ) -> Result<Value, CliError> {
        let mut body = json!({ "to": to });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        if override_policy {
            body["override"] = json!(true);
        }
        let req = self
            .request(Method::POST, &["artifacts", id, "transitions"])
            .json(&body);
        self.json(req).await
    }

    pub async fn history(&self, id: &str, page: &Page) -> Result<Value, CliError> {
        let req = self
            .request(Method::GET, &["artifacts", id, "history"])
            .query(page);
        self.json(req).await
    }

    // People and tokens

    pub async fn create_user(&self, body: &NewUser) -> Result<Value, CliError> {
        self.json(self.request(Method::POST, &["users"]).json(body))
            .await
    }

    pub async fn list_users(
        &self,
        client_id: Option<&str>,
        role: Option<&str>,
        page: &Page,
    ) -> Result<Value, CliError> {
        let mut req = self.request(Method::GET, &["users"]);
        if let Some(client_id) = client_id {
            req = req.query(&[("client_id", client_id)]);
        }
        if let Some(role) = role {
            req = req.query(&[("role", role)]);
        }
        self.json(req.query(page)).await
    }

    /// Makes a token; the answer holds its secret, shown this once.
    pub async fn create_token(&self, body: &NewToken) -> Result<Value, CliError> {
        self.json(self.request(Method::POST, &["tokens"]).json(body))
            .await
    }

    pub async fn list_tokens(&self, user_id: Option<&str>, page: &Page) -> Result<Value, CliError> {
        let mut req = self.request(Method::GET, &["tokens"]);
        if let Some(user_id) = user_id {
            req = req.query(&[("user_id", user_id)]);
        }
        self.json(req.query(page)).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::DELETE, &["tokens", id]))
            .await
    }

    // Plumbing

    /// A request to `/api/v1/<segments>`, each segment percent-encoded.
    /// `GET /api/v1/<segments>?<query>`.
    pub async fn get_json(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, segments).query(query))
            .await
    }

    /// `<method> /api/v1/<segments>` with a JSON body (`Null` when the
    /// answer has none, e.g. 204).
    pub async fn send_json(
        &self,
        method: Method,
        segments: &[&str],
        body: &Value,
    ) -> Result<Value, CliError> {
        self.json(self.request(method, segments).json(body)).await
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        let req = self.http.request(method, url);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    async fn json(&self, req: RequestBuilder) -> Result<Value, CliError> {
        Ok(self.send(req).await?.0)
    }

    /// Sends the request; a non-success status becomes [`CliError::Api`].
    async fn send(&self, req: RequestBuilder) -> Result<(Value, HeaderMap), CliError> {
        let server = self.base.as_str().trim_end_matches('/');
        let resp = req
            .send()
            .await
            .map_err(|err| CliError::from_reqwest(server, err))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|err| CliError::from_reqwest(server, err))?;
        if !status.is_success() {
            return Err(api_error(status, &headers, text));
        }
        if text.trim().is_empty() {
            return Ok((Value::Null, headers));
        }
        let body = serde_json::from_str(&text).map_err(|err| {
            CliError::UnexpectedResponse(format!("{status} with a body that is not JSON: {err}"))
        })?;
        Ok((body, headers))
    }
}

/// A refusal: its problem details when the server sent them.
fn api_error(status: reqwest::StatusCode, headers: &HeaderMap, text: String) -> CliError {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let problem = is_json
        .then(|| serde_json::from_str::<Box<Problem>>(&text).ok())
        .flatten();
    CliError::Api {
        status,
        problem,
        body: text,
    }
}

/// `3` → `"3"`, the entity tag of version 3.
fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// `"3"` (or `W/"3"`) → 3.
fn parse_etag(value: &str) -> Option<u64> {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip() {
        assert_eq!(parse_etag(&etag(7)), Some(7));
        assert_eq!(parse_etag("W/\"12\""), Some(12));
        assert_eq!(parse_etag("\"abc\""), None);
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_ids() {
        crate::tests::install_crypto();
        let api = ApiClient::new("http://example.test/waymark/", None).unwrap();
        let req = api
            .request(Method::GET, &["artifacts", "a/b"])
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://example.test/waymark/api/v1/artifacts/a%2Fb"
        );
    }

    #[test]
    fn rejects_a_server_that_is_not_a_url() {
        crate::tests::install_crypto();
        let err = ApiClient::new("localhost:8080", None).unwrap_err();
        assert!(err.to_string().contains("--server"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn optional_fields_are_not_sent() {
        let body = serde_json::to_value(NewArtifact {
            client_id: "cli_1".into(),
            kind: "strategy".into(),
            title: "Plan".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            body,
            json!({"client_id": "cli_1", "type": "strategy", "title": "Plan", "content": {}})
        );
    }
}
