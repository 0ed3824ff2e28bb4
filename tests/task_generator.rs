//! Generator tasks: each `y.send(item)` goes through `generate_handler` (sync or async) and
//! its reply comes back; the function's return value is the result; callers can stream the
//! yielded values while the task runs.

mod common;

use common::{builder, DEADLINE};
use qtasks::prelude::*;

fn shout(step: String) -> String {
    step.to_uppercase()
}

async fn double(n: u32) -> u32 {
    tokio::task::yield_now().await;
    n * 2
}

#[qtasks::task(generate_handler = shout)]
async fn steps(y: Yield<String, String>, n: u32) -> Vec<String> {
    let mut replies = vec![y.send("init".to_string()).await];
    for i in 0..n {
        replies.push(y.send(format!("step {i}")).await);
    }
    replies
}

#[qtasks::task(generate_handler = double)]
async fn doubled(y: Yield<u32, u32>) -> u32 {
    let mut sum = 0;
    for i in 1..=3 {
        sum += y.send(i).await;
    }
    sum
}

#[qtasks::task(generate_handler = shout)]
fn sync_steps(y: Yield<String, String>) -> String {
    let a = y.send_blocking("one".into());
    let b = y.send_blocking("two".into());
    format!("{a}+{b}")
}

#[qtasks::task]
async fn progress(y: Yield<u8>, upto: u8) -> String {
    for p in 0..=upto {
        y.send(p).await;
    }
    "done".to_string()
}

#[tokio::test]
async fn replies_come_back_from_a_sync_handler_and_the_return_is_the_result() {
    let app = builder("gen-sync-handler").build().unwrap();
    let worker = app.spawn_worker();
    let done = steps
        .call(2)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
    assert_eq!(done.returning.unwrap(), vec!["INIT", "STEP 0", "STEP 1"]);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn replies_come_back_from_an_async_handler() {
    let app = builder("gen-async-handler").build().unwrap();
    let worker = app.spawn_worker();
    let done = doubled
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(12));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sync_generator_task_sends_blocking() {
    let app = builder("gen-sync-task").build().unwrap();
    let worker = app.spawn_worker();
    let done = sync_steps
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning.as_deref(), Some("ONE+TWO"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_caller_observes_the_yielded_values_as_a_stream() {
    let app = builder("gen-stream").build().unwrap();
    let worker = app.spawn_worker();
    let (task, mut items) = progress.call(4).on(&app).stream().await.unwrap();
    let mut seen = Vec::new();
    while let Some(item) = tokio::time::timeout(DEADLINE, items.next()).await.unwrap() {
        seen.push(item.unwrap());
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.returning.as_deref(), Some("done"));

    // With a handler, the stream carries the items (before the handler), in order.
    let (task, items) = steps.call(1).on(&app).stream().await.unwrap();
    let seen: Vec<String> = futures::StreamExt::collect::<Vec<_>>(items)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(seen, vec!["init", "step 0"]);
    assert_eq!(
        task.wait(DEADLINE).await.unwrap().returning.unwrap(),
        vec!["INIT", "STEP 0"]
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_dropped_before_the_task_runs_leaves_the_task_unaffected() {
    let app = builder("gen-dropped-stream").build().unwrap();
    let (task, items) = progress.call(255).on(&app).stream().await.unwrap();
    drop(items);
    let worker = app.spawn_worker();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(
        done.returning.as_deref(),
        Some("done"),
        "as many items as the stream buffers, nobody reading"
    );
    worker.shutdown().await.unwrap();
}
