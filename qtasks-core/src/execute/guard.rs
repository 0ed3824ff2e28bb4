//! The guard every attempt runs in, whatever its executor: the task's app as the current app,
//! `max_time`, cancellation, and panics caught.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

use futures::FutureExt;

use crate::backend::Outcome;
use crate::context::TaskContext;
use crate::error::{panic_message, TaskError, TaskErrorKind};
use crate::execute::executor::{DefaultExecutor, TaskRun};
use crate::task::payload::Payload;
use crate::worker::cancel::CancelSignal;

/// Runs the task's executor on `args` with the task's app as the current app, under
/// `max_time` and cancellation, with panics caught. `Ok` is the executor's outcome; `Err`
/// says why the attempt was stopped before the executor finished (cancelled, timed out,
/// panicked).
pub(crate) async fn guarded(ctx: &TaskContext, args: Payload) -> Result<Outcome, TaskError> {
    let cancel = ctx.cancellation_token();
    let options = &ctx.entry().options;
    let max_time = options.max_time;
    let executor = options.executor;
    let run_ctx = ctx.clone();
    // Boxed: the pipeline's future is large (the state of every trigger point), and each
    // future wrapped around it (cancellation, `max_time`, the app scope, the span) would
    // otherwise copy it whole on every move: one allocation is cheaper than those copies.
    let attempt = Box::pin(async move {
        let outcome = match executor {
            None => {
                let mut run = TaskRun::new(run_ctx, args);
                AssertUnwindSafe(DefaultExecutor::run(&mut run))
                    .catch_unwind()
                    .await
            }
            Some(e) => {
                AssertUnwindSafe((e.execute)(run_ctx, args))
                    .catch_unwind()
                    .await
            }
        };
        outcome.map_err(|panic| TaskError::new(TaskErrorKind::Panicked(panic_message(panic))))
    });
    let stoppable = stop_on_cancel(cancel, attempt);
    let app = ctx.app();
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
    cancel: &CancelSignal,
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
