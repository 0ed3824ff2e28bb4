//! [`CancelSignal`]: the signal that stops one claimed task, from the worker's hold (cancel
//! requests, lost leases) to its context (`ctx.is_cancelled()`, `ctx.cancelled()`, `max_time`).
//!
//! One is made per claimed task, so it is kept cheap: a flag and a [`Notify`] in one
//! allocation. A `CancellationToken` (a tree of parents and children under a mutex) locked
//! that mutex to drop each of its two handles; nothing here takes a lock unless someone waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Stops one task: [`cancel`](CancelSignal::cancel) once, seen by every clone.
#[derive(Clone, Default)]
pub(crate) struct CancelSignal(Arc<State>);

#[derive(Default)]
struct State {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelSignal {
    /// A signal not yet given.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Gives the signal (again: no effect) and wakes whoever waits for it.
    pub(crate) fn cancel(&self) {
        if !self.0.cancelled.swap(true, Ordering::AcqRel) {
            self.0.notify.notify_waiters();
        }
    }

    /// Whether the signal was given.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Resolves once the signal is given.
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a `cancel` in between still wakes it.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CancelSignal;

    #[tokio::test]
    async fn a_waiter_wakes_when_another_clone_cancels() {
        let cancel = CancelSignal::new();
        let waiter = {
            let cancel = cancel.clone();
            tokio::spawn(async move { cancel.cancelled().await })
        };
        assert!(!cancel.is_cancelled());
        cancel.cancel();
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert!(cancel.is_cancelled());
        // Already given: resolves at once.
        cancel.cancelled().await;
    }
}
