//! [`WorkerScope`]: a worker as the tasks it runs and the app see it: its id, its shutdown
//! signal, its dependency scope, and the tasks it holds with their cancellation (the cancel
//! bookkeeping). [`WorkerRef`] is its public face inside a task.
//!
//! It sits below the executor: the executor and the task context read it, and the worker's
//! run loop (`run.rs`) fills it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backend::{Delivery, Lease};
use crate::di::scopes::{ScopeCache, ScopeKind};
use crate::worker::cancel::CancelSignal;

/// How long an unmatched cancel waits for its task's claim to arrive (the task may run on
/// another worker, which got its own copy).
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(60);
/// Most unmatched cancels kept.
const EARLY_CANCEL_MAX: usize = 1024;

/// One worker's identity, dependency scope and held tasks.
pub(crate) struct WorkerScope {
    id: String,
    shutdown: CancellationToken,
    dependencies: ScopeCache,
    held: Mutex<FxHashMap<Uuid, Held>>,
    /// Cancels of tasks the broker already marked running but this worker had not yet
    /// registered (the claim was still on its way): applied when the claim arrives.
    early_cancels: Mutex<Vec<EarlyCancel>>,
    has_early_cancels: AtomicBool,
}

/// A task the worker holds, from its claim to its acknowledgement.
struct Held {
    token: u64,
    cancel: CancelSignal,
    reason: Option<String>,
    stage: Stage,
    /// The backend reported the lease gone: the task is not started, and not acknowledged.
    lost: bool,
}

/// Where a held task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Claimed (prefetched), not started.
    Claimed,
    /// Running.
    Running,
    /// Finished, its acknowledgement on its way.
    Finished,
}

/// What [`WorkerScope::lose`] found among the leases the backend reported gone.
#[derive(Debug, Default)]
pub(crate) struct LostLeases {
    /// Running tasks, now told to stop.
    pub(crate) running: Vec<Uuid>,
    /// Prefetched tasks, which will not start.
    pub(crate) unstarted: Vec<Uuid>,
}

impl LostLeases {
    /// Whether nothing held was lost.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty() && self.unstarted.is_empty()
    }
}

/// Why the tasks of a lost lease stop.
pub(crate) const LEASE_LOST: &str = "this worker lost the task's lease (it was paused or cut off from the backend for longer than the lease), so another worker runs the task";

struct EarlyCancel {
    uuid: Uuid,
    reason: String,
    at: Instant,
}

impl WorkerScope {
    /// The scope of a new worker (the built-in one, a worker of one's own, the testing kit's
    /// inline worker).
    pub(crate) fn new(id: String) -> Self {
        WorkerScope {
            id,
            shutdown: CancellationToken::new(),
            dependencies: ScopeCache::new(ScopeKind::Worker),
            held: Mutex::new(FxHashMap::default()),
            early_cancels: Mutex::new(Vec::new()),
            has_early_cancels: AtomicBool::new(false),
        }
    }

    /// The worker's id (`app-pid-n`).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// How many tasks the worker holds (running, prefetched, or finished and not yet
    /// acknowledged).
    pub(crate) fn inflight(&self) -> usize {
        self.held.lock().len()
    }

    /// Asks the worker to stop.
    pub(crate) fn signal_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The token cancelled when the worker is asked to stop.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The worker's dependency scope.
    pub(crate) fn dependencies(&self) -> &ScopeCache {
        &self.dependencies
    }

    /// Stops a task this worker holds, with a reason; remembered for a while when the claim
    /// has not arrived yet.
    pub(crate) fn cancel_running(&self, uuid: Uuid, reason: &str) {
        let mut held = self.held.lock();
        if let Some(entry) = held.get_mut(&uuid) {
            entry.reason = Some(reason.to_string());
            entry.cancel.cancel();
            return;
        }
        // Not registered yet: the claim may still be on its way to this worker. Lock order
        // is held, then early_cancels (as in `hold`).
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

    /// Takes claimed deliveries into the worker's hold, each with the token that cancels it,
    /// applying cancels that arrived before them.
    pub(crate) fn hold(&self, deliveries: Vec<Delivery>) -> Vec<(Delivery, CancelSignal)> {
        let mut jobs = Vec::with_capacity(deliveries.len());
        let mut held = self.held.lock();
        for delivery in deliveries {
            let cancel = CancelSignal::new();
            held.insert(
                delivery.uuid,
                Held {
                    token: delivery.token,
                    cancel: cancel.clone(),
                    reason: None,
                    stage: Stage::Claimed,
                    lost: false,
                },
            );
            jobs.push((delivery, cancel));
        }
        if self.has_early_cancels.load(Ordering::Acquire) {
            let mut early = self.early_cancels.lock();
            early.retain(|e| match held.get_mut(&e.uuid) {
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

    /// Lets go of tasks (acknowledged, or returned to the queue).
    pub(crate) fn release(&self, uuids: impl IntoIterator<Item = Uuid>) {
        let mut held = self.held.lock();
        for uuid in uuids {
            held.remove(&uuid);
        }
    }

    /// A lane is about to run the task: `false` when its lease was lost meanwhile (it must
    /// not start).
    pub(crate) fn begin(&self, uuid: Uuid) -> bool {
        match self.held.lock().get_mut(&uuid) {
            Some(held) if !held.lost => {
                held.stage = Stage::Running;
                true
            }
            _ => false,
        }
    }

    /// The task finished and its acknowledgement goes out: `false` when its lease was lost
    /// while it ran (the acknowledgement would be rejected; the task is released instead).
    pub(crate) fn finish(&self, uuid: Uuid) -> bool {
        match self.held.lock().get_mut(&uuid) {
            Some(held) if !held.lost => {
                held.stage = Stage::Finished;
                true
            }
            _ => false,
        }
    }

    /// The backend reported these leases gone: running tasks under them are told to stop,
    /// prefetched ones will not start. Leases of tasks no longer held, held under another
    /// token, or finished (their acknowledgement raced the report) are not lost work and are
    /// left out.
    pub(crate) fn lose(&self, leases: &[Lease]) -> LostLeases {
        let mut report = LostLeases::default();
        let mut held = self.held.lock();
        for lease in leases {
            let Some(entry) = held.get_mut(&lease.uuid) else {
                continue;
            };
            if entry.token != lease.token || entry.lost || entry.stage == Stage::Finished {
                continue;
            }
            entry.lost = true;
            match entry.stage {
                Stage::Running => {
                    entry.reason = Some(LEASE_LOST.to_string());
                    entry.cancel.cancel();
                    report.running.push(lease.uuid);
                }
                _ => report.unstarted.push(lease.uuid),
            }
        }
        report
    }

    /// The reason a held task was cancelled with.
    pub(crate) fn cancel_reason(&self, uuid: Uuid) -> Option<String> {
        self.held.lock().get(&uuid).and_then(|e| e.reason.clone())
    }

    /// The leases of every held task.
    pub(crate) fn leases(&self) -> Vec<Lease> {
        self.held
            .lock()
            .iter()
            .map(|(uuid, e)| Lease {
                uuid: *uuid,
                token: e.token,
            })
            .collect()
    }
}

/// The worker running a task, as its context sees it
/// ([`TaskContext::worker`](crate::TaskContext::worker)).
#[derive(Clone)]
pub struct WorkerRef(Arc<WorkerScope>);

impl WorkerRef {
    pub(crate) fn new(scope: Arc<WorkerScope>) -> Self {
        WorkerRef(scope)
    }

    /// The worker's id (`app-pid-n`).
    pub fn id(&self) -> &str {
        self.0.id()
    }

    /// How many tasks the worker holds right now (running and prefetched).
    pub fn inflight(&self) -> usize {
        self.0.inflight()
    }

    /// Asks the worker to stop gracefully (as
    /// [`WorkerHandle::signal_shutdown`](crate::WorkerHandle::signal_shutdown)).
    pub fn signal_shutdown(&self) {
        self.0.signal_shutdown();
    }
}

impl std::fmt::Debug for WorkerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WorkerRef").field(&self.0.id).finish()
    }
}

impl std::fmt::Debug for WorkerScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerScope")
            .field("id", &self.id)
            .field("inflight", &self.inflight())
            .finish()
    }
}
