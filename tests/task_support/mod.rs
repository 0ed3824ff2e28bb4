//! Helpers for the `task_*` tests: events that running tasks report to the test.
#![allow(dead_code)]

use std::sync::LazyLock;

use tokio::sync::broadcast;
use uuid::Uuid;

/// What tasks report: (task uuid, what happened).
static EVENTS: LazyLock<broadcast::Sender<(Uuid, String)>> =
    LazyLock::new(|| broadcast::channel(1024).0);

/// Reports from inside a task.
pub(crate) fn report(uuid: Uuid, what: impl Into<String>) {
    let _ = EVENTS.send((uuid, what.into()));
}

/// Subscribes to reports (before enqueueing the task they come from).
pub(crate) fn events() -> Events {
    Events(EVENTS.subscribe())
}

/// A subscription to reports.
pub(crate) struct Events(broadcast::Receiver<(Uuid, String)>);

impl Events {
    /// Waits (up to the test deadline) for `uuid` to report `what`.
    pub(crate) async fn expect(&mut self, uuid: Uuid, what: &str) {
        let found = tokio::time::timeout(crate::common::DEADLINE, async {
            loop {
                match self.0.recv().await {
                    Ok((u, w)) if u == uuid && w == what => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
                }
            }
        })
        .await;
        assert!(found.is_ok(), "task {uuid} did not report {what:?} in time");
    }

    /// Every report of `uuid` received so far, without waiting.
    pub(crate) fn drain(&mut self, uuid: Uuid) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok((u, w)) = self.0.try_recv() {
            if u == uuid {
                out.push(w);
            }
        }
        out
    }
}

/// Reports `what` for `uuid` when dropped (shows that a task's future was dropped).
pub(crate) struct DropReport(pub Uuid, pub &'static str);

impl Drop for DropReport {
    fn drop(&mut self) {
        report(self.0, self.1);
    }
}

/// A broker that reports each completion it acknowledges (uuid and outcome kind), for
/// waiting on states that are not final, such as `retry`.
pub(crate) struct WatchedBroker {
    inner: std::sync::Arc<dyn qtasks::backend::Broker>,
    completions: broadcast::Sender<(Uuid, &'static str)>,
}

impl WatchedBroker {
    /// Wraps a fresh memory backend's broker; returns the backend to build an app with.
    pub(crate) fn memory() -> (qtasks::backend::Backend, std::sync::Arc<WatchedBroker>) {
        let memory = std::sync::Arc::new(qtasks::memory::MemoryBackend::new(
            std::time::Duration::from_secs(60),
        ))
        .backend();
        let watched = std::sync::Arc::new(WatchedBroker {
            inner: memory.broker.clone(),
            completions: broadcast::channel(1024).0,
        });
        (
            qtasks::backend::Backend {
                broker: watched.clone(),
                ..memory
            },
            watched,
        )
    }

    /// Subscribes to completions (before they happen).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<(Uuid, &'static str)> {
        self.completions.subscribe()
    }
}

impl qtasks::backend::Broker for WatchedBroker {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [qtasks::backend::NewTask],
    ) -> futures::future::BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Existing>>> {
        self.inner.enqueue(tasks)
    }
    fn claim(
        &self,
        max: usize,
    ) -> futures::future::BoxFuture<'_, qtasks::Result<Vec<qtasks::backend::Delivery>>> {
        self.inner.claim(max)
    }
    fn complete<'a>(
        &'a self,
        done: &'a [qtasks::backend::Completion],
    ) -> futures::future::BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Lease>>> {
        Box::pin(async move {
            let rejected = self.inner.complete(done).await?;
            for c in done {
                let kind = match c.outcome {
                    qtasks::backend::Outcome::Success(_) => "success",
                    qtasks::backend::Outcome::Failed { .. }
                    | qtasks::backend::Outcome::DeadLetter { .. } => "error",
                    qtasks::backend::Outcome::Cancelled { .. } => "cancel",
                    qtasks::backend::Outcome::Retry { .. } => "retry",
                    qtasks::backend::Outcome::Later { .. } => "later",
                };
                let _ = self.completions.send((c.lease.uuid, kind));
            }
            Ok(rejected)
        })
    }
    fn requeue<'a>(
        &'a self,
        leases: &'a [qtasks::backend::Lease],
    ) -> futures::future::BoxFuture<'a, qtasks::Result<()>> {
        self.inner.requeue(leases)
    }
    fn cancel(
        &self,
        uuid: Uuid,
        reason: &str,
    ) -> futures::future::BoxFuture<'_, qtasks::Result<qtasks::CancelOutcome>> {
        self.inner.cancel(uuid, reason)
    }
    fn stats(&self) -> futures::future::BoxFuture<'_, qtasks::Result<qtasks::backend::QueueStats>> {
        self.inner.stats()
    }
}
