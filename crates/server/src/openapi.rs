//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the
//! docs page that renders it (Swagger UI, bundled in the binary).

use axum::Router;
use serde_json::{Value, json};
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
        (name = "files", description = "Uploaded files: their bytes, kind and extracted text"),
        (name = "search", description = "Full-text search over artifacts, comments and files"),
        (name = "delivery", description = "Delivery manifests and exports of an engagement's approved work"),
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

/// Completes the generated document with what every route shares: each
/// problem response is `application/problem+json`, and each operation lists
/// the refusals any route of its kind answers (malformed requests, tokens,
/// roles, ids in the path, bodies, the URI limit, an unavailable database),
/// each with the problem body.
pub fn complete(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    complete_value(&mut value);
    add_links(&mut value);
    unwrap_single_one_of(&mut value);
    value
}

/// What a create (or an act answering the record it acted on, like a share)
/// answers and the operations that take its id (`{id}` in their path): the
/// document's links, so that clients (and schemathesis's stateful phase)
/// follow create → read → update → act on the record made, and share →
/// approve, reject or implement.
const LINKS: &[(&str, &[&str])] = &[
    (
        "POST /api/v1/clients",
        &[
            "GET /api/v1/clients/{id}",
            "PATCH /api/v1/clients/{id}",
            "GET /api/v1/clients/{id}/operations",
            "GET /api/v1/clients/{id}/stakeholders",
            "POST /api/v1/clients/{id}/stakeholders",
            "POST /api/v1/clients/{id}/signals",
        ],
    ),
    (
        "POST /api/v1/engagements",
        &[
            "GET /api/v1/engagements/{id}",
            "GET /api/v1/engagements/{id}/board",
            "GET /api/v1/engagements/{id}/gating",
            "GET /api/v1/engagements/{id}/plan",
            "GET /api/v1/engagements/{id}/delivery",
            "GET /api/v1/engagements/{id}/exports",
            "POST /api/v1/engagements/{id}/exports",
        ],
    ),
    (
        "POST /api/v1/artifacts",
        &[
            "GET /api/v1/artifacts/{id}",
            "PUT /api/v1/artifacts/{id}/content",
            "GET /api/v1/artifacts/{id}/versions",
            "GET /api/v1/artifacts/{id}/history",
            "GET /api/v1/artifacts/{id}/lineage",
            "GET /api/v1/artifacts/{id}/comments",
            "POST /api/v1/artifacts/{id}/comments",
            "POST /api/v1/artifacts/{id}/share",
            "POST /api/v1/artifacts/{id}/transitions",
            "GET /api/v1/artifacts/{id}/review-links",
            "POST /api/v1/artifacts/{id}/rollback",
        ],
    ),
    (
        "POST /api/v1/artifacts/{id}/share",
        &[
            "GET /api/v1/artifacts/{id}/review",
            "POST /api/v1/artifacts/{id}/approve",
            "POST /api/v1/artifacts/{id}/reject",
            "POST /api/v1/artifacts/{id}/implement",
            "POST /api/v1/artifacts/{id}/review-links",
        ],
    ),
    (
        "POST /api/v1/artifacts/{id}/comments",
        &["POST /api/v1/comments/{id}/resolve"],
    ),
    (
        "POST /api/v1/artifacts/{id}/review-links",
        &["DELETE /api/v1/review-links/{id}"],
    ),
    (
        "POST /api/v1/journeys",
        &[
            "GET /api/v1/journeys/{id}",
            "GET /api/v1/journeys/{id}/history",
            "GET /api/v1/journeys/{id}/validation",
            "GET /api/v1/journeys/{id}/context",
            "POST /api/v1/journeys/{id}/events",
            "POST /api/v1/journeys/{id}/metrics",
            "POST /api/v1/journeys/{id}/signoffs",
            "GET /api/v1/journeys/{id}/ratings",
            "POST /api/v1/journeys/{id}/ratings",
            "POST /api/v1/journeys/{id}/actions",
        ],
    ),
    (
        "POST /api/v1/users",
        &["GET /api/v1/users/{id}", "PATCH /api/v1/users/{id}"],
    ),
    (
        "POST /api/v1/webhooks",
        &[
            "GET /api/v1/webhooks/{id}",
            "GET /api/v1/webhooks/{id}/deliveries",
            "DELETE /api/v1/webhooks/{id}",
        ],
    ),
    (
        "POST /api/v1/work/units",
        &[
            "GET /api/v1/work/units/{id}",
            "POST /api/v1/work/units/{id}/cancel",
        ],
    ),
    (
        "POST /api/v1/files",
        &[
            "GET /api/v1/files/{id}",
            "GET /api/v1/files/{id}/content",
            "GET /api/v1/files/{id}/text",
            "POST /api/v1/files/{id}/extract",
        ],
    ),
    (
        "POST /api/v1/threads",
        &[
            "GET /api/v1/threads/{id}",
            "GET /api/v1/threads/{id}/messages",
            "POST /api/v1/threads/{id}/messages",
            "POST /api/v1/threads/{id}/artifacts",
            "POST /api/v1/threads/{id}/complete",
        ],
    ),
];

/// `"METHOD /path"` split into the method (lowercase) and the path.
fn operation(name: &str) -> (String, &str) {
    let (method, path) = name.split_once(' ').expect("\"METHOD /path\"");
    (method.to_ascii_lowercase(), path)
}

/// Adds [`LINKS`] to each producer's success answers (2xx): the `id` of the
/// record the answer's body is (the one made, or acted on), as `{id}` of
/// each operation named. An operation the document does not have is left out.
fn add_links(doc: &mut Value) {
    for (producer, targets) in LINKS {
        let mut links = serde_json::Map::new();
        for target in *targets {
            let (method, path) = operation(target);
            if doc["paths"][path][&method].is_null() {
                continue;
            }
            let pointer = format!(
                "#/paths/{}/{method}",
                path.replace('~', "~0").replace('/', "~1")
            );
            // A component name: `get_artifacts_id_versions`.
            let name: String = path
                .trim_start_matches("/api/v1/")
                .chars()
                .filter(|c| !matches!(c, '{' | '}'))
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            links.insert(
                format!("{method}_{name}"),
                json!({"operationRef": pointer, "parameters": {"id": "$response.body#/id"}}),
            );
        }
        let (method, path) = operation(producer);
        let Some(responses) = doc["paths"][path][&method]["responses"].as_object_mut() else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2') {
                response["links"] = Value::Object(links.clone());
            }
        }
    }
}

/// A schema written as JSON, for what the derive cannot say (the form of an
/// array's items).
pub(crate) fn schema_json(value: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(value).expect("a valid schema")
}

/// A schema that is `oneOf` a single inline schema (what the derive writes
/// for an inlined type beside a description) becomes that schema.
fn unwrap_single_one_of(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(one)) = map.get("oneOf")
                && let [Value::Object(only)] = one.as_slice()
                && !only.contains_key("$ref")
            {
                let only = only.clone();
                map.remove("oneOf");
                for (k, v) in only {
                    map.entry(k).or_insert(v);
                }
            }
            map.values_mut().for_each(unwrap_single_one_of);
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_single_one_of),
        _ => {}
    }
}

/// A name, title or owner as the server reads it (`domain::client::parse_name`):
/// at most 200 characters, not blank, no control characters. Fields name it
/// with `#[schema(value_type = crate::openapi::Name, inline)]`.
pub struct Name;

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema_json(json!({
            "type": "string",
            "maxLength": 200,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        }))
    }
}

impl utoipa::ToSchema for Name {}

const PROBLEM: &str = "application/problem+json";

fn complete_value(doc: &mut Value) {
    let problem = json!({"schema": {"$ref": "#/components/schemas/Problem"}});
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let has_path_params = path.contains('{');
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
            ) {
                continue;
            }
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let has_body = op.get("requestBody").is_some();
            // The headers a write reads, in the form it reads them.
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params.iter_mut().filter(|p| p["in"] == "header") {
                    match p["name"].as_str() {
                        Some("If-Match") => {
                            p["schema"] = json!({"type": "string", "pattern": "^\\s*\"[1-9][0-9]{0,17}\"\\s*$"});
                        }
                        Some("Idempotency-Key") => {
                            p["schema"] =
                                json!({"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"});
                        }
                        _ => {}
                    }
                }
            }
            if let Some(schema) = cursor_schema(path)
                && let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut)
            {
                for p in params.iter_mut().filter(|p| p["name"] == "cursor") {
                    p["schema"] = schema.clone();
                }
            }
            let query: Vec<&str> = op
                .get("parameters")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let has_query = !query.is_empty();
            // A filter by id (`client_id=…`) names a record like a path does.
            let names_a_record = has_path_params || query.iter().any(|q| q.ends_with("_id"));
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            // Problems are problem+json.
            for response in responses.values_mut() {
                let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
                else {
                    continue;
                };
                let is_problem = content.get("application/json").is_some_and(|c| {
                    c.pointer("/schema/$ref")
                        .and_then(Value::as_str)
                        .is_some_and(|r| r.ends_with("/Problem"))
                });
                if is_problem && let Some(c) = content.remove("application/json") {
                    content.insert(PROBLEM.into(), c);
                }
            }
            let mut shared: Vec<(&str, &str)> = vec![
                (
                    "400",
                    "The request is malformed (JSON, a query parameter or a header)",
                ),
                ("414", "The URI is longer than the API reads"),
                ("500", "An unexpected failure; the trace id is in the log"),
                ("503", "The database is unavailable; try again shortly"),
            ];
            if secured {
                shared.push(("401", "No usable bearer token"));
                shared.push(("403", "The token may not do this"));
            }
            if names_a_record {
                shared.push(("404", "No such record, or one the caller may not see"));
            }
            if has_path_params && method.as_str() != "get" {
                shared.push((
                    "409",
                    "The record's state does not allow this now; `code` says why",
                ));
            }
            if has_body {
                shared.push(("413", "The body is larger than the limit"));
                shared.push(("415", "The body is not JSON"));
            }
            if has_body || has_query || has_path_params {
                shared.push((
                    "422",
                    "A field is invalid: `errors` names each with a JSON Pointer",
                ));
            }
            for (status, description) in shared {
                responses.entry(status).or_insert_with(|| {
                    let mut content = serde_json::Map::new();
                    content.insert(PROBLEM.into(), problem.clone());
                    let mut response = json!({"description": description, "content": content});
                    if status == "503" {
                        response["headers"] = json!({"Retry-After": {
                            "description": "Seconds to wait before retrying",
                            "schema": {"type": "integer", "minimum": 0}
                        }});
                    }
                    response
                });
            }
        }
    }
}

/// What a list's `cursor` is: the id of the last item of the previous page
/// (its id type), or the sequence number of that item. An empty cursor is
/// the first page.
fn cursor_schema(path: &str) -> Option<Value> {
    let id = |ty: &str| json!({"$ref": format!("#/components/schemas/{ty}")});
    Some(match path {
        "/api/v1/artifacts" => id("ArtifactId"),
        "/api/v1/artifacts/{id}/comments" => id("CommentId"),
        "/api/v1/clients" => id("ClientId"),
        "/api/v1/engagements" => id("EngagementId"),
        "/api/v1/journeys" => id("JourneyId"),
        "/api/v1/tokens" => id("TokenId"),
        "/api/v1/users" => id("UserId"),
        "/api/v1/webhooks" => id("WebhookId"),
        "/api/v1/work/incidents" => id("IncidentId"),
        "/api/v1/work/tasks" => id("TaskId"),
        "/api/v1/work/units" => id("UnitId"),
        "/api/v1/artifacts/{id}/history"
        | "/api/v1/artifacts/{id}/versions"
        | "/api/v1/audit"
        | "/api/v1/mail"
        | "/api/v1/webhooks/{id}/deliveries" => {
            json!({"type": "string", "pattern": "^[0-9]{1,18}$"})
        }
        _ => return None,
    })
}

/// The document's fixed parts (info, security scheme, shared schemas).
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `/api/openapi.json` and the docs page at `/api/docs`.
pub fn docs_routes(document: Value) -> Router<AppState> {
    Router::new()
        .merge(SwaggerUi::new("/api/docs").external_url_unchecked("/api/openapi.json", document))
}
