//! Waiting for a task's final state: each waiter is a oneshot channel whose sender is kept in
//! the task's record (so registering and checking the status happen under one lock, and a
//! completion in between cannot be missed) and fired when the task becomes final.
//!
//! A waiter that gives up (its wait timed out, or its future was dropped) removes its own
//! sender again ([`Waiter`]'s `Drop`), so waits that time out leave nothing behind however
//! many there are.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::records::Shard;

/// Waiter ids, unique in the process: a waiter removes exactly its own sender, even from a
/// record that replaced the one it registered with (a task enqueued again under its uuid).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The waiters of one task, by id (a map, so that however many wait together, one that gives
/// up is removed at once).
#[derive(Default)]
pub(crate) struct Waiters(FxHashMap<u64, oneshot::Sender<()>>);

impl Waiters {
    /// Wakes every waiter: the task is final.
    pub(crate) fn wake_all(&mut self) {
        for tx in std::mem::take(&mut self.0).into_values() {
            let _ = tx.send(());
        }
    }

    /// How many waiters there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn remove(&mut self, id: u64) {
        self.0.remove(&id);
        if self.0.is_empty() {
            // The last one gave up: free the map's memory too.
            self.0 = FxHashMap::default();
        }
    }
}

/// One registered wait for a task: the receiving end. Dropped before it fired, it removes its
/// sender from the task's record.
pub(crate) struct Waiter<'a> {
    shard: &'a Mutex<Shard>,
    /// The backend's count of parked waits.
    parked: &'a AtomicUsize,
    uuid: Uuid,
    id: u64,
    rx: oneshot::Receiver<()>,
    /// Whether the sender may still be in the record (it has not fired).
    registered: bool,
}

impl<'a> Waiter<'a> {
    /// Registers a wait in `waiters`, the waiters of `uuid`'s record in `shard`, whose lock the
    /// caller holds. Drop the result only after releasing that lock.
    pub(crate) fn register(
        shard: &'a Mutex<Shard>,
        parked: &'a AtomicUsize,
        uuid: Uuid,
        waiters: &mut Waiters,
    ) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        waiters.0.insert(id, tx);
        parked.fetch_add(1, Ordering::Relaxed);
        Waiter {
            shard,
            parked,
            uuid,
            id,
            rx,
            registered: true,
        }
    }

    /// Waits until the task may be final (its sender fired, or went away with its record);
    /// `false` when `deadline` came first.
    pub(crate) async fn woken_before(&mut self, deadline: tokio::time::Instant) -> bool {
        let woken = tokio::time::timeout_at(deadline, &mut self.rx)
            .await
            .is_ok();
        if woken {
            // The sender is gone: fired by `wake_all`, or dropped with its record.
            self.registered = false;
            self.parked.fetch_sub(1, Ordering::Relaxed);
        }
        woken
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        if let Some(waiters) = self
            .shard
            .lock()
            .get_mut(&self.uuid)
            .and_then(|slot| slot.waiters_mut())
        {
            waiters.remove(self.id);
        }
        self.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
impl crate::MemoryBackend {
    /// How many waiters are registered, over every record.
    pub(crate) fn waiter_count(&self) -> usize {
        self.records
            .shards()
            .map(|shard| {
                shard
                    .lock()
                    .values()
                    .map(|s| s.waiters().map_or(0, Waiters::len))
                    .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use qtasks_core::backend::{Broker, Completion, NewTask, Outcome, Storage};
    use qtasks_core::{Payload, TaskStatus};
    use uuid::Uuid;

    use crate::MemoryBackend;

    const WAITS: usize = 100_000;

    /// A backend with `n` tasks enqueued (status `new`, never claimed).
    async fn backend_with(n: usize) -> (Arc<MemoryBackend>, Vec<Uuid>) {
        let backend = Arc::new(MemoryBackend::new(Duration::from_secs(60)));
        let tasks: Vec<NewTask> = (0..n)
            .map(|i| NewTask {
                uuid: Uuid::new_v4(),
                task_name: format!("waited-{i}").into(),
                priority: 0,
                args: Payload::default(),
                created_at: SystemTime::now(),
                not_before: None,
                trace: None,
                flow: None,
            })
            .collect();
        backend.enqueue(&tasks).await.unwrap();
        (backend, tasks.iter().map(|t| t.uuid).collect())
    }

    async fn assert_all_new(backend: &MemoryBackend, ids: &[Uuid]) {
        for id in ids {
            let task = Storage::get(backend, *id)
                .await
                .unwrap()
                .expect("the record");
            assert_eq!(task.status, TaskStatus::New);
        }
    }

    /// `WAITS` waits on `pick(i)` that time out after `timeout`, 1000 at a time (together,
    /// so that they share the timer's ticks).
    async fn timed_out_waits(
        backend: &MemoryBackend,
        pick: impl Fn(usize) -> Uuid,
        timeout: Duration,
    ) {
        for batch in 0..WAITS / 1000 {
            let waits = (0..1000).map(|i| backend.wait(pick(batch * 1000 + i), timeout));
            for got in futures::future::join_all(waits).await {
                assert!(got.unwrap().is_none(), "the tasks are not final");
            }
        }
    }

    /// The scan of every record and the backend's counter agree.
    fn parked(backend: &MemoryBackend) -> usize {
        let counted = Storage::parked_waits(backend).expect("the memory backend counts");
        assert_eq!(counted, backend.waiter_count());
        counted
    }

    #[tokio::test]
    async fn timed_out_waits_on_one_task_leave_no_waiter() {
        let (backend, ids) = backend_with(1).await;
        timed_out_waits(&backend, |_| ids[0], Duration::ZERO).await;
        assert_eq!(parked(&backend), 0);
        // Many parked at once on the one task, then timing out together.
        let all = (0..10_000).map(|_| backend.wait(ids[0], Duration::from_millis(20)));
        for got in futures::future::join_all(all).await {
            assert!(got.unwrap().is_none());
        }
        assert_eq!(parked(&backend), 0);
        assert_all_new(&backend, &ids).await;
    }

    #[tokio::test]
    async fn timed_out_waits_on_many_tasks_leave_no_waiter() {
        let (backend, ids) = backend_with(1000).await;
        timed_out_waits(&backend, |i| ids[i % 1000], Duration::from_millis(1)).await;
        assert_eq!(parked(&backend), 0);
        assert_all_new(&backend, &ids).await;
    }

    /// Waits whose futures are dropped while parked (by an outer timeout) leave no waiter, and
    /// waiting still works after them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_waits_leave_no_waiter() {
        let (backend, ids) = backend_with(2).await;
        let hour = Duration::from_secs(3600);
        for _ in 0..10 {
            let dropped = (0..1000).map(|i| {
                tokio::time::timeout(Duration::from_millis(1), backend.wait(ids[i % 2], hour))
            });
            for got in futures::future::join_all(dropped).await {
                assert!(got.is_err(), "the wait was still parked: {got:?}");
            }
        }
        assert_eq!(parked(&backend), 0);
        assert_all_new(&backend, &ids).await;

        // A parked waiter is woken by the completion.
        let waiter = {
            let (backend, id) = (backend.clone(), ids[0]);
            tokio::spawn(async move { backend.wait(id, hour).await })
        };
        while backend.waiter_count() == 0 {
            tokio::task::yield_now().await;
        }
        let claimed = backend.claim(1).await.unwrap();
        assert_eq!(claimed[0].uuid, ids[0]);
        let done = [Completion {
            lease: claimed[0].lease(),
            outcome: Outcome::Success(Payload::default()),
            run: None,
        }];
        assert!(backend.complete(&done).await.unwrap().is_empty());
        let task = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the completion")
            .unwrap()
            .unwrap()
            .expect("final");
        assert_eq!(task.status, TaskStatus::Success);
        assert_eq!(parked(&backend), 0);
    }
}
