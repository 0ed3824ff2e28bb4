//! The execution pipeline: the one path that runs every delivery, async or sync, for the
//! worker's lanes, a worker of one's own and the testing kit alike.
//!
//! [`execute`] takes one delivery to its [`Outcome`]:
//! 1. the worker's plugin triggers (`worker_add`, `worker_execute_before`) and the
//!    `task_running` event;
//! 2. the task looked up (`outcome::unknown_task` when the app has none) and its
//!    [`TaskContext`] built, with a hold on the execution's dependency scope;
//! 3. the task's executor ([`DefaultExecutor`](crate::DefaultExecutor) unless it names another;
//!    see [`TaskRun`](crate::TaskRun) in `executor.rs` for the stages) inside the guard every
//!    attempt gets (`guard::guarded`: the task's app as the current app, `max_time`,
//!    cancellation, panics caught);
//! 4. the `task_close` trigger, the task scope torn down, a stop from outside turned into its
//!    outcome (`outcome::outcome_of_error`);
//! 5. the `retry` and `worker_execute_after` triggers, then the `task_stopping` event and the
//!    event of how it ended.
//!
//! Each trigger point starts with one emptiness check, so an app without plugins or event
//! handlers pays one branch per point.

pub(crate) mod executor;
pub(crate) mod guard;
pub(crate) mod handler;
pub(crate) mod outcome;

use std::sync::Arc;

use crate::app::handle::App;
use crate::backend::{Delivery, Outcome};
use crate::context::TaskContext;
use crate::di::depends::TaskScopeHold;
use crate::error::{TaskError, TaskErrorKind};
use crate::execute::guard::guarded;
use crate::execute::outcome::{outcome_of_error, unknown_task};
use crate::ext::events::{TaskCancel, TaskEvent, TaskFailure, TaskSuccess};
use crate::ext::plugin::Trigger;
use crate::observe;
use crate::worker::cancel::CancelSignal;
use crate::worker::scope::WorkerScope;

/// Runs one delivery to its outcome, for `worker`. `cancel.cancel()` stops the task. Never
/// panics.
pub(crate) async fn execute(
    app: &App,
    worker: &Arc<WorkerScope>,
    delivery: &Delivery,
    cancel: CancelSignal,
) -> Outcome {
    let execution = observe::Execution::start(delivery);
    let hooks = app.hooks();
    if hooks.is_empty() {
        let outcome = run_task(app, worker, delivery, cancel).await;
        execution.finish(&outcome);
        return outcome;
    }
    let plugins = &hooks.plugins;
    let mut owned;
    let mut delivery = delivery;
    if !plugins.is_empty() {
        owned = delivery.clone();
        plugins
            .fire(&mut Trigger::WorkerAdd {
                delivery: &mut owned,
            })
            .await;
        delivery = &owned;
        plugins
            .fire(&mut Trigger::WorkerExecuteBefore { delivery })
            .await;
    }
    let event = TaskEvent {
        app,
        task_name: &delivery.task_name,
        task_uuid: delivery.uuid,
        attempt: delivery.attempt,
        priority: delivery.priority,
    };
    hooks.events.fire_task_running(&event);

    let mut outcome = run_task(app, worker, delivery, cancel).await;

    if let Outcome::Retry { traceback, delay } = &outcome {
        let mut next = Some(*delay);
        plugins
            .fire(&mut Trigger::Retry {
                delivery,
                traceback,
                delay: &mut next,
            })
            .await;
        outcome = match next {
            Some(delay) => Outcome::Retry {
                traceback: traceback.clone(),
                delay,
            },
            None => Outcome::Failed {
                traceback: traceback.clone(),
            },
        };
    }
    plugins
        .fire(&mut Trigger::WorkerExecuteAfter {
            delivery,
            outcome: &mut outcome,
        })
        .await;

    let events = &hooks.events;
    events.fire_task_stopping(&event);
    match &outcome {
        Outcome::Success(result) => events.fire_task_success(&TaskSuccess {
            task: event,
            result,
        }),
        Outcome::Failed { traceback } | Outcome::DeadLetter { traceback, .. } => events
            .fire_task_error(&TaskFailure {
                task: event,
                traceback,
                retry_in: None,
            }),
        Outcome::Retry { traceback, delay } => events.fire_task_error(&TaskFailure {
            task: event,
            traceback,
            retry_in: Some(*delay),
        }),
        Outcome::Cancelled { reason } => events.fire_task_cancel(&TaskCancel {
            task: event,
            reason,
        }),
        // Not an end: the task is queued again (its `stopping` event was fired).
        Outcome::Later { .. } => {}
    }
    execution.finish(&outcome);
    outcome
}

/// Runs `fut` inside `span`: the span is entered while the future is polled, and only then.
/// Unlike `tracing::Instrument`, dropping the finished future does not enter the span once
/// more: with an OpenTelemetry layer each enter and exit of a sampled span costs about 2,000
/// instructions (`docs/benchmarks.md`), and a no-op task used to enter its span four times.
async fn in_span<F: std::future::Future>(span: &tracing::Span, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let _entered = span.enter();
        fut.as_mut().poll(cx)
    })
    .await
}

/// Steps 2 to 4: the task's context, its executor in the guard, its close.
async fn run_task(
    app: &App,
    worker: &Arc<WorkerScope>,
    delivery: &Delivery,
    cancel: CancelSignal,
) -> Outcome {
    let Some(entry) = app.task(&delivery.task_name) else {
        return unknown_task(app, delivery);
    };
    let ctx = TaskContext::new(app.clone(), entry, delivery, cancel, Some(worker.clone()));
    // Task-scoped dependencies are torn down when the last hold goes: this one, or that of
    // a sync body still on the blocking pool (a timed-out one). On abort, in the background.
    let task_scope = TaskScopeHold::new(&ctx);
    let span = tracing::info_span!("task", task_name = entry.name, task_uuid = %delivery.uuid, attempt = i64::from(delivery.attempt), status = tracing::field::Empty, queue_seconds = observe::queue_seconds(delivery));
    observe::task_span(&span, delivery);
    // The attempt, its `task_close` trigger and the scope's teardown, in the task's span.
    let stopped = in_span(&span, async {
        let stopped = guarded(&ctx, delivery.args.clone()).await;
        // The last progress value counts, written before the attempt is acknowledged.
        ctx.flush_progress().await;
        let plugins = &app.hooks().plugins;
        if !plugins.is_empty() {
            plugins.fire(&mut Trigger::TaskClose { ctx: &ctx }).await;
        }
        task_scope.release().await;
        stopped
    })
    .await;
    let outcome = match stopped {
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
            outcome_of_error(&ctx, err)
        }
    };
    observe::task_span_end(&span, &outcome);
    outcome
}
