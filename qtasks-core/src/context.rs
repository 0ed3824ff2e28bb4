//! [`TaskContext`]: what a running task knows about itself and its app (Python's `self.ctx`).
//!
//! Every method works inside a running task (in Python QTasks four of them crash there):
//! `task_uuid`, [`get_logger`](TaskContext::get_logger), [`get_config`](TaskContext::get_config),
//! [`get_metadata`](TaskContext::get_metadata), [`get_task`](TaskContext::get_task),
//! [`sleep`](TaskContext::sleep) (and [`sleep_blocking`](TaskContext::sleep_blocking) for sync
//! tasks), [`cancel`](TaskContext::cancel), [`get_component`](TaskContext::get_component).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backend::{Broker, GlobalConfig, Storage};
use crate::depends::{ScopeCache, TaskScope};
use crate::worker::{WorkerRef, WorkerShared};
use crate::{App, Config, Error, Result, Task, TaskError, TaskSpec};

/// The context of one running task: its uuid, its app, and the means to log, sleep and cancel.
///
/// Cloning is cheap. Every extractor is built from it.
#[derive(Clone)]
pub struct TaskContext {
    /// The running task's uuid.
    pub task_uuid: Uuid,
    inner: Arc<ContextInner>,
}

struct ContextInner {
    app: App,
    spec: &'static TaskSpec,
    priority: i32,
    attempt: u32,
    cancel: CancellationToken,
    /// This execution's dependency scope.
    task_scope: TaskScope,
    worker: Option<Arc<WorkerShared>>,
    /// `get_metadata(true)`'s cache; boxed so contexts of tasks that never ask stay small.
    metadata: std::sync::OnceLock<Box<Task>>,
}

/// A component of the app, by name ([`TaskContext::get_component`]).
#[derive(Clone)]
#[non_exhaustive]
pub enum Component {
    /// The queue (`"broker"`).
    Broker(Arc<dyn Broker>),
    /// Records and results (`"storage"`).
    Storage(Arc<dyn Storage>),
    /// The shared key-value store (`"global_config"`).
    GlobalConfig(Arc<dyn GlobalConfig>),
    /// The worker running the task (`"worker"`).
    Worker(WorkerRef),
    /// The app's settings (`"config"`).
    Config(Config),
    /// The app itself (`"app"`).
    App(App),
}

impl Component {
    /// The names [`TaskContext::get_component`] knows.
    pub const NAMES: &'static [&'static str] = &[
        "broker",
        "storage",
        "global_config",
        "worker",
        "config",
        "app",
    ];
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Component::Broker(_) => f.write_str("Component::Broker"),
            Component::Storage(_) => f.write_str("Component::Storage"),
            Component::GlobalConfig(_) => f.write_str("Component::GlobalConfig"),
            Component::Worker(w) => write!(f, "Component::Worker({})", w.id()),
            Component::Config(_) => f.write_str("Component::Config"),
            Component::App(a) => write!(f, "Component::App({})", a.name()),
        }
    }
}

impl TaskContext {
    pub(crate) fn new(
        app: App,
        spec: &'static TaskSpec,
        uuid: Uuid,
        priority: i32,
        attempt: u32,
        cancel: CancellationToken,
        worker: Option<Arc<WorkerShared>>,
    ) -> Self {
        TaskContext {
            task_uuid: uuid,
            inner: Arc::new(ContextInner {
                app,
                spec,
                priority,
                attempt,
                cancel,
                task_scope: TaskScope::default(),
                worker,
                metadata: std::sync::OnceLock::new(),
            }),
        }
    }

    pub(crate) fn worker_scope(&self) -> Option<&ScopeCache> {
        // From the worker rather than a copy of its own: one reference count less per task.
        self.inner.worker.as_ref().map(|w| w.dependencies())
    }

    pub(crate) fn task_scope(&self) -> &TaskScope {
        &self.inner.task_scope
    }

    /// The task's registered name.
    pub fn task_name(&self) -> &'static str {
        self.inner.spec.name
    }

    /// The task's registry entry (options, location).
    pub fn spec(&self) -> &'static TaskSpec {
        self.inner.spec
    }

    /// The priority this execution was enqueued with.
    pub fn priority(&self) -> i32 {
        self.inner.priority
    }

    /// Which attempt this is (1 for the first run).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The app running the task.
    pub fn app(&self) -> &App {
        &self.inner.app
    }

    /// The app's configuration.
    pub fn get_config(&self) -> &Config {
        self.inner.app.config()
    }

    /// A logger named `name` whose events carry the task's `task_name` and `task_uuid`
    /// (through `tracing`, target `qtasks::task`).
    pub fn get_logger(&self, name: &str) -> TaskLogger {
        TaskLogger {
            name: name.to_string(),
            task_name: self.task_name(),
            task_uuid: self.task_uuid,
        }
    }

    /// [`get_logger`](Self::get_logger) named after the task.
    pub fn logger(&self) -> TaskLogger {
        self.get_logger(self.task_name())
    }

    /// The task's own record, as `app.get(uuid)` returns it (status `process` while it runs).
    /// With `cache`, the first read is kept and returned by later cached calls.
    pub async fn get_metadata(&self, cache: bool) -> Result<Task> {
        if cache {
            if let Some(task) = self.inner.metadata.get() {
                return Ok(Task::clone(task));
            }
        }
        let task = self
            .app()
            .get(self.task_uuid)
            .await?
            .ok_or(Error::NotFound(self.task_uuid))?;
        if cache {
            // Two racing first reads both succeed; the first stored one is kept.
            return Ok(Task::clone(
                self.inner.metadata.get_or_init(|| Box::new(task)),
            ));
        }
        Ok(task)
    }

    /// Another task's record; `None` when it does not exist or has expired.
    pub async fn get_task(&self, uuid: Uuid) -> Result<Option<Task>> {
        self.app().get(uuid).await
    }

    /// A component of the app by name: `"broker"`, `"storage"`, `"global_config"`,
    /// `"worker"` (the worker running this task), `"config"` or `"app"`. `None` for another
    /// name (see [`Component::NAMES`]), or for `"worker"` when no worker runs the task.
    pub fn get_component(&self, name: &str) -> Option<Component> {
        let backend = self.app().backend();
        Some(match name {
            "broker" => Component::Broker(backend.broker.clone()),
            "storage" => Component::Storage(backend.storage.clone()),
            "global_config" => Component::GlobalConfig(backend.global_config.clone()),
            "worker" => Component::Worker(self.worker()?),
            "config" => Component::Config(self.get_config().clone()),
            "app" => Component::App(self.app().clone()),
            _ => return None,
        })
    }

    /// The worker running this task (`None` when it runs without one).
    pub fn worker(&self) -> Option<WorkerRef> {
        self.inner.worker.clone().map(WorkerRef::new)
    }

    /// Whether the task was asked to stop (cancelled from outside, or past its `max_time`).
    /// Long sync tasks should check it between steps.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// The token that stops this execution.
    pub(crate) fn cancellation_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// A future that resolves when the task is asked to stop.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Ends the task with status `cancel` and this reason: `return Err(ctx.cancel("why"))`.
    pub fn cancel(&self, reason: impl Into<String>) -> TaskError {
        TaskError::cancelled(reason)
    }

    /// Ends the task by handing `data` to the plugins' error trigger
    /// ([`Trigger::PluginError`](crate::plugin::Trigger::PluginError)):
    /// `return Err(ctx.plugin_error(data))`. A plugin may turn it into a success with a result
    /// of its own; when none does, the task ends with status `error`.
    pub fn plugin_error(&self, data: impl serde::Serialize) -> TaskError {
        match crate::Payload::encode(&data) {
            Ok(data) => TaskError::new(crate::TaskErrorKind::PluginError(data)),
            Err(e) => TaskError::msg(format!(
                "task {:?} ({}) raised a plugin error whose data cannot be encoded: {e}",
                self.task_name(),
                self.task_uuid
            )),
        }
    }

    /// Sleeps for `duration`, returning early when the task is asked to stop. Returns whether
    /// the full duration elapsed.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.inner.cancel.cancelled() => false,
        }
    }

    /// [`sleep`](Self::sleep) for sync tasks: blocks this thread, returning early when the
    /// task is asked to stop.
    pub fn sleep_blocking(&self, duration: Duration) -> bool {
        self.block_on(self.sleep(duration))
    }

    /// Runs an async method (`get_metadata`, `get_task`, ...) from a sync task's body,
    /// blocking the thread until it is done. See [`App::block_on`].
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.app().block_on(fut)
    }
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("task_uuid", &self.task_uuid)
            .field("task_name", &self.task_name())
            .field("attempt", &self.attempt())
            .finish()
    }
}

/// A task's logger ([`TaskContext::get_logger`]): `tracing` events with target
/// `qtasks::task` and the fields `logger`, `task_name` and `task_uuid`.
#[derive(Debug, Clone)]
pub struct TaskLogger {
    name: String,
    task_name: &'static str,
    task_uuid: Uuid,
}

macro_rules! log_method {
    ($(#[$doc:meta] $method:ident => $macro:ident),* $(,)?) => {$(
        #[$doc]
        pub fn $method(&self, message: impl std::fmt::Display) {
            tracing::$macro!(
                target: "qtasks::task",
                logger = %self.name,
                task_name = self.task_name,
                task_uuid = %self.task_uuid,
                "{message}"
            );
        }
    )*};
}

impl TaskLogger {
    /// The logger's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    log_method! {
        /// Logs at level TRACE.
        trace => trace,
        /// Logs at level DEBUG.
        debug => debug,
        /// Logs at level INFO.
        info => info,
        /// Logs at level WARN.
        warn => warn,
        /// Logs at level ERROR.
        error => error,
    }
}
