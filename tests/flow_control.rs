//! Flow control end to end (issue 16): unique tasks, debounce, concurrency and rate limits and
//! `rate_limited`, declared with the attribute and run by real workers, on the memory backend
//! and on Redis; and across processes on Redis: 10,000 concurrent enqueues of one unique key
//! from 4 processes, a rate limit and a concurrency limit held by 3 worker processes together,
//! and a worker killed with SIGKILL giving its slot and unique key back within the lease.
//!
//! Redis is a private `redis-server` for this test binary (or `QTASKS_REDIS_URL`); the Redis
//! tests skip without one unless `QTASKS_REQUIRE_REDIS=1`. Other processes are this test
//! binary itself, re-executed to run only `worker_process_entry_point` (a worker) or
//! `producer_process_entry_point` (an enqueuer). Waits are on results, on Redis lists (BLPOP)
//! or on the other processes' output, each with a deadline.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use qtasks::prelude::*;

use common::DEADLINE;

/// Charges an order once: while a charge of the order is queued or running, another enqueue
/// returns it.
#[qtasks::task(unique = [order_id])]
async fn charge(order_id: u64, amount: u64) -> u64 {
    let _ = order_id;
    amount
}

/// Reindexes after a burst of edits: runs once, 300 ms after the last call, with its
/// arguments.
#[qtasks::task(debounce = 0.3)]
async fn reindex(what: String) -> String {
    what
}

/// Sends a digest at most once a minute per user: the calls within the minute are dropped.
#[qtasks::task(unique = [user], throttle = 60.0)]
async fn digest(user: u64) -> u64 {
    user
}

/// How many `narrow` tasks run in this process now, and the most seen at once.
static RUNNING: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

/// At most 3 at once across every worker; counts how many run at once (in this process, or,
/// on Redis, across processes in `test:running:{key}` and `test:peak:{key}`).
#[qtasks::task(echo, concurrency = 3)]
async fn narrow(task: AsyncTask, key: String, ms: u64) -> Result<u32, TaskError> {
    let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
    if url.starts_with("redis") {
        #[cfg(feature = "redis")]
        {
            let mut conn = common::worker_process::raw_redis(&url).await;
            let script = qtasks::redis::redis::Script::new(
                "local n = redis.call('INCR', KEYS[1]) \
                 if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end \
                 return n",
            );
            let now: u32 = script
                .key(format!("test:running:{key}"))
                .key(format!("test:peak:{key}"))
                .invoke_async(&mut conn)
                .await?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _: i64 = qtasks::redis::redis::AsyncCommands::decr(
                &mut conn,
                format!("test:running:{key}"),
                1,
            )
            .await?;
            return Ok(now);
        }
    }
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(now)
}

/// Sends a mail; its own queue, so a flood of mail never delays the default queue's tasks.
#[qtasks::task(queue = "mail")]
async fn send_mail(to: String) -> String {
    format!("sent to {to}")
}

/// Tasks of a router no app includes but the one test that checks a bad queue name.
static BAD_QUEUE: qtasks::Router = qtasks::Router::new("bad-queue");

#[qtasks::task(router = BAD_QUEUE, queue = "no spaces allowed")]
async fn misrouted() {}

/// Runs of `polite` in this process.
static POLITE_RUNS: AtomicU32 = AtomicU32::new(0);

/// An external API says "too many requests" on the first call: the task goes back without
/// spending an attempt, and the second run succeeds.
#[qtasks::task(echo)]
async fn polite(task: AsyncTask) -> Result<u32, TaskError> {
    if POLITE_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(task.ctx.rate_limited(Duration::from_millis(30)));
    }
    Ok(task.ctx.attempt())
}

/// A unique app name for one test.
fn app_name(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "flow-{test}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The behaviours both backends share, on an app built by the caller.
async fn unique_and_debounce(app: &App) {
    // Unique by order id: a second charge of order 7 returns the first (queued: no worker
    // runs yet, so the first cannot have finished and freed its key in between).
    let first = charge.call(7, 100).on(app).add_task().await.unwrap();
    assert!(!first.is_existing());
    let second = charge.call(7, 999).on(app).add_task().await.unwrap();
    assert!(
        second.is_existing(),
        "the second charge of order 7 found the first"
    );
    assert_eq!(second.uuid, first.uuid);
    let other = charge.call(8, 5).on(app).add_task().await.unwrap();
    assert_ne!(other.uuid, first.uuid, "order 8 has a key of its own");
    let worker = app.spawn_worker();
    let done = first.wait(DEADLINE).await.unwrap();
    assert_eq!(done.returning, Some(100), "the first call's arguments ran");
    // Free again once it finished.
    let third = charge.call(7, 3).on(app).add_task().await.unwrap();
    assert!(!third.is_existing());
    assert_eq!(third.wait(DEADLINE).await.unwrap().returning, Some(3));
    // A call's own unique key, on a task that is not unique.
    let keyed = reindex
        .call("a".into())
        .unique_key("the-index")
        .on(app)
        .add_task()
        .await
        .unwrap();
    // Debounce: five calls in a burst run once, with the last arguments.
    let burst: Vec<_> = ["v1", "v2", "v3", "v4", "v5"]
        .into_iter()
        .map(|v| reindex.call(v.to_string()))
        .collect();
    let tasks = app.add_tasks(burst).await.unwrap();
    let holder = tasks[0].uuid;
    assert!(tasks[1..]
        .iter()
        .all(|t| t.is_existing() && t.uuid == holder));
    let done = tasks[0].wait(DEADLINE).await.unwrap();
    assert_eq!(done.returning.as_deref(), Some("v5"));
    assert_eq!(
        keyed.wait(DEADLINE).await.unwrap().returning.as_deref(),
        Some("a")
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_and_debounce_on_memory() {
    let app = common::builder(&app_name("mem")).build().unwrap();
    unique_and_debounce(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_on_memory() {
    let app = common::builder(&app_name("conc"))
        .max_tasks_process(8)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let calls = (0..30).map(|_| narrow.call("mem".into(), 20));
    let tasks = app.add_tasks(calls).await.unwrap();
    for t in &tasks {
        assert_eq!(t.wait(DEADLINE).await.unwrap().status, TaskStatus::Success);
    }
    assert_eq!(
        PEAK.load(Ordering::SeqCst),
        3,
        "at most 3 at once, and 3 reached"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_task_runs_again_without_spending_an_attempt() {
    let app = common::builder(&app_name("polite")).build().unwrap();
    let worker = app.spawn_worker();
    let task = polite.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(1), "the second run is still attempt 1");
    assert_eq!(done.attempts, 1);
    assert_eq!(POLITE_RUNS.load(Ordering::SeqCst), 2);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queues_are_served_by_the_workers_that_name_them() {
    let backend = std::sync::Arc::new(qtasks::memory::MemoryBackend::new(DEADLINE));
    let name = app_name("queues");
    // Without `queues`, a worker serves `default` and the queues its tasks declare.
    let app = common::builder(&name)
        .backend(backend.backend())
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let mail = send_mail
        .call("ann@example.com".into())
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let done = mail.wait(DEADLINE).await.unwrap();
    assert_eq!(done.returning.as_deref(), Some("sent to ann@example.com"));
    worker.shutdown().await.unwrap();
    // A worker of `default` alone leaves the mail queued, and stats count it per queue.
    let only_default = common::builder(&name)
        .backend(backend.backend())
        .queues(qtasks::control::QueueSelection::parse("default").unwrap())
        .build()
        .unwrap();
    let worker = only_default.spawn_worker();
    let mail = send_mail
        .call("bob@example.com".into())
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let other = reindex.call("x".into()).on(&app).add_task().await.unwrap();
    assert_eq!(
        other.wait(DEADLINE).await.unwrap().status,
        TaskStatus::Success
    );
    let stats = app.backend().broker.stats().await.unwrap();
    assert_eq!(stats.ready_by_queue.get("mail"), Some(&1));
    assert_eq!(
        app.get(mail.uuid).await.unwrap().unwrap().status,
        TaskStatus::New
    );
    worker.shutdown().await.unwrap();
}

#[test]
fn a_bad_queue_name_fails_the_build_naming_the_task() {
    let err = common::builder(&app_name("bad"))
        .include_router(&BAD_QUEUE)
        .build()
        .expect_err("a queue name with spaces");
    let text = err.to_string();
    assert!(
        text.contains("misrouted") && text.contains("not a queue name"),
        "{text}"
    );
}

#[test]
fn attribute_options_reach_the_registry() {
    // The attribute's options reach the registry, for backends and `inspect`.
    let entry = <narrow as qtasks::TaskDef>::entry();
    assert_eq!(entry.options.limits.concurrency, Some(3));
    let entry = <charge as qtasks::TaskDef>::entry();
    assert_eq!(
        entry.options.unique.map(|u| u.key),
        Some(qtasks::control::KeyFrom::Args(&["order_id"]))
    );
}

/// A worker with 8 lanes, when `QTASKS_TEST_FLOW_WORKER=url\napp` is set.
#[cfg(feature = "redis")]
#[test]
fn worker_process_entry_point() {
    common::worker_process::run_worker_if_asked(on_redis::WORKER_ENV, |b| b.max_tasks_process(8));
}

/// When `QTASKS_TEST_FLOW_PRODUCER=url\napp\nn` is set: enqueues `charge(42, i)` for
/// `i < n`, all at once, and prints every uuid it got back, then `done`.
#[cfg(feature = "redis")]
#[test]
fn producer_process_entry_point() {
    let Ok(spec) = std::env::var(on_redis::PRODUCER_ENV) else {
        return;
    };
    let mut parts = spec.split('\n');
    let (url, name, n) = (parts.next(), parts.next(), parts.next());
    let (Some(url), Some(name), Some(n)) = (url, name, n) else {
        panic!("url\\napp\\nn");
    };
    let n: u64 = n.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let app = common::builder(name).broker_url(url).build().unwrap();
        // 50 enqueues in flight at a time in each process.
        let sends = (0..n).map(|i| charge.call(42, i).on(&app).add_task());
        let tasks: Vec<_> = futures::stream::iter(sends)
            .buffer_unordered(50)
            .collect()
            .await;
        let mut uuids: Vec<String> = tasks
            .into_iter()
            .map(|t| t.unwrap().uuid.to_string())
            .collect();
        uuids.sort();
        uuids.dedup();
        println!("uuids {}", uuids.join(","));
        println!("done");
    });
}

#[cfg(feature = "redis")]
mod on_redis {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use qtasks::redis::redis::{self, AsyncCommands};
    use qtasks::redis::server;

    use super::*;
    use common::worker_process::{raw_redis, WorkerProcess};

    /// The environment variables that turn this binary into a worker or a producer process.
    pub(super) const WORKER_ENV: &str = "QTASKS_TEST_FLOW_WORKER";
    pub(super) const PRODUCER_ENV: &str = "QTASKS_TEST_FLOW_PRODUCER";

    /// Records each start's server time (ms) in `test:paced:{key}`, at most 50 a second
    /// across every worker.
    #[qtasks::task(echo, rate_limit = "50/s")]
    async fn paced(task: AsyncTask, key: String) -> Result<(), TaskError> {
        let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
        let mut conn = raw_redis(&url).await;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let ms = secs * 1000 + micros / 1000;
        let _: () = conn.rpush(format!("test:paced:{key}"), ms).await?;
        Ok(())
    }

    /// One at a time, one per key: announces its start (`pid`) in `test:started:{key}`, then
    /// blocks until the test pushes to `test:release:{key}`.
    #[qtasks::task(echo, concurrency = 1, unique = [key])]
    async fn solo(task: AsyncTask, key: String) -> Result<String, TaskError> {
        let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
        let mut conn = raw_redis(&url).await;
        let _: () = conn
            .rpush(format!("test:started:{key}"), std::process::id())
            .await?;
        let (_, value): (String, String) = conn.blpop(format!("test:release:{key}"), 0.0).await?;
        Ok(value)
    }

    fn redis_url(lease_ms: u64) -> Option<String> {
        // A generous command timeout: the processes of a test share 2 cores with the others.
        server::test_url().map(|url| {
            format!("{url}?lease_ms={lease_ms}&command_timeout_ms=5000&connect_timeout_ms=10000")
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unique_and_debounce_on_redis() {
        let Some(url) = redis_url(30_000) else { return };
        let app = common::builder(&app_name("redis"))
            .broker_url(url)
            .build()
            .unwrap();
        unique_and_debounce(&app).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_enqueues_of_one_key_from_four_processes_make_one_record() {
        let Some(url) = redis_url(30_000) else { return };
        let name = app_name("uniq");
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "producer_process_entry_point", "--nocapture"])
                    .env(PRODUCER_ENV, format!("{url}\n{name}\n2500"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut holders = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "a producer failed");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("uuids "))
                .unwrap_or_else(|| panic!("a producer printed no uuids: {text}"));
            holders.extend(line.split(',').map(str::to_string));
        }
        holders.sort();
        holders.dedup();
        assert_eq!(
            holders.len(),
            1,
            "every enqueue got the one task: {holders:?}"
        );
        // Exactly one record in the app's keys.
        let mut conn = raw_redis(&url).await;
        let keys: Vec<String> = conn.keys(format!("{{{name}}}:t:*")).await.unwrap();
        assert_eq!(keys.len(), 1, "one record: {keys:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_holds_across_three_worker_processes() {
        let Some(url) = redis_url(30_000) else { return };
        let name = app_name("rate");
        let workers: Vec<_> = (0..3)
            .map(|_| WorkerProcess::start(WORKER_ENV, &url, &name))
            .collect();
        let app = common::builder(&name).broker_url(&url).build().unwrap();
        let key = name.clone();
        let n = 1000;
        let tasks = app
            .add_tasks((0..n).map(|_| paced.call(key.clone())))
            .await
            .unwrap();
        for t in &tasks {
            let done = t.wait(Duration::from_secs(60)).await.unwrap();
            assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
        }
        let mut conn = raw_redis(&url).await;
        let starts: Vec<u64> = conn
            .lrange(format!("test:paced:{key}"), 0, -1)
            .await
            .unwrap();
        assert_eq!(starts.len(), n);
        let (first, last) = (starts.iter().min().unwrap(), starts.iter().max().unwrap());
        let rate = (n as f64 - 1.0) / ((last - first) as f64 / 1000.0);
        println!(
            "rate limit 50/s across 3 workers: {rate:.2} starts/s over {} starts",
            n
        );
        assert!(
            (rate - 50.0).abs() <= 2.5,
            "measured {rate:.2}/s, not within 5 % of 50/s"
        );
        drop(workers);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_limit_holds_across_three_worker_processes() {
        let Some(url) = redis_url(30_000) else { return };
        let name = app_name("conc");
        let workers: Vec<_> = (0..3)
            .map(|_| WorkerProcess::start(WORKER_ENV, &url, &name))
            .collect();
        let app = common::builder(&name).broker_url(&url).build().unwrap();
        let key = name.clone();
        let tasks = app
            .add_tasks((0..60).map(|_| narrow.call(key.clone(), 30)))
            .await
            .unwrap();
        for t in &tasks {
            assert_eq!(t.wait(DEADLINE).await.unwrap().status, TaskStatus::Success);
        }
        let mut conn = raw_redis(&url).await;
        let peak: u32 = conn.get(format!("test:peak:{key}")).await.unwrap();
        assert_eq!(
            peak, 3,
            "at most 3 at once across the workers, and 3 reached"
        );
        drop(workers);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_worker_gives_back_its_slot_and_unique_key_within_the_lease() {
        let lease = Duration::from_millis(1500);
        let Some(url) = redis_url(lease.as_millis() as u64) else {
            return;
        };
        let name = app_name("kill");
        let mut first = WorkerProcess::start(WORKER_ENV, &url, &name);
        let app = common::builder(&name).broker_url(&url).build().unwrap();
        let mut conn = raw_redis(&url).await;
        let key = name.clone();
        let task = solo.call(key.clone()).on(&app).add_task().await.unwrap();
        let started: Option<(String, u32)> = conn
            .blpop(format!("test:started:{key}"), DEADLINE.as_secs_f64())
            .await
            .unwrap();
        assert_eq!(started.map(|s| s.1), Some(first.pid()));
        // Unique while it runs.
        let again = solo.call(key.clone()).on(&app).add_task().await.unwrap();
        assert!(again.is_existing());
        assert_eq!(again.uuid, task.uuid);
        first.kill9();
        let killed_at = Instant::now();
        let second = WorkerProcess::start(WORKER_ENV, &url, &name);
        // Its one slot came back: the task runs again, on the second worker.
        let started: Option<(String, u32)> = conn
            .blpop(format!("test:started:{key}"), DEADLINE.as_secs_f64())
            .await
            .unwrap();
        assert_eq!(started.map(|s| s.1), Some(second.pid()));
        assert!(
            killed_at.elapsed() < lease + Duration::from_secs(2),
            "the slot came back {:?} after the kill (lease {lease:?})",
            killed_at.elapsed()
        );
        let _: () = conn
            .rpush(format!("test:release:{key}"), "ok")
            .await
            .unwrap();
        let done = task.wait(DEADLINE).await.unwrap();
        assert_eq!(done.returning.as_deref(), Some("ok"));
        // The key is free again.
        let after = solo.call(key.clone()).on(&app).add_task().await.unwrap();
        assert!(!after.is_existing());
        let _: () = conn
            .rpush(format!("test:release:{key}"), "ok")
            .await
            .unwrap();
        assert_eq!(
            after.wait(DEADLINE).await.unwrap().status,
            TaskStatus::Success
        );
        drop(second);
    }
}
