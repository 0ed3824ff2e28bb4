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

use std::str::FromStr;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::backend::{Delivery, TraceContext};

/// The span context of the current `tracing` span in its W3C form, or `None` when there is
/// no valid one (no OpenTelemetry layer, or outside any span).
pub fn current() -> Option<Box<TraceContext>> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(Box::new(TraceContext {
        traceparent: traceparent(sc),
        tracestate: sc.trace_state().header(),
    }))
}

/// The `traceparent` header of `sc` (version `00`), written by hand: this runs at every
/// enqueue, and the formatting machinery costs several times the task itself.
fn traceparent(sc: &SpanContext) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &sc.trace_id().to_bytes());
    out.push('-');
    push_hex(&mut out, &sc.span_id().to_bytes());
    out.push('-');
    push_hex(
        &mut out,
        &[sc.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()],
    );
    out
}

/// Appends `bytes` as lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// The span context of a W3C `traceparent` (and `tracestate`): versions `00` and later (later
/// ones read as `00`, as the specification asks), not `ff`; lowercase hex; ids not all zero.
fn parse(trace: &TraceContext) -> Option<SpanContext> {
    let tp = trace.traceparent.as_bytes();
    if tp.len() < 55 || tp[2] != b'-' || tp[35] != b'-' || tp[52] != b'-' {
        return None;
    }
    let version = hex_bytes::<1>(&tp[..2])?[0];
    if version == 0xff || (version == 0 && tp.len() != 55) || (tp.len() > 55 && tp[55] != b'-') {
        return None;
    }
    let trace_id = TraceId::from_bytes(hex_bytes::<16>(&tp[3..35])?);
    let span_id = SpanId::from_bytes(hex_bytes::<8>(&tp[36..52])?);
    let flags = TraceFlags::new(hex_bytes::<1>(&tp[53..55])?[0] & TraceFlags::SAMPLED.to_u8());
    let state = if trace.tracestate.is_empty() {
        TraceState::NONE
    } else {
        TraceState::from_str(&trace.tracestate).unwrap_or(TraceState::NONE)
    };
    let sc = SpanContext::new(trace_id, span_id, flags, true, state);
    sc.is_valid().then_some(sc)
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The OpenTelemetry context a stored span context stands for (with no span when it cannot be
/// read: a garbled `traceparent` is ignored, never an error).
pub fn context_of(trace: &TraceContext) -> opentelemetry::Context {
    match parse(trace) {
        Some(sc) => opentelemetry::Context::new().with_remote_span_context(sc),
        None => opentelemetry::Context::new(),
    }
}

/// Continues the producer's trace on the task's span: its child on the first attempt, a link
/// on later ones (the queue time is a field the span is made with: `observe::queue_seconds`).
pub(crate) fn attach(span: &tracing::Span, delivery: &Delivery) {
    if span.is_disabled() {
        return;
    }
    let Some(trace) = &delivery.meta.trace else {
        return;
    };
    let Some(producer) = parse(trace) else {
        tracing::debug!(task_uuid = %delivery.uuid, traceparent = %trace.traceparent, "the task's stored span context cannot be read; its span starts a new trace");
        return;
    };
    if delivery.attempt <= 1 {
        let parent = opentelemetry::Context::new().with_remote_span_context(producer);
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(task_uuid = %delivery.uuid, error = %e, "cannot make the task span a child of its producer's span");
        }
    } else {
        span.add_link(producer);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    fn stored(traceparent: &str, tracestate: &str) -> TraceContext {
        TraceContext {
            traceparent: traceparent.into(),
            tracestate: tracestate.into(),
        }
    }

    /// The hand-written codec agrees with the SDK's W3C propagator.
    #[test]
    fn the_codec_agrees_with_the_sdk_propagator() {
        let propagator = TraceContextPropagator::new();
        for (trace, span, flags, state) in [
            (
                0x0af7651916cd43dd8448eb211c80319c_u128,
                0xb7ad6b7169203331_u64,
                1,
                "",
            ),
            (1, u64::MAX, 0, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            (u128::MAX, 1, 1, "a=b"),
        ] {
            let sc = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                TraceFlags::new(flags),
                false,
                TraceState::from_str(state).unwrap(),
            );
            let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
            let mut headers = HashMap::new();
            propagator.inject_context(&cx, &mut headers);
            assert_eq!(traceparent(&sc), headers["traceparent"]);
            assert_eq!(
                sc.trace_state().header(),
                headers.get("tracestate").cloned().unwrap_or_default()
            );
            let ours = parse(&stored(&traceparent(&sc), &sc.trace_state().header())).unwrap();
            let theirs = propagator.extract(&headers);
            assert_eq!(&ours, theirs.span().span_context());
        }
    }

    #[test]
    fn garbled_traceparents_are_ignored() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(parse(&stored(good, "")).is_some());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parse(&stored(bad, "")).is_none(), "{bad:?}");
            assert!(!context_of(&stored(bad, ""))
                .span()
                .span_context()
                .is_valid());
        }
        // A later version may carry more fields.
        assert!(parse(&stored(&format!("cc{}-what-ever", &good[2..]), "")).is_some());
    }
}
