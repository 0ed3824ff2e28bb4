//! A quick throughput and latency check of the Redis backend (the full benchmark is
//! `examples/bench`): bulk enqueue rate, end-to-end no-op tasks per second with one worker,
//! pickup latency of an idle worker, and the `add_task` + `wait` round trip.
//!
//! `cargo run --release --features redis --example redis_throughput -- 200000`
//! Uses `QTASKS_REDIS_URL`, or starts a private `redis-server`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use qtasks::backend::NewTask;
use qtasks::prelude::*;
use qtasks::redis::server::RedisServer;
use qtasks::Payload;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

static DONE: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static ALL_DONE: Notify = Notify::const_new();
static STARTED: OnceLock<mpsc::UnboundedSender<Instant>> = OnceLock::new();

/// Does nothing but count; returns how many ran so far.
#[qtasks::task]
async fn noop() -> u64 {
    let done = DONE.fetch_add(1, Ordering::Relaxed) + 1;
    if done == TARGET.load(Ordering::Relaxed) {
        ALL_DONE.notify_one();
    }
    done
}

/// Reports when it starts.
#[qtasks::task]
async fn ping_start() -> bool {
    STARTED
        .get()
        .is_some_and(|tx| tx.send(Instant::now()).is_ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let _server;
    let url = match std::env::var("QTASKS_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let server = RedisServer::start().expect("redis-server is installed");
            let url = server.url();
            _server = server;
            url
        }
    };
    let name = format!("throughput-{}", std::process::id());
    let app = App::builder()
        .name(&name)
        .broker_url(&url)
        .max_tasks_process(256)
        .prefetch(2048)
        .build()?;

    // Bulk enqueue through the broker: 1000 tasks per call.
    // `noop` takes no arguments: an empty positional list.
    let no_args = Payload::encode::<[u8; 0]>(&[]).expect("encodes");
    let tasks: Vec<NewTask> = (0..n)
        .map(|_| NewTask {
            uuid: Uuid::new_v4(),
            task_name: "noop".into(),
            priority: 0,
            args: no_args.clone(),
            created_at: SystemTime::now(),
            not_before: None,
        })
        .collect();
    let start = Instant::now();
    for chunk in tasks.chunks(1000) {
        app.backend().broker.enqueue(chunk).await?;
    }
    let enqueue = start.elapsed();
    println!(
        "bulk enqueue: {n} tasks in {enqueue:.2?} = {:.0} tasks/s",
        n as f64 / enqueue.as_secs_f64()
    );

    // End to end: one worker drains the queue (execute + acknowledge with result).
    TARGET.store(n, Ordering::Relaxed);
    let start = Instant::now();
    let worker = app.spawn_worker();
    ALL_DONE.notified().await;
    let last = tasks.last().map(|t| t.uuid).expect("at least one task");
    app.wait(last, Duration::from_secs(60)).await?;
    let e2e = start.elapsed();
    println!(
        "end to end (one worker): {n} no-op tasks in {e2e:.2?} = {:.0} tasks/s",
        n as f64 / e2e.as_secs_f64()
    );

    // Pickup latency of an idle worker, and the add_task + wait round trip.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ = STARTED.set(tx);
    let mut pickup = Vec::new();
    let mut round_trip = Vec::new();
    for _ in 0..500 {
        let sent = Instant::now();
        let task = ping_start.call().on(&app).add_task().await?;
        let started = rx.recv().await.expect("the task reports its start");
        pickup.push(started.duration_since(sent));
        task.wait(Duration::from_secs(10)).await?;
        round_trip.push(sent.elapsed());
    }
    pickup.sort();
    round_trip.sort();
    println!(
        "pickup latency (idle worker): p50 {:.2?}, p99 {:.2?}",
        percentile(&pickup, 0.5),
        percentile(&pickup, 0.99)
    );
    println!(
        "add_task + wait round trip: p50 {:.2?}, p99 {:.2?}",
        percentile(&round_trip, 0.5),
        percentile(&round_trip, 0.99)
    );
    worker.shutdown().await?;
    Ok(())
}
