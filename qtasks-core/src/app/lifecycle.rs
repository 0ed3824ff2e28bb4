//! Running the app: a worker, the timers, and the starter that runs both until a signal.

use crate::app::handle::App;
use crate::error::Result;
use crate::ext::events::AppEvent;
use crate::ext::plugin::fire_lifecycle;
use crate::flow::timer::TimersHandle;
use crate::worker::handle::WorkerHandle;

impl App {
    /// Starts a worker in the background on the current tokio runtime (the app's
    /// [`Worker`](crate::component::Worker) component; the built-in one unless replaced).
    pub fn spawn_worker(&self) -> WorkerHandle {
        let handle = self.inner().ops.worker.spawn(self);
        self.register_worker(handle.scope());
        handle
    }

    /// Runs the app with its [`Starter`](crate::component::Starter): by default a worker and
    /// the timers until SIGINT or SIGTERM, then a graceful shutdown: stops taking work, lets
    /// running tasks finish within the grace period and returns the rest to the queue.
    pub async fn run_forever(&self) -> Result<()> {
        let starter = self.inner().ops.starter.clone();
        starter.start(self).await
    }

    /// Runs a worker and the timers until `stop` resolves, then stops them gracefully. Fires
    /// the `starting` and `stopping` events and every component's start and stop triggers.
    pub async fn run_until(&self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let hooks = self.hooks();
        fire_lifecycle(&hooks.plugins, true).await;
        hooks.events.fire_starting(&AppEvent { app: self });
        let worker = self.spawn_worker();
        let timers = self.spawn_timers();
        tracing::info!(app = %self.name(), tasks = self.inner().tasks.len(), timers = timers.len(), "app running");
        stop.await;
        tracing::info!(app = %self.name(), "stopping; finishing running tasks");
        timers.shutdown().await;
        let stopped = worker.shutdown().await;
        self.close_dependencies().await;
        fire_lifecycle(&hooks.plugins, false).await;
        hooks.events.fire_stopping(&AppEvent { app: self });
        stopped
    }

    /// Starts the app's timers in the background, without a worker (a process that only
    /// schedules). With a shared backend, each tick fires once across every instance.
    pub fn spawn_timers(&self) -> TimersHandle {
        TimersHandle::spawn(self, &self.inner().ops.timers)
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
