//! Task records as JSON: arguments and results decoded from MessagePack, times in ms since
//! the Unix epoch.

use qtasks_core::backend::inspect::unix_ms;
use qtasks_core::{Payload, Task};
use serde_json::{json, Value};

/// A payload as JSON, or a note that it is not valid MessagePack.
fn payload(p: &Payload) -> Value {
    p.to_json().unwrap_or_else(|| {
        json!({"undecodable": format!("{} bytes that are not valid MessagePack", p.as_bytes().len())})
    })
}

/// A task record as JSON.
pub(crate) fn task(t: &Task) -> Value {
    json!({
        "uuid": t.uuid,
        "task_name": t.task_name.as_str(),
        "status": t.status.as_str(),
        "priority": t.priority,
        "args": payload(&t.args),
        "created_at": unix_ms(t.created_at),
        "updated_at": unix_ms(t.updated_at),
        "returning": t.returning.as_ref().map(payload),
        "traceback": t.traceback,
        "cancel_reason": t.cancel_reason,
        "attempts": t.attempts,
        "progress": t.progress.as_ref().map(payload),
        "history": t.history.iter().map(|a| json!({
            "attempt": a.attempt,
            "worker": a.worker,
            "started_at": unix_ms(a.started_at),
            "finished_at": unix_ms(a.finished_at),
            "status": a.status.as_str(),
        })).collect::<Vec<_>>(),
        "extra": t.extra,
    })
}
