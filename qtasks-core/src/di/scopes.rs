//! Dependency scopes: the scope types of [`Depends<T, S>`](crate::Depends) ([`scope`]), and
//! the scope instances that keep the created values ([`ScopeCache`]): one per task
//! execution ([`TaskScope`]), per worker, and per app component ([`ComponentScopes`]).
//!
//! Each scope instance keeps at most one value of each dependency type, created on first use
//! (concurrent first uses wait for one creation) and torn down with the scope, in reverse order
//! of creation.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::OnceCell;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::error::{panic_message, BoxError};

/// The lifetimes a dependency can have. Each is a type used as the `S` of [`Depends<T, S>`].
pub mod scope {
    use super::ScopeKind;

    /// One value per task execution, never shared between executions (not even concurrent
    /// ones of the same task); torn down when the execution ends, whether it succeeded,
    /// failed, panicked, timed out or was cancelled. The default scope.
    #[derive(Debug)]
    pub enum Task {}
    /// One value per worker, created when a task of that worker first asks for it; torn down
    /// when the worker stops, after its running tasks.
    #[derive(Debug)]
    pub enum Worker {}
    /// One value per app, tied to its broker; torn down by
    /// [`App::close_dependencies`](crate::App::close_dependencies).
    #[derive(Debug)]
    pub enum Broker {}
    /// One value per app, tied to its storage; torn down after the broker's.
    #[derive(Debug)]
    pub enum Storage {}
    /// One value per app, tied to its global config; torn down last.
    #[derive(Debug)]
    pub enum GlobalConfig {}

    /// A scope type: [`Task`], [`Worker`], [`Broker`], [`Storage`] or [`GlobalConfig`].
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a dependency scope",
        label = "not a scope",
        note = "the `S` of `Depends<T, S>` is one of `scope::Task` (the default), `scope::Worker`, `scope::Broker`, `scope::Storage`, `scope::GlobalConfig`"
    )]
    pub trait Scope: Send + Sync + 'static + sealed::Sealed {
        /// Which scope this is.
        const KIND: ScopeKind;
    }

    mod sealed {
        pub trait Sealed {}
    }

    macro_rules! scopes {
        ($($ty:ident => $kind:ident),*) => {$(
            impl sealed::Sealed for $ty {}
            impl Scope for $ty {
                const KIND: ScopeKind = ScopeKind::$kind;
            }
        )*};
    }
    scopes!(Task => Task, Worker => Worker, Broker => Broker, Storage => Storage, GlobalConfig => GlobalConfig);
}

/// A scope as a value, shortest-lived first (the order is the lifetime order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKind {
    /// [`scope::Task`].
    Task,
    /// [`scope::Worker`].
    Worker,
    /// [`scope::Broker`].
    Broker,
    /// [`scope::Storage`].
    Storage,
    /// [`scope::GlobalConfig`].
    GlobalConfig,
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeKind::Task => "task",
            ScopeKind::Worker => "worker",
            ScopeKind::Broker => "broker",
            ScopeKind::Storage => "storage",
            ScopeKind::GlobalConfig => "global_config",
        })
    }
}

pub(crate) type Erased = Arc<dyn Any + Send + Sync>;
pub(crate) type CloseFn = fn(Erased) -> BoxFuture<'static, Result<(), BoxError>>;

/// One created value, in creation order, with its teardown.
struct Created {
    name: &'static str,
    value: Erased,
    close: CloseFn,
}

/// One instance of a scope: the values created in it, and their teardown.
///
/// Cloning shares the instance. Values created after [`ScopeCache::close`] are refused.
#[derive(Clone)]
pub(crate) struct ScopeCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    kind: ScopeKind,
    state: Mutex<CacheState>,
    /// Shorter-lived scopes opened inside this one (task scopes inside a worker's); closing
    /// waits for them.
    children: TaskTracker,
    /// This scope's place in its parent's `children`, released when it is closed.
    in_parent: Mutex<Option<TaskTrackerToken>>,
}

#[derive(Default)]
struct CacheState {
    closed: bool,
    cells: HashMap<TypeId, Arc<OnceCell<Erased>>>,
    created: Vec<Created>,
}

impl ScopeCache {
    pub(crate) fn new(kind: ScopeKind) -> Self {
        ScopeCache {
            inner: Arc::new(CacheInner {
                kind,
                state: Mutex::new(CacheState::default()),
                children: TaskTracker::new(),
                in_parent: Mutex::new(None),
            }),
        }
    }

    /// A scope that `parent` waits for when it closes.
    pub(crate) fn child_of(kind: ScopeKind, parent: Option<&ScopeCache>) -> Self {
        let cache = Self::new(kind);
        *cache.inner.in_parent.lock() = parent.map(|p| p.inner.children.token());
        cache
    }

    pub(crate) fn cell(&self, id: TypeId) -> Result<Arc<OnceCell<Erased>>, BoxError> {
        let mut state = self.inner.state.lock();
        if state.closed {
            return Err(format!("the {} scope has already ended", self.inner.kind).into());
        }
        Ok(state.cells.entry(id).or_default().clone())
    }

    pub(crate) fn created(&self, name: &'static str, value: Erased, close: CloseFn) {
        self.inner
            .state
            .lock()
            .created
            .push(Created { name, value, close });
    }

    /// Tears down every value, last created first. Later resolutions fail.
    pub(crate) async fn close(&self) {
        let created = {
            let mut state = self.inner.state.lock();
            state.closed = true;
            state.cells.clear();
            std::mem::take(&mut state.created)
        };
        close_all(self.inner.kind, created).await;
        self.inner.in_parent.lock().take();
    }

    /// Waits (at most `patience`, and at least one second for teardowns already under way)
    /// for the shorter-lived scopes opened inside this one to close, then closes this one.
    pub(crate) async fn close_after_children(&self, patience: Duration) {
        let patience = patience.max(Duration::from_secs(1));
        self.inner.children.close();
        if tokio::time::timeout(patience, self.inner.children.wait())
            .await
            .is_err()
        {
            tracing::warn!(scope = %self.inner.kind, ?patience, "task-scoped dependencies are still open (a sync task outlived its timeout?); tearing down the {} scope anyway", self.inner.kind);
        }
        self.close().await;
    }
}

async fn close_all(kind: ScopeKind, created: Vec<Created>) {
    for c in created.into_iter().rev() {
        let result = AssertUnwindSafe((c.close)(c.value)).catch_unwind().await;
        match result {
            Ok(Ok(())) => {
                tracing::debug!(dependency = c.name, scope = %kind, "dependency closed")
            }
            Ok(Err(e)) => {
                tracing::warn!(dependency = c.name, scope = %kind, error = %e, "dependency teardown failed")
            }
            Err(panic) => {
                tracing::warn!(dependency = c.name, scope = %kind, panic = %panic_message(panic), "dependency teardown panicked")
            }
        }
    }
}

impl Drop for CacheInner {
    /// A scope dropped without [`ScopeCache::close`] (an aborted execution, an app dropped
    /// without `close_dependencies`): tear its values down in the background.
    fn drop(&mut self) {
        let created = std::mem::take(&mut self.state.get_mut().created);
        if created.is_empty() {
            return;
        }
        let kind = self.kind;
        let token = self.in_parent.get_mut().take();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    close_all(kind, created).await;
                    drop(token);
                });
            }
            Err(_) => {
                tracing::warn!(scope = %kind, count = created.len(), "dependencies dropped outside a tokio runtime: their teardown cannot run");
            }
        }
    }
}

/// The task scope of one execution, inside its [`TaskContext`]: created on first use, torn
/// down when the last holder (the executor, and a sync body still on the blocking pool)
/// lets go. Costs nothing for tasks that use no task-scoped dependency.
#[derive(Default)]
pub(crate) struct TaskScope {
    cache: OnceLock<ScopeCache>,
    holds: AtomicUsize,
}

impl TaskScope {
    /// One more holder keeps the scope open.
    pub(crate) fn hold(&self) {
        self.holds.fetch_add(1, Ordering::AcqRel);
    }

    /// One holder lets go; returns the scope instance to tear down when it was the last one
    /// and the scope was ever used.
    pub(crate) fn release(&self) -> Option<ScopeCache> {
        if self.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.cache.get().cloned()
        } else {
            None
        }
    }
}

impl TaskScope {
    /// The execution's scope instance, created on first use inside the worker's scope.
    pub(crate) fn cache(&self, worker: Option<&ScopeCache>) -> &ScopeCache {
        self.cache
            .get_or_init(|| ScopeCache::child_of(ScopeKind::Task, worker))
    }
}

/// The app-lifetime scopes, one per component.
pub(crate) struct ComponentScopes {
    broker: ScopeCache,
    storage: ScopeCache,
    global_config: ScopeCache,
}

impl ComponentScopes {
    pub(crate) fn new() -> Self {
        ComponentScopes {
            broker: ScopeCache::new(ScopeKind::Broker),
            storage: ScopeCache::new(ScopeKind::Storage),
            global_config: ScopeCache::new(ScopeKind::GlobalConfig),
        }
    }

    pub(crate) fn get(&self, kind: ScopeKind) -> &ScopeCache {
        match kind {
            ScopeKind::Broker => &self.broker,
            ScopeKind::Storage => &self.storage,
            _ => &self.global_config,
        }
    }

    /// Closes the broker's, then the storage's, then the global config's dependencies.
    pub(crate) async fn close(&self) {
        self.broker.close().await;
        self.storage.close().await;
        self.global_config.close().await;
    }
}
