//! Reliability of the Redis backend under faults (issue 5, item 5): worker killed with
//! SIGKILL, long task with a live worker, worker frozen with SIGSTOP, Redis restarted while
//! tasks flow, graceful shutdown, bad input, and a key census after the result TTL. The
//! scenarios every distributed backend shares (kill -9, SIGSTOP, restart, cross-process cancel,
//! producers without a server) are written once in `common/faults.rs`; this file gives them
//! the Redis way of counting and announcing runs.
//!
//! Redis is a private `redis-server` for this test binary (or `QTASKS_REDIS_URL`); the tests
//! skip without one unless `QTASKS_REQUIRE_REDIS=1`. Worker processes that get killed or
//! frozen are this test binary itself, re-executed to run only `worker_process_entry_point`
//! with `QTASKS_TEST_WORKER` set. Every wait is bounded; waits on another process's state
//! read its output or block on Redis lists, and only TTL expiry (which has no notification)
//! is polled, with a deadline.
#![cfg(feature = "redis")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qtasks::backend::NewTask;
use qtasks::prelude::*;
use qtasks::redis::redis::{self, AsyncCommands};
use qtasks::redis::{server, RedisBackend, RedisOptions};
use qtasks::Payload;
use uuid::Uuid;

use common::faults::{self, Harness};
use common::worker_process::raw_redis as raw;
use common::DEADLINE;
use futures::future::BoxFuture;

/// The environment variable that turns this binary into a worker process.
const WORKER_ENV: &str = "QTASKS_TEST_WORKER";

/// Counts its runs and announces each start (`pid:run` pushed to `test:started:{key}`); on its
/// first run it then sleeps `first_run_ms` (the run a fault interrupts), later runs return at once.
#[qtasks::task(echo)]
async fn tracked(task: AsyncTask, key: String, first_run_ms: u64) -> Result<u64, TaskError> {
    let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
    let mut conn = raw(&url).await;
    let runs: u64 = conn.incr(format!("test:runs:{key}"), 1).await?;
    let _: () = conn
        .rpush(
            format!("test:started:{key}"),
            format!("{}:{runs}", std::process::id()),
        )
        .await?;
    if runs == 1 {
        tokio::time::sleep(Duration::from_millis(first_run_ms)).await;
    }
    Ok(runs)
}

/// Announces its start, then blocks until the test pushes to `test:release:{key}`.
#[qtasks::task(echo)]
async fn gated(task: AsyncTask, key: String) -> Result<String, TaskError> {
    let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
    let mut conn = raw(&url).await;
    let _: () = conn.rpush(format!("test:started:{key}"), "1").await?;
    let (_, value): (String, String) = conn.blpop(format!("test:release:{key}"), 0.0).await?;
    Ok(value)
}

/// Fails on its first attempt, succeeds on the second.
#[qtasks::task(echo, retry = 2)]
async fn flaky(task: AsyncTask) -> Result<u32, TaskError> {
    if task.ctx.attempt() == 1 {
        return Err(TaskError::msg("first attempt fails"));
    }
    Ok(task.ctx.attempt())
}

/// Always fails.
#[qtasks::task]
async fn broken() -> Result<u32, TaskError> {
    Err(TaskError::msg("broken on purpose"))
}

/// Adds two numbers; retries would be allowed, but bad input is never retried.
#[qtasks::task(retry = 3)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// When `QTASKS_TEST_WORKER=url\napp` is set, this runs a worker until the process is killed
/// (the reliability tests start this binary as a worker process); otherwise it does nothing.
#[test]
fn worker_process_entry_point() {
    common::worker_process::run_worker_if_asked(WORKER_ENV, |builder| builder);
}

/// A unique app name for one test.
fn app_name(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "rel-{test}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Blocks until the task behind `key` announces a start; returns `(pid, run)`.
async fn next_start(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> (u32, u64) {
    let popped: Option<(String, String)> = conn
        .blpop(format!("test:started:{key}"), DEADLINE.as_secs_f64())
        .await
        .unwrap();
    let (_, value) = popped.unwrap_or_else(|| panic!("task {key} never started"));
    let (pid, run) = value.split_once(':').unwrap_or((&value, "0"));
    (pid.parse().unwrap_or(0), run.parse().unwrap_or(0))
}

async fn runs(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let runs: Option<u64> = conn.get(format!("test:runs:{key}")).await.unwrap();
    runs.unwrap_or(0)
}

/// How these tests see `tracked`'s runs: a counter key, starts pushed to a list (BLPOP).
struct RedisProbe;

struct RedisStarts {
    conn: redis::aio::MultiplexedConnection,
    key: String,
}

impl faults::Starts for RedisStarts {
    fn next(&mut self) -> BoxFuture<'_, (u32, u64)> {
        Box::pin(next_start(&mut self.conn, &self.key))
    }
}

impl faults::Probe for RedisProbe {
    fn listen<'a>(&'a self, url: &'a str, key: &'a str) -> BoxFuture<'a, Box<dyn faults::Starts>> {
        Box::pin(async move {
            Box::new(RedisStarts {
                conn: raw(url).await,
                key: key.to_string(),
            }) as Box<_>
        })
    }

    fn runs<'a>(&'a self, url: &'a str, key: &'a str) -> BoxFuture<'a, u64> {
        Box::pin(async move { runs(&mut raw(url).await, key).await })
    }
}

/// The shared fault scenarios (`common::faults`) on Redis.
const HARNESS: Harness<tracked, add> = Harness {
    backend: "Redis",
    worker_env: WORKER_ENV,
    tracked: |key, ms| tracked.call(key, ms),
    add: |a, b| add.call(a, b),
    probe: &RedisProbe,
};

/// (a) A worker killed with SIGKILL mid-task: the task runs again on another worker within
/// the lease (plus the time until an idle worker looks, which is the lease deadline itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_task_runs_again_elsewhere() {
    let Some(base) = server::test_url() else {
        return;
    };
    let lease = Duration::from_millis(1000);
    let url = format!("{base}?lease_ms={}", lease.as_millis());
    faults::killed_worker_task_runs_again_elsewhere(&HARNESS, &url, lease, &app_name("kill9"))
        .await;
}

/// (b) A task running several lease lengths on a live worker is never run twice, even with
/// another idle worker waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_task_with_live_worker_runs_once() {
    let Some(base) = server::test_url() else {
        return;
    };
    let url = format!("{base}?lease_ms=300");
    let name = app_name("long");
    let first = common::builder(&name).broker_url(&url).build().unwrap();
    let second = common::builder(&name).broker_url(&url).build().unwrap();
    let mut conn = raw(&url).await;
    let w1 = first.spawn_worker();
    let key = Uuid::new_v4().to_string();
    // Six lease lengths.
    let task = tracked
        .call(key.clone(), 1800)
        .on(&first)
        .add_task()
        .await
        .unwrap();
    next_start(&mut conn, &key).await;
    let w2 = second.spawn_worker();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(1));
    assert_eq!(done.attempts, 1);
    assert_eq!(runs(&mut conn, &key).await, 1);
    w1.shutdown().await.unwrap();
    w2.shutdown().await.unwrap();
}

/// (c) A worker frozen with SIGSTOP past its lease: another worker completes the task, and
/// the frozen worker's late completion is rejected when it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced() {
    let Some(base) = server::test_url() else {
        return;
    };
    let url = format!("{base}?lease_ms=800");
    faults::frozen_worker_is_fenced(&HARNESS, &url, &app_name("sigstop")).await;
}

/// (d) Redis restarted while tasks flow: workers and producers recover without a restart of
/// their own, and every acknowledged enqueue completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_no_acknowledged_task() {
    // This test stops its server, so it has one of its own.
    let mut redis_server = match server::RedisServer::start() {
        Ok(server) => server,
        Err(e) if std::env::var("QTASKS_REQUIRE_REDIS").as_deref() != Ok("1") => {
            eprintln!("skipping: cannot start a redis-server of this test's own: {e}");
            return;
        }
        Err(e) => panic!("QTASKS_REQUIRE_REDIS=1 but redis-server cannot be started: {e}"),
    };
    // A claim whose reply is lost in the restart is recovered when its lease expires.
    let url = format!("{}?lease_ms=1000", redis_server.url());
    faults::outage_under_load_loses_no_acknowledged_task(
        &HARNESS,
        &url,
        &app_name("restart"),
        move || {
            // Restarted in the background while the producer keeps going.
            std::thread::spawn(move || {
                redis_server.restart().unwrap();
                redis_server
            })
        },
    )
    .await;
}

/// (e) Graceful shutdown: prefetched tasks return to the queue at once, running ones finish
/// within the grace period, the rest are requeued without counting the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_returns_work_uncounted() {
    let Some(url) = server::test_url() else {
        return;
    };
    let name = app_name("graceful");
    let app = common::builder(&name)
        .broker_url(&url)
        .max_tasks_process(2)
        .prefetch(2)
        .grace_period(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut conn = raw(&url).await;
    let finishes = Uuid::new_v4().to_string();
    let overruns = Uuid::new_v4().to_string();
    let prefetched: Vec<String> = (0..2).map(|_| Uuid::new_v4().to_string()).collect();
    // One batch, so the two gated tasks take the two lanes and the others wait prefetched.
    let backend = RedisBackend::new(&url, &name, app.config(), RedisOptions::default()).unwrap();
    let mut tasks = Vec::new();
    for (task_name, args) in [
        ("gated", Payload::encode(&(finishes.clone(),)).unwrap()),
        ("gated", Payload::encode(&(overruns.clone(),)).unwrap()),
        (
            "tracked",
            Payload::encode(&(prefetched[0].clone(), 0u64)).unwrap(),
        ),
        (
            "tracked",
            Payload::encode(&(prefetched[1].clone(), 0u64)).unwrap(),
        ),
    ] {
        tasks.push(NewTask {
            uuid: Uuid::new_v4(),
            task_name: task_name.into(),
            priority: 0,
            args,
            created_at: std::time::SystemTime::now(),
            not_before: None,
            trace: None,
            flow: None,
        });
    }
    qtasks::backend::Broker::enqueue(&*backend, &tasks)
        .await
        .unwrap();
    let worker = app.spawn_worker();
    for key in [&finishes, &overruns] {
        let popped: Option<(String, String)> = conn
            .blpop(format!("test:started:{key}"), DEADLINE.as_secs_f64())
            .await
            .unwrap();
        assert!(popped.is_some(), "gated task {key} never started");
    }
    for t in &tasks[2..] {
        assert_eq!(
            app.get(t.uuid).await.unwrap().unwrap().status,
            TaskStatus::Process,
            "claimed ahead (prefetched)"
        );
    }

    worker.signal_shutdown();
    // Prefetched tasks are back in the queue while the running ones still run. Record state has
    // no notification: poll with a deadline.
    let start = Instant::now();
    loop {
        let mut back = 0;
        for t in &tasks[2..] {
            let record = app.get(t.uuid).await.unwrap().unwrap();
            if record.status == TaskStatus::New {
                assert_eq!(record.attempts, 0);
                back += 1;
            }
        }
        if back == 2 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "prefetched tasks not returned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.get(tasks[0].uuid).await.unwrap().unwrap().status,
        TaskStatus::Process
    );
    let _: () = conn
        .rpush(format!("test:release:{finishes}"), "released")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, worker.shutdown())
        .await
        .expect("shutdown within the grace period")
        .unwrap();

    let finished = app.get(tasks[0].uuid).await.unwrap().unwrap();
    assert_eq!(finished.status, TaskStatus::Success);
    assert_eq!(
        finished.returning,
        Some(Payload::encode(&"released").unwrap())
    );
    let overran = app.get(tasks[1].uuid).await.unwrap().unwrap();
    assert_eq!(
        overran.status,
        TaskStatus::New,
        "requeued after the grace period"
    );
    assert_eq!(
        overran.attempts, 0,
        "the interrupted attempt is not counted"
    );
    for (t, key) in tasks[2..].iter().zip(&prefetched) {
        assert_eq!(
            app.get(t.uuid).await.unwrap().unwrap().status,
            TaskStatus::New
        );
        assert_eq!(runs(&mut conn, key).await, 0, "prefetched tasks never ran");
    }
    let stats = qtasks::backend::Broker::stats(&*backend).await.unwrap();
    assert_eq!(stats.ready_by_priority.get(&0), Some(&3), "{stats:?}");
    assert_eq!(stats.running, 0);
}

/// (f) A malformed payload and an unknown task end in the dead-letter with a typed reason and
/// the raw payload, are not retried, and the worker keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_goes_to_the_dead_letter() {
    let Some(url) = server::test_url() else {
        return;
    };
    let name = app_name("dead");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let backend = RedisBackend::new(&url, &name, app.config(), RedisOptions::default()).unwrap();
    let worker = app.spawn_worker();

    // Arguments that do not fit `add(a: i64, b: i64)` (which has `retry = 3`), written by a
    // producer that does not check them (`app.add_task` refuses them at enqueue).
    assert!(app
        .add_task("add", serde_json::json!({"a": "two"}))
        .await
        .is_err());
    let wrong = NewTask {
        uuid: Uuid::new_v4(),
        task_name: "add".into(),
        priority: 0,
        args: Payload::encode(&serde_json::json!({"a": "two"})).unwrap(),
        created_at: std::time::SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    };
    qtasks::backend::Broker::enqueue(&*backend, std::slice::from_ref(&wrong))
        .await
        .unwrap();
    // A task no worker knows, with bytes that are not MessagePack at all.
    let garbage = Payload::from_bytes(vec![0xc1, 0xde, 0xad]);
    let unknown = NewTask {
        uuid: Uuid::new_v4(),
        task_name: "no.such.task".into(),
        priority: 0,
        args: garbage.clone(),
        created_at: std::time::SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    };
    qtasks::backend::Broker::enqueue(&*backend, std::slice::from_ref(&unknown))
        .await
        .unwrap();

    let wrong_done = app.wait(wrong.uuid, DEADLINE).await.unwrap();
    assert_eq!(wrong_done.status, TaskStatus::Error);
    assert_eq!(wrong_done.attempts, 1, "never retried");
    assert!(
        wrong_done
            .traceback
            .as_deref()
            .unwrap_or("")
            .contains("bad arguments"),
        "{wrong_done:?}"
    );
    let unknown_done = app.wait(unknown.uuid, DEADLINE).await.unwrap();
    assert_eq!(unknown_done.status, TaskStatus::Error);
    assert_eq!(unknown_done.attempts, 1);

    let dead = backend.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let by_uuid = |u: Uuid| dead.iter().find(|t| t.uuid == u).expect("dead-lettered");
    let d_unknown = by_uuid(unknown.uuid);
    assert_eq!(
        d_unknown.extra.get("dead_letter").map(String::as_str),
        Some("unknown_task")
    );
    assert_eq!(d_unknown.args, garbage, "raw payload kept");
    assert!(d_unknown
        .traceback
        .as_deref()
        .unwrap_or("")
        .contains("no.such.task"));
    let d_wrong = by_uuid(wrong.uuid);
    assert_eq!(
        d_wrong.extra.get("dead_letter").map(String::as_str),
        Some("bad_arguments")
    );
    assert_eq!(d_wrong.args, wrong.args);

    // The worker is still running.
    let ok = add.call(2, 3).on(&app).add_task().await.unwrap();
    assert_eq!(ok.wait(DEADLINE).await.unwrap().returning, Some(5));
    worker.shutdown().await.unwrap();
}

/// (g) Once the result TTL has passed, no key of the finished tasks remains: a census of every
/// key of the app finds only the fixed bookkeeping keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_remains_after_the_result_ttl() {
    let Some(url) = server::test_url() else {
        return;
    };
    let name = app_name("census");
    let app = common::builder(&name)
        .broker_url(&url)
        .result_ttl(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut conn = raw(&url).await;
    let worker = app.spawn_worker();
    let mut uuids = Vec::new();
    let ok = add.call(1, 2).on(&app).add_task().await.unwrap();
    uuids.push(ok.uuid);
    let failed = broken.call().on(&app).add_task().await.unwrap();
    uuids.push(failed.uuid);
    let retried = flaky.call().on(&app).add_task().await.unwrap();
    uuids.push(retried.uuid);
    assert_eq!(ok.wait(DEADLINE).await.unwrap().returning, Some(3));
    assert_eq!(
        failed.wait(DEADLINE).await.unwrap().status,
        TaskStatus::Error
    );
    assert_eq!(retried.wait(DEADLINE).await.unwrap().returning, Some(2));
    worker.shutdown().await.unwrap();
    // Cancelled while queued (no worker now).
    let cancelled = add.call(5, 5).on(&app).add_task().await.unwrap();
    uuids.push(cancelled.uuid);
    assert_eq!(
        app.cancel(cancelled.uuid, "census").await.unwrap(),
        CancelOutcome::Cancelled
    );

    let pattern = format!("{{{name}}}:*");
    let census = |mut conn: redis::aio::MultiplexedConnection| {
        let pattern = pattern.clone();
        async move {
            let mut keys: Vec<String> = Vec::new();
            let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await.unwrap();
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key.unwrap());
            }
            keys.sort();
            keys
        }
    };
    let fixed = [format!("{{{name}}}:tok"), format!("{{{name}}}:wake")];
    // Expiry has no notification: poll the census with a deadline.
    let start = Instant::now();
    loop {
        let keys = census(conn.clone()).await;
        let leftover: Vec<_> = keys.iter().filter(|k| !fixed.contains(k)).collect();
        if leftover.is_empty() {
            for uuid in &uuids {
                assert!(!keys.iter().any(|k| k.contains(&uuid.to_string())));
                assert!(app.get(*uuid).await.unwrap().is_none());
            }
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "keys left after the result TTL: {leftover:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = conn.del(format!("{{{name}}}:tok")).await.unwrap();
}

/// Workers announce themselves: `app.ping()` is true while one runs, false after it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_sees_live_workers() {
    let Some(url) = server::test_url() else {
        return;
    };
    let name = app_name("ping");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    assert!(!app.ping().await.unwrap());
    let worker = app.spawn_worker();
    // The first heartbeat is sent as the worker starts; it has no notification: poll.
    let start = Instant::now();
    while !app.ping().await.unwrap() {
        assert!(start.elapsed() < DEADLINE, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live = app.backend().global_config.live_workers().await.unwrap();
    assert_eq!(live, vec![worker.id().to_string()]);
    worker.shutdown().await.unwrap();
    assert!(!app.ping().await.unwrap(), "a stopped worker is not live");
}

/// Cancelling a task that runs in another worker process stops it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_worker_in_another_process() {
    let Some(url) = server::test_url() else {
        return;
    };
    faults::cancel_reaches_a_worker_in_another_process(&HARNESS, &url, &app_name("cancel")).await;
}

/// Producers fail fast with an error naming Redis when the server is unreachable.
#[tokio::test]
async fn producer_fails_fast_without_redis() {
    let url = format!("redis://127.0.0.1:{}/0", faults::closed_port());
    faults::producer_fails_fast(
        &HARNESS,
        &url,
        &app_name("down"),
        &["Redis at redis://127.0.0.1", "redis-server is running"],
    )
    .await;
}
