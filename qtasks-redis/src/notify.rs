//! Notifications from Redis pub/sub: finished tasks (for `wait`) and cancel requests (for
//! workers running the task in another process).
//!
//! One subscriber connection per backend, started when first needed. It reconnects forever
//! with backoff; after each (re)connection it wakes every local waiter so that a completion
//! published while it was away is not missed (waiters re-read the record).

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;
use qtasks_core::backend::CancelRequest;
use qtasks_core::Backoff;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::client::Connections;

pub(crate) struct Notifier {
    state: Arc<State>,
    /// The subscriber task; started again if its runtime went away.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

struct State {
    conns: Arc<Connections>,
    done_channel: String,
    cancel_channel: String,
    waiters: Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>,
    cancels: broadcast::Sender<CancelRequest>,
}

impl Notifier {
    pub(crate) fn new(conns: Arc<Connections>, prefix: &str) -> Self {
        let stop = CancellationToken::new();
        Notifier {
            state: Arc::new(State {
                conns,
                done_channel: format!("{prefix}done"),
                cancel_channel: format!("{prefix}cancel"),
                waiters: Mutex::new(HashMap::new()),
                cancels: broadcast::channel(1024).0,
            }),
            task: Mutex::new(None),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        }
    }

    fn ensure_started(&self) {
        let mut task = self.task.lock();
        if task.as_ref().is_none_or(|t| t.is_finished()) {
            *task = Some(tokio::spawn(subscribe_loop(
                self.state.clone(),
                self.stop.clone(),
            )));
        }
    }

    /// Registers interest in `uuid` finishing; the receiver fires when it may have finished.
    pub(crate) fn register(&self, uuid: Uuid) -> oneshot::Receiver<()> {
        self.ensure_started();
        let (tx, rx) = oneshot::channel();
        self.state.waiters.lock().entry(uuid).or_default().push(tx);
        rx
    }

    /// How many waits are registered now.
    pub(crate) fn parked(&self) -> usize {
        self.state.waiters.lock().values().map(Vec::len).sum()
    }

    /// Forgets waiters of `uuid` that gave up.
    pub(crate) fn prune(&self, uuid: Uuid) {
        let mut waiters = self.state.waiters.lock();
        if let Some(list) = waiters.get_mut(&uuid) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(&uuid);
            }
        }
    }

    /// Cancel requests published by any process of the app.
    pub(crate) fn cancel_requests(&self) -> BoxStream<'static, CancelRequest> {
        self.ensure_started();
        let rx = self.state.cancels.subscribe();
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

async fn subscribe_loop(state: Arc<State>, stop: CancellationToken) {
    let mut backoff = Backoff::RECONNECT.steps();
    loop {
        match subscribe(&state).await {
            Ok(pubsub) => {
                backoff.reset();
                wake_all(&state);
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(message) = message else { break };
                    let payload = message.get_payload_bytes();
                    if message.get_channel_name() == state.done_channel {
                        finished(&state, payload);
                    } else {
                        cancel_requested(&state, payload);
                    }
                }
                tracing::warn!("lost the Redis pub/sub connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to Redis notifications; trying again");
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn subscribe(
    state: &State,
) -> Result<deadpool_redis::redis::aio::PubSub, deadpool_redis::redis::RedisError> {
    let mut pubsub = state.conns.pubsub().await?;
    pubsub.subscribe(&state.done_channel).await?;
    pubsub.subscribe(&state.cancel_channel).await?;
    Ok(pubsub)
}

/// Wakes every waiter: they re-read their task (after a reconnection, a completion may have
/// been published while nobody listened).
fn wake_all(state: &State) {
    let waiters = std::mem::take(&mut *state.waiters.lock());
    for tx in waiters.into_values().flatten() {
        let _ = tx.send(());
    }
}

fn finished(state: &State, payload: &[u8]) {
    let mut waiters = state.waiters.lock();
    if waiters.is_empty() {
        return;
    }
    for id in payload.split(|b| *b == b',') {
        let Some(uuid) = std::str::from_utf8(id)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            continue;
        };
        if let Some(list) = waiters.remove(&uuid) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }
}

fn cancel_requested(state: &State, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let (id, reason) = text.split_once('\n').unwrap_or((&text, "cancelled"));
    if let Ok(uuid) = Uuid::parse_str(id) {
        let _ = state.cancels.send(CancelRequest {
            uuid,
            reason: reason.to_string(),
        });
    }
}
