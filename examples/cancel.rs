//! Cancelling tasks from outside (queued and running, async and sync) and `max_time`.
//! `cargo run --example cancel`

use std::time::Duration;

use qtasks::events::Events;
use qtasks::prelude::*;
use qtasks::Uuid;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[qtasks::task]
async fn long_async(ctx: TaskContext) -> String {
    ctx.get_logger("cancel")
        .info("started; waiting to be cancelled");
    std::future::pending::<()>().await;
    "never".to_string()
}

/// A sync task cannot be interrupted: it checks its context between steps.
#[qtasks::task]
fn long_sync(ctx: TaskContext) -> u32 {
    let mut steps = 0;
    while !ctx.is_cancelled() && steps < 1000 {
        std::thread::sleep(Duration::from_millis(10));
        steps += 1;
    }
    println!("long_sync noticed the cancel after {steps} steps");
    steps
}

#[qtasks::task(max_time = 0.2)]
async fn too_slow() {
    tokio::time::sleep(Duration::from_secs(10)).await;
}

/// Waits until the `task_running` event has reported `uuid`.
async fn wait_until_running(running: &mut UnboundedReceiver<Uuid>, uuid: Uuid) {
    while let Some(started) = running.recv().await {
        if started == uuid {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    // The `task_running` event tells when a task has started, so we can cancel it mid-run.
    let (started, mut running) = unbounded_channel();
    let events = Events::new().on_task_running(move |e| {
        let _ = started.send(e.task_uuid);
    });
    let app = App::builder().name("cancel").events(events).build()?;
    let wait = Duration::from_secs(5);

    // Queued: no worker yet, so it never runs.
    let queued = long_async.add_task().await?;
    println!(
        "queued: {:?}",
        app.cancel(queued.uuid, "not needed any more").await?
    );
    let done = app.wait(queued.uuid, wait).await?;
    println!("  -> {} ({:?})", done.status, done.cancel_reason);

    let worker = app.spawn_worker();
    for (label, task) in [
        ("async", long_async.add_task().await?.uuid),
        ("sync", long_sync.add_task().await?.uuid),
    ] {
        tokio::time::timeout(wait, wait_until_running(&mut running, task))
            .await
            .map_err(|_| qtasks::Error::Worker("task did not start".into()))?;
        println!(
            "running {label}: {:?}",
            app.cancel(task, "user pressed stop").await?
        );
        let done = app.wait(task, wait).await?;
        println!("  -> {} ({:?})", done.status, done.cancel_reason);
    }

    let done = too_slow.add_task().await?.wait(wait).await?;
    println!("too_slow: {} ({:?})", done.status, done.traceback);
    worker.shutdown().await
}
