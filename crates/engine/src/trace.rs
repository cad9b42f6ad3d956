//! Waymark's trace ids in exported spans: [`set_remote_parent`] makes a span
//! the child of a remote span in a given trace, so a request's span carries
//! the request's trace id (`server`), and each task's span the trace id stored
//! on its task (the request that created its unit).

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span`'s OpenTelemetry parent a remote span of the trace `trace_id`
/// (32 hex digits): the span `parent_id` (16 hex digits) when given, else a
/// random one, so the span is exported in that trace and stays a root
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
