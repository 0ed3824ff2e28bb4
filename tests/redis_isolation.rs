//! Isolation of the Redis backend: one bad entry harms no other entry of the same script call,
//! a delivery counts only for a task that started, a full Redis drains, producers time out
//! fast and retry without duplicates, a stale worker starts nothing it lost, and workers killed
//! again and again lose and duplicate nothing.
//!
//! Every case reports what it measured (`lost`, `duplicated`, `dead-lettered` good tasks) on
//! stderr before asserting, so a failing run says how bad it was.
//!
//! Redis is a private `redis-server` for this test binary (or `QTASKS_REDIS_URL`), and cases
//! that freeze or fill Redis start one of their own; the tests skip without one unless
//! `QTASKS_REQUIRE_REDIS=1`. Worker processes that crash or get killed are this test binary,
//! re-executed to run only `worker_process_entry_point` with `QTASKS_ISOLATION_WORKER` set.
//! Workers run with concurrency 10 and prefetch 10. Every wait is bounded and waits on results,
//! on Redis lists or on another process's output; only a key census after the fact reads state.
#![cfg(feature = "redis")]

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use qtasks::backend::{
    Backend, Broker, CancelOutcome, CancelRequest, Completion, DeadLetterReason, Delivery, Lease,
    NewTask, Outcome, QueueStats,
};
use qtasks::prelude::*;
use qtasks::redis::redis::{self, AsyncCommands};
use qtasks::redis::{server, RedisBackend, RedisOptions};
use qtasks::{Payload, Result as QResult};
use uuid::Uuid;

use common::worker_process::{raw_redis as raw, send_signal, WorkerProcess};
use common::DEADLINE;

/// The environment variable that turns this binary into a worker process (`url\napp`).
const WORKER_ENV: &str = "QTASKS_ISOLATION_WORKER";
/// Concurrency and prefetch of every worker in these tests.
const LANES: usize = 10;
/// Good tasks beside each bad entry.
const GOOD: usize = 100;

// ---------------------------------------------------------------------------------------------
// Tasks

/// A connection for a task's own bookkeeping (`test:*` keys, outside every app), one per app:
/// each test runs its app on a runtime of its own, which the connection lives on.
async fn bookkeeping(task: &AsyncTask) -> redis::aio::MultiplexedConnection {
    static CONNS: Mutex<Vec<(String, redis::aio::MultiplexedConnection)>> = Mutex::new(Vec::new());
    let url = task.ctx.get_config().broker_url.clone().unwrap_or_default();
    let id = format!("{url}\n{}", task.ctx.app().name());
    if let Some((_, conn)) = CONNS.lock().unwrap().iter().find(|(u, _)| *u == id) {
        return conn.clone();
    }
    let conn = raw(&url).await;
    CONNS.lock().unwrap().push((id, conn.clone()));
    conn
}

/// Counts its runs in the hash `hash` under `key`.
#[qtasks::task(echo)]
async fn counted(task: AsyncTask, hash: String, key: String) -> Result<u64, TaskError> {
    let mut conn = bookkeeping(&task).await;
    let runs: u64 = conn.hincr(&hash, &key, 1).await?;
    Ok(runs)
}

/// Counts its starts in `hash` under `key` and announces each on the list `started`; its first
/// run then takes `first_ms`, later runs return at once.
#[qtasks::task(echo)]
async fn probe(
    task: AsyncTask,
    hash: String,
    started: String,
    key: String,
    first_ms: u64,
) -> Result<u64, TaskError> {
    let mut conn = bookkeeping(&task).await;
    let starts: u64 = conn.hincr(&hash, &key, 1).await?;
    let _: () = conn
        .rpush(&started, format!("{key}:{}", std::process::id()))
        .await?;
    if starts == 1 {
        tokio::time::sleep(Duration::from_millis(first_ms)).await;
    }
    Ok(starts)
}

/// Counts its runs in `hash` under `key`, then works for `ms`.
#[qtasks::task(echo)]
async fn busy(task: AsyncTask, hash: String, key: String, ms: u64) -> Result<u64, TaskError> {
    let mut conn = bookkeeping(&task).await;
    let runs: u64 = conn.hincr(&hash, &key, 1).await?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(runs)
}

/// Aborts the worker process it runs in, every time, after announcing it on the list `crashes`.
/// In the test process itself it refuses (it must never take the test down).
#[qtasks::task(echo)]
async fn crasher(task: AsyncTask, crashes: String) -> Result<(), TaskError> {
    if std::env::var(WORKER_ENV).is_err() {
        return Err(TaskError::msg("the crasher ran outside a worker process"));
    }
    let mut conn = bookkeeping(&task).await;
    let _: () = conn.rpush(&crashes, std::process::id()).await?;
    std::process::abort();
}

/// Does nothing.
#[qtasks::task]
async fn noop(i: u32) -> u32 {
    i
}

// ---------------------------------------------------------------------------------------------
// Worker processes

/// When `QTASKS_ISOLATION_WORKER=url\napp` is set, runs a worker (concurrency 10, prefetch 10)
/// until the process is killed; otherwise does nothing.
#[test]
fn worker_process_entry_point() {
    common::worker_process::run_worker_if_asked(WORKER_ENV, |builder| {
        builder.max_tasks_process(LANES).prefetch(LANES)
    });
}

/// Restarts the worker process of an app whenever it dies, a bounded number of times.
struct Supervisor {
    stop: Arc<AtomicBool>,
    current: Arc<AtomicU32>,
    starts: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn start(url: &str, app: &str, max_starts: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(AtomicU32::new(0));
        let (url, app) = (url.to_string(), app.to_string());
        let thread = {
            let (stop, current, starts) = (stop.clone(), current.clone(), starts.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) && starts.load(Ordering::SeqCst) < max_starts {
                    let mut worker = WorkerProcess::start(WORKER_ENV, &url, &app);
                    starts.fetch_add(1, Ordering::SeqCst);
                    current.store(worker.pid(), Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Blocks until the worker dies (it crashes, or `stop` kills it).
                    let _ = worker.child.wait();
                }
            })
        };
        Supervisor {
            stop,
            current,
            starts,
            thread: Some(thread),
        }
    }

    /// How many worker processes it started.
    fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.current.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A unique app name for one test.
fn app_name(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "iso-{test}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `redis-server` of the test's own (for cases that freeze or fill it).
fn own_server() -> Option<server::RedisServer> {
    match server::RedisServer::start() {
        Ok(server) => Some(server),
        Err(e) if std::env::var("QTASKS_REQUIRE_REDIS").as_deref() != Ok("1") => {
            eprintln!("skipping: cannot start a redis-server of this test's own: {e}");
            None
        }
        Err(e) => panic!("QTASKS_REQUIRE_REDIS=1 but redis-server cannot be started: {e}"),
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Every key matching `pattern`.
async fn scan(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<String> = conn.scan_match(pattern).await.unwrap();
    while let Some(key) = futures::StreamExt::next(&mut iter).await {
        keys.push(key.unwrap());
    }
    keys.sort();
    keys
}

/// The dead-letter of `app`, newest first: `(entry, reason)`, where entry is a task's uuid, or
/// the raw entry found where a task was expected (`!<reason>:<raw>` in the list).
async fn dead_letter(
    conn: &mut redis::aio::MultiplexedConnection,
    app: &str,
) -> Vec<(String, String)> {
    let entries: Vec<String> = conn.lrange(format!("{{{app}}}:dead"), 0, -1).await.unwrap();
    let mut out = Vec::new();
    for entry in entries {
        if let Some((reason, raw)) = entry.strip_prefix('!').and_then(|e| e.split_once(':')) {
            out.push((raw.to_string(), reason.to_string()));
        } else {
            let reason: Option<String> = conn
                .hget(format!("{{{app}}}:t:{entry}"), "dr")
                .await
                .unwrap();
            out.push((entry, reason.unwrap_or_default()));
        }
    }
    out
}

/// A census of the app's task keys: every `{app}:t:*` key must be in a queue, the schedule, a
/// lease or the dead-letter, or expire. Returns the keys that break this.
async fn census(conn: &mut redis::aio::MultiplexedConnection, app: &str) -> Vec<String> {
    let prefix = format!("{{{app}}}:");
    let keys = scan(conn, &format!("{prefix}*")).await;
    let mut placed: HashSet<String> = HashSet::new();
    for key in &keys {
        let rest = &key[prefix.len()..];
        let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await.unwrap();
        if (rest.starts_with("q:") || rest == "suspect") && kind == "list" {
            // Ready entries start with the task's uuid; suspects are bare uuids.
            let entries: Vec<Vec<u8>> = conn.lrange(key, 0, -1).await.unwrap();
            placed.extend(
                entries
                    .iter()
                    .map(|e| String::from_utf8_lossy(&e[..e.len().min(36)]).into_owned()),
            );
        } else if rest == "sched" {
            let ids: Vec<String> = conn.zrange(key, 0, -1).await.unwrap();
            placed.extend(ids);
        } else if rest == "lease" {
            let members: Vec<String> = conn.zrange(key, 0, -1).await.unwrap();
            placed.extend(
                members
                    .iter()
                    .map(|m| m.chars().take(36).collect::<String>()),
            );
        } else if rest == "dead" {
            for (entry, _) in dead_letter(conn, app).await {
                placed.insert(entry);
            }
        }
    }
    let mut broken = Vec::new();
    // Every claim's `run` entry goes with its lease.
    let leased: Vec<String> = conn.zrange(format!("{prefix}lease"), 0, -1).await.unwrap();
    let runs: HashMap<String, String> = conn.hgetall(format!("{prefix}run")).await.unwrap();
    for (id, run) in &runs {
        let token = run.split(':').next().unwrap_or_default();
        if !leased.contains(&format!("{id}:{token}")) {
            broken.push(format!("{prefix}run {id} ({run}) without its lease"));
        }
    }
    for key in &keys {
        let Some(id) = key[prefix.len()..].strip_prefix("t:") else {
            continue;
        };
        if placed.contains(id) {
            continue;
        }
        let ttl: i64 = conn.pttl(key).await.unwrap();
        if ttl > 0 {
            continue;
        }
        let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await.unwrap();
        let status: Option<String> = if kind == "hash" {
            conn.hget(key, "s").await.unwrap()
        } else {
            None
        };
        broken.push(format!("{key} ({kind}, status {status:?})"));
    }
    broken
}

/// What happened to a set of good tasks.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Not finished with success (and not dead-lettered) by the deadline.
    lost: usize,
    /// Ran more than once.
    duplicated: usize,
    /// In the dead-letter.
    dead_lettered: usize,
}

/// Waits (until `deadline`) for each good task and counts what happened to them. `runs` maps
/// each task's key to how many times it ran.
async fn tally(
    app: &App,
    tasks: &[(Uuid, String)],
    runs: &HashMap<String, u64>,
    dead: &[(String, String)],
    deadline: Instant,
) -> Tally {
    let dead: HashSet<&str> = dead.iter().map(|(e, _)| e.as_str()).collect();
    let mut tally = Tally::default();
    for (uuid, key) in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        let done = app
            .wait(*uuid, left.max(Duration::from_millis(1)))
            .await
            .ok();
        if dead.contains(uuid.to_string().as_str()) {
            tally.dead_lettered += 1;
        } else if done.map(|t| t.status) != Some(TaskStatus::Success) {
            tally.lost += 1;
        }
        if runs.get(key).copied().unwrap_or(0) > 1 {
            tally.duplicated += 1;
        }
    }
    tally
}

async fn runs_of(conn: &mut redis::aio::MultiplexedConnection, hash: &str) -> HashMap<String, u64> {
    conn.hgetall(hash).await.unwrap()
}

/// A task record written by hand, as something other than qtasks (or an older version, or a
/// bug) might have left it: the fields given, nothing else.
async fn write_record(
    conn: &mut redis::aio::MultiplexedConnection,
    app: &str,
    uuid: Uuid,
    fields: &[(&str, Vec<u8>)],
) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(format!("{{{app}}}:t:{uuid}"));
    for (field, value) in fields {
        cmd.arg(*field).arg(value.as_slice());
    }
    let _: () = cmd.query_async(conn).await.unwrap();
}

/// Pushes a raw entry onto the ready queue of priority 0, as an enqueue would.
async fn push_entry(conn: &mut redis::aio::MultiplexedConnection, app: &str, entry: &[u8]) {
    let _: () = conn.lpush(format!("{{{app}}}:q:0"), entry).await.unwrap();
    let _: () = conn.zadd(format!("{{{app}}}:prios"), "0", 0).await.unwrap();
}

/// Enqueues `n` counted tasks keyed `{tag}-{i}`.
async fn enqueue_counted(app: &App, hash: &str, tag: &str, n: usize) -> Vec<(Uuid, String)> {
    let calls: Vec<_> = (0..n)
        .map(|i| counted.call(hash.to_string(), format!("{tag}-{i}")))
        .collect();
    let tasks = app.add_tasks(calls).await.unwrap();
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.uuid, format!("{tag}-{i}")))
        .collect()
}

/// The good tasks, a worker of the test process, and the checks every bad-entry case shares:
/// every good task ran exactly once, `bad` entries are in the dead-letter with their reasons,
/// and the key census finds nothing without a queue or a TTL.
struct BadEntryCase {
    name: String,
    url: String,
    app: App,
    conn: redis::aio::MultiplexedConnection,
    hash: String,
    good: Vec<(Uuid, String)>,
}

impl BadEntryCase {
    async fn new(test: &str, query: &str) -> Option<Self> {
        // The worker's warnings (dropped entries, lost leases) show with a failing case.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        let base = server::test_url()?;
        let url = format!("{base}{query}");
        let name = app_name(test);
        let app = common::builder(&name)
            .broker_url(&url)
            .max_tasks_process(LANES)
            .prefetch(LANES)
            .build()
            .unwrap();
        let conn = raw(&url).await;
        Some(BadEntryCase {
            hash: format!("test:runs:{name}"),
            name,
            url,
            app,
            conn,
            good: Vec::new(),
        })
    }

    async fn enqueue_good(&mut self, n: usize) {
        let tag = format!("good{}", self.good.len());
        let more = enqueue_counted(&self.app, &self.hash, &tag, n).await;
        self.good.extend(more);
    }

    /// Runs a worker until every good task is final (or the deadline passes), then checks.
    async fn run_and_check(mut self, case: &str, bad: &[(String, &str)]) {
        let worker = self.app.spawn_worker();
        self.check(case, bad).await;
        worker.shutdown().await.unwrap();
        let broken = census(&mut self.conn, &self.name).await;
        assert!(
            broken.is_empty(),
            "{case}: keys in no queue and without TTL: {broken:?}"
        );
    }

    async fn check(&mut self, case: &str, bad: &[(String, &str)]) {
        // Runs are counted once the tasks are final: wait for them first.
        let deadline = Instant::now() + DEADLINE * 2;
        let _ = tally(&self.app, &self.good, &HashMap::new(), &[], deadline).await;
        let runs = runs_of(&mut self.conn, &self.hash).await;
        let dead = dead_letter(&mut self.conn, &self.name).await;
        let t = tally(&self.app, &self.good, &runs, &dead, Instant::now()).await;
        let found: Vec<bool> = bad
            .iter()
            .map(|(entry, reason)| dead.iter().any(|(e, r)| e == entry && r == reason))
            .collect();
        eprintln!(
            "{case}: {} good tasks: lost {}, duplicated {}, dead-lettered {}; bad entries in the dead-letter with their reason: {found:?}",
            self.good.len(),
            t.lost,
            t.duplicated,
            t.dead_lettered
        );
        assert_eq!(t, Tally::default(), "{case}: good tasks harmed");
        assert!(
            self.good
                .iter()
                .all(|(_, key)| runs.get(key).copied() == Some(1)),
            "{case}: every good task ran exactly once"
        );
        for ((entry, reason), found) in bad.iter().zip(found) {
            assert!(
                found,
                "{case}: {entry} is not in the dead-letter with reason {reason}: {dead:?}"
            );
        }
        assert_eq!(
            dead.len(),
            bad.len(),
            "{case}: only the bad entries: {dead:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A bad entry of each kind among 100 good ones

/// A record without its task name, queued among 100 good tasks (in the first claimed batch):
/// the good ones run once each, the bad one is dead-lettered as `malformed_record`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_missing_a_field_harms_no_other_task() {
    let Some(mut case) = BadEntryCase::new("missing", "?lease_ms=1000").await else {
        return;
    };
    case.enqueue_good(5).await;
    let bad = Uuid::new_v4();
    let args = Payload::encode(&(case.hash.clone(), "bad".to_string())).unwrap();
    write_record(
        &mut case.conn,
        &case.name,
        bad,
        &[
            ("p", b"0".to_vec()),
            ("a", args.as_bytes().to_vec()),
            ("s", b"new".to_vec()),
            ("c", now_ms().to_string().into_bytes()),
        ],
    )
    .await;
    push_entry(&mut case.conn, &case.name, bad.to_string().as_bytes()).await;
    case.enqueue_good(GOOD - 5).await;
    let app = case.app.clone();
    case.run_and_check("missing field", &[(bad.to_string(), "malformed_record")])
        .await;
    // The record says what is wrong with it.
    let task = app.get(bad).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    assert!(
        task.traceback.as_deref().unwrap_or("").contains("name"),
        "{:?}",
        task.traceback
    );
}

/// A string where a task record (a hash) should be, queued among 100 good tasks (in the first
/// claimed batch): the good ones run once each, the uuid is dead-lettered as `wrong_type`, the
/// foreign key is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_the_wrong_type_harms_no_other_task() {
    let Some(mut case) = BadEntryCase::new("wrongtype", "?lease_ms=1000").await else {
        return;
    };
    case.enqueue_good(5).await;
    let bad = Uuid::new_v4();
    let key = format!("{{{}}}:t:{bad}", case.name);
    let _: () = case
        .conn
        .set(&key, "written by someone else")
        .await
        .unwrap();
    push_entry(&mut case.conn, &case.name, bad.to_string().as_bytes()).await;
    case.enqueue_good(GOOD - 5).await;
    let mut conn = case.conn.clone();
    case.run_and_check("wrong type", &[(bad.to_string(), "wrong_type")])
        .await;
    let kept: String = conn.get(&key).await.unwrap();
    assert_eq!(
        kept, "written by someone else",
        "the foreign key is untouched"
    );
    let _: () = conn.del(&key).await.unwrap();
}

/// A priority that is not a number, on a queued record and on a record whose lease expires
/// together with the leases of 100 good tasks (the reaper's batch): the good ones are returned
/// and run once each, the bad ones are dead-lettered as `malformed_record`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_that_is_not_a_number_harms_no_other_task() {
    let Some(mut case) = BadEntryCase::new("prio", "?lease_ms=1000").await else {
        return;
    };
    case.enqueue_good(GOOD).await;
    // A worker that claims the good tasks and dies before starting them (short lease).
    let lease = Duration::from_millis(300);
    let dead_worker = RedisBackend::new(
        &case.url,
        &case.name,
        case.app.config(),
        RedisOptions {
            lease,
            ..RedisOptions::default()
        },
    )
    .unwrap();
    let claimed = dead_worker.claim(GOOD).await.unwrap();
    assert_eq!(claimed.len(), GOOD);
    // A leased record with a bad priority, expiring with them (first in the reaper's order).
    let leased_bad = Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
    let args = Payload::encode(&(case.hash.clone(), "leased-bad".to_string())).unwrap();
    write_record(
        &mut case.conn,
        &case.name,
        leased_bad,
        &[
            ("n", b"counted".to_vec()),
            ("p", b"high".to_vec()),
            ("a", args.as_bytes().to_vec()),
            ("s", b"process".to_vec()),
            ("c", now_ms().to_string().into_bytes()),
            ("at", b"1".to_vec()),
        ],
    )
    .await;
    let lease_key = format!("{{{}}}:lease", case.name);
    let member = format!("{}:{}", claimed[0].uuid, claimed[0].token);
    let deadline: f64 = case.conn.zscore(&lease_key, &member).await.unwrap();
    let _: () = case
        .conn
        .zadd(&lease_key, format!("{leased_bad}:1"), deadline)
        .await
        .unwrap();
    // A queued record with a bad priority.
    let queued_bad = Uuid::new_v4();
    let args = Payload::encode(&(case.hash.clone(), "queued-bad".to_string())).unwrap();
    write_record(
        &mut case.conn,
        &case.name,
        queued_bad,
        &[
            ("n", b"counted".to_vec()),
            ("p", b"high".to_vec()),
            ("a", args.as_bytes().to_vec()),
            ("s", b"new".to_vec()),
            ("c", now_ms().to_string().into_bytes()),
        ],
    )
    .await;
    push_entry(
        &mut case.conn,
        &case.name,
        queued_bad.to_string().as_bytes(),
    )
    .await;
    case.run_and_check(
        "bad priority",
        &[
            (leased_bad.to_string(), "malformed_record"),
            (queued_bad.to_string(), "malformed_record"),
        ],
    )
    .await;
}

/// Garbage in a ready queue among 100 good tasks (in the first claimed batch): the good ones run
/// once each, the garbage is dead-lettered as `malformed_record` (not dropped silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_queue_entry_harms_no_other_task() {
    let Some(mut case) = BadEntryCase::new("garbage", "?lease_ms=1000").await else {
        return;
    };
    case.enqueue_good(5).await;
    let garbage = "not a uuid at all: \u{2603}";
    push_entry(&mut case.conn, &case.name, garbage.as_bytes()).await;
    case.enqueue_good(GOOD - 5).await;
    let backend = RedisBackend::new(
        &case.url,
        &case.name,
        case.app.config(),
        RedisOptions::default(),
    )
    .unwrap();
    case.run_and_check(
        "garbage entry",
        &[(garbage.to_string(), "malformed_record")],
    )
    .await;
    // The dead-letter as the backend lists it: the raw entry, its reason, no record.
    let entries = backend.dead_letter_entries(10).await.unwrap();
    let [entry] = entries.as_slice() else {
        panic!("one entry: {entries:?}")
    };
    assert_eq!(entry.entry, garbage);
    assert_eq!(entry.reason, Some(DeadLetterReason::MalformedRecord));
    assert!(entry.uuid.is_none() && entry.task.is_none(), "{entry:?}");
    assert!(backend.dead_letters(10).await.unwrap().is_empty());
}

/// What the broker wrapper of [`unknown_lease_in_a_batch_harms_no_other_lease`] saw.
#[derive(Debug, Default)]
struct Injected {
    /// Calls of `started`, `renew`, `complete` that carried the unknown lease.
    calls: HashMap<&'static str, usize>,
    /// Calls whose reply reported the unknown lease (lost or rejected).
    reported: HashMap<&'static str, usize>,
    /// Good leases reported lost or rejected.
    good_reported: Vec<(&'static str, Lease)>,
}

/// A broker that slips a lease nobody holds into the middle of every lease batch the worker
/// sends, and hides it from the worker's view of the reply.
struct Injecting {
    inner: Arc<dyn Broker>,
    unknown: Lease,
    seen: Arc<Mutex<Injected>>,
}

impl Injecting {
    fn note(&self, call: &'static str, reported: &[Lease]) -> Vec<Lease> {
        let mut seen = self.seen.lock().unwrap();
        *seen.calls.entry(call).or_default() += 1;
        if reported.contains(&self.unknown) {
            *seen.reported.entry(call).or_default() += 1;
        }
        let good: Vec<Lease> = reported
            .iter()
            .filter(|l| **l != self.unknown)
            .copied()
            .collect();
        seen.good_reported
            .extend(good.iter().map(|lease| (call, *lease)));
        good
    }

    fn with_unknown(&self, leases: &[Lease]) -> Vec<Lease> {
        let mut with = leases.to_vec();
        with.insert(leases.len() / 2, self.unknown);
        with
    }
}

impl Broker for Injecting {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [NewTask],
    ) -> BoxFuture<'a, QResult<Vec<qtasks::backend::Existing>>> {
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, QResult<Vec<Delivery>>> {
        self.inner.claim(max)
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, QResult<Vec<Lease>>> {
        Box::pin(async move {
            let mut with = done.to_vec();
            with.insert(
                done.len() / 2,
                Completion {
                    lease: self.unknown,
                    outcome: Outcome::Success(Payload::default()),
                    run: None,
                },
            );
            let rejected = self.inner.complete(&with).await?;
            Ok(self.note("complete", &rejected))
        })
    }
    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, QResult<()>> {
        Box::pin(async move { self.inner.requeue(&self.with_unknown(leases)).await })
    }
    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, QResult<CancelOutcome>> {
        self.inner.cancel(uuid, reason)
    }
    fn stats(&self) -> BoxFuture<'_, QResult<QueueStats>> {
        self.inner.stats()
    }
    fn lease_duration(&self) -> Option<Duration> {
        self.inner.lease_duration()
    }
    fn started<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, QResult<Vec<Lease>>> {
        Box::pin(async move {
            let lost = self.inner.started(&self.with_unknown(leases)).await?;
            Ok(self.note("started", &lost))
        })
    }
    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, QResult<Vec<Lease>>> {
        Box::pin(async move {
            let lost = self.inner.renew(&self.with_unknown(leases)).await?;
            Ok(self.note("renew", &lost))
        })
    }
    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        self.inner.cancel_requests()
    }
}

/// A lease nobody holds, in the middle of every `started`, `renew` and `complete` batch of a
/// worker running 100 good tasks, and a lease entry for a task that does not exist in the lease
/// set: each batch reports exactly the unknown lease and no good one, the good tasks run once
/// each, and the stray lease entry is dead-lettered as `malformed_record`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_lease_in_a_batch_harms_no_other_lease() {
    let Some(base) = server::test_url() else {
        return;
    };
    // Short leases, so that the worker renews while it runs.
    let url = format!("{base}?lease_ms=450");
    let name = app_name("unknown");
    let seen = Arc::new(Mutex::new(Injected::default()));
    let unknown = Lease {
        uuid: Uuid::new_v4(),
        token: 1,
    };
    let app = {
        let seen = seen.clone();
        common::builder(&name)
            .broker_url(&url)
            .max_tasks_process(LANES)
            .prefetch(LANES)
            .map_backend(move |b: Backend| Backend {
                broker: Arc::new(Injecting {
                    inner: b.broker,
                    unknown,
                    seen,
                }),
                ..b
            })
            .build()
            .unwrap()
    };
    let mut conn = raw(&url).await;
    let hash = format!("test:runs:{name}");
    // Tasks that take a third of a lease, so that renewals happen while they run.
    let calls: Vec<_> = (0..GOOD)
        .map(|i| busy.call(hash.clone(), format!("good-{i}"), 150))
        .collect();
    let good: Vec<(Uuid, String)> = app
        .add_tasks(calls)
        .await
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.uuid, format!("good-{i}")))
        .collect();
    let stray = Uuid::new_v4();
    let _: () = conn
        .zadd(
            format!("{{{name}}}:lease"),
            format!("{stray}:7"),
            now_ms().saturating_sub(1),
        )
        .await
        .unwrap();
    let worker = app.spawn_worker();
    let deadline = Instant::now() + DEADLINE * 2;
    let _ = tally(&app, &good, &HashMap::new(), &[], deadline).await;
    worker.shutdown().await.unwrap();
    let runs = runs_of(&mut conn, &hash).await;
    let dead = dead_letter(&mut conn, &name).await;
    let t = tally(&app, &good, &runs, &dead, Instant::now()).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "unknown lease: {} good tasks: lost {}, duplicated {}, dead-lettered {}; batches {:?}, unknown lease reported {:?}, good leases reported {}; dead-letter {dead:?}",
        good.len(),
        t.lost,
        t.duplicated,
        t.dead_lettered,
        seen.calls,
        seen.reported,
        seen.good_reported.len()
    );
    assert_eq!(t, Tally::default());
    assert!(good
        .iter()
        .all(|(_, key)| runs.get(key).copied() == Some(1)));
    assert!(
        seen.good_reported.is_empty(),
        "good leases reported: {:?}",
        seen.good_reported
    );
    for call in ["started", "complete", "renew"] {
        let calls = seen.calls.get(call).copied().unwrap_or(0);
        assert!(calls > 0, "the worker called {call}: {seen:?}");
        assert_eq!(
            seen.reported.get(call).copied().unwrap_or(0),
            calls,
            "every {call} batch reports the unknown lease: {seen:?}"
        );
    }
    assert_eq!(
        dead,
        vec![(stray.to_string(), "malformed_record".to_string())],
        "the stray lease entry is dead-lettered"
    );
    let broken = census(&mut conn, &name).await;
    assert!(
        broken.is_empty(),
        "keys in no queue and without TTL: {broken:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Deliveries count only for tasks that started

/// A task that aborts its worker process every time, beside 500 good tasks, with a supervisor
/// restarting the worker process whenever it dies: no good task is lost, run twice or
/// dead-lettered, and the crasher ends in the dead-letter as `crashed_worker` after
/// `max_deliveries` counted losses.
///
/// The crasher's first run is alone in its worker (the good tasks are enqueued once it
/// crashed): a crash takes down whatever runs beside it in the same process, and at least once
/// delivery runs those tasks again, which is not what this test measures. From then on the
/// crasher is a suspect that runs on an idle worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_task_harms_no_other_task() {
    let Some(base) = server::test_url() else {
        return;
    };
    let max_deliveries = 3;
    let url = format!("{base}?lease_ms=1000&max_deliveries={max_deliveries}");
    let name = app_name("crash");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let mut conn = raw(&url).await;
    let hash = format!("test:runs:{name}");
    let crashes = format!("test:crashes:{name}");
    let started = Instant::now();

    let crash_task = crasher
        .call(crashes.clone())
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let mut supervisor = Supervisor::start(&url, &name, max_deliveries + 6);
    let first: Option<(String, String)> =
        conn.blpop(&crashes, DEADLINE.as_secs_f64()).await.unwrap();
    assert!(first.is_some(), "the crasher never ran");
    // Good tasks that take a while, so that they still run when the crasher comes back.
    let calls: Vec<_> = (0..500)
        .map(|i| busy.call(hash.clone(), format!("good-{i}"), 40))
        .collect();
    let good: Vec<(Uuid, String)> = app
        .add_tasks(calls)
        .await
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.uuid, format!("good-{i}")))
        .collect();

    let deadline = Instant::now() + DEADLINE * 4;
    let crashed = app
        .wait(
            crash_task.uuid,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await;
    let _ = tally(&app, &good, &HashMap::new(), &[], deadline).await;
    supervisor.stop();
    let runs = runs_of(&mut conn, &hash).await;
    let dead = dead_letter(&mut conn, &name).await;
    let t = tally(&app, &good, &runs, &dead, Instant::now()).await;
    // The first announcement was popped above.
    let crash_count = 1 + conn.llen::<_, usize>(&crashes).await.unwrap();
    eprintln!(
        "crash loop: 500 good tasks: lost {}, duplicated {}, dead-lettered {}; the crasher ran {crash_count} times, {} worker processes, {:?}; crasher: {:?}",
        t.lost,
        t.duplicated,
        t.dead_lettered,
        supervisor.starts(),
        started.elapsed(),
        crashed.as_ref().map(|c| (c.status, c.extra.get("dead_letter").cloned())),
    );
    assert_eq!(t, Tally::default(), "good tasks harmed by the crasher");
    assert!(good
        .iter()
        .all(|(_, key)| runs.get(key).copied() == Some(1)));
    let crashed = crashed.expect("the crasher ended");
    assert_eq!(crashed.status, TaskStatus::Error);
    assert_eq!(
        crashed.extra.get("dead_letter").map(String::as_str),
        Some("crashed_worker")
    );
    assert_eq!(
        crash_count,
        max_deliveries as usize + 1,
        "ran max_deliveries + 1 times"
    );
    assert_eq!(
        dead,
        vec![(crash_task.uuid.to_string(), "crashed_worker".to_string())]
    );
    let broken = census(&mut conn, &name).await;
    assert!(
        broken.is_empty(),
        "keys in no queue and without TTL: {broken:?}"
    );
}

/// A worker frozen (SIGSTOP) past its lease with 10 tasks running and 10 prefetched, while
/// another worker takes them all over: once resumed (SIGCONT), it starts none of the prefetched
/// tasks whose leases it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_worker_starts_nothing_it_lost() {
    let Some(base) = server::test_url() else {
        return;
    };
    let url = format!("{base}?lease_ms=800");
    let name = app_name("stale");
    let app = common::builder(&name)
        .broker_url(&url)
        .max_tasks_process(LANES)
        .prefetch(LANES)
        .build()
        .unwrap();
    let mut conn = raw(&url).await;
    let hash = format!("test:starts:{name}");
    let list = format!("test:started:{name}");
    let calls: Vec<_> = (0..2 * LANES)
        .map(|i| probe.call(hash.clone(), list.clone(), format!("t{i}"), 1200))
        .collect();
    let tasks = app.add_tasks(calls).await.unwrap();
    let frozen = tokio::task::block_in_place(|| WorkerProcess::start(WORKER_ENV, &url, &name));
    let mut running = HashSet::new();
    for _ in 0..LANES {
        let popped: Option<(String, String)> =
            conn.blpop(&list, DEADLINE.as_secs_f64()).await.unwrap();
        let (_, value) = popped.expect("ten tasks start in the worker");
        running.insert(value.split(':').next().unwrap_or("").to_string());
    }
    send_signal(frozen.pid(), "-STOP");
    let _thaw = Thaw(frozen.pid());

    let rescuer = app.spawn_worker();
    for task in &tasks {
        let done = task.wait(DEADLINE * 2).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success);
    }
    rescuer.shutdown().await.unwrap();
    send_signal(frozen.pid(), "-CONT");
    // The resumed worker drops each prefetched task whose lease it lost, and says so (a
    // worker that starts them instead says nothing: give up after the deadline, then count).
    let dropped = tokio::task::block_in_place(|| {
        frozen.count_lines("not starting a prefetched task", LANES, DEADLINE / 2)
    });
    let starts = runs_of(&mut conn, &hash).await;
    let prefetched: Vec<String> = (0..2 * LANES)
        .map(|i| format!("t{i}"))
        .filter(|k| !running.contains(k))
        .collect();
    let started_again: Vec<_> = prefetched
        .iter()
        .filter(|k| starts.get(*k).copied().unwrap_or(0) != 1)
        .collect();
    eprintln!(
        "stale worker: {} prefetched tasks, started more than once: {started_again:?}; {dropped} dropped by the resumed worker; starts {starts:?}",
        prefetched.len()
    );
    assert_eq!(prefetched.len(), LANES);
    assert!(
        started_again.is_empty(),
        "the stale worker started {started_again:?}"
    );
    assert_eq!(dropped, LANES, "the resumed worker says it dropped each");
    for key in &running {
        assert_eq!(
            starts.get(key).copied(),
            Some(2),
            "{key}: frozen once, rescued once"
        );
    }
    drop(frozen);
}

/// Sends SIGCONT to a process when dropped (a test that froze it must not leave it frozen).
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// A full Redis drains

/// Redis at `maxmemory` with `noeviction`, filled with a backlog until enqueueing fails: the
/// enqueue error says Redis is full and names `maxmemory`, and a worker still drains the whole
/// backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_redis_still_drains() {
    let Some(redis_server) = own_server() else {
        return;
    };
    let url = redis_server.url();
    let name = app_name("oom");
    let app = common::builder(&name)
        .broker_url(&url)
        .max_tasks_process(LANES)
        .prefetch(LANES)
        .build()
        .unwrap();
    let mut conn = raw(&url).await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + 1_500_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut enqueued = Vec::new();
    let refusal = loop {
        assert!(enqueued.len() < 200_000, "Redis never filled up");
        let calls: Vec<_> = (0..200).map(|i| noop.call(i)).collect();
        match app.add_tasks(calls).await {
            Ok(tasks) => enqueued.extend(tasks.into_iter().map(|t| t.uuid)),
            Err(e) => break e.to_string(),
        }
    };
    eprintln!(
        "full Redis: {} tasks enqueued before: {refusal}",
        enqueued.len()
    );
    assert!(refusal.contains("maxmemory"), "{refusal}");
    assert!(refusal.contains("full"), "{refusal}");
    assert!(
        !refusal.contains("check that redis-server is running"),
        "not a connection problem: {refusal}"
    );

    let worker = app.spawn_worker();
    let deadline = Instant::now() + DEADLINE * 3;
    let mut drained = 0;
    for uuid in &enqueued {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(task) = app.wait(*uuid, left.max(Duration::from_millis(1))).await {
            if task.status == TaskStatus::Success {
                drained += 1;
            }
        }
    }
    eprintln!("full Redis: drained {drained} of {}", enqueued.len());
    assert_eq!(drained, enqueued.len(), "the backlog drains");
    worker.shutdown().await.unwrap();
    let stats = app.backend().broker.stats().await.unwrap();
    assert!(stats.ready_by_priority.is_empty(), "{stats:?}");
    assert_eq!(stats.running, 0);
    drop(redis_server);
}

// ---------------------------------------------------------------------------------------------
// Producer timeouts

/// A producer against a frozen Redis (SIGSTOP) fails within about a second with a timeout
/// error; once Redis runs again (SIGCONT), a retry with the same idempotency key leaves exactly
/// one task, which runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_times_out_and_retries_without_duplicate() {
    let Some(redis_server) = own_server() else {
        return;
    };
    let url = redis_server.url();
    let name = app_name("frozen");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let mut conn = raw(&url).await;
    let hash = format!("test:runs:{name}");
    // The producer's connection is open before Redis freezes.
    counted
        .call(hash.clone(), "warm".to_string())
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    let pid: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    send_signal(pid, "-STOP");
    let thaw = Thaw(pid);
    let start = Instant::now();
    let failed = counted
        .call(hash.clone(), "order-42".to_string())
        .idempotency_key("order-42")
        .on(&app)
        .add_task()
        .await;
    let took = start.elapsed();
    drop(thaw);
    let err = failed.err().map(|e| e.to_string()).unwrap_or_default();
    eprintln!("frozen Redis: add_task failed after {took:?}: {err}");
    assert!(took < Duration::from_millis(1500), "failed after {took:?}");
    assert!(err.contains("did not answer"), "a timeout error: {err}");
    assert!(err.contains("idempotency_key"), "says how to retry: {err}");

    let retried = counted
        .call(hash.clone(), "order-42".to_string())
        .idempotency_key("order-42")
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let records = scan(&mut conn, &format!("{{{name}}}:t:*")).await;
    // Ready entries start with the task's uuid (see the key layout in docs/redis.md).
    let queued: Vec<Vec<u8>> = conn.lrange(format!("{{{name}}}:q:0"), 0, -1).await.unwrap();
    let copies = queued
        .iter()
        .filter(|entry| entry.starts_with(retried.uuid.to_string().as_bytes()))
        .count();
    eprintln!(
        "frozen Redis: {} records (warm-up included), {copies} queue entries of the retried task",
        records.len()
    );
    assert_eq!(
        records.len(),
        2,
        "the warm-up task and one order-42: {records:?}"
    );
    assert_eq!(copies, 1);
    let worker = app.spawn_worker();
    let done = retried.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    worker.shutdown().await.unwrap();
    let runs = runs_of(&mut conn, &hash).await;
    assert_eq!(runs.get("order-42").copied(), Some(1), "{runs:?}");
    drop(redis_server);
}

// ---------------------------------------------------------------------------------------------
// Chaos

/// Two worker processes, one of them killed (SIGKILL) and replaced five times while 3,000
/// tasks run: no task is lost, and none is acknowledged twice (each uuid is published on the
/// `done` channel exactly once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_and_duplicate_nothing() {
    let Some(base) = server::test_url() else {
        return;
    };
    let url = format!("{base}?lease_ms=500");
    let name = app_name("chaos");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let mut conn = raw(&url).await;
    let hash = format!("test:runs:{name}");
    let total = 3000;
    let kills = 5;
    let started = Instant::now();

    // Every accepted completion, from the `done` channel.
    let (_, plain) = RedisOptions::from_url(&url).unwrap();
    let mut pubsub = redis::Client::open(plain)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(format!("{{{name}}}:done")).await.unwrap();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let completions = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let listener = {
        let completions = completions.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                let payload: String = message.get_payload().unwrap_or_default();
                let mut seen = completions.lock().unwrap();
                for id in payload.split(',').filter(|s| !s.is_empty()) {
                    *seen.entry(id.to_string()).or_default() += 1;
                }
                let _ = progress_tx.send(seen.len());
            }
        })
    };

    let mut workers = tokio::task::block_in_place(|| {
        vec![
            WorkerProcess::start(WORKER_ENV, &url, &name),
            WorkerProcess::start(WORKER_ENV, &url, &name),
        ]
    });
    let calls: Vec<_> = (0..total)
        .map(|i| busy.call(hash.clone(), format!("c{i}"), 4 + (i % 8) as u64))
        .collect();
    let tasks = app.add_tasks(calls).await.unwrap();
    for k in 1..=kills {
        let threshold = total * k / (kills + 1);
        let reached =
            tokio::time::timeout(DEADLINE * 2, progress.wait_for(|n| *n >= threshold)).await;
        assert!(reached.is_ok(), "no progress to {threshold} completions");
        let victim = k % workers.len();
        workers[victim].kill9();
        workers[victim] =
            tokio::task::block_in_place(|| WorkerProcess::start(WORKER_ENV, &url, &name));
    }
    let deadline = Instant::now() + DEADLINE * 3;
    let mut lost = 0;
    for task in &tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        match task.wait(left.max(Duration::from_millis(1))).await {
            Ok(done) if done.status == TaskStatus::Success => {}
            _ => lost += 1,
        }
    }
    // Every completion is published before its record is read as final.
    let _ = tokio::time::timeout(DEADLINE, progress.wait_for(|n| *n >= total - lost)).await;
    drop(workers);
    listener.abort();
    let completions = std::mem::take(&mut *completions.lock().unwrap());
    let twice = completions.values().filter(|n| **n > 1).count();
    let runs = runs_of(&mut conn, &hash).await;
    let rerun = runs.values().filter(|n| **n > 1).count();
    let dead = dead_letter(&mut conn, &name).await;
    eprintln!(
        "chaos: {total} tasks, {kills} workers killed: lost {lost}, completed twice {twice}, dead-lettered {}, run again after a kill {rerun}, in {:?}",
        dead.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0);
    assert_eq!(twice, 0);
    assert!(dead.is_empty(), "{dead:?}");
    assert!(started.elapsed() < Duration::from_secs(50));
    let broken = census(&mut conn, &name).await;
    assert!(
        broken.is_empty(),
        "keys in no queue and without TTL: {broken:?}"
    );
}
