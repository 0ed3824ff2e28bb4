//! The app's lifecycle components: [`Worker`] (what runs tasks) and [`Starter`] (what starts
//! and stops the app). With [`Broker`](crate::backend::Broker),
//! [`Storage`](crate::backend::Storage) and [`GlobalConfig`](crate::backend::GlobalConfig)
//! (in [`backend`](crate::backend)), every component of an app is a trait, and the built-in
//! ones are ordinary implementors that a program can wrap or replace on the builder:
//! [`AppBuilder::worker`](crate::AppBuilder::worker),
//! [`AppBuilder::starter`](crate::AppBuilder::starter),
//! [`AppBuilder::map_backend`](crate::AppBuilder::map_backend).

use futures::future::BoxFuture;

use crate::app::handle::App;
use crate::error::Result;
use crate::worker::handle::WorkerHandle;

/// What runs an app's tasks. The built-in one is [`QueueWorker`].
pub trait Worker: Send + Sync + 'static {
    /// Starts running tasks for `app` in the background and returns the handle that stops it.
    /// Wrappers usually do their own work and delegate to [`QueueWorker`].
    fn spawn(&self, app: &App) -> WorkerHandle;
}

/// The built-in worker: batch claims, `max_tasks_process` lanes, batched acknowledgements,
/// graceful shutdown (see [`App::spawn_worker`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueWorker;

impl Worker for QueueWorker {
    fn spawn(&self, app: &App) -> WorkerHandle {
        WorkerHandle::spawn(app.clone())
    }
}

/// What starts the app, keeps it running and stops it (`app.run_forever()`). The built-in one
/// is [`SignalStarter`].
pub trait Starter: Send + Sync + 'static {
    /// Runs `app` until it should stop. Most starters call [`App::run_until`] with their own
    /// stop condition.
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, Result<()>>;
}

/// The built-in starter: runs the app (worker and timers) until SIGINT or SIGTERM, then stops
/// it gracefully.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalStarter;

impl Starter for SignalStarter {
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, Result<()>> {
        Box::pin(app.run_until(crate::app::lifecycle::shutdown_signal()))
    }
}
