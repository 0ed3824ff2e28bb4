//! The stored form of a task's arguments together with its [`TaskMeta`] (enqueue time and the
//! producer's span context), for backends that keep the arguments as one byte string with the
//! queue entry (Redis keeps them in the record and in the ready entry, PostgreSQL in the `args`
//! column): a claim then reads the meta with the arguments, at no extra cost.
//!
//! The form is `0xC1 <meta length>:<meta><arguments>`, the meta being
//! `<enqueue ms>\n<traceparent>\n<tracestate>`. `0xC1` is the one byte MessagePack never
//! uses, so no encoded arguments start with it: stored arguments without the marker (written
//! before this form existed, by another tool, or without anything to carry) are read as they
//! are. Every task gets the envelope: it carries at least the enqueue time, for the queue time
//! of the dashboard's latency chart (`Storage::latency`) and, with the `metrics` feature,
//! `qtasks_task_queue_seconds` (about 1,000 instructions per task on the producer and the
//! worker together, `docs/benchmarks.md`; before the latency chart only the `metrics` feature
//! carried it).
//!
//! ```
//! use qtasks_core::backend::{envelope, TraceContext};
//! # use qtasks_core::backend::NewTask;
//! # use std::time::{Duration, UNIX_EPOCH};
//! # let mut task = NewTask { uuid: qtasks_core::Uuid::nil(), task_name: "t".into(), priority: 0,
//! #     args: qtasks_core::Payload::encode(&[1]).unwrap(), created_at: UNIX_EPOCH + Duration::from_millis(5),
//! #     not_before: None, trace: None, flow: None };
//! task.trace = Some(Box::new(TraceContext {
//!     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
//!     tracestate: String::new(),
//! }));
//! let stored = envelope::stored_args(&task);
//! let (meta, args) = envelope::split(stored.into_owned());
//! assert_eq!(args, task.args);
//! assert_eq!(meta.trace, task.trace);
//! assert_eq!(meta.enqueued_at, Some(task.created_at));
//! ```

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use crate::backend::wire::{NewTask, TaskMeta, TraceContext};
use crate::task::payload::Payload;

/// The first byte of stored arguments that carry a meta (MessagePack's unused `0xC1`).
pub const MARKER: u8 = 0xC1;

/// The bytes to store as `task`'s arguments: the envelope with its enqueue time and span
/// context (one allocation of the exact size, no formatting machinery:
/// this runs for every task a Redis or PostgreSQL producer sends).
pub fn stored_args(task: &NewTask) -> Cow<'_, [u8]> {
    let args = task.args.as_bytes();
    let ms = task
        .created_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (parent, state) = match &task.trace {
        Some(t) => (t.traceparent.as_bytes(), t.tracestate.as_bytes()),
        None => (&b""[..], &b""[..]),
    };
    let mut digits = [0; 20];
    let ms = decimal(ms, &mut digits);
    let meta_len = ms.len() + 1 + parent.len() + 1 + state.len();
    let mut len_digits = [0; 20];
    let len = decimal(meta_len as u64, &mut len_digits);
    let mut out = Vec::with_capacity(1 + len.len() + 1 + meta_len + args.len());
    out.push(MARKER);
    out.extend_from_slice(len);
    out.push(b':');
    out.extend_from_slice(ms);
    out.push(b'\n');
    out.extend_from_slice(parent);
    out.push(b'\n');
    out.extend_from_slice(state);
    out.extend_from_slice(args);
    Cow::Owned(out)
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The decimal number that is all of `digits` (none, or anything else: `None`).
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Stored arguments split into the meta they carry and the encoded arguments (a view into the
/// same buffer, not a copy). Bytes without a readable envelope are all arguments, with no meta.
pub fn split(stored: impl Into<Bytes>) -> (TaskMeta, Payload) {
    let stored: Bytes = stored.into();
    match parse(&stored) {
        Some((meta, args_at)) => (meta, Payload::from_bytes(stored.slice(args_at..))),
        None => (TaskMeta::default(), Payload::from_bytes(stored)),
    }
}

/// The meta and where the arguments start, when `stored` begins with a well-formed envelope.
fn parse(stored: &[u8]) -> Option<(TaskMeta, usize)> {
    let rest = stored.strip_prefix(&[MARKER])?;
    let colon = rest.iter().take(8).position(|&b| b == b':')?;
    let len = usize::try_from(number(&rest[..colon])?).ok()?;
    let start = 1 + colon + 1;
    let meta = stored.get(start..start.checked_add(len)?)?;
    let mut parts = meta.splitn(3, |&b| b == b'\n');
    let ms = number(parts.next()?)?;
    let parent = parts.next().unwrap_or(b"");
    let state = parts.next().unwrap_or(b"");
    let trace = if parent.is_empty() {
        None
    } else {
        Some(Box::new(TraceContext {
            traceparent: std::str::from_utf8(parent).ok()?.to_string(),
            tracestate: std::str::from_utf8(state).ok()?.to_string(),
        }))
    };
    let meta = TaskMeta {
        enqueued_at: UNIX_EPOCH.checked_add(Duration::from_millis(ms)),
        trace,
    };
    Some((meta, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_garbled_bytes_are_all_arguments() {
        for raw in [
            &b"\x81\xa1a\x01"[..],
            b"",
            b"\xc1",
            b"\xc1x:",
            b"\xc199:short",
            b"\xc13:abc",
            b"\xc1123456789012:",
        ] {
            let (meta, args) = split(Bytes::copy_from_slice(raw));
            assert_eq!(meta, TaskMeta::default(), "{raw:?}");
            assert_eq!(args.as_bytes(), raw);
        }
    }

    #[test]
    fn every_meta_round_trips() {
        use std::time::SystemTime;
        let trace = TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7".into(),
        };
        for (created_at, trace) in [
            (UNIX_EPOCH, Some(Box::new(trace.clone()))),
            (SystemTime::now(), None),
            (
                UNIX_EPOCH + Duration::from_millis(1_764_600_000_123),
                Some(Box::new(TraceContext {
                    tracestate: String::new(),
                    ..trace
                })),
            ),
        ] {
            let task = NewTask {
                uuid: uuid::Uuid::new_v4(),
                task_name: "t".into(),
                priority: 0,
                args: Payload::from_bytes(Bytes::from_static(b"\x81\xa1a\x01")),
                created_at,
                not_before: None,
                trace: trace.clone(),
                flow: None,
            };
            let stored = stored_args(&task).into_owned();
            let (meta, args) = split(stored);
            assert_eq!(args, task.args);
            assert_eq!(meta.trace, trace);
            let ms = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
            let at = meta.enqueued_at.expect("the enqueue time travels");
            assert_eq!(ms(at), ms(created_at));
        }
    }

    #[test]
    fn meta_without_trace_keeps_the_time() {
        let (meta, args) = split(Bytes::from_static(b"\xc16:1234\n\n\x90"));
        assert_eq!(meta.trace, None);
        assert_eq!(
            meta.enqueued_at,
            Some(UNIX_EPOCH + Duration::from_millis(1234))
        );
        assert_eq!(args.as_bytes(), b"\x90");
    }
}
