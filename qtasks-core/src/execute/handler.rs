//! What the code `#[qtasks::task]` generates calls at run time (through `__private`):
//! arguments decoded, outputs encoded, a sync body run on the blocking pool.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::TaskContext;
use crate::di::depends::TaskScopeHold;
use crate::error::{panic_message, TaskError, TaskErrorKind};
use crate::task::payload::Payload;

/// Runs a sync task body on tokio's blocking pool, with the task's app as the current app, so
/// it never blocks other tasks. A panic becomes a [`TaskError`].
pub async fn run_blocking<R: Send + 'static>(
    ctx: &TaskContext,
    body: impl FnOnce() -> R + Send + 'static,
) -> Result<R, TaskError> {
    let app = ctx.app().clone();
    let task_scope = TaskScopeHold::new(ctx);
    let body = move || {
        let _task_scope = task_scope;
        app.scope_blocking(body)
    };
    match tokio::task::spawn_blocking(body).await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => Err(TaskError::new(TaskErrorKind::Panicked(panic_message(
            e.into_panic(),
        )))),
        Err(e) => Err(TaskError::msg(format!(
            "the blocking pool dropped the task: {e}"
        ))),
    }
}

/// Decodes a task's arguments, naming the task and its parameters when they do not fit, and
/// the argument that does not (the arguments may come from any producer, unchecked).
pub fn decode_args<A: DeserializeOwned>(ctx: &TaskContext, args: &Payload) -> Result<A, TaskError> {
    args.decode::<A>().map_err(|e| {
        let entry = ctx.entry();
        let message = match entry.check_args(args) {
            Err(problem) => format!(
                "task {:?} expects arguments ({}): {problem}",
                entry.name, entry.signature
            ),
            Ok(()) => format!(
                "task {:?} expects arguments ({}) but got {:?}: {e}",
                entry.name, entry.signature, args
            ),
        };
        TaskError::new(TaskErrorKind::BadArguments(message))
    })
}

/// Encodes a task's output.
pub fn encode_output<T: Serialize>(ctx: &TaskContext, output: &T) -> Result<Payload, TaskError> {
    Payload::encode(output).map_err(|e| {
        TaskError::msg(format!(
            "cannot encode the result of task {:?} (it returns `{}`): {e}",
            ctx.task_name(),
            ctx.entry().output
        ))
    })
}

/// Decodes a task's encoded output back into its type (for `decode = path`).
pub fn decode_output<T: DeserializeOwned>(
    ctx: &TaskContext,
    output: &Payload,
) -> Result<T, TaskError> {
    output.decode::<T>().map_err(|e| {
        TaskError::msg(format!(
            "cannot read back the result of task {:?} (it returns `{}`) for its result transform (`decode = ..`) (a middleware after may have replaced it with another type): {e}",
            ctx.task_name(),
            ctx.entry().output
        ))
    })
}

/// Turns what a task function returns into `Result<Output, TaskError>`; implemented for
/// `Result<T, E>` with `E: Into<TaskError>`. Plain `T` returns are wrapped by the macro.
pub trait IntoTaskResult {
    /// The success type.
    type Output;
    /// The conversion.
    fn into_task_result(self) -> Result<Self::Output, TaskError>;
}

impl<T, E: Into<TaskError>> IntoTaskResult for Result<T, E> {
    type Output = T;
    fn into_task_result(self) -> Result<T, TaskError> {
        self.map_err(Into::into)
    }
}

/// How the generated handler encodes a result and reads it back: through serde when its type
/// supports it, else through a stand-in that compiles (the type's own compile error comes from
/// [`assert_output`](crate::__private::assert_output), once). Autoref specialization on the concrete result type.
pub mod output {
    use std::marker::PhantomData;

    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::context::TaskContext;
    use crate::error::TaskError;
    use crate::task::payload::Payload;

    /// A result of type `T` to encode or decode.
    pub struct Out<T>(PhantomData<fn() -> T>);

    impl<T> Out<T> {
        /// The marker.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Out(PhantomData)
        }

        /// The marker for the type of `value`.
        pub fn of(_value: &T) -> Self {
            Out(PhantomData)
        }
    }

    impl<T> std::fmt::Debug for Out<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Out")
        }
    }

    /// Picked (by value) when `T` is serializable.
    pub trait OutputReal<T> {
        /// Encodes the result ([`encode_output`](super::encode_output)).
        fn qtasks_encode(&self, ctx: &TaskContext, out: &T) -> Result<Payload, TaskError>;
        /// Decodes the result ([`decode_output`](super::decode_output)).
        fn qtasks_decode(&self, ctx: &TaskContext, out: &Payload) -> Result<T, TaskError>;
    }
    impl<T: Serialize + DeserializeOwned> OutputReal<T> for Out<T> {
        fn qtasks_encode(&self, ctx: &TaskContext, out: &T) -> Result<Payload, TaskError> {
            super::encode_output(ctx, out)
        }
        fn qtasks_decode(&self, ctx: &TaskContext, out: &Payload) -> Result<T, TaskError> {
            super::decode_output(ctx, out)
        }
    }

    /// Picked through autoref otherwise (never runs: the program does not compile).
    pub trait OutputNever<T> {
        /// Fails.
        fn qtasks_encode(&self, ctx: &TaskContext, out: &T) -> Result<Payload, TaskError>;
        /// Fails.
        fn qtasks_decode(&self, ctx: &TaskContext, out: &Payload) -> Result<T, TaskError>;
    }
    impl<T> OutputNever<T> for &Out<T> {
        fn qtasks_encode(&self, _: &TaskContext, _: &T) -> Result<Payload, TaskError> {
            Err(TaskError::msg("this task result is not serializable"))
        }
        fn qtasks_decode(&self, _: &TaskContext, _: &Payload) -> Result<T, TaskError> {
            Err(TaskError::msg("this task result is not deserializable"))
        }
    }
}
