//! Generator tasks: `Yield<Item, Reply>`, `generate_handler`, and streaming the yielded
//! values to the caller. `cargo run --example generator`

use std::time::Duration;

use qtasks::prelude::*;

/// The handler: every yielded item goes through it; its reply goes back to the task.
async fn price(item: String) -> u32 {
    item.len() as u32 * 100
}

/// Yields each item, collects the replies, returns the total (the task's result).
#[qtasks::task(generate_handler = price)]
async fn checkout(y: Yield<String, u32>, items: Vec<String>) -> u32 {
    let mut total = 0;
    for item in items {
        total += y.send(item).await;
    }
    total
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let app = App::builder().name("generator").build()?;
    let worker = app.spawn_worker();
    let items = vec!["tea".to_string(), "coffee".to_string(), "cake".to_string()];
    let (task, mut yielded) = checkout.call(items).stream().await?;
    while let Some(item) = yielded.next().await {
        println!("yielded: {}", item?);
    }
    let done = task.wait(Duration::from_secs(5)).await?;
    println!("result: {:?}", done.returning);
    worker.shutdown().await
}
