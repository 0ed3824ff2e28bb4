//! A running task's progress (`ctx.progress(value)`, issue 17 item 4): stored on its record,
//! coalesced to one write per 100 ms, the last value written before the attempt ends, and
//! read back with the record and by whoever waits, on the memory, Redis and PostgreSQL
//! backends.
//! (That a running task's value is visible while it runs, and fenced by its claim, is the
//! conformance case `progress_is_kept_while_the_claim_is_current`; the coalescing has a unit
//! test in `qtasks-core/src/context/progress.rs`.)

mod common;

use qtasks::prelude::*;

use common::DEADLINE;

/// Reports every step of a loop, far faster than one write per 100 ms, then `done`.
#[qtasks::task(echo)]
async fn crunch(task: AsyncTask, steps: u32) -> u32 {
    for step in 0..steps {
        task.ctx.progress(step);
    }
    task.ctx.progress("done");
    steps
}

async fn last_progress_is_kept(app: &App) {
    let worker = app.spawn_worker();
    let task = crunch.call(500).on(app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.returning, Some(500));
    let progress = done.progress.as_ref().and_then(|p| p.to_json());
    assert_eq!(
        progress,
        Some(serde_json::json!("done")),
        "the waiter sees the last value"
    );
    let read = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(read.progress, done.progress);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_on_memory() {
    let app = common::builder("progress-memory").build().unwrap();
    last_progress_is_kept(&app).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_on_redis() {
    let Some(url) = qtasks::redis::server::test_url() else {
        return;
    };
    let app = common::builder(&format!("progress-redis-{}", std::process::id()))
        .broker_url(url)
        .build()
        .unwrap();
    last_progress_is_kept(&app).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_on_postgres() {
    let Some(url) = common::postgres::test_url("progress").await else {
        return;
    };
    let app = common::builder(&format!("progress-pg-{}", std::process::id()))
        .broker_url(url)
        .build()
        .unwrap();
    last_progress_is_kept(&app).await;
}
