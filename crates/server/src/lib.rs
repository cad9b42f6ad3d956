//! Waymark's HTTP API.
//!
//! [`router`] builds the whole application: `/api/v1` (bearer token required),
//! the service endpoints, the OpenAPI document and its docs page. [`serve`] runs
//! it on a listener until a shutdown signal, letting in-flight requests finish.
//!
//! Request flow: `observe` (trace id, log line, metrics) → body limit →
//! `require_token` (for `/api/v1`) → handler in [`routes`] (parse, call the
//! store, render) → [`ApiError`] renders any failure as problem+json.

pub mod auth;
pub mod clock;
pub mod error;
pub mod extract;
pub mod facts;
pub mod listener;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod views;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_engine::catalog::PackCatalog;
use waymark_store::Store;

pub use error::ApiError;
pub use routes::service::BuildInfo;

use extract::BodyLimit;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The address people reach this server at, for links in mail and review
    /// links (`http://127.0.0.1:8080`); also the `source` of events.
    pub public_url: String,
    /// Largest uploaded file accepted, in bytes.
    pub upload_limit: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            public_url: "http://127.0.0.1:8080".into(),
            upload_limit: 50 * 1024 * 1024,
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub http: Arc<HttpSettings>,
    pub build: Arc<BuildInfo>,
    pub metrics: PrometheusHandle,
    /// Built-in and installed packs.
    pub packs: Arc<PackCatalog>,
    /// Bumped after every accepted change, so event streams and deliveries wake
    /// at once instead of polling.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The key review links are signed with, loaded from the database once.
    link_key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    /// What never changes about artifacts and engagements, remembered.
    pub facts: Arc<facts::Facts>,
    /// The LLM provider playbook conversations ask (none: the template
    /// provider answers).
    pub llm: waymark_llm::Llm,
    /// Where "now" comes from (the queue's snoozes and due dates).
    pub clock: clock::Clock,
    /// Where uploaded files are kept (none: uploads answer 503).
    pub blobs: Option<waymark_engine::blobs::Blobs>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, http: HttpSettings, build: BuildInfo) -> Self {
        Self {
            packs: Arc::new(PackCatalog::new(store.clone())),
            store,
            http: Arc::new(http),
            build: Arc::new(build),
            metrics: observe::prometheus(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            link_key: Arc::new(tokio::sync::OnceCell::new()),
            facts: Arc::new(facts::Facts::default()),
            llm: waymark_llm::Llm::new(None),
            clock: clock::Clock::system(),
            blobs: None,
        }
    }

    /// With the object store of uploaded files.
    pub fn with_blobs(mut self, blobs: waymark_engine::blobs::Blobs) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// With the LLM provider conversations ask.
    pub fn with_llm(mut self, llm: waymark_llm::Llm) -> Self {
        self.llm = llm;
        self
    }

    /// With a clock of its own (tests).
    pub fn with_clock(mut self, clock: clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The key review links are signed with (shared by every server through the
    /// database).
    pub async fn link_key(&self) -> Result<Vec<u8>, ApiError> {
        let key = self
            .link_key
            .get_or_try_init(|| self.store.server_key(auth::LINK_KEY))
            .await?;
        Ok(key.clone())
    }

    /// Wakes whoever waits for changes (event streams, deliveries).
    pub fn notify_change(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The `/api/v1` routes with their OpenAPI descriptions.
fn api_routes() -> OpenApiRouter<AppState> {
    use routes::{artifacts, clients, engagements, packs, pipelines, service};
    OpenApiRouter::new()
        .merge(routes::people::routes())
        .merge(routes::review::routes())
        .merge(routes::events::routes())
        .merge(routes::webhooks::routes())
        .merge(routes::work::routes())
        .merge(routes::journeys::routes())
        .merge(routes::desk::routes())
        .merge(routes::files::routes())
        .merge(routes::delivery::routes())
        .merge(routes::playbooks::routes())
        .merge(routes::search::routes())
        .routes(routes!(service::version))
        .routes(routes!(clients::create_client, clients::list_clients))
        .routes(routes!(clients::get_client, clients::update_client))
        .routes(routes!(
            engagements::create_engagement,
            engagements::list_engagements
        ))
        .routes(routes!(engagements::get_engagement))
        .routes(routes!(
            artifacts::create_artifact,
            artifacts::list_artifacts
        ))
        .routes(routes!(artifacts::get_artifact))
        .routes(routes!(artifacts::write_content))
        .routes(routes!(artifacts::list_versions))
        .routes(routes!(artifacts::get_version))
        .routes(routes!(artifacts::diff_versions))
        .routes(routes!(artifacts::rollback))
        .routes(routes!(artifacts::transition))
        .routes(routes!(artifacts::history))
        .routes(routes!(artifacts::lineage))
        .routes(routes!(artifacts::validate))
        .routes(routes!(packs::list_packs, packs::install_pack))
        .routes(routes!(packs::get_pack))
        .routes(routes!(pipelines::gating))
        .routes(routes!(pipelines::board))
        .routes(routes!(pipelines::get_plan, pipelines::save_plan))
        .routes(routes!(pipelines::run_plan))
}

/// The `/api/v1` routes that need no token (signing in).
fn public_api_routes() -> OpenApiRouter<AppState> {
    routes::people::public_routes()
}

/// The OpenAPI document of the API, completed with the refusals every route
/// shares (see [`openapi::complete`]).
pub fn openapi_document() -> serde_json::Value {
    let (_, api) = OpenApiRouter::with_openapi(openapi::base())
        .merge(api_routes())
        .merge(public_api_routes())
        .routes(routes!(routes::service::healthz))
        .routes(routes!(routes::service::readyz))
        .split_for_parts();
    openapi::complete(&api)
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let api = api
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            notify_changes,
        ));
    let (public_api, _) = public_api_routes().split_for_parts();
    let document = openapi_document();
    let limit = state.http.body_limit;
    Router::new()
        .merge(api)
        .merge(public_api)
        .route("/healthz", axum::routing::get(routes::service::healthz))
        .route("/readyz", axum::routing::get(routes::service::readyz))
        .route("/metrics", axum::routing::get(observe::metrics_endpoint))
        .merge(openapi::docs_routes(document))
        .merge(views::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(refuse_long_uris))
        .layer(middleware::from_fn(move |mut req: Request, next: Next| {
            req.extensions_mut().insert(BodyLimit(limit));
            next.run(req)
        }))
        .layer(middleware::from_fn(observe::observe))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .with_state(state)
}

/// The longest URI (path and query) the API reads.
pub const MAX_URI: usize = 8192;

/// 414 for a URI over [`MAX_URI`]: no id, cursor or filter is that long.
async fn refuse_long_uris(req: Request, next: Next) -> axum::response::Response {
    let length = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > MAX_URI {
        return ApiError::UriTooLong {
            length,
            limit: MAX_URI,
        }
        .into_response();
    }
    next.run(req).await
}

/// Wakes event streams and deliveries after every accepted change (a page's
/// form answers a redirect when it was accepted).
pub(crate) async fn notify_changes(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let res = next.run(req).await;
    if mutating && (res.status().is_success() || res.status().is_redirection()) {
        state.notify_change();
    }
    res
}

async fn not_found(
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if views::wants_html(&headers, uri.path()) {
        return views::PageError::Api(ApiError::NotFound(String::new())).into_response();
    }
    ApiError::NotFound(format!(
        "no route {method} {}; the API is under /api/v1 and described at /api/openapi.json",
        uri.path()
    ))
    .into_response()
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not accept {method}; see /api/openapi.json for its methods",
        uri.path()
    ))
}

/// Serves `state` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener::ProblemListener(listener),
        router(state).into_make_service_with_connect_info::<listener::Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
