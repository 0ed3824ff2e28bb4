//! The qtasks `end_to_end` workload through rusty-sidekiq 0.15.
//!
//! One process: a `sidekiq::Processor` with `num_workers(C)` on its own bb8 pool of C + 16
//! connections (each worker blocks in `BRPOP` on one; the README's advice of separate fetch
//! and enqueue pools, sized as Ruby Sidekiq sizes its pool, concurrency + a few), and a bulk
//! producer beside it on a second pool. rusty-sidekiq has no bulk enqueue, so the producer
//! does what Ruby Sidekiq's `push_bulk` does with the crate's own pieces: jobs made by
//! `EnqueueOpts::create_job` (the same JSON `perform_async` sends), one `SADD queues` and one
//! `LPUSH` of 1000 jobs at a time through the crate's `RedisConnection`.
//!
//! The clock runs from the first push until the last task body has run: Sidekiq stores no
//! results and acknowledges nothing (a job leaves Redis when `BRPOP` pops it), so "done" is
//! the end of `perform`. Each task marks its index in a table, checked at the end.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sidekiq::{EnqueueOpts, Processor, ProcessorConfig, RedisConnectionManager, Worker};

const QUEUE: &str = "sidekiq_bench";
const CHUNK: u32 = 1000;

#[derive(Clone)]
struct NoopWorker;

#[async_trait]
impl Worker<(u32, String)> for NoopWorker {
    fn opts() -> sidekiq::WorkerOpts<(u32, String), Self> {
        sidekiq::WorkerOpts::new().queue(QUEUE)
    }

    /// The no-op task: marks its index (Sidekiq has no result to return).
    async fn perform(&self, (i, data): (u32, String)) -> sidekiq::Result<()> {
        common::the_table().mark(i);
        let _ = data.len();
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let args = common::Args::parse();
    let n = args.tasks;
    let table = common::table(n);
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        common::fail("sidekiq", &args, &format!("{what}: {e}"))
    };

    let manager = RedisConnectionManager::new(args.redis_url.as_str())
        .unwrap_or_else(|e| fail("redis url", &e));
    let fetch_pool = bb8::Pool::builder()
        .max_size(args.concurrency as u32 + 16)
        .build(manager.clone())
        .await
        .unwrap_or_else(|e| fail("connect", &e));
    let enqueue_pool = bb8::Pool::builder()
        .max_size(4)
        .build(manager)
        .await
        .unwrap_or_else(|e| fail("connect", &e));

    let mut processor = Processor::new(fetch_pool, vec![QUEUE.to_string()])
        .with_config(ProcessorConfig::default().num_workers(args.concurrency));
    processor.register(NoopWorker);
    tokio::spawn(processor.run());
    // Let the workers start and block in BRPOP before the clock starts, as qtasks' bench
    // spawns its worker first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = Instant::now();
    let producing = tokio::spawn(async move {
        let opts: EnqueueOpts = sidekiq::opts().queue(QUEUE);
        let class = NoopWorker::class_name();
        let mut next = 0;
        while next < n {
            let end = (next + CHUNK).min(n);
            let now_ms = now_ms();
            let mut jobs = Vec::with_capacity((end - next) as usize);
            for i in next..end {
                let mut job = opts
                    .create_job(class.clone(), (i, String::new()))
                    .map_err(|e| e.to_string())?;
                job.enqueued_at = Some(now_ms);
                jobs.push(serde_json::to_string(&job).map_err(|e| e.to_string())?);
            }
            let mut conn = enqueue_pool.get().await.map_err(|e| e.to_string())?;
            conn.sadd("queues".to_string(), QUEUE)
                .await
                .map_err(|e| e.to_string())?;
            conn.lpush(format!("queue:{QUEUE}"), jobs)
                .await
                .map_err(|e| e.to_string())?;
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
        fail("timed out", &format!("{limit:?}"));
    }
    let elapsed = start.elapsed();
    match producing.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail("push", &e),
        Err(e) => fail("producer", &e),
    }
    common::report(
        "sidekiq",
        &args,
        elapsed,
        &format!(
            "rusty-sidekiq 0.15.2; num_workers {}, fetch pool {}, bulk LPUSH of {CHUNK} \
             (create_job); ends when the last perform returned (no result store)",
            args.concurrency,
            args.concurrency + 16
        ),
    );
    std::process::exit(0);
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}
