//! Waiting for a task's final state: each waiter is a oneshot channel whose sender is kept in
//! the task's record (so registering and checking the status happen under one lock, and a
//! completion in between cannot be missed) and fired when the task becomes final.

use tokio::sync::oneshot;

/// The waiters of one task.
#[derive(Default)]
pub(crate) struct Waiters(Vec<oneshot::Sender<()>>);

impl Waiters {
    /// Registers a waiter: the receiver fires when the task is final.
    pub(crate) fn register(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.0.push(tx);
        rx
    }

    /// Wakes every waiter: the task is final.
    pub(crate) fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            let _ = w.send(());
        }
    }
}
