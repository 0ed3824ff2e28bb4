//! Flow control on the embedded backend: a unique charge per order, a debounced reindex, a
//! partner API called at most two at a time and at most 20 times a second, and a task that an
//! external API rate-limits.
//!
//! `cargo run --example flow_control` (add `--features redis` and set
//! `QTASKS_BROKER_URL=redis://127.0.0.1:6379/0` to share the limits between processes).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use qtasks::prelude::*;

/// Charges an order; while a charge of the order is pending, asking again returns it.
#[qtasks::task(unique = [order_id])]
async fn charge(order_id: u64, amount_cents: u64) -> String {
    format!("order {order_id}: charged {amount_cents} cents")
}

/// Rebuilds the search index once, 0.2 s after the last edit of a burst.
#[qtasks::task(debounce = 0.2)]
async fn reindex(after: String) -> String {
    format!("reindexed after {after}")
}

static RUNNING: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

/// Calls a partner API that allows two connections and 20 calls a second.
#[qtasks::task(concurrency = 2, rate_limit = "20/s")]
async fn sync_partner(batch: u32) -> u32 {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    batch
}

static QUOTE_CALLS: AtomicU32 = AtomicU32::new(0);

/// The quote API answers "429, retry after 100 ms" to the first call.
#[qtasks::task(echo)]
async fn fetch_quote(task: AsyncTask, symbol: String) -> Result<String, TaskError> {
    if QUOTE_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(task.ctx.rate_limited(Duration::from_millis(100)));
    }
    Ok(format!("{symbol}: 42.00"))
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    let app = App::builder()
        .name("flow-control")
        .max_tasks_process(8)
        .build()?;
    let wait = Duration::from_secs(10);

    let first = charge.add_task(7, 1250).await?;
    let again = charge.add_task(7, 1250).await?;
    println!(
        "charge order 7 twice: the second is the first ({}, is_existing = {})",
        again.uuid == first.uuid,
        again.is_existing()
    );

    let mut edits = Vec::new();
    for n in 1..=5 {
        edits.push(reindex.add_task(format!("edit {n}")).await?);
    }
    println!(
        "5 reindex calls made {} task",
        edits.iter().filter(|t| !t.is_existing()).count()
    );

    let worker = app.spawn_worker();
    println!("{}", first.wait(wait).await?.returning.unwrap_or_default());
    println!(
        "{}",
        edits[0].wait(wait).await?.returning.unwrap_or_default()
    );

    let started = Instant::now();
    let batches = app.add_tasks((0..20).map(|b| sync_partner.call(b))).await?;
    for task in &batches {
        task.wait(wait).await?;
    }
    println!(
        "20 partner calls in {:.2?}: at most {} at once (limit 2), at most 20/s",
        started.elapsed(),
        PEAK.load(Ordering::SeqCst)
    );

    let quote = fetch_quote
        .add_task("ACME".into())
        .await?
        .wait(wait)
        .await?;
    println!(
        "{} after being rate limited once (attempts: {})",
        quote.returning.unwrap_or_default(),
        quote.attempts
    );
    worker.shutdown().await
}
