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
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::app::handle::App;
use crate::context::TaskContext;
use crate::di::extract::FromTaskContext;
use crate::di::scopes::scope::{self, Scope};
use crate::di::scopes::{Erased, ScopeCache, ScopeKind};
use crate::di::state::State;
use crate::error::{BoxError, Missing, TaskError};

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
    fn check(_app: &App) -> Vec<Missing> {
        Vec::new()
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

    fn check(app: &App) -> Vec<Missing> {
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

impl fmt::Debug for DependencyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DependencyContext")
            .field("scope", &self.scope)
            .field(
                "chain",
                &self.chain.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
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

fn close_erased<T: Dependency>(value: Erased) -> BoxFuture<'static, Result<(), BoxError>> {
    Box::pin(async move {
        match value.downcast::<T>() {
            Ok(value) => value.close().await,
            Err(_) => Ok(()),
        }
    })
}

/// Keeps a task's scope open; the last hold to go tears it down.
pub(crate) struct TaskScopeHold {
    ctx: Option<TaskContext>,
}

impl TaskScopeHold {
    pub(crate) fn new(ctx: &TaskContext) -> Self {
        ctx.task_scope().hold();
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
        ctx.task_scope().release()
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
