//! `echo` and the task context: a task reads its own options and uses every `ctx` method.
//! `cargo run --example echo_ctx`

use std::time::Duration;

use qtasks::prelude::*;
use qtasks::Component;

#[qtasks::task]
async fn square(n: u64) -> u64 {
    n * n
}

/// Reads its own fields and every context method, from inside the running task.
#[qtasks::task(echo, priority = 2, retry = 1, tags = ["demo"], description = "tour of ctx", team = "core")]
async fn tour(task: AsyncTask, n: u64) -> Result<String, TaskError> {
    let ctx = &task.ctx;
    let log = ctx.get_logger("tour");
    log.info(format!(
        "running as {} (attempt {})",
        ctx.task_uuid,
        ctx.attempt()
    ));
    println!(
        "fields: name={} priority={} retry={} tags={:?} description={:?} extra={:?}",
        task.task_name, task.priority, task.retry, task.tags, task.description, task.extra
    );
    println!(
        "config: max_tasks_process={}",
        ctx.get_config().max_tasks_process
    );
    let me = ctx.get_metadata(true).await?;
    println!("metadata: status={} attempts={}", me.status, me.attempts);
    if let Some(Component::Worker(worker)) = ctx.get_component("worker") {
        println!(
            "worker: {} holds {} task(s)",
            worker.id(),
            worker.inflight()
        );
    }
    let child = task.add_task(square.call(n)).await?;
    let slept = ctx.sleep(Duration::from_millis(20)).await;
    let seen = ctx.get_task(child.uuid).await?;
    println!(
        "child {} is {:?}; slept fully: {slept}",
        child.uuid,
        seen.map(|t| t.status)
    );
    let child = child.wait(Duration::from_secs(5)).await?;
    if n == 0 {
        return Err(ctx.cancel("n is zero: nothing to do"));
    }
    Ok(format!("{n}^2 = {:?}", child.returning))
}

/// The same from a sync task: blocking variants.
#[qtasks::task(echo)]
fn sync_tour(task: SyncTask) -> Result<String, TaskError> {
    let ctx = task.ctx();
    task.sleep(Duration::from_millis(10));
    let me = ctx.block_on(ctx.get_metadata(false))?;
    Ok(format!("sync task {} is {}", me.uuid, me.status))
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .try_init();
    let app = App::builder().name("echo-ctx").build()?;
    let worker = app.spawn_worker();
    let done = tour.add_task(7).await?.wait(Duration::from_secs(5)).await?;
    println!("tour(7): {} {:?}", done.status, done.returning);
    let done = tour.add_task(0).await?.wait(Duration::from_secs(5)).await?;
    println!("tour(0): {} reason={:?}", done.status, done.cancel_reason);
    let done = sync_tour
        .add_task()
        .await?
        .wait(Duration::from_secs(5))
        .await?;
    println!("sync_tour: {:?}", done.returning);
    worker.shutdown().await
}
