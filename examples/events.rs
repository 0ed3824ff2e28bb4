//! Events: typed hooks for the app's life and every task's end.
//! `cargo run --example events`

use std::time::Duration;

use qtasks::events::Events;
use qtasks::prelude::*;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task]
async fn fail() -> Result<u8, std::io::Error> {
    Err(std::io::Error::other("disk full"))
}

#[qtasks::task]
async fn skip(ctx: TaskContext) -> Result<u8, TaskError> {
    Err(ctx.cancel("nothing to do"))
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let events = Events::new()
        .on_starting(|e| println!("starting app {}", e.app.name()))
        .on_worker_running(|e| println!("worker {} running", e.worker_id))
        .on_task_running(|e| println!("  {} running (attempt {})", e.task_name, e.attempt))
        .on_task_success(|e| println!("  {} succeeded: {:?}", e.task.task_name, e.result))
        .on_task_error(|e| println!("  {} failed: {}", e.task.task_name, e.traceback))
        .on_task_cancel(|e| println!("  {} cancelled: {}", e.task.task_name, e.reason))
        .on_worker_stopping(|e| println!("worker {} stopping", e.worker_id))
        .on_stopping(|e| println!("app {} stopped", e.app.name()));
    let app = App::builder().name("events").events(events).build()?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let app = app.clone();
        async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let wait = Duration::from_secs(5);
    add.call(2, 3).on(&app).timeout(wait).add_task().await?;
    fail.call().on(&app).timeout(wait).add_task().await?;
    skip.call().on(&app).timeout(wait).add_task().await?;
    let _ = stop.send(());
    running
        .await
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?
}
