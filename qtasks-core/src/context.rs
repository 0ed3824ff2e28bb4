//! [`TaskContext`]: what a running task knows about itself and its app (Python's `self.ctx`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::depends::{ScopeCache, TaskScope};
use crate::{App, Config, TaskError, TaskSpec};

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
    /// The worker's dependency scope (`None` outside a worker).
    worker_scope: Option<ScopeCache>,
    /// This execution's dependency scope.
    task_scope: TaskScope,
}

impl TaskContext {
    pub(crate) fn new(
        app: App,
        spec: &'static TaskSpec,
        uuid: Uuid,
        priority: i32,
        attempt: u32,
        cancel: CancellationToken,
        worker_scope: Option<ScopeCache>,
    ) -> Self {
        TaskContext {
            task_uuid: uuid,
            inner: Arc::new(ContextInner {
                app,
                spec,
                priority,
                attempt,
                cancel,
                worker_scope,
                task_scope: TaskScope::default(),
            }),
        }
    }

    pub(crate) fn worker_scope(&self) -> Option<&ScopeCache> {
        self.inner.worker_scope.as_ref()
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

    /// Whether the task was asked to stop (cancelled from outside, or past its `max_time`).
    /// Long sync tasks should check it between steps.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// A future that resolves when the task is asked to stop.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Ends the task with status `cancel` and this reason: `return Err(ctx.cancel("why"))`.
    pub fn cancel(&self, reason: impl Into<String>) -> TaskError {
        TaskError::cancelled(reason)
    }

    /// Sleeps for `duration`, returning early when the task is cancelled. Returns whether the
    /// full duration elapsed.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.inner.cancel.cancelled() => false,
        }
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
