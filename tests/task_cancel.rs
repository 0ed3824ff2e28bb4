//! Cancel from inside (`ctx.cancel`) and from outside (`app.cancel`): queued tasks never run,
//! running async tasks are dropped, running sync tasks are told through their context; all end
//! in status `cancel` with the reason.

mod common;
mod task_support;

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{builder, DEADLINE};
use futures::future::BoxFuture;
use qtasks::backend::{Backend, Broker, Completion, Delivery, Lease, NewTask, QueueStats};
use qtasks::memory::MemoryBackend;
use qtasks::prelude::*;
use task_support::{events, report, DropReport};
use tokio::sync::Notify;

#[qtasks::task(echo)]
async fn gives_up(task: AsyncTask, n: u32) -> Result<u32, TaskError> {
    if n == 0 {
        return Err(task.ctx.cancel("nothing to do"));
    }
    Ok(n)
}

#[qtasks::task(echo)]
fn gives_up_sync(task: SyncTask) -> Result<(), TaskError> {
    Err(task.ctx().cancel("sync: nothing to do"))
}

/// Calls `cancel` and goes on to return a value anyway (the seeds' `cancel` raises).
#[qtasks::task(echo)]
async fn cancels_then_returns(task: AsyncTask) -> Result<u32, TaskError> {
    let _ = task.ctx.cancel("changed my mind");
    Ok(7)
}

/// The same in a sync task.
#[qtasks::task(echo)]
fn cancels_then_returns_sync(task: SyncTask) -> u32 {
    let _ = task.ctx().cancel("sync: changed my mind");
    8
}

#[qtasks::task]
async fn runs(ctx: TaskContext) {
    report(ctx.task_uuid, "ran");
}

#[qtasks::task]
async fn waits_forever(ctx: TaskContext) {
    let _guard = DropReport(ctx.task_uuid, "dropped");
    report(ctx.task_uuid, "started");
    std::future::pending::<()>().await;
}

#[qtasks::task]
fn spins_until_cancelled(ctx: TaskContext) -> bool {
    report(ctx.task_uuid, "started");
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if ctx.is_cancelled() {
            report(ctx.task_uuid, "told to stop");
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[tokio::test]
async fn a_task_cancels_itself() {
    let app = builder("cancel-inside").build().unwrap();
    let worker = app.spawn_worker();
    let done = gives_up
        .call(0)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("nothing to do"));
    let ok = gives_up
        .call(4)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(ok.returning, Some(4));
    let sync = gives_up_sync
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(sync.status, TaskStatus::Cancel);
    assert_eq!(sync.cancel_reason.as_deref(), Some("sync: nothing to do"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_queued_task_cancelled_from_outside_never_runs() {
    let app = builder("cancel-queued").build().unwrap();
    let mut ev = events();
    let queued = runs.call().on(&app).add_task().await.unwrap();
    assert_eq!(
        app.cancel(queued.uuid, "changed my mind").await.unwrap(),
        CancelOutcome::Cancelled
    );
    let done = queued.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("changed my mind"));

    let worker = app.spawn_worker();
    let later = runs.call().on(&app).add_task().await.unwrap();
    ev.expect(later.uuid, "ran").await;
    later.wait(DEADLINE).await.unwrap();
    assert!(
        ev.drain(queued.uuid).is_empty(),
        "the cancelled task never ran"
    );
    assert_eq!(
        app.cancel(queued.uuid, "again").await.unwrap(),
        CancelOutcome::Finished
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_running_async_task_cancelled_from_outside_is_dropped() {
    let app = builder("cancel-running-async").build().unwrap();
    let worker = app.spawn_worker();
    let mut ev = events();
    let task = waits_forever.call().on(&app).add_task().await.unwrap();
    ev.expect(task.uuid, "started").await;
    assert_eq!(
        app.cancel(task.uuid, "user asked").await.unwrap(),
        CancelOutcome::Running
    );
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("user asked"));
    ev.expect(task.uuid, "dropped").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_running_sync_task_cancelled_from_outside_is_told_and_reported() {
    let app = builder("cancel-running-sync").build().unwrap();
    let worker = app.spawn_worker();
    let mut ev = events();
    let task = spins_until_cancelled
        .call()
        .on(&app)
        .add_task()
        .await
        .unwrap();
    ev.expect(task.uuid, "started").await;
    assert_eq!(
        app.cancel(task.uuid, "stop spinning").await.unwrap(),
        CancelOutcome::Running
    );
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("stop spinning"));
    ev.expect(task.uuid, "told to stop").await;
    worker.shutdown().await.unwrap();
}

/// A broker whose first claim is held back after the inner broker made it: the task is
/// `process` in storage while the worker does not know it yet.
struct HeldClaim {
    inner: Arc<dyn Broker>,
    held: AtomicBool,
    claimed: Notify,
    release: Notify,
}

impl Broker for HeldClaim {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [NewTask],
    ) -> BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Existing>>> {
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, qtasks::Result<Vec<Delivery>>> {
        Box::pin(async move {
            let claimed = self.inner.claim(max).await?;
            if !self.held.swap(true, Ordering::SeqCst) {
                self.claimed.notify_one();
                self.release.notified().await;
            }
            Ok(claimed)
        })
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
        self.inner.complete(done)
    }
    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, qtasks::Result<()>> {
        self.inner.requeue(leases)
    }
    fn cancel(
        &self,
        uuid: qtasks::Uuid,
        reason: &str,
    ) -> BoxFuture<'_, qtasks::Result<CancelOutcome>> {
        self.inner.cancel(uuid, reason)
    }
    fn stats(&self) -> BoxFuture<'_, qtasks::Result<QueueStats>> {
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_cancel_that_arrives_before_the_claim_is_applied_when_the_claim_arrives() {
    let memory = Arc::new(MemoryBackend::new(Duration::from_secs(60))).backend();
    let broker = Arc::new(HeldClaim {
        inner: memory.broker.clone(),
        held: AtomicBool::new(false),
        claimed: Notify::new(),
        release: Notify::new(),
    });
    let backend = Backend {
        broker: broker.clone(),
        ..memory
    };
    let app = builder("cancel-before-claim")
        .backend(backend)
        .build()
        .unwrap();
    let mut ev = events();
    let task = runs.call().on(&app).add_task().await.unwrap();
    let worker = app.spawn_worker();
    tokio::time::timeout(DEADLINE, broker.claimed.notified())
        .await
        .expect("the worker claims");
    assert_eq!(
        app.get(task.uuid).await.unwrap().unwrap().status,
        TaskStatus::Process
    );
    assert_eq!(
        app.cancel(task.uuid, "too early").await.unwrap(),
        CancelOutcome::Running
    );
    broker.release.notify_one();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("too early"));
    assert!(ev.drain(task.uuid).is_empty(), "the task never ran");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_task_that_called_cancel_ends_cancel_whatever_it_returns() {
    let app = builder("cancel-then-ok").build().unwrap();
    let worker = app.spawn_worker();
    let done = cancels_then_returns
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("changed my mind"));
    assert_eq!(done.returning, None);
    let done = cancels_then_returns_sync
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("sync: changed my mind"));
    worker.shutdown().await.unwrap();
}
