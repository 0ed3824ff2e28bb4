//! The in-process backend of qtasks: broker, storage and global config in one value, the
//! embedded default of the `qtasks` facade.
//!
//! Tasks live in sharded maps; the ready queue orders them by (priority, enqueue sequence), so
//! lower priority numbers run first and equal priorities run in FIFO order.
//! Claiming blocks on a [`Notify`] wake-up (and, for delayed tasks, a timer until the earliest
//! one is due), never on a polling sleep. Finished records are dropped after the result TTL.
#![warn(missing_docs)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use qtasks_core::backend::{
    Backend, BackendFactory, Broker, CancelOutcome, Completion, Delivery, GlobalConfig, Lease,
    NewTask, OpenRequest, Outcome, QueueStats, Storage, BACKENDS,
};
use qtasks_core::{Error, Result, Task, TaskStatus};
use rustc_hash::FxHashMap;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

const SHARDS: usize = 64;

/// The in-process broker, storage and global config.
///
/// Every app built without a `broker_url` gets its own, so apps in one process (tests) never
/// see each other's tasks. Use [`MemoryBackend::backend`] to share one between apps.
pub struct MemoryBackend {
    shards: Box<[Mutex<Shard>]>,
    queue: Mutex<Queue>,
    wake: Notify,
    kv: Mutex<BTreeMap<String, String>>,
    claims: Mutex<HashMap<String, Instant>>,
    heartbeats: Mutex<HashMap<String, Instant>>,
    dead_letter: Mutex<u64>,
    result_ttl: Duration,
}

/// One shard of the task records.
type Shard = FxHashMap<Uuid, Box<Slot>>;

/// A task's record and claim state. Boxed in the shard maps: a record is a few hundred bytes,
/// and a map of a million inline records spent its time moving them when it grew.
struct Slot {
    task: Task,
    seq: u64,
    token: u64,
    waiters: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Queue {
    ready: Ready,
    delayed: BinaryHeap<Reverse<(Instant, u64, Uuid)>>,
    next_seq: u64,
    expiry: VecDeque<(Instant, Uuid)>,
}

/// The ready tasks: the lowest priority number first, then the oldest (lowest enqueue
/// sequence number).
///
/// One binary heap over every ready task cost a sift through the whole (cache-cold) heap per
/// claimed task. Tasks are enqueued in sequence order, so within one priority a FIFO keeps
/// them ordered for free; only a requeued or retried task comes back with an older sequence
/// number, and those go to a small heap that `pop` merges by sequence number.
#[derive(Default)]
struct Ready {
    by_priority: BTreeMap<i32, PriorityQueue>,
    len: usize,
}

#[derive(Default)]
struct PriorityQueue {
    /// Ascending sequence numbers.
    fresh: VecDeque<(u64, Uuid)>,
    /// Entries older than `fresh`'s newest when they arrived.
    returned: BinaryHeap<Reverse<(u64, Uuid)>>,
}

impl PriorityQueue {
    fn len(&self) -> usize {
        self.fresh.len() + self.returned.len()
    }

    fn pop(&mut self) -> Option<Uuid> {
        let fresh = self.fresh.front().map(|(seq, _)| *seq);
        let returned = self.returned.peek().map(|Reverse((seq, _))| *seq);
        match (fresh, returned) {
            (Some(f), Some(r)) if r < f => self.returned.pop().map(|Reverse((_, u))| u),
            (Some(_), _) => self.fresh.pop_front().map(|(_, u)| u),
            (None, _) => self.returned.pop().map(|Reverse((_, u))| u),
        }
    }
}

impl Ready {
    fn push(&mut self, priority: i32, seq: u64, uuid: Uuid) {
        let queue = self.by_priority.entry(priority).or_default();
        if queue.fresh.back().is_none_or(|(newest, _)| *newest < seq) {
            queue.fresh.push_back((seq, uuid));
        } else {
            queue.returned.push(Reverse((seq, uuid)));
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Uuid> {
        let mut first = self.by_priority.first_entry()?;
        let uuid = first.get_mut().pop();
        if first.get().len() == 0 {
            first.remove();
        }
        if uuid.is_some() {
            self.len -= 1;
        }
        uuid
    }
}

impl MemoryBackend {
    /// An empty backend that keeps finished records for `result_ttl`.
    pub fn new(result_ttl: Duration) -> Self {
        MemoryBackend {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            kv: Mutex::new(BTreeMap::new()),
            claims: Mutex::new(HashMap::new()),
            heartbeats: Mutex::new(HashMap::new()),
            dead_letter: Mutex::new(0),
            result_ttl,
        }
    }

    /// The backend's components, for `App::builder().backend(..)`.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend::from_shared(self.clone())
    }

    /// How many tasks wait in the ready queue (not delayed, not running).
    pub fn queued(&self) -> usize {
        self.queue.lock().ready.len
    }

    fn shard(&self, uuid: &Uuid) -> &Mutex<Shard> {
        // The uuid is random already: its low bits pick the shard.
        &self.shards[(uuid.as_u128() as usize) % SHARDS]
    }

    fn finish_slot(slot: &mut Slot) {
        for w in slot.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn expire(&self, now: Instant) {
        let mut due = Vec::new();
        {
            let mut q = self.queue.lock();
            while let Some((at, _)) = q.expiry.front() {
                if *at > now {
                    break;
                }
                if let Some((_, uuid)) = q.expiry.pop_front() {
                    due.push(uuid);
                }
            }
        }
        for uuid in due {
            let mut shard = self.shard(&uuid).lock();
            if shard.get(&uuid).is_some_and(|s| s.task.status.is_final()) {
                shard.remove(&uuid);
            }
        }
    }

    fn claim_ready(&self, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut popped = Vec::new();
        let next_due;
        {
            let mut q = self.queue.lock();
            while let Some(Reverse((at, _, _))) = q.delayed.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, seq, uuid))) = q.delayed.pop() {
                    // A retried task keeps its priority; it queues behind older work.
                    let priority = self
                        .shard(&uuid)
                        .lock()
                        .get(&uuid)
                        .map(|s| s.task.priority)
                        .unwrap_or(0);
                    q.ready.push(priority, seq, uuid);
                }
            }
            while popped.len() < max {
                match q.ready.pop() {
                    Some(uuid) => popped.push(uuid),
                    None => break,
                }
            }
            next_due = q.delayed.peek().map(|Reverse((at, _, _))| *at);
        }
        let now_wall = SystemTime::now();
        let mut out = Vec::with_capacity(popped.len());
        for uuid in popped {
            let mut shard = self.shard(&uuid).lock();
            let Some(slot) = shard.get_mut(&uuid) else {
                continue;
            };
            if !matches!(slot.task.status, TaskStatus::New | TaskStatus::Retry) {
                continue; // cancelled while queued
            }
            slot.task.status = TaskStatus::Process;
            slot.task.attempts += 1;
            slot.task.updated_at = now_wall;
            slot.token += 1;
            out.push(Delivery {
                uuid,
                task_name: slot.task.task_name.clone(),
                priority: slot.task.priority,
                args: slot.task.args.clone(),
                attempt: slot.task.attempts,
                token: slot.token,
            });
        }
        (out, next_due)
    }
}

impl Broker for MemoryBackend {
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = Instant::now();
            let now_wall = SystemTime::now();
            let mut q = self.queue.lock();
            for t in tasks {
                let seq = q.next_seq;
                q.next_seq += 1;
                let mut task = Task::new(
                    t.uuid,
                    t.task_name.clone(),
                    t.priority,
                    t.args.clone(),
                    t.created_at,
                );
                task.updated_at = now_wall;
                self.shard(&t.uuid).lock().insert(
                    t.uuid,
                    Box::new(Slot {
                        task,
                        seq,
                        token: 0,
                        waiters: Vec::new(),
                    }),
                );
                match t.not_before.and_then(|at| at.duration_since(now_wall).ok()) {
                    Some(delay) if !delay.is_zero() => {
                        q.delayed.push(Reverse((now + delay, seq, t.uuid)))
                    }
                    _ => q.ready.push(t.priority, seq, t.uuid),
                }
            }
            drop(q);
            self.wake.notify_waiters();
            Ok(())
        })
    }

    fn claim(&self, max: usize) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        Box::pin(async move {
            loop {
                let notified = self.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (claimed, next_due) = self.claim_ready(max.max(1));
                if !claimed.is_empty() {
                    return Ok(claimed);
                }
                match next_due {
                    Some(at) => {
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep_until(at.into()) => {}
                        }
                    }
                    None => notified.await,
                }
            }
        })
    }

    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move {
            let now = Instant::now();
            let now_wall = SystemTime::now();
            let mut rejected = Vec::new();
            let mut expiring = Vec::new();
            let mut retries = Vec::new();
            let mut dead = 0;
            for c in done {
                let mut shard = self.shard(&c.lease.uuid).lock();
                let Some(slot) = shard.get_mut(&c.lease.uuid) else {
                    rejected.push(c.lease);
                    continue;
                };
                if slot.token != c.lease.token || slot.task.status != TaskStatus::Process {
                    rejected.push(c.lease);
                    continue;
                }
                let task = &mut slot.task;
                task.updated_at = now_wall;
                match &c.outcome {
                    Outcome::Success(payload) => {
                        task.status = TaskStatus::Success;
                        task.returning = Some(payload.clone());
                    }
                    Outcome::Failed { traceback } => {
                        task.status = TaskStatus::Error;
                        task.traceback = Some(traceback.clone());
                    }
                    Outcome::DeadLetter { reason, traceback } => {
                        task.status = TaskStatus::Error;
                        task.traceback = Some(traceback.clone());
                        task.extra
                            .insert("dead_letter".into(), reason.as_str().into());
                        dead += 1;
                    }
                    Outcome::Cancelled { reason } => {
                        task.status = TaskStatus::Cancel;
                        task.cancel_reason = Some(reason.clone());
                    }
                    Outcome::Retry { traceback, delay } => {
                        task.status = TaskStatus::Retry;
                        task.traceback = Some(traceback.clone());
                        retries.push((now + *delay, slot.seq, c.lease.uuid));
                        continue;
                    }
                }
                Self::finish_slot(slot);
                expiring.push((now + self.result_ttl, c.lease.uuid));
            }
            if !expiring.is_empty() || !retries.is_empty() {
                let mut q = self.queue.lock();
                q.expiry.extend(expiring);
                let woke = !retries.is_empty();
                for r in retries {
                    q.delayed.push(Reverse(r));
                }
                drop(q);
                if woke {
                    self.wake.notify_waiters();
                }
            }
            if dead > 0 {
                *self.dead_letter.lock() += dead;
            }
            self.expire(now);
            Ok(rejected)
        })
    }

    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut entries = Vec::new();
            for lease in leases {
                let mut shard = self.shard(&lease.uuid).lock();
                let Some(slot) = shard.get_mut(&lease.uuid) else {
                    continue;
                };
                if slot.token != lease.token || slot.task.status != TaskStatus::Process {
                    continue;
                }
                slot.task.status = TaskStatus::New;
                slot.task.attempts = slot.task.attempts.saturating_sub(1);
                slot.task.updated_at = SystemTime::now();
                slot.token += 1;
                entries.push((slot.task.priority, slot.seq, lease.uuid));
            }
            if !entries.is_empty() {
                let mut q = self.queue.lock();
                for (priority, seq, uuid) in entries {
                    q.ready.push(priority, seq, uuid);
                }
                drop(q);
                self.wake.notify_waiters();
            }
            Ok(())
        })
    }

    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, Result<CancelOutcome>> {
        let reason = reason.to_string();
        Box::pin(async move {
            let outcome = {
                let mut shard = self.shard(&uuid).lock();
                let Some(slot) = shard.get_mut(&uuid) else {
                    return Ok(CancelOutcome::NotFound);
                };
                match slot.task.status {
                    TaskStatus::New | TaskStatus::Retry => {
                        slot.task.status = TaskStatus::Cancel;
                        slot.task.cancel_reason = Some(reason);
                        slot.task.updated_at = SystemTime::now();
                        Self::finish_slot(slot);
                        CancelOutcome::Cancelled
                    }
                    TaskStatus::Process => CancelOutcome::Running,
                    _ => CancelOutcome::Finished,
                }
            };
            if outcome == CancelOutcome::Cancelled {
                let now = Instant::now();
                self.queue
                    .lock()
                    .expiry
                    .push_back((now + self.result_ttl, uuid));
            }
            Ok(outcome)
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueStats>> {
        Box::pin(async move {
            self.expire(Instant::now());
            let mut stats = QueueStats {
                dead_letter: *self.dead_letter.lock(),
                ..QueueStats::default()
            };
            {
                let q = self.queue.lock();
                for (priority, queue) in &q.ready.by_priority {
                    stats
                        .ready_by_priority
                        .insert(*priority, queue.len() as u64);
                }
                stats.scheduled = q.delayed.len() as u64;
            }
            for shard in self.shards.iter() {
                for slot in shard.lock().values() {
                    *stats
                        .by_status
                        .entry(slot.task.status.to_string())
                        .or_default() += 1;
                    if slot.task.status == TaskStatus::Process {
                        stats.running += 1;
                    }
                }
            }
            Ok(stats)
        })
    }
}

impl Storage for MemoryBackend {
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            self.expire(Instant::now());
            Ok(self.shard(&uuid).lock().get(&uuid).map(|s| s.task.clone()))
        })
    }

    fn wait(&self, uuid: Uuid, timeout: Duration) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let rx = {
                    let mut shard = self.shard(&uuid).lock();
                    let slot = shard.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
                    if slot.task.status.is_final() {
                        return Ok(Some(slot.task.clone()));
                    }
                    let (tx, rx) = oneshot::channel();
                    slot.waiters.push(tx);
                    rx
                };
                if tokio::time::timeout_at(deadline, rx).await.is_err() {
                    return Ok(None);
                }
            }
        })
    }
}

impl GlobalConfig for MemoryBackend {
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.kv.lock().insert(key.to_string(), value.to_string());
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { Ok(self.kv.lock().get(key).cloned()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.kv.lock().remove(key);
            Ok(())
        })
    }

    fn get_all(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(async move { Ok(self.kv.lock().clone()) })
    }

    fn try_claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut claims = self.claims.lock();
            claims.retain(|_, until| *until > now);
            if claims.contains_key(key) {
                return Ok(false);
            }
            claims.insert(key.to_string(), now + ttl);
            Ok(true)
        })
    }

    fn heartbeat<'a>(&'a self, worker: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.heartbeats
                .lock()
                .insert(worker.to_string(), Instant::now() + ttl);
            Ok(())
        })
    }

    fn live_workers(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut beats = self.heartbeats.lock();
            beats.retain(|_, until| *until > now);
            let mut workers: Vec<String> = beats.keys().cloned().collect();
            workers.sort();
            Ok(workers)
        })
    }
}

fn open(request: &OpenRequest<'_>) -> Result<Backend> {
    Ok(Arc::new(MemoryBackend::new(request.config.result_ttl)).backend())
}

#[linkme::distributed_slice(BACKENDS)]
static MEMORY: BackendFactory = BackendFactory {
    scheme: "memory",
    open,
};
