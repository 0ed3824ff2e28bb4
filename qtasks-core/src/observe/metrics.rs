//! The metrics qtasks records (feature `metrics`), through the [`metrics`] facade: whatever
//! recorder the program installs gets them ([`prometheus::install`](super::prometheus::install)
//! installs the Prometheus one the dashboard and `qtasks::metrics::serve` export).
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `qtasks_tasks_enqueued_total` | counter | `task` | tasks written to the broker |
//! | `qtasks_tasks_started_total` | counter | `task` | attempts started |
//! | `qtasks_tasks_finished_total` | counter | `task`, `status` | tasks that ended: `success`, `error`, `cancel` |
//! | `qtasks_tasks_retried_total` | counter | `task` | attempts that failed and will run again |
//! | `qtasks_tasks_dead_lettered_total` | counter | `task`, `reason` | tasks sent to the dead-letter |
//! | `qtasks_task_queue_seconds` | histogram | `task` | enqueue to the start of the first attempt |
//! | `qtasks_task_execution_seconds` | histogram | `task`, `status` | one attempt, start to outcome |
//! | `qtasks_tasks_executing` | gauge | | attempts running in this process |
//! | `qtasks_worker_heartbeats_total` | counter | | heartbeats the workers of this process recorded |
//! | `qtasks_backend_errors_total` | counter | `op` | failed backend round trips, by operation |
//! | `qtasks_queue_depth` | gauge | `priority` | ready tasks per priority (per scrape) |
//! | `qtasks_tasks_scheduled` | gauge | | delayed tasks and retries waiting (per scrape) |
//! | `qtasks_tasks_inflight` | gauge | | tasks claimed by any worker (per scrape) |
//! | `qtasks_dead_letter_size` | gauge | | entries in the dead-letter (per scrape) |
//! | `qtasks_workers_live` | gauge | | workers with a live heartbeat (per scrape) |
//!
//! The per-scrape gauges are set by [`refresh`], from one `Broker::stats` call and one
//! `GlobalConfig::live_workers` call, never per task.
//!
//! **Label cardinality.** The `task` label takes at most [`task_label_limit`] distinct names
//! per process (default [`DEFAULT_TASK_LABEL_LIMIT`]); tasks of further names are counted under
//! `task="other"`, so enqueues by name with arbitrary names cannot grow the series without
//! bound.
//!
//! **Cost.** Each name's handles are registered once and kept; a task then costs a lookup in a
//! read-locked map, two clock reads and a few atomic adds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::backend::{Backend, DeadLetterReason, Delivery, NewTask, Outcome};

/// The label of tasks beyond the cardinality cap.
pub const OTHER: &str = "other";

/// How many distinct task names get a label of their own unless told otherwise.
pub const DEFAULT_TASK_LABEL_LIMIT: usize = 200;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_TASK_LABEL_LIMIT);
/// Bumped when a recorder is installed: handles registered before (with no recorder, they
/// record nothing) are registered again.
static GENERATION: AtomicUsize = AtomicUsize::new(0);
static HANDLES: RwLock<Option<Handles>> = RwLock::new(None);

/// Sets how many distinct task names get a `task` label of their own (the rest share
/// `task="other"`). Names already labelled keep their label.
pub fn set_task_label_limit(limit: usize) {
    LIMIT.store(limit, Ordering::Relaxed);
}

/// How many distinct task names get a `task` label of their own.
pub fn task_label_limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Registers every handle again on next use: call it after installing a `metrics` recorder
/// of your own once tasks have run ([`prometheus::install`](super::prometheus::install) does).
/// Handles registered before any recorder was installed record nothing.
pub fn reset_handles() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The handles of every labelled name, and of `other`.
struct Handles {
    generation: usize,
    by_name: FxHashMap<Box<str>, Arc<TaskMetrics>>,
    other: Option<Arc<TaskMetrics>>,
    heartbeats: Counter,
}

/// One task label's handles.
struct TaskMetrics {
    label: Arc<str>,
    enqueued: Counter,
    started: Counter,
    success: Counter,
    error: Counter,
    cancel: Counter,
    retried: Counter,
    queue: Histogram,
    exec_success: Histogram,
    exec_error: Histogram,
    exec_cancel: Histogram,
    exec_retry: Histogram,
    /// `qtasks_tasks_executing` (unlabelled: the same gauge in every name's set).
    executing: Gauge,
}

impl TaskMetrics {
    fn new(label: &str) -> Self {
        let label: Arc<str> = label.into();
        let t = || ("task", label.to_string());
        let finished = |status: &'static str| counter!("qtasks_tasks_finished_total", "task" => label.to_string(), "status" => status);
        let exec = |status: &'static str| histogram!("qtasks_task_execution_seconds", "task" => label.to_string(), "status" => status);
        TaskMetrics {
            enqueued: counter!("qtasks_tasks_enqueued_total", &[t()]),
            started: counter!("qtasks_tasks_started_total", &[t()]),
            success: finished("success"),
            error: finished("error"),
            cancel: finished("cancel"),
            retried: counter!("qtasks_tasks_retried_total", &[t()]),
            queue: histogram!("qtasks_task_queue_seconds", &[t()]),
            exec_success: exec("success"),
            exec_error: exec("error"),
            exec_cancel: exec("cancel"),
            exec_retry: exec("retry"),
            executing: gauge!("qtasks_tasks_executing"),
            label,
        }
    }
}

impl Handles {
    fn new(generation: usize) -> Self {
        Handles {
            generation,
            by_name: FxHashMap::default(),
            other: None,
            heartbeats: counter!("qtasks_worker_heartbeats_total"),
        }
    }
}

/// Runs `f` on the current handles (registered again after [`reset_handles`]).
fn with_handles<R>(f: impl FnOnce(&Handles) -> R) -> R {
    let generation = GENERATION.load(Ordering::Acquire);
    {
        let guard = HANDLES.read();
        if let Some(h) = guard.as_ref().filter(|h| h.generation == generation) {
            return f(h);
        }
    }
    let mut guard = HANDLES.write();
    if guard.as_ref().is_none_or(|h| h.generation != generation) {
        *guard = Some(Handles::new(generation));
    }
    f(guard.as_ref().expect("just set"))
}

/// The handles of task `name`: its own while under the cap, else those of `other`.
fn task(name: &str) -> Arc<TaskMetrics> {
    let generation = GENERATION.load(Ordering::Acquire);
    {
        let guard = HANDLES.read();
        if let Some(h) = guard.as_ref().filter(|h| h.generation == generation) {
            if let Some(m) = h.by_name.get(name) {
                return m.clone();
            }
            if h.by_name.len() >= task_label_limit() {
                if let Some(other) = &h.other {
                    return other.clone();
                }
            }
        }
    }
    let mut guard = HANDLES.write();
    if guard.as_ref().is_none_or(|h| h.generation != generation) {
        *guard = Some(Handles::new(generation));
    }
    let h = guard.as_mut().expect("just set");
    if let Some(m) = h.by_name.get(name) {
        return m.clone();
    }
    if h.by_name.len() < task_label_limit() {
        let m = Arc::new(TaskMetrics::new(name));
        h.by_name.insert(name.into(), m.clone());
        return m;
    }
    h.other
        .get_or_insert_with(|| Arc::new(TaskMetrics::new(OTHER)))
        .clone()
}

/// The `task` label that a task of this name is counted under (its name, or `other` beyond
/// the cap).
pub fn task_label(name: &str) -> Arc<str> {
    task(name).label.clone()
}

pub(crate) fn enqueued(tasks: &[NewTask]) {
    let mut last: Option<(&str, Arc<TaskMetrics>)> = None;
    for t in tasks {
        let name = t.task_name.as_str();
        match &last {
            Some((n, m)) if *n == name => m.enqueued.increment(1),
            _ => {
                let m = task(name);
                m.enqueued.increment(1);
                last = Some((name, m));
            }
        }
    }
}

pub(crate) fn backend_error(op: &'static str) {
    counter!("qtasks_backend_errors_total", "op" => op).increment(1);
}

pub(crate) fn heartbeat() {
    with_handles(|h| h.heartbeats.increment(1));
}

pub(crate) fn dead_lettered(task_name: Option<&str>, reason: DeadLetterReason) {
    let label = match task_name {
        Some(name) => task_label(name).to_string(),
        None => "unknown".to_string(),
    };
    counter!("qtasks_tasks_dead_lettered_total", "task" => label, "reason" => reason.as_str())
        .increment(1);
}

/// One execution being measured.
pub(crate) struct Execution {
    task: Arc<TaskMetrics>,
    started: Instant,
}

impl Execution {
    pub(crate) fn start(delivery: &Delivery) -> Self {
        let m = task(delivery.task_name.as_str());
        m.started.increment(1);
        if let Some(waited) = delivery.queued_until(SystemTime::now()) {
            m.queue.record(waited.as_secs_f64());
        }
        m.executing.increment(1.0);
        Execution {
            task: m,
            started: Instant::now(),
        }
    }

    pub(crate) fn finish(self, outcome: &Outcome) {
        let took = self.started.elapsed().as_secs_f64();
        let m = &self.task;
        match outcome {
            Outcome::Success(_) => {
                m.success.increment(1);
                m.exec_success.record(took);
            }
            Outcome::Failed { .. } => {
                m.error.increment(1);
                m.exec_error.record(took);
            }
            Outcome::DeadLetter { reason, .. } => {
                m.error.increment(1);
                m.exec_error.record(took);
                counter!("qtasks_tasks_dead_lettered_total", "task" => m.label.to_string(), "reason" => reason.as_str())
                    .increment(1);
            }
            Outcome::Cancelled { .. } => {
                m.cancel.increment(1);
                m.exec_cancel.record(took);
            }
            Outcome::Retry { .. } => {
                m.retried.increment(1);
                m.exec_retry.record(took);
            }
            Outcome::Later { .. } => {
                counter!("qtasks_tasks_rate_limited_total", "task" => m.label.to_string())
                    .increment(1);
            }
        }
        m.executing.decrement(1.0);
    }
}

/// Priorities whose depth gauge was set: set to 0 when their queue is gone from the stats.
static SEEN_PRIORITIES: parking_lot::Mutex<Vec<i32>> = parking_lot::Mutex::new(Vec::new());

/// Sets the per-scrape gauges (queue depth per priority, scheduled, in flight, dead-letter
/// size, live workers) from one `Broker::stats` and one `GlobalConfig::live_workers` call,
/// made concurrently. A failing call is counted in `qtasks_backend_errors_total` and leaves
/// its gauges as they were.
pub async fn refresh(backend: &Backend) {
    let (stats, workers) =
        futures::join!(backend.broker.stats(), backend.global_config.live_workers());
    match stats {
        Ok(stats) => {
            let mut seen = SEEN_PRIORITIES.lock();
            for p in seen.iter() {
                if !stats.ready_by_priority.contains_key(p) {
                    gauge!("qtasks_queue_depth", "priority" => p.to_string()).set(0.0);
                }
            }
            seen.clear();
            for (p, n) in &stats.ready_by_priority {
                gauge!("qtasks_queue_depth", "priority" => p.to_string()).set(*n as f64);
                seen.push(*p);
            }
            gauge!("qtasks_tasks_scheduled").set(stats.scheduled as f64);
            gauge!("qtasks_tasks_inflight").set(stats.running as f64);
            gauge!("qtasks_dead_letter_size").set(stats.dead_letter as f64);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the queue figures for the metrics");
            backend_error("stats");
        }
    }
    match workers {
        Ok(w) => gauge!("qtasks_workers_live").set(w.len() as f64),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the live workers for the metrics");
            backend_error("live_workers");
        }
    }
}
