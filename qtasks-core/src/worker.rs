//! The worker: claims tasks in batches, runs up to `max_tasks_process` at once, acknowledges
//! them in batches, and shuts down gracefully.
//!
//! Shape: one fetcher claims as many tasks as there are free slots (a slot is held by a task
//! from its claim until its acknowledgement: prefetched, running or finished; bounded) and
//! blocks on the broker's wake-up when the queue is empty; `max_tasks_process` lanes take tasks
//! from the claimed-job queue and run them through the executor (no spawn per task); one
//! flusher acknowledges finished tasks in batches (whatever has finished since its last call,
//! so an idle worker acknowledges at once and a busy one in large batches).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backend::{Completion, Delivery, Lease};
use crate::depends::{ScopeCache, ScopeKind};
use crate::{App, Error, Result};

/// Most tasks claimed in one broker call.
const MAX_CLAIM_BATCH: usize = 1024;
/// Most completions acknowledged in one broker call.
const MAX_ACK_BATCH: usize = 1024;
/// How often a worker records that it is alive (`App::ping`, `live_workers`).
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// How long one heartbeat counts: a worker missing three in a row is considered gone.
const HEARTBEAT_TTL: Duration = Duration::from_secs(6);

/// A running worker. Dropping the handle does not stop it; call [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    shared: Arc<WorkerShared>,
    join: tokio::task::JoinHandle<Result<()>>,
}

/// State shared by the worker's parts and by [`App::cancel`].
pub(crate) struct WorkerShared {
    id: String,
    app: App,
    shutdown: CancellationToken,
    inflight: Mutex<FxHashMap<Uuid, Inflight>>,
    dependencies: ScopeCache,
    /// Cancels of tasks the broker already marked running but this worker had not yet
    /// registered (the claim was still on its way): applied when the claim arrives.
    early_cancels: Mutex<Vec<EarlyCancel>>,
    has_early_cancels: AtomicBool,
}

struct EarlyCancel {
    uuid: Uuid,
    reason: String,
    at: Instant,
}

/// How long an unmatched cancel waits for its task's claim to arrive (the task may run on
/// another worker, which got its own copy).
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(60);
/// Most unmatched cancels kept.
const EARLY_CANCEL_MAX: usize = 1024;

struct Inflight {
    token: u64,
    cancel: CancellationToken,
    reason: Option<String>,
}

struct Job {
    delivery: Delivery,
    cancel: CancellationToken,
}

static WORKER_SEQ: AtomicU64 = AtomicU64::new(1);

impl WorkerHandle {
    pub(crate) fn spawn(app: App) -> Self {
        let id = format!(
            "{}-{}-{}",
            app.name(),
            std::process::id(),
            WORKER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let shared = Arc::new(WorkerShared::new(app, id));
        let join = tokio::spawn(run(shared.clone()));
        WorkerHandle { shared, join }
    }

    /// The handle of a worker of one's own (a [`Worker`](crate::component::Worker) that does
    /// not wrap the built-in one). `run` gets a [`WorkerRunner`]: it claims tasks itself, runs
    /// each through [`WorkerRunner::execute`] (the executor pipeline) and returns once
    /// [`WorkerRunner::stopping`] resolves (which [`WorkerHandle::shutdown`] triggers). The
    /// worker's dependency scope is closed after `run` returns. Spawned on the current tokio
    /// runtime.
    pub fn custom<F, Fut>(app: &App, id: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(WorkerRunner) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let shared = Arc::new(WorkerShared::new(app.clone(), id.into()));
        let work = run(WorkerRunner {
            shared: shared.clone(),
        });
        let closing = shared.clone();
        let join = tokio::spawn(async move {
            let result = work.await;
            let grace = closing.app.config().grace_period;
            closing.dependencies.close_after_children(grace).await;
            result
        });
        WorkerHandle { shared, join }
    }

    pub(crate) fn shared(&self) -> &Arc<WorkerShared> {
        &self.shared
    }

    /// The worker's id (`app-pid-n`).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// How many tasks the worker holds right now (running and prefetched).
    pub fn inflight(&self) -> usize {
        self.shared.inflight.lock().len()
    }

    /// Asks the worker to stop without waiting for it.
    pub fn signal_shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Stops the worker gracefully and waits for it: it stops claiming, returns prefetched
    /// tasks to the queue at once, lets running tasks finish within the grace period, and
    /// returns the rest to the queue without counting the attempt.
    pub async fn shutdown(self) -> Result<()> {
        self.signal_shutdown();
        self.join().await
    }

    /// Waits until the worker has stopped.
    pub async fn join(self) -> Result<()> {
        match self.join.await {
            Ok(result) => result,
            Err(e) => Err(Error::Worker(format!(
                "the worker task ended abnormally: {e}"
            ))),
        }
    }
}

/// The worker running a task, as its context sees it ([`TaskContext::worker`](crate::TaskContext::worker)).
#[derive(Clone)]
pub struct WorkerRef(Arc<WorkerShared>);

impl WorkerRef {
    pub(crate) fn new(shared: Arc<WorkerShared>) -> Self {
        WorkerRef(shared)
    }

    /// The worker's id (`app-pid-n`).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// How many tasks the worker holds right now (running and prefetched).
    pub fn inflight(&self) -> usize {
        self.0.inflight.lock().len()
    }

    /// Asks the worker to stop gracefully (as [`WorkerHandle::signal_shutdown`]).
    pub fn signal_shutdown(&self) {
        self.0.shutdown.cancel();
    }
}

impl std::fmt::Debug for WorkerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WorkerRef").field(&self.0.id).finish()
    }
}

/// What a worker of one's own gets from [`WorkerHandle::custom`].
pub struct WorkerRunner {
    shared: Arc<WorkerShared>,
}

impl WorkerRunner {
    /// The app the worker serves.
    pub fn app(&self) -> &App {
        &self.shared.app
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Resolves when the worker is asked to stop.
    pub async fn stopping(&self) {
        self.shared.shutdown.cancelled().await
    }

    /// Runs one claimed task through the executor pipeline (plugins, events, extractors and
    /// dependencies of this worker's scope, `max_time`, panics caught, the retry decision) and
    /// returns how it ended, for `Broker::complete`. Cancelling `cancel` stops the task.
    pub async fn execute(
        &self,
        delivery: &Delivery,
        cancel: CancellationToken,
    ) -> crate::backend::Outcome {
        crate::hooks::execute(&self.shared.app, &self.shared, delivery, cancel).await
    }
}

impl std::fmt::Debug for WorkerRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRunner")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl WorkerShared {
    /// The worker's dependency scope.
    pub(crate) fn dependencies(&self) -> &ScopeCache {
        &self.dependencies
    }

    /// A worker's shared state (the built-in worker's, a worker of one's own, the testing
    /// kit's inline worker).
    pub(crate) fn new(app: App, id: String) -> Self {
        WorkerShared {
            id,
            app,
            shutdown: CancellationToken::new(),
            inflight: Mutex::new(FxHashMap::default()),
            dependencies: ScopeCache::new(ScopeKind::Worker),
            early_cancels: Mutex::new(Vec::new()),
            has_early_cancels: AtomicBool::new(false),
        }
    }

    /// Stops a task this worker is running, with a reason.
    pub(crate) fn cancel_running(&self, uuid: Uuid, reason: &str) {
        let mut inflight = self.inflight.lock();
        if let Some(entry) = inflight.get_mut(&uuid) {
            entry.reason = Some(reason.to_string());
            entry.cancel.cancel();
            return;
        }
        // Not registered yet: the claim may still be on its way to this worker. Lock order
        // is inflight, then early_cancels (as in `register`).
        let mut early = self.early_cancels.lock();
        let now = Instant::now();
        early.retain(|e| now.duration_since(e.at) < EARLY_CANCEL_TTL);
        if early.len() >= EARLY_CANCEL_MAX {
            early.remove(0);
        }
        early.push(EarlyCancel {
            uuid,
            reason: reason.to_string(),
            at: now,
        });
        self.has_early_cancels.store(true, Ordering::Release);
    }

    /// Registers claimed deliveries as in flight, applying cancels that arrived before them.
    fn register(&self, deliveries: Vec<Delivery>) -> Vec<Job> {
        let mut jobs = Vec::with_capacity(deliveries.len());
        let mut inflight = self.inflight.lock();
        for delivery in deliveries {
            let cancel = CancellationToken::new();
            inflight.insert(
                delivery.uuid,
                Inflight {
                    token: delivery.token,
                    cancel: cancel.clone(),
                    reason: None,
                },
            );
            jobs.push(Job { delivery, cancel });
        }
        if self.has_early_cancels.load(Ordering::Acquire) {
            let mut early = self.early_cancels.lock();
            early.retain(|e| match inflight.get_mut(&e.uuid) {
                Some(entry) => {
                    entry.reason = Some(e.reason.clone());
                    entry.cancel.cancel();
                    false
                }
                None => true,
            });
            self.has_early_cancels
                .store(!early.is_empty(), Ordering::Release);
        }
        jobs
    }

    /// The reason a running task was cancelled with.
    pub(crate) fn cancel_reason(&self, uuid: Uuid) -> Option<String> {
        self.inflight
            .lock()
            .get(&uuid)
            .and_then(|e| e.reason.clone())
    }

    fn leases(&self) -> Vec<Lease> {
        self.inflight
            .lock()
            .iter()
            .map(|(uuid, e)| Lease {
                uuid: *uuid,
                token: e.token,
            })
            .collect()
    }
}

async fn run(shared: Arc<WorkerShared>) -> Result<()> {
    let app = shared.app.clone();
    let config = app.config().clone();
    let lanes_n = config.max_tasks_process;
    let capacity = lanes_n + config.prefetch();
    let jobs = Arc::new(JobQueue::default());
    let slots = Arc::new(Semaphore::new(capacity));
    let done = Arc::new(DoneQueue::default());
    let stopped = CancellationToken::new();
    tracing::info!(worker = %shared.id, concurrency = lanes_n, prefetch = config.prefetch(), "worker started");
    // Listed as live before it says it runs (`worker_running`), not a tick later.
    beat(&shared).await;
    lifecycle(&shared, true).await;

    let fetcher = tokio::spawn(fetch_loop(shared.clone(), slots.clone(), jobs.clone()));
    let mut lanes = JoinSet::new();
    for _ in 0..lanes_n {
        lanes.spawn(lane(shared.clone(), jobs.clone(), done.clone()));
    }
    let flusher = tokio::spawn(flush_loop(shared.clone(), done.clone(), slots.clone()));
    let renewer = app
        .backend()
        .broker
        .lease_duration()
        .map(|lease| tokio::spawn(renew_loop(shared.clone(), lease, stopped.clone())));
    let heartbeat = tokio::spawn(heartbeat_loop(shared.clone(), stopped.clone()));
    let cancels = app
        .backend()
        .broker
        .cancel_requests()
        .map(|requests| tokio::spawn(cancel_loop(shared.clone(), requests, stopped.clone())));

    shared.shutdown.cancelled().await;
    tracing::info!(worker = %shared.id, "worker stopping");
    let _ = fetcher.await;

    // Prefetched tasks go back to the queue at once.
    let returned: Vec<Lease> = jobs.take_all().map(|job| job.delivery.lease()).collect();
    requeue(&shared, returned).await;

    // Running tasks get the grace period.
    let grace = config.grace_period;
    let finished =
        tokio::time::timeout(grace, async { while lanes.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(worker = %shared.id, ?grace, "grace period over; stopping the tasks still running and returning them to the queue");
        lanes.abort_all();
        while lanes.join_next().await.is_some() {}
    }
    done.close();
    let _ = flusher.await;
    // Worker-scoped dependencies go after the task-scoped ones of every execution.
    shared.dependencies.close_after_children(grace).await;
    stopped.cancel();
    if let Some(renewer) = renewer {
        let _ = renewer.await;
    }
    let _ = heartbeat.await;
    if let Some(cancels) = cancels {
        let _ = cancels.await;
    }
    // Whatever is still held was not acknowledged: back to the queue, attempt not counted.
    let left = shared.leases();
    requeue(&shared, left).await;
    lifecycle(&shared, false).await;
    tracing::info!(worker = %shared.id, "worker stopped");
    Ok(())
}

/// The worker's start/stop plugin triggers and `worker_running`/`worker_stopping` events.
async fn lifecycle(shared: &WorkerShared, start: bool) {
    let hooks = shared.app.hooks();
    if hooks.is_empty() {
        return;
    }
    let component = crate::plugin::ComponentKind::Worker;
    let event = crate::events::WorkerEvent {
        app: &shared.app,
        worker_id: &shared.id,
    };
    if start {
        hooks
            .plugins
            .fire(&mut crate::plugin::Trigger::Start(component))
            .await;
        hooks.events.fire_worker_running(&event);
    } else {
        hooks
            .plugins
            .fire(&mut crate::plugin::Trigger::Stop(component))
            .await;
        hooks.events.fire_worker_stopping(&event);
    }
}

async fn beat(shared: &WorkerShared) {
    let global = &shared.app.backend().global_config;
    if let Err(e) = global.heartbeat(&shared.id, HEARTBEAT_TTL).await {
        tracing::warn!(worker = %shared.id, error = %e, "cannot record the worker's heartbeat");
    }
}

async fn requeue(shared: &WorkerShared, leases: Vec<Lease>) {
    if leases.is_empty() {
        return;
    }
    match shared.app.backend().broker.requeue(&leases).await {
        Ok(()) => {
            tracing::info!(worker = %shared.id, count = leases.len(), "returned tasks to the queue")
        }
        Err(e) => {
            tracing::error!(worker = %shared.id, count = leases.len(), error = %e, "cannot return tasks to the queue; they run again when their lease expires")
        }
    }
    let mut inflight = shared.inflight.lock();
    for lease in &leases {
        inflight.remove(&lease.uuid);
    }
}

async fn fetch_loop(shared: Arc<WorkerShared>, slots: Arc<Semaphore>, jobs: Arc<JobQueue>) {
    let broker = shared.app.backend().broker.clone();
    let mut backoff = Backoff::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        first.forget();
        let mut wanted = 1;
        while wanted < MAX_CLAIM_BATCH {
            match slots.try_acquire() {
                Ok(p) => {
                    p.forget();
                    wanted += 1;
                }
                Err(_) => break,
            }
        }
        let claimed = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => {
                slots.add_permits(wanted);
                return;
            }
            claimed = broker.claim(wanted) => claimed,
        };
        let deliveries = match claimed {
            Ok(d) => {
                backoff.reset();
                d
            }
            Err(e) => {
                slots.add_permits(wanted);
                let delay = backoff.next();
                tracing::warn!(worker = %shared.id, error = %e, ?delay, "cannot claim tasks; trying again");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        slots.add_permits(wanted.saturating_sub(deliveries.len()));
        jobs.push(shared.register(deliveries));
    }
}

/// The claimed jobs waiting for a lane (as many as there are slots at most). The fetcher adds
/// a claimed batch under one lock; a lane takes one job at a time. (A channel woke a sender and
/// a receiver for every job.)
#[derive(Default)]
struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    added: Notify,
}

impl JobQueue {
    fn push(&self, jobs: Vec<Job>) {
        let n = jobs.len();
        self.jobs.lock().extend(jobs);
        // One wake-up per job (cheap when no lane waits: busy lanes take the next job without
        // waiting).
        for _ in 0..n {
            self.added.notify_one();
        }
    }

    fn take_all(&self) -> impl Iterator<Item = Job> {
        std::mem::take(&mut *self.jobs.lock()).into_iter()
    }

    /// The next job, waiting for one; `None` once the worker stops.
    async fn next(&self, shutdown: &CancellationToken) -> Option<Job> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            // A busy worker has a job waiting: taking it at once spares registering on the
            // shutdown token (a lock shared by every lane) for each job.
            if let Some(job) = self.jobs.lock().pop_front() {
                return Some(job);
            }
            let added = self.added.notified();
            tokio::pin!(added);
            // Registered before looking again, so a job added in between wakes this lane.
            added.as_mut().enable();
            if let Some(job) = self.jobs.lock().pop_front() {
                return Some(job);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                _ = added => {}
            }
        }
    }
}

async fn lane(shared: Arc<WorkerShared>, jobs: Arc<JobQueue>, done: Arc<DoneQueue>) {
    while let Some(job) = jobs.next(&shared.shutdown).await {
        let outcome = crate::hooks::execute(&shared.app, &shared, &job.delivery, job.cancel).await;
        done.push(Completion {
            lease: job.delivery.lease(),
            outcome,
        });
    }
}

/// Finished executions waiting for the flusher. Each keeps its slot until it is acknowledged,
/// so there are never more of them than slots. A lane adds one under a lock; the flusher takes
/// them all at once. (A channel cost a semaphore permit and a wake-up per task.)
#[derive(Default)]
struct DoneQueue {
    done: Mutex<Vec<Completion>>,
    added: Notify,
    /// Set once every lane has ended: the flusher acknowledges what is left, then stops.
    closed: AtomicBool,
}

impl DoneQueue {
    fn push(&self, completion: Completion) {
        self.done.lock().push(completion);
        // Stores a wake-up when the flusher is busy, so none is lost.
        self.added.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.added.notify_one();
    }

    /// Moves up to [`MAX_ACK_BATCH`] finished executions into `batch`, waiting for one;
    /// `false` once the queue is closed and empty.
    async fn take(&self, batch: &mut Vec<Completion>) -> bool {
        loop {
            // Read before looking at the queue: once closed, no lane adds anything.
            let closed = self.closed.load(Ordering::Acquire);
            {
                let mut done = self.done.lock();
                if !done.is_empty() {
                    let n = done.len().min(MAX_ACK_BATCH);
                    batch.extend(done.drain(..n));
                    return true;
                }
            }
            if closed {
                return false;
            }
            self.added.notified().await;
        }
    }
}

async fn flush_loop(shared: Arc<WorkerShared>, done: Arc<DoneQueue>, slots: Arc<Semaphore>) {
    let broker = shared.app.backend().broker.clone();
    let mut batch = Vec::with_capacity(MAX_ACK_BATCH);
    let mut backoff = Backoff::new();
    while done.take(&mut batch).await {
        let mut failures = 0;
        loop {
            match broker.complete(&batch).await {
                Ok(rejected) => {
                    backoff.reset();
                    for lease in &rejected {
                        tracing::warn!(worker = %shared.id, task_uuid = %lease.uuid, "completion rejected: the task's lease had expired and another worker owns it now");
                    }
                    break;
                }
                Err(e) => {
                    let delay = backoff.next();
                    failures += 1;
                    tracing::warn!(worker = %shared.id, error = %e, count = batch.len(), ?delay, "cannot acknowledge finished tasks; trying again");
                    if shared.shutdown.is_cancelled() && failures >= 5 {
                        tracing::error!(worker = %shared.id, count = batch.len(), "giving up acknowledging after shutdown; the tasks run again when their lease expires");
                        break;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        {
            let mut inflight = shared.inflight.lock();
            for c in &batch {
                inflight.remove(&c.lease.uuid);
            }
        }
        // The tasks' slots are free once they are acknowledged.
        slots.add_permits(batch.len());
        batch.clear();
    }
}

async fn renew_loop(shared: Arc<WorkerShared>, lease: Duration, stopped: CancellationToken) {
    let broker = shared.app.backend().broker.clone();
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leases = shared.leases();
        if leases.is_empty() {
            continue;
        }
        if let Err(e) = broker.renew(&leases).await {
            tracing::warn!(worker = %shared.id, error = %e, count = leases.len(), "cannot renew leases");
        }
    }
}

async fn heartbeat_loop(shared: Arc<WorkerShared>, stopped: CancellationToken) {
    let config = shared.app.backend().global_config.clone();
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = config.heartbeat(&shared.id, HEARTBEAT_TTL).await {
            tracing::warn!(worker = %shared.id, error = %e, "cannot record the worker's heartbeat");
        }
    }
    // A heartbeat that expires at once: the worker is no longer listed as live.
    let _ = config.heartbeat(&shared.id, Duration::ZERO).await;
}

async fn cancel_loop(
    shared: Arc<WorkerShared>,
    mut requests: futures::stream::BoxStream<'static, crate::backend::CancelRequest>,
    stopped: CancellationToken,
) {
    use futures::StreamExt;
    loop {
        let request = tokio::select! {
            _ = stopped.cancelled() => return,
            request = requests.next() => match request {
                Some(r) => r,
                None => return,
            },
        };
        shared.cancel_running(request.uuid, &request.reason);
    }
}

/// Exponential reconnect backoff: 50 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    const START: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Backoff(Self::START)
    }

    fn reset(&mut self) {
        self.0 = Self::START;
    }

    fn next(&mut self) -> Duration {
        let current = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        current
    }
}
