//! Observability: what the execution pipeline, the worker and the enqueue path report, recorded
//! once here rather than per backend.
//!
//! - [`metrics`] (feature `metrics`): counters, histograms and gauges through the `metrics`
//!   facade, and [`prometheus`] to export them in the Prometheus text format.
//! - [`trace`] (feature `opentelemetry`): the producer's span context stored with each task
//!   (W3C `traceparent`/`tracestate`), the worker's task span its child on the first attempt
//!   and linked to it on retries.
//!
//! The hook functions below are what the rest of the crate calls; without the features they
//! are empty and inlined away, so a task pays nothing for observability it did not ask for.

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "metrics")]
pub mod prometheus;
#[cfg(feature = "opentelemetry")]
pub mod trace;

use crate::backend::{DeadLetterReason, Delivery, NewTask, Outcome, TraceContext};

/// The status label of an attempt that ended with `outcome` (`success`, `error`, `cancel`,
/// `retry`, `rate_limited`).
pub fn outcome_status(outcome: &Outcome) -> &'static str {
    match outcome {
        // Not an end: queued again without spending the attempt.
        Outcome::Later { .. } => "rate_limited",
        _ => outcome.status().as_str(),
    }
}

/// The span context of the current span, to store with a task being enqueued (`None` without
/// the `opentelemetry` feature, or outside any sampled span).
#[inline(always)]
pub(crate) fn producer_trace() -> Option<Box<TraceContext>> {
    #[cfg(feature = "opentelemetry")]
    {
        trace::current()
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

/// Tasks were written to the broker.
#[inline(always)]
pub(crate) fn enqueued(_tasks: &[NewTask]) {
    #[cfg(feature = "metrics")]
    metrics::enqueued(_tasks);
}

/// A call to the backend failed (`op`: `enqueue`, `claim`, `started`, `complete`, `renew`,
/// `requeue`, `heartbeat`, `stats`, `live_workers`).
#[inline(always)]
pub(crate) fn backend_error(_op: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::backend_error(_op);
}

/// A worker recorded its heartbeat.
#[inline(always)]
pub(crate) fn heartbeat() {
    #[cfg(feature = "metrics")]
    metrics::heartbeat();
}

/// A task went to the dead-letter for a reason only its backend sees (a worker that crashed
/// too often, a malformed record): backends call this where they report it, with the task's
/// name when they know it (`None`: counted under `task="unknown"`). Counted in
/// `qtasks_tasks_dead_lettered_total{task,reason}` with the `metrics` feature; nothing
/// without it.
#[inline(always)]
pub fn dead_lettered(_task_name: Option<&str>, _reason: DeadLetterReason) {
    #[cfg(feature = "metrics")]
    metrics::dead_lettered(_task_name, _reason);
}

/// One execution of a delivery, from its start to its outcome: what the pipeline reports
/// about it (a zero-sized value without the `metrics` feature).
pub(crate) struct Execution {
    #[cfg(feature = "metrics")]
    inner: metrics::Execution,
}

impl Execution {
    /// The delivery starts now.
    #[inline(always)]
    pub(crate) fn start(_delivery: &Delivery) -> Self {
        Execution {
            #[cfg(feature = "metrics")]
            inner: metrics::Execution::start(_delivery),
        }
    }

    /// It ended with `outcome`.
    #[inline(always)]
    pub(crate) fn finish(self, _outcome: &Outcome) {
        #[cfg(feature = "metrics")]
        self.inner.finish(_outcome);
    }
}

/// Makes `span` (the task's span) the child of the producer's span on the first attempt, or
/// links it to it on a retry (feature `opentelemetry`).
#[inline(always)]
pub(crate) fn task_span(_span: &tracing::Span, _delivery: &Delivery) {
    #[cfg(feature = "opentelemetry")]
    trace::attach(_span, _delivery);
}

/// The `queue_seconds` field of the task's span, given when the span is made (one record
/// fewer per task): enqueue to now, when the backend kept the enqueue time (feature
/// `opentelemetry`; `None`, recording nothing, without it).
#[inline(always)]
pub(crate) fn queue_seconds(_delivery: &Delivery) -> Option<f64> {
    #[cfg(feature = "opentelemetry")]
    {
        _delivery.meta.enqueued_at.map(|at| {
            std::time::SystemTime::now()
                .duration_since(at)
                .unwrap_or_default()
                .as_secs_f64()
        })
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

/// Records how the attempt ended on the task's span (feature `opentelemetry`).
#[inline(always)]
pub(crate) fn task_span_end(_span: &tracing::Span, _outcome: &Outcome) {
    #[cfg(feature = "opentelemetry")]
    _span.record("status", outcome_status(_outcome));
}
