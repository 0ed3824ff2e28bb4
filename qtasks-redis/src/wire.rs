//! What goes over the wire to the scripts and back: the keys of an app, durations and times
//! as milliseconds, lease arguments, and the decoding of the scripts' replies (claimed tasks,
//! lease positions, the reports of dropped entries) and of task records. Nothing here trusts
//! data from Redis: a claim reply is decoded entry by entry (a bad entry is set aside, the
//! others are delivered), a malformed record is an error (or a default for a missing optional
//! field), never a panic.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use deadpool_redis::redis::Value;
use qtasks_core::backend::{decode_attempt, envelope, Delivery, Lease};
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

/// An entry a script dropped or dead-lettered (a queue entry, a lease, a record), with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// The entry: a task's uuid, or what was found where one was expected.
    pub(crate) entry: String,
    /// The dead-letter reason (`malformed_record`, `wrong_type`, `crashed_worker`).
    pub(crate) reason: String,
    /// What is wrong with it.
    pub(crate) detail: String,
    /// The task's name, when the script found one (a dead-lettered record's `n`).
    pub(crate) task: Option<String>,
}

/// The `report` part of a script's reply: entry, reason, detail and task name quadruples (an
/// empty name: none known).
pub(crate) fn parse_report(value: &Value) -> Vec<Dropped> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .chunks_exact(4)
        .map(|quad| {
            let text = |v: &Value| match v {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                Value::Int(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            let task = text(&quad[3]);
            Dropped {
                entry: text(&quad[0]),
                reason: text(&quad[1]),
                detail: text(&quad[2]),
                task: (!task.is_empty()).then_some(task),
            }
        })
        .collect()
}

/// A script reply of the shape `{positions, report}` (renew, started, complete): the leases
/// at those 1-based positions of `leases`, and the report. A position outside the batch would
/// be a script bug, and is skipped.
pub(crate) fn parse_positions(
    reply: &Value,
    leases: &[Lease],
) -> std::result::Result<(Vec<Lease>, Vec<Dropped>), String> {
    let bad = || format!("unexpected reply of a lease script: {reply:?}");
    let Value::Array(parts) = reply else {
        return Err(bad());
    };
    let (positions, report) = match parts.as_slice() {
        [Value::Array(positions), report, ..] => (positions, parse_report(report)),
        // The reply of scripts before the report was added.
        _ => (parts, Vec::new()),
    };
    let mut out = Vec::with_capacity(positions.len());
    for position in positions {
        let Value::Int(k) = position else {
            return Err(bad());
        };
        if let Some(lease) = usize::try_from(*k - 1).ok().and_then(|i| leases.get(i)) {
            out.push(*lease);
        }
    }
    Ok((out, report))
}

/// What the claim script asks of the caller besides running the deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimMode {
    /// Nothing.
    Normal,
    /// The one delivery is a suspect: the process runs it alone.
    Suspect,
    /// A suspect waits for an idle worker: claim again once this process holds nothing.
    Drain,
}

/// The claim script's reply.
#[derive(Debug)]
pub(crate) struct Claimed {
    /// The tasks claimed.
    pub(crate) deliveries: Vec<Delivery>,
    /// How many of the first deliveries the claim marked started.
    pub(crate) started: usize,
    /// How long until something is due (ms), if anything is.
    pub(crate) due_in: Option<u64>,
    /// What else the caller does.
    pub(crate) mode: ClaimMode,
    /// Entries the script dropped or dead-lettered.
    pub(crate) report: Vec<Dropped>,
    /// Entries of the reply that cannot be decoded, with why: claimed in Redis, but not
    /// deliverable. The caller dead-letters those whose lease is known.
    pub(crate) undecodable: Vec<(Option<Lease>, String)>,
}

/// The claim script's reply, decoded entry by entry: an entry that cannot be decoded is set
/// aside in `undecodable` and the others are delivered. Only a reply of the wrong shape as a
/// whole is an error.
/// The claim script's reply to a claim that marked the first `start` entries started.
pub(crate) fn parse_claim(reply: Value, start: usize) -> std::result::Result<Claimed, String> {
    let bad = |reply: &Value| format!("unexpected reply to the claim script: {reply:?}");
    let Value::Array(parts) = reply else {
        return Err(bad(&reply));
    };
    let mut parts = parts.into_iter();
    let (wait, items, mode, report) = match (parts.next(), parts.next(), parts.next(), parts.next())
    {
        (Some(Value::Int(wait)), Some(Value::Array(items)), mode, report) => {
            let mode = match mode {
                Some(Value::BulkString(m)) if m.as_slice() == b"suspect" => ClaimMode::Suspect,
                Some(Value::BulkString(m)) if m.as_slice() == b"drain" => ClaimMode::Drain,
                _ => ClaimMode::Normal,
            };
            let report = report.map(|r| parse_report(&r)).unwrap_or_default();
            (wait, items, mode, report)
        }
        (first, second, ..) => {
            let shown = Value::Array(first.into_iter().chain(second).collect());
            return Err(bad(&shown));
        }
    };
    let mut deliveries = Vec::with_capacity(items.len() / 2);
    let mut undecodable = Vec::new();
    let mut started = 0;
    let mut items = items.into_iter().enumerate();
    while let Some((at, entry)) = items.next() {
        let token = items.next().map_or(Value::Nil, |(_, token)| token);
        match (entry, &token) {
            (Value::BulkString(entry), Value::BulkString(token)) => {
                match decode_delivery(entry, token) {
                    Ok(d) => {
                        // Entries come in pairs: the `at / 2`-th claimed task.
                        if at / 2 < start {
                            started += 1;
                        }
                        deliveries.push(d);
                    }
                    Err((lease, why)) => undecodable.push((lease, why)),
                }
            }
            (entry, token) => undecodable.push((
                None,
                format!("an entry of the claim reply has the wrong shape: {entry:?}, {token:?}"),
            )),
        }
    }
    Ok(Claimed {
        deliveries,
        started,
        due_in: u64::try_from(wait).ok(),
        mode,
        report,
        undecodable,
    })
}

/// Reads a decimal number up to the next `:` of `rest`, returning it and what follows.
fn field<'a, T: std::str::FromStr>(
    rest: &'a [u8],
    what: &str,
) -> std::result::Result<(T, &'a [u8]), String> {
    let end = rest
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("the {what} is missing"))?;
    let text =
        std::str::from_utf8(&rest[..end]).map_err(|_| format!("the {what} is not a number"))?;
    let value = text
        .parse()
        .map_err(|_| format!("the {what} {text:?} is not a number"))?;
    Ok((value, &rest[end + 1..]))
}

/// One claimed task: its ready entry (`<uuid>:<attempts so far>:<priority>:<name length>:
/// <name><args>`, see `ready_entry` in `lua/prelude.lua`) and the claim's fencing token. The
/// arguments are a view into the entry's buffer, not a copy. On error, the lease when the uuid
/// and token can be read, and what is wrong.
fn decode_delivery(
    entry: Vec<u8>,
    token_text: &[u8],
) -> std::result::Result<Delivery, (Option<Lease>, String)> {
    let uuid = entry
        .get(..36)
        .and_then(|id| Uuid::try_parse_ascii(id).ok());
    let token: Option<u64> = std::str::from_utf8(token_text)
        .ok()
        .and_then(|t| t.parse().ok());
    let lease = uuid.zip(token).map(|(uuid, token)| Lease { uuid, token });
    let fail = |why: String| (lease, why);
    let (Some(uuid), Some(token)) = (uuid, token) else {
        return Err(fail(format!(
            "the claimed entry {:?} has no task uuid or its token {:?} is not a number",
            String::from_utf8_lossy(&entry[..entry.len().min(64)]),
            String::from_utf8_lossy(token_text),
        )));
    };
    let parsed = (|| {
        let rest = entry
            .get(37..)
            .filter(|_| entry[36] == b':')
            .ok_or("the entry ends after its uuid")?;
        let (before, rest): (u32, _) = field(rest, "attempt")?;
        let (priority, rest): (i32, _) = field(rest, "priority")?;
        let (len, rest): (usize, _) = field(rest, "name length")?;
        let name = rest
            .get(..len)
            .ok_or("the entry ends inside the task name")?;
        let name = std::str::from_utf8(name).map_err(|_| "the task name is not UTF-8")?;
        let args_at = entry.len() - rest.len() + len;
        Ok::<_, String>((before, priority, name.to_string(), args_at))
    })();
    let (before, priority, name, args_at) = parsed.map_err(|why: String| fail(why))?;
    let (meta, args) = envelope::split(Bytes::from(entry).slice(args_at..));
    Ok(Delivery {
        uuid,
        task_name: name.into(),
        priority,
        args,
        attempt: before.saturating_add(1),
        token,
        meta,
    })
}

/// A task record (the fields of its hash, see the key layout in `scripts`), with the `run`
/// entry of its current claim (`<token>:<attempt>:<claimed ms>`), if it is claimed: a claimed
/// task is `process`, in its attempt, updated when it was claimed.
pub(crate) fn decode_record(
    uuid: Uuid,
    mut fields: HashMap<String, Vec<u8>>,
    run: Option<&[u8]>,
) -> std::result::Result<Task, String> {
    // The stored arguments may carry the enqueue time and the producer's span context.
    let (meta, args) = envelope::split(fields.remove("a").unwrap_or_default());
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
    // The ended attempts, `h<attempt>` (the last 20 the complete script kept).
    let mut history: Vec<_> = fields
        .iter()
        .filter_map(|(field, value)| {
            let attempt = field.strip_prefix('h')?.parse().ok()?;
            decode_attempt(attempt, std::str::from_utf8(value).ok()?)
        })
        .collect();
    history.sort_by_key(|a| a.attempt);
    task.history = history;
    task.traceback = text("tb");
    task.cancel_reason = text("cr");
    task.progress = fields.get("pg").map(|p| Payload::from_bytes(p.clone()));
    if let Some(reason) = text("dr") {
        task.extra.insert("dead_letter".into(), reason);
    }
    task.returning = returning;
    if let Some(trace) = meta.trace {
        trace.write_extra(&mut task.extra);
    }
    let claim = run.and_then(|r| std::str::from_utf8(r).ok()).and_then(|r| {
        let mut parts = r.split(':').skip(1);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    });
    if let Some((attempt, claimed_ms)) = claim {
        if matches!(task.status, TaskStatus::New | TaskStatus::Retry) {
            task.status = TaskStatus::Process;
            task.attempts = attempt;
            task.updated_at = from_epoch_ms(claimed_ms);
        }
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    /// A ready entry as `ready_entry` in `lua/prelude.lua` writes it.
    fn entry(id: &str, before: &str, prio: &str, name: &str, args: &[u8]) -> Value {
        let mut e = format!("{id}:{before}:{prio}:{}:{name}", name.len()).into_bytes();
        e.extend_from_slice(args);
        Value::BulkString(e)
    }

    #[test]
    fn claim_replies_are_decoded() {
        let id = Uuid::new_v4();
        let reply = Value::Array(vec![
            Value::Int(250),
            Value::Array(vec![
                entry(&id.to_string(), "1", "-3", "send:mail", &[0x91, 0x3a]),
                bulk("17"),
            ]),
            bulk("suspect"),
            Value::Array(vec![
                bulk("garbage"),
                bulk("malformed_record"),
                bulk("not a uuid"),
                bulk(""),
            ]),
        ]);
        let claimed = parse_claim(reply, 0).unwrap();
        assert_eq!(claimed.due_in, Some(250));
        assert_eq!(claimed.mode, ClaimMode::Suspect);
        let [d] = claimed.deliveries.as_slice() else {
            panic!("one delivery: {claimed:?}")
        };
        assert_eq!(d.uuid, id);
        assert_eq!(d.task_name, "send:mail");
        assert_eq!((d.priority, d.attempt, d.token), (-3, 2, 17));
        assert_eq!(d.args.as_bytes(), [0x91, 0x3a]);
        assert_eq!(
            claimed.report,
            vec![Dropped {
                entry: "garbage".into(),
                reason: "malformed_record".into(),
                detail: "not a uuid".into(),
                task: None,
            }]
        );
        let idle = Value::Array(vec![Value::Int(-1), Value::Array(Vec::new())]);
        let idle = parse_claim(idle, 0).unwrap();
        assert_eq!((idle.due_in, idle.mode), (None, ClaimMode::Normal));
    }

    #[test]
    fn bad_entries_of_a_claim_reply_are_set_aside_alone() {
        let good = Uuid::new_v4().to_string();
        let odd = Uuid::new_v4();
        let items = vec![
            entry(&good, "0", "0", "t", b""),
            bulk("1"),
            entry("not-a-uuid-not-a-uuid-not-a-uuid-xxx", "0", "0", "t", b""),
            bulk("2"),
            entry(&odd.to_string(), "0", "high", "t", b""),
            bulk("3"),
            // Shorter than its name length says.
            bulk(&format!("{odd}:0:0:15:short")),
            bulk("4"),
            Value::Int(3),
            bulk("5"),
            entry(&good, "2", "1", "t", b"x"),
            bulk("6"),
        ];
        let reply = Value::Array(vec![Value::Int(-1), Value::Array(items)]);
        // The first three claimed were marked started: of those, one is delivered.
        let claimed = parse_claim(reply, 3).unwrap();
        let tokens: Vec<u64> = claimed.deliveries.iter().map(|d| d.token).collect();
        assert_eq!(tokens, vec![1, 6], "the good entries are delivered");
        assert_eq!(
            claimed.started, 1,
            "only the first delivery was marked started"
        );
        let leases: Vec<_> = claimed.undecodable.iter().map(|(l, _)| *l).collect();
        let lease = |token| Some(Lease { uuid: odd, token });
        assert_eq!(
            leases,
            vec![None, lease(3), lease(4), None],
            "{:?}",
            claimed.undecodable
        );
        assert!(claimed.undecodable[1].1.contains("priority"));
        assert!(claimed.undecodable[2].1.contains("name"));
        for reply in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![bulk("1"), Value::Array(Vec::new())]),
        ] {
            let err = parse_claim(reply, 0).unwrap_err();
            assert!(err.contains("unexpected reply"), "{err}");
        }
    }

    #[test]
    fn lease_positions_are_mapped_back() {
        let leases: Vec<Lease> = (1..=3)
            .map(|token| Lease {
                uuid: Uuid::new_v4(),
                token,
            })
            .collect();
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(3), Value::Int(1), Value::Int(9)]),
            Value::Array(Vec::new()),
        ]);
        let (lost, report) = parse_positions(&reply, &leases).unwrap();
        assert_eq!(lost, vec![leases[2], leases[0]]);
        assert!(report.is_empty());
        let old = Value::Array(vec![Value::Int(2)]);
        assert_eq!(parse_positions(&old, &leases).unwrap().0, vec![leases[1]]);
        assert!(parse_positions(&Value::Int(1), &leases).is_err());
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
            None,
        )
        .unwrap();
        assert_eq!(task.status, TaskStatus::Retry);
        assert_eq!((task.priority, task.attempts), (4, 2));
        assert_eq!(task.created_at, from_epoch_ms(1000));
        assert_eq!(task.updated_at, task.created_at);
        assert!(task.extra.is_empty());
        // Missing or garbled optional fields get defaults; an unknown status is an error.
        let sparse =
            decode_record(id, fields(&[("s", "new"), ("p", "x"), ("c", "?")]), None).unwrap();
        assert_eq!((sparse.priority, sparse.created_at), (0, UNIX_EPOCH));
        let err = decode_record(id, fields(&[("s", "exploded")]), None).unwrap_err();
        assert!(err.contains("unknown status"), "{err}");
        assert!(decode_record(id, HashMap::new(), None).is_err());
        // Claimed: `process`, in the claim's attempt, updated when claimed; a run entry beside
        // a final status (finished meanwhile) or one that cannot be read changes nothing.
        let queued = fields(&[("n", "t"), ("s", "retry"), ("c", "1000"), ("at", "2")]);
        let claimed = decode_record(id, queued.clone(), Some(b"9:3:5000")).unwrap();
        assert_eq!(claimed.status, TaskStatus::Process);
        assert_eq!(claimed.attempts, 3);
        assert_eq!(claimed.updated_at, from_epoch_ms(5000));
        let garbled = decode_record(id, queued, Some(b"9:x:5000")).unwrap();
        assert_eq!(garbled.status, TaskStatus::Retry);
        let done = fields(&[("n", "t"), ("s", "success"), ("c", "1000"), ("at", "3")]);
        let done = decode_record(id, done, Some(b"9:3:5000")).unwrap();
        assert_eq!(done.status, TaskStatus::Success);
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
