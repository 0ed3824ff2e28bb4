//! # qtasks
//!
//! A task queue for Rust services: declare a task like an axum handler, enqueue it, let a
//! worker run it, read its result.
//!
//! ```no_run
//! use qtasks::prelude::*;
//! use std::time::Duration;
//!
//! #[qtasks::task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! # async fn demo() -> qtasks::Result<()> {
//! let app = App::builder().name("demo").build()?;   // in-memory backend by default
//! let worker = app.spawn_worker();
//! let task = add.add_task(2, 3).await?;              // status `new`
//! let done = task.wait(Duration::from_secs(5)).await?;
//! assert_eq!(done.returning, Some(5));
//! worker.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # The concepts, in the order a task meets them
//!
//! 1. **Tasks.** `#[qtasks::task]` (and `#[qtasks::shared_task]`) turns a function into a
//!    typed task: `add.add_task(2, 3)`, or a [`TaskCall`] built with `add.call(2, 3)` and
//!    `.priority(..)`, `.timeout(..)`, `.on(&app)`, `.idempotency_key(..)`. Attribute keys set
//!    retries (`retry`, `retry_on`, [`Backoff`]), `max_time`, `priority`, middlewares
//!    ([`TaskMiddleware`]), an executor ([`TaskExecutor`]), the result transform (`decode`).
//!    Tasks are grouped with a [`Router`].
//! 2. **The app.** [`App::builder`] picks the backend (`broker_url`, by cargo feature), the
//!    routers, typed [`State`], [plugins](plugin), [events], [timers](timer) and the
//!    [components](component); [`AppBuilder::build`] fails fast with every [`BuildProblem`].
//! 3. **Enqueue.** The [`Task`] record comes back with status `new` ([`TaskStatus`]); calls by
//!    name (`app.add_task("add", json!([2, 3]))`) and in bulk (`app.add_tasks(..)`) take the same
//!    path.
//! 4. **The worker.** [`App::spawn_worker`] (or `run_forever`) runs tasks with
//!    `max_tasks_process` lanes, bounded prefetch and graceful shutdown ([`WorkerHandle`]).
//! 5. **A running task** gets its [`TaskContext`] (`get_logger`, `get_config`, `get_metadata`,
//!    `sleep`, `cancel`, ...), the echo handles [`AsyncTask`]/[`SyncTask`], and whatever its
//!    extractor parameters ask for ([`FromTaskContext`]): [`Depends`] with its [`scope`],
//!    [`State`], [`KvState`], a generator's [`Yield`].
//! 6. **The end.** The outcome is stored and waiters wake: [`Task::wait`]; failures retry
//!    while attempts remain; [chains](chain) and [`YieldStream`]s build on it.
//! 7. **Testing and backends.** `qtasks::testing::TestKit` (feature `testing`) runs tasks
//!    inline; [`backend`] has the component traits a backend implements, [`registry`] the task
//!    registry.
//!
//! The guide in `docs/` walks through every feature (`docs/architecture.md` is the map of the
//! code); `examples/` has a runnable program for each. Backends are picked by cargo feature:
//! `memory` (default, in-process) and `redis`.
#![warn(missing_docs)]

// The user-facing items, by name (plumbing for generated code is in `__private`).
/// What [`App::cancel`] found.
pub use qtasks_core::backend::CancelOutcome;
pub use qtasks_core::{
    scope, App, AppBuilder, AsyncTask, Attempt, Backoff, BackoffSteps, Blob, BoxError,
    BuildProblem, Component, Config, DefaultExecutor, Dependency, DependencyContext,
    DependencyError, Depends, Error, FromTaskContext, KvState, Missing, Payload, Result, Router,
    ScopeKind, State, SyncTask, Task, TaskCall, TaskContext, TaskDef, TaskError, TaskErrorKind,
    TaskExecutor, TaskLogger, TaskMiddleware, TaskName, TaskRun, TaskStatus, Uuid, WorkerHandle,
    WorkerRef, Yield, YieldStream, ATTEMPTS_KEPT,
};
// The concept modules.
pub use qtasks_core::{
    backend, chain, component, control, events, observe, plugin, registry, timer,
};

/// Test helpers (feature `testing`): [`TestKit`](testing::TestKit) runs tasks inline through
/// the full execution pipeline and records what they enqueue.
#[cfg(feature = "testing")]
pub mod testing {
    pub use qtasks_core::testing::testkit::{Enqueued, TestKit};
}

#[doc(hidden)]
pub use qtasks_core::__private;

#[cfg(feature = "macros")]
pub use qtasks_macros::{shared_task, task};

/// The in-memory backend (feature `memory`, on by default).
#[cfg(feature = "memory")]
pub use qtasks_memory as memory;

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use qtasks_redis as redis;

/// The PostgreSQL backend (feature `postgres`), with enqueue in the caller's transaction
/// ([`postgres::EnqueueInTransaction`]).
#[cfg(feature = "postgres")]
pub use qtasks_postgres as postgres;

/// The web dashboard and JSON API on axum (feature `web`): [`web::router`] to mount in an
/// axum app, [`web::serve`] to serve it (see `docs/web.md`).
#[cfg(feature = "web")]
pub use qtasks_web as web;

/// Metrics (feature `metrics`): the Prometheus recorder, `/metrics` rendering and a standalone
/// endpoint ([`metrics::serve`]); see `docs/observability.md`.
#[cfg(feature = "metrics")]
pub mod metrics;

/// Trace propagation with OpenTelemetry (feature `opentelemetry`); see
/// `docs/observability.md`.
#[cfg(feature = "opentelemetry")]
pub mod trace;

/// The gRPC API on tonic (feature `grpc`): Python QTasks' `qtasks.v1.QTasksService` (`AddTask`,
/// `GetTask`) plus `Cancel`, `WaitTask` and `ListTasks`; [`grpc::serve`] to serve it,
/// [`grpc::service`] to add it to a tonic server (see `docs/grpc.md`).
#[cfg(feature = "grpc")]
pub use qtasks_grpc as grpc;

#[cfg(feature = "cli")]
pub mod cli;

/// The guide's chapters, compiled and run as doctests so their code stays true.
#[cfg(doctest)]
pub mod guide {
    #[doc = include_str!("../docs/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../docs/dependencies.md")]
    pub struct Dependencies;
    #[doc = include_str!("../docs/tasks.md")]
    pub struct Tasks;
    #[doc = include_str!("../docs/retry-and-timeouts.md")]
    pub struct RetryAndTimeouts;
    #[doc = include_str!("../docs/generators.md")]
    pub struct Generators;
    #[doc = include_str!("../docs/middleware-and-executors.md")]
    pub struct MiddlewareAndExecutors;
    #[cfg(feature = "redis")]
    #[doc = include_str!("../docs/redis.md")]
    pub struct Redis;
    #[cfg(feature = "postgres")]
    #[doc = include_str!("../docs/postgres.md")]
    pub struct Postgres;
    #[doc = include_str!("../docs/events.md")]
    pub struct Events;
    #[doc = include_str!("../docs/plugins.md")]
    pub struct Plugins;
    #[doc = include_str!("../docs/timers.md")]
    pub struct Timers;
    #[doc = include_str!("../docs/chains.md")]
    pub struct Chains;
    #[doc = include_str!("../docs/flow-control.md")]
    pub struct FlowControl;
    #[doc = include_str!("../docs/testing.md")]
    pub struct Testing;
    #[doc = include_str!("../docs/components.md")]
    pub struct Components;
    #[doc = include_str!("../docs/cli.md")]
    pub struct Cli;
    #[cfg(feature = "web")]
    #[doc = include_str!("../docs/web.md")]
    pub struct Web;
    #[cfg(feature = "grpc")]
    #[doc = include_str!("../docs/grpc.md")]
    pub struct Grpc;
    #[cfg(all(feature = "metrics", feature = "opentelemetry"))]
    #[doc = include_str!("../docs/observability.md")]
    pub struct Observability;
    #[doc = include_str!("../docs/from-python-qtasks.md")]
    pub struct FromPythonQtasks;
}

/// The names most programs need: `use qtasks::prelude::*;`.
pub mod prelude {
    pub use qtasks_core::backend::CancelOutcome;
    pub use qtasks_core::{
        scope, App, AsyncTask, BoxError, Dependency, DependencyContext, Depends, FromTaskContext,
        KvState, Missing, Router, State, SyncTask, Task, TaskCall, TaskContext, TaskError,
        TaskStatus, Yield,
    };
}
