//! The component traits a backend implements: [`Broker`], [`Storage`], [`GlobalConfig`].
//!
//! The memory and Redis backends implement the same traits and pass the same conformance
//! suite. A backend is found by the scheme of `broker_url` among the [`BACKENDS`] registered
//! at link time (`memory` is the default).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use linkme::distributed_slice;
use uuid::Uuid;

use crate::{Config, Payload, Result, Task};

/// A task to enqueue: the record is written with status `new` together with its queue entry.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The task's id.
    pub uuid: Uuid,
    /// The registered task name. Borrowed from the task's registry entry when the task is
    /// enqueued in this process, so passing it along allocates nothing.
    pub task_name: Cow<'static, str>,
    /// Lower runs first; FIFO within one priority.
    pub priority: i32,
    /// The encoded arguments.
    pub args: Payload,
    /// Enqueue time.
    pub created_at: SystemTime,
    /// Not to run before this time (delayed tasks).
    pub not_before: Option<SystemTime>,
}

/// A task claimed by a worker: it is `process` in storage and leased to this worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The task's id.
    pub uuid: Uuid,
    /// The registered task name. Borrowed from the task's registry entry when the task is
    /// enqueued in this process, so passing it along allocates nothing.
    pub task_name: Cow<'static, str>,
    /// The priority it was enqueued with.
    pub priority: i32,
    /// The encoded arguments.
    pub args: Payload,
    /// Which run this is (1 for the first).
    pub attempt: u32,
    /// The fencing token of this claim: completing with an older token is rejected.
    pub token: u64,
}

impl Delivery {
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
    /// The task's worker vanished (its lease expired) more often than the backend allows.
    TooManyDeliveries,
}

impl DeadLetterReason {
    /// The wire name (`unknown_task`, `bad_arguments`, `too_many_deliveries`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::UnknownTask => "unknown_task",
            DeadLetterReason::BadArguments => "bad_arguments",
            DeadLetterReason::TooManyDeliveries => "too_many_deliveries",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unknown_task" => DeadLetterReason::UnknownTask,
            "bad_arguments" => DeadLetterReason::BadArguments,
            "too_many_deliveries" => DeadLetterReason::TooManyDeliveries,
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

/// Runtime figures of a backend, for `stats` and inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueStats {
    /// Tasks ready to run, per priority.
    pub ready_by_priority: BTreeMap<i32, u64>,
    /// Tasks waiting for a later time (delayed, or retry backoff).
    pub scheduled: u64,
    /// Tasks claimed by workers and not yet acknowledged.
    pub running: u64,
    /// Known task records per status (`new`, `process`, `success`, ...).
    pub by_status: BTreeMap<String, u64>,
    /// Entries in the dead-letter structure (backends that have one).
    pub dead_letter: u64,
}

/// The queue: enqueue, claim, acknowledge.
pub trait Broker: Send + Sync + 'static {
    /// Writes each task's record (status `new`) and queue entry, atomically per task.
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<()>>;

    /// Claims up to `max` ready tasks, lowest priority number first and FIFO within one
    /// priority, waiting (on a wake-up, never a poll) until at least one is ready. Claimed
    /// tasks are `process` in storage. Dropping the future before it resolves loses nothing.
    fn claim(&self, max: usize) -> BoxFuture<'_, Result<Vec<Delivery>>>;

    /// Acknowledges finished executions: writes the final status and result (with the result
    /// TTL), or schedules the retry, and wakes whoever waits. Returns the leases that were
    /// rejected because their fencing token is stale.
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, Result<Vec<Lease>>>;

    /// Returns claimed tasks to the queue without counting the attempt (graceful shutdown).
    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>>;

    /// Cancels a queued task so it never runs.
    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, Result<CancelOutcome>>;

    /// Queue depth per priority, counts per status, running and dead-lettered tasks.
    fn stats(&self) -> BoxFuture<'_, Result<QueueStats>>;

    /// How long a claim lasts without renewal; `None` when leases never expire (in-process).
    fn lease_duration(&self) -> Option<Duration> {
        None
    }

    /// Renews the leases of claimed tasks, in one call.
    fn renew<'a>(&'a self, _leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Cancellations of running tasks asked by other processes, for the worker to apply.
    /// `None` (the default) when [`App::cancel`](crate::App::cancel) reaches every worker
    /// directly, as with an in-process backend.
    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        None
    }
}

/// Task records and results.
pub trait Storage: Send + Sync + 'static {
    /// Reads a task's record.
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>>;

    /// Waits until the task is final and returns it; `Ok(None)` when `timeout` passes first.
    /// Waiting is a notification, never a poll. An unknown uuid is [`Error::NotFound`](crate::Error::NotFound).
    fn wait(&self, uuid: Uuid, timeout: Duration) -> BoxFuture<'_, Result<Option<Task>>>;
}

/// A key-value store shared by every process of the app, and worker liveness.
pub trait GlobalConfig: Send + Sync + 'static {
    /// Sets a key.
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Reads a key.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>>;
    /// Deletes a key.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Every key and value.
    fn get_all(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>>;
    /// Sets `key` only if it is absent, expiring after `ttl`; returns whether this call set
    /// it. Atomic across every process of the app: timers use it so that one tick fires once.
    fn try_claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;
    /// Records that `worker` is alive for `ttl`. A zero `ttl` marks it gone at once (a worker
    /// that stopped gracefully).
    fn heartbeat<'a>(&'a self, worker: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>>;
    /// The workers whose heartbeat has not expired.
    fn live_workers(&self) -> BoxFuture<'_, Result<Vec<String>>>;
}

/// The three components of one backend.
#[derive(Clone)]
pub struct Backend {
    /// The queue.
    pub broker: Arc<dyn Broker>,
    /// Records and results.
    pub storage: Arc<dyn Storage>,
    /// Shared key-value store and liveness.
    pub global_config: Arc<dyn GlobalConfig>,
}

impl Backend {
    /// A backend whose one value implements all three components.
    pub fn from_shared<B: Broker + Storage + GlobalConfig>(backend: Arc<B>) -> Self {
        Backend {
            broker: backend.clone(),
            storage: backend.clone(),
            global_config: backend,
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend { .. }")
    }
}

/// What a backend factory gets to open a backend.
#[derive(Debug)]
pub struct OpenRequest<'a> {
    /// The app name (key prefix for shared backends).
    pub app_name: &'a str,
    /// The URL, when one was given.
    pub url: Option<&'a str>,
    /// The app's settings.
    pub config: &'a Config,
}

/// A backend that can be picked by URL scheme.
#[derive(Debug)]
pub struct BackendFactory {
    /// The URL scheme (`memory`, `redis`, `rediss`).
    pub scheme: &'static str,
    /// Opens the backend.
    pub open: fn(&OpenRequest<'_>) -> Result<Backend>,
}

/// The backends compiled into this program (by the facade's cargo features).
#[distributed_slice]
pub static BACKENDS: [BackendFactory];
