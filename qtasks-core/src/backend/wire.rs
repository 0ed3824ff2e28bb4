//! The wire types: what the app, the worker and a backend pass each other
//! ([`NewTask`], [`Delivery`], [`Lease`], [`Completion`], [`Outcome`], ...).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::backend::inspect::{from_unix_ms, unix_ms};
use crate::control::FlowKeys;
use crate::task::name::TaskName;
use crate::task::payload::Payload;
use crate::task::record::Attempt;
use crate::task::status::TaskStatus;

/// A task to enqueue: the record is written with status `new` together with its queue entry.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The task's id.
    pub uuid: Uuid,
    /// The registered task name.
    pub task_name: TaskName,
    /// Lower runs first; FIFO within one priority.
    pub priority: i32,
    /// The encoded arguments.
    pub args: Payload,
    /// Enqueue time.
    pub created_at: SystemTime,
    /// Not to run before this time (delayed tasks).
    pub not_before: Option<SystemTime>,
    /// The producer's span context, when it had one to pass on (feature `opentelemetry`);
    /// backends store it with the task ([`envelope`](crate::backend::envelope)).
    pub trace: Option<Box<TraceContext>>,
    /// The task's unique, debounce, concurrency and rate keys, when its options or the call
    /// ask for any (`None` for most tasks); see [`control`](crate::control).
    pub flow: Option<Box<FlowKeys>>,
}

/// A task of an enqueue batch that was not written because an earlier task holds its unique
/// key: the enqueue returns that task instead (with debounce, after giving it the new
/// arguments and start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// The position of the task in the batch.
    pub index: usize,
    /// The task that holds the key.
    pub uuid: Uuid,
}

/// A task claimed by a worker: it is `process` in storage and leased to this worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The task's id.
    pub uuid: Uuid,
    /// The registered task name.
    pub task_name: TaskName,
    /// The priority it was enqueued with.
    pub priority: i32,
    /// The encoded arguments.
    pub args: Payload,
    /// Which run this is (1 for the first).
    pub attempt: u32,
    /// The fencing token of this claim: completing with an older token is rejected.
    pub token: u64,
    /// When it was enqueued and the producer's span context, as far as the backend keeps
    /// them with the queue entry.
    pub meta: TaskMeta,
}

/// What a delivery carries for observability besides its call: the enqueue time (for the
/// queue-time histogram) and the producer's span context (for trace propagation). Backends
/// fill in what they keep; `Default` is "nothing known".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMeta {
    /// When the task was enqueued.
    pub enqueued_at: Option<SystemTime>,
    /// The span context of the code that enqueued it.
    pub trace: Option<Box<TraceContext>>,
}

/// A span context in its W3C Trace Context form: what a producer passes to the worker that
/// runs its task, in any process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The `traceparent` header: `00-<trace id>-<parent span id>-<flags>`.
    pub traceparent: String,
    /// The `tracestate` header (vendor data; often empty).
    pub tracestate: String,
}

impl TraceContext {
    /// The key of the `traceparent` in a record's `extra` (backends that keep records as
    /// [`Task`](crate::Task) values store the span context there).
    pub const EXTRA_TRACEPARENT: &'static str = "traceparent";
    /// The key of the `tracestate` in a record's `extra` (absent when empty).
    pub const EXTRA_TRACESTATE: &'static str = "tracestate";

    /// Writes this span context into a record's `extra`.
    pub fn write_extra(&self, extra: &mut BTreeMap<String, String>) {
        extra.insert(Self::EXTRA_TRACEPARENT.into(), self.traceparent.clone());
        if !self.tracestate.is_empty() {
            extra.insert(Self::EXTRA_TRACESTATE.into(), self.tracestate.clone());
        }
    }

    /// The span context a record's `extra` holds, if any.
    pub fn from_extra(extra: &BTreeMap<String, String>) -> Option<Box<Self>> {
        let traceparent = extra.get(Self::EXTRA_TRACEPARENT)?;
        Some(Box::new(TraceContext {
            traceparent: traceparent.clone(),
            tracestate: extra
                .get(Self::EXTRA_TRACESTATE)
                .cloned()
                .unwrap_or_default(),
        }))
    }
}

impl NewTask {
    /// For a backend that does not apply flow keys: an error naming the first task of `tasks`
    /// that has any (unique, debounce, per-key limits) and saying what to do, so that the
    /// option is never silently ignored; `Ok` when none has.
    pub fn refuse_flow(tasks: &[NewTask]) -> crate::error::Result<()> {
        match tasks.iter().find(|t| t.flow.is_some()) {
            None => Ok(()),
            Some(task) => Err(super::inspect::unsupported(
                "broker",
                &format!(
                    "keep task {} ({}) unique, debounced or limited per key (remove the \
                     option or the call's unique_key, or switch to a backend that has them); no task \
                     of this batch was written",
                    task.task_name, task.uuid
                ),
            )),
        }
    }
}

impl Delivery {
    /// Enqueue to `start`, for a first attempt whose enqueue time the backend kept (a retry
    /// waits for its backoff, which is not queueing).
    pub fn queued_until(&self, start: SystemTime) -> Option<Duration> {
        let at = self.meta.enqueued_at.filter(|_| self.attempt <= 1)?;
        Some(start.duration_since(at).unwrap_or_default())
    }

    /// The lease reference of this delivery.
    pub fn lease(&self) -> Lease {
        Lease {
            uuid: self.uuid,
            token: self.token,
        }
    }
}

/// A claimed task, by uuid and fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The task's id.
    pub uuid: Uuid,
    /// The fencing token of the claim.
    pub token: u64,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Status `success` with the encoded result.
    Success(Payload),
    /// Status `error` with the message and source chain.
    Failed {
        /// The error message with its source chain.
        traceback: String,
    },
    /// Status `cancel` with the reason.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Status `retry`; the task runs again after `delay`.
    Retry {
        /// The error of this attempt.
        traceback: String,
        /// When to run again.
        delay: Duration,
    },
    /// Status `new` again: the task asked to run later without spending an attempt
    /// ([`TaskError::rate_limited`](crate::TaskError::rate_limited), for an external API that
    /// answered "too many requests"); it runs again after `delay`.
    Later {
        /// When to run again.
        delay: Duration,
    },
    /// Status `error`, never retried: the task cannot run at all (bad input). Backends that
    /// have a dead-letter structure keep the record there with its raw arguments.
    DeadLetter {
        /// Why the task cannot run.
        reason: DeadLetterReason,
        /// The error with what to do about it.
        traceback: String,
    },
}

/// Why a task ended in the dead-letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// No worker of the app has a task of this name.
    UnknownTask,
    /// The arguments are not valid MessagePack or do not fit the task's parameters.
    BadArguments,
    /// Executions of the task began and their worker vanished (the lease expired) more often
    /// than the backend allows: the task most likely crashes its worker. Only executions that
    /// started count ([`Broker::started`](crate::backend::Broker::started)).
    CrashedWorker,
    /// The backend found the task's stored record incomplete or unreadable (a field missing,
    /// a priority that is not a number); the raw record is kept with the dead-letter entry.
    MalformedRecord,
    /// The backend found something other than a task record under the task's key (a key of
    /// another type, written by something else in the app's key space).
    WrongType,
}

impl DeadLetterReason {
    /// The wire name (`unknown_task`, `bad_arguments`, `crashed_worker`, `malformed_record`,
    /// `wrong_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::UnknownTask => "unknown_task",
            DeadLetterReason::BadArguments => "bad_arguments",
            DeadLetterReason::CrashedWorker => "crashed_worker",
            DeadLetterReason::MalformedRecord => "malformed_record",
            DeadLetterReason::WrongType => "wrong_type",
        }
    }

    /// Parses a wire name (`too_many_deliveries`, the name before `crashed_worker`, too).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unknown_task" => DeadLetterReason::UnknownTask,
            "bad_arguments" => DeadLetterReason::BadArguments,
            "crashed_worker" | "too_many_deliveries" => DeadLetterReason::CrashedWorker,
            "malformed_record" => DeadLetterReason::MalformedRecord,
            "wrong_type" => DeadLetterReason::WrongType,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to stop a task that a worker of this app runs, possibly in another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The running task.
    pub uuid: Uuid,
    /// Why it is cancelled.
    pub reason: String,
}

/// The end of one execution, acknowledged to the broker.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Which claim ends.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// The run as its worker timed it (`None` for an outcome a backend decides about a task
    /// that never ran): backends keep it in the record's [`history`](crate::Task::history)
    /// and count it in the latency figures ([`LatencyBatch`](super::inspect::LatencyBatch)).
    pub run: Option<AttemptRun>,
}

/// One run of a claimed task as its worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRun {
    /// The id of the worker that ran it.
    pub worker: Arc<str>,
    /// When it started.
    pub started_at: SystemTime,
    /// When it ended.
    pub finished_at: SystemTime,
    /// Enqueue to this start, for a first attempt whose enqueue time the backend kept.
    pub queued: Option<Duration>,
}

impl AttemptRun {
    /// The run of `delivery` by `worker` that started at `started_at` and ends now.
    pub fn ended_now(worker: &Arc<str>, delivery: &Delivery, started_at: SystemTime) -> Self {
        AttemptRun {
            worker: worker.clone(),
            started_at,
            finished_at: SystemTime::now(),
            queued: delivery.queued_until(started_at),
        }
    }
}

impl Completion {
    /// The ended attempt `attempt` of this completion, for the record's history (`None`
    /// without a [`run`](Self::run)).
    pub fn attempt(&self, attempt: u32) -> Option<Attempt> {
        let run = self.run.as_ref()?;
        Some(Attempt {
            attempt,
            worker: run.worker.to_string(),
            started_at: run.started_at,
            finished_at: run.finished_at,
            status: self.outcome.status(),
        })
    }
}

impl Outcome {
    /// The status the attempt ended in (`retry` for a retry, `error` for a dead-letter).
    pub fn status(&self) -> TaskStatus {
        match self {
            Outcome::Success(_) => TaskStatus::Success,
            Outcome::Failed { .. } | Outcome::DeadLetter { .. } => TaskStatus::Error,
            Outcome::Cancelled { .. } => TaskStatus::Cancel,
            Outcome::Retry { .. } => TaskStatus::Retry,
            // Queued again, the attempt not spent.
            Outcome::Later { .. } => TaskStatus::New,
        }
    }
}

/// An ended attempt in the text form the Redis and PostgreSQL backends store (the attempt
/// number is kept where they keep the entry: a field name, a position):
/// `<start ms>:<ms it took>:<status letter>:<worker id>`, the status `s`, `e`, `c` or `r`.
/// Short on purpose: on Redis a record whose every value fits in 64 bytes stays a compact
/// listpack (a longer value turns the whole hash into a hash table, which costs Redis about
/// 10 k more instructions per task for the no-op records of the bench).
pub fn encode_attempt(run: &AttemptRun, status: TaskStatus) -> String {
    let started = unix_ms(run.started_at);
    let took = unix_ms(run.finished_at).saturating_sub(started);
    let letter = &status.as_str()[..1];
    let mut out = String::with_capacity(24 + run.worker.len());
    out.push_str(&started.to_string());
    out.push(':');
    out.push_str(&took.to_string());
    out.push(':');
    out.push_str(letter);
    out.push(':');
    out.push_str(&run.worker);
    out
}

/// Attempt number `attempt` from its [`encode_attempt`] form; `None` when the text does not
/// read as one.
pub fn decode_attempt(attempt: u32, text: &str) -> Option<Attempt> {
    let mut parts = text.splitn(4, ':');
    let started: u64 = parts.next()?.parse().ok()?;
    let took: u64 = parts.next()?.parse().ok()?;
    let status = match parts.next()? {
        "s" => TaskStatus::Success,
        "e" => TaskStatus::Error,
        "c" => TaskStatus::Cancel,
        "r" => TaskStatus::Retry,
        _ => return None,
    };
    Some(Attempt {
        attempt,
        worker: parts.next()?.to_string(),
        started_at: from_unix_ms(started),
        finished_at: from_unix_ms(started.saturating_add(took)),
        status,
    })
}

/// What `cancel` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was queued (or waiting for a retry) and is now `cancel`; it will never run.
    Cancelled,
    /// The task is running; the worker running it must stop it.
    Running,
    /// The task had already finished.
    Finished,
    /// No such task.
    NotFound,
}

/// What [`Broker::migrate`](super::Broker::migrate) did to a backend's schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migrated {
    /// The schema's version afterwards (the newest migration applied).
    pub version: u32,
    /// The migrations this call applied, oldest first; empty when the schema was up to date.
    pub applied: Vec<String>,
}

/// Runtime figures of a backend, for `stats` and inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueStats {
    /// Tasks ready to run, per priority (every queue together).
    pub ready_by_priority: BTreeMap<i32, u64>,
    /// Tasks ready to run, per named queue (`default` for the tasks that name none); empty
    /// when the backend has no named queues.
    #[serde(default)]
    pub ready_by_queue: BTreeMap<String, u64>,
    /// Tasks waiting for a later time (delayed, or retry backoff).
    pub scheduled: u64,
    /// Tasks claimed by workers and not yet acknowledged.
    pub running: u64,
    /// Known task records per status (`new`, `process`, `success`, ...).
    pub by_status: BTreeMap<String, u64>,
    /// Entries in the dead-letter structure (backends that have one).
    pub dead_letter: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_reads_back_from_its_stored_form() {
        let run = AttemptRun {
            worker: "host:12:w-1".into(),
            started_at: from_unix_ms(1_700_000_000_123),
            finished_at: from_unix_ms(1_700_000_000_456),
            queued: None,
        };
        let text = encode_attempt(&run, TaskStatus::Retry);
        assert_eq!(text, "1700000000123:333:r:host:12:w-1");
        let done = Completion {
            lease: Lease {
                uuid: Uuid::nil(),
                token: 1,
            },
            outcome: Outcome::Retry {
                traceback: String::new(),
                delay: Duration::ZERO,
            },
            run: Some(run),
        };
        assert_eq!(decode_attempt(3, &text), done.attempt(3));
        assert_eq!(decode_attempt(1, "12:x:success:w"), None);
        assert_eq!(decode_attempt(1, "12:13:x:w"), None);
    }
}
