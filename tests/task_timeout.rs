//! `max_time`: an async task's future is dropped at the deadline; a sync task is reported as
//! timed out at the deadline and told through its context that it should stop.

mod common;
mod task_support;

use std::time::{Duration, Instant};

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use task_support::{events, report, DropReport};

#[qtasks::task(max_time = 0.2)]
async fn slow_async(ctx: TaskContext) {
    let _guard = DropReport(ctx.task_uuid, "dropped");
    report(ctx.task_uuid, "started");
    std::future::pending::<()>().await;
}

#[qtasks::task(max_time = 0.2)]
fn slow_sync(ctx: TaskContext) -> u32 {
    report(ctx.task_uuid, "started");
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if ctx.is_cancelled() {
            report(ctx.task_uuid, "told to stop");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

#[qtasks::task(max_time = 5)]
async fn fast_enough() -> u8 {
    7
}

#[tokio::test]
async fn an_async_task_is_stopped_at_max_time() {
    let app = builder("timeout-async").build().unwrap();
    let worker = app.spawn_worker();
    let mut ev = events();
    let started = Instant::now();
    let task = slow_async.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("timed out"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "reported at the deadline"
    );
    ev.expect(task.uuid, "dropped").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sync_task_is_reported_at_max_time_and_told_to_stop() {
    let app = builder("timeout-sync").build().unwrap();
    let worker = app.spawn_worker();
    let mut ev = events();
    let started = Instant::now();
    let task = slow_sync.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("timed out"));
    assert!(
        elapsed < Duration::from_secs(3),
        "reported at the deadline, not when the body returns ({elapsed:?})"
    );
    ev.expect(task.uuid, "told to stop").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_task_within_max_time_succeeds() {
    let app = builder("timeout-ok").build().unwrap();
    let worker = app.spawn_worker();
    let done = fast_enough
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(7));
    worker.shutdown().await.unwrap();
}
