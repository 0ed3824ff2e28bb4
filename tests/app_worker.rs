//! The foundation: enqueue, run, read results; concurrency limit, priority order, sync tasks
//! on the blocking pool, panics, bad input, timeouts, graceful shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use common::{builder, DEADLINE};
use qtasks::backend::NewTask;
use qtasks::prelude::*;
use qtasks::{Error, Payload};
use tokio::sync::{watch, Notify};

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task(name = "math.div")]
fn div(a: i64, b: i64) -> Result<i64, std::io::Error> {
    if b == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "division by zero",
        ));
    }
    Ok(a / b)
}

#[tokio::test]
async fn async_and_sync_tasks_return_typed_results() {
    let app = builder("typed").build().unwrap();
    let worker = app.spawn_worker();

    let task = add.call(2, 3).on(&app).add_task().await.unwrap();
    assert_eq!(task.status, TaskStatus::New);
    assert_eq!(task.task_name, "add");
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(5));
    assert_eq!(done.uuid, task.uuid);
    assert_eq!(done.attempts, 1);

    let ok = div
        .call(9, 3)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!((ok.status, ok.returning), (TaskStatus::Success, Some(3)));

    let failed = div
        .call(1, 0)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Error);
    assert_eq!(failed.returning, None);
    assert!(
        failed
            .traceback
            .as_deref()
            .unwrap()
            .contains("division by zero"),
        "{failed:?}"
    );

    let stored = app.get(ok.uuid).await.unwrap().unwrap();
    assert_eq!(stored.task_name, "math.div");
    assert_eq!(stored.decode::<i64>().unwrap().returning, Some(3));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn dynamic_add_task_by_name_accepts_named_and_positional_args() {
    let app = builder("by-name").build().unwrap();
    let worker = app.spawn_worker();
    let named = app
        .add_task("add", serde_json::json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    let positional = app.add_task("add", (1, 2)).await.unwrap();
    let named = app
        .wait(named.uuid, DEADLINE)
        .await
        .unwrap()
        .decode::<i64>()
        .unwrap();
    let positional = app
        .wait(positional.uuid, DEADLINE)
        .await
        .unwrap()
        .decode::<i64>()
        .unwrap();
    assert_eq!(named.returning, Some(42));
    assert_eq!(positional.returning, Some(3));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_task_name_fails_fast_at_the_producer() {
    let app = builder("unknown-producer").build().unwrap();
    let err = app.add_task("no.such.task", ()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnknownTask { .. }), "{err:?}");
    assert!(
        msg.contains("no.such.task") && msg.contains("math.div"),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_task_and_bad_arguments_end_in_error_and_the_worker_goes_on() {
    let app = builder("bad-input").build().unwrap();
    let worker = app.spawn_worker();

    // A task name this worker does not know (as sent by another program).
    let stray = NewTask {
        uuid: qtasks::Uuid::new_v4(),
        task_name: "billing.charge".into(),
        priority: 0,
        args: Payload::encode(&(1,)).unwrap(),
        created_at: SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    };
    app.backend()
        .broker
        .enqueue(std::slice::from_ref(&stray))
        .await
        .unwrap();
    let stray = app.wait(stray.uuid, DEADLINE).await.unwrap();
    assert_eq!(stray.status, TaskStatus::Error);
    let tb = stray.traceback.unwrap();
    assert!(
        tb.contains("billing.charge") && tb.contains("no task named"),
        "{tb}"
    );

    // Arguments of the wrong type: refused at enqueue, naming the argument...
    let refused = app
        .add_task("add", serde_json::json!({"a": "two", "b": 3}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("\"add\"") && refused.contains("\"a\"") && refused.contains("i64"),
        "{refused}"
    );
    // ...and, written by another producer that does not check, an error at the worker.
    let raw = |args: serde_json::Value| NewTask {
        uuid: qtasks::Uuid::new_v4(),
        task_name: "add".into(),
        priority: 0,
        args: Payload::encode(&args).unwrap(),
        created_at: SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    };
    let bad = raw(serde_json::json!({"a": "two", "b": 3}));
    app.backend()
        .broker
        .enqueue(std::slice::from_ref(&bad))
        .await
        .unwrap();
    let bad = app.wait(bad.uuid, DEADLINE).await.unwrap();
    assert_eq!(bad.status, TaskStatus::Error);
    let tb = bad.traceback.unwrap();
    assert!(
        tb.contains("\"add\"") && tb.contains("a: i64, b: i64"),
        "{tb}"
    );

    // Missing arguments: the same, refused at enqueue and an error at the worker.
    assert!(app
        .add_task("add", serde_json::json!({"a": 1}))
        .await
        .is_err());
    let missing = raw(serde_json::json!({"a": 1}));
    app.backend()
        .broker
        .enqueue(std::slice::from_ref(&missing))
        .await
        .unwrap();
    let missing = app.wait(missing.uuid, DEADLINE).await.unwrap();
    assert_eq!(missing.status, TaskStatus::Error);
    assert!(missing.traceback.unwrap().contains("a: i64, b: i64"));

    // The worker is still running.
    let ok = add
        .call(1, 1)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(ok.returning, Some(2));
    worker.shutdown().await.unwrap();
}

#[qtasks::task]
async fn async_panics(msg: String) -> u8 {
    panic!("{msg}")
}

#[qtasks::task]
fn sync_panics(msg: String) -> u8 {
    panic!("{msg}")
}

#[tokio::test]
async fn a_panic_becomes_status_error_with_its_message() {
    let app = builder("panics").build().unwrap();
    let worker = app.spawn_worker();
    let a = async_panics
        .call("async boom".into())
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    let s = sync_panics
        .call("sync boom".into())
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(a.status, TaskStatus::Error);
    assert!(a.traceback.unwrap().contains("panicked: async boom"));
    assert_eq!(s.status, TaskStatus::Error);
    assert!(s.traceback.unwrap().contains("panicked: sync boom"));
    let ok = add
        .call(2, 2)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(ok.returning, Some(4));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn wait_with_a_timeout_names_the_task_and_its_status() {
    let app = builder("no-worker").build().unwrap();
    let task = add.call(1, 2).on(&app).add_task().await.unwrap();
    let err = task.wait(Duration::from_millis(50)).await.unwrap_err();
    match &err {
        Error::Timeout {
            task: name,
            uuid,
            status,
            ..
        } => {
            assert_eq!(name, "add");
            assert_eq!(*uuid, task.uuid);
            assert_eq!(*status, TaskStatus::New);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("worker"), "{err}");
    let err = add
        .call(1, 2)
        .on(&app)
        .timeout(Duration::from_millis(20))
        .add_task()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }));
}

// --- concurrency limit -------------------------------------------------------------------

static RUNNING: LazyLock<watch::Sender<usize>> = LazyLock::new(|| watch::channel(0).0);
static FINISHED: LazyLock<watch::Sender<usize>> = LazyLock::new(|| watch::channel(0).0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static GATE: Notify = Notify::const_new();

#[qtasks::task]
async fn gated() -> usize {
    let now = RUNNING.send_modify_and_get(1);
    PEAK.fetch_max(now, Ordering::SeqCst);
    GATE.notified().await;
    RUNNING.send_modify(|n| *n -= 1);
    FINISHED.send_modify(|n| *n += 1);
    now
}

trait SendModifyAndGet {
    fn send_modify_and_get(&self, delta: usize) -> usize;
}

impl SendModifyAndGet for watch::Sender<usize> {
    fn send_modify_and_get(&self, delta: usize) -> usize {
        let mut out = 0;
        self.send_modify(|n| {
            *n += delta;
            out = *n;
        });
        out
    }
}

#[tokio::test]
async fn no_more_than_max_tasks_process_run_at_once() {
    let app = builder("limit")
        .max_tasks_process(3)
        .prefetch(2)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..9 {
        tasks.push(gated.call().on(&app).add_task().await.unwrap());
    }
    let worker = app.spawn_worker();
    let mut running = RUNNING.subscribe();
    let mut finished = FINISHED.subscribe();
    for round in 0..3 {
        tokio::time::timeout(DEADLINE, finished.wait_for(|n| *n == 3 * round))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(DEADLINE, running.wait_for(|n| *n == 3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(PEAK.load(Ordering::SeqCst), 3, "round {round}");
        // Let the three running tasks finish; the next three start.
        for _ in 0..3 {
            GATE.notify_one();
        }
    }
    for t in tasks {
        let done = t.wait(DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success);
        assert!(done.returning.unwrap() <= 3);
    }
    assert_eq!(PEAK.load(Ordering::SeqCst), 3);
    worker.shutdown().await.unwrap();
}

// --- priority order ----------------------------------------------------------------------

static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[qtasks::task]
async fn record(tag: String) {
    ORDER.lock().unwrap().push(tag);
}

#[tokio::test]
async fn lower_priority_numbers_run_first_and_fifo_within_one_priority() {
    let app = builder("priority")
        .max_tasks_process(1)
        .prefetch(1)
        .build()
        .unwrap();
    let plan = [
        (5, "p5-a"),
        (1, "p1-a"),
        (3, "p3-a"),
        (1, "p1-b"),
        (0, "p0-a"),
        (5, "p5-b"),
        (-2, "pm2-a"),
    ];
    let mut last = None;
    for (priority, tag) in plan {
        last = Some(
            record
                .call(tag.to_string())
                .priority(priority)
                .on(&app)
                .add_task()
                .await
                .unwrap(),
        );
    }
    let worker = app.spawn_worker();
    // The last task enqueued has priority 5 and runs last.
    last.unwrap().wait(DEADLINE).await.unwrap();
    let order = ORDER.lock().unwrap().clone();
    assert_eq!(
        order,
        ["pm2-a", "p0-a", "p1-a", "p1-b", "p3-a", "p5-a", "p5-b"]
    );
    worker.shutdown().await.unwrap();
}

#[qtasks::task(priority = 7)]
async fn prioritized() -> i32 {
    7
}

#[tokio::test]
async fn priority_comes_from_the_call_then_the_task_then_the_app() {
    let app = builder("priority-default")
        .task_default_priority(4)
        .build()
        .unwrap();
    assert_eq!(
        prioritized
            .call()
            .on(&app)
            .add_task()
            .await
            .unwrap()
            .priority,
        7
    );
    assert_eq!(
        prioritized
            .call()
            .priority(-1)
            .on(&app)
            .add_task()
            .await
            .unwrap()
            .priority,
        -1
    );
    assert_eq!(
        add.call(1, 1).on(&app).add_task().await.unwrap().priority,
        4
    );
}

// --- sync tasks do not block async ones ---------------------------------------------------

type Handoff = (
    Mutex<Option<std::sync::mpsc::Sender<()>>>,
    Mutex<Option<std::sync::mpsc::Receiver<()>>>,
);

static HANDOFF: LazyLock<Handoff> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel();
    (Mutex::new(Some(tx)), Mutex::new(Some(rx)))
});

/// Blocks its thread until the async task below has run.
#[qtasks::task]
fn blocks_until_signalled() -> bool {
    let rx = HANDOFF.1.lock().unwrap().take().unwrap();
    rx.recv_timeout(Duration::from_secs(10)).is_ok()
}

#[qtasks::task]
async fn signals() {
    if let Some(tx) = HANDOFF.0.lock().unwrap().take() {
        let _ = tx.send(());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocking_sync_task_does_not_block_async_tasks() {
    let app = builder("sync-blocking")
        .max_tasks_process(2)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let blocker = blocks_until_signalled
        .call()
        .on(&app)
        .add_task()
        .await
        .unwrap();
    // Make sure the sync task is running before the async one is even enqueued.
    let mut status = TaskStatus::New;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while status != TaskStatus::Process && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
        status = app.get(blocker.uuid).await.unwrap().unwrap().status;
    }
    assert_eq!(status, TaskStatus::Process);
    let signal = signals
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(signal.status, TaskStatus::Success);
    let blocker = blocker.wait(DEADLINE).await.unwrap();
    assert_eq!(
        blocker.returning,
        Some(true),
        "the sync task never saw the async task run"
    );
    worker.shutdown().await.unwrap();
}

// --- graceful shutdown -------------------------------------------------------------------

static STARTED: Notify = Notify::const_new();
static RELEASE: Notify = Notify::const_new();

#[qtasks::task]
async fn slow_but_finishes() -> String {
    STARTED.notify_one();
    RELEASE.notified().await;
    "finished".to_string()
}

#[tokio::test]
async fn graceful_shutdown_lets_a_running_task_finish() {
    let app = builder("graceful").grace_period(DEADLINE).build().unwrap();
    let worker = app.spawn_worker();
    let task = slow_but_finishes.call().on(&app).add_task().await.unwrap();
    tokio::time::timeout(DEADLINE, STARTED.notified())
        .await
        .unwrap();
    let stopping = tokio::spawn(worker.shutdown());
    // The worker is waiting for the running task; release it.
    RELEASE.notify_one();
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let done = app
        .get(task.uuid)
        .await
        .unwrap()
        .unwrap()
        .decode::<String>()
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning.as_deref(), Some("finished"));
}

static NEVER: Notify = Notify::const_new();
static HUNG_STARTED: Notify = Notify::const_new();

#[qtasks::task]
async fn hangs() {
    HUNG_STARTED.notify_one();
    NEVER.notified().await;
}

#[tokio::test]
async fn tasks_past_the_grace_period_return_to_the_queue_uncounted() {
    let app = builder("grace-over")
        .max_tasks_process(1)
        .prefetch(3)
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let hung = hangs.call().on(&app).add_task().await.unwrap();
    let queued = add.call(1, 1).on(&app).add_task().await.unwrap();
    let worker = app.spawn_worker();
    tokio::time::timeout(DEADLINE, HUNG_STARTED.notified())
        .await
        .unwrap();
    worker.shutdown().await.unwrap();
    let hung = app.get(hung.uuid).await.unwrap().unwrap();
    assert_eq!(hung.status, TaskStatus::New, "{hung:?}");
    assert_eq!(hung.attempts, 0, "an interrupted attempt is not counted");
    let queued = app.get(queued.uuid).await.unwrap().unwrap();
    assert_eq!(queued.status, TaskStatus::New);
    // Another worker picks the prefetched task up (the hung one is cancelled first).
    assert_eq!(
        app.cancel(hung.uuid, "hangs").await.unwrap(),
        CancelOutcome::Cancelled
    );
    let worker = app.spawn_worker();
    let queued = app.wait(queued.uuid, DEADLINE).await.unwrap();
    assert_eq!(queued.status, TaskStatus::Success);
    worker.signal_shutdown();
}
