//! The worker's two queues: claimed jobs waiting for a lane ([`JobQueue`]) and finished
//! executions waiting for the flusher ([`DoneQueue`]). Both are bounded by the worker's slots:
//! a task holds its slot from its claim to its acknowledgement.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use tokio_util::sync::CancellationToken;

use crate::backend::{Completion, Delivery, Lease};
use crate::worker::cancel::CancelSignal;

/// Most completions acknowledged in one broker call.
pub(crate) const MAX_ACK_BATCH: usize = 1024;

/// A claimed task on its way to a lane, with the signal that cancels it.
pub(crate) struct Job {
    pub(crate) delivery: Delivery,
    pub(crate) cancel: CancelSignal,
    /// The claim marked it started already ([`Broker::claim_starting`](crate::backend::Broker::claim_starting)).
    pub(crate) started: bool,
}

/// The claimed jobs waiting for a lane (as many as there are slots at most). The fetcher adds
/// a claimed batch under one lock; a lane takes one job at a time. (A channel woke a sender and
/// a receiver for every job.)
#[derive(Default)]
pub(crate) struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    added: Notify,
    /// Lanes waiting for a job.
    waiting: AtomicUsize,
}

impl JobQueue {
    pub(crate) fn push(&self, jobs: Vec<Job>) {
        let n = jobs.len();
        self.jobs.lock().extend(jobs);
        // One wake-up per job (cheap when no lane waits: busy lanes take the next job without
        // waiting).
        for _ in 0..n {
            self.added.notify_one();
        }
    }

    /// How many lanes wait with no job queued for them: the jobs claimed next begin at once.
    pub(crate) fn idle_lanes(&self) -> usize {
        let waiting = self.waiting.load(Ordering::Acquire);
        waiting.saturating_sub(self.jobs.lock().len())
    }

    pub(crate) fn take_all(&self) -> impl Iterator<Item = Job> {
        std::mem::take(&mut *self.jobs.lock()).into_iter()
    }

    /// The next job, waiting for one; `None` once the worker stops.
    pub(crate) async fn next(&self, shutdown: &CancellationToken) -> Option<Job> {
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
            self.waiting.fetch_add(1, Ordering::AcqRel);
            let stopping = tokio::select! {
                biased;
                _ = shutdown.cancelled() => true,
                _ = added => false,
            };
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            if stopping {
                return None;
            }
        }
    }
}

/// Finished executions waiting for the flusher. Each keeps its slot until it is acknowledged,
/// so there are never more of them than slots. A lane adds one under a lock; the flusher takes
/// them all at once. (A channel cost a semaphore permit and a wake-up per task.)
#[derive(Default)]
pub(crate) struct DoneQueue {
    done: Mutex<Vec<Completion>>,
    added: Notify,
    /// Set once every lane has ended: the flusher acknowledges what is left, then stops.
    closed: AtomicBool,
}

impl DoneQueue {
    pub(crate) fn push(&self, completion: Completion) {
        self.done.lock().push(completion);
        // Stores a wake-up when the flusher is busy, so none is lost.
        self.added.notify_one();
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.added.notify_one();
    }

    /// Moves up to [`MAX_ACK_BATCH`] finished executions into `batch`, waiting for one;
    /// `false` once the queue is closed and empty.
    pub(crate) async fn take(&self, batch: &mut Vec<Completion>) -> bool {
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

/// Tasks about to start whose start the backend must record first (backends with leases:
/// [`Broker::started`](crate::backend::Broker::started)). Lanes add one each and wait; the
/// marker sends everything added since its last call in one call and answers each lane.
#[derive(Default)]
pub(crate) struct StartQueue {
    pending: Mutex<Vec<(Lease, oneshot::Sender<bool>)>>,
    added: Notify,
}

impl StartQueue {
    /// Asks to start the task of `lease`; the answer is `true` when it is still this
    /// worker's to run.
    pub(crate) fn push(&self, lease: Lease) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().push((lease, tx));
        self.added.notify_one();
        rx
    }

    /// Takes every pending start, waiting for one.
    pub(crate) async fn take(&self) -> Vec<(Lease, oneshot::Sender<bool>)> {
        loop {
            {
                let mut pending = self.pending.lock();
                if !pending.is_empty() {
                    return std::mem::take(&mut *pending);
                }
            }
            self.added.notified().await;
        }
    }

    /// Answers every pending start with `false` (the worker stops).
    pub(crate) fn refuse_all(&self) {
        for (_, tx) in std::mem::take(&mut *self.pending.lock()) {
            let _ = tx.send(false);
        }
    }
}
