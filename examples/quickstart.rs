//! The main job: declare tasks, enqueue them, run a worker, read the results.
//! Runs on the embedded in-memory backend: `cargo run --example quickstart`.

use std::time::Duration;

use qtasks::prelude::*;

/// Adds two numbers.
#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// A sync task: runs on the blocking pool, so it never blocks the async tasks.
#[qtasks::task(name = "text.word_count", priority = 1)]
fn word_count(text: String) -> Result<usize, std::io::Error> {
    if text.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty text",
        ));
    }
    Ok(text.split_whitespace().count())
}

/// A task with its own handle (`echo`): it reads its context and enqueues a nested task.
#[qtasks::task(echo)]
async fn report(task: AsyncTask, n: i64) -> Result<String, TaskError> {
    let child = task.add_task(add.call(n, n)).await?;
    let child = child.wait(Duration::from_secs(5)).await?;
    Ok(format!(
        "task {} saw {n} + {n} = {:?}",
        task.ctx.task_uuid, child.returning
    ))
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let app = App::builder()
        .name("quickstart")
        .max_tasks_process(8)
        .build()?;
    println!(
        "app {:?} serves tasks: {:?}",
        app.name(),
        app.tasks().iter().map(|t| t.name).collect::<Vec<_>>()
    );
    let worker = app.spawn_worker();

    let task = add.add_task(2, 3).await?;
    println!(
        "enqueued {} ({}) with status {}",
        task.task_name, task.uuid, task.status
    );
    let done = task.wait(Duration::from_secs(5)).await?;
    println!("add(2, 3) -> {:?} [{}]", done.returning, done.status);

    let counted = word_count
        .call("the quick brown fox".to_string())
        .timeout(Duration::from_secs(5))
        .add_task()
        .await?;
    println!("word_count -> {:?} [{}]", counted.returning, counted.status);

    let failed = word_count
        .call(String::new())
        .timeout(Duration::from_secs(5))
        .add_task()
        .await?;
    println!(
        "word_count(\"\") -> [{}] {}",
        failed.status,
        failed.traceback.unwrap_or_default()
    );

    let reported = report
        .call(21)
        .timeout(Duration::from_secs(5))
        .add_task()
        .await?;
    println!("report -> {:?}", reported.returning);

    let dynamic = app
        .add_task("add", serde_json::json!({"a": 40, "b": 2}))
        .await?;
    let dynamic = app.wait(dynamic.uuid, Duration::from_secs(5)).await?;
    println!("by name: add -> {:?}", dynamic.returning);

    worker.shutdown().await?;
    println!("worker stopped");
    Ok(())
}
