//! Timers: cron expressions and fixed intervals that enqueue tasks from inside the app's own
//! processes. There is no separate scheduler process (Python QTasks' `AsyncTimer` is one).
//!
//! (The guide chapter `docs/timers.md` has this example compiled and run.)
//!
//! ```text
//! use std::time::Duration;
//! use qtasks::timer::{Schedule, Timer};
//!
//! #[qtasks::task]
//! async fn cleanup(older_than_days: u32) -> u32 { older_than_days }
//!
//! let app = qtasks::App::builder()
//!     .name("timer-doc")
//!     .timer(Timer::new("nightly-cleanup", Schedule::cron("0 30 3 * * *")?, cleanup.call(30)))
//!     .timer(Timer::new("every-minute", Schedule::every(Duration::from_secs(60)), cleanup.call(1)))
//!     .build()?;
//! # Ok::<(), qtasks::Error>(())
//! ```
//!
//! Timers start with the app (`run_forever`, `run_until`, the CLI's `run`) or on their own
//! with [`App::spawn_timers`](crate::App::spawn_timers). Each timer sleeps until its next
//! tick (a tokio timer, never a poll), then claims the tick in the shared
//! [`GlobalConfig`](crate::backend::GlobalConfig) with an atomic set-if-absent
//! (`try_claim`), and only the instance that wins enqueues. So with a shared backend (Redis),
//! any number of running instances fire each tick exactly once. Tick times are the same in
//! every instance: cron times in UTC, and intervals aligned to the Unix epoch (an interval of
//! one minute ticks on whole minutes).
//!
//! Ticks missed while nothing ran (or while the process was suspended) are skipped, not fired
//! in a burst; [`Timer::catch_up`] asks for them, up to a bound.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::handle::App;
use crate::error::{BuildProblem, Error, Result};
use crate::task::call::TaskCall;
use crate::task::def::TaskDef;
use crate::task::payload::Payload;

/// When a timer fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every `period`, on multiples of it since the Unix epoch.
    Every(Duration),
    /// A cron expression, evaluated in UTC.
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Every `period` (at least one millisecond).
    pub fn every(period: Duration) -> Schedule {
        Schedule::Every(period.max(Duration::from_millis(1)))
    }

    /// A cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`
    /// (`"0 */5 * * * *"` = every five minutes), evaluated in UTC. Fails naming the expression
    /// and what is wrong with it.
    pub fn cron(expression: &str) -> Result<Schedule> {
        cron::Schedule::from_str(expression)
            .map(|s| Schedule::Cron(Box::new(s)))
            .map_err(|e| Error::Config {
                key: "timer cron expression".into(),
                value: expression.into(),
                expected: format!(
                    "six or seven fields `sec min hour day-of-month month day-of-week [year]`, such as \"0 */5 * * * *\" ({e})"
                ),
            })
    }

    /// The first tick strictly after `time`, or `None` when the schedule has no more.
    pub fn next_after(&self, time: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Every(period) => {
                let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
                let period_ns = period.as_nanos();
                let n = since.as_nanos() / period_ns + 1;
                let ns = n.checked_mul(period_ns)?;
                let ns = u64::try_from(ns).ok()?;
                Some(UNIX_EPOCH + Duration::from_nanos(ns))
            }
            Schedule::Cron(schedule) => {
                let after: chrono::DateTime<chrono::Utc> = time.into();
                schedule.after(&after).next().map(SystemTime::from)
            }
        }
    }
}

/// What a timer knows when it fires.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// The tick's scheduled time (the same in every instance).
    pub at: SystemTime,
}

impl Tick {
    /// The tick's time in milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> u64 {
        self.at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

type Job = Arc<dyn Fn(&App, Tick) -> BoxFuture<'static, Result<Uuid>> + Send + Sync>;

/// A named schedule and the task it enqueues at each tick.
#[derive(Clone)]
pub struct Timer {
    name: String,
    schedule: Schedule,
    task: String,
    job: Job,
    catch_up: usize,
    problem: Option<BuildProblem>,
}

impl Timer {
    /// Enqueues `call` at every tick of `schedule`. The name identifies the timer across
    /// instances (its ticks are claimed under it): give each timer of an app its own.
    pub fn new<T: TaskDef>(
        name: impl Into<String>,
        schedule: Schedule,
        call: TaskCall<T>,
    ) -> Timer {
        let entry = T::entry();
        let name = name.into();
        let (args, problem) = match Payload::encode(call.args()) {
            Ok(args) => (args, None),
            Err(e) => (
                Payload::default(),
                Some(BuildProblem::TimerArguments {
                    timer: name.clone(),
                    task: entry.name.to_string(),
                    error: e.to_string(),
                }),
            ),
        };
        Timer {
            name,
            schedule,
            task: entry.name.to_string(),
            job: Arc::new(move |app: &App, _tick: Tick| {
                let app = app.clone();
                let args = args.clone();
                Box::pin(async move {
                    app.enqueue(Uuid::new_v4(), entry, None, args, None)
                        .await
                        .map(|t| t.uuid)
                })
            }),
            catch_up: 0,
            problem,
        }
    }

    /// Builds the call at each tick from the tick (for tasks that take the tick's time).
    pub fn with<T: TaskDef>(
        name: impl Into<String>,
        schedule: Schedule,
        make: impl Fn(Tick) -> TaskCall<T> + Send + Sync + 'static,
    ) -> Timer {
        Timer {
            name: name.into(),
            schedule,
            task: T::entry().name.to_string(),
            job: Arc::new(move |app: &App, tick: Tick| {
                let call = make(tick).on(app);
                Box::pin(async move { call.add_task().await.map(|t| t.uuid) })
            }),
            catch_up: 0,
            problem: None,
        }
    }

    /// Enqueues the task called `task_name` with JSON-like `args` at every tick (for tasks
    /// known by name only).
    pub fn named(
        name: impl Into<String>,
        schedule: Schedule,
        task_name: impl Into<String>,
        args: impl Serialize + Send + Sync + 'static,
    ) -> Timer {
        let task: String = task_name.into();
        let task_name: Arc<str> = task.as_str().into();
        let args = Arc::new(args);
        Timer {
            name: name.into(),
            schedule,
            task,
            job: Arc::new(move |app: &App, _tick: Tick| {
                let app = app.clone();
                let task_name = task_name.clone();
                let args = args.clone();
                Box::pin(async move { app.add_task(&task_name, &*args).await.map(|t| t.uuid) })
            }),
            catch_up: 0,
            problem: None,
        }
    }

    /// Fires ticks missed while no instance ran, at most `max` of them (the latest), when the
    /// timer starts. The last fired tick is kept in the global config. Default 0: missed ticks
    /// are skipped.
    pub fn catch_up(mut self, max: usize) -> Timer {
        self.catch_up = max;
        self
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What keeps the timer from working in `app` (reported by `App::build`).
    pub(crate) fn problem(&self, app: &App) -> Option<BuildProblem> {
        if let Some(p) = &self.problem {
            return Some(p.clone());
        }
        if app.task(&self.task).is_none() {
            return Some(BuildProblem::TimerTaskNotServed {
                timer: self.name.clone(),
                task: self.task.clone(),
            });
        }
        None
    }

    /// The name of the task the timer enqueues.
    pub fn task_name(&self) -> &str {
        &self.task
    }

    /// The timer's schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn last_key(&self, app: &App) -> String {
        format!("qtasks:{}:timer:{}:last", app.name(), self.name)
    }

    fn tick_key(&self, app: &App, tick: Tick) -> String {
        format!(
            "qtasks:{}:timer:{}:{}",
            app.name(),
            self.name,
            tick.unix_millis()
        )
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("catch_up", &self.catch_up)
            .finish()
    }
}

/// The running timers of an app. Stop them with [`TimersHandle::shutdown`].
#[derive(Debug)]
pub struct TimersHandle {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl TimersHandle {
    pub(crate) fn spawn(app: &App, timers: &[Timer]) -> TimersHandle {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for timer in timers {
            tasks.spawn(run_timer(app.clone(), timer.clone(), stop.clone()));
        }
        TimersHandle { stop, tasks }
    }

    /// How many timers run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no timer runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every timer and waits until they have stopped (a tick being enqueued finishes).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn run_timer(app: App, timer: Timer, stop: CancellationToken) {
    let global = app.backend().global_config.clone();
    let now = SystemTime::now();
    let started = now;
    let mut from = now;
    if timer.catch_up > 0 {
        match global.get(&timer.last_key(&app)).await {
            Ok(Some(last)) => {
                if let Ok(ms) = last.parse::<u64>() {
                    from = UNIX_EPOCH + Duration::from_millis(ms);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(timer = %timer.name, error = %e, "cannot read the timer's last tick; missed ticks are not caught up")
            }
        }
        // At most `catch_up` missed ticks: start from the latest ones.
        let mut missed = Vec::new();
        let mut t = from;
        while let Some(next) = timer.schedule.next_after(t) {
            if next > now {
                break;
            }
            missed.push(next);
            if missed.len() > timer.catch_up {
                missed.remove(0);
            }
            t = next;
        }
        if let Some(first) = missed.first() {
            from = *first - Duration::from_nanos(1);
        } else {
            from = now;
        }
    }
    tracing::info!(timer = %timer.name, "timer started");
    let mut next = timer.schedule.next_after(from);
    while let Some(at) = next {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        fire(&app, &timer, Tick { at }).await;
        next = timer.schedule.next_after(at);
        // Behind by a whole tick or more (suspended, or a slow backend): skip to the next
        // future tick instead of firing a burst. Catch-up ticks were chosen above.
        let now = SystemTime::now();
        if let Some(n) = next {
            let caught_up = timer.catch_up > 0 && n <= started;
            if n <= now && !caught_up {
                let skipped_to = timer.schedule.next_after(now);
                tracing::warn!(timer = %timer.name, "timer is behind; skipping missed ticks");
                next = skipped_to;
            }
        }
    }
    tracing::info!(timer = %timer.name, "timer stopped");
}

async fn fire(app: &App, timer: &Timer, tick: Tick) {
    let global = &app.backend().global_config;
    let ttl = claim_ttl(&timer.schedule, tick.at);
    match global.try_claim(&timer.tick_key(app, tick), ttl).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(timer = %timer.name, tick = tick.unix_millis(), "tick fired by another instance");
            return;
        }
        Err(e) => {
            tracing::error!(timer = %timer.name, tick = tick.unix_millis(), error = %e, "cannot claim the tick; it is skipped so that it never fires twice");
            return;
        }
    }
    match (timer.job)(app, tick).await {
        Ok(uuid) => {
            tracing::info!(timer = %timer.name, tick = tick.unix_millis(), task_uuid = %uuid, "timer enqueued its task")
        }
        Err(e) => {
            tracing::error!(timer = %timer.name, tick = tick.unix_millis(), error = %e, "timer could not enqueue its task")
        }
    }
    if timer.catch_up > 0 {
        let last = tick.unix_millis().to_string();
        if let Err(e) = global.set(&timer.last_key(app), &last).await {
            tracing::warn!(timer = %timer.name, error = %e, "cannot record the timer's last tick");
        }
    }
}

/// How long a tick's claim is kept: long enough that a late instance still sees it, short
/// enough not to pile up (twice the period, between one second and one hour).
fn claim_ttl(schedule: &Schedule, at: SystemTime) -> Duration {
    let period = schedule
        .next_after(at)
        .and_then(|n| n.duration_since(at).ok())
        .unwrap_or(Duration::from_secs(3600));
    (period * 2).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_aligned_to_the_epoch() {
        let s = Schedule::every(Duration::from_secs(60));
        let t = UNIX_EPOCH + Duration::from_secs(125);
        assert_eq!(s.next_after(t), Some(UNIX_EPOCH + Duration::from_secs(180)));
        let on = UNIX_EPOCH + Duration::from_secs(180);
        assert_eq!(
            s.next_after(on),
            Some(UNIX_EPOCH + Duration::from_secs(240))
        );
    }

    #[test]
    fn cron_ticks_in_utc() {
        let s = Schedule::cron("0 30 3 * * *").unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(3600);
        let next = s.next_after(t).unwrap();
        assert_eq!(
            next.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_secs(3 * 3600 + 30 * 60)
        );
    }

    #[test]
    fn bad_cron_names_the_expression() {
        let err = Schedule::cron("every day").unwrap_err().to_string();
        assert!(err.contains("every day"), "{err}");
        assert!(err.contains("sec min hour"), "{err}");
    }
}
