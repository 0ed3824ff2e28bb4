//! The fault scenarios every distributed backend must survive, written once and run by each
//! backend's reliability tests (`tests/redis_reliability.rs`, `tests/postgres_reliability.rs`):
//! a worker killed with SIGKILL mid-task, a worker frozen with SIGSTOP past its lease, a cancel
//! reaching a worker in another process, the server going away and coming back under load,
//! and producers failing fast without a server.
//!
//! A backend's test file gives a [`Harness`]: how its `tracked` task is called (the task counts
//! its runs and announces each start in the backend's own way), how to wait for those starts
//! and read the count ([`Probe`]), and which environment variable turns the test binary into a
//! worker process. Every wait is bounded and waits on a result or an announced start.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use qtasks::prelude::*;
use qtasks::{Payload, TaskCall, TaskDef};
use uuid::Uuid;

use super::worker_process::WorkerProcess;
use super::DEADLINE;

/// The announced starts of one task (`(pid, run)` each), listened to before it is enqueued.
pub(crate) trait Starts: Send {
    /// The next start; panics after [`DEADLINE`].
    fn next(&mut self) -> BoxFuture<'_, (u32, u64)>;
}

/// How a backend's tests see the `tracked` task's runs.
pub(crate) trait Probe: Sync {
    /// Starts listening for the starts of the task behind `key`.
    fn listen<'a>(&'a self, url: &'a str, key: &'a str) -> BoxFuture<'a, Box<dyn Starts>>;
    /// How many runs of the task behind `key` were counted.
    fn runs<'a>(&'a self, url: &'a str, key: &'a str) -> BoxFuture<'a, u64>;
}

/// What the scenarios need from one backend's test file.
pub(crate) struct Harness<T: TaskDef<Output = u64>, A: TaskDef<Output = i64>> {
    /// The backend's name as its errors spell it (`Redis`, `PostgreSQL`).
    pub(crate) backend: &'static str,
    /// The environment variable that turns the test binary into a worker process.
    pub(crate) worker_env: &'static str,
    /// `tracked.call(key, first_run_ms)`: counts its runs, announces each start, sleeps
    /// `first_run_ms` on its first run only, returns its run number.
    pub(crate) tracked: fn(String, u64) -> TaskCall<T>,
    /// `add.call(a, b)`: a plain task returning `a + b`.
    pub(crate) add: fn(i64, i64) -> TaskCall<A>,
    /// How the tests see `tracked`'s runs.
    pub(crate) probe: &'static dyn Probe,
}

/// A worker killed with SIGKILL mid-task: the task runs again on another worker within the
/// lease plus a little, and its run is counted. `url` has a lease of `lease`.
pub(crate) async fn killed_worker_task_runs_again_elsewhere<
    T: TaskDef<Output = u64>,
    A: TaskDef<Output = i64>,
>(
    h: &Harness<T, A>,
    url: &str,
    lease: Duration,
    name: &str,
) {
    let app = super::builder(name).broker_url(url).build().unwrap();
    let mut victim = WorkerProcess::start(h.worker_env, url, name);
    let key = Uuid::new_v4().to_string();
    let mut starts = h.probe.listen(url, &key).await;
    let task = (h.tracked)(key.clone(), 60_000)
        .on(&app)
        .add_task()
        .await
        .unwrap();
    assert_eq!(starts.next().await, (victim.pid(), 1));

    let rescuer = app.spawn_worker();
    victim.kill9();
    let killed_at = Instant::now();
    let done = task.wait(DEADLINE).await.unwrap();
    let recovered_in = killed_at.elapsed();
    assert_eq!(done.status, TaskStatus::Success, "{done:?}");
    assert_eq!(done.returning, Some(2), "ran again, in this process");
    assert_eq!(done.attempts, 2);
    assert_eq!(h.probe.runs(url, &key).await, 2);
    assert!(
        recovered_in < lease + Duration::from_secs(2),
        "{}: recovered after {recovered_in:?}, lease {lease:?}",
        h.backend
    );
    rescuer.shutdown().await.unwrap();
}

/// A worker frozen with SIGSTOP past its lease (`url` has a lease of about 800 ms): another
/// worker completes the task, and the frozen worker's late completion is rejected when it
/// resumes (or it finds its lease gone first and sends nothing); the rescuer's result stays.
pub(crate) async fn frozen_worker_is_fenced<T: TaskDef<Output = u64>, A: TaskDef<Output = i64>>(
    h: &Harness<T, A>,
    url: &str,
    name: &str,
) {
    let app = super::builder(name).broker_url(url).build().unwrap();
    let frozen = WorkerProcess::start(h.worker_env, url, name);
    let key = Uuid::new_v4().to_string();
    let mut starts = h.probe.listen(url, &key).await;
    // The first run ends while its worker is frozen (which lasts at least the lease), so the
    // worker sends its late completion as soon as it resumes. (A run still going when the
    // worker resumes is cancelled instead, once a renewal reports its lease lost.)
    let task = (h.tracked)(key.clone(), 500)
        .on(&app)
        .add_task()
        .await
        .unwrap();
    assert_eq!(starts.next().await, (frozen.pid(), 1));
    frozen.signal("-STOP");

    let rescuer = app.spawn_worker();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(2), "completed by the rescuer");

    frozen.signal("-CONT");
    let line = frozen.wait_for_any(&[
        "completion rejected",
        "not acknowledging a task stopped by a lost lease",
    ]);
    assert!(line.contains(&task.uuid.to_string()), "{line}");
    let after = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(after.status, TaskStatus::Success);
    assert_eq!(
        after.returning,
        Some(Payload::encode(&2u64).unwrap()),
        "the late result did not overwrite the rescuer's"
    );
    assert_eq!(h.probe.runs(url, &key).await, 2);
    rescuer.shutdown().await.unwrap();
}

/// Cancelling a task that runs in another worker process stops it there.
pub(crate) async fn cancel_reaches_a_worker_in_another_process<
    T: TaskDef<Output = u64>,
    A: TaskDef<Output = i64>,
>(
    h: &Harness<T, A>,
    url: &str,
    name: &str,
) {
    let app = super::builder(name).broker_url(url).build().unwrap();
    let _worker = WorkerProcess::start(h.worker_env, url, name);
    let key = Uuid::new_v4().to_string();
    let mut starts = h.probe.listen(url, &key).await;
    let task = (h.tracked)(key.clone(), 60_000)
        .on(&app)
        .add_task()
        .await
        .unwrap();
    starts.next().await;
    assert_eq!(
        app.cancel(task.uuid, "no longer needed").await.unwrap(),
        CancelOutcome::Running
    );
    let done = app.wait(task.uuid, DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.cancel_reason.as_deref(), Some("no longer needed"));
}

/// The server goes away and comes back while a producer enqueues 150 tasks and a worker runs
/// them: `outage` is called halfway and does it in a thread of its own (returning the server's
/// handle, kept until the end). Every failed enqueue fails within 5 s with an error naming the
/// backend, the producer retries with the same id (so nothing is enqueued twice), the worker
/// reconnects by itself, every acknowledged enqueue runs with its result, and afterwards an
/// idle worker is woken within 2 s (its wake-ups reconnected too). `url` should have a short
/// lease (a claim whose reply was lost is recovered when it expires).
pub(crate) async fn outage_under_load_loses_no_acknowledged_task<T, A, S>(
    h: &Harness<T, A>,
    url: &str,
    name: &str,
    outage: impl FnOnce() -> std::thread::JoinHandle<S>,
) where
    T: TaskDef<Output = u64>,
    A: TaskDef<Output = i64>,
    S: Send + 'static,
{
    let producer = super::builder(name).broker_url(url).build().unwrap();
    let worker_app = super::builder(name)
        .broker_url(url)
        .max_tasks_process(4)
        .build()
        .unwrap();
    let worker = worker_app.spawn_worker();
    let total = 150i64;
    let mut acknowledged = Vec::new();
    let mut failed_attempts = 0;
    let mut outage = Some(outage);
    let mut server = None;
    let started = Instant::now();
    for i in 0..total {
        if i == total / 2 {
            server = outage.take().map(|o| o());
        }
        let id = Uuid::new_v4();
        loop {
            assert!(started.elapsed() < DEADLINE * 3, "producer stuck");
            let at = Instant::now();
            match (h.add)(i, 1).id(id).on(&producer).add_task().await {
                Ok(task) => {
                    acknowledged.push((i, task));
                    break;
                }
                Err(e) => {
                    // Fails fast with a clear error while the server is away; the producer
                    // retries after a pause of its own.
                    assert!(at.elapsed() < Duration::from_secs(5), "{:?}", at.elapsed());
                    assert!(e.to_string().contains(h.backend), "{e}");
                    failed_attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    let server = server
        .expect("the outage happened")
        .join()
        .expect("the outage thread");
    for (i, task) in &acknowledged {
        let done = task.wait(DEADLINE * 2).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{done:?}");
        assert_eq!(done.returning, Some(i + 1));
    }
    assert_eq!(acknowledged.len(), total as usize);
    eprintln!(
        "{}: {failed_attempts} enqueue attempts failed during the outage",
        h.backend
    );
    let t = (h.add)(7, 7).on(&producer).add_task().await.unwrap();
    let at = Instant::now();
    assert_eq!(t.wait(DEADLINE).await.unwrap().returning, Some(14));
    assert!(at.elapsed() < Duration::from_secs(2), "{:?}", at.elapsed());
    worker.shutdown().await.unwrap();
    drop(server);
}

/// Producers fail fast, within 5 s, when the server at `unreachable_url` cannot be reached,
/// with an error that contains each of `says` (the server named, what to check).
pub(crate) async fn producer_fails_fast<T: TaskDef<Output = u64>, A: TaskDef<Output = i64>>(
    h: &Harness<T, A>,
    unreachable_url: &str,
    name: &str,
    says: &[&str],
) {
    let app = super::builder(name)
        .broker_url(unreachable_url)
        .build()
        .unwrap();
    let start = Instant::now();
    let err = (h.add)(1, 1)
        .on(&app)
        .add_task()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for s in says {
        assert!(err.contains(s), "{}: {err}", h.backend);
    }
}

/// A loopback port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
