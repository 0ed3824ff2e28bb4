//! [`Notices`]: what a backend that runs across processes does with the notifications it
//! receives (Redis pub/sub, PostgreSQL LISTEN/NOTIFY): wakes the local `wait` calls of the tasks
//! that finished, and hands cancel requests to the workers of this process. The payloads are
//! the same on every backend: finished uuids comma separated, and `<uuid>\n<reason>`.

use futures::stream::{BoxStream, StreamExt};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use crate::backend::CancelRequest;

/// Cancel requests kept for a slow worker before the oldest are dropped.
const CANCEL_BACKLOG: usize = 1024;

/// The local waiters of finished tasks and the cancel requests of one backend.
#[derive(Debug)]
pub struct Notices {
    waiters: Mutex<FxHashMap<Uuid, Vec<oneshot::Sender<()>>>>,
    cancels: broadcast::Sender<CancelRequest>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            waiters: Mutex::new(FxHashMap::default()),
            cancels: broadcast::channel(CANCEL_BACKLOG).0,
        }
    }
}

impl Notices {
    /// Registers interest in `uuid` finishing; the receiver fires when it may have finished
    /// (the caller reads the record again).
    pub fn register(&self, uuid: Uuid) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().entry(uuid).or_default().push(tx);
        rx
    }

    /// How many waits are registered now.
    pub fn parked(&self) -> usize {
        self.waiters.lock().values().map(Vec::len).sum()
    }

    /// Forgets the waiters of `uuid` that gave up.
    pub fn prune(&self, uuid: Uuid) {
        let mut waiters = self.waiters.lock();
        if let Some(list) = waiters.get_mut(&uuid) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(&uuid);
            }
        }
    }

    /// Wakes every waiter (after a reconnection: a notification sent meanwhile was missed).
    pub fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for tx in waiters.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// A `done` notification: wakes the waiters of the uuids in `payload` (comma separated;
    /// anything that is not a uuid is skipped).
    pub fn finished(&self, payload: &str) {
        let mut waiters = self.waiters.lock();
        if waiters.is_empty() {
            return;
        }
        for id in payload.split(',') {
            let Ok(uuid) = Uuid::parse_str(id) else {
                continue;
            };
            if let Some(list) = waiters.remove(&uuid) {
                for tx in list {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// A `cancel` notification (`<uuid>\n<reason>`, the reason optional): handed to every
    /// [`cancel_requests`](Self::cancel_requests) stream.
    pub fn cancel_requested(&self, payload: &str) {
        let (id, reason) = payload.split_once('\n').unwrap_or((payload, "cancelled"));
        if let Ok(uuid) = Uuid::parse_str(id) {
            let _ = self.cancels.send(CancelRequest {
                uuid,
                reason: reason.to_string(),
            });
        }
    }

    /// The cancel requests received from now on (a stream that skips what it lagged behind).
    pub fn cancel_requests(&self) -> BoxStream<'static, CancelRequest> {
        let rx = self.cancels.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(request) => return Some((request, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finished_wakes_only_the_named_waiters_and_cancels_reach_every_stream() {
        let notices = Notices::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut wait_a = notices.register(a);
        let mut wait_b = notices.register(b);
        assert_eq!(notices.parked(), 2);
        notices.finished(&format!("garbage,{a}"));
        assert!(wait_a.try_recv().is_ok());
        assert!(wait_b.try_recv().is_err(), "b has not finished");
        notices.wake_all();
        assert!(wait_b.try_recv().is_ok());
        assert_eq!(notices.parked(), 0);
        let mut requests = notices.cancel_requests();
        notices.cancel_requested(&format!("{a}\nno longer needed"));
        notices.cancel_requested("not a uuid");
        notices.cancel_requested(&b.to_string());
        let first = requests.next().await.unwrap();
        assert_eq!((first.uuid, first.reason.as_str()), (a, "no longer needed"));
        let second = requests.next().await.unwrap();
        assert_eq!((second.uuid, second.reason.as_str()), (b, "cancelled"));
    }
}
