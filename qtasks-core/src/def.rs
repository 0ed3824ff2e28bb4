//! Task definitions: the [`TaskDef`] trait that `#[qtasks::task]` implements, and the
//! [`TaskSpec`] registry entry every task puts in the [`TASKS`] distributed slice.

use std::time::Duration;

use futures::future::BoxFuture;
use linkme::distributed_slice;
use serde::{de::DeserializeOwned, Serialize};

use crate::{Payload, Router, TaskContext, TaskError};

/// What `#[qtasks::task]` implements for the struct it generates.
///
/// The trait is named `TaskDef`, not `Task`, because [`Task`](crate::Task) is the record users
/// read back (the seeds' `Task` schema), and one name cannot serve both.
pub trait TaskDef: Copy + Send + Sync + 'static {
    /// The arguments (the function's payload parameters), encoded as a named map.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the task returns on success (`T` of `-> T` or `-> Result<T, E>`).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The registry entry: name, options, handler.
    fn spec() -> &'static TaskSpec;
}

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

/// Checks an app can serve a task (for example that the `State<T>` it asks for is provided).
/// Returns one message per problem.
pub type Check = fn(&crate::App) -> Vec<String>;

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
    /// Extra attempts after a failure.
    pub retry: u32,
    /// Description for people (`inspect`).
    pub description: Option<&'static str>,
    /// Tags for people and plugins.
    pub tags: &'static [&'static str],
    /// Any other `key = literal` pairs of the attribute.
    pub extra: &'static [(&'static str, &'static str)],
}

impl TaskOptions {
    /// No options set.
    pub const DEFAULT: TaskOptions = TaskOptions {
        priority: None,
        echo: false,
        max_time: None,
        retry: 0,
        description: None,
        tags: &[],
        extra: &[],
    };
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The registry entry of one task (Python's `TaskExecSchema`).
#[derive(Debug)]
pub struct TaskSpec {
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
    /// The output type as written, for error messages.
    pub output: &'static str,
    /// Options from the attribute.
    pub options: TaskOptions,
    /// Problems that keep an app from serving this task.
    pub check: Check,
    /// The erased entry point.
    pub handler: Handler,
}

impl TaskSpec {
    /// `file:line` of the definition.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// A check that finds nothing (for tasks without extractors).
    pub fn no_check(_: &crate::App) -> Vec<String> {
        Vec::new()
    }
}

/// Every task in the program, registered by `#[qtasks::task]` at link time.
#[distributed_slice]
pub static TASKS: [TaskSpec];
