//! The executor pipeline: one path that runs every task, async or sync.
//!
//! For one delivery: find the task, build its context, call the generated handler (which
//! decodes the arguments, builds the extractors and calls the function; sync functions run on
//! the blocking pool), with the task's app as the current app, under `max_time` and
//! cancellation, with panics caught; then turn the result into an [`Outcome`], deciding retry.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::backend::{Delivery, Outcome};
use crate::depends::TaskScopeHold;
use crate::error::TaskErrorKind;
use crate::worker::WorkerShared;
use crate::{App, Payload, TaskContext, TaskError, TaskSpec};

/// Runs one delivery to its outcome. Never panics.
pub(crate) async fn execute(
    app: &App,
    worker: &WorkerShared,
    delivery: &Delivery,
    cancel: CancellationToken,
) -> Outcome {
    let Some(spec) = app.task(&delivery.task_name) else {
        tracing::error!(task_name = %delivery.task_name, task_uuid = %delivery.uuid, "unknown task");
        return Outcome::Failed {
            traceback: TaskError::new(TaskErrorKind::UnknownTask(format!(
                "this worker (app {:?}) has no task named {:?}; registered tasks: {}. Run a worker built with that task, or include its router",
                app.name(),
                delivery.task_name,
                app.tasks().iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            )))
            .traceback(),
        };
    };
    let ctx = TaskContext::new(
        app.clone(),
        spec,
        delivery.uuid,
        delivery.priority,
        delivery.attempt,
        cancel.clone(),
        Some(worker.dependencies().clone()),
    );
    // Task-scoped dependencies are torn down when the last hold goes: this one, or that of
    // a sync body still on the blocking pool (a timed-out one). On abort, in the background.
    let task_scope = TaskScopeHold::new(&ctx);
    let span = tracing::info_span!("task", task_name = spec.name, task_uuid = %delivery.uuid, attempt = delivery.attempt);
    let result = tracing::Instrument::instrument(
        run_handler(app, spec, ctx, delivery.args.clone(), &cancel),
        span.clone(),
    )
    .await;
    tracing::Instrument::instrument(task_scope.release(), span).await;
    match result {
        Ok(payload) => Outcome::Success(payload),
        Err(err) => {
            let err = match err.kind() {
                TaskErrorKind::Cancelled(_) if cancel.is_cancelled() => {
                    match worker.cancel_reason(delivery.uuid) {
                        Some(reason) => TaskError::cancelled(reason),
                        None => err,
                    }
                }
                _ => err,
            };
            outcome_of_error(spec, delivery, err)
        }
    }
}

async fn run_handler(
    app: &App,
    spec: &'static TaskSpec,
    ctx: TaskContext,
    args: Payload,
    cancel: &CancellationToken,
) -> Result<Payload, TaskError> {
    let call = AssertUnwindSafe((spec.handler)(ctx, args)).catch_unwind();
    let call = async {
        match call.await {
            Ok(result) => result,
            Err(panic) => Err(TaskError::new(TaskErrorKind::Panicked(panic_message(
                panic,
            )))),
        }
    };
    let guarded = async {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(TaskError::cancelled("cancelled")),
            result = call => result,
        }
    };
    match spec.options.max_time {
        None => app.scope(guarded).await,
        Some(max) => match tokio::time::timeout(max, app.scope(guarded)).await {
            Ok(result) => result,
            Err(_) => {
                // Tell a sync task still running on the blocking pool that it should stop.
                cancel.cancel();
                Err(TaskError::new(TaskErrorKind::TimedOut(max)))
            }
        },
    }
}

fn outcome_of_error(spec: &TaskSpec, delivery: &Delivery, err: TaskError) -> Outcome {
    if let TaskErrorKind::Cancelled(reason) = err.kind() {
        tracing::info!(task_name = spec.name, task_uuid = %delivery.uuid, reason = %reason, "task cancelled");
        return Outcome::Cancelled {
            reason: reason.clone(),
        };
    }
    let traceback = err.traceback();
    if !err.is_permanent() && delivery.attempt <= spec.options.retry {
        let delay = retry_delay(delivery.attempt);
        tracing::warn!(task_name = spec.name, task_uuid = %delivery.uuid, attempt = delivery.attempt, ?delay, error = %traceback, "task failed; retrying");
        return Outcome::Retry { traceback, delay };
    }
    tracing::error!(task_name = spec.name, task_uuid = %delivery.uuid, attempt = delivery.attempt, error = %traceback, "task failed");
    Outcome::Failed { traceback }
}

/// Exponential backoff: 100 ms, 200 ms, 400 ms, ... capped at one minute.
fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(16);
    Duration::from_millis(100u64.saturating_mul(factor)).min(Duration::from_secs(60))
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(2), Duration::from_millis(200));
        assert_eq!(retry_delay(3), Duration::from_millis(400));
        assert_eq!(retry_delay(40), Duration::from_secs(60));
    }
}
