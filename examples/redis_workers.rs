//! A producer and two worker processes sharing one Redis: the distributed setup.
//!
//! `cargo run --features redis --example redis_workers`
//!
//! Without `QTASKS_REDIS_URL`, it starts a private `redis-server` (which must be installed).
//! The program is the producer; it starts itself twice more as workers
//! (`redis_workers worker <url>`), enqueues eight tasks, prints which worker process ran each
//! one, then stops the workers gracefully with SIGTERM.

use std::process::{Child, Command};
use std::time::Duration;

use qtasks::prelude::*;
use qtasks::redis::server::RedisServer;

/// Pretends to resize an image, and says which process did it.
#[qtasks::task(name = "images.resize", retry = 2)]
async fn resize(image: String, width: u32) -> String {
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!(
        "{image} resized to {width}px by worker pid {}",
        std::process::id()
    )
}

fn app(url: &str) -> qtasks::Result<App> {
    App::builder().name("images").broker_url(url).build()
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, url] = args.as_slice() {
        if mode == "worker" {
            // A worker process: runs until SIGTERM, then finishes its tasks and stops.
            return app(url)?.run_forever().await;
        }
    }

    // The producer.
    let mut _server = None;
    let url = match std::env::var("QTASKS_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let server = RedisServer::start().map_err(|e| {
                qtasks::Error::Worker(format!(
                    "cannot start redis-server: {e}; install it or set QTASKS_REDIS_URL"
                ))
            })?;
            println!("started a private redis-server at {}", server.url());
            let url = server.url();
            _server = Some(server);
            url
        }
    };
    let app = app(&url)?;
    let exe = std::env::current_exe().map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    let mut workers: Vec<Child> = (0..2)
        .map(|_| Command::new(&exe).args(["worker", &url]).spawn())
        .collect::<Result<_, _>>()
        .map_err(|e| qtasks::Error::Worker(format!("cannot start a worker process: {e}")))?;
    println!(
        "started worker processes {:?}",
        workers.iter().map(Child::id).collect::<Vec<_>>()
    );

    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(
            resize
                .call(format!("photo-{i}.png"), 640)
                .on(&app)
                .add_task()
                .await?,
        );
    }
    for task in &tasks {
        let done = task.wait(Duration::from_secs(30)).await?;
        println!("{}: {:?}", done.status, done.returning.unwrap_or_default());
    }
    println!("a worker is alive: {}", app.ping().await?);

    for worker in &mut workers {
        // SIGTERM: the worker stops claiming, finishes what runs, and exits.
        let _ = Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status();
        let _ = worker.wait();
    }
    println!("workers stopped");
    Ok(())
}
