//! [`TaskContext`]: what a running task knows about itself and its app (Python's `self.ctx`).
//!
//! Every method works inside a running task (in Python QTasks four of them crash there):
//! `task_uuid`, [`get_logger`](TaskContext::get_logger), [`get_config`](TaskContext::get_config),
//! [`get_metadata`](TaskContext::get_metadata), [`get_task`](TaskContext::get_task),
//! [`sleep`](TaskContext::sleep) (and [`sleep_blocking`](TaskContext::sleep_blocking) for sync
//! tasks), [`cancel`](TaskContext::cancel), [`get_component`](TaskContext::get_component).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub(crate) mod component;
pub(crate) mod echo;
pub(crate) mod logger;
pub(crate) mod progress;

use crate::app::config::Config;
use crate::app::handle::App;
use crate::backend::{Broker, Delivery, GlobalConfig, Lease, Storage};
use crate::context::component::Component;
use crate::context::logger::TaskLogger;
use crate::context::progress::Progress;
use crate::di::scopes::{ScopeCache, TaskScope};
use crate::error::{Error, Result, TaskError, TaskErrorKind};
use crate::task::entry::TaskEntry;
use crate::task::payload::Payload;
use crate::task::record::Task;
use crate::worker::cancel::CancelSignal;
use crate::worker::scope::{WorkerRef, WorkerScope};

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
    entry: &'static TaskEntry,
    priority: i32,
    attempt: u32,
    cancel: CancelSignal,
    /// This execution's dependency scope.
    task_scope: TaskScope,
    worker: Option<Arc<WorkerScope>>,
    /// `get_metadata(true)`'s cache; boxed so contexts of tasks that never ask stay small.
    metadata: std::sync::OnceLock<Box<Task>>,
    /// How the body asked to end (`cancel`, `plugin_error`), whatever it returns afterwards.
    ended: std::sync::OnceLock<Ending>,
    /// The fencing token of this claim (progress writes are fenced by it).
    token: u64,
    /// The progress reported so far, made at the first report.
    progress: std::sync::OnceLock<Arc<Progress>>,
}

/// How a task's body asked to end, through its context.
#[derive(Debug, Clone)]
enum Ending {
    /// [`TaskContext::cancel`].
    Cancel(String),
    /// [`TaskContext::plugin_error`], with the encoded data.
    PluginError(Payload),
    /// [`TaskContext::plugin_error`] with data that cannot be encoded: this error.
    Failed(String),
}

impl TaskContext {
    /// The context of `delivery`'s attempt, a task of `entry`.
    pub(crate) fn new(
        app: App,
        entry: &'static TaskEntry,
        delivery: &Delivery,
        cancel: CancelSignal,
        worker: Option<Arc<WorkerScope>>,
    ) -> Self {
        TaskContext {
            task_uuid: delivery.uuid,
            inner: Arc::new(ContextInner {
                app,
                entry,
                priority: delivery.priority,
                attempt: delivery.attempt,
                cancel,
                task_scope: TaskScope::default(),
                worker,
                metadata: std::sync::OnceLock::new(),
                ended: std::sync::OnceLock::new(),
                token: delivery.token,
                progress: std::sync::OnceLock::new(),
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
        self.inner.entry.name
    }

    /// The task's registry entry (options, location).
    pub fn entry(&self) -> &'static TaskEntry {
        self.inner.entry
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
        Some(match name {
            "broker" => Component::Broker(self.get_broker()),
            "storage" => Component::Storage(self.get_storage()),
            "global_config" => Component::GlobalConfig(self.get_global_config()),
            "worker" => Component::Worker(self.worker()?),
            "config" => Component::Config(self.get_config().clone()),
            "app" => Component::App(self.app().clone()),
            _ => return None,
        })
    }

    /// The app's broker (the seeds' `get_broker`; the same as `get_component("broker")`).
    pub fn get_broker(&self) -> Arc<dyn Broker> {
        self.app().backend().broker.clone()
    }

    /// The app's storage (the seeds' `get_storage`).
    pub fn get_storage(&self) -> Arc<dyn Storage> {
        self.app().backend().storage.clone()
    }

    /// The app's global config (the seeds' `get_global_config`).
    pub fn get_global_config(&self) -> Arc<dyn GlobalConfig> {
        self.app().backend().global_config.clone()
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
    pub(crate) fn cancellation_token(&self) -> &CancelSignal {
        &self.inner.cancel
    }

    /// A future that resolves when the task is asked to stop.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Ends the task with status `cancel` and this reason (the seeds' `self.ctx.cancel`, which
    /// raises): the task ends `cancel` whatever the body returns afterwards. Return the error
    /// to stop at once: `return Err(ctx.cancel("why"))`. The first `cancel` or `plugin_error`
    /// of an execution decides.
    #[must_use = "the task ends `cancel` whatever it returns now; return the error to stop at once: `return Err(ctx.cancel(..))`"]
    pub fn cancel(&self, reason: impl Into<String>) -> TaskError {
        let reason = reason.into();
        let _ = self.inner.ended.set(Ending::Cancel(reason.clone()));
        TaskError::cancelled(reason)
    }

    /// Reports how far the task got (a number, a string, any serializable value): stored on
    /// its record, where `app.get`, the CLI's `get` and the dashboard show it. Cheap to call
    /// often: at most one write per task per 100 ms, the newest value winning, and the last
    /// value is written before the attempt ends. A value that cannot be encoded is logged
    /// and dropped; a backend that keeps no progress logs it once.
    pub fn progress(&self, value: impl serde::Serialize) {
        match Payload::encode(&value) {
            Ok(value) => self.progress_cell().offer(value),
            Err(e) => {
                tracing::warn!(task_name = self.task_name(), task_uuid = %self.task_uuid, error = %e, "the progress value cannot be encoded; it is not written")
            }
        }
    }

    /// This attempt's progress, made at the first report.
    fn progress_cell(&self) -> &Arc<Progress> {
        self.inner.progress.get_or_init(|| {
            let broker = self.inner.app.backend().broker.clone();
            let lease = Lease {
                uuid: self.task_uuid,
                token: self.inner.token,
            };
            let (task_name, warned) = (self.task_name(), Arc::new(AtomicBool::new(false)));
            Progress::new(Arc::new(move |value: Payload| {
                let (broker, warned) = (broker.clone(), warned.clone());
                Box::pin(async move {
                    if let Err(e) = broker.progress(lease, &value).await {
                        if !warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!(task_name, task_uuid = %lease.uuid, error = %e, "the task's progress is not kept");
                        }
                    }
                })
            }))
        })
    }

    /// Writes the progress value still waiting for its turn (the attempt ends).
    pub(crate) async fn flush_progress(&self) {
        if let Some(progress) = self.inner.progress.get() {
            progress.flush().await;
        }
    }

    /// Puts the task back to run again in `delay` without spending an attempt, for an
    /// external service that answered "too many requests": `return Err(ctx.rate_limited(d))`
    /// (the same as [`TaskError::rate_limited`]).
    #[must_use = "return the error to put the task back: `return Err(ctx.rate_limited(..))`"]
    pub fn rate_limited(&self, delay: std::time::Duration) -> TaskError {
        TaskError::rate_limited(delay)
    }

    /// Ends the task by handing `data` to the plugins' error trigger
    /// ([`Trigger::PluginError`](crate::plugin::Trigger::PluginError)), whatever the body
    /// returns afterwards: `return Err(ctx.plugin_error(data))`. A plugin may turn it into a
    /// success with a result of its own; when none does, the task ends with status `error`.
    #[must_use = "the task ends through the plugins' error trigger whatever it returns now; return the error to stop at once: `return Err(ctx.plugin_error(..))`"]
    pub fn plugin_error(&self, data: impl serde::Serialize) -> TaskError {
        match Payload::encode(&data) {
            Ok(data) => {
                let _ = self.inner.ended.set(Ending::PluginError(data.clone()));
                TaskError::new(TaskErrorKind::PluginError(data))
            }
            Err(e) => {
                let message = format!(
                    "task {:?} ({}) raised a plugin error whose data cannot be encoded: {e}",
                    self.task_name(),
                    self.task_uuid
                );
                let _ = self.inner.ended.set(Ending::Failed(message.clone()));
                TaskError::msg(message)
            }
        }
    }

    /// What the body's result becomes when it asked to end through `cancel` or
    /// `plugin_error`: that ending, whatever it returned.
    pub(crate) fn apply_ending(
        &self,
        result: Result<Payload, TaskError>,
    ) -> Result<Payload, TaskError> {
        match self.inner.ended.get() {
            None => result,
            Some(Ending::Cancel(reason)) => match result {
                Err(err) if matches!(err.kind(), TaskErrorKind::Cancelled(_)) => Err(err),
                _ => Err(TaskError::cancelled(reason.clone())),
            },
            Some(Ending::PluginError(data)) => match result {
                Err(err) if matches!(err.kind(), TaskErrorKind::PluginError(_)) => Err(err),
                _ => Err(TaskError::new(TaskErrorKind::PluginError(data.clone()))),
            },
            Some(Ending::Failed(message)) => match result {
                Err(err) => Err(err),
                Ok(_) => Err(TaskError::msg(message)),
            },
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
