//! The qtasks `end_to_end` workload through apalis 1.0 + apalis-redis 1.0, tuned.
//!
//! One process: a worker (`.concurrency(C)`, `.parallelize(tokio::spawn)`) on a `RedisStorage`
//! and a bulk producer beside it on its own connection (`push_bulk` of 1000 tasks at a time:
//! one `batch_push.lua` call each). The clock runs from the first push until the last result
//! is stored (the `{queue}:done` set holds all N ids; apalis stores results in batches, from
//! its event channel, after the task bodies return). Each task marks its index in a table,
//! checked at the end.
//!
//! Tuning (documented options of `apalis_redis::Config` and `BackendExt`): fetch batches of
//! `min(C, 1000)` tasks instead of 10; `lock_tasks(false)` (the per-task lease script runs an
//! `LREM` over the whole active list, O(queue length) per task; the docs allow turning it off
//! for tasks shorter than a heartbeat, and the fetched ids stay in the worker's in-flight set
//! until acknowledged either way); no pub/sub events (`emit_events(false)`: nothing listens to
//! them here); `poll_with_interval(5 ms)`, since apalis-redis 1.0 puts every pushed task in
//! its scheduled set, promoted by the worker's next fetch, and nothing else wakes an idle
//! worker (its pub/sub factory listens for "available" messages that this path never
//! publishes). Results are persisted (the default), as qtasks stores them.
//!
//! `APALIS_BENCH_DEFAULTS=1` runs the same program with apalis-redis's default `Config`
//! (fetch batches of 10, per-task leases, pub/sub events), for comparison.

use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{Client, Config, RedisStorage};
use serde::{Deserialize, Serialize};

const QUEUE: &str = "apalis_bench";
const CHUNK: u32 = 1000;
const POLL_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    i: u32,
    data: String,
}

/// The no-op task: marks its index, returns the payload's length (stored as its result).
async fn noop(task: Noop) -> Result<u32, BoxDynError> {
    common::the_table().mark(task.i);
    Ok(task.data.len() as u32)
}

#[tokio::main]
async fn main() {
    let args = common::Args::parse();
    let n = args.tasks;
    let table = common::table(n);
    let batch = args.concurrency.clamp(1, 1000);
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        common::fail("apalis", &args, &format!("{what}: {e}"))
    };

    let client = Client::open(args.redis_url.as_str()).unwrap_or_else(|e| fail("redis url", &e));
    let conn = client
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| fail("connect", &e));
    // APALIS_BENCH_DEFAULTS=1: apalis-redis's default Config instead (for comparison).
    let defaults = std::env::var("APALIS_BENCH_DEFAULTS").is_ok_and(|v| v == "1");
    let config = if defaults {
        Config::default().queue(QUEUE)
    } else {
        Config::default()
            .queue(QUEUE)
            .batch_size(batch)
            .lock_tasks(false)
            .emit_events(false)
    };
    // The worker's side: polls again every POLL_EVERY when it found nothing (apalis-redis puts
    // every pushed task in its scheduled set, promoted by the worker's next fetch, so nothing
    // else would wake an idle worker); under load it fetches again as tasks finish.
    let backend = RedisStorage::<Noop>::new(conn.clone())
        .with_config(config.clone())
        .poll_with_interval(POLL_EVERY);
    // The producer's side: its own connection, the same queue.
    let producer_conn = client
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| fail("connect", &e));
    let mut producer: RedisStorage<Noop> =
        RedisStorage::new(producer_conn).with_config(config.clone());

    let worker = WorkerBuilder::new("apalis-bench-worker")
        .backend(backend)
        .concurrency(args.concurrency)
        .parallelize(tokio::spawn)
        .build(noop);
    let worker = tokio::spawn(worker.run());
    // Let the worker register itself (and find the queue empty) before the clock starts, as
    // qtasks' bench spawns its worker first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = Instant::now();
    let producing = tokio::spawn(async move {
        let mut next = 0;
        while next < n {
            let end = (next + CHUNK).min(n);
            let tasks: Vec<Noop> = (next..end)
                .map(|i| Noop {
                    i,
                    data: String::new(),
                })
                .collect();
            producer.push_bulk(tasks).await.map_err(|e| e.to_string())?;
            next = end;
        }
        Ok::<_, String>(())
    });

    let limit = Duration::from_secs(300);
    if !table.wait_all_ran(limit).await {
        if producing.is_finished() {
            if let Ok(Err(e)) = producing.await {
                fail("push", &e);
            }
        }
        if worker.is_finished() {
            if let Ok(Err(e)) = worker.await {
                fail("worker", &e);
            }
        }
        fail("timed out", &format!("{limit:?}"));
    }
    // All ran: now wait for apalis to have stored every result.
    let done_set = config.done_jobs_set();
    let mut conn = conn;
    loop {
        let stored: u64 = redis_scard(&mut conn, &done_set)
            .await
            .unwrap_or_else(|e| fail("SCARD", &e));
        if stored >= n as u64 {
            break;
        }
        if start.elapsed() > limit {
            fail("results not stored in time", &format!("{stored} of {n}"));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let elapsed = start.elapsed();
    match producing.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail("push", &e),
        Err(e) => fail("producer", &e),
    }
    common::report(
        "apalis",
        &args,
        elapsed,
        &format!(
            "apalis 1.0.0 + apalis-redis 1.0.0; batch_size {}, lock_tasks {}, emit_events {}, \
             poll_with_interval {POLL_EVERY:?}, push_bulk of {CHUNK}",
            config.batch_size, config.lock_tasks, config.emit_events
        ),
    );
    // No graceful stop: the run is over and measured.
    std::process::exit(0);
}

async fn redis_scard(
    conn: &mut apalis_redis::ConnectionManager,
    key: &str,
) -> Result<u64, apalis_redis::RedisError> {
    redis::cmd("SCARD").arg(key).query_async(conn).await
}
