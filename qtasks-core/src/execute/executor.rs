//! [`TaskExecutor`]: what runs one attempt of a task, and [`TaskRun`], the stages it calls.
//!
//! The default pipeline ([`TaskRun::pipeline`]) is the same for async and sync tasks:
//! middlewares before -> the function (arguments decoded, extractors built; a sync function
//! on the blocking pool), with the executor's plugin triggers around it -> middlewares after
//! -> the result transform (the `decode` attribute) and its trigger. [`TaskRun::outcome`] then
//! decides what the result means: success, retry (with backoff, filtered by `retry_on`), error
//! or cancel. A task's `executor = MyExecutor` replaces that sequence: it may call the stages
//! in another order, skip or wrap them, and decide the outcome itself. Around any executor the
//! pipeline (`execute/mod.rs`) keeps what must always hold: the task's app is the current app,
//! `max_time` and cancellation stop the attempt, and a panic becomes status `error`.

use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::backend::Outcome;
use crate::context::TaskContext;
use crate::error::{panic_message, TaskError, TaskErrorKind};
use crate::execute::outcome::outcome_of_error;
use crate::ext::plugin::Trigger;
use crate::task::payload::Payload;

/// Runs one attempt of a task: `#[qtasks::task(executor = MyExecutor)]`.
///
/// (Needs the `qtasks` facade; the same code is compiled in `docs/middleware-and-executors.md`.)
///
/// ```ignore
/// use qtasks::backend::Outcome;
/// use qtasks::{TaskExecutor, TaskRun};
/// use futures::future::BoxFuture;
///
/// /// Runs the default pipeline but never retries.
/// struct NoRetry;
///
/// impl TaskExecutor for NoRetry {
///     fn execute<'a>(&'a self, run: &'a mut TaskRun) -> BoxFuture<'a, Outcome> {
///         Box::pin(async move {
///             match run.pipeline().await {
///                 Ok(result) => Outcome::Success(result),
///                 Err(err) => Outcome::Failed { traceback: err.traceback() },
///             }
///         })
///     }
/// }
///
/// #[qtasks::task(executor = NoRetry, retry = 5)]
/// async fn once() -> Result<(), std::io::Error> { Ok(()) }
/// ```
pub trait TaskExecutor: Send + Sync + 'static {
    /// Runs the attempt and says how it ended.
    fn execute<'a>(&'a self, run: &'a mut TaskRun) -> BoxFuture<'a, Outcome>;
}

/// The executor every task uses unless it names another: [`TaskRun::pipeline`], then
/// [`TaskRun::outcome`]. Custom executors can wrap it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultExecutor;

impl DefaultExecutor {
    /// Runs the default pipeline and decides the outcome (no boxing: the worker calls this
    /// directly for tasks without `executor = ..`).
    pub async fn run(run: &mut TaskRun) -> Outcome {
        let result = run.pipeline().await;
        run.outcome(result)
    }
}

impl TaskExecutor for DefaultExecutor {
    fn execute<'a>(&'a self, run: &'a mut TaskRun) -> BoxFuture<'a, Outcome> {
        Box::pin(DefaultExecutor::run(run))
    }
}

/// One attempt of one task, with the stages an executor calls.
pub struct TaskRun {
    ctx: TaskContext,
    args: Payload,
}

impl std::fmt::Debug for TaskRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRun")
            .field("ctx", &self.ctx)
            .field("args", &self.args)
            .finish()
    }
}

impl TaskRun {
    pub(crate) fn new(ctx: TaskContext, args: Payload) -> Self {
        TaskRun { ctx, args }
    }

    /// The running task's context.
    pub fn ctx(&self) -> &TaskContext {
        &self.ctx
    }

    /// The encoded arguments (a named map).
    pub fn args(&self) -> &Payload {
        &self.args
    }

    /// The encoded arguments, to change them before [`call`](Self::call).
    pub fn args_mut(&mut self) -> &mut Payload {
        &mut self.args
    }

    /// The default sequence: middlewares before, the function (with the plugins' argument,
    /// before, after, plugin-error and result triggers around it), middlewares after, the
    /// result transform (with the plugins' transform trigger).
    pub async fn pipeline(&mut self) -> Result<Payload, TaskError> {
        self.middlewares_before().await?;
        let mut result = self.call_with_plugins().await;
        self.middlewares_after(&mut result).await;
        let mut result = self.transform(result?)?;
        let plugins = &self.ctx.app().hooks().plugins;
        if !plugins.is_empty() {
            plugins
                .fire(&mut Trigger::Decode {
                    ctx: &self.ctx,
                    result: &mut result,
                })
                .await;
        }
        Ok(result)
    }

    /// Runs the `before` of each of the task's `middlewares_before`, in order; the first error
    /// stops the attempt.
    pub async fn middlewares_before(&mut self) -> Result<(), TaskError> {
        for m in self.ctx.entry().options.middlewares_before {
            (m.before)(&self.ctx, &mut self.args).await?;
        }
        Ok(())
    }

    /// Calls the function: decodes the arguments, builds the extractors, runs the body (a sync
    /// body on the blocking pool) and encodes its output. A panic becomes an error; a body that
    /// called `ctx.cancel(..)` or `ctx.plugin_error(..)` ends that way whatever it returned.
    pub async fn call(&self) -> Result<Payload, TaskError> {
        let handler = (self.ctx.entry().handler)(self.ctx.clone(), self.args.clone());
        let result = match AssertUnwindSafe(handler).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(TaskError::new(TaskErrorKind::Panicked(panic_message(
                panic,
            )))),
        };
        // A body that called `ctx.cancel(..)` or `ctx.plugin_error(..)` ends that way.
        self.ctx.apply_ending(result)
    }

    /// Runs the `after` of each of the task's `middlewares_after`, in order.
    pub async fn middlewares_after(&self, result: &mut Result<Payload, TaskError>) {
        for m in self.ctx.entry().options.middlewares_after {
            (m.after)(&self.ctx, result).await;
        }
    }

    /// [`call`](Self::call) with the executor's plugin triggers around it: arguments
    /// replaced, before, the call, after, a plugin error answered, the result replaced.
    async fn call_with_plugins(&mut self) -> Result<Payload, TaskError> {
        if self.ctx.app().hooks().plugins.is_empty() {
            return self.call().await;
        }
        let ctx = self.ctx.clone();
        let plugins = &ctx.app().hooks().plugins;
        plugins
            .fire(&mut Trigger::ArgsReplace {
                ctx: &ctx,
                args: &mut self.args,
            })
            .await;
        plugins
            .fire(&mut Trigger::ExecuteBefore { ctx: &ctx })
            .await;
        let mut result = self.call().await;
        plugins
            .fire(&mut Trigger::ExecuteAfter {
                ctx: &ctx,
                result: &result,
            })
            .await;
        if let Err(err) = &result {
            if let TaskErrorKind::PluginError(data) = err.kind() {
                let mut replaced = None;
                plugins
                    .fire(&mut Trigger::PluginError {
                        ctx: &ctx,
                        data,
                        result: &mut replaced,
                    })
                    .await;
                if let Some(payload) = replaced {
                    result = Ok(payload);
                }
            }
        }
        if let Ok(payload) = &mut result {
            plugins
                .fire(&mut Trigger::ResultReplace {
                    ctx: &ctx,
                    result: payload,
                })
                .await;
        }
        result
    }

    /// Applies the task's result transform (its `decode = path` attribute) to its result
    /// (nothing without one).
    pub fn transform(&self, result: Payload) -> Result<Payload, TaskError> {
        match self.ctx.entry().options.transform {
            Some(transform) => (transform.apply)(&self.ctx, result),
            None => Ok(result),
        }
    }

    /// What a result means for the task: `success`; `cancel` for a cancellation; `retry`
    /// (after the backoff delay) while attempts remain and the error is retryable and
    /// matches `retry_on`; `error` otherwise.
    pub fn outcome(&self, result: Result<Payload, TaskError>) -> Outcome {
        match result {
            Ok(payload) => Outcome::Success(payload),
            Err(err) => outcome_of_error(&self.ctx, err),
        }
    }
}

/// Runs one attempt through a task's own executor: what the `ExecutorRef` the macro generates
/// for `executor = Type` calls.
pub fn run_executor(
    executor: &'static dyn TaskExecutor,
    ctx: TaskContext,
    args: Payload,
) -> BoxFuture<'static, Outcome> {
    Box::pin(async move {
        let mut run = TaskRun::new(ctx, args);
        executor.execute(&mut run).await
    })
}
