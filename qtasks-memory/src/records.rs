//! The record store: every task's record and claim state in sharded maps (the shard picked by
//! the uuid's low bits), and the dropping of finished records after the result TTL.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use qtasks_core::backend::{Completion, NewTask, Outcome, TraceContext};
use qtasks_core::{Attempt, Payload, Task, TaskName, TaskStatus, ATTEMPTS_KEPT};
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::index::StatusIndex;
use crate::waiters::Waiters;
use crate::MemoryBackend;

const SHARDS: usize = 64;

/// One shard of the task records, with its per-status index. Reads go to the map (`Deref`);
/// a record is added with [`Shard::insert`], removed with [`Shard::remove`], and a change of
/// its status (or `updated_at`) is followed by [`Shard::moved`], which keep the index true.
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) map: FxHashMap<Uuid, Box<Slot>>,
    pub(crate) index: StatusIndex,
}

impl Deref for Shard {
    type Target = FxHashMap<Uuid, Box<Slot>>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DerefMut for Shard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Shard {
    /// Adds a record (replacing none: callers check first) to the map and the index.
    pub(crate) fn insert(&mut self, uuid: Uuid, mut slot: Box<Slot>) {
        self.index.entered(uuid, &mut slot);
        let status = slot.status;
        self.map.insert(uuid, slot);
        self.index.compact(status, &self.map);
    }

    /// Removes a record from the map and the index.
    pub(crate) fn remove(&mut self, uuid: &Uuid) -> Option<Box<Slot>> {
        let slot = self.map.remove(uuid)?;
        self.index.left(slot.status);
        Some(slot)
    }

    /// Changes `uuid`'s record with `change` (`None` when there is no record), and keeps the
    /// index true when its status or change time moved: the one way to change a record.
    pub(crate) fn update<R>(
        &mut self,
        uuid: &Uuid,
        change: impl FnOnce(&mut Slot) -> R,
    ) -> Option<R> {
        let slot = self.map.get_mut(uuid)?;
        let (old, old_ns) = (slot.status, slot.updated_ns);
        let out = change(slot);
        let status = slot.status;
        if status != old || slot.updated_ns != old_ns {
            self.index.left(old);
            self.index.entered(*uuid, slot);
            self.index.compact(status, &self.map);
        }
        Some(out)
    }
}

/// A task's record and claim state, kept small: a million finished records are what a
/// busy process holds for the result TTL. The hot fields are inline (times as nanoseconds
/// since the Unix epoch instead of 16-byte `SystemTime`s); what few records have (an error, a
/// cancel reason, extra fields, parked waiters) is in one optional box. Boxed in the shard
/// maps: a map of a million inline records spent its time moving them when it grew.
pub(crate) struct Slot {
    pub(crate) task_name: TaskName,
    pub(crate) args: Payload,
    /// The result, once the status is `success`.
    pub(crate) returning: Option<Payload>,
    pub(crate) created_ns: u64,
    pub(crate) updated_ns: u64,
    /// The enqueue sequence number (its place in its priority's FIFO).
    pub(crate) seq: u64,
    /// The fencing token of the current claim.
    pub(crate) token: u64,
    pub(crate) priority: i32,
    /// How many times a worker started the task.
    pub(crate) attempts: u32,
    /// The generation of the record's current index entry (`index.rs`).
    pub(crate) ix: u32,
    pub(crate) status: TaskStatus,
    rare: Option<Box<Rare>>,
    /// The last attempt that ended, inline (most tasks run once: no allocation for their
    /// history); the earlier ones are in `Rare::earlier_runs`.
    last_run: Option<Ran>,
}

/// One ended attempt as a record keeps it (the worker's id shared, not copied).
struct Ran {
    worker: Arc<str>,
    started_ns: u64,
    finished_ns: u64,
    attempt: u32,
    status: TaskStatus,
}

/// The parts of a record that most records never have.
#[derive(Default)]
pub(crate) struct Rare {
    /// The error with its source chain (status `error` or `retry`).
    pub(crate) traceback: Option<String>,
    /// Why the task was cancelled (status `cancel`).
    pub(crate) cancel_reason: Option<String>,
    /// Extra fields (`dead_letter`, plugins' data).
    pub(crate) extra: BTreeMap<String, String>,
    /// Who waits for the task to be final.
    pub(crate) waiters: Waiters,
    /// The task's named queue (`None`: the default queue).
    pub(crate) queue: Option<&'static str>,
    /// The attempts that ended before the last one, oldest first (with `Slot::last_run`, at
    /// most `ATTEMPTS_KEPT`).
    earlier_runs: Vec<Ran>,
    /// The newest progress the task reported.
    pub(crate) progress: Option<Payload>,
}

impl Slot {
    /// A new record of status `new`, changed at `now`.
    pub(crate) fn new(task: &NewTask, seq: u64, now: SystemTime) -> Self {
        Slot {
            task_name: task.task_name.clone(),
            args: task.args.clone(),
            returning: None,
            created_ns: unix_ns(task.created_at),
            updated_ns: unix_ns(now),
            seq,
            token: 0,
            priority: task.priority,
            attempts: 0,
            ix: 0,
            status: TaskStatus::New,
            rare: None,
            last_run: None,
        }
    }

    /// The record as the storage reports it.
    pub(crate) fn task(&self, uuid: Uuid) -> Task {
        let mut task = Task::new(
            uuid,
            self.task_name.clone(),
            self.priority,
            self.args.clone(),
            from_unix_ns(self.created_ns),
        );
        task.status = self.status;
        task.updated_at = from_unix_ns(self.updated_ns);
        task.returning.clone_from(&self.returning);
        task.attempts = self.attempts;
        let earlier = self.rare.iter().flat_map(|r| r.earlier_runs.iter());
        task.history = earlier
            .chain(self.last_run.as_ref())
            .map(|r| Attempt {
                attempt: r.attempt,
                worker: r.worker.to_string(),
                started_at: from_unix_ns(r.started_ns),
                finished_at: from_unix_ns(r.finished_ns),
                status: r.status,
            })
            .collect();
        if let Some(rare) = &self.rare {
            task.traceback.clone_from(&rare.traceback);
            task.cancel_reason.clone_from(&rare.cancel_reason);
            task.extra.clone_from(&rare.extra);
            task.progress.clone_from(&rare.progress);
        }
        task
    }

    /// The task's named queue (`None`: the default queue).
    pub(crate) fn queue(&self) -> Option<&'static str> {
        self.rare.as_ref().and_then(|r| r.queue)
    }

    /// Keeps the run of `done` (of the current attempt) in the history, dropping the oldest
    /// beyond `ATTEMPTS_KEPT`.
    pub(crate) fn ran(&mut self, done: &Completion) {
        let Some(run) = &done.run else { return };
        if matches!(done.outcome, Outcome::Later { .. }) {
            // Not an attempt: it runs again under the same number.
            return;
        }
        let now = Ran {
            worker: run.worker.clone(),
            started_ns: unix_ns(run.started_at),
            finished_ns: unix_ns(run.finished_at),
            attempt: self.attempts,
            status: done.outcome.status(),
        };
        if let Some(previous) = self.last_run.replace(now) {
            let earlier = &mut self.rare_mut().earlier_runs;
            if earlier.len() + 1 >= ATTEMPTS_KEPT {
                earlier.remove(0);
            }
            earlier.push(previous);
        }
    }

    /// The rare parts, created when first needed.
    pub(crate) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Sets the error text (`None` clears it).
    pub(crate) fn set_traceback(&mut self, traceback: Option<String>) {
        if traceback.is_some() || self.rare.is_some() {
            self.rare_mut().traceback = traceback;
        }
    }

    /// The producer's span context, when the task carries one (kept in its extra fields).
    pub(crate) fn trace(&self) -> Option<Box<TraceContext>> {
        self.rare
            .as_ref()
            .and_then(|r| TraceContext::from_extra(&r.extra))
    }

    /// Whether the record is in the dead-letter.
    pub(crate) fn is_dead_letter(&self) -> bool {
        self.rare
            .as_ref()
            .is_some_and(|r| r.extra.contains_key(DEAD_LETTER))
    }

    /// Wakes every waiter: the task is final.
    pub(crate) fn wake_waiters(&mut self) {
        if let Some(rare) = &mut self.rare {
            rare.waiters.wake_all();
        }
    }

    /// The waiters, when any ever registered.
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> Option<&Waiters> {
        self.rare.as_ref().map(|r| &r.waiters)
    }

    /// The waiters, when any ever registered, to change.
    pub(crate) fn waiters_mut(&mut self) -> Option<&mut Waiters> {
        self.rare.as_mut().map(|r| &mut r.waiters)
    }

    /// Marks the record changed at `now`.
    pub(crate) fn touch(&mut self, now: SystemTime) {
        self.updated_ns = unix_ns(now);
    }
}

/// The extra field that marks a dead-lettered record (and why it was).
pub(crate) const DEAD_LETTER: &str = "dead_letter";

/// Nanoseconds since the Unix epoch (0 for a time before it); `u64` lasts until 2554.
pub(crate) fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs().saturating_mul(1_000_000_000) + u64::from(d.subsec_nanos())
    })
}

/// The time `ns` nanoseconds after the Unix epoch.
pub(crate) fn from_unix_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The task records, in shards.
pub(crate) struct Records {
    shards: Box<[Mutex<Shard>]>,
}

impl Records {
    pub(crate) fn new() -> Self {
        Records {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// The shard that holds `uuid`'s record.
    pub(crate) fn shard(&self, uuid: &Uuid) -> &Mutex<Shard> {
        // The uuid is random already: its low bits pick the shard.
        &self.shards[(uuid.as_u128() as usize) % SHARDS]
    }

    /// Every shard.
    pub(crate) fn shards(&self) -> impl Iterator<Item = &Mutex<Shard>> {
        self.shards.iter()
    }
}

impl MemoryBackend {
    /// Drops the finished records whose result TTL has passed by `now`, and the oldest
    /// finished ones beyond the cap ([`MemoryBackend::with_max_finished`]).
    pub(crate) fn expire(&self, now: Instant) {
        let mut due = Vec::new();
        {
            let now_ms = self.ms_since_epoch(now);
            let mut q = self.queue.lock();
            let cap = self.max_finished.unwrap_or(usize::MAX);
            while let Some((at, _)) = q.expiry.front() {
                if *at > now_ms && q.expiry.len() <= cap {
                    break;
                }
                if let Some((_, uuid)) = q.expiry.pop_front() {
                    due.push(uuid);
                }
            }
        }
        for uuid in due {
            let mut shard = self.records.shard(&uuid).lock();
            if shard.get(&uuid).is_some_and(|s| s.status.is_final()) {
                shard.remove(&uuid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use qtasks_core::backend::{Broker, Completion, NewTask, Outcome, Storage};
    use qtasks_core::Payload;
    use uuid::Uuid;

    use crate::MemoryBackend;

    #[tokio::test]
    async fn finished_records_beyond_the_cap_go_oldest_first() {
        let backend = Arc::new(MemoryBackend::new(Duration::from_secs(3600)).with_max_finished(10));
        let mut finished = Vec::new();
        for i in 0..100 {
            let task = NewTask {
                uuid: Uuid::new_v4(),
                task_name: "capped".into(),
                priority: 0,
                args: Payload::encode(&i).unwrap(),
                created_at: SystemTime::now(),
                not_before: None,
                trace: None,
                flow: None,
            };
            backend.enqueue(std::slice::from_ref(&task)).await.unwrap();
            let claimed = backend.claim(1).await.unwrap();
            let done = [Completion {
                lease: claimed[0].lease(),
                outcome: Outcome::Success(Payload::encode(&i).unwrap()),
                run: None,
            }];
            assert!(backend.complete(&done).await.unwrap().is_empty());
            finished.push(task.uuid);
        }
        let mut kept = Vec::new();
        for uuid in &finished {
            if Storage::get(&*backend, *uuid).await.unwrap().is_some() {
                kept.push(*uuid);
            }
        }
        // The cap holds, and what is kept is the newest.
        assert!(kept.len() <= 11, "{} kept", kept.len());
        assert!(kept.len() >= 10, "{} kept", kept.len());
        assert_eq!(kept.last(), finished.last());
        assert!(!kept.contains(&finished[0]));
    }
}
