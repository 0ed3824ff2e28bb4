//! The executor pipeline: one path that runs every task, async or sync.
//!
//! For one delivery: find the task (`unknown_task` if the app has none), build its context,
//! then run the task's executor ([`DefaultExecutor`] unless it names another; see
//! [`TaskRun`](crate::TaskRun) for the stages) inside the guard every attempt gets
//! (`guarded`): the task's app as the current app, `max_time`, cancellation, and panics
//! caught. The result is an [`Outcome`] for the broker.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::backend::{DeadLetterReason, Delivery, Outcome};
use crate::depends::TaskScopeHold;
use crate::error::TaskErrorKind;
use crate::task_executor::outcome_of_error;
pub(crate) use crate::task_executor::panic_message;
use crate::worker::WorkerShared;
use crate::{App, DefaultExecutor, Payload, TaskContext, TaskError, TaskRun};

/// Runs one delivery to its outcome. Never panics.
pub(crate) async fn execute(
    app: &App,
    worker: &Arc<WorkerShared>,
    delivery: &Delivery,
    cancel: CancellationToken,
) -> Outcome {
    let Some(spec) = app.task(&delivery.task_name) else {
        return unknown_task(app, delivery);
    };
    let ctx = TaskContext::new(
        app.clone(),
        spec,
        delivery.uuid,
        delivery.priority,
        delivery.attempt,
        cancel,
        Some(worker.clone()),
    );
    // Task-scoped dependencies are torn down when the last hold goes: this one, or that of
    // a sync body still on the blocking pool (a timed-out one). On abort, in the background.
    let task_scope = TaskScopeHold::new(&ctx);
    let span = tracing::info_span!("task", task_name = spec.name, task_uuid = %delivery.uuid, attempt = delivery.attempt);
    let mut run = TaskRun::new(ctx, delivery.args.clone());
    let stopped = tracing::Instrument::instrument(guarded(app, &mut run), span.clone()).await;
    crate::hooks::task_close(run.ctx()).await;
    tracing::Instrument::instrument(task_scope.release(), span).await;
    match stopped {
        Ok(outcome) => outcome,
        Err(err) => {
            // Stopped from outside: report the reason `app.cancel` gave.
            let err = match err.kind() {
                TaskErrorKind::Cancelled(_) => match worker.cancel_reason(delivery.uuid) {
                    Some(reason) => TaskError::cancelled(reason),
                    None => err,
                },
                _ => err,
            };
            outcome_of_error(run.ctx(), err)
        }
    }
}

/// Runs the task's executor with the task's app as the current app, under `max_time` and
/// cancellation, with panics caught. `Ok` is the executor's outcome; `Err` says why the
/// attempt was stopped before the executor finished (cancelled, timed out, panicked).
async fn guarded(app: &App, run: &mut TaskRun) -> Result<Outcome, TaskError> {
    // The context's token, through a clone of the context (an `Arc`): cloning the token itself
    // takes a lock.
    let ctx = run.ctx().clone();
    let cancel = ctx.cancellation_token();
    let max_time = run.spec().options.max_time;
    let executor = run.spec().options.executor;
    // Boxed: the pipeline's future is large (the state of every trigger point), and each
    // future wrapped around it (cancellation, `max_time`, the app scope, the span) would
    // otherwise copy it whole on every move: one allocation is cheaper than those copies.
    let attempt = Box::pin(async move {
        let outcome = match executor {
            None => {
                AssertUnwindSafe(DefaultExecutor::run(run))
                    .catch_unwind()
                    .await
            }
            Some(e) => {
                AssertUnwindSafe(e.executor.execute(run))
                    .catch_unwind()
                    .await
            }
        };
        outcome.map_err(|panic| TaskError::new(TaskErrorKind::Panicked(panic_message(panic))))
    });
    let stoppable = stop_on_cancel(cancel, attempt);
    match max_time {
        None => app.scope(stoppable).await,
        Some(max) => match tokio::time::timeout(max, app.scope(stoppable)).await {
            Ok(result) => result,
            Err(_) => {
                // The future is dropped; a sync body still on the blocking pool is told
                // through its context that it should stop.
                cancel.cancel();
                Err(TaskError::new(TaskErrorKind::TimedOut(max)))
            }
        },
    }
}

/// Runs `attempt` until it finishes or `cancel` fires; a cancellation wins when both are ready
/// (as a `biased` select on the token first would).
///
/// Written by hand rather than as a `select!` because most tasks finish on their first poll:
/// checking `is_cancelled` first and registering on the token only once the attempt is
/// pending spares them a waiter registration (a lock on the token) per task.
async fn stop_on_cancel(
    cancel: &CancellationToken,
    attempt: impl Future<Output = Result<Outcome, TaskError>>,
) -> Result<Outcome, TaskError> {
    let mut attempt = std::pin::pin!(attempt);
    let mut cancelled = std::pin::pin!(cancel.cancelled());
    std::future::poll_fn(|cx| {
        if cancel.is_cancelled() {
            return Poll::Ready(Err(TaskError::cancelled("cancelled")));
        }
        if let Poll::Ready(outcome) = attempt.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        match cancelled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TaskError::cancelled("cancelled"))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The outcome of a delivery whose task this app does not have: status `error`, never retried,
/// kept in the dead-letter (with backends that have one).
fn unknown_task(app: &App, delivery: &Delivery) -> Outcome {
    tracing::error!(task_name = %delivery.task_name, task_uuid = %delivery.uuid, "unknown task; the task goes to the dead-letter");
    Outcome::DeadLetter {
        reason: DeadLetterReason::UnknownTask,
        traceback: TaskError::new(TaskErrorKind::UnknownTask(format!(
            "this worker (app {:?}) has no task named {:?}; registered tasks: {}. Run a worker built with that task, or include its router",
            app.name(),
            delivery.task_name,
            app.tasks().iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
        )))
        .traceback(),
    }
}

/// Runs a sync task body on tokio's blocking pool, with the task's app as the current app, so
/// it never blocks other tasks. A panic becomes a [`TaskError`].
pub async fn run_blocking<R: Send + 'static>(
    ctx: &TaskContext,
    body: impl FnOnce() -> R + Send + 'static,
) -> Result<R, TaskError> {
    let app = ctx.app().clone();
    let task_scope = TaskScopeHold::new(ctx);
    let body = move || {
        let _task_scope = task_scope;
        app.scope_blocking(body)
    };
    match tokio::task::spawn_blocking(body).await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => Err(TaskError::new(TaskErrorKind::Panicked(panic_message(
            e.into_panic(),
        )))),
        Err(e) => Err(TaskError::msg(format!(
            "the blocking pool dropped the task: {e}"
        ))),
    }
}

/// Decodes a task's arguments, naming the task and its parameters when they do not fit.
pub fn decode_args<A: serde::de::DeserializeOwned>(
    ctx: &TaskContext,
    args: &Payload,
) -> Result<A, TaskError> {
    args.decode::<A>().map_err(|e| {
        let spec = ctx.spec();
        TaskError::new(TaskErrorKind::BadArguments(format!(
            "task {:?} expects arguments ({}) but got {:?}: {e}",
            spec.name, spec.signature, args
        )))
    })
}

/// Encodes a task's output.
pub fn encode_output<T: serde::Serialize>(
    ctx: &TaskContext,
    output: &T,
) -> Result<Payload, TaskError> {
    Payload::encode(output).map_err(|e| {
        TaskError::msg(format!(
            "cannot encode the result of task {:?} (type `{}`): {e}",
            ctx.task_name(),
            ctx.spec().output
        ))
    })
}

/// Decodes a task's encoded output back into its type (for `decode = path`).
pub fn decode_output<T: serde::de::DeserializeOwned>(
    ctx: &TaskContext,
    output: &Payload,
) -> Result<T, TaskError> {
    output.decode::<T>().map_err(|e| {
        TaskError::msg(format!(
            "cannot read back the result of task {:?} as `{}` for its decode function (a middleware after may have replaced it with another type): {e}",
            ctx.task_name(),
            ctx.spec().output
        ))
    })
}

/// Turns what a task function returns into `Result<Output, TaskError>`; implemented for
/// `Result<T, E>` with `E: Into<TaskError>`. Plain `T` returns are wrapped by the macro.
pub trait IntoTaskResult {
    /// The success type.
    type Output;
    /// The conversion.
    fn into_task_result(self) -> Result<Self::Output, TaskError>;
}

impl<T, E: Into<TaskError>> IntoTaskResult for Result<T, E> {
    type Output = T;
    fn into_task_result(self) -> Result<T, TaskError> {
        self.map_err(Into::into)
    }
}
