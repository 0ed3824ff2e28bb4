//! The in-process backend of qtasks: broker, storage and global config in one value, the
//! embedded default of the `qtasks` facade.
//!
//! Tasks live in sharded maps; the ready queue orders them by (priority, enqueue sequence), so
//! lower priority numbers run first and equal priorities run in FIFO order.
//! Claiming blocks on a [`Notify`] wake-up (and, for delayed tasks, a timer until the earliest
//! one is due), never on a polling sleep. Finished records are dropped after the result TTL.
//!
//! The source, by concern: `queue` (the ready queue and the delayed tasks), `records` (the
//! sharded record store and its expiry), `waiters` (waiting for a final state), and `broker`,
//! `storage` and `global_config` (the component traits).
#![warn(missing_docs)]

mod broker;
mod global_config;
mod queue;
mod records;
mod storage;
mod waiters;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use qtasks_core::backend::{Backend, BackendFactory, OpenRequest, BACKENDS};
use qtasks_core::Result;
use tokio::sync::Notify;

use crate::queue::Queue;
use crate::records::Records;

/// The in-process broker, storage and global config.
///
/// Every app built without a `broker_url` gets its own, so apps in one process (tests) never
/// see each other's tasks. Use [`MemoryBackend::backend`] to share one between apps.
pub struct MemoryBackend {
    records: Records,
    queue: Mutex<Queue>,
    wake: Notify,
    kv: Mutex<BTreeMap<String, String>>,
    claims: Mutex<HashMap<String, Instant>>,
    heartbeats: Mutex<HashMap<String, Instant>>,
    dead_letter: Mutex<u64>,
    result_ttl: Duration,
    /// Waits parked right now ([`Storage::parked_waits`](qtasks_core::backend::Storage::parked_waits)).
    parked_waits: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("result_ttl", &self.result_ttl)
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// An empty backend that keeps finished records for `result_ttl`.
    pub fn new(result_ttl: Duration) -> Self {
        MemoryBackend {
            records: Records::new(),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            kv: Mutex::new(BTreeMap::new()),
            claims: Mutex::new(HashMap::new()),
            heartbeats: Mutex::new(HashMap::new()),
            dead_letter: Mutex::new(0),
            result_ttl,
            parked_waits: std::sync::atomic::AtomicUsize::new(0),
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
}

fn open(request: &OpenRequest<'_>) -> Result<Backend> {
    Ok(Arc::new(MemoryBackend::new(request.config.result_ttl)).backend())
}

#[linkme::distributed_slice(BACKENDS)]
static MEMORY: BackendFactory = BackendFactory {
    scheme: "memory",
    open,
};
