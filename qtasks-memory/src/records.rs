//! The record store: every task's record and claim state in sharded maps (the shard picked by
//! the uuid's low bits), and the dropping of finished records after the result TTL.

use std::ops::{Deref, DerefMut};
use std::time::Instant;

use parking_lot::Mutex;
use qtasks_core::{Task, TaskStatus};
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
        let status = slot.task.status;
        self.map.insert(uuid, slot);
        self.index.compact(status, &self.map);
    }

    /// Removes a record from the map and the index.
    pub(crate) fn remove(&mut self, uuid: &Uuid) -> Option<Box<Slot>> {
        let slot = self.map.remove(uuid)?;
        self.index.left(slot.task.status);
        Some(slot)
    }

    /// Notes that `uuid`'s record, which had status `old`, changed its status or `updated_at`.
    pub(crate) fn moved(&mut self, uuid: &Uuid, old: TaskStatus) {
        let Some(slot) = self.map.get_mut(uuid) else {
            return;
        };
        self.index.left(old);
        self.index.entered(*uuid, slot);
        let status = slot.task.status;
        self.index.compact(status, &self.map);
    }
}

/// A task's record and claim state. Boxed in the shard maps: a record is a few hundred bytes,
/// and a map of a million inline records spent its time moving them when it grew.
pub(crate) struct Slot {
    pub(crate) task: Task,
    /// The enqueue sequence number (its place in its priority's FIFO).
    pub(crate) seq: u64,
    /// The fencing token of the current claim.
    pub(crate) token: u64,
    /// Who waits for the task to be final.
    pub(crate) waiters: Waiters,
    /// The generation of the record's current index entry (`index.rs`).
    pub(crate) ix: u32,
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
            let mut q = self.queue.lock();
            let cap = self.max_finished.unwrap_or(usize::MAX);
            while let Some((at, _)) = q.expiry.front() {
                if *at > now && q.expiry.len() <= cap {
                    break;
                }
                if let Some((_, uuid)) = q.expiry.pop_front() {
                    due.push(uuid);
                }
            }
        }
        for uuid in due {
            let mut shard = self.records.shard(&uuid).lock();
            if shard.get(&uuid).is_some_and(|s| s.task.status.is_final()) {
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
            };
            backend.enqueue(std::slice::from_ref(&task)).await.unwrap();
            let claimed = backend.claim(1).await.unwrap();
            let done = [Completion {
                lease: claimed[0].lease(),
                outcome: Outcome::Success(Payload::encode(&i).unwrap()),
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
