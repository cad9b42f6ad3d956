//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the
//! docs page that renders it (Swagger UI, bundled in the binary).

use std::sync::Arc;

use axum::Router;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;
use crate::error::{Problem, ProblemField};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Waymark API",
        description = "Versioned client artifacts, pipelines, journeys and durable work. Errors are RFC 9457 problem details.",
    ),
    components(schemas(Problem, ProblemField)),
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "Health, readiness, version"),
        (name = "clients", description = "The organisations being served"),
        (name = "engagements", description = "Pieces of work for a client"),
        (name = "artifacts", description = "Versioned documents and their lifecycle"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document's fixed parts (info, security scheme, shared schemas).
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `/api/openapi.json` and the docs page at `/api/docs`.
pub fn docs_routes(document: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", (*document).clone()))
}
