//! Notifications through LISTEN/NOTIFY on one dedicated connection per backend: wake-ups for
//! idle workers (`w`), finished uuids for `wait` (`d`), and cancel requests for workers running
//! the task in another process (`c`). Each app has its own three channels
//! (`<schema>.channel(kind, app)`); notifications are sent by the SQL functions and delivered
//! when their transaction commits (so an enqueue in a user's transaction wakes workers exactly
//! at its commit).
//!
//! The listener starts when first needed and reconnects forever with backoff; after each
//! (re)connection it wakes every local waiter and claimer, so that a notification sent while it
//! was away is not missed (they read the tables again).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;
use qtasks_core::backend::{CancelRequest, Notices};
use qtasks_core::Backoff;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, NoTls, Notification};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::client::Connections;

pub(crate) struct Notifier {
    state: Arc<State>,
    /// The listener task; started again if its runtime went away.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

struct State {
    conns: Arc<Connections>,
    app: String,
    /// Counts wake-ups: a claimer subscribes before it looks, and wakes on any change.
    wake: watch::Sender<u64>,
    /// Whether the listener is connected and listening.
    listening: watch::Sender<bool>,
    notices: Notices,
}

/// The three channels of an app.
struct Channels {
    wake: String,
    done: String,
    cancel: String,
}

impl Notifier {
    pub(crate) fn new(conns: Arc<Connections>, app: &str) -> Self {
        let stop = CancellationToken::new();
        Notifier {
            state: Arc::new(State {
                conns,
                app: app.to_string(),
                wake: watch::channel(0).0,
                listening: watch::channel(false).0,
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
            *task = Some(tokio::spawn(listen_loop(
                self.state.clone(),
                self.stop.clone(),
            )));
        }
    }

    /// A receiver of wake-ups: its `changed()` resolves on the first wake-up after this call.
    pub(crate) fn wakes(&self) -> watch::Receiver<u64> {
        self.ensure_started();
        self.state.wake.subscribe()
    }

    /// Whether notifications are being received right now.
    pub(crate) fn is_listening(&self) -> bool {
        *self.state.listening.borrow()
    }

    /// Waits until the listener listens, at most `at_most`.
    pub(crate) async fn until_listening(&self, at_most: Duration) {
        self.ensure_started();
        let mut rx = self.state.listening.subscribe();
        let _ = tokio::time::timeout(at_most, rx.wait_for(|on| *on)).await;
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

async fn listen_loop(state: Arc<State>, stop: CancellationToken) {
    let mut backoff = Backoff::RECONNECT.steps();
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = listen(&state, &stop, &mut backoff) => r,
        };
        state.listening.send_replace(false);
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                url = %state.conns.shown(),
                error = %e,
                "lost the PostgreSQL listening connection (LISTEN/NOTIFY); reconnecting"
            ),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection's life: connect, LISTEN, dispatch until it breaks (`Err`) or `stop`.
async fn listen(
    state: &State,
    stop: &CancellationToken,
    backoff: &mut qtasks_core::BackoffSteps,
) -> Result<(), String> {
    // The schema must exist before the channel names can be read.
    drop(
        state
            .conns
            .get("broker", "listening for notifications")
            .await
            .map_err(|e| e.to_string())?,
    );
    let connect = state.conns.config().connect(NoTls);
    let (client, mut connection) = tokio::time::timeout(state.conns.connect_timeout(), connect)
        .await
        .map_err(|_| "connecting took longer than connect_timeout_ms".to_string())?
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Notification>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the server closed the connection".to_string())
    });
    let _abort_driver = AbortOnDrop(driver.abort_handle());
    let schema = state.conns.schema();
    let row = client
        .query_one(
            &format!(
                "SELECT {schema}.channel('w', $1), {schema}.channel('d', $1), {schema}.channel('c', $1)"
            ),
            &[&state.app],
        )
        .await
        .map_err(|e| e.to_string())?;
    let channels = Channels {
        wake: row.get(0),
        done: row.get(1),
        cancel: row.get(2),
    };
    client
        .batch_execute(&format!(
            "LISTEN \"{}\"; LISTEN \"{}\"; LISTEN \"{}\"",
            channels.wake, channels.done, channels.cancel
        ))
        .await
        .map_err(|e| e.to_string())?;
    backoff.reset();
    state.listening.send_replace(true);
    wake_all(state);
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            n = rx.recv() => n,
        };
        let Some(n) = n else {
            // The driver ended: why is its result.
            drop(client);
            return Err("the listening connection ended".to_string());
        };
        if n.channel() == channels.wake {
            state.wake.send_modify(|k| *k = k.wrapping_add(1));
        } else if n.channel() == channels.done {
            state.notices.finished(n.payload());
        } else if n.channel() == channels.cancel {
            state.notices.cancel_requested(n.payload());
        }
    }
}

/// Aborts the connection's driver task when the listener gives the connection up.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wakes every waiter and claimer: they read again (after a reconnection, a notification may
/// have been sent while nobody listened).
fn wake_all(state: &State) {
    state.wake.send_modify(|k| *k = k.wrapping_add(1));
    state.notices.wake_all();
}
