//! The in-process backend of qtasks: broker, storage and global config in one value, the
//! embedded default of the `qtasks` facade.
//!
//! Tasks live in sharded maps; the ready queue orders them by (priority, enqueue sequence), so
//! lower priority numbers run first and equal priorities run in FIFO order.
//! Claiming blocks on a [`Notify`] wake-up (and, for delayed tasks, a timer until the earliest
//! one is due), never on a polling sleep. Finished records are dropped after the result TTL, and
//! beyond `max_finished` (`memory://?max_finished=N`) the oldest go first.
//!
//! The source, by concern: `queue` (the ready queue and the delayed tasks), `records` (the
//! sharded record store and its expiry), `index` (each shard's per-status index), `waiters`
//! (waiting for a final state), `broker`, `storage` and `global_config` (the component
//! traits), and `inspect` (listing, retrying and deleting failed tasks, purging, pauses).
#![warn(missing_docs)]

mod broker;
mod flow;
mod global_config;
mod index;
mod inspect;
mod queue;
mod records;
mod storage;
mod waiters;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use qtasks_core::backend::inspect::{MinuteCount, Pauses};
use qtasks_core::backend::{Backend, BackendFactory, OpenRequest, BACKENDS};
use qtasks_core::{Error, Result};
use tokio::sync::Notify;

use crate::flow::Flow;
use crate::inspect::MinuteHistograms;
use crate::queue::{ClaimQueues, Queue};
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
    /// The most finished records kept (the oldest go first); `None`: as many as finish within
    /// the result TTL.
    max_finished: Option<usize>,
    /// Waits parked right now ([`Storage::parked_waits`](qtasks_core::backend::Storage::parked_waits)).
    parked_waits: std::sync::atomic::AtomicUsize,
    /// What is paused, and whether anything is (read by every claim without the lock).
    pauses: Mutex<Pauses>,
    any_paused: AtomicBool,
    /// Tasks finished per minute, oldest first (`inspect.rs`).
    finished: Mutex<VecDeque<MinuteCount>>,
    /// Latency histograms per minute (queue, execution), oldest first (`inspect.rs`).
    latency: Mutex<VecDeque<MinuteHistograms>>,
    /// When the backend was made: expiry times are milliseconds after it.
    epoch: Instant,
    /// Unique keys, debounce, concurrency slots and rate permits (`flow.rs`), and whether
    /// anything uses them (read by every claim without the lock).
    flow: Mutex<Flow>,
    flow_on: AtomicBool,
    /// Whether a debounced task ever moved its start (claims then skip stale entries).
    debouncing: AtomicBool,
    /// Whether any task name has a concurrency or rate limit (`Broker::set_limits`).
    limited: AtomicBool,
    /// The queues claims take from (`Broker::set_queues`).
    queues: Mutex<ClaimQueues>,
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
            max_finished: None,
            parked_waits: std::sync::atomic::AtomicUsize::new(0),
            pauses: Mutex::new(Pauses::default()),
            any_paused: AtomicBool::new(false),
            finished: Mutex::new(VecDeque::new()),
            latency: Mutex::new(VecDeque::new()),
            epoch: Instant::now(),
            flow: Mutex::new(Flow::default()),
            flow_on: AtomicBool::new(false),
            debouncing: AtomicBool::new(false),
            limited: AtomicBool::new(false),
            queues: Mutex::new(ClaimQueues::default()),
        }
    }

    /// Milliseconds from the backend's making to `at`.
    fn ms_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Keeps at most `n` finished records (the oldest finished go first, before their result
    /// TTL), so a long-running process holds a bounded number of results. URL:
    /// `memory://?max_finished=100000`.
    pub fn with_max_finished(mut self, n: usize) -> Self {
        self.max_finished = Some(n);
        self
    }

    /// The backend's components, for `App::builder().backend(..)`.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend::from_shared(self.clone())
    }

    /// How many tasks wait in the ready queue (not delayed, not running).
    pub fn queued(&self) -> usize {
        let q = self.queue.lock();
        q.ready.len + q.named.values().map(|r| r.len).sum::<usize>()
    }
}

fn open(request: &OpenRequest<'_>) -> Result<Backend> {
    let mut backend = MemoryBackend::new(request.config.result_ttl);
    let query = request
        .url
        .and_then(|url| url.split_once('?'))
        .map_or("", |(_, query)| query);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "max_finished" => match value.parse::<usize>() {
                Ok(n) => backend = backend.with_max_finished(n),
                Err(_) => {
                    return Err(Error::Config {
                        key: "broker_url".into(),
                        value: request.url.unwrap_or_default().into(),
                        expected: format!(
                            "`max_finished` as a whole number of records, not {value:?}"
                        ),
                    })
                }
            },
            _ => {
                return Err(Error::Config {
                    key: "broker_url".into(),
                    value: request.url.unwrap_or_default().into(),
                    expected: format!(
                        "memory:// takes the option `max_finished=N` (the most finished records kept); {key:?} is not one"
                    ),
                })
            }
        }
    }
    Ok(Arc::new(backend).backend())
}

#[linkme::distributed_slice(BACKENDS)]
static MEMORY: BackendFactory = BackendFactory {
    scheme: "memory",
    open,
};
