//! The broker: enqueue, claim (blocking on a [`Notify`](tokio::sync::Notify) wake-up, and for
//! delayed tasks a timer until the earliest is due), acknowledge, requeue, cancel and stats.

use std::cmp::Reverse;
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;
use qtasks_core::backend::inspect::{MinuteCount, PauseTarget, Pauses, Purge, ALL_STATUSES};
use qtasks_core::backend::{
    Broker, CancelOutcome, Completion, Delivery, Lease, NewTask, Outcome, QueueStats, TaskMeta,
};
use qtasks_core::{Result, TaskStatus};
use uuid::Uuid;

use crate::records::{from_unix_ns, Slot, DEAD_LETTER};
use crate::MemoryBackend;

impl MemoryBackend {
    /// Moves the due delayed tasks to the ready queue and claims up to `max` ready tasks;
    /// returns them with when the next delayed task is due.
    fn claim_ready(&self, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut popped = Vec::new();
        let next_due;
        let pauses = self.pauses();
        if pauses.as_ref().is_some_and(|p| p.app) {
            // Paused: nothing is claimed until `set_paused` resumes (and wakes the claims).
            return (Vec::new(), None);
        }
        {
            let mut q = self.queue.lock();
            while let Some(Reverse((at, _, _))) = q.delayed.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, seq, uuid))) = q.delayed.pop() {
                    // A retried task keeps its priority; it queues behind older work.
                    let priority = self
                        .records
                        .shard(&uuid)
                        .lock()
                        .get(&uuid)
                        .map(|s| s.priority)
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
        let mut set_aside = Vec::new();
        for uuid in popped {
            let mut shard = self.records.shard(&uuid).lock();
            shard.update(&uuid, |slot| {
                if !matches!(slot.status, TaskStatus::New | TaskStatus::Retry) {
                    return; // cancelled while queued
                }
                if pauses
                    .as_ref()
                    .is_some_and(|p| p.blocks(slot.task_name.as_str()))
                {
                    set_aside.push((slot.priority, slot.seq, uuid));
                    return;
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
        if !set_aside.is_empty() {
            // Paused task names keep their place in the queue.
            let mut q = self.queue.lock();
            for (priority, seq, uuid) in set_aside {
                q.ready.push(priority, seq, uuid);
            }
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
                // A uuid that exists is left alone: a producer may send a call again after a
                // timeout (the same id or idempotency key) without making a duplicate.
                let mut shard = self.records.shard(&t.uuid).lock();
                if shard.contains_key(&t.uuid) {
                    continue;
                }
                let seq = q.next_seq;
                q.next_seq += 1;
                let mut slot = Box::new(Slot::new(t, seq, now_wall));
                if let Some(trace) = &t.trace {
                    trace.write_extra(&mut slot.rare_mut().extra);
                }
                shard.insert(t.uuid, slot);
                drop(shard);
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
            let mut finished = MinuteCount::default();
            let expires_ms = self.ms_since_epoch(now + self.result_ttl);
            for c in done {
                let mut shard = self.records.shard(&c.lease.uuid).lock();
                let current = shard.update(&c.lease.uuid, |slot| {
                    if slot.token != c.lease.token || slot.status != TaskStatus::Process {
                        return false;
                    }
                    slot.touch(now_wall);
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
                    entries.push((slot.priority, slot.seq, lease.uuid));
                });
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
                for (priority, queue) in &q.ready.by_priority {
                    stats
                        .ready_by_priority
                        .insert(*priority, queue.len() as u64);
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
