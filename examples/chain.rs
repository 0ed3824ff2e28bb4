//! Chains: each step's result feeds the next; a failing step stops the chain.
//! `cargo run --example chain`

use std::time::Duration;

use qtasks::chain::Chain;
use qtasks::prelude::*;

#[qtasks::task]
async fn fetch(url: String) -> String {
    format!("<html>{url}</html>")
}

#[qtasks::task]
fn word_count(page: String) -> usize {
    page.len()
}

#[qtasks::task]
async fn check(n: usize) -> Result<usize, std::io::Error> {
    if n > 100 {
        return Err(std::io::Error::other(format!("{n} is too long")));
    }
    Ok(n)
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let app = App::builder().name("chain").build()?;
    let worker = app.spawn_worker();
    let wait = Duration::from_secs(5);

    let last = Chain::new(fetch.call("example.org".into()))
        .then(word_count)
        .then(check)
        .on(&app)
        .start()
        .wait(wait)
        .await?;
    println!("fetch -> word_count -> check = {:?}", last.returning);

    let long = "x".repeat(200);
    match Chain::new(fetch.call(long))
        .then(word_count)
        .then(check)
        .on(&app)
        .start()
        .wait(wait)
        .await
    {
        Ok(t) => println!("unexpected success: {:?}", t.returning),
        Err(e) => println!("stopped: {e}"),
    }
    worker.shutdown().await
}
