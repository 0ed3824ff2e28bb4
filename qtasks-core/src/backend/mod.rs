//! The component traits a backend implements ([`Broker`], [`Storage`], [`GlobalConfig`]) and
//! the wire types they exchange with the app and the worker. For backend authors.
//!
//! The memory and Redis backends implement the same traits and pass the same conformance
//! suite (`qtasks_core::testing::conformance`, feature `testing`). A backend is found by the
//! scheme of `broker_url` among the [`BACKENDS`] registered at link time (`memory` is the
//! default).
//!
//! ## Who owns what
//!
//! | component | owns | calls |
//! |---|---|---|
//! | [`Broker`] | the queue (ready entries per priority, delayed entries, leases, the dead-letter, pauses) **and every write to a task's record**: `new` at enqueue, `process` at claim, the final status with its result or error (and the result TTL), `retry`, `cancel`, and the administration (retrying or deleting failed tasks, purging finished ones) | `enqueue`, `claim`, `complete`, `requeue`, `renew`, `cancel`, `stats`, `retry_dead`, `delete`, `purge`, `set_paused`, `pauses` |
//! | [`Storage`] | nothing it writes: it reads records and results, lists them from the per-status indexes, and waits for a record to become final | `get`, `wait`, `list`, `throughput` |
//! | [`GlobalConfig`] | the shared key-value store, timer tick claims, worker heartbeats | `set`, `get`, `delete`, `get_all`, `try_claim`, `heartbeat`, `live_workers` |
//!
//! Why the broker writes results: finishing a task moves it out of the queue (its lease is
//! dropped, or a retry is scheduled) and records its final status and result, and the two must
//! happen in one atomic step. If they were two calls on two components, a crash between them
//! would leave a task finished but still leased (run again: a duplicate), or out of the queue
//! with no result (lost). So the component that owns the queue owns the record's transitions,
//! and `Storage` is the read side: wrapping it (`AppBuilder::map_backend`) sees every read
//! and wait, wrapping the broker sees every write.

pub mod envelope;
mod held;
pub mod inspect;
mod notices;
mod wire;

pub use held::Held;
pub use notices::Notices;

pub use wire::{
    decode_attempt, encode_attempt, AttemptRun, CancelOutcome, CancelRequest, Completion,
    DeadLetterReason, Delivery, Existing, Lease, Migrated, NewTask, Outcome, QueueStats, TaskMeta,
    TraceContext,
};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use linkme::distributed_slice;
use uuid::Uuid;

use crate::app::config::Config;
use crate::control::{QueueSelection, TaskLimits};
use crate::error::Result;
use crate::task::payload::Payload;
use crate::task::record::Task;
use inspect::{MinuteCount, MinuteLatency, PauseTarget, Pauses, Purge, TaskPage, TaskQuery};

/// The queue: enqueue, claim, acknowledge.
pub trait Broker: Send + Sync + 'static {
    /// Writes each task's record (status `new`) and queue entry, atomically per task.
    /// A task whose unique key ([`NewTask::flow`]) another task holds is not written: it is
    /// returned as [`Existing`] (with debounce, the holder takes its arguments and start
    /// time first). A backend that does not apply flow keys refuses a batch that has any,
    /// with an error saying so ([`NewTask::refuse_flow`]), rather than ignore them.
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<Vec<Existing>>>;

    /// Sets the concurrency and rate limits the claims of this app apply, one entry per
    /// limited task name (a worker calls it when it starts, with its app's tasks). Limits
    /// hold for every worker process of the app together. The default accepts no limit: it
    /// fails, naming the tasks, when `limits` is not empty.
    fn set_limits(&self, limits: &[TaskLimits]) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = limits.iter().map(|l| l.task_name.as_str()).collect();
        Err(inspect::unsupported(
            "broker",
            &format!(
                "limit the concurrency or rate of tasks {} (remove the limits, or switch to a \
                 backend that has them)",
                names.join(", ")
            ),
        ))
    }

    /// Sets the queues the claims of this process take from (a worker calls it when it
    /// starts): by weight, or in strict order. The default serves the default queue alone: it
    /// fails, naming the queues, for any other selection.
    fn set_queues(&self, queues: &QueueSelection) -> Result<()> {
        if queues.is_default_only() {
            return Ok(());
        }
        Err(inspect::unsupported(
            "broker",
            &format!("serve named queues ({queues}) (switch to a backend that has them)"),
        ))
    }

    /// Claims up to `max` ready tasks, lowest priority number first and FIFO within one
    /// priority, waiting (on a wake-up, never a poll) until at least one is ready. Claimed
    /// tasks are `process` in storage. Dropping the future before it resolves loses nothing.
    fn claim(&self, max: usize) -> BoxFuture<'_, Result<Vec<Delivery>>>;

    /// [`claim`](Self::claim), also marking the first `start` of the claimed tasks as started
    /// in the same step, as [`started`](Self::started) would: the worker has that many lanes
    /// free, so those tasks begin at once and need no `started` call of their own (a round
    /// trip fewer before they run). Returns the deliveries, in claim order, and how many of the
    /// first ones were marked. The default claims and marks none (the worker then calls
    /// `started` for every delivery, as for `claim`); a backend with leases overrides it, and a
    /// wrapper around another broker forwards it (or its tasks pay that round trip again).
    fn claim_starting(
        &self,
        max: usize,
        start: usize,
    ) -> BoxFuture<'_, Result<(Vec<Delivery>, usize)>> {
        let _ = start;
        let claim = self.claim(max);
        Box::pin(async move { Ok((claim.await?, 0)) })
    }

    /// Acknowledges finished executions: writes the final status and result (with the result
    /// TTL), or schedules the retry, and wakes whoever waits. Returns the leases that were
    /// rejected because their fencing token is stale.
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, Result<Vec<Lease>>>;

    /// Stores a running task's progress on its record, while `lease` is its current claim;
    /// returns whether it was stored (false: the claim is no longer current). The default
    /// keeps no progress: it fails saying so.
    fn progress<'a>(&'a self, lease: Lease, value: &'a Payload) -> BoxFuture<'a, Result<bool>> {
        let _ = (lease, value);
        Box::pin(async { Err(inspect::unsupported("broker", "keep a task's progress")) })
    }

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

    /// Marks claimed tasks as started, in one call, before the worker runs them: from now on
    /// a lost lease of theirs counts as a delivery (`max_deliveries`, then the dead-letter
    /// with [`DeadLetterReason::CrashedWorker`]); a task claimed but never started (prefetched
    /// by a worker that died) goes back without a delivery counted. Returns the leases that
    /// are no longer this worker's (expired and taken back): the worker must not start those.
    /// The default does nothing: in-process backends never lose a lease.
    fn started<'a>(&'a self, _leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Renews the leases of claimed tasks, in one call. Returns the leases that are no longer
    /// this worker's (they expired and were taken back, or their task was acknowledged since):
    /// the worker stops what it holds under them.
    fn renew<'a>(&'a self, _leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Cancellations of running tasks asked by other processes, for the worker to apply.
    /// `None` (the default) when [`App::cancel`](crate::App::cancel) reaches every worker
    /// directly, as with an in-process backend.
    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        None
    }

    /// Queues failed tasks (status `error`, dead-lettered or not) again with status `new`,
    /// leaving them out of the dead-letter. Returns the ones that were queued; uuids of
    /// tasks in another status, or unknown, are skipped.
    fn retry_dead<'a>(&'a self, _uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(async { Err(inspect::unsupported("broker", "retry failed tasks")) })
    }

    /// Deletes finished tasks' records (status `success`, `error` or `cancel`) and their
    /// dead-letter entries. Returns the ones deleted; queued or running tasks are skipped
    /// (cancel them first).
    fn delete<'a>(&'a self, _uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(async { Err(inspect::unsupported("broker", "delete tasks")) })
    }

    /// Deletes the finished records that `purge` selects; returns how many.
    fn purge<'a>(&'a self, _purge: &'a Purge) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async { Err(inspect::unsupported("broker", "purge finished tasks")) })
    }

    /// Pauses (`paused = true`) or resumes claims of a task name or of the whole app, for
    /// every process of the app; enqueues go on while paused.
    fn set_paused<'a>(
        &'a self,
        _target: &'a PauseTarget,
        _paused: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Err(inspect::unsupported("broker", "pause claims")) })
    }

    /// What is paused now.
    fn pauses(&self) -> BoxFuture<'_, Result<Pauses>> {
        Box::pin(async { Ok(Pauses::default()) })
    }

    /// Brings the backend's schema (tables, indexes, functions) up to date without starting
    /// anything, for a deployment's `migrate` step (the CLI's `migrate`). `None` (the
    /// default): the backend has no schema to migrate (in-process, Redis).
    fn migrate(&self) -> BoxFuture<'_, Result<Option<Migrated>>> {
        Box::pin(async { Ok(None) })
    }
}

/// Task records and results.
pub trait Storage: Send + Sync + 'static {
    /// Reads a task's record.
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>>;

    /// Waits until the task is final and returns it; `Ok(None)` when `timeout` passes first.
    /// Waiting is a notification, never a poll. An unknown uuid is [`Error::NotFound`](crate::Error::NotFound).
    /// A wait that times out or is dropped leaves nothing behind.
    fn wait(&self, uuid: Uuid, timeout: Duration) -> BoxFuture<'_, Result<Option<Task>>>;

    /// How many waits this process has parked right now, for diagnostics and the conformance
    /// suite; `None` (the default) when the component does not count them.
    fn parked_waits(&self) -> Option<usize> {
        None
    }

    /// One page of tasks, newest first (by `updated_at`), read from the per-status indexes:
    /// never a scan of the key space.
    fn list<'a>(&'a self, _query: &'a TaskQuery) -> BoxFuture<'a, Result<TaskPage>> {
        Box::pin(async { Err(inspect::unsupported("storage", "list tasks")) })
    }

    /// How many tasks ended with `success` and `error` in each of the last `minutes`
    /// minutes, oldest first, the current minute last.
    fn throughput(&self, _minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteCount>>> {
        Box::pin(async { Err(inspect::unsupported("storage", "count finished tasks")) })
    }

    /// The latency of the attempts that ended in each of the last `minutes` minutes, oldest
    /// first, the current minute last: enqueue to start (first attempts) and execution time,
    /// as the workers timed them ([`Completion::run`]), in the buckets of
    /// [`LatencyHistogram`](inspect::LatencyHistogram).
    fn latency(&self, _minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteLatency>>> {
        Box::pin(async { Err(inspect::unsupported("storage", "report latency")) })
    }
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
