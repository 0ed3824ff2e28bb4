//! Failure paths: a dependency that cannot be created, and task-scoped teardown when the task
//! panics, is cancelled or times out (async and sync).
// `#[task(max_time = 0.05)]` expands to `(0.05) as f64`, which clippy flags in the calling
// crate: a macro issue (reported to the lead), silenced here only.
#![allow(clippy::unnecessary_cast)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use qtasks::TaskStatus;
use tokio::sync::Notify;

/// A task-scoped resource whose teardowns are counted per test (one type per test, since
/// tests run in parallel).
macro_rules! probe {
    ($name:ident, $created:ident, $closed:ident) => {
        static $created: AtomicUsize = AtomicUsize::new(0);
        static $closed: AtomicUsize = AtomicUsize::new(0);
        struct $name {
            open: AtomicBool,
        }
        impl Dependency for $name {
            async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
                $created.fetch_add(1, Ordering::SeqCst);
                Ok($name {
                    open: AtomicBool::new(true),
                })
            }
            async fn close(&self) -> Result<(), BoxError> {
                self.open.store(false, Ordering::SeqCst);
                $closed.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Creation fails: status `error` naming the dependency and its scope; retries apply.

static DOWN_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

struct DownDb;

impl Dependency for DownDb {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        DOWN_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        Err(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "db down",
        )))
    }
}

#[qtasks::task(retry = 2)]
async fn needs_down_db(_db: Depends<DownDb, scope::Worker>) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_creation_errors_naming_dependency_and_scope_and_is_retried() {
    let app = builder("di-fail-create").build().unwrap();
    let worker = app.spawn_worker();
    let task = needs_down_db.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    let traceback = done.traceback.unwrap();
    assert!(
        traceback.contains("dependency `di_failures::DownDb` (scope worker) could not be provided")
            && traceback.contains("caused by: db down"),
        "{traceback}"
    );
    // The first attempt and two retries each tried again: a failure is not cached.
    assert_eq!(done.attempts, 3);
    assert_eq!(DOWN_ATTEMPTS.load(Ordering::SeqCst), 3);
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The task returns an error and is retried: each attempt gets its own task-scoped value,
// torn down when that attempt ends.

probe!(ErrorProbe, ERROR_CREATED, ERROR_CLOSED);

#[qtasks::task(retry = 1)]
async fn fails(probe: Depends<ErrorProbe>) -> Result<(), TaskError> {
    assert!(probe.open.load(Ordering::SeqCst));
    Err(TaskError::msg(format!(
        "failing with {} value(s) closed",
        ERROR_CLOSED.load(Ordering::SeqCst)
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_runs_after_each_failed_attempt() {
    let app = builder("di-fail-error").build().unwrap();
    let worker = app.spawn_worker();
    let done = fails
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(done.attempts, 2);
    // The second attempt saw the first attempt's value closed, and had a fresh one.
    assert!(done
        .traceback
        .unwrap()
        .contains("failing with 1 value(s) closed"));
    assert_eq!(ERROR_CREATED.load(Ordering::SeqCst), 2);
    assert_eq!(ERROR_CLOSED.load(Ordering::SeqCst), 2);
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The task panics: the execution's dependencies are still torn down.

probe!(PanicProbe, PANIC_CREATED, PANIC_CLOSED);

#[qtasks::task]
async fn panics(_probe: Depends<PanicProbe>) {
    panic!("boom");
}

probe!(SyncPanicProbe, SYNC_PANIC_CREATED, SYNC_PANIC_CLOSED);

#[qtasks::task]
fn panics_sync(_probe: Depends<SyncPanicProbe>) {
    panic!("sync boom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_runs_when_the_task_panics() {
    let app = builder("di-fail-panic").build().unwrap();
    let worker = app.spawn_worker();
    let done = panics
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("boom"));
    assert_eq!(PANIC_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(PANIC_CLOSED.load(Ordering::SeqCst), 1);

    let done = panics_sync
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("sync boom"));
    assert_eq!(SYNC_PANIC_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(SYNC_PANIC_CLOSED.load(Ordering::SeqCst), 1);
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The task is cancelled while running.

probe!(CancelProbe, CANCEL_CREATED, CANCEL_CLOSED);
static CANCEL_STARTED: Notify = Notify::const_new();

#[qtasks::task]
async fn waits_forever(_probe: Depends<CancelProbe>) {
    CANCEL_STARTED.notify_one();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_runs_when_the_task_is_cancelled() {
    let app = builder("di-fail-cancel").build().unwrap();
    let worker = app.spawn_worker();
    let task = waits_forever.call().on(&app).add_task().await.unwrap();
    tokio::time::timeout(DEADLINE, CANCEL_STARTED.notified())
        .await
        .unwrap();
    assert_eq!(CANCEL_CLOSED.load(Ordering::SeqCst), 0);
    app.cancel(task.uuid, "no longer needed").await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(CANCEL_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(CANCEL_CLOSED.load(Ordering::SeqCst), 1);
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The task times out: async (its future is dropped) and sync (its body keeps running on the
// blocking pool, so teardown waits for it).

probe!(TimeoutProbe, TIMEOUT_CREATED, TIMEOUT_CLOSED);

#[qtasks::task(max_time = 0.05)]
async fn too_slow(_probe: Depends<TimeoutProbe>) {
    std::future::pending::<()>().await;
}

probe!(SyncTimeoutProbe, SYNC_TIMEOUT_CREATED, SYNC_TIMEOUT_CLOSED);
/// The sync body waits here until the test lets it finish.
static SYNC_GATE: std::sync::Barrier = std::sync::Barrier::new(2);
static SYNC_OPEN_AT_END: AtomicBool = AtomicBool::new(false);
static SYNC_FINISHED: Notify = Notify::const_new();

#[qtasks::task(max_time = 0.05)]
fn too_slow_sync(probe: Depends<SyncTimeoutProbe>) {
    SYNC_GATE.wait();
    SYNC_OPEN_AT_END.store(probe.open.load(Ordering::SeqCst), Ordering::SeqCst);
}

impl Drop for SyncTimeoutProbe {
    fn drop(&mut self) {
        SYNC_FINISHED.notify_one();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_runs_when_the_task_times_out() {
    let app = builder("di-fail-timeout").build().unwrap();
    let worker = app.spawn_worker();
    let done = too_slow
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("timed out"));
    assert_eq!(TIMEOUT_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(TIMEOUT_CLOSED.load(Ordering::SeqCst), 1);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_sync_body_keeps_its_dependencies_until_it_returns() {
    let app = builder("di-fail-timeout-sync").build().unwrap();
    let worker = app.spawn_worker();
    let done = too_slow_sync
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("timed out"));
    // The body still runs on the blocking pool: its resource must still be open.
    assert_eq!(SYNC_TIMEOUT_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(SYNC_TIMEOUT_CLOSED.load(Ordering::SeqCst), 0);
    let finished = SYNC_FINISHED.notified();
    tokio::pin!(finished);
    finished.as_mut().enable();
    tokio::task::spawn_blocking(|| SYNC_GATE.wait())
        .await
        .unwrap();
    // Teardown follows the body's end, then the value is dropped.
    tokio::time::timeout(DEADLINE, finished).await.unwrap();
    assert!(SYNC_OPEN_AT_END.load(Ordering::SeqCst));
    assert_eq!(SYNC_TIMEOUT_CLOSED.load(Ordering::SeqCst), 1);
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// A worker stopping while tasks run past the grace period: their executions are aborted,
// their task-scoped values are torn down, before the worker-scoped ones.

probe!(AbortProbe, ABORT_CREATED, ABORT_CLOSED);
static ABORT_STARTED: Notify = Notify::const_new();
static ABORT_WORKER_CLOSED_AFTER_TASK: AtomicBool = AtomicBool::new(false);

struct AbortPool;

impl Dependency for AbortPool {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(AbortPool)
    }
    async fn close(&self) -> Result<(), BoxError> {
        ABORT_WORKER_CLOSED_AFTER_TASK
            .store(ABORT_CLOSED.load(Ordering::SeqCst) == 1, Ordering::SeqCst);
        Ok(())
    }
}

#[qtasks::task]
async fn outlives_grace(_pool: Depends<AbortPool, scope::Worker>, _probe: Depends<AbortProbe>) {
    ABORT_STARTED.notify_one();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_executions_are_torn_down_before_the_worker_scope() {
    let app = builder("di-fail-abort")
        .grace_period(std::time::Duration::from_millis(10))
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let _task = outlives_grace.call().on(&app).add_task().await.unwrap();
    tokio::time::timeout(DEADLINE, ABORT_STARTED.notified())
        .await
        .unwrap();
    worker.shutdown().await.unwrap();
    assert_eq!(ABORT_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(ABORT_CLOSED.load(Ordering::SeqCst), 1);
    assert!(ABORT_WORKER_CLOSED_AFTER_TASK.load(Ordering::SeqCst));
}
