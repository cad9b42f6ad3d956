//! Observability at the HTTP edge: a trace id on every request and response,
//! one JSON log line per request, Prometheus metrics.
//!
//! When the binary installs an OpenTelemetry layer (`otlp_endpoint`), spans are
//! exported under Waymark's own trace ids: [`set_remote_parent`] makes a span
//! the child of a remote span in a given trace, so the `request` span of a
//! request carries the request's trace id (the engine's `task` spans carry the
//! trace id stored on their task the same way).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use waymark_domain::trace::{TraceParent, read_traceparent};
pub use waymark_engine::trace::set_remote_parent;

use crate::AppState;

/// The W3C trace id of the current request (32 lowercase hex digits).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// The trace id of the request's `traceparent` when it carries exactly one valid
/// header, otherwise a new random one.
pub fn trace_id_of(headers: &axum::http::HeaderMap) -> String {
    trace_of(headers).0
}

/// The request's trace id (see [`trace_id_of`]) and, when it came from a valid
/// `traceparent`, the caller's span id in that trace.
fn trace_of(headers: &axum::http::HeaderMap) -> (String, Option<String>) {
    let mut values = headers.get_all("traceparent").iter();
    let incoming = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().and_then(read_traceparent),
        _ => None,
    };
    match incoming {
        Some(TraceParent {
            trace_id,
            parent_id,
        }) => (trace_id, Some(parent_id)),
        None => (new_trace_id(), None),
    }
}

fn new_trace_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Middleware: trace id in, `X-Trace-Id` out, a log line and metrics per request.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let (trace_id, parent_id) = trace_of(req.headers());
    req.extensions_mut().insert(TraceId(trace_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span =
        tracing::info_span!("request", trace_id = %trace_id, method = %method, route = %route);
    set_remote_parent(&span, &trace_id, parent_id.as_deref());
    let started = Instant::now();
    let mut res = next.run(req).instrument(span).await;
    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        res.headers_mut().insert("x-trace-id", v);
    }
    let status = res.status().as_u16();
    tracing::info!(
        target: "waymark::http",
        trace_id = %trace_id,
        method = %method,
        path = %path,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("waymark_http_requests_total", &labels).increment(1);
    metrics::histogram!("waymark_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    res
}

/// How often the recorder's histogram samples are drained into buckets.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0, 60.0, 300.0,
                    ],
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // A histogram keeps every sample until it is drained into its
            // buckets, which rendering `/metrics` does: a server nobody
            // scrapes would keep them all. Drained every few seconds here,
            // on a thread of its own (the recorder lives as long as the
            // process).
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            // Another recorder may be installed already (tests embedding us):
            // then our metrics go there and this handle renders what it has.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `GET /metrics`: Prometheus text format, with the database pool gauges.
pub async fn metrics_endpoint(State(state): State<AppState>) -> impl IntoResponse {
    // The queue's depth and the open incidents, as the database has them; a
    // database that does not answer leaves them out (`/readyz` says why).
    let engine = waymark_engine::metrics::gauges(&*state.store)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the engine's gauges failed");
            String::new()
        });
    for pool in state.store.pool_stats() {
        let in_use = pool.size.saturating_sub(pool.idle);
        metrics::gauge!("waymark_db_pool_connections", "pool" => pool.name, "state" => "idle")
            .set(f64::from(pool.idle));
        metrics::gauge!("waymark_db_pool_connections", "pool" => pool.name, "state" => "in_use")
            .set(f64::from(in_use));
        metrics::gauge!("waymark_db_pool_max_connections", "pool" => pool.name)
            .set(f64::from(pool.max));
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render() + &engine,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    #[test]
    fn the_caller_s_span_comes_with_its_trace() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_str(&format!("00-{TRACE}-{PARENT}-01")).unwrap(),
        );
        assert_eq!(
            trace_of(&headers),
            (TRACE.to_owned(), Some(PARENT.to_owned()))
        );
        headers.append("traceparent", HeaderValue::from_static("00-x"));
        let (trace_id, parent) = trace_of(&headers);
        assert_ne!(trace_id, TRACE);
        assert_eq!((trace_id.len(), parent), (32, None));
    }
}
