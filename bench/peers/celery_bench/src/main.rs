//! The qtasks `end_to_end` workload through rusty-celery (crate `celery` 0.5.5), Redis broker.
//!
//! One process, two apps on the same queue (each with its own broker connection, as a
//! producer and a worker would have): a consumer with `prefetch_count(C)` (up to C tasks in
//! flight, each spawned on the runtime), and a producer sending with C sends in flight at a
//! time over its multiplexed connection (rusty-celery has no bulk send; one `LPUSH` per task,
//! pipelined this way).
//!
//! The clock runs from the first send until the last task body has run. rusty-celery has no
//! result backend, and by default it acknowledges a task (`HDEL` of its entry in the
//! `_celery.{queue}_process_map` hash) before running it, so at that point every task is also
//! acknowledged. Each task marks its index in a table, checked at the end.
//!
//! The consumer is started once the first 1000 tasks are queued (inside the timed window):
//! its Redis consumer sleeps a whole second whenever `RPOP` finds the queue empty, so started
//! before the producer it would add up to a second of sleep to the figure.

// `#[celery::task]` expands to an impl inside a const, which current rustc warns about.
#![allow(non_local_definitions)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use celery::prelude::*;
use futures::StreamExt;

const QUEUE: &str = "celery_bench";
const FIRST: u32 = 1000;

/// The no-op task: marks its index, returns the payload's length.
#[celery::task]
async fn noop(i: u32, data: String) -> TaskResult<u32> {
    common::the_table().mark(i);
    Ok(data.len() as u32)
}

async fn app(url: &str, prefetch: u16) -> Result<Arc<celery::Celery>, CeleryError> {
    let app = celery::CeleryBuilder::new("celery_bench", url)
        .default_queue(QUEUE)
        .prefetch_count(prefetch)
        .broker_connection_timeout(5)
        .broker_connection_max_retries(2)
        .broker_connection_retry_delay(1)
        .build()
        .await?;
    app.register_task::<noop>().await?;
    Ok(Arc::new(app))
}

#[tokio::main]
async fn main() {
    tokio::task::LocalSet::new().run_until(run()).await
}

async fn run() {
    let args = common::Args::parse();
    let n = args.tasks;
    let table = common::table(n);
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        common::fail("celery", &args, &format!("{what}: {e}"))
    };
    let prefetch = u16::try_from(args.concurrency).unwrap_or(u16::MAX);
    let consumer = app(&args.redis_url, prefetch)
        .await
        .unwrap_or_else(|e| fail("consumer app", &format!("{e}: {e:?}")));
    let producer = app(&args.redis_url, prefetch)
        .await
        .unwrap_or_else(|e| fail("producer app", &format!("{e}: {e:?}")));
    let in_flight = args.concurrency;

    let send = move |range: std::ops::Range<u32>| {
        let producer = producer.clone();
        async move {
            let errors = futures::stream::iter(range)
                .map(|i| {
                    let producer = producer.clone();
                    async move { producer.send_task(noop::new(i, String::new())).await }
                })
                .buffer_unordered(in_flight)
                .filter_map(|r| async move { r.err() });
            let mut errors = std::pin::pin!(errors);
            match errors.next().await {
                Some(e) => Err(e.to_string()),
                None => Ok(()),
            }
        }
    };

    let start = Instant::now();
    let first = FIRST.min(n);
    if let Err(e) = send(0..first).await {
        fail("send", &e);
    }
    // The consume loop's future is not Send: it runs on this thread (a LocalSet); the tasks
    // it spawns run on the runtime's worker threads.
    let consuming = tokio::task::spawn_local({
        let consumer = consumer.clone();
        async move { consumer.consume_from(&[QUEUE]).await }
    });
    let producing = tokio::spawn(send(first..n));

    let limit = Duration::from_secs(300);
    if !table.wait_all_ran(limit).await {
        if producing.is_finished() {
            if let Ok(Err(e)) = producing.await {
                fail("send", &e);
            }
        }
        if consuming.is_finished() {
            match consuming.await {
                Ok(Err(e)) => fail("consume", &e),
                Ok(Ok(())) => fail("consume", &"the consumer stopped"),
                Err(e) => fail("consume", &e),
            }
        }
        fail("timed out", &format!("{limit:?}"));
    }
    let elapsed = start.elapsed();
    match producing.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail("send", &e),
        Err(e) => fail("producer", &e),
    }
    common::report(
        "celery",
        &args,
        elapsed,
        &format!(
            "celery (rusty-celery) 0.5.5, Redis broker; prefetch_count {prefetch}, {in_flight} \
             sends in flight, ack before run (default); ends when the last task ran (no result \
             backend)"
        ),
    );
    std::process::exit(0);
}
