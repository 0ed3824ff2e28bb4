//! Between the wire and the app: JSON arguments (`args_json`, `kwargs_json`) to the one value
//! `App::add_task` checks against the task's parameters, task records to messages, and the
//! app's errors to gRPC statuses.

use std::time::Duration;

use qtasks_core::backend::inspect::unix_ms;
use qtasks_core::{App, Error, Payload, Task, TaskStatus, Uuid};
use serde_json::{Map, Value};
use tonic::Status;

use crate::proto::TaskEvent;

/// The longest wait a call may ask for (`AddTask.timeout`, `WaitTask.timeout`).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The arguments of `AddTask` as the one JSON value `App::add_task` takes: the positional list
/// alone, the named map alone, or (both given) one map with the positional values under the
/// task's parameter names in order. `App::add_task` then checks it against the parameters,
/// exactly as for every other by-name call.
pub(crate) fn arguments(
    app: &App,
    task: &str,
    args_json: &str,
    kwargs_json: &str,
) -> Result<Value, Status> {
    let args = match parse(task, "args_json", args_json, "a JSON array such as [2, 3]")? {
        None => Vec::new(),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(not_a(
                task,
                "args_json",
                &other,
                "a JSON array such as [2, 3]",
            ))
        }
    };
    let kwargs = match parse(
        task,
        "kwargs_json",
        kwargs_json,
        "a JSON object such as {\"b\": 3}",
    )? {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(not_a(
                task,
                "kwargs_json",
                &other,
                "a JSON object such as {\"b\": 3}",
            ))
        }
    };
    if kwargs.is_empty() {
        return Ok(Value::Array(args));
    }
    if args.is_empty() {
        return Ok(Value::Object(kwargs));
    }
    // Both: name the positional values. An unknown task keeps the list, so that
    // `App::add_task` reports the name it does not know.
    let Some(entry) = app.task(task) else {
        return Ok(Value::Array(args));
    };
    if args.len() > entry.params.len() {
        return Err(Status::invalid_argument(format!(
            "task {task:?}: {} positional arguments given, but the task takes {} ({}); send fewer \
             values in args_json",
            args.len(),
            entry.params.len(),
            entry.signature
        )));
    }
    let mut named = Map::new();
    for (param, value) in entry.params.iter().zip(args) {
        named.insert(param.name.to_string(), value);
    }
    for (key, value) in kwargs {
        if named.contains_key(&key) {
            return Err(Status::invalid_argument(format!(
                "task {task:?}: argument {key:?} is given twice, in args_json and in kwargs_json; \
                 give it once"
            )));
        }
        named.insert(key, value);
    }
    Ok(Value::Object(named))
}

/// Parses one JSON field; empty (or blank) is `None`.
fn parse(task: &str, field: &str, text: &str, expected: &str) -> Result<Option<Value>, Status> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|e| {
        Status::invalid_argument(format!(
            "task {task:?}: {field} is not valid JSON ({e}); send {expected}, or leave it empty"
        ))
    })
}

fn not_a(task: &str, field: &str, value: &Value, expected: &str) -> Status {
    Status::invalid_argument(format!(
        "task {task:?}: {field} must be {expected}, not {value}"
    ))
}

/// A wait in seconds from the wire: `None` for 0, refused when negative, not a number or longer
/// than [`MAX_WAIT`].
pub(crate) fn wait_secs(field: &str, secs: f64) -> Result<Option<Duration>, Status> {
    if secs == 0.0 {
        return Ok(None);
    }
    if !secs.is_finite() || secs < 0.0 || secs > MAX_WAIT.as_secs_f64() {
        return Err(Status::invalid_argument(format!(
            "{field} must be between 0 and {} seconds, not {secs}",
            MAX_WAIT.as_secs()
        )));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// Parses a task uuid.
pub(crate) fn uuid(s: &str) -> Result<Uuid, Status> {
    Uuid::try_parse(s.trim()).map_err(|_| {
        Status::invalid_argument(format!(
            "{s:?} is not a task uuid (such as 67e55044-10b1-426f-9247-bb680e5fe0c8); send the \
             uuid AddTask returned"
        ))
    })
}

/// Parses a status name, listing the valid ones when it is not one.
pub(crate) fn status(s: &str) -> Result<TaskStatus, Status> {
    TaskStatus::parse(s.trim()).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{s:?} is not a status; the statuses are new, process, retry, success, error, cancel \
             (or empty for all)"
        ))
    })
}

/// A payload as JSON text, or a note that it is not valid MessagePack.
pub(crate) fn json(p: &Payload) -> String {
    match p.to_json() {
        Some(v) => v.to_string(),
        None => serde_json::json!({
            "undecodable": format!("{} bytes that are not valid MessagePack", p.as_bytes().len())
        })
        .to_string(),
    }
}

/// The result of a task as JSON text; empty when it has none.
pub(crate) fn result_json(t: &Task) -> String {
    t.returning.as_ref().map(json).unwrap_or_default()
}

/// A task record as a [`TaskEvent`].
pub(crate) fn event(t: &Task) -> TaskEvent {
    TaskEvent {
        uuid: t.uuid.to_string(),
        task_name: t.task_name.as_str().to_string(),
        status: t.status.as_str().to_string(),
        result_json: result_json(t),
        traceback: t.traceback.clone().unwrap_or_default(),
        cancel_reason: t.cancel_reason.clone().unwrap_or_default(),
        attempts: t.attempts,
        priority: t.priority,
        args_json: json(&t.args),
        created_at_ms: unix_ms(t.created_at),
        updated_at_ms: unix_ms(t.updated_at),
        r#final: t.status.is_final(),
    }
}

/// Why a finished task has no result, for `error` of `AddTask`: its traceback or cancel reason.
pub(crate) fn failure(t: &Task) -> String {
    match t.status {
        TaskStatus::Cancel => format!(
            "task {:?} ({}) was cancelled: {}",
            t.task_name.as_str(),
            t.uuid,
            t.cancel_reason.as_deref().unwrap_or("no reason given")
        ),
        _ => format!(
            "task {:?} ({}) ended with status {}: {}",
            t.task_name.as_str(),
            t.uuid,
            t.status.as_str(),
            t.traceback.as_deref().unwrap_or("no traceback")
        ),
    }
}

/// An error of the app as a gRPC status: the code says which kind, the message (the error's own
/// text, which names the task and what to do) says what happened.
pub(crate) fn status_of(e: Error) -> Status {
    let message = e.to_string();
    match e {
        Error::UnknownTask { .. } | Error::NotFound(_) => Status::not_found(message),
        Error::BadArguments { .. } | Error::Encode { .. } | Error::Config { .. } => {
            Status::invalid_argument(message)
        }
        Error::Backend { .. } => Status::unavailable(message),
        Error::Timeout { .. } => Status::deadline_exceeded(message),
        _ => Status::internal(message),
    }
}
