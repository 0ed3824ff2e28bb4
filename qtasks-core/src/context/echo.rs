//! The task handles that `echo` passes first: [`AsyncTask`] and [`SyncTask`] (Python's `self`).

use std::time::Duration;

use crate::context::TaskContext;
use crate::di::extract::FromTaskContext;
use crate::error::{Result, TaskError};
use crate::task::call::TaskCall;
use crate::task::def::TaskDef;
use crate::task::entry::{MiddlewareRef, TaskEntry};
use crate::task::extra::ExtraValue;
use crate::task::record::Task;

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
    /// The error types that are retried, as written in `retry_on` (empty: every error).
    pub retry_on: &'static [&'static str],
    /// The path of the `decode` attribute's function (the result transform), if any.
    pub decode: Option<&'static str>,
    /// The `generate_handler` function's path, if any.
    pub generate_handler: Option<&'static str>,
    /// The `executor` type's path (`None`: the default pipeline).
    pub executor: Option<&'static str>,
    /// The middlewares run before the function, in order.
    pub middlewares_before: &'static [MiddlewareRef],
    /// The middlewares run after the function, in order.
    pub middlewares_after: &'static [MiddlewareRef],
    /// Tags.
    pub tags: &'static [&'static str],
    /// Description.
    pub description: Option<&'static str>,
    /// Any other `key = literal` pairs of the attribute, each value typed as written
    /// (`level = 3` is [`ExtraValue::Int`](crate::registry::ExtraValue::Int)).
    pub extra: &'static [(&'static str, ExtraValue)],
}

/// The running task itself, for sync `fn` tasks declared with `echo`: the same fields as
/// [`AsyncTask`] (through `Deref`), with blocking methods for the task's body, which runs on the
/// blocking pool (`add_task`, `sleep`; async context methods through `ctx().block_on(..)`).
#[derive(Clone, Debug)]
pub struct SyncTask {
    /// The same fields as [`AsyncTask`].
    inner: AsyncTask,
}

impl AsyncTask {
    fn from_ctx(ctx: &TaskContext) -> Self {
        let spec: &TaskEntry = ctx.entry();
        AsyncTask {
            ctx: ctx.clone(),
            task_name: spec.name,
            priority: ctx.priority(),
            echo: true,
            max_time: spec.options.max_time,
            retry: spec.options.retry,
            retry_on: spec.options.retry_on.map_or(&[], |r| r.names),
            decode: spec.options.transform.map(|d| d.name),
            generate_handler: spec.options.generate_handler,
            executor: spec.options.executor.map(|e| e.name),
            middlewares_before: spec.options.middlewares_before,
            middlewares_after: spec.options.middlewares_after,
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
        self.inner.ctx.block_on(self.inner.add_task(call))
    }

    /// Sleeps, blocking this thread; returns early (with `false`) when the task is asked to
    /// stop.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.inner.ctx.sleep_blocking(duration)
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
