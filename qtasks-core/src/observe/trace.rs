//! Trace propagation (feature `opentelemetry`): the span context of the code that enqueues a
//! task travels with the task (W3C Trace Context: `traceparent`, `tracestate`, stored by the
//! backend with the task, [`envelope`](crate::backend::envelope)), and the worker's `task`
//! span continues that trace, in whatever process it runs:
//!
//! - on the first attempt the `task` span is a **child** of the producer's span;
//! - on a retry (or a redelivery after a crash) it is a new trace with a **link** to the
//!   producer's span, as OpenTelemetry's messaging conventions suggest for work that may run
//!   many times.
//!
//! The `task` span carries `task_name`, `task_uuid`, `attempt`, `status` (`success`, `error`,
//! `cancel`, `retry`) and `queue_seconds` (enqueue to start, when the backend kept the enqueue
//! time); `tracing-opentelemetry` turns them into span attributes. This works with any
//! `tracing` subscriber that has a `tracing_opentelemetry` layer (see `docs/observability.md`);
//! without such a layer nothing is captured and nothing is stored.

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::backend::{Delivery, TraceContext};

/// The header names of W3C Trace Context.
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

#[derive(Default)]
struct Headers(HashMap<String, String>);

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct Stored<'a>(&'a TraceContext);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.0.traceparent.as_str()),
            TRACESTATE if !self.0.tracestate.is_empty() => Some(self.0.tracestate.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The span context of the current `tracing` span in its W3C form, or `None` when there is
/// no valid one (no OpenTelemetry layer, or outside any span).
pub fn current() -> Option<Box<TraceContext>> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    let traceparent = headers.0.remove(TRACEPARENT)?;
    Some(Box::new(TraceContext {
        traceparent,
        tracestate: headers.0.remove(TRACESTATE).unwrap_or_default(),
    }))
}

/// The OpenTelemetry context a stored span context stands for (invalid when it cannot be
/// read: a garbled `traceparent` is ignored, never an error).
pub fn context_of(trace: &TraceContext) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Stored(trace))
}

/// Continues the producer's trace on the task's span: its child on the first attempt, a link
/// on later ones; records the queue time.
pub(crate) fn attach(span: &tracing::Span, delivery: &Delivery) {
    if span.is_disabled() {
        return;
    }
    if let Some(at) = delivery.meta.enqueued_at {
        let waited = SystemTime::now().duration_since(at).unwrap_or_default();
        span.record("queue_seconds", waited.as_secs_f64());
    }
    let Some(trace) = &delivery.meta.trace else {
        return;
    };
    let parent = context_of(trace);
    let producer = parent.span().span_context().clone();
    if !producer.is_valid() {
        tracing::debug!(task_uuid = %delivery.uuid, traceparent = %trace.traceparent, "the task's stored span context cannot be read; its span starts a new trace");
        return;
    }
    if delivery.attempt <= 1 {
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(task_uuid = %delivery.uuid, error = %e, "cannot make the task span a child of its producer's span");
        }
    } else {
        span.add_link(producer);
    }
}
