//! Helpers for the `task_*` tests: events that running tasks report to the test.
#![allow(dead_code)]

use std::sync::LazyLock;

use tokio::sync::broadcast;
use uuid::Uuid;

/// What tasks report: (task uuid, what happened).
static EVENTS: LazyLock<broadcast::Sender<(Uuid, String)>> =
    LazyLock::new(|| broadcast::channel(1024).0);

/// Reports from inside a task.
pub fn report(uuid: Uuid, what: impl Into<String>) {
    let _ = EVENTS.send((uuid, what.into()));
}

/// Subscribes to reports (before enqueueing the task they come from).
pub fn events() -> Events {
    Events(EVENTS.subscribe())
}

/// A subscription to reports.
pub struct Events(broadcast::Receiver<(Uuid, String)>);

impl Events {
    /// Waits (up to the test deadline) for `uuid` to report `what`.
    pub async fn expect(&mut self, uuid: Uuid, what: &str) {
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
    pub fn drain(&mut self, uuid: Uuid) -> Vec<String> {
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
pub struct DropReport(pub Uuid, pub &'static str);

impl Drop for DropReport {
    fn drop(&mut self) {
        report(self.0, self.1);
    }
}
