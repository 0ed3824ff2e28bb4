//! Trace propagation (feature `opentelemetry`): the span context of the code that enqueues a
//! task is stored with the task (W3C `traceparent`/`tracestate`), and the worker's `task` span
//! continues that trace in whatever process runs it: a child of the producer's span on the
//! first attempt, a new trace linked to it on a retry. See [`qtasks_core::observe::trace`] and
//! `docs/observability.md` for the setup.
//!
//! The OpenTelemetry crates qtasks is built with are re-exported, so a program can use the
//! exact versions that fit together: `qtasks::trace::opentelemetry_sdk`, ...

pub use qtasks_core::backend::TraceContext;
pub use qtasks_core::observe::trace::{context_of, current};

/// The OpenTelemetry API qtasks is built with.
pub use opentelemetry;
/// The OpenTelemetry SDK qtasks is built with (its `testing` feature has an in-memory exporter).
pub use opentelemetry_sdk;
/// The `tracing` layer that turns spans into OpenTelemetry spans, in the version that fits.
pub use tracing_opentelemetry;
