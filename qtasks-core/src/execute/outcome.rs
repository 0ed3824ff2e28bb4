//! What an attempt's end means for the task: success, retry (with backoff, filtered by
//! `retry_on`), error, cancel, or the dead-letter for input that can never run.

use crate::app::handle::App;
use crate::backend::{DeadLetterReason, Delivery, Outcome};
use crate::context::TaskContext;
use crate::error::{TaskError, TaskErrorKind};

/// The outcome of an attempt that ended with `err`.
pub(crate) fn outcome_of_error(ctx: &TaskContext, err: TaskError) -> Outcome {
    let entry = ctx.entry();
    let uuid = ctx.task_uuid;
    let attempt = ctx.attempt();
    if let TaskErrorKind::Cancelled(reason) = err.kind() {
        tracing::info!(task_name = entry.name, task_uuid = %uuid, reason = %reason, "task cancelled");
        return Outcome::Cancelled {
            reason: reason.clone(),
        };
    }
    if let TaskErrorKind::RateLimited(delay) = err.kind() {
        tracing::info!(task_name = entry.name, task_uuid = %uuid, ?delay, "task rate limited; it runs again later, without spending an attempt");
        return Outcome::Later { delay: *delay };
    }
    let traceback = err.traceback();
    if let TaskErrorKind::BadArguments(_) = err.kind() {
        tracing::error!(task_name = entry.name, task_uuid = %uuid, error = %traceback, "bad arguments; the task goes to the dead-letter");
        return Outcome::DeadLetter {
            reason: DeadLetterReason::BadArguments,
            traceback,
        };
    }
    let options = &entry.options;
    let retryable = !err.is_permanent() && options.retry_on.is_none_or(|only| (only.matches)(&err));
    if retryable && attempt <= options.retry {
        let delay = options.backoff.delay(attempt, uuid.as_u64_pair().1);
        tracing::warn!(task_name = entry.name, task_uuid = %uuid, attempt, ?delay, error = %traceback, "task failed; retrying");
        return Outcome::Retry { traceback, delay };
    }
    tracing::error!(task_name = entry.name, task_uuid = %uuid, attempt, error = %traceback, "task failed");
    Outcome::Failed { traceback }
}

/// The outcome of a delivery whose task this app does not have: status `error`, never retried,
/// kept in the dead-letter (with backends that have one).
pub(crate) fn unknown_task(app: &App, delivery: &Delivery) -> Outcome {
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
