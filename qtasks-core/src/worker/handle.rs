//! [`WorkerHandle`]: a running worker, and [`WorkerRunner`]: what a worker of one's own runs
//! tasks with.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::handle::App;
use crate::backend::{Delivery, Outcome};
use crate::error::{Error, Result};
use crate::execute::execute;
use crate::worker::cancel::CancelSignal;
use crate::worker::run::run;
use crate::worker::scope::WorkerScope;

static WORKER_SEQ: AtomicU64 = AtomicU64::new(1);

/// A running worker. Dropping the handle does not stop it; call [`WorkerHandle::shutdown`].
#[derive(Debug)]
pub struct WorkerHandle {
    scope: Arc<WorkerScope>,
    join: tokio::task::JoinHandle<Result<()>>,
}

impl WorkerHandle {
    /// Starts the built-in worker for `app` on the current tokio runtime.
    pub(crate) fn spawn(app: App) -> Self {
        let id = format!(
            "{}-{}-{}",
            app.name(),
            std::process::id(),
            WORKER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let scope = Arc::new(WorkerScope::new(id));
        let join = tokio::spawn(run(app, scope.clone()));
        WorkerHandle { scope, join }
    }

    /// The handle of a worker of one's own (a [`Worker`](crate::component::Worker) that does
    /// not wrap the built-in one). `run` gets a [`WorkerRunner`]: it claims tasks itself, runs
    /// each through [`WorkerRunner::execute`] (the executor pipeline) and returns once
    /// [`WorkerRunner::stopping`] resolves (which [`WorkerHandle::shutdown`] triggers). The
    /// worker's dependency scope is closed after `run` returns. Spawned on the current tokio
    /// runtime.
    pub fn custom<F, Fut>(app: &App, id: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(WorkerRunner) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let scope = Arc::new(WorkerScope::new(id.into()));
        let work = run(WorkerRunner {
            app: app.clone(),
            scope: scope.clone(),
        });
        let closing = scope.clone();
        let grace = app.config().grace_period;
        let join = tokio::spawn(async move {
            let result = work.await;
            closing.dependencies().close_after_children(grace).await;
            result
        });
        WorkerHandle { scope, join }
    }

    /// The worker's scope (for the app to reach its running tasks).
    pub(crate) fn scope(&self) -> &Arc<WorkerScope> {
        &self.scope
    }

    /// The worker's id (`app-pid-n`).
    pub fn id(&self) -> &str {
        self.scope.id()
    }

    /// How many tasks the worker holds right now (running and prefetched).
    pub fn inflight(&self) -> usize {
        self.scope.inflight()
    }

    /// Asks the worker to stop without waiting for it.
    pub fn signal_shutdown(&self) {
        self.scope.signal_shutdown();
    }

    /// Stops the worker gracefully and waits for it: it stops claiming, returns prefetched
    /// tasks to the queue at once, lets running tasks finish within the grace period, and
    /// returns the rest to the queue without counting the attempt.
    pub async fn shutdown(self) -> Result<()> {
        self.signal_shutdown();
        self.join().await
    }

    /// Waits until the worker has stopped.
    pub async fn join(self) -> Result<()> {
        match self.join.await {
            Ok(result) => result,
            Err(e) => Err(Error::Worker(format!(
                "the worker task ended abnormally: {e}"
            ))),
        }
    }
}

/// What a worker of one's own gets from [`WorkerHandle::custom`].
pub struct WorkerRunner {
    app: App,
    scope: Arc<WorkerScope>,
}

impl WorkerRunner {
    /// The app the worker serves.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        self.scope.id()
    }

    /// Resolves when the worker is asked to stop.
    pub async fn stopping(&self) {
        self.scope.shutdown().cancelled().await
    }

    /// Runs one claimed task through the executor pipeline (plugins, events, extractors and
    /// dependencies of this worker's scope, `max_time`, panics caught, the retry decision) and
    /// returns how it ended, for `Broker::complete`. Cancelling `cancel` stops the task.
    pub async fn execute(&self, delivery: &Delivery, cancel: CancellationToken) -> Outcome {
        // The pipeline's own signal, given when `cancel` is cancelled.
        let signal = CancelSignal::new();
        let mut run = std::pin::pin!(execute(&self.app, &self.scope, delivery, signal.clone()));
        let mut cancelled = std::pin::pin!(cancel.cancelled());
        std::future::poll_fn(|cx| {
            if !signal.is_cancelled() && cancelled.as_mut().poll(cx).is_ready() {
                signal.cancel();
            }
            run.as_mut().poll(cx)
        })
        .await
    }
}

impl std::fmt::Debug for WorkerRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRunner")
            .field("id", &self.scope.id())
            .finish()
    }
}
