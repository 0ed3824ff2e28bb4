//! What an [`App`] holds, and the accessors the other layers read it through.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::app::component::{Starter, Worker};
use crate::app::config::Config;
use crate::app::handle::App;
use crate::backend::Backend;
use crate::di::scopes::{ComponentScopes, ScopeCache, ScopeKind};
use crate::di::state::{KvState, KvStores, State, StateMap};
use crate::ext::hooks::Hooks;
use crate::ext::plugin::Plugins;
use crate::flow::generator::STREAM_BUFFER;
use crate::flow::timer::Timer;
use crate::task::entry::TaskEntry;
use crate::task::payload::Payload;
use crate::task::router::Router;
use crate::worker::scope::WorkerScope;

/// Everything one app holds. Built once by [`AppBuilder::build`](crate::AppBuilder::build),
/// never changed afterwards except for the worker list and the yield observers.
pub(crate) struct AppInner {
    pub(crate) name: String,
    pub(crate) config: Config,
    pub(crate) backend: Backend,
    pub(crate) tasks: FxHashMap<&'static str, &'static TaskEntry>,
    pub(crate) routers: Vec<&'static Router>,
    /// The workers of this app in this process, for [`App::cancel`] to reach running tasks.
    pub(crate) workers: Mutex<Vec<Weak<WorkerScope>>>,
    pub(crate) states: StateMap,
    pub(crate) kv_states: KvStores,
    pub(crate) dependencies: ComponentScopes,
    /// The runtime the app was built on, for blocking calls made outside any runtime.
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    /// Callers streaming the values of generator tasks, by task uuid (taken by the task).
    pub(crate) yield_observers: Mutex<FxHashMap<Uuid, tokio::sync::mpsc::Sender<Payload>>>,
    pub(crate) ops: Ops,
}

/// The app's extensions and lifecycle components (plugins, events, timers, worker, starter).
#[derive(Clone)]
pub(crate) struct Ops {
    pub(crate) hooks: Hooks,
    pub(crate) timers: Vec<Timer>,
    pub(crate) worker: Arc<dyn Worker>,
    pub(crate) starter: Arc<dyn Starter>,
}

impl Drop for AppInner {
    fn drop(&mut self) {
        App::count_live(false);
    }
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            hooks: Hooks::default(),
            timers: Vec::new(),
            worker: Arc::new(crate::app::component::QueueWorker),
            starter: Arc::new(crate::app::component::SignalStarter),
        }
    }
}

impl App {
    pub(crate) fn from_inner(inner: AppInner) -> App {
        App::count_live(true);
        App {
            inner: Arc::new(inner),
        }
    }

    /// What the app holds.
    #[inline]
    pub(crate) fn inner(&self) -> &AppInner {
        match self.inner.downcast_ref::<AppInner>() {
            Some(inner) => inner,
            // `from_inner` is the only constructor.
            None => unreachable!("an App always holds an AppInner"),
        }
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.inner().name
    }

    /// The app's settings.
    pub fn config(&self) -> &Config {
        &self.inner().config
    }

    /// The backend's components.
    pub fn backend(&self) -> &Backend {
        &self.inner().backend
    }

    /// The app's plugins (for `inspect`).
    pub fn plugins(&self) -> &Plugins {
        &self.inner().ops.hooks.plugins
    }

    /// The app's timers.
    pub fn timers(&self) -> &[Timer] {
        &self.inner().ops.timers
    }

    /// The app's plugins and event handlers, for the trigger points.
    pub(crate) fn hooks(&self) -> &Hooks {
        &self.inner().ops.hooks
    }

    /// The routers this app includes.
    pub fn routers(&self) -> &[&'static Router] {
        &self.inner().routers
    }

    /// The typed state `T` given to the builder with
    /// [`AppBuilder::state`](crate::AppBuilder::state).
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        self.inner().states.get::<T>()
    }

    /// The app's key-value store of `V` values (created empty on first use).
    pub fn kv_state<V: Send + Sync + 'static>(&self) -> KvState<V> {
        self.inner().kv_states.get::<V>()
    }

    /// The app-lifetime dependency scope of one component.
    pub(crate) fn component_scope(&self, kind: ScopeKind) -> &ScopeCache {
        self.inner().dependencies.get(kind)
    }

    /// Tears down the dependencies of the broker, storage and global-config scopes (in that
    /// order, each in reverse order of creation). `run_forever` calls it when it stops; call
    /// it yourself after stopping your workers when you run them with `spawn_worker`.
    /// Dependencies of those scopes asked for afterwards fail to resolve.
    pub async fn close_dependencies(&self) {
        self.inner().dependencies.close().await;
    }

    /// Every task this app serves, by name.
    pub fn tasks(&self) -> Vec<&'static TaskEntry> {
        let mut tasks: Vec<_> = self.inner().tasks.values().copied().collect();
        tasks.sort_by_key(|t| t.name);
        tasks
    }

    /// The task registered under `name`.
    pub fn task(&self, name: &str) -> Option<&'static TaskEntry> {
        self.inner().tasks.get(name).copied()
    }

    /// The priority a task gets when the call sets none.
    pub(crate) fn default_priority(&self, entry: &TaskEntry) -> i32 {
        entry
            .options
            .priority
            .unwrap_or(self.inner().config.task_default_priority)
    }

    /// Starts observing what task `uuid` yields (before it is enqueued).
    pub(crate) fn observe_yields(&self, uuid: Uuid) -> tokio::sync::mpsc::Receiver<Payload> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        self.inner().yield_observers.lock().insert(uuid, tx);
        rx
    }

    /// The caller's stream of task `uuid`'s yielded values, if one is waiting.
    pub(crate) fn take_yield_observer(
        &self,
        uuid: Uuid,
    ) -> Option<tokio::sync::mpsc::Sender<Payload>> {
        self.inner().yield_observers.lock().remove(&uuid)
    }

    /// Lists a worker of this process, so that [`App::cancel`] reaches its running tasks.
    pub(crate) fn register_worker(&self, worker: &Arc<WorkerScope>) {
        let mut workers = self.inner().workers.lock();
        workers.retain(|w| w.strong_count() > 0);
        workers.push(Arc::downgrade(worker));
    }

    /// The workers of this app running in this process.
    pub(crate) fn local_workers(&self) -> Vec<Arc<WorkerScope>> {
        self.inner()
            .workers
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name())
            .field("tasks", &self.inner().tasks.len())
            .finish()
    }
}
