//! The task handles that `echo` passes first: [`AsyncTask`] and [`SyncTask`] (Python's `self`).

use std::time::Duration;

use crate::{FromTaskContext, Result, Task, TaskCall, TaskContext, TaskDef, TaskError, TaskSpec};

/// The running task itself, for `async fn` tasks declared with `echo`:
/// its options, its context (`task.ctx`) and nested enqueueing.
#[derive(Clone, Debug)]
pub struct AsyncTask {
    /// The task's context: uuid, logger, config, sleep, cancel.
    pub ctx: TaskContext,
    /// The task's registered name.
    pub task_name: &'static str,
    /// The priority this execution was enqueued with.
    pub priority: i32,
    /// Always `true`: the handle exists because of `echo`.
    pub echo: bool,
    /// The task's `max_time`.
    pub max_time: Option<Duration>,
    /// Extra attempts after a failure.
    pub retry: u32,
    /// Tags.
    pub tags: &'static [&'static str],
    /// Description.
    pub description: Option<&'static str>,
    /// Any other `key = literal` pairs of the attribute.
    pub extra: &'static [(&'static str, &'static str)],
}

/// The running task itself, for sync `fn` tasks declared with `echo`. Its methods block, so
/// they can be called from the task's body on the blocking pool.
#[derive(Clone, Debug)]
pub struct SyncTask {
    /// The same fields as [`AsyncTask`].
    inner: AsyncTask,
}

impl AsyncTask {
    fn from_ctx(ctx: &TaskContext) -> Self {
        let spec: &TaskSpec = ctx.spec();
        AsyncTask {
            ctx: ctx.clone(),
            task_name: spec.name,
            priority: ctx.priority(),
            echo: true,
            max_time: spec.options.max_time,
            retry: spec.options.retry,
            tags: spec.options.tags,
            description: spec.options.description,
            extra: spec.options.extra,
        }
    }

    /// Enqueues another task on this task's app: `task.add_task(add.call(1, 2)).await?`.
    pub async fn add_task<T: TaskDef>(&self, call: TaskCall<T>) -> Result<Task<T::Output>> {
        call.on(self.ctx.app()).add_task().await
    }
}

impl SyncTask {
    /// The task's context.
    pub fn ctx(&self) -> &TaskContext {
        &self.inner.ctx
    }

    /// The async view of the same handle (all fields).
    pub fn fields(&self) -> &AsyncTask {
        &self.inner
    }

    /// Enqueues another task on this task's app, blocking this (blocking-pool) thread.
    pub fn add_task<T: TaskDef>(&self, call: TaskCall<T>) -> Result<Task<T::Output>> {
        let handle = tokio::runtime::Handle::current();
        handle.block_on(self.inner.add_task(call))
    }
}

impl std::ops::Deref for SyncTask {
    type Target = AsyncTask;
    fn deref(&self) -> &AsyncTask {
        &self.inner
    }
}

impl FromTaskContext for AsyncTask {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(AsyncTask::from_ctx(ctx))
    }
}

impl FromTaskContext for SyncTask {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(SyncTask {
            inner: AsyncTask::from_ctx(ctx),
        })
    }
}
