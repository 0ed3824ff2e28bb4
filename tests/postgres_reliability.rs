//! Reliability of the PostgreSQL backend under faults (issue 18, item 4): a worker killed with
//! SIGKILL mid-task, a worker frozen with SIGSTOP past its lease, bad rows among good ones, a
//! task that crashes every worker that runs it, lost PostgreSQL connections, and PostgreSQL
//! crashing and restarting under load.
//!
//! The connection loss is made with `pg_terminate_backend` on every connection of the app
//! (found by its `application_name`) from a separate connection: the system PostgreSQL is shared
//! with other tests and engineers, so it is not restarted; the crash and restart happen on a
//! private server of that test's own (`qtasks_postgres::server`, a fresh `initdb` cluster).
//! The scenarios every distributed backend shares (kill -9, SIGSTOP, the server crashing and
//! restarting under load, cross-process cancel, producers without a server) are written once
//! in `common/faults.rs`; this file gives them the PostgreSQL way of counting and announcing
//! runs, and has the scenarios of its own (bad rows, crash loop, terminated connections). Worker processes that get
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
use qtasks::postgres::server::PostgresServer;
use qtasks::postgres::PostgresBackend;
use qtasks::prelude::*;
use qtasks::Payload;
use uuid::Uuid;

use common::faults::{self, Harness};
use common::postgres::{announce_run, connect, runs, schema_of, test_url, Starts};
use common::worker_process::WorkerProcess;
use common::DEADLINE;
use futures::future::BoxFuture;

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

/// How these tests see `tracked`'s runs: a count in the schema's `test_runs` table, starts
/// announced with NOTIFY (`common::postgres`).
struct PgProbe;

struct PgStarts(Starts);

impl faults::Starts for PgStarts {
    fn next(&mut self) -> BoxFuture<'_, (u32, u64)> {
        Box::pin(self.0.next())
    }
}

impl faults::Probe for PgProbe {
    fn listen<'a>(&'a self, url: &'a str, key: &'a str) -> BoxFuture<'a, Box<dyn faults::Starts>> {
        Box::pin(async move { Box::new(PgStarts(Starts::listen(url, key).await)) as Box<_> })
    }

    fn runs<'a>(&'a self, url: &'a str, key: &'a str) -> BoxFuture<'a, u64> {
        Box::pin(runs(url, key))
    }
}

/// The shared fault scenarios (`common::faults`) on PostgreSQL.
const HARNESS: Harness<tracked, add> = Harness {
    backend: "PostgreSQL",
    worker_env: WORKER_ENV,
    tracked: |key, ms| tracked.call(key, ms),
    add: |a, b| add.call(a, b),
    probe: &PgProbe,
};

/// A SIGKILLed worker's task runs again on another worker, within the lease plus a little, and
/// its run is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_task_runs_again_elsewhere() {
    let Some(base) = test_url("rel").await else {
        return;
    };
    let lease = Duration::from_millis(1000);
    let url = format!("{base}&lease_ms={}", lease.as_millis());
    faults::killed_worker_task_runs_again_elsewhere(&HARNESS, &url, lease, &app_name("kill9"))
        .await;
}

/// A worker frozen with SIGSTOP past its lease: another worker completes the task, and the
/// frozen worker's late completion is rejected when it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced() {
    let Some(base) = test_url("rel").await else {
        return;
    };
    let url = format!("{base}&lease_ms=800");
    faults::frozen_worker_is_fenced(&HARNESS, &url, &app_name("sigstop")).await;
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
        flow: None,
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

/// A private PostgreSQL server for a test that stops it (`None`: skip, unless
/// `QTASKS_REQUIRE_POSTGRES=1`, where the binaries must be there).
fn private_server() -> Option<PostgresServer> {
    match PostgresServer::start() {
        Ok(server) => Some(server),
        Err(e) => {
            let required = std::env::var("QTASKS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "QTASKS_REQUIRE_POSTGRES=1 but no private PostgreSQL server can be started: {e}"
            );
            eprintln!("skipping: no private PostgreSQL server can be started: {e}");
            None
        }
    }
}

/// PostgreSQL itself crashes (SIGQUIT: no shutdown checkpoint, and the WAL not yet written is
/// lost, which with the asynchronous commits of claims, starts and acknowledgements is only
/// progress) and restarts while a producer enqueues and a worker runs tasks: the producer gets
/// a clear error at once while the server is down, the worker reconnects by itself (its pool
/// and its listening connection), and every acknowledged enqueue runs and is stored. On a
/// private server of this test's own (the shared one is not restarted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_and_restart_under_load_loses_no_acknowledged_task() {
    let Some(mut server) = private_server() else {
        return;
    };
    let url = format!("{}?schema=qtasks_restart&lease_ms=1000", server.url());
    faults::outage_under_load_loses_no_acknowledged_task(
        &HARNESS,
        &url,
        &app_name("restart"),
        move || {
            std::thread::spawn(move || {
                server.crash().unwrap();
                server.launch().unwrap();
                server
            })
        },
    )
    .await;
}

/// Cancelling a task that runs in another worker process stops it there (NOTIFY on the app's
/// cancel channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_worker_in_another_process() {
    let Some(url) = test_url("rel").await else {
        return;
    };
    faults::cancel_reaches_a_worker_in_another_process(&HARNESS, &url, &app_name("cancel")).await;
}

/// Producers fail fast with an error naming PostgreSQL and what to check when the server is
/// unreachable.
#[tokio::test]
async fn producer_fails_fast_without_postgres() {
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test",
        faults::closed_port()
    );
    faults::producer_fails_fast(
        &HARNESS,
        &url,
        &app_name("down"),
        &[
            "cannot reach PostgreSQL at postgres://***@127.0.0.1",
            "Check that the server runs",
        ],
    )
    .await;
}
