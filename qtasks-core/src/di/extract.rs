//! Extractors: task parameters that are built from the running task's context instead of
//! decoded from its arguments (modelled on axum's `FromRequestParts`).

use std::future::Future;

use crate::app::handle::App;
use crate::context::TaskContext;
use crate::error::{Missing, TaskError};

/// A type that a task can take as a parameter, built from the running task's context.
///
/// The `#[task]` macro treats a parameter as an extractor when its type is one of the
/// built-in extractors or when the parameter is marked `#[extract]`; every other parameter is
/// payload, decoded from the task's arguments.
///
/// A custom extractor, checked when the app is built, taken by a task as
/// `#[extract] tenant: Tenant`:
///
/// ```
/// use qtasks_core::{App, FromTaskContext, Missing, TaskContext, TaskError};
///
/// /// The tenant a task works for, from the app's typed state.
/// struct Tenant(String);
/// struct Tenants { default: String }
///
/// impl FromTaskContext for Tenant {
///     async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
///         let tenants = ctx.app().state::<Tenants>()
///             .ok_or_else(|| TaskError::msg("no Tenants state"))?;
///         Ok(Tenant(tenants.default.clone()))
///     }
///     fn check(app: &App) -> Vec<Missing> {
///         match app.state::<Tenants>() {
///             Some(_) => vec![],
///             None => vec![Missing::other("`Tenant` needs `.state(Tenants { .. })`")],
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an extractor: a parameter marked `#[extract]` (or of a built-in extractor type) must implement `FromTaskContext`",
    label = "not an extractor",
    note = "implement `qtasks::FromTaskContext` for it, or remove `#[extract]` if it is a task argument sent in the payload"
)]
pub trait FromTaskContext: Sized + Send + 'static {
    /// Builds the value for one execution. An error ends the task with status `error`
    /// (naming the extractor), subject to the task's retry settings.
    fn from_task_context(ctx: &TaskContext)
        -> impl Future<Output = Result<Self, TaskError>> + Send;

    /// What keeps `app` from providing this extractor, found at `App::build()` (for example
    /// a missing `State<T>`: [`Missing::state`]). One entry per need; `App::build()` reports
    /// each with the task that asks.
    fn check(_app: &App) -> Vec<Missing> {
        Vec::new()
    }
}

impl FromTaskContext for TaskContext {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(ctx.clone())
    }
}

/// An optional extractor: `None` when `T` cannot be built. Never fails the build check.
impl<T: FromTaskContext> FromTaskContext for Option<T> {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(T::from_task_context(ctx).await.ok())
    }
}
