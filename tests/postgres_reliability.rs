//! Reliability of the PostgreSQL backend under faults (issue 18, item 4): a worker killed with
//! SIGKILL mid-task, a worker frozen with SIGSTOP past its lease, bad rows among good ones, a
//! task that crashes every worker that runs it, and lost PostgreSQL connections.
//!
//! The connection loss is made with `pg_terminate_backend` on every connection of the app
//! (found by its `application_name`) from a separate connection: the system PostgreSQL is shared
//! with other tests and engineers, so it is not restarted here. Worker processes that get
//! killed, frozen or crashed are this test binary itself, re-executed to run only
//! `worker_process_entry_point` with `QTASKS_TEST_PG_WORKER` set. Every wait is bounded and waits
//! on a result or a notification (task starts are announced with NOTIFY), never a sleep.
//!
//! Runs against the test PostgreSQL server (`QTASKS_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) on a schema of this binary's own; skips when the
//! server is unreachable unless `QTASKS_REQUIRE_POSTGRES=1`.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qtasks::backend::{Broker, NewTask};
use qtasks::postgres::PostgresBackend;
use qtasks::prelude::*;
use qtasks::Payload;
use uuid::Uuid;

use common::postgres::{announce_run, connect, runs, schema_of, test_url, Starts};
use common::worker_process::WorkerProcess;
use common::DEADLINE;

/// The environment variable that turns this binary into a worker process.
const WORKER_ENV: &str = "QTASKS_TEST_PG_WORKER";

/// Counts its runs and announces each start; on its first run it then sleeps `first_run_ms`
/// (the run a fault interrupts), later runs return at once.
#[qtasks::task(echo)]
async fn tracked(task: AsyncTask, key: String, first_run_ms: u64) -> Result<u64, TaskError> {
    let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
    let run = announce_run(&url, &key).await?;
    if run == 1 {
        tokio::time::sleep(Duration::from_millis(first_run_ms)).await;
    }
    Ok(run)
}

/// Announces its start, then aborts the worker process that runs it (every time).
#[qtasks::task(echo)]
async fn crasher(task: AsyncTask, key: String) -> Result<u64, TaskError> {
    let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
    let run = announce_run(&url, &key).await?;
    if std::env::var(WORKER_ENV).is_ok() {
        std::process::abort();
    }
    Ok(run)
}

/// Adds two numbers; retries would be allowed, but bad input is never retried.
#[qtasks::task(retry = 3)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// When `QTASKS_TEST_PG_WORKER=url\napp` is set, this runs a worker until the process is
/// killed (the reliability tests start this binary as a worker process); otherwise it does
/// nothing.
#[test]
fn worker_process_entry_point() {
    common::worker_process::run_worker_if_asked(WORKER_ENV, |builder| builder);
}

/// A unique app name for one test.
fn app_name(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("rel-{test}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A SIGKILLed worker's task runs again on another worker, within the lease plus a little, and
/// its run is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_task_runs_again_elsewhere() {
    let Some(base) = test_url("rel").await else {
        return;
    };
    let lease = Duration::from_millis(1000);
    let url = format!("{base}&lease_ms={}", lease.as_millis());
    let name = app_name("kill9");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let mut victim = WorkerProcess::start(WORKER_ENV, &url, &name);
    let key = Uuid::new_v4().to_string();
    let mut starts = Starts::listen(&url, &key).await;
    let task = tracked
        .call(key.clone(), 60_000)
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
    assert_eq!(runs(&url, &key).await, 2);
    assert!(
        recovered_in < lease + Duration::from_secs(2),
        "recovered after {recovered_in:?}, lease {lease:?}"
    );
    rescuer.shutdown().await.unwrap();
}

/// A worker frozen with SIGSTOP past its lease: another worker completes the task, and the
/// frozen worker's late completion is rejected when it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced() {
    let Some(base) = test_url("rel").await else {
        return;
    };
    let url = format!("{base}&lease_ms=800");
    let name = app_name("sigstop");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let frozen = WorkerProcess::start(WORKER_ENV, &url, &name);
    let key = Uuid::new_v4().to_string();
    let mut starts = Starts::listen(&url, &key).await;
    // The first run ends while its worker is frozen (which lasts at least the lease), so the
    // worker sends its late completion as soon as it resumes.
    let task = tracked
        .call(key.clone(), 500)
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
    assert_eq!(runs(&url, &key).await, 2);
    rescuer.shutdown().await.unwrap();
}

/// Bad rows among good ones: rows without a name or without arguments (written by hand),
/// arguments that do not fit, and an unknown task name end in the dead-letter with their
/// reason and raw arguments; the good tasks around them all run, and the worker keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_harm_no_neighbour() {
    let Some(url) = test_url("rel").await else {
        return;
    };
    let schema = schema_of(&url);
    let name = app_name("bad");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let backend = PostgresBackend::from_url(&url, &name, app.config()).unwrap();
    backend.migrate().await.unwrap();
    let new_task = |task_name: &'static str, args: Payload| NewTask {
        uuid: Uuid::new_v4(),
        task_name: task_name.into(),
        priority: 0,
        args,
        created_at: std::time::SystemTime::now(),
        not_before: None,
        trace: None,
    };
    let good = |i: i64| new_task("add", Payload::encode(&(i, 1)).unwrap());
    let wrong_args = new_task(
        "add",
        Payload::encode(&serde_json::json!({"a": "two"})).unwrap(),
    );
    let garbage = Payload::from_bytes(vec![0xc1, 0xde, 0xad]);
    let unknown = new_task("no.such.task", garbage.clone());
    let batch = vec![
        good(0),
        wrong_args.clone(),
        good(1),
        unknown.clone(),
        good(2),
    ];
    backend.enqueue(&batch).await.unwrap();
    // Rows no producer of ours writes: no arguments, and no name.
    let client = connect(&url).await;
    let (no_args, no_name) = (Uuid::new_v4(), Uuid::new_v4());
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.tasks (app, uuid, name, args) VALUES ($1, $2, 'add', NULL), ($1, $3, NULL, '\\x92'::bytea)"
            ),
            &[&name, &no_args, &no_name],
        )
        .await
        .unwrap();
    let after = [good(3), good(4)];
    backend.enqueue(&after).await.unwrap();

    let worker = app.spawn_worker();
    for (i, t) in [&batch[0], &batch[2], &batch[4], &after[0], &after[1]]
        .into_iter()
        .enumerate()
    {
        let done = app.wait(t.uuid, DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{done:?}");
        assert_eq!(
            done.returning,
            Some(Payload::encode(&(i as i64 + 1)).unwrap())
        );
    }
    for uuid in [wrong_args.uuid, unknown.uuid, no_args, no_name] {
        let done = app.wait(uuid, DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Error, "{done:?}");
        assert!(done.attempts <= 1, "never retried: {done:?}");
    }
    let dead = backend.dead_letters(10).await.unwrap();
    let reason = |u: Uuid| {
        dead.iter()
            .find(|t| t.uuid == u)
            .and_then(|t| t.extra.get("dead_letter").cloned())
            .unwrap_or_else(|| panic!("{u} not in the dead-letter: {dead:?}"))
    };
    assert_eq!(reason(wrong_args.uuid), "bad_arguments");
    assert_eq!(reason(unknown.uuid), "unknown_task");
    assert_eq!(reason(no_args), "malformed_record");
    assert_eq!(reason(no_name), "malformed_record");
    let kept = dead.iter().find(|t| t.uuid == unknown.uuid).unwrap();
    assert_eq!(kept.args, garbage, "raw arguments kept");
    let tb = |u: Uuid| {
        dead.iter()
            .find(|t| t.uuid == u)
            .and_then(|t| t.traceback.clone())
            .unwrap_or_default()
    };
    assert!(tb(no_args).contains("arguments (args)"), "{}", tb(no_args));
    assert!(tb(no_name).contains("task name (name)"), "{}", tb(no_name));
    assert_eq!(dead.len(), 4, "{dead:?}");

    // The worker is still running.
    let ok = add.call(2, 3).on(&app).add_task().await.unwrap();
    assert_eq!(ok.wait(DEADLINE).await.unwrap().returning, Some(5));
    worker.shutdown().await.unwrap();
}

/// A task that crashes every worker that runs it runs `max_deliveries + 1` times, each on a
/// worker of its own, then goes to the dead-letter as `crashed_worker`; the last worker goes on
/// with other work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_task_ends_in_the_dead_letter() {
    let Some(base) = test_url("rel").await else {
        return;
    };
    let url = format!("{base}&lease_ms=500&max_deliveries=2");
    let name = app_name("crashloop");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let backend = PostgresBackend::from_url(&url, &name, app.config()).unwrap();
    let key = Uuid::new_v4().to_string();
    let mut starts = Starts::listen(&url, &key).await;
    let task = crasher.call(key.clone()).on(&app).add_task().await.unwrap();
    for round in 1..=3u64 {
        let worker = WorkerProcess::start(WORKER_ENV, &url, &name);
        let (pid, run) = starts.next().await;
        assert_eq!((pid, run), (worker.pid(), round));
        // The task aborts the process: wait for its end (blocking, off the runtime).
        let mut worker = tokio::task::spawn_blocking(move || {
            let mut worker = worker;
            let _ = worker.child.wait();
            worker
        })
        .await
        .unwrap();
        worker.kill9();
    }
    let survivor = WorkerProcess::start(WORKER_ENV, &url, &name);
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error, "{done:?}");
    assert_eq!(
        done.extra.get("dead_letter").map(String::as_str),
        Some("crashed_worker")
    );
    let tb = done.traceback.clone().unwrap_or_default();
    assert!(tb.contains("max_deliveries 2"), "{tb}");
    assert_eq!(runs(&url, &key).await, 3, "ran max_deliveries + 1 times");
    assert!(
        starts
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "never runs again"
    );
    let dead = backend.dead_letters(10).await.unwrap();
    assert!(dead.iter().any(|t| t.uuid == task.uuid), "{dead:?}");
    let ok = add.call(2, 3).on(&app).add_task().await.unwrap();
    assert_eq!(ok.wait(DEADLINE).await.unwrap().returning, Some(5));
    drop(survivor);
}

/// Every connection of the app terminated (`pg_terminate_backend`) while tasks flow: the
/// worker reconnects by itself (its pool and its listening connection), producers get a clear
/// error naming PostgreSQL and retry with the same id, and every acknowledged enqueue runs
/// exactly as asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_lose_no_acknowledged_task() {
    let Some(base) = test_url("rel").await else {
        return;
    };
    let name = app_name("terminate");
    let url = format!(
        "{base}&lease_ms=1000&application_name=qtasks_{}",
        name.replace('-', "_")
    );
    let producer = common::builder(&name).broker_url(&url).build().unwrap();
    let worker_app = common::builder(&name)
        .broker_url(&url)
        .max_tasks_process(4)
        .build()
        .unwrap();
    let worker = worker_app.spawn_worker();
    let admin = connect(&url).await;
    let terminate = || async {
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&format!("qtasks_{}", name.replace('-', "_"))],
            )
            .await
            .unwrap();
        rows.len()
    };
    let total = 120i64;
    let mut acknowledged = Vec::new();
    let mut failed_attempts = 0;
    let mut terminated = 0;
    let started = Instant::now();
    for i in 0..total {
        if i == total / 3 || i == 2 * total / 3 {
            terminated += terminate().await;
        }
        let id = Uuid::new_v4();
        loop {
            assert!(started.elapsed() < DEADLINE * 3, "producer stuck");
            match add.call(i, 1).id(id).on(&producer).add_task().await {
                Ok(task) => {
                    acknowledged.push((i, task));
                    break;
                }
                Err(e) => {
                    assert!(e.to_string().contains("PostgreSQL"), "{e}");
                    failed_attempts += 1;
                }
            }
        }
    }
    assert!(
        terminated > 0,
        "the app's connections were found and terminated"
    );
    for (i, task) in &acknowledged {
        let done = task.wait(DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{done:?}");
        assert_eq!(done.returning, Some(i + 1));
    }
    assert_eq!(acknowledged.len(), total as usize);
    eprintln!(
        "terminated {terminated} connections; {failed_attempts} enqueue attempts failed meanwhile"
    );
    // After the losses, an idle worker is still woken promptly (the listener reconnected).
    let t = add.call(7, 7).on(&producer).add_task().await.unwrap();
    let at = Instant::now();
    assert_eq!(t.wait(DEADLINE).await.unwrap().returning, Some(14));
    assert!(at.elapsed() < Duration::from_secs(2), "{:?}", at.elapsed());
    worker.shutdown().await.unwrap();
}

/// Cancelling a task that runs in another worker process stops it there (NOTIFY on the app's
/// cancel channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_worker_in_another_process() {
    let Some(url) = test_url("rel").await else {
        return;
    };
    let name = app_name("cancel");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let _worker = WorkerProcess::start(WORKER_ENV, &url, &name);
    let key = Uuid::new_v4().to_string();
    let mut starts = Starts::listen(&url, &key).await;
    let task = tracked
        .call(key.clone(), 60_000)
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

/// Producers fail fast with an error naming PostgreSQL and what to check when the server is
/// unreachable.
#[tokio::test]
async fn producer_fails_fast_without_postgres() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = common::builder(&app_name("down"))
        .broker_url(format!("postgres://postgres@127.0.0.1:{port}/test"))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = add.call(1, 1).on(&app).add_task().await.unwrap_err();
    let err = err.to_string();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains("cannot reach PostgreSQL at postgres://***@127.0.0.1"),
        "{err}"
    );
    assert!(err.contains("Check that the server runs"), "{err}");
}
