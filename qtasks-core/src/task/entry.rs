//! The task registry: the [`TaskEntry`] every `#[qtasks::task]` puts in the [`TASKS`]
//! distributed slice at link time, with its [`TaskOptions`].
//!
//! An entry names the behaviour its attribute asks for (executor, middlewares, result
//! transform, `retry_on` matcher) as plain function pointers that the macro generates, so the
//! registry depends only on the running task's [`TaskContext`] and not on the traits those
//! functions call ([`TaskExecutor`](crate::TaskExecutor), [`TaskMiddleware`](crate::TaskMiddleware)).

use std::time::Duration;

use futures::future::BoxFuture;
use linkme::distributed_slice;

use crate::app::handle::App;
use crate::backend::Outcome;
use crate::context::TaskContext;
use crate::control::{Limits, Unique};
use crate::error::{Missing, TaskError};
use crate::task::args::{check_args, ArgsError, TaskParam};
use crate::task::backoff::Backoff;
use crate::task::extra::ExtraValue;
use crate::task::payload::Payload;
use crate::task::router::Router;

/// Whether the function is `async fn` (runs on tokio) or `fn` (runs on the blocking pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `async fn`: polled on the tokio runtime.
    Async,
    /// `fn`: run on tokio's blocking pool so it never blocks other tasks.
    Sync,
}

/// The erased entry point the macro generates: decode the arguments, build the extractors,
/// call the function and encode its output. Everything around it (timeouts, retry, panics,
/// middleware, storing) is the executor's, shared by every task.
pub type Handler = fn(TaskContext, Payload) -> BoxFuture<'static, Result<Payload, TaskError>>;

/// Checks an app can serve a task: what its extractors need that the app does not provide
/// (for example a `State<T>`), one entry per need.
pub type Check = fn(&App) -> Vec<Missing>;

/// Per-task options from the attribute (`priority = 1`, ...). Const-constructible, so the
/// macro writes `TaskOptions { priority: Some(1), ..TaskOptions::DEFAULT }`.
#[derive(Debug, Clone, Copy)]
pub struct TaskOptions {
    /// Default priority of this task (lower runs first); `None` = the app's default.
    pub priority: Option<i32>,
    /// Whether the function takes its `AsyncTask`/`SyncTask` handle first.
    pub echo: bool,
    /// Maximum run time of one attempt.
    pub max_time: Option<Duration>,
    /// Extra attempts after a failure (`retry = 3`: up to four runs).
    pub retry: u32,
    /// Retry only errors of these types (`retry_on = [..]`); `None` = retry every error.
    pub retry_on: Option<RetryOn>,
    /// The delay before each retry (`retry_backoff`, `retry_delay`, `retry_max_delay`,
    /// `retry_jitter`).
    pub backoff: Backoff,
    /// The function applied to the result before it is stored (the attribute's
    /// `decode = path`, the seeds' name for it).
    pub transform: Option<ResultTransform>,
    /// The path of the `generate_handler` function, for people (the macro wires the
    /// function itself into the task's [`Yield`](crate::Yield) parameter).
    pub generate_handler: Option<&'static str>,
    /// The executor that runs this task (`executor = Type`); `None` = the default pipeline.
    pub executor: Option<ExecutorRef>,
    /// Middlewares whose `before` runs, in order, before the function.
    pub middlewares_before: &'static [MiddlewareRef],
    /// Middlewares whose `after` runs, in order, after the function.
    pub middlewares_after: &'static [MiddlewareRef],
    /// Description for people (`inspect`).
    pub description: Option<&'static str>,
    /// Tags for people and plugins.
    pub tags: &'static [&'static str],
    /// Any other `key = literal` pairs of the attribute, each value typed as written
    /// (`level = 3` is [`ExtraValue::Int`]).
    pub extra: &'static [(&'static str, ExtraValue)],
    /// `unique`, `unique_for`, `debounce`: decided at enqueue.
    pub unique: Option<Unique>,
    /// `concurrency`, `rate_limit` and their keys: decided at claim, across every worker.
    pub limits: Limits,
    /// The named queue (`queue = "mail"`); `None`: the default queue.
    pub queue: Option<&'static str>,
}

impl TaskOptions {
    /// No options set.
    pub const DEFAULT: TaskOptions = TaskOptions {
        priority: None,
        echo: false,
        max_time: None,
        retry: 0,
        retry_on: None,
        backoff: Backoff::DEFAULT,
        transform: None,
        generate_handler: None,
        executor: None,
        middlewares_before: &[],
        middlewares_after: &[],
        description: None,
        tags: &[],
        extra: &[],
        unique: None,
        limits: Limits::NONE,
        queue: None,
    };

    /// The value of an extra `key = literal` pair of the attribute (`level = 3`:
    /// `extra("level") == Some(ExtraValue::Int(3))`).
    pub fn extra(&self, key: &str) -> Option<ExtraValue> {
        self.extra.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The error types a task retries on (`retry_on = [std::io::Error, MyError]`).
///
/// `matches` is generated by the macro: it is true when the error is, or wraps in its source
/// chain, one of the listed types (see [`TaskError::is`]).
#[derive(Debug, Clone, Copy)]
pub struct RetryOn {
    /// The types as written in the attribute.
    pub names: &'static [&'static str],
    /// Whether an error is one of them.
    pub matches: fn(&TaskError) -> bool,
}

/// The function that turns a task's result into what is stored (the attribute's
/// `decode = path`).
#[derive(Debug, Clone, Copy)]
pub struct ResultTransform {
    /// The path as written in the attribute.
    pub name: &'static str,
    /// Decodes the function's output, applies the function, encodes what it returns.
    pub apply: fn(&TaskContext, Payload) -> Result<Payload, TaskError>,
}

/// Runs one attempt of a task with its executor (see [`ExecutorRef`]).
pub type ExecuteFn = fn(TaskContext, Payload) -> BoxFuture<'static, Outcome>;

/// A task's executor (`executor = Type`): its name, and the generated function that runs an
/// attempt through it ([`TaskExecutor::execute`](crate::TaskExecutor::execute) on a
/// [`TaskRun`](crate::TaskRun) of the context and arguments).
#[derive(Clone, Copy)]
pub struct ExecutorRef {
    /// The type as written in the attribute.
    pub name: &'static str,
    /// Runs the attempt.
    pub execute: ExecuteFn,
}

/// A middleware's `before` (see [`MiddlewareRef`]).
pub type BeforeFn =
    for<'a> fn(&'a TaskContext, &'a mut Payload) -> BoxFuture<'a, Result<(), TaskError>>;

/// A middleware's `after` (see [`MiddlewareRef`]).
pub type AfterFn =
    for<'a> fn(&'a TaskContext, &'a mut Result<Payload, TaskError>) -> BoxFuture<'a, ()>;

/// One middleware of a task (`middlewares_before = [Type]`): its name, and the generated
/// functions that call its [`TaskMiddleware`](crate::TaskMiddleware) methods.
#[derive(Clone, Copy)]
pub struct MiddlewareRef {
    /// The type as written in the attribute.
    pub name: &'static str,
    /// Calls the middleware's `before`.
    pub before: BeforeFn,
    /// Calls the middleware's `after`.
    pub after: AfterFn,
}

impl std::fmt::Debug for ExecutorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl std::fmt::Debug for MiddlewareRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The registry entry of one task (Python's `TaskExecSchema`): what `app.task(name)` and
/// `app.tasks()` return.
#[derive(Debug)]
pub struct TaskEntry {
    /// The task name (the function name unless `name = ".."` was given).
    pub name: &'static str,
    /// `module::path` of the function.
    pub module_path: &'static str,
    /// Source file of the definition.
    pub file: &'static str,
    /// Source line of the definition.
    pub line: u32,
    /// Async or sync function.
    pub kind: TaskKind,
    /// Declared with `#[shared_task]`.
    pub shared: bool,
    /// The router the task belongs to; `None` = every app.
    pub router: Option<&'static Router>,
    /// The payload parameters as written (`a: i64, b: i64`), for error messages.
    pub signature: &'static str,
    /// The payload parameters in order, each with its name, type and generated check: what
    /// [`check_args`](Self::check_args) checks by-name arguments against.
    pub params: &'static [TaskParam],
    /// The return type as written (`i64`, `Result<u8, KeyError>`; `()` without one), for
    /// `inspect` and error messages.
    pub output: &'static str,
    /// Options from the attribute.
    pub options: TaskOptions,
    /// Problems that keep an app from serving this task.
    pub check: Check,
    /// The erased entry point.
    pub handler: Handler,
}

impl TaskEntry {
    /// `file:line` of the definition.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Whether encoded arguments (a named map or a positional list) fit this task's
    /// parameters: exactly its keys, or one value per parameter, each decoding as its type.
    /// `app.add_task(name, args)` runs it before anything is written.
    pub fn check_args(&self, args: &Payload) -> Result<(), ArgsError> {
        check_args(self.params, self.signature, args)
    }

    /// A check that finds nothing (for tasks without extractors).
    pub fn no_check(_: &App) -> Vec<Missing> {
        Vec::new()
    }
}

/// Every task in the program, registered by `#[qtasks::task]` at link time.
#[distributed_slice]
pub static TASKS: [TaskEntry];
