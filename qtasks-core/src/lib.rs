//! Runtime of [qtasks](https://docs.rs/qtasks): the app, the task registry, the executor
//! pipeline, the worker and the component traits that backends implement.
//!
//! Users depend on the `qtasks` facade crate, which re-exports this crate; backends
//! (`qtasks-memory`, `qtasks-redis`) depend only on this crate.
#![warn(missing_docs)]

mod app;
pub mod backend;
mod call;
mod config;
mod context;
mod def;
mod depends;
mod echo;
mod error;
pub mod executor;
mod extract;
mod payload;
mod router;
mod state;
mod status;
mod task;
mod worker;

pub use app::{App, AppBuilder};
pub use backend::{Backend, CancelOutcome, QueueStats};
pub use call::TaskCall;
pub use config::Config;
pub use context::TaskContext;
pub use def::{Check, Handler, TaskDef, TaskKind, TaskOptions, TaskSpec, TASKS};
pub use depends::{scope, Dependency, DependencyContext, DependencyError, Depends, ScopeKind};
pub use echo::{AsyncTask, SyncTask};
pub use error::{BoxError, Error, Result, TaskError, TaskErrorKind};
pub use extract::FromTaskContext;
pub use payload::Payload;
pub use router::Router;
pub use state::{KvState, State};
pub use status::TaskStatus;
pub use task::Task;
/// Task ids.
pub use uuid::Uuid;
pub use worker::WorkerHandle;

/// Items used by code that `#[qtasks::task]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::executor::{decode_args, encode_output, run_blocking, IntoTaskResult};
    pub use crate::{
        App, FromTaskContext, Payload, Result, Task, TaskCall, TaskContext, TaskDef, TaskError,
        TaskKind, TaskOptions, TaskSpec, TASKS,
    };
    pub use futures::future::BoxFuture;
    pub use linkme;
    pub use serde;
    pub use std::time::Duration;

    /// A type that can be a task argument: serializable, owned, sendable.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a task argument: task arguments are sent to the worker, so they must implement serde's `Serialize` and `Deserialize` (owned, `Send`, `'static`)",
        label = "not a serializable task argument",
        note = "derive `Serialize, Deserialize` for it, or, if it is an extractor built from the task's context, mark the parameter `#[extract]`"
    )]
    pub trait TaskPayload {}
    impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> TaskPayload for T {}

    /// Compile-time assertion that `T` is a valid task argument (spanned at the parameter).
    pub fn assert_payload<T: TaskPayload>() {}
}
