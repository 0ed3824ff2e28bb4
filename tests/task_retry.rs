//! Retry: counts, backoff, `retry_on` filtering (including wrapped errors), status `retry`
//! between attempts, and that waiters get the final attempt's outcome.

mod common;
mod task_support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use task_support::WatchedBroker;

/// Runs per task uuid, so tests running in parallel do not share counters.
static RUNS: Mutex<Option<HashMap<uuid::Uuid, u32>>> = Mutex::new(None);

fn count_run(ctx: &TaskContext) -> u32 {
    let mut runs = RUNS.lock().unwrap();
    let n = runs
        .get_or_insert_with(HashMap::new)
        .entry(ctx.task_uuid)
        .or_default();
    *n += 1;
    *n
}

#[derive(Debug, thiserror::Error)]
#[error("flaky: attempt {0}")]
struct Flaky(u32);

#[derive(Debug, thiserror::Error)]
#[error("saving the report failed")]
struct SaveFailed(#[source] std::io::Error);

#[qtasks::task(retry = 2, retry_delay = 0.01)]
async fn fails_twice(ctx: TaskContext) -> Result<u32, Flaky> {
    let n = count_run(&ctx);
    if n < 3 {
        Err(Flaky(n))
    } else {
        Ok(n)
    }
}

#[qtasks::task(retry = 2, retry_delay = 0.01)]
async fn always_fails(ctx: TaskContext) -> Result<(), Flaky> {
    Err(Flaky(count_run(&ctx)))
}

#[qtasks::task(retry = 3, retry_on = [std::io::Error], retry_delay = 0.01)]
async fn only_io(ctx: TaskContext, kind: String) -> Result<(), qtasks::TaskError> {
    let n = count_run(&ctx);
    match kind.as_str() {
        "io" => Err(std::io::Error::other(format!("disk busy ({n})")).into()),
        "wrapped" => Err(SaveFailed(std::io::Error::other("disk full")).into()),
        _ => Err(Flaky(n).into()),
    }
}

#[qtasks::task(retry = 2, retry_backoff = "fixed", retry_delay = 0.2)]
fn fixed_backoff(ctx: TaskContext) -> Result<u32, Flaky> {
    let n = count_run(&ctx);
    if n < 3 {
        Err(Flaky(n))
    } else {
        Ok(n)
    }
}

#[qtasks::task(retry = 1, retry_backoff = "fixed", retry_delay = 30)]
async fn slow_retry(ctx: TaskContext, tx: u8) -> Result<(), Flaky> {
    let _ = tx;
    Err(Flaky(count_run(&ctx)))
}

#[tokio::test]
async fn retry_n_means_n_more_attempts_and_the_waiter_gets_the_last_outcome() {
    let app = builder("retry-counts").build().unwrap();
    let worker = app.spawn_worker();
    let done = fails_twice
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(3));
    assert_eq!(done.attempts, 3);

    let failed = always_fails
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Error);
    assert_eq!(failed.attempts, 3, "retry = 2: one run and two retries");
    assert_eq!(failed.traceback.as_deref(), Some("flaky: attempt 3"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn retry_on_retries_only_listed_errors_including_wrapped_ones() {
    let app = builder("retry-on").build().unwrap();
    let worker = app.spawn_worker();
    let io = only_io.call("io".into()).on(&app).add_task().await.unwrap();
    let wrapped = only_io
        .call("wrapped".into())
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let other = only_io
        .call("other".into())
        .on(&app)
        .add_task()
        .await
        .unwrap();

    let io = io.wait(DEADLINE).await.unwrap();
    assert_eq!(io.status, TaskStatus::Error);
    assert_eq!(io.attempts, 4, "io::Error is in retry_on: 1 + 3 attempts");

    let wrapped = wrapped.wait(DEADLINE).await.unwrap();
    assert_eq!(
        wrapped.attempts, 4,
        "an io::Error in the source chain matches too"
    );
    assert!(wrapped.traceback.unwrap().contains("caused by: disk full"));

    let other = other.wait(DEADLINE).await.unwrap();
    assert_eq!(other.status, TaskStatus::Error);
    assert_eq!(other.attempts, 1, "an error not in retry_on ends at once");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn fixed_backoff_waits_between_attempts() {
    let app = builder("retry-fixed-backoff").build().unwrap();
    let worker = app.spawn_worker();
    let started = Instant::now();
    let done = fixed_backoff
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(done.returning, Some(3));
    assert!(
        elapsed >= Duration::from_millis(400),
        "two retries 200 ms apart took {elapsed:?}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_is_retry_between_attempts_and_a_waiting_retry_can_be_cancelled() {
    let (backend, broker) = WatchedBroker::memory();
    let app = builder("retry-status").backend(backend).build().unwrap();
    let mut completions = broker.subscribe();
    let worker = app.spawn_worker();
    let task = slow_retry.call(1).on(&app).add_task().await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        while completions.recv().await.unwrap() != (task.uuid, "retry") {}
    })
    .await
    .expect("the first attempt ends in retry");
    let status = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(status.status, TaskStatus::Retry);
    assert_eq!(status.traceback.as_deref(), Some("flaky: attempt 1"));
    assert_eq!(
        app.cancel(task.uuid, "no more tries").await.unwrap(),
        CancelOutcome::Cancelled
    );
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("no more tries"));
    assert_eq!(done.attempts, 1);
    worker.shutdown().await.unwrap();
}
