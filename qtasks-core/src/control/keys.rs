//! [`FlowKeys`]: the unique, concurrency and rate keys one call resolves to.

use std::time::Duration;

use uuid::Uuid;

use crate::control::queues::DEFAULT_QUEUE;
use crate::control::rules::KeyFrom;
use crate::task::entry::TaskEntry;
use crate::task::payload::Payload;

/// What a backend needs to apply a task's flow-control options to one enqueued task; carried
/// by [`NewTask::flow`](crate::backend::NewTask::flow). Keys are per task name: two tasks with
/// the same key text but different names never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKeys {
    /// The unique key (`<task name>` 0x1F `<key>`): while a task holds it (queued, waiting
    /// for a retry, running, or finished less than `hold_after` ago), another enqueue with it
    /// returns that task instead of writing a new one.
    pub unique: Option<String>,
    /// How long the unique key stays taken after the task finished.
    pub hold_after: Duration,
    /// With debounce, the pending task holding the key takes the new arguments and starts
    /// this long after the newest enqueue.
    pub debounce: Option<Duration>,
    /// With throttle, the key is held this long from its holder's enqueue, whatever the
    /// holder's status (and not after it).
    pub throttle: Option<Duration>,
    /// The concurrency key (the values of `concurrency_key`), when the limit is per key.
    pub concurrency_key: Option<String>,
    /// The rate key (the values of `rate_limit_key`), when the limit is per key.
    pub rate_key: Option<String>,
    /// The task's named queue (`queue = "mail"`); `None`: the default queue.
    pub queue: Option<&'static str>,
}

/// Separates the parts of a key (a byte no key text of ours contains otherwise).
const SEPARATOR: char = '\u{1f}';

/// The namespace of the uuids that stand for whole argument lists in unique keys.
const ARGS_NAMESPACE: Uuid = Uuid::from_u128(0x2c9e_71d0_4a5b_4f3c_8e16_0b7a_c4d2_9f55);

impl FlowKeys {
    /// The keys of a call of `entry` with `args`; `unique_key` is the call's own
    /// (`.unique_key("order-42")`), which makes the call unique even when the task is not.
    /// `None` when the task has no option that needs a key (the usual case: no allocation).
    pub fn of(entry: &TaskEntry, args: &Payload, unique_key: Option<&str>) -> Option<Box<Self>> {
        let options = &entry.options;
        let limits = &options.limits;
        let queue = options.queue.filter(|q| *q != DEFAULT_QUEUE);
        if options.unique.is_none()
            && unique_key.is_none()
            && limits.concurrency_key.is_none()
            && limits.rate_key.is_none()
            && queue.is_none()
        {
            return None;
        }
        let unique = match (unique_key, &options.unique) {
            (Some(key), _) => Some(format!("{}{SEPARATOR}{key}", entry.name)),
            (None, Some(unique)) => Some(format!(
                "{}{SEPARATOR}{}",
                entry.name,
                key_text(entry, args, unique.key)
            )),
            (None, None) => None,
        };
        let per_key = |names: Option<&'static [&'static str]>| {
            names.map(|names| key_text(entry, args, KeyFrom::Args(names)))
        };
        Some(Box::new(FlowKeys {
            unique,
            // A throttled key stays taken at least its window after the end (the enqueue
            // check counts the window from the holder's enqueue).
            hold_after: options
                .unique
                .map(|u| u.hold_after.max(u.throttle.unwrap_or_default()))
                .unwrap_or_default(),
            debounce: options.unique.and_then(|u| u.debounce),
            throttle: options.unique.and_then(|u| u.throttle),
            concurrency_key: per_key(limits.concurrency_key),
            rate_key: per_key(limits.rate_key),
            queue,
        }))
    }
}

/// The text of a key made of `from`: the named arguments' values as JSON (`42`, `"eu"`),
/// joined by 0x1F, or, for every argument, a uuid standing for the encoded argument list.
/// The task name alone (`KeyFrom::Name`) is the empty text.
fn key_text(entry: &TaskEntry, args: &Payload, from: KeyFrom) -> String {
    match from {
        KeyFrom::Name => String::new(),
        KeyFrom::AllArgs => Uuid::new_v5(&ARGS_NAMESPACE, args.as_bytes()).to_string(),
        KeyFrom::Args(names) => {
            let value = args.to_json();
            let mut text = String::new();
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    text.push(SEPARATOR);
                }
                let position = entry.params.iter().position(|p| p.name == *name);
                let field = match &value {
                    Some(serde_json::Value::Object(map)) => map.get(*name),
                    Some(serde_json::Value::Array(list)) => position.and_then(|at| list.get(at)),
                    _ => None,
                };
                match field {
                    Some(serde_json::Value::String(s)) => text.push_str(s),
                    Some(other) => text.push_str(&other.to_string()),
                    None => text.push_str("null"),
                }
            }
            text
        }
    }
}
