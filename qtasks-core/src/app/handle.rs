//! [`App`]: the handle of a qtasks application, at the bottom of the crate's layers.

use std::any::Any;
use std::sync::Arc;

/// A qtasks application (Python's `QueueTasks`): its tasks, its backend, its settings and its
/// extensions. Built with [`App::builder`].
///
/// Cloning is cheap (an `Arc`). The first app built becomes the process default, which task
/// handles use when no app is given (`add.add_task(..)`); inside a running task, the default is
/// the task's own app. Tests that build many apps point calls at one with `.on(&app)`.
#[derive(Clone)]
pub struct App {
    /// What the app holds: an `AppInner` (`app/inner.rs`), reached typed through
    /// `App::inner`. The handle names no type of the layers above it, so task records,
    /// contexts, plugins and timers can carry an app without importing everything an app
    /// holds (the registry, the plugins, the timers, the worker component).
    pub(crate) inner: Arc<dyn Any + Send + Sync>,
}
