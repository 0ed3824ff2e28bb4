//! Dependency injection: [`Depends<T, S>`] gives a task a value of a [`Dependency`] `T` that
//! lives as long as its scope `S` (see [`scope`]).
//!
//! Each scope instance keeps at most one value of each dependency type, created on first use
//! (concurrent first uses wait for one creation) and torn down with the scope, in reverse order
//! of creation:
//!
//! | scope | one value per | torn down when |
//! |---|---|---|
//! | [`scope::Task`] | task execution (never shared between executions) | that execution ends, whatever its outcome |
//! | [`scope::Worker`] | worker | the worker stops |
//! | [`scope::Broker`], [`scope::Storage`], [`scope::GlobalConfig`] | app (its component) | [`App::close_dependencies`](crate::App::close_dependencies), which `run_forever` calls at the end |
//!
//! A dependency's constructor gets a [`DependencyContext`] through which it resolves other
//! dependencies of the same or a longer-lived scope.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
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

use crate::{App, BoxError, FromTaskContext, State, TaskContext, TaskError};

/// A value that tasks get through [`Depends<Self, S>`]: built once per scope instance by an
/// async constructor, torn down with its scope.
///
/// ```
/// use qtasks_core::{BoxError, Dependency, DependencyContext};
///
/// struct Pool { url: String }
///
/// impl Dependency for Pool {
///     async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
///         Ok(Pool { url: "db://localhost".into() })
///     }
///     async fn close(&self) -> Result<(), BoxError> {
///         println!("closing {}", self.url);
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dependency: the `T` of `Depends<T, S>` must implement `qtasks::Dependency`",
    label = "not a dependency",
    note = "implement `qtasks::Dependency` for it: an async `create` (and optionally `close`)"
)]
pub trait Dependency: Sized + Send + Sync + 'static {
    /// Builds the value. `ctx` resolves other dependencies (`ctx.resolve::<Pool, scope::Worker>()`)
    /// and reads the app's state. An error ends the task with status `error` naming this
    /// dependency and its scope (a [`DependencyError`]); the task's retry settings apply.
    fn create(ctx: &DependencyContext) -> impl Future<Output = Result<Self, BoxError>> + Send;

    /// Tears the value down when its scope ends. Errors and panics are logged; they do not
    /// change the task's outcome. Does nothing by default.
    fn close(&self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// Problems that keep `app` from providing this dependency, reported by `App::build()`
    /// for every task that asks for it (for example a `State<T>` the constructor needs).
    /// Include the checks of the dependencies the constructor resolves (`Pool::check(app)`).
    fn check(_app: &App) -> Vec<String> {
        Vec::new()
    }
}

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

use scope::Scope;

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

/// A dependency injected into a task: `db: Depends<Db, scope::Worker>`. Dereferences to `T`.
///
/// Cloning shares the same value. The value stays usable after its scope ends (it is
/// reference counted), but it has been torn down by then.
pub struct Depends<T, S = scope::Task> {
    value: Arc<T>,
    scope: PhantomData<fn() -> S>,
}

impl<T, S> Depends<T, S> {
    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.value
    }
}

impl<T, S> Clone for Depends<T, S> {
    fn clone(&self) -> Self {
        Depends {
            value: self.value.clone(),
            scope: PhantomData,
        }
    }
}

impl<T, S> std::ops::Deref for Depends<T, S> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug, S: Scope> fmt::Debug for Depends<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Depends")
            .field("scope", &S::KIND)
            .field("value", &self.value)
            .finish()
    }
}

impl<T: Dependency, S: Scope> FromTaskContext for Depends<T, S> {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        ctx.resolve::<T, S>().await
    }

    fn check(app: &App) -> Vec<String> {
        T::check(app)
    }
}

/// A dependency could not be created. It is the task's error (status `error`, retried when
/// the task has retries left); `TaskError::is::<E>()` finds the constructor's own error too.
#[derive(Debug)]
pub struct DependencyError {
    /// The dependency's type name.
    pub dependency: &'static str,
    /// Its scope.
    pub scope: ScopeKind,
    /// What went wrong.
    pub source: BoxError,
}

impl fmt::Display for DependencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cause follows through `source()` (a task's traceback lists it).
        write!(
            f,
            "dependency `{}` (scope {}) could not be provided",
            self.dependency, self.scope
        )
    }
}

impl std::error::Error for DependencyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// What a [`Dependency`]'s constructor gets: the app, and the means to resolve the
/// dependencies it depends on.
pub struct DependencyContext {
    task: TaskContext,
    scope: ScopeKind,
    /// The dependencies being created, outermost first, to report cycles.
    chain: Vec<(TypeId, &'static str)>,
}

impl DependencyContext {
    /// The app.
    pub fn app(&self) -> &App {
        self.task.app()
    }

    /// The scope of the dependency being created.
    pub fn scope(&self) -> ScopeKind {
        self.scope
    }

    /// The context of the task execution that owns the value: only for [`scope::Task`]
    /// dependencies (a longer-lived value must not depend on one task).
    pub fn task(&self) -> Option<&TaskContext> {
        (self.scope == ScopeKind::Task).then_some(&self.task)
    }

    /// The app's typed state `T`, when it provides one (declare the need in
    /// [`Dependency::check`] so `App::build()` reports it).
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        self.app().state::<T>()
    }

    /// Resolves another dependency, from a scope that lives at least as long as the one
    /// being created (a worker-scoped value cannot hold a task-scoped one).
    pub async fn resolve<U: Dependency, S: Scope>(&self) -> Result<Depends<U, S>, BoxError> {
        let mut chain = self.chain.clone();
        chain.push((TypeId::of::<U>(), std::any::type_name::<U>()));
        let child = DependencyContext {
            task: self.task.clone(),
            scope: S::KIND,
            chain,
        };
        if S::KIND < self.scope {
            return Err(format!(
                "`{}` (scope {}) cannot depend on `{}` of the shorter scope {}: give `{}` a scope at least as long",
                self.current_name(),
                self.scope,
                std::any::type_name::<U>(),
                S::KIND,
                std::any::type_name::<U>(),
            )
            .into());
        }
        if self.chain.iter().any(|(id, _)| *id == TypeId::of::<U>()) {
            let path: Vec<_> = child.chain.iter().map(|(_, name)| *name).collect();
            return Err(format!("dependency cycle: {}", path.join(" -> ")).into());
        }
        let value = resolve::<U>(child).await?;
        Ok(Depends {
            value,
            scope: PhantomData,
        })
    }

    fn current_name(&self) -> &'static str {
        self.chain.last().map(|(_, n)| *n).unwrap_or("?")
    }
}

impl TaskContext {
    /// Resolves a dependency by hand, as a `Depends<T, S>` parameter would (useful in a
    /// task body that needs it only on some paths).
    pub async fn resolve<T: Dependency, S: Scope>(&self) -> Result<Depends<T, S>, TaskError> {
        let ctx = DependencyContext {
            task: self.clone(),
            scope: S::KIND,
            chain: vec![(TypeId::of::<T>(), std::any::type_name::<T>())],
        };
        match resolve::<T>(ctx).await {
            Ok(value) => Ok(Depends {
                value,
                scope: PhantomData,
            }),
            Err(err) => Err(TaskError::from(err)),
        }
    }
}

/// Finds the scope instance for `ctx.scope` and gets or creates `T` in it. Boxed because
/// constructors resolve their own dependencies recursively.
fn resolve<T: Dependency>(
    ctx: DependencyContext,
) -> BoxFuture<'static, Result<Arc<T>, DependencyError>> {
    Box::pin(async move {
        let fail = |source: BoxError| DependencyError {
            dependency: std::any::type_name::<T>(),
            scope: ctx.scope,
            source,
        };
        let cache = ctx.task.scope_cache(ctx.scope).map_err(fail)?;
        let cell = cache.cell(TypeId::of::<T>()).map_err(fail)?;
        let value = cell
            .get_or_try_init(|| async {
                let value = Arc::new(T::create(&ctx).await.map_err(fail)?);
                tracing::debug!(dependency = std::any::type_name::<T>(), scope = %ctx.scope, "dependency created");
                cache.created(std::any::type_name::<T>(), value.clone(), close_erased::<T>);
                Ok::<_, DependencyError>(value as Arc<dyn Any + Send + Sync>)
            })
            .await?;
        value
            .clone()
            .downcast::<T>()
            .map_err(|_| fail("internal: a scope held a value of another type".into()))
    })
}

type Erased = Arc<dyn Any + Send + Sync>;
type CloseFn = fn(Erased) -> BoxFuture<'static, Result<(), BoxError>>;

fn close_erased<T: Dependency>(value: Erased) -> BoxFuture<'static, Result<(), BoxError>> {
    Box::pin(async move {
        match value.downcast::<T>() {
            Ok(value) => value.close().await,
            Err(_) => Ok(()),
        }
    })
}

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
    fn child_of(kind: ScopeKind, parent: Option<&ScopeCache>) -> Self {
        let cache = Self::new(kind);
        *cache.inner.in_parent.lock() = parent.map(|p| p.inner.children.token());
        cache
    }

    fn cell(&self, id: TypeId) -> Result<Arc<OnceCell<Erased>>, BoxError> {
        let mut state = self.inner.state.lock();
        if state.closed {
            return Err(format!("the {} scope has already ended", self.inner.kind).into());
        }
        Ok(state.cells.entry(id).or_default().clone())
    }

    fn created(&self, name: &'static str, value: Erased, close: CloseFn) {
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
                tracing::warn!(dependency = c.name, scope = %kind, panic = %crate::executor::panic_message(panic), "dependency teardown panicked")
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
    fn cache(&self, worker: Option<&ScopeCache>) -> &ScopeCache {
        self.cache
            .get_or_init(|| ScopeCache::child_of(ScopeKind::Task, worker))
    }
}

/// Keeps a task's scope open; the last hold to go tears it down.
pub(crate) struct TaskScopeHold {
    ctx: Option<TaskContext>,
}

impl TaskScopeHold {
    pub(crate) fn new(ctx: &TaskContext) -> Self {
        ctx.task_scope().holds.fetch_add(1, Ordering::AcqRel);
        TaskScopeHold {
            ctx: Some(ctx.clone()),
        }
    }

    /// Lets go; when this was the last hold, tears the scope down before returning.
    pub(crate) async fn release(mut self) {
        if let Some(cache) = self.take_last() {
            cache.close().await;
        }
    }

    fn take_last(&mut self) -> Option<ScopeCache> {
        let ctx = self.ctx.take()?;
        let scope = ctx.task_scope();
        if scope.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            scope.cache.get().cloned()
        } else {
            None
        }
    }
}

impl Drop for TaskScopeHold {
    fn drop(&mut self) {
        if let Some(cache) = self.take_last() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move { cache.close().await });
                }
                // Dropping the cache's last reference closes it in the background if it can.
                Err(_) => drop(cache),
            }
        }
    }
}

impl TaskContext {
    /// The instance of `kind` this execution uses.
    fn scope_cache(&self, kind: ScopeKind) -> Result<ScopeCache, BoxError> {
        match kind {
            ScopeKind::Task => Ok(self.task_scope().cache(self.worker_scope()).clone()),
            ScopeKind::Worker => self.worker_scope().cloned().ok_or_else(|| {
                "this execution runs outside a worker, so it has no worker scope".into()
            }),
            ScopeKind::Broker | ScopeKind::Storage | ScopeKind::GlobalConfig => {
                Ok(self.app().component_scope(kind).clone())
            }
        }
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
