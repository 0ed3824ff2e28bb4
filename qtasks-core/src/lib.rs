//! Runtime of [qtasks](https://docs.rs/qtasks): the app, the task registry, the executor
//! pipeline, the worker and the component traits that backends implement.
//!
//! Users depend on the `qtasks` facade crate, which re-exports this crate; backends
//! (`qtasks-memory`, `qtasks-redis`) depend only on this crate.
#![warn(missing_docs)]

mod app;
pub mod backend;
mod call;
pub mod chain;
pub mod component;
mod config;
#[cfg(feature = "testing")]
pub mod conformance;
mod context;
mod def;
mod depends;
mod echo;
mod error;
pub mod events;
pub mod executor;
mod extract;
mod generator;
mod hooks;
mod middleware;
mod payload;
pub mod plugin;
mod router;
mod state;
mod status;
mod task;
mod task_executor;
pub mod testkit;
pub mod timer;
mod worker;

pub use app::{App, AppBuilder};
pub use backend::{Backend, CancelOutcome, DeadLetterReason, QueueStats};
pub use call::TaskCall;
pub use config::Config;
pub use context::{Component, TaskContext, TaskLogger};
pub use def::{
    Backoff, Check, Decode, ExecutorRef, Handler, MiddlewareRef, RetryOn, TaskDef, TaskKind,
    TaskOptions, TaskSpec, TASKS,
};
pub use depends::{scope, Dependency, DependencyContext, DependencyError, Depends, ScopeKind};
pub use echo::{AsyncTask, SyncTask};
pub use error::{BoxError, Error, Result, TaskError, TaskErrorKind};
pub use extract::FromTaskContext;
pub use generator::{Yield, YieldStream};
pub use middleware::TaskMiddleware;
pub use payload::Payload;
pub use router::Router;
pub use state::{KvState, State};
pub use status::TaskStatus;
pub use task::Task;
pub use task_executor::{DefaultExecutor, TaskExecutor, TaskRun};
/// Task ids.
pub use uuid::Uuid;
pub use worker::{WorkerHandle, WorkerRef};

/// Items used by code that `#[qtasks::task]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::executor::{
        decode_args, decode_output, encode_output, run_blocking, IntoTaskResult,
    };
    pub use crate::generator::reply;
    pub use crate::{
        App, Backoff, Decode, ExecutorRef, FromTaskContext, MiddlewareRef, Payload, Result,
        RetryOn, Task, TaskCall, TaskContext, TaskDef, TaskError, TaskExecutor, TaskKind,
        TaskMiddleware, TaskOptions, TaskSpec, Yield, TASKS,
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
