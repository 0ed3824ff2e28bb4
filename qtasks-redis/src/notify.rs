//! Notifications from Redis pub/sub: finished tasks (for `wait`) and cancel requests (for
//! workers running the task in another process).
//!
//! One subscriber connection per backend, started when first needed. It reconnects forever
//! with backoff; after each (re)connection it wakes every local waiter so that a completion
//! published while it was away is not missed (waiters re-read the record).

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;
use qtasks_core::backend::{CancelRequest, Notices};
use qtasks_core::Backoff;
use tokio::sync::oneshot;
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
    notices: Notices,
}

impl Notifier {
    pub(crate) fn new(conns: Arc<Connections>, prefix: &str) -> Self {
        let stop = CancellationToken::new();
        Notifier {
            state: Arc::new(State {
                conns,
                done_channel: format!("{prefix}done"),
                cancel_channel: format!("{prefix}cancel"),
                notices: Notices::default(),
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
        self.state.notices.register(uuid)
    }

    /// How many waits are registered now.
    pub(crate) fn parked(&self) -> usize {
        self.state.notices.parked()
    }

    /// Forgets waiters of `uuid` that gave up.
    pub(crate) fn prune(&self, uuid: Uuid) {
        self.state.notices.prune(uuid);
    }

    /// Cancel requests sent by any process of the app.
    pub(crate) fn cancel_requests(&self) -> BoxStream<'static, CancelRequest> {
        self.ensure_started();
        self.state.notices.cancel_requests()
    }
}

async fn subscribe_loop(state: Arc<State>, stop: CancellationToken) {
    let mut backoff = Backoff::RECONNECT.steps();
    loop {
        match subscribe(&state).await {
            Ok(pubsub) => {
                backoff.reset();
                state.notices.wake_all();
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(message) = message else { break };
                    let payload = message.get_payload_bytes();
                    if message.get_channel_name() == state.done_channel {
                        state.notices.finished(&String::from_utf8_lossy(payload));
                    } else {
                        state
                            .notices
                            .cancel_requested(&String::from_utf8_lossy(payload));
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
