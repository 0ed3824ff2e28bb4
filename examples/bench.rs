//! The benchmark program: throughput and latency of qtasks on a backend.
//!
//! ```text
//! cargo run --release --example bench -- --backend memory --tasks 1000000 --concurrency 256
//! cargo run --release --features redis --example bench -- --backend redis --tasks 200000 --json
//! cargo run --release --features postgres --example bench -- --backend postgres --tasks 100000
//! cargo run --release --features bench-mimalloc --example bench -- --backend memory
//! cargo run --release --features metrics --example bench -- --backend memory
//! cargo run --release --features opentelemetry --example bench -- --backend memory --otel
//! ```
//!
//! With the `metrics` feature the Prometheus recorder is installed before the first task, so
//! every task is recorded as in production; `--otel` (feature `opentelemetry`) runs everything
//! inside a root span with an OpenTelemetry layer (spans built and sampled, then dropped: no
//! exporter), so each task stores its producer's span context and its span continues the trace.
//!
//! Scenarios (`--scenarios` picks some; all by default):
//! - `enqueue`: one `add_task` at a time, awaited;
//! - `enqueue_concurrent`: `--concurrency` producers, one `add_task` at a time each;
//! - `enqueue_unique`: `enqueue_concurrent` with a unique key per call (`.unique_key(..)`, each
//!   key new): what the unique check costs an enqueue; not in the default set;
//! - `enqueue_bulk`: `app.add_tasks` in batches of 1000;
//! - `end_to_end`: a running worker (`--concurrency` lanes) and a bulk producer: from the first
//!   enqueue until the broker has stored the last result;
//! - `pickup`: an idle worker, tasks sent one at a time at a steady `--rate`: enqueue -> start;
//! - `roundtrip`: `add_task` + wait for the result, one at a time;
//! - `idle`: CPU used by an idle worker over two seconds;
//! - `records`: memory held per finished no-op record (RSS after `--tasks` no-op tasks ran, with
//!   their records kept for the result TTL, over the task count); not in the default set;
//! - `list`: the dashboard's listing: `--tasks` queued records, then the newest 50 of status
//!   `new` (and a page 100 pages deep) read `--latency-tasks` times; not in the default set.
//!
//! Every scenario checks that each of its tasks ran exactly once and says so. The method is
//! written in `docs/benchmarks.md`.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use qtasks::backend::{
    Backend, Broker, CancelOutcome, Completion, Delivery, Lease, NewTask, Outcome, QueueStats,
};
use qtasks::prelude::*;
use qtasks::Blob;
use tokio::sync::Notify;

/// With the `bench-mimalloc` feature, the bench runs on mimalloc instead of the system
/// allocator (to measure what allocation costs; the library needs neither).
#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The most tasks one scenario can check.
const MAX_TASKS: usize = 1 << 24;

#[derive(Parser, Debug, Clone)]
#[command(about = "Throughput and latency of qtasks")]
struct Args {
    /// The backend to measure.
    #[arg(long, value_enum, default_value_t = BackendKind::Memory)]
    backend: BackendKind,
    /// Tasks per throughput scenario.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS as i64))]
    tasks: u32,
    /// Worker lanes (`max_tasks_process`) and concurrent producers.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Size of each task's payload, in bytes.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// Tasks in the latency scenarios (`pickup`, `roundtrip`).
    #[arg(long, default_value_t = 2000)]
    latency_tasks: u32,
    /// Tasks per second in the `pickup` scenario.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Redis URL (backend redis); defaults to `QTASKS_REDIS_URL` or redis://127.0.0.1:6379/0.
    #[arg(long)]
    redis_url: Option<String>,
    /// PostgreSQL URL (backend postgres); defaults to `QTASKS_POSTGRES_URL` or
    /// postgres://postgres@127.0.0.1:5432/test?schema=qtasks_bench.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Which scenarios to run (comma separated).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// One JSON object per line and scenario instead of a table.
    #[arg(long)]
    json: bool,
    /// Worker processes for `end_to_end` (0: one worker inside the bench process). With N, the
    /// bench starts N copies of itself as workers on the same backend (Redis) and prints the
    /// aggregate.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Internal: run as one of the worker processes of `--workers`, on this app.
    #[arg(long, hide = true)]
    worker_process: Option<String>,
    /// Trace every task with OpenTelemetry (feature `opentelemetry`): an OpenTelemetry layer,
    /// and the scenarios inside a root span whose context every task carries.
    #[arg(long)]
    otel: bool,
    /// With `--otel`: the OpenTelemetry layer as docs/observability.md recommends for busy
    /// queues (no busy/idle timing, no code location or thread attributes).
    #[arg(long)]
    otel_lean: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum BackendKind {
    Memory,
    Redis,
    Postgres,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
enum Scenario {
    Enqueue,
    EnqueueConcurrent,
    EnqueueUnique,
    EnqueueBulk,
    EndToEnd,
    Pickup,
    Roundtrip,
    Idle,
    Records,
    List,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Enqueue,
        Scenario::EnqueueConcurrent,
        Scenario::EnqueueBulk,
        Scenario::EndToEnd,
        Scenario::Pickup,
        Scenario::Roundtrip,
        Scenario::Idle,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Enqueue => "enqueue",
            Scenario::EnqueueConcurrent => "enqueue_concurrent",
            Scenario::EnqueueUnique => "enqueue_unique",
            Scenario::EnqueueBulk => "enqueue_bulk",
            Scenario::EndToEnd => "end_to_end",
            Scenario::Pickup => "pickup",
            Scenario::Roundtrip => "roundtrip",
            Scenario::Idle => "idle",
            Scenario::Records => "records",
            Scenario::List => "list",
        }
    }
}

// --- what the tasks record ------------------------------------------------------------------

/// One byte per task index: how many times it ran (saturating). A zeroed static: no lock on
/// the tasks' path.
static RUNS: [AtomicU8; MAX_TASKS] = [const { AtomicU8::new(0) }; MAX_TASKS];
/// Enqueue -> start latencies of the `pickup` scenario, in microseconds.
static PICKUP: LazyLock<Mutex<Histogram<u64>>> = LazyLock::new(|| Mutex::new(new_histogram()));

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

fn reset_runs(n: u32) {
    for slot in RUNS.iter().take(n as usize) {
        slot.store(0, Ordering::Relaxed);
    }
}

/// The no-op task: marks its index as run.
#[qtasks::task]
async fn noop(i: u32, data: Blob) -> u32 {
    if let Some(slot) = RUNS.get(i as usize) {
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(1))
        });
    }
    data.len() as u32
}

/// A task with no arguments and no result, for the record-size scenario.
#[qtasks::task]
async fn empty() {}

/// The pickup probe: records how long ago it was enqueued.
#[qtasks::task]
async fn stamp(i: u32, sent_at_ns: u64) {
    let latency_us = (now_ns().saturating_sub(sent_at_ns) / 1000).max(1);
    if let Ok(mut h) = PICKUP.lock() {
        let _ = h.record(latency_us);
    }
    if let Some(slot) = RUNS.get(i as usize) {
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// --- counting stored results ----------------------------------------------------------------

/// A broker wrapper that counts acknowledged successes, so `end_to_end` stops the clock when
/// the last result is stored (a replaced component, as any user can write).
struct CountingBroker {
    inner: Arc<dyn Broker>,
    stored: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

impl Broker for CountingBroker {
    fn enqueue<'a>(
        &'a self,
        tasks: &'a [NewTask],
    ) -> BoxFuture<'a, qtasks::Result<Vec<qtasks::backend::Existing>>> {
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, qtasks::Result<Vec<Delivery>>> {
        self.inner.claim(max)
    }
    fn claim_starting(
        &self,
        max: usize,
        start: usize,
    ) -> BoxFuture<'_, qtasks::Result<(Vec<Delivery>, usize)>> {
        self.inner.claim_starting(max, start)
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
        Box::pin(async move {
            let rejected = self.inner.complete(done).await?;
            let ok = done
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Success(_)))
                .count() as u64;
            let total = self.stored.fetch_add(ok, Ordering::AcqRel) + ok;
            if total >= self.target.load(Ordering::Acquire) {
                self.done.notify_waiters();
            }
            Ok(rejected)
        })
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
    fn lease_duration(&self) -> Option<Duration> {
        self.inner.lease_duration()
    }
    fn started<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
        self.inner.started(leases)
    }
    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, qtasks::Result<Vec<Lease>>> {
        self.inner.renew(leases)
    }
    fn cancel_requests(
        &self,
    ) -> Option<futures::stream::BoxStream<'static, qtasks::backend::CancelRequest>> {
        self.inner.cancel_requests()
    }
}

// --- results --------------------------------------------------------------------------------

struct Report {
    scenario: Scenario,
    tasks: u64,
    elapsed: Duration,
    latency: Option<Histogram<u64>>,
    exactly_once: Option<(u64, u64)>,
    note: String,
}

impl Report {
    fn per_second(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn print(args: &Args, r: &Report) {
    let check = match r.exactly_once {
        Some((0, 0)) => "all ran exactly once".to_string(),
        Some((missing, dup)) => format!("FAILED: {missing} missing, {dup} duplicated"),
        None => String::new(),
    };
    let backend = match args.backend {
        BackendKind::Memory => "memory",
        BackendKind::Redis => "redis",
        BackendKind::Postgres => "postgres",
    };
    if args.json {
        let mut obj = serde_json::json!({
            "scenario": r.scenario.name(),
            "backend": backend,
            "tasks": r.tasks,
            "concurrency": args.concurrency,
            "payload_bytes": args.payload_bytes,
            "elapsed_s": r.elapsed.as_secs_f64(),
            "tasks_per_s": r.per_second().round(),
            "exactly_once": r.exactly_once.map(|(m, d)| m == 0 && d == 0),
        });
        if let Some(h) = &r.latency {
            obj["p50_us"] = h.value_at_quantile(0.5).into();
            obj["p90_us"] = h.value_at_quantile(0.9).into();
            obj["p99_us"] = h.value_at_quantile(0.99).into();
            obj["max_us"] = h.max().into();
        }
        if !r.note.is_empty() {
            obj["note"] = r.note.clone().into();
        }
        println!("{obj}");
    } else {
        let lat = match &r.latency {
            Some(h) => format!(
                "p50 {:>6} us  p90 {:>6} us  p99 {:>6} us  max {:>7} us",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.max()
            ),
            None => String::new(),
        };
        println!(
            "{:<19} {:>9} tasks {:>8.3} s {:>12.0} tasks/s  {lat}  {check} {}",
            r.scenario.name(),
            r.tasks,
            r.elapsed.as_secs_f64(),
            r.per_second(),
            r.note
        );
    }
}

// --- the scenarios --------------------------------------------------------------------------

struct Bench {
    args: Args,
    run_id: String,
    data: Blob,
}

impl Bench {
    /// A fresh app (a fresh key space on Redis) whose broker counts stored results.
    fn app(&self, scenario: Scenario) -> qtasks::Result<(App, Arc<CountingBroker>)> {
        self.app_named(self.app_name(scenario))
    }

    /// The name of a scenario's app in this run.
    fn app_name(&self, scenario: Scenario) -> String {
        format!("bench-{}-{}", self.run_id, scenario.name())
    }

    /// The app called `name`, whose broker counts stored results.
    fn app_named(&self, name: String) -> qtasks::Result<(App, Arc<CountingBroker>)> {
        let mut builder = App::builder()
            .name(name.clone())
            .ignore_env()
            .max_tasks_process(self.args.concurrency)
            .prefetch(self.args.concurrency.max(1024))
            .result_ttl(Duration::from_secs(120));
        if let Some(url) = self.url() {
            builder = builder.broker_url(url);
        }
        // Build once to open the configured backend, then wrap its broker.
        let probe = builder.build()?;
        let base = probe.backend().clone();
        let counting = Arc::new(CountingBroker {
            inner: base.broker.clone(),
            stored: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done: Notify::new(),
        });
        let backend = Backend {
            broker: counting.clone(),
            storage: base.storage.clone(),
            global_config: base.global_config.clone(),
        };
        let app = App::builder()
            .name(name)
            .ignore_env()
            .max_tasks_process(self.args.concurrency)
            .prefetch(self.args.concurrency.max(1024))
            .result_ttl(Duration::from_secs(120))
            .backend(backend)
            .build()?;
        Ok((app, counting))
    }

    /// The URL of the backend measured (`None`: memory).
    fn url(&self) -> Option<String> {
        match self.args.backend {
            BackendKind::Memory => None,
            BackendKind::Redis => Some(
                self.args
                    .redis_url
                    .clone()
                    .or_else(|| std::env::var("QTASKS_REDIS_URL").ok())
                    .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into()),
            ),
            BackendKind::Postgres => Some(
                self.args
                    .postgres_url
                    .clone()
                    .or_else(|| std::env::var("QTASKS_POSTGRES_URL").ok())
                    .unwrap_or_else(|| {
                        "postgres://postgres@127.0.0.1:5432/test?schema=qtasks_bench".into()
                    }),
            ),
        }
    }

    fn calls(&self, n: u32) -> impl Iterator<Item = TaskCall<noop>> + '_ {
        (0..n).map(|i| noop.call(i, self.data.clone()))
    }

    /// Runs a worker until every task of the scenario is stored, then checks exactly-once.
    async fn drain(
        &self,
        app: &App,
        counting: &CountingBroker,
        n: u32,
    ) -> qtasks::Result<(u64, u64)> {
        wait_stored(
            counting,
            n as u64,
            Duration::from_secs(600),
            app.spawn_worker(),
        )
        .await?;
        Ok(exactly_once(n))
    }

    async fn enqueue(&self) -> qtasks::Result<Report> {
        let n = self.args.tasks;
        reset_runs(n);
        let (app, counting) = self.app(Scenario::Enqueue)?;
        let start = Instant::now();
        for call in self.calls(n) {
            call.on(&app).add_task().await?;
        }
        let elapsed = start.elapsed();
        let check = self.drain(&app, &counting, n).await?;
        Ok(report(Scenario::Enqueue, n as u64, elapsed, Some(check)))
    }

    /// `enqueue_concurrent`, or with `unique` a new unique key per call (`enqueue_unique`).
    async fn enqueue_concurrent(&self, unique: bool) -> qtasks::Result<Report> {
        let n = self.args.tasks;
        reset_runs(n);
        let scenario = if unique {
            Scenario::EnqueueUnique
        } else {
            Scenario::EnqueueConcurrent
        };
        let (app, counting) = self.app(scenario)?;
        let producers = self.args.concurrency.max(1) as u32;
        let start = Instant::now();
        let mut joins = Vec::new();
        for p in 0..producers {
            let app = app.clone();
            let data = self.data.clone();
            joins.push(tokio::spawn(async move {
                let mut i = p;
                while i < n {
                    let call = noop.call(i, data.clone()).on(&app);
                    let call = if unique {
                        call.unique_key(i.to_string())
                    } else {
                        call
                    };
                    call.add_task().await?;
                    i += producers;
                }
                Ok::<_, qtasks::Error>(())
            }));
        }
        for j in joins {
            j.await
                .map_err(|e| qtasks::Error::Worker(e.to_string()))??;
        }
        let elapsed = start.elapsed();
        let check = self.drain(&app, &counting, n).await?;
        Ok(report(scenario, n as u64, elapsed, Some(check)))
    }

    async fn enqueue_bulk(&self) -> qtasks::Result<Report> {
        let n = self.args.tasks;
        reset_runs(n);
        let (app, counting) = self.app(Scenario::EnqueueBulk)?;
        let start = Instant::now();
        app.add_tasks(self.calls(n)).await?;
        let elapsed = start.elapsed();
        let check = self.drain(&app, &counting, n).await?;
        Ok(report(
            Scenario::EnqueueBulk,
            n as u64,
            elapsed,
            Some(check),
        ))
    }

    async fn end_to_end(&self) -> qtasks::Result<Report> {
        if self.args.workers > 0 {
            return self.end_to_end_processes().await;
        }
        let n = self.args.tasks;
        reset_runs(n);
        let (app, counting) = self.app(Scenario::EndToEnd)?;
        let worker = app.spawn_worker();
        let start = Instant::now();
        let producer = produce(app.clone(), n, self.data.clone());
        wait_stored(&counting, n as u64, Duration::from_secs(600), worker).await?;
        let elapsed = start.elapsed();
        producer
            .await
            .map_err(|e| qtasks::Error::Worker(e.to_string()))??;
        Ok(report(
            Scenario::EndToEnd,
            n as u64,
            elapsed,
            Some(exactly_once(n)),
        ))
    }

    /// `end_to_end` with `--workers` worker processes: they report what they stored on their
    /// standard output, and at the end which tasks they ran, for the exactly-once check.
    async fn end_to_end_processes(&self) -> qtasks::Result<Report> {
        let n = self.args.tasks;
        reset_runs(n);
        let name = self.app_name(Scenario::EndToEnd);
        let (app, _counting) = self.app_named(name.clone())?;
        let exe = std::env::current_exe().map_err(|e| qtasks::Error::Worker(e.to_string()))?;
        let url = self.url().unwrap_or_default();
        let backend_args: [&str; 2] = match self.args.backend {
            BackendKind::Postgres => ["--backend", "postgres"],
            _ => ["--backend", "redis"],
        };
        let url_flag = match self.args.backend {
            BackendKind::Postgres => "--postgres-url",
            _ => "--redis-url",
        };
        let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
        let mut children = Vec::new();
        for k in 0..self.args.workers {
            let mut child = std::process::Command::new(&exe)
                .args(backend_args)
                .args([url_flag, &url])
                .args(["--concurrency", &self.args.concurrency.to_string()])
                .args(["--worker-process", &name])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| qtasks::Error::Worker(format!("cannot start a worker: {e}")))?;
            let stdout = child.stdout.take();
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                let Some(stdout) = stdout else { return };
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send((k, line)).is_err() {
                        return;
                    }
                }
            });
            children.push(child);
        }
        drop(tx);
        let mut stored = vec![0u64; children.len()];
        let mut ready = 0;
        let mut finished = 0;
        let limit = Instant::now() + Duration::from_secs(600);
        let next_line = |rx: &std::sync::mpsc::Receiver<(usize, String)>| {
            rx.recv_timeout(limit.saturating_duration_since(Instant::now()))
                .map_err(|e| qtasks::Error::Worker(format!("a worker process went quiet: {e}")))
        };
        while ready < children.len() {
            if next_line(&rx)?.1 == "ready" {
                ready += 1;
            }
        }
        let start = Instant::now();
        let producer = produce(app.clone(), n, self.data.clone());
        let elapsed = tokio::task::block_in_place(|| -> qtasks::Result<Duration> {
            while stored.iter().sum::<u64>() < n as u64 {
                let (k, line) = next_line(&rx)?;
                if let Some(count) = line.strip_prefix("stored ") {
                    stored[k] = count.parse().unwrap_or(stored[k]);
                }
            }
            Ok(start.elapsed())
        })?;
        producer
            .await
            .map_err(|e| qtasks::Error::Worker(e.to_string()))??;
        for child in &mut children {
            drop(child.stdin.take()); // the worker stops at the end of its input
        }
        tokio::task::block_in_place(|| -> qtasks::Result<()> {
            while finished < children.len() {
                let (_, line) = next_line(&rx)?;
                if let Some(list) = line.strip_prefix("ran ") {
                    for i in list.split(',').filter_map(|i| i.parse::<usize>().ok()) {
                        if let Some(slot) = RUNS.get(i) {
                            slot.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if line == "done" {
                    finished += 1;
                }
            }
            Ok(())
        })?;
        for mut child in children {
            let _ = child.wait();
        }
        let mut r = report(Scenario::EndToEnd, n as u64, elapsed, Some(exactly_once(n)));
        r.note = format!(
            "{} worker processes, stored per process: {stored:?}",
            self.args.workers
        );
        Ok(r)
    }

    async fn pickup(&self) -> qtasks::Result<Report> {
        let n = self.args.latency_tasks;
        reset_runs(n);
        *PICKUP.lock().expect("histogram lock") = new_histogram();
        let (app, counting) = self.app(Scenario::Pickup)?;
        counting.target.store(n as u64, Ordering::Release);
        let worker = app.spawn_worker();
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(1.0 / self.args.rate.max(1) as f64));
        let start = Instant::now();
        for i in 0..n {
            tick.tick().await;
            stamp.call(i, now_ns()).on(&app).add_task().await?;
        }
        wait_stored(&counting, n as u64, Duration::from_secs(120), worker).await?;
        let elapsed = start.elapsed();
        let mut r = report(Scenario::Pickup, n as u64, elapsed, Some(exactly_once(n)));
        r.latency = Some(PICKUP.lock().expect("histogram lock").clone());
        r.note = format!("at {} tasks/s", self.args.rate);
        Ok(r)
    }

    async fn roundtrip(&self) -> qtasks::Result<Report> {
        let n = self.args.latency_tasks;
        reset_runs(n);
        let (app, _counting) = self.app(Scenario::Roundtrip)?;
        let worker = app.spawn_worker();
        let mut h = new_histogram();
        let start = Instant::now();
        for i in 0..n {
            let t0 = Instant::now();
            let done = noop
                .call(i, self.data.clone())
                .on(&app)
                .timeout(Duration::from_secs(30))
                .add_task()
                .await?;
            let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
            if done.status != TaskStatus::Success {
                return Err(qtasks::Error::Worker(format!(
                    "roundtrip task ended {}",
                    done.status
                )));
            }
        }
        let elapsed = start.elapsed();
        worker.shutdown().await?;
        let mut r = report(
            Scenario::Roundtrip,
            n as u64,
            elapsed,
            Some(exactly_once(n)),
        );
        r.latency = Some(h);
        Ok(r)
    }

    async fn records(&self) -> qtasks::Result<Report> {
        let n = self.args.tasks;
        let (app, counting) = self.app(Scenario::Records)?;
        let before = rss_bytes();
        let start = Instant::now();
        let mut next = 0;
        while next < n {
            let end = (next + App::BULK_CHUNK as u32).min(n);
            app.add_tasks((next..end).map(|_| empty.call())).await?;
            next = end;
        }
        wait_stored(
            &counting,
            n as u64,
            Duration::from_secs(600),
            app.spawn_worker(),
        )
        .await?;
        let elapsed = start.elapsed();
        let held = rss_bytes().saturating_sub(before);
        let stats = app.backend().broker.stats().await?;
        let mut r = report(Scenario::Records, n as u64, elapsed, None);
        r.note = format!(
            "{} B of RSS per finished record ({} records kept)",
            held / n.max(1) as u64,
            stats.by_status.get("success").copied().unwrap_or(0)
        );
        Ok(r)
    }

    /// The dashboard's listing: `--tasks` records of status `new` (bulk enqueued, no worker),
    /// then `--latency-tasks` times the newest 50 of that status (the first page), and as many
    /// times a page 100 pages deep (following the cursor once, then reusing it).
    async fn list(&self) -> qtasks::Result<Report> {
        use qtasks::backend::inspect::TaskQuery;
        let n = self.args.tasks;
        let (app, _counting) = self.app(Scenario::List)?;
        let mut next = 0;
        while next < n {
            let end = (next + App::BULK_CHUNK as u32).min(n);
            app.add_tasks((next..end).map(|_| empty.call())).await?;
            next = end;
        }
        let storage = app.backend().storage.clone();
        let first = TaskQuery {
            status: Some(TaskStatus::New),
            limit: 50,
            ..TaskQuery::default()
        };
        let mut deep = first.clone();
        for _ in 0..100 {
            match storage.list(&deep).await?.next {
                Some(cursor) => deep.cursor = Some(cursor),
                None => break,
            }
        }
        let mut h = new_histogram();
        let mut h_deep = new_histogram();
        let start = Instant::now();
        for _ in 0..self.args.latency_tasks {
            let t0 = Instant::now();
            let page = storage.list(&first).await?;
            let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
            if page.tasks.len() != 50.min(n as usize) {
                return Err(qtasks::Error::Worker(format!(
                    "a page of {} tasks, not 50",
                    page.tasks.len()
                )));
            }
            let t0 = Instant::now();
            storage.list(&deep).await?;
            let _ = h_deep.record((t0.elapsed().as_micros() as u64).max(1));
        }
        let elapsed = start.elapsed();
        let mut r = report(
            Scenario::List,
            self.args.latency_tasks as u64,
            elapsed,
            None,
        );
        r.note = format!(
            "{n} records; newest 50 of status new: p50 {} us, p99 {} us; 100 pages deep: p50 {} us, p99 {} us",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h_deep.value_at_quantile(0.5),
            h_deep.value_at_quantile(0.99)
        );
        r.latency = Some(h);
        Ok(r)
    }

    async fn idle(&self) -> qtasks::Result<Report> {
        let (app, _counting) = self.app(Scenario::Idle)?;
        let worker = app.spawn_worker();
        tokio::time::sleep(Duration::from_millis(200)).await; // let it settle into its wait
        let window = Duration::from_secs(2);
        let cpu0 = process_cpu();
        tokio::time::sleep(window).await; // measuring idleness: nothing to wait on but time
        let cpu = process_cpu().saturating_sub(cpu0);
        worker.shutdown().await?;
        let mut r = report(Scenario::Idle, 0, window, None);
        r.note = format!(
            "cpu {:.2} % of one core while idle",
            100.0 * cpu.as_secs_f64() / window.as_secs_f64()
        );
        Ok(r)
    }
}

/// The bulk producer of `end_to_end`: `n` no-op calls in batches of [`App::BULK_CHUNK`]
/// (in the caller's span: with `--otel`, every task carries the root span's context).
fn produce(app: App, n: u32, data: Blob) -> tokio::task::JoinHandle<qtasks::Result<()>> {
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let mut next = 0;
        while next < n {
            let end = (next + App::BULK_CHUNK as u32).min(n);
            let calls: Vec<_> = (next..end).map(|i| noop.call(i, data.clone())).collect();
            app.add_tasks(calls).await?;
            next = end;
        }
        Ok(())
    }))
}

/// This process's resident set size, in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn report(
    scenario: Scenario,
    tasks: u64,
    elapsed: Duration,
    exactly_once: Option<(u64, u64)>,
) -> Report {
    Report {
        scenario,
        tasks,
        elapsed,
        latency: None,
        exactly_once,
        note: String::new(),
    }
}

/// Waits until `n` results are stored (showing progress on long runs), then stops the worker.
async fn wait_stored(
    counting: &CountingBroker,
    n: u64,
    limit: Duration,
    worker: qtasks::WorkerHandle,
) -> qtasks::Result<()> {
    counting.target.store(n, Ordering::Release);
    let deadline = Instant::now() + limit;
    let mut last_report = Instant::now();
    loop {
        let notified = counting.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let stored = counting.stored.load(Ordering::Acquire);
        if stored >= n {
            break;
        }
        if Instant::now() > deadline {
            worker.signal_shutdown();
            return Err(qtasks::Error::Worker(format!(
                "only {stored} of {n} tasks finished within {limit:?}"
            )));
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("  ... {stored} / {n} stored");
            last_report = Instant::now();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
    }
    worker.shutdown().await
}

/// (missing, duplicated) among the current scenario's tasks.
fn exactly_once(n: u32) -> (u64, u64) {
    let mut missing = 0;
    let mut duplicated = 0;
    for slot in RUNS.iter().take(n as usize) {
        match slot.load(Ordering::Relaxed) {
            0 => missing += 1,
            1 => {}
            _ => duplicated += 1,
        }
    }
    (missing, duplicated)
}

/// CPU time (user + system) this process has used.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rsplit(')').next() else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// One worker process of `--workers`: runs a worker on app `name`, prints `ready`, then
/// `stored N` as results are stored; at the end of its standard input it stops and prints
/// the tasks it ran (`ran i,j,..`) and `done`.
async fn worker_process(bench: &Bench, name: String) -> qtasks::Result<()> {
    let (app, counting) = bench.app_named(name)?;
    counting.target.store(0, Ordering::Release);
    let worker = app.spawn_worker();
    println!("ready");
    let reporter = {
        let counting = counting.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                let notified = counting.done.notified();
                tokio::pin!(notified);
                // Registered before reading, so a store in between wakes it.
                notified.as_mut().enable();
                let now = counting.stored.load(Ordering::Acquire);
                if now != last {
                    println!("stored {now}");
                    last = now;
                }
                notified.await;
            }
        })
    };
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await
    .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    worker.shutdown().await?;
    reporter.abort();
    let ran: Vec<usize> = RUNS
        .iter()
        .enumerate()
        .flat_map(|(i, slot)| std::iter::repeat_n(i, slot.load(Ordering::Relaxed) as usize))
        .collect();
    for chunk in ran.chunks(10_000) {
        let list: Vec<String> = chunk.iter().map(usize::to_string).collect();
        println!("ran {}", list.join(","));
    }
    println!("done");
    Ok(())
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    let args = Args::parse();
    #[cfg(feature = "metrics")]
    qtasks::metrics::install()?;
    if args.otel {
        #[cfg(feature = "opentelemetry")]
        {
            use qtasks::trace::opentelemetry::trace::TracerProvider as _;
            use tracing::Instrument;
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::Layer;
            let provider =
                qtasks::trace::opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
            let full = !args.otel_lean;
            let otel = qtasks::trace::tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("qtasks-bench"))
                .with_tracked_inactivity(full)
                .with_location(full)
                .with_threads(full)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
            let logs = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
            let subscriber = tracing_subscriber::registry().with(otel).with(logs);
            tracing::subscriber::set_global_default(subscriber)
                .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
            return run(args).instrument(tracing::info_span!("bench")).await;
        }
        #[cfg(not(feature = "opentelemetry"))]
        return Err(qtasks::Error::Worker(
            "--otel needs the `opentelemetry` feature".into(),
        ));
    }
    // Logs on stderr, so that the report on stdout stays clean: RUST_LOG, default warn.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    run(args).await
}

async fn run(args: Args) -> qtasks::Result<()> {
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let bench = Bench {
        run_id: format!("{}-{}", std::process::id(), now_ns() % 1_000_000),
        data: Blob::from("x".repeat(args.payload_bytes)),
        args: args.clone(),
    };
    if !args.json {
        println!(
            "qtasks bench: backend {:?}, {} tasks, concurrency {}, payload {} B, {} cores",
            args.backend,
            args.tasks,
            args.concurrency,
            args.payload_bytes,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
    }
    if let Some(name) = args.worker_process.clone() {
        return worker_process(&bench, name).await;
    }
    let mut failed = false;
    for s in scenarios {
        let r = match s {
            Scenario::Enqueue => bench.enqueue().await?,
            Scenario::EnqueueConcurrent => bench.enqueue_concurrent(false).await?,
            Scenario::EnqueueUnique => bench.enqueue_concurrent(true).await?,
            Scenario::EnqueueBulk => bench.enqueue_bulk().await?,
            Scenario::EndToEnd => bench.end_to_end().await?,
            Scenario::Pickup => bench.pickup().await?,
            Scenario::Roundtrip => bench.roundtrip().await?,
            Scenario::Idle => bench.idle().await?,
            Scenario::Records => bench.records().await?,
            Scenario::List => bench.list().await?,
        };
        failed |= matches!(r.exactly_once, Some((m, d)) if m + d > 0);
        print(&args, &r);
    }
    if failed {
        return Err(qtasks::Error::Worker(
            "some tasks did not run exactly once".into(),
        ));
    }
    Ok(())
}
