//! Dependency injection: one worker-scoped connection pool serves every task, while each task
//! gets its own task-scoped connection, opened for it and closed when it ends.
//!
//! `cargo run --example dependencies`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qtasks::prelude::*;

/// Typed state: how to reach the database.
struct DbConfig {
    url: String,
}

/// A database-like connection pool: created once per worker, on first use.
struct Pool {
    url: String,
    opened: AtomicUsize,
    open_now: AtomicUsize,
    most_open: AtomicUsize,
}

impl Dependency for Pool {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        let config = ctx
            .state::<DbConfig>()
            .ok_or("the app has no DbConfig state")?;
        println!("[pool] connecting to {} (once for this worker)", config.url);
        Ok(Pool {
            url: config.url.clone(),
            opened: AtomicUsize::new(0),
            open_now: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
        })
    }

    async fn close(&self) -> Result<(), BoxError> {
        println!(
            "[pool] worker stopped: closing {} after {} connections (at most {} open at once)",
            self.url,
            self.opened.load(Ordering::SeqCst),
            self.most_open.load(Ordering::SeqCst)
        );
        Ok(())
    }

    /// `App::build()` fails, naming the task, when the app lacks the state the pool needs.
    fn check(app: &App) -> Vec<Missing> {
        match app.state::<DbConfig>() {
            Some(_) => Vec::new(),
            None => vec![Missing::other(
                "the `Pool` dependency needs `.state(DbConfig { .. })`",
            )],
        }
    }
}

/// One connection per task execution, taken from the worker's pool.
struct Conn {
    id: usize,
    pool: Depends<Pool, scope::Worker>,
}

impl Dependency for Conn {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        let pool = ctx.resolve::<Pool, scope::Worker>().await?;
        let id = pool.opened.fetch_add(1, Ordering::SeqCst) + 1;
        let open = pool.open_now.fetch_add(1, Ordering::SeqCst) + 1;
        pool.most_open.fetch_max(open, Ordering::SeqCst);
        println!("[conn {id}] opened ({open} open)");
        Ok(Conn { id, pool })
    }

    async fn close(&self) -> Result<(), BoxError> {
        self.pool.open_now.fetch_sub(1, Ordering::SeqCst);
        println!("[conn {}] closed", self.id);
        Ok(())
    }
}

impl Conn {
    /// Pretends to write a row.
    async fn insert(&self, table: &str, id: u32) -> String {
        tokio::time::sleep(Duration::from_millis(20)).await;
        format!("{table} #{id} written on connection {}", self.id)
    }
}

/// An async task: its own connection, the shared key-value state.
#[qtasks::task]
async fn save_order(conn: Depends<Conn>, totals: KvState<u64>, id: u32, cents: u64) -> String {
    totals.modify("cents", |sum| sum.copied().unwrap_or(0) + cents);
    conn.insert("orders", id).await
}

/// A sync task takes the same extractors; its body runs on the blocking pool.
#[qtasks::task]
fn report(pool: Depends<Pool, scope::Worker>, totals: KvState<u64>) -> String {
    format!(
        "{} orders worth {} cents, through one pool ({})",
        pool.opened.load(Ordering::SeqCst),
        totals.get("cents").unwrap_or(0),
        pool.url
    )
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
        .name("dependencies")
        .state(DbConfig {
            url: "db://localhost/shop".into(),
        })
        .max_tasks_process(4)
        .build()?;
    let worker = app.spawn_worker();

    let mut orders = Vec::new();
    for id in 1..=8 {
        orders.push(save_order.add_task(id, 250 * u64::from(id)).await?);
    }
    for order in orders {
        let done = order.wait(Duration::from_secs(5)).await?;
        println!("{:?}", done.returning.unwrap_or_default());
    }
    let summary = report
        .add_task()
        .await?
        .wait(Duration::from_secs(5))
        .await?;
    println!("{}", summary.returning.unwrap_or_default());

    worker.shutdown().await?;
    app.close_dependencies().await;
    Ok(())
}
