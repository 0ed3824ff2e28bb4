//! A task that reports its progress while it runs, and a caller that reads it.
//!
//! `cargo run --example progress`

use std::time::Duration;

use qtasks::prelude::*;

/// Imports `rows` rows, reporting the percentage done.
#[qtasks::task(echo)]
async fn import(task: AsyncTask, rows: u32) -> u32 {
    for row in 0..rows {
        if row % 1000 == 0 {
            tokio::task::yield_now().await;
        }
        task.ctx.progress(row * 100 / rows);
    }
    task.ctx.progress(100);
    rows
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    let app = App::builder().name("progress").build()?;
    let worker = app.spawn_worker();
    let task = import.add_task(100_000).await?;
    let done = task.wait(Duration::from_secs(10)).await?;
    let percent: u32 = done
        .progress
        .as_ref()
        .and_then(|p| p.decode().ok())
        .unwrap_or_default();
    println!(
        "imported {} rows; last progress {percent} %",
        done.returning.unwrap_or_default()
    );
    worker.shutdown().await
}
