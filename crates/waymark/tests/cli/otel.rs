//! Span export: `waymark serve` with `WAYMARK_OTLP_ENDPOINT` sends its spans
//! over OTLP/HTTP (protobuf) to a small collector run by the test, under the
//! trace ids Waymark gives requests and stores on tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use serde_json::{Value, json};

use crate::process::{Backend, Server};

/// The caller's trace and span, as sent in `traceparent`.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: Option<String>,
    name: String,
    trace_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP collector on a loopback port: `POST /v1/traces` with an
/// `ExportTraceServiceRequest` in protobuf, as the specification has it.
struct Collector {
    url: String,
    spans: Spans,
}

impl Collector {
    async fn start() -> Collector {
        let spans = Spans::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { url, spans }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(spans): State<Spans>, headers: HeaderMap, body: Bytes) -> Response {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    if !protobuf {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans.resource.and_then(|r| {
            attributes(&r.attributes)
                .into_iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v)
        });
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// The string (and integer) attributes, as text.
fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// POSTs as the admin with the caller's `traceparent`; answers the 201's body
/// after checking the response names the caller's trace.
async fn post_traced(http: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    let res = http
        .post(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "POST {path}");
    assert_eq!(res.headers()["x-trace-id"], TRACE_ID);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_under_waymark_trace_ids() {
    let collector = Collector::start().await;
    let backend = Backend::sqlite();
    // The server runs with RUST_LOG=warn (see `process`): export does not
    // depend on the log filter.
    let server = Server::start_with(&backend, &[("WAYMARK_OTLP_ENDPOINT", &collector.url)]).await;
    let http = reqwest::Client::new();

    let client = post_traced(&http, &server, "/api/v1/clients", json!({"name": "Traced"})).await;
    let unit = post_traced(
        &http,
        &server,
        "/api/v1/work/units",
        json!({"client_id": client["id"], "name": "Traced work", "tasks": [
            {"key": "touch", "executor": "noop", "input": {"n": 1}},
        ]}),
    )
    .await;
    let unit_id = unit["id"].as_str().unwrap().to_owned();

    // The embedded workers run the task; wait until its unit is done.
    let mut detail = Value::Null;
    for _ in 0..600 {
        detail = http
            .get(format!("{}/api/v1/work/units/{unit_id}", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        detail["status"],
        "completed",
        "{detail}\n{}",
        server.output()
    );
    let task = &detail["tasks"][0];
    assert_eq!(task["trace_id"], TRACE_ID, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();

    // SIGTERM: the server shuts the exporter down, which sends what is batched.
    let output = server.output();
    let status = server.stop_gracefully().await;
    assert!(status.success(), "exit status {status:?}\n{output}");

    let spans = collector.spans();
    let in_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let requests: Vec<&&Received> = in_trace.iter().filter(|s| s.name == "request").collect();
    assert_eq!(
        requests.len(),
        2,
        "one request span per traced request: {spans:#?}"
    );
    for request in &requests {
        assert_eq!(request.service.as_deref(), Some("waymark"), "{request:?}");
        assert_eq!(
            request.parent_span_id, PARENT_ID,
            "the caller's span is the parent: {request:?}"
        );
        assert_eq!(request.attribute("trace_id"), Some(TRACE_ID), "{request:?}");
    }
    assert!(
        requests
            .iter()
            .any(|r| r.attribute("route") == Some("/api/v1/work/units")
                && r.attribute("method") == Some("POST")),
        "{requests:#?}"
    );
    let tasks: Vec<&&Received> = in_trace.iter().filter(|s| s.name == "task").collect();
    assert_eq!(
        tasks.len(),
        1,
        "the task runs in its unit's trace: {spans:#?}"
    );
    let span = tasks[0];
    assert_eq!(span.service.as_deref(), Some("waymark"));
    assert_eq!(
        span.attribute("task_id"),
        Some(task_id.as_str()),
        "{span:?}"
    );
    assert_eq!(
        span.attribute("unit_id"),
        Some(unit_id.as_str()),
        "{span:?}"
    );
    assert_eq!(span.attribute("key"), Some("touch"), "{span:?}");
    assert_eq!(span.attribute("executor"), Some("noop"), "{span:?}");
    assert_eq!(span.parent_span_id.len(), 16, "a remote parent: {span:?}");
    // Requests without a traceparent (the polling above) get traces of their own.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "request" && s.trace_id != TRACE_ID && s.parent_span_id.len() == 16),
        "{spans:#?}"
    );
}
