//! Retry: `retry`, `retry_on` (through the error's source chain) and the backoff keys.
//! `cargo run --example retry`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use qtasks::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, thiserror::Error)]
#[error("the upstream service failed")]
struct Upstream(#[source] std::io::Error);

/// Fails twice with a wrapped `io::Error`, then succeeds: `retry_on = [std::io::Error]`
/// matches the wrapped error; exponential backoff from 50 ms, without jitter.
#[qtasks::task(retry = 3, retry_on = [std::io::Error], retry_delay = 0.05, retry_jitter = false)]
async fn flaky() -> Result<u32, Upstream> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < 3 {
        return Err(Upstream(std::io::Error::other(format!("timeout #{n}"))));
    }
    Ok(n)
}

/// Fails with an error that is not in `retry_on`: ends in `error` at once.
#[qtasks::task(retry = 3, retry_on = [std::io::Error])]
async fn wrong_kind() -> Result<i64, std::num::ParseIntError> {
    "forty-two".parse::<i64>()
}

/// A fixed delay of 100 ms between attempts.
#[qtasks::task(retry = 2, retry_backoff = "fixed", retry_delay = 0.1)]
fn always_fails() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("still broken"))
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let app = App::builder().name("retry").build()?;
    let worker = app.spawn_worker();
    let wait = Duration::from_secs(10);

    let started = Instant::now();
    let done = flaky.add_task().await?.wait(wait).await?;
    println!(
        "flaky: {} after {} attempts in {:?}: {:?}",
        done.status,
        done.attempts,
        started.elapsed(),
        done.returning
    );

    let done = wrong_kind.add_task().await?.wait(wait).await?;
    println!(
        "wrong_kind: {} after {} attempt(s): {:?}",
        done.status, done.attempts, done.traceback
    );

    let started = Instant::now();
    let done = always_fails.add_task().await?.wait(wait).await?;
    println!(
        "always_fails: {} after {} attempts in {:?}: {:?}",
        done.status,
        done.attempts,
        started.elapsed(),
        done.traceback
    );
    worker.shutdown().await
}
