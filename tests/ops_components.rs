//! Replaceable components: a broker wrapper that records every write, a worker wrapper and a
//! starter of our own, all without touching qtasks itself.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::DEADLINE;
use futures::future::BoxFuture;
use qtasks::backend::{
    Backend, Broker, CancelOutcome, Completion, Delivery, Lease, NewTask, Outcome, QueueStats,
};
use qtasks::component::{CancellationToken, QueueWorker, Starter, Worker};
use qtasks::prelude::*;
use qtasks::WorkerHandle;
use uuid::Uuid;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Records every write that reaches the backend: new tasks and final outcomes.
struct AuditedBroker {
    inner: Arc<dyn Broker>,
    writes: Arc<Mutex<Vec<String>>>,
}

impl Broker for AuditedBroker {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [NewTask],
    ) -> BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Existing>>> {
        let mut w = self.writes.lock().unwrap();
        w.extend(tasks.iter().map(|t| format!("enqueue {}", t.task_name)));
        drop(w);
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, qtasks::Result<Vec<Delivery>>> {
        self.inner.claim(max)
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
        let mut w = self.writes.lock().unwrap();
        for c in done {
            let what = match &c.outcome {
                Outcome::Success(_) => "success",
                Outcome::Failed { .. } | Outcome::DeadLetter { .. } => "error",
                Outcome::Cancelled { .. } => "cancel",
                Outcome::Retry { .. } => "retry",
                Outcome::Later { .. } => "later",
            };
            w.push(format!("complete {what}"));
        }
        drop(w);
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

/// A worker that counts its starts and delegates to the built-in one.
struct CountingWorker(Arc<AtomicUsize>);

impl Worker for CountingWorker {
    fn spawn(&self, app: &App) -> WorkerHandle {
        self.0.fetch_add(1, Ordering::SeqCst);
        QueueWorker.spawn(app)
    }
}

/// A starter that runs the app until one task has finished.
struct UntilOneTask(tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

impl Starter for UntilOneTask {
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, qtasks::Result<()>> {
        Box::pin(async move {
            let rx = self.0.lock().await.take();
            app.run_until(async move {
                if let Some(rx) = rx {
                    let _ = rx.await;
                }
            })
            .await
        })
    }
}

#[tokio::test]
async fn a_broker_wrapper_records_every_write() {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let w = writes.clone();
    let app = common::builder("components-audit")
        .map_backend(move |b: Backend| Backend {
            broker: Arc::new(AuditedBroker {
                inner: b.broker,
                writes: w,
            }),
            ..b
        })
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let task = add.call(2, 2).on(&app).add_task().await.unwrap();
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(4));
    worker.shutdown().await.unwrap();
    assert_eq!(*writes.lock().unwrap(), ["enqueue add", "complete success"]);
}

#[tokio::test]
async fn the_worker_and_the_starter_are_replaceable() {
    let starts = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let done_tx = Mutex::new(Some(done_tx));
    let app = common::builder("components-lifecycle")
        .worker(CountingWorker(starts.clone()))
        .starter(UntilOneTask(tokio::sync::Mutex::new(Some(done_rx))))
        .events(qtasks::events::Events::new().on_task_success(move |_| {
            if let Some(tx) = done_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }))
        .build()
        .unwrap();
    let task = add.call(20, 22).on(&app).add_task().await.unwrap();
    tokio::time::timeout(DEADLINE, app.run_forever())
        .await
        .expect("the starter stops after one task")
        .unwrap();
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    let done = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Success);
}

/// A worker of one's own: one task at a time, through the same executor pipeline.
struct SerialWorker;

impl Worker for SerialWorker {
    fn spawn(&self, app: &App) -> WorkerHandle {
        WorkerHandle::custom(app, "serial-1", |runner| async move {
            let broker = runner.app().backend().broker.clone();
            loop {
                let claimed = tokio::select! {
                    _ = runner.stopping() => return Ok(()),
                    claimed = broker.claim(1) => claimed?,
                };
                for delivery in claimed {
                    let outcome = runner.execute(&delivery, CancellationToken::new()).await;
                    let lease = delivery.lease();
                    broker
                        .complete(&[Completion {
                            lease,
                            outcome,
                            run: None,
                        }])
                        .await?;
                }
            }
        })
    }
}

#[tokio::test]
async fn a_worker_of_ones_own_runs_tasks_through_the_pipeline() {
    let app = common::builder("components-serial")
        .worker(SerialWorker)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    assert_eq!(worker.id(), "serial-1");
    for n in 0..3 {
        let task = add.call(n, 1).on(&app).add_task().await.unwrap();
        assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(n + 1));
    }
    worker.shutdown().await.unwrap();
}
