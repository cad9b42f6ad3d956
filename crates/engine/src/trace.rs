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
}
