//! The stored form of a task's arguments together with its [`TaskMeta`] (enqueue time and the
//! producer's span context), for backends that keep the arguments as one byte string with the
//! queue entry (Redis keeps them in the record and in the ready entry, PostgreSQL in the `args`
//! column): a claim then reads the meta with the arguments, at no extra cost.
//!
//! The form is `0xC1 <meta length>:<meta><arguments>`, the meta being
//! `<enqueue ms>\n<traceparent>\n<tracestate>`. `0xC1` is the one byte MessagePack never
//! uses, so no encoded arguments start with it: stored arguments without the marker (written
//! before this form existed, by another tool, or without anything to carry) are read as they
//! are. A task gets the envelope only when it has something to carry: a span context, or
//! the enqueue time when the `metrics` feature wants it for `qtasks_task_queue_seconds`.
//!
//! ```
//! use qtasks_core::backend::{envelope, TraceContext};
//! # use qtasks_core::backend::NewTask;
//! # use std::time::{Duration, UNIX_EPOCH};
//! # let mut task = NewTask { uuid: qtasks_core::Uuid::nil(), task_name: "t".into(), priority: 0,
//! #     args: qtasks_core::Payload::encode(&[1]).unwrap(), created_at: UNIX_EPOCH + Duration::from_millis(5),
//! #     not_before: None, trace: None };
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

/// Whether tasks carry their enqueue time to the worker even without a span context: on with
/// the `metrics` feature (for `qtasks_task_queue_seconds`).
pub const KEEPS_ENQUEUE_TIME: bool = cfg!(feature = "metrics");

/// The bytes to store as `task`'s arguments: the encoded arguments as they are when there is no
/// meta to carry, else the envelope.
pub fn stored_args(task: &NewTask) -> Cow<'_, [u8]> {
    let args = task.args.as_bytes();
    if task.trace.is_none() && !KEEPS_ENQUEUE_TIME {
        return Cow::Borrowed(args);
    }
    let ms = task
        .created_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (parent, state) = match &task.trace {
        Some(t) => (t.traceparent.as_str(), t.tracestate.as_str()),
        None => ("", ""),
    };
    let meta = format!("{ms}\n{parent}\n{state}");
    let len = meta.len().to_string();
    let mut out = Vec::with_capacity(2 + len.len() + meta.len() + args.len());
    out.push(MARKER);
    out.extend_from_slice(len.as_bytes());
    out.push(b':');
    out.extend_from_slice(meta.as_bytes());
    out.extend_from_slice(args);
    Cow::Owned(out)
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
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let start = 1 + colon + 1;
    let meta = std::str::from_utf8(stored.get(start..start.checked_add(len)?)?).ok()?;
    let mut parts = meta.splitn(3, '\n');
    let ms: u64 = parts.next()?.parse().ok()?;
    let parent = parts.next().unwrap_or("");
    let state = parts.next().unwrap_or("");
    let trace = (!parent.is_empty()).then(|| {
        Box::new(TraceContext {
            traceparent: parent.to_string(),
            tracestate: state.to_string(),
        })
    });
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
