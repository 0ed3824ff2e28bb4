//! [`App`] (Python's `QueueTasks`) and its builder.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use serde::Serialize;
use uuid::Uuid;

use crate::backend::{Backend, CancelOutcome, NewTask, OpenRequest, BACKENDS};
use crate::depends::{ComponentScopes, ScopeCache, ScopeKind};
use crate::state::{KvStores, StateMap};
use crate::worker::{WorkerHandle, WorkerShared};
use crate::{
    Config, Error, KvState, Payload, Result, Router, State, Task, TaskCall, TaskDef, TaskSpec,
    TASKS,
};

/// A qtasks application: its tasks, its backend and its settings.
///
/// Cloning is cheap (an `Arc`). The first app built becomes the process default, which task
/// handles use when no app is given (`add.add_task(..)`); inside a running task, the default is
/// the task's own app. Tests that build many apps point calls at one with `.on(&app)`.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    name: String,
    config: Config,
    backend: Backend,
    tasks: FxHashMap<&'static str, &'static TaskSpec>,
    routers: Vec<&'static Router>,
    workers: Mutex<Vec<Weak<WorkerShared>>>,
    states: StateMap,
    kv_states: KvStores,
    dependencies: ComponentScopes,
    /// The runtime the app was built on, for blocking calls made outside any runtime.
    runtime: Option<tokio::runtime::Handle>,
    /// Callers streaming the values of generator tasks, by task uuid (taken by the task).
    yield_observers: Mutex<FxHashMap<Uuid, tokio::sync::mpsc::Sender<Payload>>>,
    ops: Ops,
}

/// The app's extensions and lifecycle components (plugins, events, timers, worker, starter).
#[derive(Clone)]
pub(crate) struct Ops {
    pub(crate) hooks: crate::hooks::Hooks,
    pub(crate) timers: Vec<crate::timer::Timer>,
    pub(crate) worker: Arc<dyn crate::component::Worker>,
    pub(crate) starter: Arc<dyn crate::component::Starter>,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            hooks: Default::default(),
            timers: Vec::new(),
            worker: Arc::new(crate::component::QueueWorker),
            starter: Arc::new(crate::component::SignalStarter),
        }
    }
}

static DEFAULT_APP: RwLock<Option<App>> = RwLock::new(None);

tokio::task_local! {
    static CURRENT_APP: App;
}

thread_local! {
    static BLOCKING_APP: std::cell::RefCell<Option<App>> = const { std::cell::RefCell::new(None) };
}

impl App {
    /// Starts building an app.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// The app that task handles use when none is given: the running task's own app, else the
    /// process default (the first app built, or the last one marked with
    /// [`AppBuilder::make_default`]).
    pub fn current() -> Result<App> {
        if let Ok(app) = CURRENT_APP.try_with(Clone::clone) {
            return Ok(app);
        }
        if let Some(app) = BLOCKING_APP.with(|a| a.borrow().clone()) {
            return Ok(app);
        }
        DEFAULT_APP.read().clone().ok_or(Error::NoApp)
    }

    /// Makes this app the process default.
    pub fn make_default(&self) {
        *DEFAULT_APP.write() = Some(self.clone());
    }

    /// Runs `fut` with this app as the current app (what running tasks see).
    pub(crate) async fn scope<F: std::future::Future>(&self, fut: F) -> F::Output {
        CURRENT_APP.scope(self.clone(), fut).await
    }

    /// Runs `f` on this thread with this app as the current app (sync tasks).
    pub(crate) fn scope_blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = BLOCKING_APP.with(|a| a.borrow_mut().replace(self.clone()));
        let out = f();
        BLOCKING_APP.with(|a| *a.borrow_mut() = previous);
        out
    }

    /// Runs a future to completion from sync code, blocking the thread: the body of a sync
    /// task (it runs on the blocking pool), a thread of your own, or `main` without a runtime.
    ///
    /// Outside any runtime it uses the runtime the app was built on (or, for an app built
    /// outside one, drives the future on this thread). Like tokio's `Handle::block_on`, it
    /// panics when called from async code: there, `.await` the future instead.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(fut),
            Err(_) => match &self.inner.runtime {
                Some(handle) => handle.block_on(fut),
                None => futures::executor::block_on(fut),
            },
        }
    }

    /// Starts observing what task `uuid` yields (before it is enqueued).
    pub(crate) fn observe_yields(&self, uuid: Uuid) -> tokio::sync::mpsc::Receiver<Payload> {
        let (tx, rx) = tokio::sync::mpsc::channel(crate::generator::STREAM_BUFFER);
        self.inner.yield_observers.lock().insert(uuid, tx);
        rx
    }

    /// The caller's stream of task `uuid`'s yielded values, if one is waiting.
    pub(crate) fn take_yield_observer(
        &self,
        uuid: Uuid,
    ) -> Option<tokio::sync::mpsc::Sender<Payload>> {
        self.inner.yield_observers.lock().remove(&uuid)
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The app's settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The backend's components.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The app's plugins (for `inspect`).
    pub fn plugins(&self) -> &crate::plugin::Plugins {
        &self.inner.ops.hooks.plugins
    }

    /// The app's timers.
    pub fn timers(&self) -> &[crate::timer::Timer] {
        &self.inner.ops.timers
    }

    pub(crate) fn hooks(&self) -> &crate::hooks::Hooks {
        &self.inner.ops.hooks
    }

    /// The routers this app includes.
    pub fn routers(&self) -> &[&'static Router] {
        &self.inner.routers
    }

    /// The typed state `T` given to the builder with [`AppBuilder::state`].
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        self.inner.states.get::<T>()
    }

    /// The app's key-value store of `V` values (created empty on first use).
    pub fn kv_state<V: Send + Sync + 'static>(&self) -> KvState<V> {
        self.inner.kv_states.get::<V>()
    }

    pub(crate) fn component_scope(&self, kind: ScopeKind) -> &ScopeCache {
        self.inner.dependencies.get(kind)
    }

    /// Tears down the dependencies of the broker, storage and global-config scopes (in that
    /// order, each in reverse order of creation). `run_forever` calls it when it stops; call
    /// it yourself after stopping your workers when you run them with `spawn_worker`.
    /// Dependencies of those scopes asked for afterwards fail to resolve.
    pub async fn close_dependencies(&self) {
        self.inner.dependencies.close().await;
    }

    /// Every task this app serves, by name.
    pub fn tasks(&self) -> Vec<&'static TaskSpec> {
        let mut tasks: Vec<_> = self.inner.tasks.values().copied().collect();
        tasks.sort_by_key(|t| t.name);
        tasks
    }

    /// The task registered under `name`.
    pub fn task(&self, name: &str) -> Option<&'static TaskSpec> {
        self.inner.tasks.get(name).copied()
    }

    fn unknown_task(&self, name: &str) -> Error {
        Error::UnknownTask {
            name: name.to_string(),
            app: self.inner.name.clone(),
            known: self
                .tasks()
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The priority a task gets when the call sets none.
    pub(crate) fn default_priority(&self, spec: &TaskSpec) -> i32 {
        spec.options
            .priority
            .unwrap_or(self.inner.config.task_default_priority)
    }

    /// Enqueues a task by name, for dynamic use (`app.add_task("add", json!([2, 3]))`).
    ///
    /// `args` is a named map (`{"a": 2, "b": 3}`) or a positional list (`[2, 3]`); whether it
    /// fits the task's parameters is checked by the worker, which ends the task with status
    /// `error` naming the expected types when it does not. Typed calls
    /// (`add.call(2, 3).on(&app)`) are checked at compile time instead.
    pub async fn add_task(&self, task_name: &str, args: impl Serialize) -> Result<Task> {
        let spec = self
            .task(task_name)
            .ok_or_else(|| self.unknown_task(task_name))?;
        let args = Payload::encode(&args).map_err(|e| Error::Encode {
            task: task_name.to_string(),
            source: Box::new(e),
        })?;
        self.enqueue(Uuid::new_v4(), spec, None, args).await
    }

    /// Enqueues many calls in as few broker round trips as possible (batches of
    /// [`BULK_CHUNK`](Self::BULK_CHUNK)), each task written atomically with its queue entry.
    /// Returns the tasks with status `new`, in order. Timeouts set on the calls are ignored:
    /// wait on the returned tasks instead.
    pub async fn add_tasks<T: TaskDef>(
        &self,
        calls: impl IntoIterator<Item = TaskCall<T>>,
    ) -> Result<Vec<Task<T::Output>>> {
        let spec = T::spec();
        self.check_serves(spec)?;
        let now = SystemTime::now();
        let mut out = Vec::new();
        let mut batch = Vec::with_capacity(Self::BULK_CHUNK);
        let mut calls = calls.into_iter().peekable();
        while calls.peek().is_some() {
            for call in calls.by_ref().take(Self::BULK_CHUNK) {
                let (args, priority) = call.into_parts();
                let args = Payload::encode(&args).map_err(|e| Error::Encode {
                    task: spec.name.to_string(),
                    source: Box::new(e),
                })?;
                batch.push(self.new_task(Uuid::new_v4(), spec, priority, args, now));
            }
            self.write_batch(&mut batch, |task| {
                out.push(task.decode()?);
                Ok(())
            })
            .await?;
            batch.clear();
        }
        Ok(out)
    }

    /// A task to enqueue, with the call's priority or the task's default.
    fn new_task(
        &self,
        uuid: Uuid,
        spec: &'static TaskSpec,
        priority: Option<i32>,
        args: Payload,
        now: SystemTime,
    ) -> NewTask {
        NewTask {
            uuid,
            task_name: spec.name.into(),
            priority: priority.unwrap_or_else(|| self.default_priority(spec)),
            args,
            created_at: now,
            not_before: None,
        }
    }

    /// Writes a batch to the broker in one call, with the enqueue plugins around it, and hands
    /// each task's `new` record to `each`, in order. The one path of `add_task`, typed calls and
    /// `add_tasks`.
    async fn write_batch(
        &self,
        batch: &mut [NewTask],
        mut each: impl FnMut(Task) -> Result<()>,
    ) -> Result<()> {
        let plugged = !self.hooks().plugins.is_empty();
        if plugged {
            for new in batch.iter_mut() {
                crate::hooks::before_enqueue(self, new).await;
            }
        }
        self.inner.backend.broker.enqueue(batch).await?;
        for new in batch.iter() {
            tracing::debug!(task_name = %new.task_name, task_uuid = %new.uuid, "task enqueued");
            let mut task = Task::new(
                new.uuid,
                new.task_name.clone(),
                new.priority,
                new.args.clone(),
                new.created_at,
            );
            if plugged {
                crate::hooks::after_enqueue(self, new, &mut task).await;
            }
            each(task.with_app(self))?;
        }
        Ok(())
    }

    /// Refuses a task attached to a router this app did not include (the worker would not
    /// know it). Tasks without a router are in every app, so this costs them nothing.
    fn check_serves(&self, spec: &'static TaskSpec) -> Result<()> {
        match spec.router {
            Some(router) if !self.inner.routers.iter().any(|r| r.is(router)) => {
                Err(self.unknown_task(spec.name))
            }
            _ => Ok(()),
        }
    }

    /// How many tasks [`add_tasks`](Self::add_tasks) sends to the broker in one call.
    pub const BULK_CHUNK: usize = 1000;

    pub(crate) async fn enqueue(
        &self,
        uuid: Uuid,
        spec: &'static TaskSpec,
        priority: Option<i32>,
        args: Payload,
    ) -> Result<Task> {
        self.check_serves(spec)?;
        let mut new = self.new_task(uuid, spec, priority, args, SystemTime::now());
        let mut written = None;
        self.write_batch(std::slice::from_mut(&mut new), |task| {
            written = Some(task);
            Ok(())
        })
        .await?;
        written.ok_or_else(|| Error::backend("broker", "the enqueued task was not returned"))
    }

    /// Reads a task's record; `None` when it does not exist or has expired.
    pub async fn get(&self, uuid: Uuid) -> Result<Option<Task>> {
        let mut task = self.inner.backend.storage.get(uuid).await?;
        if !self.hooks().plugins.is_empty() {
            let trigger = &mut crate::plugin::Trigger::Get { task: &mut task };
            self.hooks().plugins.fire(trigger).await;
        }
        Ok(task.map(|t| t.with_app(self)))
    }

    /// Waits until the task is final (`success`, `error`, `cancel`), or fails with
    /// [`Error::Timeout`] naming the task and its last status.
    pub async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Task> {
        match self.inner.backend.storage.wait(uuid, timeout).await? {
            Some(task) => Ok(task.with_app(self)),
            None => {
                let last = self.get(uuid).await?.ok_or(Error::NotFound(uuid))?;
                Err(Error::Timeout {
                    task: last.task_name.into_owned(),
                    uuid,
                    waited: timeout,
                    status: last.status,
                })
            }
        }
    }

    /// Cancels a task: a queued one never runs; a running async task is stopped (its future is
    /// dropped), a running sync task is told through its context. Returns what was found.
    pub async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome> {
        let outcome = self.inner.backend.broker.cancel(uuid, reason).await?;
        if outcome == CancelOutcome::Running {
            for worker in self.inner.workers.lock().iter().filter_map(Weak::upgrade) {
                worker.cancel_running(uuid, reason);
            }
        }
        Ok(outcome)
    }

    /// Whether at least one worker of this app is alive (in any process sharing the backend),
    /// judged by the heartbeats workers send every few seconds.
    pub async fn ping(&self) -> Result<bool> {
        Ok(!self
            .inner
            .backend
            .global_config
            .live_workers()
            .await?
            .is_empty())
    }

    /// Starts a worker in the background on the current tokio runtime (the app's
    /// [`Worker`](crate::component::Worker) component; the built-in one unless replaced).
    pub fn spawn_worker(&self) -> WorkerHandle {
        let handle = self.inner.ops.worker.spawn(self);
        self.inner
            .workers
            .lock()
            .push(Arc::downgrade(handle.shared()));
        handle
    }

    /// Runs the app with its [`Starter`](crate::component::Starter): by default a worker and
    /// the timers until SIGINT or SIGTERM, then a graceful shutdown: stops taking work, lets
    /// running tasks finish within the grace period and returns the rest to the queue.
    pub async fn run_forever(&self) -> Result<()> {
        let starter = self.inner.ops.starter.clone();
        starter.start(self).await
    }

    /// Runs a worker and the timers until `stop` resolves, then stops them gracefully. Fires
    /// the `starting` and `stopping` events and every component's start and stop triggers.
    pub async fn run_until(&self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let hooks = self.hooks();
        crate::plugin::fire_lifecycle(&hooks.plugins, true).await;
        hooks
            .events
            .fire_starting(&crate::events::AppEvent { app: self });
        let worker = self.spawn_worker();
        let timers = self.spawn_timers();
        tracing::info!(app = %self.name(), tasks = self.inner.tasks.len(), timers = timers.len(), "app running");
        stop.await;
        tracing::info!(app = %self.name(), "stopping; finishing running tasks");
        timers.shutdown().await;
        let stopped = worker.shutdown().await;
        self.close_dependencies().await;
        crate::plugin::fire_lifecycle(&hooks.plugins, false).await;
        hooks
            .events
            .fire_stopping(&crate::events::AppEvent { app: self });
        stopped
    }

    /// Starts the app's timers in the background, without a worker (a process that only
    /// schedules). With a shared backend, each tick fires once across every instance.
    pub fn spawn_timers(&self) -> crate::timer::TimersHandle {
        crate::timer::TimersHandle::spawn(self, &self.inner.ops.timers)
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.inner.name)
            .field("tasks", &self.inner.tasks.len())
            .finish()
    }
}

/// Builds an [`App`]: `App::builder().name("shop").include_router(&R).build()?`.
#[derive(Default)]
pub struct AppBuilder {
    name: Option<String>,
    config: Config,
    backend: Option<Backend>,
    routers: Vec<&'static Router>,
    make_default: bool,
    skip_env: bool,
    states: StateMap,
    ops: Ops,
    backend_maps: Vec<BackendMap>,
}

type BackendMap = Box<dyn FnOnce(Backend) -> Backend + Send>;

impl AppBuilder {
    /// The app's name (key prefix in shared backends). Default `"qtasks"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces all settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Tasks one worker runs at the same time.
    pub fn max_tasks_process(mut self, n: usize) -> Self {
        self.config.max_tasks_process = n;
        self
    }

    /// Tasks a worker claims ahead of free slots.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = Some(n);
        self
    }

    /// Priority of tasks that set none.
    pub fn task_default_priority(mut self, priority: i32) -> Self {
        self.config.task_default_priority = priority;
        self
    }

    /// How long finished records and results are kept.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// How long running tasks may finish after a shutdown signal.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace_period = grace;
        self
    }

    /// Picks the backend by URL (`memory://`, `redis://127.0.0.1:6379/0`); the backend's
    /// cargo feature must be on.
    pub fn broker_url(mut self, url: impl Into<String>) -> Self {
        self.config.broker_url = Some(url.into());
        self
    }

    /// Uses this backend instead of one picked by URL.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Replaces or wraps components of the backend, whichever backend is picked:
    /// `.map_backend(|b| Backend { storage: Arc::new(Audited(b.storage)), ..b })`.
    pub fn map_backend(mut self, f: impl FnOnce(Backend) -> Backend + Send + 'static) -> Self {
        self.backend_maps.push(Box::new(f));
        self
    }

    /// Replaces the worker component (what [`App::spawn_worker`] starts).
    pub fn worker(mut self, worker: impl crate::component::Worker) -> Self {
        self.ops.worker = Arc::new(worker);
        self
    }

    /// Replaces the starter component (what [`App::run_forever`] runs).
    pub fn starter(mut self, starter: impl crate::component::Starter) -> Self {
        self.ops.starter = Arc::new(starter);
        self
    }

    /// Attaches a plugin to the app: it sees the triggers of every component (QTasks'
    /// `Globals`). Plugins run in the order they were added.
    pub fn plugin(mut self, plugin: impl crate::plugin::Plugin) -> Self {
        self.ops.hooks.plugins.add(None, Arc::new(plugin));
        self
    }

    /// Attaches a plugin to one component: it sees only that component's triggers.
    pub fn plugin_on(
        mut self,
        component: crate::plugin::ComponentKind,
        plugin: impl crate::plugin::Plugin,
    ) -> Self {
        self.ops
            .hooks
            .plugins
            .add(Some(component), Arc::new(plugin));
        self
    }

    /// Adds event handlers (several calls add up).
    pub fn events(mut self, events: crate::events::Events) -> Self {
        self.ops.hooks.events = std::mem::take(&mut self.ops.hooks.events).merge(events);
        self
    }

    /// Adds a timer, started with the app (`run_forever`, `run_until`) or by
    /// [`App::spawn_timers`].
    pub fn timer(mut self, timer: crate::timer::Timer) -> Self {
        self.ops.timers.push(timer);
        self
    }

    /// Includes a router's tasks.
    pub fn include_router(mut self, router: &'static Router) -> Self {
        self.routers.push(router);
        self
    }

    /// Gives tasks typed shared state, taken as a `State<T>` parameter. One value per type;
    /// giving a second value of the same type replaces the first.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Makes the built app the process default even if another app was built before.
    pub fn make_default(mut self) -> Self {
        self.make_default = true;
        self
    }

    /// Ignores `QTASKS_*` environment variables (tests that must not see the environment).
    pub fn ignore_env(mut self) -> Self {
        self.skip_env = true;
        self
    }

    /// Builds the app. Fails fast, listing every problem at once: duplicate task names (with
    /// both definitions' file and line), tasks whose extractors the app cannot provide,
    /// invalid settings, a backend whose feature is off.
    pub fn build(self) -> Result<App> {
        let mut config = self.config;
        if !self.skip_env {
            config.apply_env()?;
        }
        config.validate()?;
        let name = self.name.unwrap_or_else(|| "qtasks".to_string());

        let mut problems = Vec::new();
        let mut tasks: FxHashMap<&'static str, &'static TaskSpec> = FxHashMap::default();
        for spec in TASKS.iter() {
            let included = match spec.router {
                None => true,
                Some(r) => self.routers.iter().any(|inc| inc.is(r)),
            };
            if !included {
                continue;
            }
            if let Some(first) = tasks.insert(spec.name, spec) {
                problems.push(format!(
                    "duplicate task name {:?}: defined at {} and at {}; give one of them another `name = \"..\"`",
                    spec.name,
                    first.location(),
                    spec.location()
                ));
            }
        }

        let mut backend = match self.backend {
            Some(b) => b,
            None => open_backend(&name, &config)?,
        };
        for map in self.backend_maps {
            backend = map(backend);
        }
        let mut timer_names = std::collections::HashSet::new();
        for timer in &self.ops.timers {
            if !timer_names.insert(timer.name()) {
                problems.push(format!(
                    "two timers are named {:?}: ticks are claimed by timer name, so give each timer its own",
                    timer.name()
                ));
            }
        }
        let app = App {
            inner: Arc::new(AppInner {
                name,
                config,
                backend,
                tasks,
                routers: self.routers,
                workers: Mutex::new(Vec::new()),
                states: self.states,
                kv_states: KvStores::default(),
                dependencies: ComponentScopes::new(),
                runtime: tokio::runtime::Handle::try_current().ok(),
                yield_observers: Mutex::new(FxHashMap::default()),
                ops: self.ops,
            }),
        };
        let mut specs = app.tasks();
        specs.sort_by_key(|s| (s.file, s.line));
        for spec in specs {
            for problem in (spec.check)(&app) {
                problems.push(format!(
                    "task {:?} ({}): {problem}",
                    spec.name,
                    spec.location()
                ));
            }
        }
        problems.extend(app.timers().iter().filter_map(|t| t.problem(&app)));
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            return Err(Error::Build(problems));
        }
        {
            let mut default = DEFAULT_APP.write();
            if default.is_none() || self.make_default {
                *default = Some(app.clone());
            }
        }
        Ok(app)
    }
}

fn open_backend(name: &str, config: &Config) -> Result<Backend> {
    let url = config.broker_url.as_deref();
    let scheme = url
        .map(|u| u.split("://").next().unwrap_or(u))
        .unwrap_or("memory");
    let factory = BACKENDS.iter().find(|f| f.scheme == scheme).ok_or_else(|| Error::Config {
        key: "broker_url".into(),
        value: url.unwrap_or("memory://").into(),
        expected: format!(
            "a URL whose scheme is one of the backends compiled in ({}); enable the qtasks feature `{scheme}` to use it",
            BACKENDS.iter().map(|f| f.scheme).collect::<Vec<_>>().join(", ")
        ),
    })?;
    (factory.open)(&OpenRequest {
        app_name: name,
        url,
        config,
    })
}
