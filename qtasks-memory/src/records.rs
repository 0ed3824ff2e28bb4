//! The record store: every task's record and claim state in sharded maps (the shard picked by
//! the uuid's low bits), and the dropping of finished records after the result TTL.

use std::time::Instant;

use parking_lot::Mutex;
use qtasks_core::Task;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::waiters::Waiters;
use crate::MemoryBackend;

const SHARDS: usize = 64;

/// One shard of the task records.
pub(crate) type Shard = FxHashMap<Uuid, Box<Slot>>;

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
}

/// The task records, in shards.
pub(crate) struct Records {
    shards: Box<[Mutex<Shard>]>,
}

impl Records {
    pub(crate) fn new() -> Self {
        Records {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
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
    /// Drops the finished records whose result TTL has passed by `now`.
    pub(crate) fn expire(&self, now: Instant) {
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
            let mut shard = self.records.shard(&uuid).lock();
            if shard.get(&uuid).is_some_and(|s| s.task.status.is_final()) {
                shard.remove(&uuid);
            }
        }
    }
}
