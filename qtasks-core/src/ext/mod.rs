//! Extensions: code of the user's that the runtime calls at fixed points.
//!
//! - `plugin.rs`: [`Plugin`](crate::plugin::Plugin)s and their trigger points (QTasks' plugin
//!   triggers), able to read and replace what passes;
//! - `events.rs`: [`Events`](crate::events::Events), typed observers of the app's life and of
//!   every task's end;
//! - `middleware.rs`: [`TaskMiddleware`](crate::TaskMiddleware), per-task code before and
//!   after the function;
//! - `hooks.rs`: plugins and events of one app together, and the enqueue trigger points.

pub(crate) mod events;
pub(crate) mod hooks;
pub(crate) mod middleware;
pub(crate) mod plugin;
