//! Task middlewares (before: change the arguments; after: change the result) and a custom
//! executor. `cargo run --example middleware`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use qtasks::backend::Outcome;
use qtasks::prelude::*;
use qtasks::{Payload, TaskExecutor, TaskMiddleware, TaskRun};

/// Clamps the `percent` argument to 0..=100 before the task sees it.
struct Clamp;

impl TaskMiddleware for Clamp {
    fn before<'a>(
        &'a self,
        ctx: &'a TaskContext,
        args: &'a mut Payload,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async move {
            let mut map: BTreeMap<String, i64> = args.decode()?;
            if let Some(p) = map.get_mut("percent") {
                let clamped = (*p).clamp(0, 100);
                println!("[{}] Clamp: percent {p} -> {clamped}", ctx.task_name());
                *p = clamped;
            }
            *args = Payload::encode(&map)?;
            Ok(())
        })
    }
}

/// Wraps the result in a label after the task.
struct Label;

impl TaskMiddleware for Label {
    fn after<'a>(
        &'a self,
        _ctx: &'a TaskContext,
        result: &'a mut Result<Payload, TaskError>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(p) = result {
                if let Ok(v) = p.decode::<i64>() {
                    *result = Payload::encode(&format!("{v}%")).map_err(TaskError::from);
                }
            }
        })
    }
}

#[qtasks::task(middlewares_before = [Clamp], middlewares_after = [Label])]
async fn progress(percent: i64) -> i64 {
    percent
}

/// Times the default pipeline and never retries.
struct Timed;

impl TaskExecutor for Timed {
    fn execute<'a>(&'a self, run: &'a mut TaskRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let started = Instant::now();
            let result = run.pipeline().await;
            println!("[{}] ran in {:?}", run.ctx().task_name(), started.elapsed());
            match result {
                Ok(payload) => Outcome::Success(payload),
                Err(err) => Outcome::Failed {
                    traceback: err.traceback(),
                },
            }
        })
    }
}

#[qtasks::task(executor = Timed, retry = 5)]
async fn measured(n: u64) -> Result<u64, std::io::Error> {
    if n == 0 {
        return Err(std::io::Error::other("zero"));
    }
    Ok(n * 3)
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let app = App::builder().name("middleware").build()?;
    let worker = app.spawn_worker();
    let wait = Duration::from_secs(5);
    let done = app
        .wait(progress.add_task(250).await?.uuid, wait)
        .await?
        .decode::<String>()?;
    println!("progress(250) -> {:?}", done.returning);
    let done = measured.add_task(4).await?.wait(wait).await?;
    println!("measured(4) -> {:?}", done.returning);
    let done = measured.add_task(0).await?.wait(wait).await?;
    println!(
        "measured(0) -> {} after {} attempt(s)",
        done.status, done.attempts
    );
    worker.shutdown().await
}
