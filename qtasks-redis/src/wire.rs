//! What goes over the wire to the scripts and back: the keys of an app, durations and times
//! as milliseconds, lease arguments, and the decoding of the claim script's reply and of task
//! records. Nothing here trusts data from Redis: a malformed reply or record is an error (or
//! a default for a missing optional field), never a panic.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::Value;
use qtasks_core::backend::{Delivery, Lease};
use qtasks_core::{Payload, Task, TaskStatus};
use uuid::Uuid;

use crate::RedisBackend;

impl RedisBackend {
    /// The key `name` of this app: `{app}:name`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The key of a task's record: `{app}:t:<uuid>`.
    pub(crate) fn record_key(&self, uuid: Uuid) -> String {
        format!("{}t:{}", self.prefix, uuid.hyphenated())
    }

    /// How long finished records are kept, in ms (at least 1).
    pub(crate) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.result_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The prefix of every key of the app `app_name`: `{app_name}:` (a Redis Cluster hash tag, so
/// all of an app's keys are in one slot).
pub(crate) fn key_prefix(app_name: &str) -> String {
    format!("{{{app_name}}}:")
}

/// `s` with the characters that are special in a `SCAN MATCH` pattern escaped.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Script arguments for leases: uuid and token pairs.
pub(crate) fn lease_args(leases: &[Lease]) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(leases.len() * 2);
    for lease in leases {
        args.push(lease.uuid.hyphenated().to_string().into_bytes());
        args.push(lease.token.to_string().into_bytes());
    }
    args
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A time as milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The claim script's reply: the deliveries, and how long until something is due (ms, or
/// `None`).
pub(crate) fn parse_claim(
    reply: Value,
) -> std::result::Result<(Vec<Delivery>, Option<u64>), String> {
    let bad = || format!("unexpected reply to the claim script: {reply:?}");
    let Value::Array(parts) = &reply else {
        return Err(bad());
    };
    let [Value::Int(wait), Value::Array(items)] = parts.as_slice() else {
        return Err(bad());
    };
    let mut deliveries = Vec::with_capacity(items.len() / 6);
    for item in items.chunks_exact(6) {
        let [Value::BulkString(id), Value::BulkString(name), Value::BulkString(prio), args, Value::Int(attempt), Value::BulkString(token)] =
            item
        else {
            return Err(bad());
        };
        let args = match args {
            Value::BulkString(bytes) => bytes.clone(),
            _ => Vec::new(),
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        deliveries.push(Delivery {
            uuid: Uuid::try_parse_ascii(id).map_err(|_| bad())?,
            task_name: text(name).into(),
            priority: text(prio).parse().map_err(|_| bad())?,
            args: Payload::from_bytes(args),
            attempt: u32::try_from(*attempt).unwrap_or(u32::MAX),
            token: text(token).parse().map_err(|_| bad())?,
        });
    }
    let due_in = u64::try_from(*wait).ok();
    Ok((deliveries, due_in))
}

/// A task record (the fields of its hash, see the key layout in `scripts`).
pub(crate) fn decode_record(
    uuid: Uuid,
    mut fields: HashMap<String, Vec<u8>>,
) -> std::result::Result<Task, String> {
    let args = Payload::from_bytes(fields.remove("a").unwrap_or_default());
    let returning = fields.remove("r").map(Payload::from_bytes);
    let text = |name: &str| {
        fields
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let number = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let status_text = text("s").unwrap_or_default();
    let status = TaskStatus::parse(&status_text)
        .ok_or_else(|| format!("task {uuid} has an unknown status {status_text:?} in Redis"))?;
    let mut task = Task::new(
        uuid,
        text("n").unwrap_or_default(),
        text("p").and_then(|p| p.parse().ok()).unwrap_or(0),
        args,
        from_epoch_ms(number(text("c"))),
    );
    task.status = status;
    task.updated_at = match text("u") {
        Some(u) => from_epoch_ms(number(Some(u))),
        None => task.created_at,
    };
    task.attempts = u32::try_from(number(text("at"))).unwrap_or(u32::MAX);
    task.traceback = text("tb");
    task.cancel_reason = text("cr");
    if let Some(reason) = text("dr") {
        task.extra.insert("dead_letter".into(), reason);
    }
    task.returning = returning;
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn claim_replies_are_decoded() {
        let id = Uuid::new_v4();
        let reply = Value::Array(vec![
            Value::Int(250),
            Value::Array(vec![
                bulk(&id.hyphenated().to_string()),
                bulk("send_mail"),
                bulk("-3"),
                Value::BulkString(vec![0x91, 0x01]),
                Value::Int(2),
                bulk("17"),
            ]),
        ]);
        let (deliveries, due_in) = parse_claim(reply).unwrap();
        assert_eq!(due_in, Some(250));
        let [d] = deliveries.as_slice() else {
            panic!("one delivery: {deliveries:?}")
        };
        assert_eq!(d.uuid, id);
        assert_eq!(d.task_name, "send_mail");
        assert_eq!((d.priority, d.attempt, d.token), (-3, 2, 17));
        assert_eq!(d.args.as_bytes(), [0x91, 0x01]);
        let idle = Value::Array(vec![Value::Int(-1), Value::Array(Vec::new())]);
        assert_eq!(parse_claim(idle).unwrap().1, None);
    }

    #[test]
    fn malformed_claim_replies_are_errors() {
        let id = bulk(&Uuid::new_v4().hyphenated().to_string());
        let item = |uuid: Value, prio: &str| {
            Value::Array(vec![
                Value::Int(-1),
                Value::Array(vec![
                    uuid,
                    bulk("t"),
                    bulk(prio),
                    bulk(""),
                    Value::Int(1),
                    bulk("1"),
                ]),
            ])
        };
        for reply in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![bulk("1"), Value::Array(Vec::new())]),
            item(bulk("not-a-uuid"), "0"),
            item(id.clone(), "high"),
            item(Value::Int(3), "0"),
        ] {
            let err = parse_claim(reply).unwrap_err();
            assert!(err.contains("unexpected reply"), "{err}");
        }
        assert!(parse_claim(item(id, "0")).is_ok());
    }

    #[test]
    fn records_are_decoded_and_bad_ones_rejected() {
        let id = Uuid::new_v4();
        let fields = |pairs: &[(&str, &str)]| -> HashMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        let task = decode_record(
            id,
            fields(&[
                ("n", "t"),
                ("p", "4"),
                ("s", "retry"),
                ("c", "1000"),
                ("at", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(task.status, TaskStatus::Retry);
        assert_eq!((task.priority, task.attempts), (4, 2));
        assert_eq!(task.created_at, from_epoch_ms(1000));
        assert_eq!(task.updated_at, task.created_at);
        assert!(task.extra.is_empty());
        // Missing or garbled optional fields get defaults; an unknown status is an error.
        let sparse = decode_record(id, fields(&[("s", "new"), ("p", "x"), ("c", "?")])).unwrap();
        assert_eq!((sparse.priority, sparse.created_at), (0, UNIX_EPOCH));
        let err = decode_record(id, fields(&[("s", "exploded")])).unwrap_err();
        assert!(err.contains("unknown status"), "{err}");
        assert!(decode_record(id, HashMap::new()).is_err());
    }

    #[test]
    fn keys_and_times() {
        assert_eq!(key_prefix("shop"), "{shop}:");
        assert_eq!(glob_escape("{a*b}:[x]?\\"), "{a\\*b}:\\[x\\]\\?\\\\");
        assert_eq!(millis(Duration::from_micros(2500)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(epoch_ms(from_epoch_ms(123_456)), 123_456);
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
