//! The runtime of [qtasks](https://docs.rs/qtasks): the app, the task registry, the execution
//! pipeline, the worker and the component traits that backends implement.
//!
//! Users depend on the `qtasks` facade crate, which re-exports the items below by name;
//! backends (`qtasks-memory`, `qtasks-redis`) depend only on this crate and its
//! [`backend`] module.
//!
//! # A tour, in the order a task meets the code
//!
//! 1. **A task is declared.** `#[qtasks::task]` turns a function into a zero-sized struct that
//!    implements [`TaskDef`], and puts a [`TaskEntry`](registry::TaskEntry) (name, options,
//!    handler) into the [`registry`] at link time. Its arguments travel as a [`Payload`], its
//!    name as a [`TaskName`]. (`task/`)
//! 2. **An app is built.** [`App::builder`] gathers the tasks of the included [`Router`]s, the
//!    typed [`State`], plugins, events, timers and a backend, and [`AppBuilder::build`] fails
//!    fast with every [`BuildProblem`] at once. (`app/`)
//! 3. **A task is enqueued.** `add.add_task(2, 3)`, a [`TaskCall`] or `app.add_task(name,
//!    args)` write a [`Task`] record with status `new` through the backend's
//!    [`Broker`](backend::Broker), the enqueue [plugins](plugin) around it. (`app/enqueue.rs`)
//! 4. **A worker claims it.** [`App::spawn_worker`] starts a [`WorkerHandle`]: it claims
//!    batches, holds each task's lease and cancellation, and hands tasks to its lanes.
//!    (`worker/`)
//! 5. **The task runs.** The one execution pipeline builds the [`TaskContext`], resolves the
//!    extractors ([`FromTaskContext`]: [`Depends`], [`State`], [`AsyncTask`], [`Yield`]) and
//!    runs the task's [`TaskExecutor`] (the [`DefaultExecutor`] unless it names another) under
//!    `max_time`, cancellation and panic catching; middlewares ([`TaskMiddleware`]), plugins
//!    and [events] fire at their points. (`execute/`, `context/`, `di/`, `ext/`)
//! 6. **Its end is recorded.** The outcome (success, error with its traceback, retry after a
//!    [`Backoff`], cancel, dead-letter) is acknowledged to the broker in a batch, which wakes
//!    whoever [waits](Task::wait) on the task. (`worker/run.rs`, `backend/`)
//! 7. **Work made of several tasks** ([chains](chain), generator streams, [timers](timer))
//!    builds on the same steps. (`flow/`)
//!
//! `docs/architecture.md` walks the same path with the file and function at each step.
#![warn(missing_docs)]

mod app;
pub mod backend;
mod context;
pub mod control;
mod di;
mod error;
mod execute;
mod ext;
mod flow;
pub mod observe;
mod task;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use crate::app::builder::AppBuilder;
pub use crate::app::config::Config;
pub use crate::app::enqueue::PreparedTasks;
pub use crate::app::handle::App;
pub use crate::context::component::Component;
pub use crate::context::echo::{AsyncTask, SyncTask};
pub use crate::context::logger::TaskLogger;
pub use crate::context::TaskContext;
pub use crate::di::depends::{Dependency, DependencyContext, DependencyError, Depends};
pub use crate::di::extract::FromTaskContext;
pub use crate::di::scopes::{scope, ScopeKind};
pub use crate::di::state::{KvState, State};
pub use crate::error::{BoxError, BuildProblem, Error, Missing, Result, TaskError, TaskErrorKind};
pub use crate::execute::executor::{DefaultExecutor, TaskExecutor, TaskRun};
pub use crate::ext::middleware::TaskMiddleware;
pub use crate::flow::generator::{Yield, YieldStream};
pub use crate::task::backoff::{Backoff, BackoffSteps};
pub use crate::task::blob::Blob;
pub use crate::task::call::TaskCall;
pub use crate::task::def::TaskDef;
pub use crate::task::name::TaskName;
pub use crate::task::payload::Payload;
pub use crate::task::record::{Attempt, Task, ATTEMPTS_KEPT};
pub use crate::task::router::Router;
pub use crate::task::status::TaskStatus;
pub use crate::worker::handle::WorkerHandle;
pub use crate::worker::scope::WorkerRef;
/// Task ids.
pub use uuid::Uuid;

/// The task registry: the entries `#[qtasks::task]` registers at link time, for tools that
/// list or inspect tasks (`app.tasks()`, `app.task(name)` return them).
pub mod registry {
    pub use crate::task::args::{check_args, ArgsError, FieldCheck, TaskParam};
    pub use crate::task::entry::{
        AfterFn, BeforeFn, Check, ExecuteFn, ExecutorRef, Handler, MiddlewareRef, ResultTransform,
        RetryOn, TaskEntry, TaskKind, TaskOptions, TASKS,
    };
    pub use crate::task::extra::ExtraValue;
}

/// Plugins: code that runs at the trigger points of every component (QTasks' plugin
/// triggers). See [`Plugin`](plugin::Plugin) and [`Trigger`](plugin::Trigger).
pub mod plugin {
    pub use crate::ext::plugin::{from_fn, ComponentKind, FnPlugin, Plugin, Plugins, Trigger};
}

/// Events: typed observers of the app's life and of every task's end (Python's
/// `app.events.on.*`). See [`Events`](events::Events).
pub mod events {
    pub use crate::ext::events::{
        AppEvent, Events, TaskCancel, TaskEvent, TaskFailure, TaskSuccess, WorkerEvent,
    };
}

/// Chains: a pipeline of tasks where each step's result is the next step's argument. See
/// [`Chain`](chain::Chain).
pub mod chain {
    pub use crate::flow::chain::{Chain, ChainHandle};
}

/// Timers: cron expressions and intervals that enqueue tasks, once per tick across every
/// instance. See [`Timer`](timer::Timer).
pub mod timer {
    pub use crate::flow::timer::{Schedule, Tick, Timer, TimersHandle};
}

/// The app's lifecycle components: what runs its tasks ([`Worker`](component::Worker)) and
/// what starts and stops it ([`Starter`](component::Starter)). With the backend's
/// [`Broker`](crate::backend::Broker), [`Storage`](crate::backend::Storage) and
/// [`GlobalConfig`](crate::backend::GlobalConfig), every component of an app is a trait, and
/// the built-in ones are ordinary implementors that a program can wrap or replace on the
/// builder ([`AppBuilder::worker`], [`AppBuilder::starter`], [`AppBuilder::map_backend`]).
pub mod component {
    pub use crate::app::component::{QueueWorker, SignalStarter, Starter, Worker};
    pub use crate::worker::handle::WorkerRunner;
    /// The token that stops one running task (see
    /// [`WorkerRunner::execute`](crate::component::WorkerRunner::execute)).
    pub use tokio_util::sync::CancellationToken;
}

/// Items used by code that `#[qtasks::task]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::backend::Outcome;
    pub use crate::control::{KeyFrom, Limits, Rate, Unique};
    pub use crate::execute::executor::run_executor;
    pub use crate::execute::handler::{
        decode_args, decode_output, encode_output, output, run_blocking, IntoTaskResult,
    };
    pub use crate::flow::generator::reply;
    pub use crate::registry::{
        ExecutorRef, MiddlewareRef, ResultTransform, RetryOn, TaskEntry, TaskKind, TaskOptions,
        TASKS,
    };
    pub use crate::task::args::{field_decoder, FieldDecoder, TaskParam};
    pub use crate::task::extra::ExtraValue;
    pub use crate::task::output::{assert_output, assert_output_value, TaskOutput};
    pub use crate::{
        App, Backoff, FromTaskContext, Missing, Payload, Result, Task, TaskCall, TaskContext,
        TaskDef, TaskError, TaskExecutor, TaskMiddleware, Yield,
    };
    pub use futures::future::BoxFuture;
    pub use linkme;
    pub use serde;
    pub use serde_json;
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

    /// How each field of a task's arguments is (de)serialized: through serde when the type
    /// supports it, else through a stand-in that compiles (the type's own compile error comes
    /// from `assert_payload`, once). Autoref specialization on the concrete field type.
    pub mod field {
        use std::marker::PhantomData;

        use serde::{de::DeserializeOwned, Deserializer, Serialize, Serializer};

        /// A field to serialize.
        pub struct Ser<'a, T>(pub &'a T);

        impl<T> std::fmt::Debug for Ser<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Ser")
            }
        }

        /// Picked (by value) when `T: Serialize`.
        pub trait SerializeReal {
            /// Serializes the field.
            fn qtasks_serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
        }
        impl<T: Serialize> SerializeReal for Ser<'_, T> {
            fn qtasks_serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        /// Picked through autoref otherwise (never runs: the program does not compile).
        pub trait SerializeNever {
            /// Fails.
            fn qtasks_serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
        }
        impl<T> SerializeNever for &Ser<'_, T> {
            fn qtasks_serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom(
                    "this task argument is not serializable",
                ))
            }
        }

        /// A field to deserialize.
        pub struct De<T>(PhantomData<fn() -> T>);

        impl<T> std::fmt::Debug for De<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("De")
            }
        }

        impl<T> De<T> {
            /// The marker.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                De(PhantomData)
            }
        }

        /// Picked (by value) when `T: DeserializeOwned`.
        pub trait DeserializeReal<T> {
            /// Deserializes the field.
            fn qtasks_deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<T, D::Error>;
        }
        impl<T: DeserializeOwned> DeserializeReal<T> for De<T> {
            fn qtasks_deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<T, D::Error> {
                T::deserialize(d)
            }
        }

        /// Picked through autoref otherwise (never runs: the program does not compile).
        pub trait DeserializeNever<T> {
            /// Fails.
            fn qtasks_deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<T, D::Error>;
        }
        impl<T> DeserializeNever<T> for &De<T> {
            fn qtasks_deserialize<'de, D: Deserializer<'de>>(&self, _: D) -> Result<T, D::Error> {
                Err(serde::de::Error::custom(
                    "this task argument is not deserializable",
                ))
            }
        }
    }

    /// A type that `retry_on = [..]` can list.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be in `retry_on`: it lists error types, and `{Self}` does not implement `std::error::Error`",
        label = "not an error type",
        note = "list the error types the task returns or wraps (found through the error's source chain), such as `std::io::Error`"
    )]
    pub trait RetryOnError: std::error::Error + 'static {}
    impl<T: std::error::Error + 'static> RetryOnError for T {}

    /// Compile-time assertion that `T` can be listed in `retry_on` (spanned at the entry).
    pub fn assert_retry_on<T: RetryOnError>() {}

    /// Whether `err` is, or wraps, a `T` (the generated `retry_on` matcher).
    pub fn error_is<T: RetryOnError>(err: &TaskError) -> bool {
        err.is::<T>()
    }

    /// A middleware value for `middlewares_before`/`middlewares_after` (spanned at the entry).
    pub const fn middleware<M: TaskMiddleware>(m: &'static M) -> &'static dyn TaskMiddleware {
        m
    }

    /// An executor value for `executor = ..` (spanned at the path).
    pub const fn executor<E: TaskExecutor>(e: &'static E) -> &'static dyn TaskExecutor {
        e
    }
}
