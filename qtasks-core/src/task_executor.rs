//! [`TaskExecutor`]: what runs one attempt of a task, and [`TaskRun`], the stages it calls.
//!
//! The default pipeline ([`TaskRun::pipeline`]) is the same for async and sync tasks:
//! middlewares before -> the function (arguments decoded, extractors built; a sync function
//! on the blocking pool) -> middlewares after -> decode. [`TaskRun::outcome`] then decides
//! what the result means: success, retry (with backoff, filtered by `retry_on`), error or
//! cancel. A task's `executor = MyExecutor` replaces that sequence: it may call the stages in
//! another order, skip or wrap them, and decide the outcome itself. Around any executor the
//! worker keeps what must always hold: the task's app is the current app, `max_time` and
//! cancellation stop the attempt, and a panic becomes status `error`.

use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::backend::Outcome;
use crate::error::TaskErrorKind;
use crate::{Payload, TaskContext, TaskError, TaskSpec};

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

impl TaskRun {
    pub(crate) fn new(ctx: TaskContext, args: Payload) -> Self {
        TaskRun { ctx, args }
    }

    /// The running task's context.
    pub fn ctx(&self) -> &TaskContext {
        &self.ctx
    }

    /// The task's registry entry.
    pub fn spec(&self) -> &'static TaskSpec {
        self.ctx.spec()
    }

    /// The encoded arguments (a named map).
    pub fn args(&self) -> &Payload {
        &self.args
    }

    /// The encoded arguments, to change them before [`call`](Self::call).
    pub fn args_mut(&mut self) -> &mut Payload {
        &mut self.args
    }

    /// The default sequence: middlewares before, the function, middlewares after, decode.
    pub async fn pipeline(&mut self) -> Result<Payload, TaskError> {
        self.middlewares_before().await?;
        let mut result = crate::hooks::call(self).await;
        self.middlewares_after(&mut result).await;
        crate::hooks::decode(self, result?).await
    }

    /// Runs the `before` of each of the task's `middlewares_before`, in order; the first error
    /// stops the attempt.
    pub async fn middlewares_before(&mut self) -> Result<(), TaskError> {
        for m in self.ctx.spec().options.middlewares_before {
            m.middleware.before(&self.ctx, &mut self.args).await?;
        }
        Ok(())
    }

    /// Calls the function: decodes the arguments, builds the extractors, runs the body (a sync
    /// body on the blocking pool) and encodes its output. A panic becomes an error.
    pub async fn call(&self) -> Result<Payload, TaskError> {
        let handler = (self.ctx.spec().handler)(self.ctx.clone(), self.args.clone());
        match AssertUnwindSafe(handler).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(TaskError::new(TaskErrorKind::Panicked(panic_message(
                panic,
            )))),
        }
    }

    /// Runs the `after` of each of the task's `middlewares_after`, in order.
    pub async fn middlewares_after(&self, result: &mut Result<Payload, TaskError>) {
        for m in self.ctx.spec().options.middlewares_after {
            m.middleware.after(&self.ctx, result).await;
        }
    }

    /// Applies the task's `decode` function to its result (nothing without one).
    pub fn decode(&self, result: Payload) -> Result<Payload, TaskError> {
        match self.ctx.spec().options.decode {
            Some(decode) => (decode.apply)(&self.ctx, result),
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

pub(crate) fn outcome_of_error(ctx: &TaskContext, err: TaskError) -> Outcome {
    let spec = ctx.spec();
    let uuid = ctx.task_uuid;
    let attempt = ctx.attempt();
    if let TaskErrorKind::Cancelled(reason) = err.kind() {
        tracing::info!(task_name = spec.name, task_uuid = %uuid, reason = %reason, "task cancelled");
        return Outcome::Cancelled {
            reason: reason.clone(),
        };
    }
    let traceback = err.traceback();
    if let TaskErrorKind::BadArguments(_) = err.kind() {
        tracing::error!(task_name = spec.name, task_uuid = %uuid, error = %traceback, "bad arguments; the task goes to the dead-letter");
        return Outcome::DeadLetter {
            reason: crate::backend::DeadLetterReason::BadArguments,
            traceback,
        };
    }
    let options = &spec.options;
    let retryable = !err.is_permanent() && options.retry_on.is_none_or(|only| (only.matches)(&err));
    if retryable && attempt <= options.retry {
        let delay = options.backoff.delay(attempt, uuid.as_u64_pair().1);
        tracing::warn!(task_name = spec.name, task_uuid = %uuid, attempt, ?delay, error = %traceback, "task failed; retrying");
        return Outcome::Retry { traceback, delay };
    }
    tracing::error!(task_name = spec.name, task_uuid = %uuid, attempt, error = %traceback, "task failed");
    Outcome::Failed { traceback }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
