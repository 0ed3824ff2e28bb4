//! [`AppBuilder`]: builds an [`App`], failing fast with every problem at once.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::app::component::{Starter, Worker};
use crate::app::config::Config;
use crate::app::handle::App;
use crate::app::inner::{AppInner, Ops};
use crate::backend::{Backend, OpenRequest, BACKENDS};
use crate::control::{check_queue_name, QueueSelection};
use crate::di::scopes::ComponentScopes;
use crate::di::state::{KvStores, StateMap};
use crate::error::{BuildProblem, Error, Missing, Result};
use crate::ext::events::Events;
use crate::ext::plugin::{ComponentKind, Plugin};
use crate::flow::timer::Timer;
use crate::task::entry::{TaskEntry, TASKS};
use crate::task::router::Router;

impl App {
    /// Starts building an app.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
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

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("routers", &self.routers)
            .field("timers", &self.ops.timers.len())
            .finish_non_exhaustive()
    }
}

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

    /// The queues this app's workers claim from, by weight or in strict order
    /// (`QueueSelection::parse("mail=3,default=1")?`). Without it, a worker serves `default`
    /// and every queue its tasks declare, with equal weights.
    pub fn queues(mut self, queues: QueueSelection) -> Self {
        self.config.queues = Some(queues);
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
    /// `.map_backend(|b| Backend { broker: Arc::new(Recorded(b.broker)), ..b })` (the broker
    /// sees every write, the storage every read: see [`backend`](crate::backend)).
    pub fn map_backend(mut self, f: impl FnOnce(Backend) -> Backend + Send + 'static) -> Self {
        self.backend_maps.push(Box::new(f));
        self
    }

    /// Replaces the worker component (what [`App::spawn_worker`] starts).
    pub fn worker(mut self, worker: impl Worker) -> Self {
        self.ops.worker = Arc::new(worker);
        self
    }

    /// Replaces the starter component (what [`App::run_forever`] runs).
    pub fn starter(mut self, starter: impl Starter) -> Self {
        self.ops.starter = Arc::new(starter);
        self
    }

    /// Attaches a plugin to the app: it sees the triggers of every component (QTasks'
    /// `Globals`). Plugins run in the order they were added.
    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.ops.hooks.plugins.add(None, Arc::new(plugin));
        self
    }

    /// Attaches a plugin to one component: it sees only that component's triggers.
    pub fn plugin_on(mut self, component: ComponentKind, plugin: impl Plugin) -> Self {
        self.ops
            .hooks
            .plugins
            .add(Some(component), Arc::new(plugin));
        self
    }

    /// Adds event handlers (several calls add up).
    pub fn events(mut self, events: Events) -> Self {
        self.ops.hooks.events = std::mem::take(&mut self.ops.hooks.events).merge(events);
        self
    }

    /// Adds a timer, started with the app (`run_forever`, `run_until`) or by
    /// [`App::spawn_timers`].
    pub fn timer(mut self, timer: Timer) -> Self {
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
        let mut tasks: FxHashMap<&'static str, &'static TaskEntry> = FxHashMap::default();
        for entry in TASKS.iter() {
            let included = match entry.router {
                None => true,
                Some(r) => self.routers.iter().any(|inc| inc.is(r)),
            };
            if !included {
                continue;
            }
            if let Some(Err(message)) = entry.options.queue.map(check_queue_name) {
                problems.push(BuildProblem::BadQueue {
                    task: entry.name.to_string(),
                    location: entry.location(),
                    message,
                });
            }
            if let Some(first) = tasks.insert(entry.name, entry) {
                problems.push(BuildProblem::DuplicateTask {
                    name: entry.name.to_string(),
                    first: first.location(),
                    second: entry.location(),
                });
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
                problems.push(BuildProblem::DuplicateTimer {
                    timer: timer.name().to_string(),
                });
            }
        }
        let app = App::from_inner(AppInner {
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
        });
        let mut entries = app.tasks();
        entries.sort_by_key(|e| (e.file, e.line));
        for entry in entries {
            for missing in (entry.check)(&app) {
                problems.push(match missing {
                    Missing::State { type_name } => BuildProblem::MissingState {
                        task: entry.name.to_string(),
                        location: entry.location(),
                        state: type_name,
                        app: app.name().to_string(),
                    },
                    Missing::Other(message) => BuildProblem::Unprovided {
                        task: entry.name.to_string(),
                        location: entry.location(),
                        message,
                    },
                });
            }
        }
        problems.extend(app.timers().iter().filter_map(|t| t.problem(&app)));
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.to_string());
            problems.dedup();
            return Err(Error::Build(problems));
        }
        app.offer_as_default(self.make_default);
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
