//! The broker: enqueue, claim (blocking on a [`Notify`](tokio::sync::Notify) wake-up, and for
//! delayed tasks a timer until the earliest is due), acknowledge, requeue, cancel and stats.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;
use qtasks_core::backend::inspect::{MinuteCount, PauseTarget, Pauses, Purge, ALL_STATUSES};
use qtasks_core::backend::{
    Broker, CancelOutcome, Completion, Delivery, Existing, Lease, NewTask, Outcome, QueueStats,
    TaskMeta,
};
use qtasks_core::control::{FlowKeys, QueueSelection, TaskLimits, DEFAULT_QUEUE};
use qtasks_core::{Payload, Result, TaskStatus};
use uuid::Uuid;

use crate::flow::Admit;
use crate::queue::{ClaimQueues, Queue};
use crate::records::{from_unix_ns, Slot, DEAD_LETTER};
use crate::MemoryBackend;

impl MemoryBackend {
    /// Moves the due delayed tasks to the ready queue and claims up to `max` ready tasks;
    /// returns them with when to look again (the next delayed task is due, or, for tasks held
    /// back by a rate limit, the next permit comes).
    fn claim_ready(&self, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let pauses = self.pauses();
        if pauses.as_ref().is_some_and(|p| p.app) {
            // Paused: nothing is claimed until `set_paused` resumes (and wakes the claims).
            return (Vec::new(), None);
        }
        // Whether any task name has a limit (then each claimed task asks the flow state).
        let limited = self.limited.load(Ordering::Acquire);
        // Whether a debounced task ever moved its start (its earlier entries are then stale).
        let debouncing = self.debouncing.load(Ordering::Acquire);
        let now_wall = SystemTime::now();
        let mut out = Vec::with_capacity(max.min(64));
        let mut set_aside = Vec::new();
        let mut next_due;
        let mut next_permit: Option<Instant> = None;
        // Tasks held back (paused, or over a limit) keep their place; the claim looks past
        // them, up to this many, for tasks it may take.
        let mut budget = max + Self::LOOK_PAST;
        let mut popped = Vec::new();
        // The queues in the order this claim looks at them (`None`: the default queue).
        let order = self.queue_order(pauses.as_ref());
        loop {
            {
                let mut q = self.queue.lock();
                self.move_due(&mut q, now, debouncing);
                let want = max - out.len();
                for queue in &order {
                    while popped.len() < want && budget > 0 {
                        match q.pop(queue.as_deref()) {
                            Some(uuid) => {
                                budget -= 1;
                                popped.push(uuid)
                            }
                            None => break,
                        }
                    }
                }
                next_due = q.delayed.peek().map(|Reverse((at, _, _))| *at);
            }
            if popped.is_empty() {
                break;
            }
            for uuid in popped.drain(..) {
                if debouncing && self.flow.lock().debounce_due.contains_key(&uuid) {
                    // Debounced since it was queued: its delayed entry brings it back.
                    continue;
                }
                let mut shard = self.records.shard(&uuid).lock();
                shard.update(&uuid, |slot| {
                    if !matches!(slot.status, TaskStatus::New | TaskStatus::Retry) {
                        return; // cancelled while queued
                    }
                    if pauses
                        .as_ref()
                        .is_some_and(|p| p.blocks(slot.task_name.as_str()))
                    {
                        set_aside.push((slot.queue(), slot.priority, slot.seq, uuid));
                        return;
                    }
                    if limited {
                        let admit = self.flow.lock().admit(uuid, slot.task_name.as_str(), now);
                        if let Admit::Later(at) = admit {
                            if let Some(at) = at {
                                next_permit = Some(next_permit.map_or(at, |n| n.min(at)));
                            }
                            set_aside.push((slot.queue(), slot.priority, slot.seq, uuid));
                            return;
                        }
                    }
                    slot.status = TaskStatus::Process;
                    slot.attempts += 1;
                    slot.touch(now_wall);
                    slot.token += 1;
                    out.push(Delivery {
                        uuid,
                        task_name: slot.task_name.clone(),
                        priority: slot.priority,
                        args: slot.args.clone(),
                        attempt: slot.attempts,
                        token: slot.token,
                        meta: TaskMeta {
                            enqueued_at: Some(from_unix_ns(slot.created_ns)),
                            trace: slot.trace(),
                        },
                    });
                });
            }
            if out.len() >= max || budget == 0 || set_aside.is_empty() {
                break;
            }
        }
        if !set_aside.is_empty() {
            // Held-back tasks keep their place in the queue.
            let mut q = self.queue.lock();
            for (queue, priority, seq, uuid) in set_aside {
                q.push(queue, priority, seq, uuid);
            }
        }
        let next = match (next_due, next_permit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (out, next)
    }

    /// The queues the next claim looks at, in order (`None`: the default queue), leaving out
    /// paused ones.
    fn queue_order(&self, pauses: Option<&Pauses>) -> Vec<Option<Arc<str>>> {
        let mut queues = self.queues.lock();
        let order = queues.turns.next_order();
        order
            .into_iter()
            .map(|i| queues.names[i].clone())
            .filter(|q| !pauses.is_some_and(|p| p.blocks_queue(q.as_deref())))
            .collect()
    }

    /// The flow-control side of claims that ended (`(task, whether it is final)`): their
    /// concurrency slots free, and final tasks' keys go. True when a slot was freed (a claim
    /// waiting for one may go on).
    fn claims_ended(&self, ended: &[(Uuid, bool)], now: Instant) -> bool {
        if ended.is_empty() || !self.flow_on.load(Ordering::Acquire) {
            return false;
        }
        let mut flow = self.flow.lock();
        let mut freed = false;
        for (uuid, is_final) in ended {
            freed |= flow.release(uuid);
            if *is_final {
                flow.finished(uuid, now);
            }
        }
        freed
    }

    /// The flow keys of task `t` (position `index` of its batch) at enqueue, under the queue
    /// lock (which serializes enqueues: one of two enqueues of a key wins): `Some` when
    /// another task holds its unique key (with debounce, that task took its arguments), else
    /// its keys are noted and it is to be written.
    fn enqueue_flow(
        &self,
        q: &mut Queue,
        index: usize,
        t: &NewTask,
        flow: &FlowKeys,
        now: Instant,
        now_wall: SystemTime,
    ) -> Option<Existing> {
        self.flow_on.store(true, Ordering::Release);
        if let Some(key) = &flow.unique {
            let holder = self.flow.lock().holder(key);
            if let Some(holder) = holder {
                if let Some(status) = self.holds_key(holder, flow, now_wall) {
                    if let (Some(debounce), TaskStatus::New) = (flow.debounce, status) {
                        self.debounce(q, holder, &t.args, now + debounce);
                    }
                    return Some(Existing {
                        index,
                        uuid: holder,
                    });
                }
            }
            self.flow
                .lock()
                .take_unique(key.clone(), t.uuid, flow.hold_after);
        }
        self.flow
            .lock()
            .set_keys(t.uuid, flow.concurrency_key.clone(), flow.rate_key.clone());
        None
    }

    /// Debounce: the pending task `holder` takes `args` and starts at `due` instead.
    fn debounce(&self, q: &mut Queue, holder: Uuid, args: &Payload, due: Instant) {
        let seq = {
            let mut shard = self.records.shard(&holder).lock();
            shard.update(&holder, |slot| {
                slot.args = args.clone();
                slot.seq
            })
        };
        if let Some(seq) = seq {
            q.delayed.push(Reverse((due, seq, holder)));
            self.flow.lock().debounce_due.insert(holder, due);
            self.debouncing.store(true, Ordering::Release);
        }
    }

    /// How many held-back tasks (paused, or over a limit) one claim looks past for tasks it
    /// may take.
    const LOOK_PAST: usize = 1000;

    /// Moves the delayed tasks due at `now` to the ready queue (skipping the stale entries of
    /// debounced tasks, whose start moved later).
    fn move_due(&self, q: &mut Queue, now: Instant, debouncing: bool) {
        while let Some(Reverse((at, _, _))) = q.delayed.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, seq, uuid))) = q.delayed.pop() else {
                break;
            };
            if debouncing {
                let mut flow = self.flow.lock();
                match flow.debounce_due.get(&uuid) {
                    Some(due) if *due != at => continue,
                    Some(_) => {
                        flow.debounce_due.remove(&uuid);
                    }
                    None => {}
                }
            }
            // A retried task keeps its priority; it queues behind older work.
            let (queue, priority) = self
                .records
                .shard(&uuid)
                .lock()
                .get(&uuid)
                .map_or((None, 0), |s| (s.queue(), s.priority));
            q.push(queue, priority, seq, uuid);
        }
    }

    /// Whether the task holding a unique key still holds it at `now`: queued, waiting for a
    /// retry or running, or finished less than `hold_after` ago; with a throttle, enqueued
    /// less than the throttle ago. Returns its status too.
    fn holds_key(&self, holder: Uuid, flow: &FlowKeys, now: SystemTime) -> Option<TaskStatus> {
        let shard = self.records.shard(&holder).lock();
        let slot = shard.get(&holder)?;
        let live = match (flow.throttle, slot.status) {
            (Some(window), _) => from_unix_ns(slot.created_ns) + window > now,
            (None, TaskStatus::New | TaskStatus::Retry | TaskStatus::Process) => true,
            (None, _) => from_unix_ns(slot.updated_ns) + flow.hold_after > now,
        };
        live.then_some(slot.status)
    }
}

impl Broker for MemoryBackend {
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<Vec<Existing>>> {
        Box::pin(async move {
            let now = Instant::now();
            let now_wall = SystemTime::now();
            let mut existing = Vec::new();
            let mut q = self.queue.lock();
            for (index, t) in tasks.iter().enumerate() {
                // A uuid that exists is left alone: a producer may send a call again after a
                // timeout (the same id or idempotency key) without making a duplicate.
                let mut shard = self.records.shard(&t.uuid).lock();
                if shard.contains_key(&t.uuid) {
                    continue;
                }
                if let Some(flow) = &t.flow {
                    // Its unique key is decided reading other records: not under this lock.
                    drop(shard);
                    if let Some(found) = self.enqueue_flow(&mut q, index, t, flow, now, now_wall) {
                        existing.push(found);
                        continue;
                    }
                    shard = self.records.shard(&t.uuid).lock();
                }
                let seq = q.next_seq;
                q.next_seq += 1;
                let mut slot = Box::new(Slot::new(t, seq, now_wall));
                if let Some(trace) = &t.trace {
                    trace.write_extra(&mut slot.rare_mut().extra);
                }
                let queue = t.flow.as_ref().and_then(|f| f.queue);
                if queue.is_some() {
                    slot.rare_mut().queue = queue;
                }
                shard.insert(t.uuid, slot);
                drop(shard);
                match t.not_before.and_then(|at| at.duration_since(now_wall).ok()) {
                    Some(delay) if !delay.is_zero() => {
                        q.delayed.push(Reverse((now + delay, seq, t.uuid)))
                    }
                    _ => q.push(queue, t.priority, seq, t.uuid),
                }
            }
            drop(q);
            self.wake.notify_waiters();
            Ok(existing)
        })
    }

    fn set_queues(&self, queues: &QueueSelection) -> Result<()> {
        *self.queues.lock() = ClaimQueues::new(queues.clone());
        self.wake.notify_waiters();
        Ok(())
    }

    fn set_limits(&self, limits: &[TaskLimits]) -> Result<()> {
        self.flow.lock().set_limits(limits);
        self.limited.store(!limits.is_empty(), Ordering::Release);
        if !limits.is_empty() {
            self.flow_on.store(true, Ordering::Release);
        }
        self.wake.notify_waiters();
        Ok(())
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
            let mut finished = MinuteCount::default();
            let mut ended = Vec::new();
            let expires_ms = self.ms_since_epoch(now + self.result_ttl);
            for c in done {
                let mut shard = self.records.shard(&c.lease.uuid).lock();
                let current = shard.update(&c.lease.uuid, |slot| {
                    if slot.token != c.lease.token || slot.status != TaskStatus::Process {
                        return false;
                    }
                    slot.touch(now_wall);
                    let is_final =
                        !matches!(c.outcome, Outcome::Retry { .. } | Outcome::Later { .. });
                    ended.push((c.lease.uuid, is_final));
                    slot.ran(c);
                    match &c.outcome {
                        Outcome::Success(payload) => {
                            slot.status = TaskStatus::Success;
                            slot.returning = Some(payload.clone());
                            finished.success += 1;
                        }
                        Outcome::Failed { traceback } => {
                            slot.status = TaskStatus::Error;
                            slot.set_traceback(Some(traceback.clone()));
                            finished.error += 1;
                        }
                        Outcome::DeadLetter { reason, traceback } => {
                            slot.status = TaskStatus::Error;
                            let rare = slot.rare_mut();
                            rare.traceback = Some(traceback.clone());
                            rare.extra
                                .insert(DEAD_LETTER.into(), reason.as_str().into());
                            finished.error += 1;
                            dead += 1;
                        }
                        Outcome::Cancelled { reason } => {
                            slot.status = TaskStatus::Cancel;
                            slot.rare_mut().cancel_reason = Some(reason.clone());
                        }
                        Outcome::Retry { traceback, delay } => {
                            slot.status = TaskStatus::Retry;
                            slot.set_traceback(Some(traceback.clone()));
                            retries.push((now + *delay, slot.seq, c.lease.uuid));
                            return true;
                        }
                        Outcome::Later { delay } => {
                            // Not an attempt: queued again as it was.
                            slot.status = TaskStatus::New;
                            slot.attempts = slot.attempts.saturating_sub(1);
                            retries.push((now + *delay, slot.seq, c.lease.uuid));
                            return true;
                        }
                    }
                    slot.wake_waiters();
                    expiring.push((expires_ms, c.lease.uuid));
                    true
                });
                if current != Some(true) {
                    rejected.push(c.lease);
                }
            }
            self.count_finished(now_wall, finished);
            let freed = self.claims_ended(&ended, now);
            if freed {
                self.wake.notify_waiters();
            }
            self.count_latency(done);
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

    fn progress<'a>(&'a self, lease: Lease, value: &'a Payload) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut shard = self.records.shard(&lease.uuid).lock();
            let stored = shard.update(&lease.uuid, |slot| {
                let current = slot.token == lease.token && slot.status == TaskStatus::Process;
                if current {
                    slot.rare_mut().progress = Some(value.clone());
                }
                current
            });
            Ok(stored == Some(true))
        })
    }

    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut entries = Vec::new();
            let now_wall = SystemTime::now();
            for lease in leases {
                let mut shard = self.records.shard(&lease.uuid).lock();
                shard.update(&lease.uuid, |slot| {
                    if slot.token != lease.token || slot.status != TaskStatus::Process {
                        return;
                    }
                    slot.status = TaskStatus::New;
                    slot.attempts = slot.attempts.saturating_sub(1);
                    slot.touch(now_wall);
                    slot.token += 1;
                    entries.push((slot.queue(), slot.priority, slot.seq, lease.uuid));
                });
            }
            let ended: Vec<(Uuid, bool)> = entries.iter().map(|(_, _, _, u)| (*u, false)).collect();
            self.claims_ended(&ended, Instant::now());
            if !entries.is_empty() {
                let mut q = self.queue.lock();
                for (queue, priority, seq, uuid) in entries {
                    q.push(queue, priority, seq, uuid);
                }
                drop(q);
                self.wake.notify_waiters();
            }
            Ok(())
        })
    }

    fn started<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        // In-process leases never expire: only a lease that is not current (a wrong token, a
        // finished or unknown task) is reported.
        Box::pin(async move { Ok(self.not_current(leases)) })
    }

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move { Ok(self.not_current(leases)) })
    }

    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, Result<CancelOutcome>> {
        let reason = reason.to_string();
        Box::pin(async move {
            let outcome = {
                let mut shard = self.records.shard(&uuid).lock();
                let outcome = shard.update(&uuid, |slot| match slot.status {
                    TaskStatus::New | TaskStatus::Retry => {
                        slot.status = TaskStatus::Cancel;
                        slot.rare_mut().cancel_reason = Some(reason);
                        slot.touch(SystemTime::now());
                        slot.wake_waiters();
                        CancelOutcome::Cancelled
                    }
                    TaskStatus::Process => CancelOutcome::Running,
                    _ => CancelOutcome::Finished,
                });
                outcome.unwrap_or(CancelOutcome::NotFound)
            };
            if outcome == CancelOutcome::Cancelled {
                let now = Instant::now();
                self.claims_ended(&[(uuid, true)], now);
                self.queue
                    .lock()
                    .expiry
                    .push_back((self.ms_since_epoch(now + self.result_ttl), uuid));
            }
            Ok(outcome)
        })
    }

    fn retry_dead<'a>(&'a self, uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(async move { Ok(self.retry_failed(uuids)) })
    }

    fn delete<'a>(&'a self, uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(async move { Ok(self.delete_finished(uuids)) })
    }

    fn purge<'a>(&'a self, purge: &'a Purge) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { Ok(self.purge_finished(purge)) })
    }

    fn set_paused<'a>(
        &'a self,
        target: &'a PauseTarget,
        paused: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.pause(target, paused);
            Ok(())
        })
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Pauses>> {
        Box::pin(async move { Ok(self.pauses().unwrap_or_default()) })
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
                let named = q.named.iter().map(|(name, ready)| (*name, ready));
                for (name, ready) in std::iter::once((DEFAULT_QUEUE, &q.ready)).chain(named) {
                    for (priority, queue) in &ready.by_priority {
                        *stats.ready_by_priority.entry(*priority).or_default() +=
                            queue.len() as u64;
                    }
                    if ready.len > 0 {
                        stats
                            .ready_by_queue
                            .insert(name.to_string(), ready.len as u64);
                    }
                }
                stats.scheduled = q.delayed.len() as u64;
            }
            for status in ALL_STATUSES {
                let n = self.count(status);
                if n > 0 {
                    stats.by_status.insert(status.to_string(), n);
                }
            }
            stats.running = self.count(TaskStatus::Process);
            Ok(stats)
        })
    }
}

impl MemoryBackend {
    /// The leases among `leases` that are not current claims.
    fn not_current(&self, leases: &[Lease]) -> Vec<Lease> {
        leases
            .iter()
            .filter(|lease| {
                let shard = self.records.shard(&lease.uuid).lock();
                !shard.get(&lease.uuid).is_some_and(|slot| {
                    slot.token == lease.token && slot.status == TaskStatus::Process
                })
            })
            .copied()
            .collect()
    }
}
