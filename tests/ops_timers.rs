//! Timers: intervals and cron enqueue from inside the app; one fire per tick across instances
//! sharing a backend; missed ticks skipped unless catch-up is asked.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::DEADLINE;
use futures::future::BoxFuture;
use qtasks::backend::{
    Backend, Broker, CancelOutcome, Completion, Delivery, Lease, NewTask, QueueStats,
};
use qtasks::memory::MemoryBackend;
use qtasks::timer::{Schedule, Timer};
use tokio::sync::mpsc;
use uuid::Uuid;

#[qtasks::task]
async fn beat(at_ms: u64) -> u64 {
    at_ms
}

/// A broker that reports every enqueued task on a channel, then passes it on.
struct Reporting {
    inner: Arc<dyn Broker>,
    tx: mpsc::UnboundedSender<NewTask>,
}

impl Broker for Reporting {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [NewTask],
    ) -> BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Existing>>> {
        for t in tasks {
            let _ = self.tx.send(t.clone());
        }
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, qtasks::Result<Vec<Delivery>>> {
        self.inner.claim(max)
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
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

fn reporting(tx: mpsc::UnboundedSender<NewTask>) -> impl FnOnce(Backend) -> Backend + Send {
    move |b: Backend| Backend {
        broker: Arc::new(Reporting {
            inner: b.broker,
            tx,
        }),
        ..b
    }
}

fn tick_of(task: &NewTask) -> u64 {
    let args: serde_json::Value = task.args.decode().unwrap();
    args["at_ms"].as_u64().unwrap()
}

async fn next_tick(rx: &mut mpsc::UnboundedReceiver<NewTask>) -> u64 {
    let task = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a tick within the deadline")
        .expect("channel open");
    assert_eq!(task.task_name, "beat");
    tick_of(&task)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn beat_timer(name: &str, schedule: Schedule) -> Timer {
    Timer::with(name, schedule, |tick| beat.call(tick.unix_millis()))
}

#[tokio::test]
async fn an_interval_enqueues_on_each_aligned_tick() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = common::builder("timers-interval")
        .map_backend(reporting(tx))
        .timer(beat_timer(
            "beat",
            Schedule::every(Duration::from_millis(50)),
        ))
        .build()
        .unwrap();
    let started = now_ms();
    let timers = app.spawn_timers();
    let ticks = [
        next_tick(&mut rx).await,
        next_tick(&mut rx).await,
        next_tick(&mut rx).await,
    ];
    timers.shutdown().await;
    assert!(ticks[0] > started, "no tick from before the start is fired");
    for t in ticks {
        assert_eq!(t % 50, 0, "ticks are aligned to the epoch");
    }
    assert_eq!(ticks[1] - ticks[0], 50);
    assert_eq!(ticks[2] - ticks[1], 50);
}

#[tokio::test]
async fn a_named_timer_enqueues_by_task_name() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = common::builder("timers-named")
        .map_backend(reporting(tx))
        .timer(Timer::named(
            "by-name",
            Schedule::every(Duration::from_millis(20)),
            "beat",
            serde_json::json!({"at_ms": 1}),
        ))
        .build()
        .unwrap();
    let timers = app.spawn_timers();
    assert_eq!(next_tick(&mut rx).await, 1);
    timers.shutdown().await;
}

#[tokio::test]
async fn a_cron_timer_fires_on_whole_seconds() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = common::builder("timers-cron")
        .map_backend(reporting(tx))
        .timer(beat_timer(
            "every-second",
            Schedule::cron("* * * * * *").unwrap(),
        ))
        .build()
        .unwrap();
    let timers = app.spawn_timers();
    let tick = next_tick(&mut rx).await;
    timers.shutdown().await;
    assert_eq!(tick % 1000, 0);
}

#[tokio::test]
async fn two_instances_on_one_backend_fire_each_tick_once() {
    let shared = Arc::new(MemoryBackend::new(Duration::from_secs(60)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let instance = |n: usize| {
        common::builder(&format!("timers-shared-{n}"))
            .name("timers-shared") // one app, two running instances
            .backend(shared.backend())
            .map_backend(reporting(tx.clone()))
            .timer(beat_timer(
                "beat",
                Schedule::every(Duration::from_millis(100)),
            ))
            .build()
            .unwrap()
    };
    let (a, b) = (instance(1), instance(2));
    let (ta, tb) = (a.spawn_timers(), b.spawn_timers());
    let mut ticks = Vec::new();
    while ticks.len() < 6 {
        ticks.push(next_tick(&mut rx).await);
    }
    ta.shutdown().await;
    tb.shutdown().await;
    while let Ok(task) = rx.try_recv() {
        ticks.push(tick_of(&task));
    }
    let unique: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(unique.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    let sorted: Vec<u64> = unique.into_iter().collect();
    for pair in sorted.windows(2) {
        assert_eq!(pair[1] - pair[0], 100, "no tick was lost: {sorted:?}");
    }
    assert_eq!(
        shared.queued(),
        ticks.len(),
        "the shared queue holds one task per tick"
    );
}

#[tokio::test]
async fn missed_ticks_are_skipped_unless_catch_up_is_asked() {
    let period = Duration::from_millis(100);
    let shared = Arc::new(MemoryBackend::new(Duration::from_secs(60)));
    // The timer last fired ten periods ago: the app was down since.
    let last = (now_ms() / 100 - 10) * 100;
    let global = shared.backend().global_config;
    for name in ["skip", "catch"] {
        global
            .set(
                &format!("qtasks:timers-missed:timer:{name}:last"),
                &last.to_string(),
            )
            .await
            .unwrap();
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let skipping = common::builder("timers-missed")
        .backend(shared.backend())
        .map_backend(reporting(tx))
        .timer(beat_timer("skip", Schedule::every(period)))
        .build()
        .unwrap();
    let started = now_ms();
    let timers = skipping.spawn_timers();
    let first = next_tick(&mut rx).await;
    timers.shutdown().await;
    assert!(
        first > started,
        "no missed tick fired: {first} <= {started}"
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let catching = common::builder("timers-missed")
        .backend(shared.backend())
        .map_backend(reporting(tx))
        .timer(beat_timer("catch", Schedule::every(period)).catch_up(3))
        .build()
        .unwrap();
    let started = now_ms();
    let timers = catching.spawn_timers();
    let caught = [
        next_tick(&mut rx).await,
        next_tick(&mut rx).await,
        next_tick(&mut rx).await,
    ];
    let after = next_tick(&mut rx).await;
    timers.shutdown().await;
    assert!(
        caught.iter().all(|t| *t <= started && *t > last),
        "the three latest missed ticks first: {caught:?} (start {started}, last {last})"
    );
    assert_eq!(caught[1] - caught[0], 100);
    assert_eq!(caught[2] - caught[1], 100);
    assert!(after > started, "then the regular ticks: {after}");
}

#[tokio::test]
async fn run_until_starts_timers_with_the_worker() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = common::builder("timers-run")
        .map_backend(reporting(tx))
        .timer(beat_timer(
            "beat",
            Schedule::every(Duration::from_millis(30)),
        ))
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let app = app.clone();
        async move {
            app.run_until(async {
                let _ = stop_rx.await;
            })
            .await
        }
    });
    let enqueued = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    // The worker started with the timers runs the task.
    let done = app.wait(enqueued.uuid, DEADLINE).await.unwrap();
    assert_eq!(
        done.returning.unwrap().decode::<u64>().unwrap(),
        tick_of(&enqueued)
    );
    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();
}

#[test]
fn a_timer_of_a_task_the_app_does_not_serve_fails_the_build() {
    let err = common::builder("timers-unknown")
        .timer(Timer::named(
            "ghost",
            Schedule::every(Duration::from_secs(1)),
            "no.such.task",
            serde_json::json!([]),
        ))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "timer \"ghost\" enqueues task \"no.such.task\", which this app does not serve"
        ),
        "{err}"
    );
}

#[test]
fn duplicate_timer_names_fail_the_build() {
    let err = common::builder("timers-dup")
        .timer(beat_timer("same", Schedule::every(Duration::from_secs(1))))
        .timer(beat_timer("same", Schedule::every(Duration::from_secs(2))))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("two timers are named \"same\""), "{err}");
}

/// Two instances of one app, each with its own Redis connection (as two processes would
/// have), fire each tick once.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_fire_each_tick_once() {
    let Some(url) = qtasks::redis::server::test_url() else {
        return;
    };
    let name = format!("ops-timers-{}", Uuid::new_v4().simple());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let instance = || {
        common::builder(&name)
            .broker_url(&url)
            .map_backend(reporting(tx.clone()))
            .timer(beat_timer(
                "beat",
                Schedule::every(Duration::from_millis(100)),
            ))
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let (ta, tb) = (a.spawn_timers(), b.spawn_timers());
    let mut ticks = Vec::new();
    while ticks.len() < 6 {
        ticks.push(next_tick(&mut rx).await);
    }
    ta.shutdown().await;
    tb.shutdown().await;
    while let Ok(task) = rx.try_recv() {
        ticks.push(tick_of(&task));
    }
    let unique: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(unique.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    let stats = a.backend().broker.stats().await.unwrap();
    assert_eq!(
        stats.ready_by_priority.values().sum::<u64>(),
        ticks.len() as u64,
        "the shared Redis queue holds one task per tick"
    );
}
