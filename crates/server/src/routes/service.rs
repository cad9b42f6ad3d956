//! Service endpoints: health, readiness, version.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Build information.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildInfo {
    pub version: String,
    pub git_sha: String,
    pub build_time: String,
}

/// The server's version, git sha and build time.
#[utoipa::path(get, path = "/api/v1/version", tag = "service",
    responses((status = 200, body = BuildInfo)), security(("bearer" = [])))]
pub async fn version(State(state): State<AppState>) -> Json<BuildInfo> {
    Json(BuildInfo::clone(&state.build))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        database: None,
        backend: None,
    })
}

/// How long `/readyz` waits for the database.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: the database answers (within two seconds).
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let backend = Some(state.store.backend().as_str());
    // Promptly: a database that does not answer within READY_WITHIN is not
    // ready, whatever the pool would wait for.
    let ping = tokio::time::timeout(READY_WITHIN, state.store.ping()).await;
    match ping
        .map_err(|_| "no answer within 2 s".to_owned())
        .and_then(|r| r.map_err(|e| crate::error::error_chain(&e).to_string()))
    {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                database: Some("ok"),
                backend,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    database: Some("unreachable"),
                    backend,
                }),
            )
        }
    }
}
