//! Observability at the HTTP edge: a trace id on every request and response,
//! one JSON log line per request, Prometheus metrics.
//!
//! When the binary installs an OpenTelemetry layer (`otlp_endpoint`), spans are
//! exported under Waymark's own trace ids: [`set_remote_parent`] makes a span
//! the child of a remote span in a given trace, so the `request` span of a
//! request carries the request's trace id, and the engine's `task` spans carry
//! the trace id stored on their task.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use waymark_domain::trace::{TraceParent, read_traceparent};

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

/// Makes `span`'s OpenTelemetry parent a remote span of the trace `trace_id`
/// (32 hex digits): the span `parent_id` (16 hex digits) when given, else a
/// random one. The span is then exported in that trace, whatever its parent
/// among `tracing` spans.
///
/// Call it before the span is first entered. It does nothing when the span is
/// disabled, when no OpenTelemetry layer is installed (the layer alone reads
/// the parent), or when `trace_id` is not a valid trace id.
pub fn set_remote_parent(span: &tracing::Span, trace_id: &str, parent_id: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    let trace_id = match OtelTraceId::from_hex(trace_id) {
        Ok(id) if id != OtelTraceId::INVALID => id,
        _ => return,
    };
    let span_id = parent_id
        .and_then(|id| SpanId::from_hex(id).ok())
        .filter(|id| *id != SpanId::INVALID)
        .unwrap_or_else(|| SpanId::from(rand::random::<u64>().max(1)));
    // Sampled: Waymark records every request and task it handles; sampling, if
    // any, is the collector's business.
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    // Err only when no OpenTelemetry layer is installed, or the span started
    // already: the span then keeps the parent it has.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
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
                        5.0, 10.0,
                    ],
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (tests embedding us):
            // then our metrics go there and this handle renders what it has.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `GET /metrics`: Prometheus text format, with the database pool gauges.
pub async fn metrics_endpoint(State(state): State<AppState>) -> impl IntoResponse {
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
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    /// Keeps what it is given.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    #[test]
    fn spans_join_the_trace_they_are_given() {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer");
            let _outer = outer.enter();
            let request = tracing::info_span!("request");
            set_remote_parent(&request, TRACE, Some(PARENT));
            request.in_scope(|| tracing::info!("inside"));
            drop(request);
            let task = tracing::info_span!("task");
            set_remote_parent(&task, TRACE, None);
            drop(task);
            let unparented = tracing::info_span!("unparented");
            set_remote_parent(&unparented, "not a trace id", None);
            drop(unparented);
        });
        let spans = kept.0.lock().unwrap();
        let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        let outer = named("outer").span_context.trace_id();
        let request = named("request");
        assert_eq!(request.span_context.trace_id().to_string(), TRACE);
        assert_eq!(request.parent_span_id.to_string(), PARENT);
        assert!(request.parent_span_is_remote);
        let task = named("task");
        assert_eq!(task.span_context.trace_id().to_string(), TRACE);
        assert_ne!(task.parent_span_id, SpanId::INVALID);
        assert_ne!(task.parent_span_id, request.span_context.span_id());
        // Nothing valid to join: the span stays where `tracing` put it.
        assert_eq!(named("unparented").span_context.trace_id(), outer);
        assert_ne!(outer.to_string(), TRACE);
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_happens() {
        let span = tracing::info_span!("task");
        set_remote_parent(&span, TRACE, Some(PARENT));
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!("task");
            assert!(!span.is_disabled());
            set_remote_parent(&span, TRACE, Some(PARENT));
            span.in_scope(|| {});
        });
    }

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
