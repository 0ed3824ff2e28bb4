//! A running task's progress ([`TaskContext::progress`](crate::TaskContext::progress)),
//! written to its record at most once per [`INTERVAL`]: the newest value wins, the ones in
//! between are never written, and the last one is written when the attempt ends. Writes go
//! one at a time, each numbered: one that finds a newer value written already is skipped, so
//! an older value never lands after a newer one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::task::payload::Payload;

/// At most one write of a task's progress per this long.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// Writes one progress value (to the broker, in a running task).
pub(crate) type Write = Arc<dyn Fn(Payload) -> BoxFuture<'static, ()> + Send + Sync>;

/// The progress of one attempt: what was written when, and what waits for its turn.
pub(crate) struct Progress {
    write: Write,
    state: Mutex<State>,
    /// Held while a value is written; the number of the newest value written.
    written: tokio::sync::Mutex<u64>,
}

#[derive(Default)]
struct State {
    /// When the last write was sent.
    last: Option<Instant>,
    /// The newest value not written yet, with its number.
    pending: Option<(u64, Payload)>,
    /// The number of the newest value offered.
    offered: u64,
    /// Whether a delayed write is scheduled.
    armed: bool,
}

impl Progress {
    pub(crate) fn new(write: Write) -> Arc<Self> {
        Arc::new(Progress {
            write,
            state: Mutex::new(State::default()),
            written: tokio::sync::Mutex::new(0),
        })
    }

    /// Writes value number `n`, unless a newer one was written already.
    async fn write_in_turn(&self, n: u64, value: Payload) {
        let mut written = self.written.lock().await;
        if n > *written {
            (self.write)(value).await;
            *written = n;
        }
    }

    /// A new value: written now when the last write is [`INTERVAL`] old, else kept for a
    /// write when it is (one scheduled write, whatever the number of values meanwhile).
    pub(crate) fn offer(self: &Arc<Self>, value: Payload) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("progress reported outside a tokio runtime is not written");
            return;
        };
        let now = Instant::now();
        let mut state = self.state.lock();
        state.offered += 1;
        let n = state.offered;
        let due = state.last.map(|last| last + INTERVAL);
        if !state.armed && due.is_none_or(|due| due <= now) {
            state.last = Some(now);
            drop(state);
            let this = self.clone();
            runtime.spawn(async move { this.write_in_turn(n, value).await });
            return;
        }
        state.pending = Some((n, value));
        if state.armed {
            return;
        }
        state.armed = true;
        drop(state);
        let this = self.clone();
        let due = due.unwrap_or(now);
        runtime.spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            let value = {
                let mut state = this.state.lock();
                state.armed = false;
                state.last = Some(Instant::now());
                state.pending.take()
            };
            if let Some((n, value)) = value {
                this.write_in_turn(n, value).await;
            }
        });
    }

    /// Writes the value still waiting, if any (the attempt ends: its last value counts).
    pub(crate) async fn flush(&self) {
        let value = self.state.lock().pending.take();
        if let Some((n, value)) = value {
            self.write_in_turn(n, value).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn writes_at_most_once_per_interval_and_the_newest_value() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU32::new(0));
        let (w, c) = (written.clone(), count.clone());
        let progress = Progress::new(Arc::new(move |p: Payload| {
            let (w, c) = (w.clone(), c.clone());
            Box::pin(async move {
                c.fetch_add(1, Ordering::SeqCst);
                w.lock().push(p.decode::<u32>().unwrap_or(u32::MAX));
            })
        }));
        for i in 0..=100u32 {
            progress.offer(Payload::encode(&i).unwrap());
        }
        // The first at once, the newest when the interval passed; nothing in between.
        tokio::time::sleep(INTERVAL * 3).await;
        assert_eq!(*written.lock(), [0, 100]);
        progress.offer(Payload::encode(&7u32).unwrap());
        progress.offer(Payload::encode(&8u32).unwrap());
        progress.flush().await;
        tokio::time::sleep(INTERVAL * 3).await;
        let seen = written.lock().clone();
        // 7 was sent at once, 8 by the flush; had the flush come first, 7 would be skipped:
        // never an older value after a newer one.
        assert_eq!(
            seen.last(),
            Some(&8),
            "the flush writes the newest value: {seen:?}"
        );
        assert!(seen == [0, 100, 7, 8] || seen == [0, 100, 8], "{seen:?}");
        assert_eq!(count.load(Ordering::SeqCst) as usize, seen.len());
    }
}
