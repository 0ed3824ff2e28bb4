//! Replacing a component without touching qtasks: a broker wrapper that records every write,
//! and a worker wrapper that announces itself. `cargo run --example components`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use qtasks::backend::{
    Backend, Broker, CancelOutcome, Completion, Delivery, Lease, NewTask, QueueStats,
};
use qtasks::component::{QueueWorker, Worker};
use qtasks::prelude::*;
use qtasks::WorkerHandle;
use uuid::Uuid;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Records every write (new tasks, outcomes), then passes it to the real broker.
struct Recorded {
    inner: Arc<dyn Broker>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Recorded {
    fn note(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }
}

impl Broker for Recorded {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [NewTask],
    ) -> BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Existing>>> {
        for t in tasks {
            self.note(format!("enqueue {} {:?}", t.task_name, t.args));
        }
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, qtasks::Result<Vec<Delivery>>> {
        self.inner.claim(max)
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
        for c in done {
            self.note(format!("complete {} {:?}", c.lease.uuid, c.outcome));
        }
        self.inner.complete(done)
    }
    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, qtasks::Result<()>> {
        self.inner.requeue(leases)
    }
    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, qtasks::Result<CancelOutcome>> {
        self.inner.cancel(uuid, reason)
    }
    fn stats(&self) -> BoxFuture<'_, qtasks::Result<QueueStats>> {
        self.inner.stats()
    }
}

/// The built-in worker, announced.
struct Announced;

impl Worker for Announced {
    fn spawn(&self, app: &App) -> WorkerHandle {
        let handle = QueueWorker.spawn(app);
        println!("worker {} started for app {}", handle.id(), app.name());
        handle
    }
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorded = log.clone();
    let app = App::builder()
        .name("components")
        .map_backend(move |b: Backend| Backend {
            broker: Arc::new(Recorded {
                inner: b.broker,
                log: recorded,
            }),
            ..b
        })
        .worker(Announced)
        .build()?;
    let worker = app.spawn_worker();
    let done = add
        .call(2, 3)
        .on(&app)
        .timeout(Duration::from_secs(5))
        .add_task()
        .await?;
    println!("add(2, 3) -> {:?}", done.returning);
    worker.shutdown().await?;
    for line in log.lock().map(|l| l.clone()).unwrap_or_default() {
        println!("recorded: {line}");
    }
    Ok(())
}
