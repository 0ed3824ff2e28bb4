//! Errors: [`Error`] for the framework's own operations, [`TaskError`] for what a task returns.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::task::payload::Payload;
use crate::task::status::TaskStatus;

/// A boxed error that can cross threads: what a failed task carries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of qtasks operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a qtasks operation (enqueueing, waiting, building an app, a backend call).
///
/// Every variant names the task or the setting involved and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `App::build()` found problems; all of them are listed.
    #[error("the app cannot be built:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Build(Vec<BuildProblem>),
    /// A configuration value (from the builder or a `QTASKS_*` variable) is invalid.
    #[error("invalid configuration {key}={value:?}: {expected}")]
    Config {
        /// The setting or environment variable.
        key: String,
        /// The value that was given.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// No task with this name is registered in the app.
    #[error("unknown task {name:?}: no task with this name is registered in app {app:?}; registered tasks: {known}")]
    UnknownTask {
        /// The requested name.
        name: String,
        /// The app that was asked.
        app: String,
        /// The registered names, comma separated.
        known: String,
    },
    /// The arguments could not be encoded for the task.
    #[error("cannot encode the arguments of task {task:?}: {source}")]
    Encode {
        /// The task.
        task: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// Arguments given by name (`app.add_task(name, args)`, `cli add`) do not fit the task's
    /// parameters; nothing was written.
    #[error("task {task:?}: {problem}")]
    BadArguments {
        /// The task.
        task: String,
        /// Which argument, the type it expects and the value given.
        problem: crate::task::args::ArgsError,
    },
    /// A stored value could not be decoded into the expected Rust type.
    #[error("cannot decode the {what} of task {task:?} ({uuid}) as `{expected}`: {source}")]
    Decode {
        /// The task.
        task: String,
        /// The task's uuid.
        uuid: Uuid,
        /// Which value (`result`, `arguments`).
        what: &'static str,
        /// The Rust type that was expected.
        expected: &'static str,
        /// The deserializer's error.
        #[source]
        source: BoxError,
    },
    /// Waiting for a task's final state took longer than allowed.
    #[error("task {task:?} ({uuid}) sent to app {app:?} did not finish within {waited:?} (last status: {status}); wait longer or check that a worker is running for app {app:?}{}", apps_hint(*.apps))]
    Timeout {
        /// The task.
        task: String,
        /// The task's uuid.
        uuid: Uuid,
        /// The app the task was sent to.
        app: String,
        /// How long we waited.
        waited: Duration,
        /// The last status seen.
        status: TaskStatus,
        /// How many apps exist in this process (more than one: free calls may have gone to
        /// another app than the one whose worker runs).
        apps: usize,
    },
    /// No task with this uuid exists (never created, or its record expired).
    #[error("no task {0} in storage: it was never created, or its record expired (result TTL)")]
    NotFound(Uuid),
    /// There is no app to send the task to.
    #[error("no qtasks app exists yet: build one with `App::builder().build()` before calling `add_task`, or pass one with `.on(&app)`")]
    NoApp,
    /// The backend (broker, storage, global config) failed.
    #[error("backend error in {component}: {message}")]
    Backend {
        /// Which component (`broker`, `storage`, `global_config`).
        component: &'static str,
        /// What happened and what to do.
        message: String,
    },
    /// A step of a chain did not succeed, which stopped the chain.
    #[error(
        "chain stopped at step {step}: task {task:?} ({uuid}) ended with status {status}: {error}"
    )]
    ChainStep {
        /// Which step (1 for the first).
        step: usize,
        /// The step's task.
        task: String,
        /// The step's uuid.
        uuid: Uuid,
        /// How the step ended (`error` or `cancel`).
        status: TaskStatus,
        /// The step's error or cancel reason.
        error: String,
    },
    /// The worker could not be started or stopped as asked.
    #[error("worker error: {0}")]
    Worker(String),
}

impl Error {
    /// A backend error with a message.
    pub fn backend(component: &'static str, message: impl fmt::Display) -> Self {
        Error::Backend {
            component,
            message: message.to_string(),
        }
    }
}

/// Why a task did not succeed. A task returns `Result<T, E>` with `E: Into<TaskError>`.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into a `TaskError`, so `?` works in
/// task bodies. `TaskError` deliberately does not implement `std::error::Error` itself (as
/// `anyhow::Error` does not), which is what makes that blanket conversion possible.
pub struct TaskError {
    kind: TaskErrorKind,
}

/// The kinds of [`TaskError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// The task's own error.
    Failed(BoxError),
    /// The task was cancelled (from inside with `ctx.cancel`, or from outside with `app.cancel`).
    Cancelled(String),
    /// The task ran longer than its `max_time`.
    TimedOut(Duration),
    /// The task panicked; the panic message.
    Panicked(String),
    /// The arguments do not match the task's parameters (never retried).
    BadArguments(String),
    /// The worker has no task of this name (never retried).
    UnknownTask(String),
    /// An extractor (dependency, state) could not be provided.
    Extractor(String),
    /// The task returned `Err(ctx.plugin_error(data))`: the data for the plugins'
    /// [`Trigger::PluginError`](crate::plugin::Trigger::PluginError).
    PluginError(Payload),
    /// The task returned `Err(TaskError::rate_limited(delay))`: an external service it calls
    /// said "too many requests". It goes back to the queue, to run again after the delay,
    /// without spending an attempt.
    RateLimited(Duration),
}

impl TaskError {
    /// An error with a plain message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(TaskErrorKind::Failed(message.to_string().into()))
    }

    /// An error of the given kind.
    pub fn new(kind: TaskErrorKind) -> Self {
        TaskError { kind }
    }

    /// "Run me again in `delay`": the task goes back to the queue (status `new`) to run after
    /// `delay`, without spending an attempt, as for an HTTP 429 of an API it calls
    /// (`return Err(TaskError::rate_limited(retry_after))`; `ctx.rate_limited(delay)` is the
    /// same). Not a failure: `retry` and `retry_on` do not apply.
    pub fn rate_limited(delay: Duration) -> Self {
        Self::new(TaskErrorKind::RateLimited(delay))
    }

    /// A cancellation with its reason.
    pub fn cancelled(reason: impl Into<String>) -> Self {
        Self::new(TaskErrorKind::Cancelled(reason.into()))
    }

    /// The kind of this error.
    pub fn kind(&self) -> &TaskErrorKind {
        &self.kind
    }

    /// Whether the error is (or wraps, through its source chain) an error of type `E`.
    pub fn is<E: std::error::Error + 'static>(&self) -> bool {
        self.find::<E>().is_some()
    }

    /// The first error of type `E` in the source chain.
    pub fn find<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let TaskErrorKind::Failed(err) = &self.kind else {
            return None;
        };
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<E>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }

    /// The message with its whole source chain, as stored in the task's `traceback`.
    pub fn traceback(&self) -> String {
        match &self.kind {
            TaskErrorKind::Failed(err) => {
                let mut out = err.to_string();
                let mut source = err.source();
                while let Some(s) = source {
                    out.push_str("\ncaused by: ");
                    out.push_str(&s.to_string());
                    source = s.source();
                }
                out
            }
            TaskErrorKind::Cancelled(reason) => format!("cancelled: {reason}"),
            TaskErrorKind::TimedOut(d) => {
                format!("timed out: the task ran longer than its max_time of {d:?}")
            }
            TaskErrorKind::Panicked(msg) => format!("panicked: {msg}"),
            TaskErrorKind::BadArguments(msg) => format!("bad arguments: {msg}"),
            TaskErrorKind::UnknownTask(msg) => format!("unknown task: {msg}"),
            TaskErrorKind::Extractor(msg) => format!("extractor failed: {msg}"),
            TaskErrorKind::PluginError(data) => plugin_error_message(data),
            TaskErrorKind::RateLimited(d) => format!("rate limited: runs again in {d:?}"),
        }
    }

    /// Whether the error is one that retrying cannot fix (bad arguments, unknown task, cancel).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind,
            TaskErrorKind::BadArguments(_)
                | TaskErrorKind::UnknownTask(_)
                | TaskErrorKind::Cancelled(_)
        )
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.kind, f)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceback())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(err: E) -> Self {
        TaskError::new(TaskErrorKind::Failed(Box::new(err)))
    }
}

/// One problem that keeps [`App::build`](crate::AppBuilder::build) from building the app.
/// Its `Display` says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildProblem {
    /// Two tasks the app serves have the same name.
    DuplicateTask {
        /// The name.
        name: String,
        /// `file:line` of the first definition.
        first: String,
        /// `file:line` of the second definition.
        second: String,
    },
    /// A task names a queue that is no queue name (`queue = ".."`).
    BadQueue {
        /// The task.
        task: String,
        /// `file:line` of the task's definition.
        location: String,
        /// What is wrong with the name.
        message: String,
    },
    /// A task asks for a `State<T>` the app was not given.
    MissingState {
        /// The task.
        task: String,
        /// `file:line` of the task's definition.
        location: String,
        /// The type name of `T`.
        state: &'static str,
        /// The app.
        app: String,
    },
    /// A task's extractor or dependency reports something the app lacks (its own check).
    Unprovided {
        /// The task.
        task: String,
        /// `file:line` of the task's definition.
        location: String,
        /// What is missing and what to do, in the extractor's words.
        message: String,
    },
    /// Two timers have the same name.
    DuplicateTimer {
        /// The name.
        timer: String,
    },
    /// A timer enqueues a task the app does not serve.
    TimerTaskNotServed {
        /// The timer.
        timer: String,
        /// The task it enqueues.
        task: String,
    },
    /// A timer's arguments cannot be encoded.
    TimerArguments {
        /// The timer.
        timer: String,
        /// The task it enqueues.
        task: String,
        /// The encoder's message.
        error: String,
    },
}

impl fmt::Display for BuildProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildProblem::DuplicateTask { name, first, second } => write!(
                f,
                "duplicate task name {name:?}: defined at {first} and at {second}; give one of them another `name = \"..\"`"
            ),
            BuildProblem::BadQueue { task, location, message } => write!(
                f,
                "task {task:?} ({location}): `queue`: {message}"
            ),
            BuildProblem::MissingState { task, location, state, app } => write!(
                f,
                "task {task:?} ({location}): it asks for `State<{state}>`, but app {app:?} provides no `{state}`: add `.state(..)` with a `{state}` to the app builder"
            ),
            BuildProblem::Unprovided { task, location, message } => {
                write!(f, "task {task:?} ({location}): {message}")
            }
            BuildProblem::DuplicateTimer { timer } => write!(
                f,
                "two timers are named {timer:?}: ticks are claimed by timer name, so give each timer its own"
            ),
            BuildProblem::TimerTaskNotServed { timer, task } => write!(
                f,
                "timer {timer:?} enqueues task {task:?}, which this app does not serve; include its router"
            ),
            BuildProblem::TimerArguments { timer, task, error } => write!(
                f,
                "timer {timer:?}: cannot encode the arguments of task {task:?}: {error}"
            ),
        }
    }
}

/// What an extractor needs from the app and does not find: the answer of
/// [`FromTaskContext::check`](crate::FromTaskContext::check) and
/// [`Dependency::check`](crate::Dependency::check). `App::build()` turns each into a
/// [`BuildProblem`] naming the task that asks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// A `State<T>` the app was not given.
    State {
        /// The type name of `T`.
        type_name: &'static str,
    },
    /// Anything else: say what is missing and what to add to the builder.
    Other(String),
}

impl Missing {
    /// A missing `State<T>`.
    pub fn state<T: ?Sized>() -> Self {
        Missing::State {
            type_name: std::any::type_name::<T>(),
        }
    }

    /// Something else the app lacks, with what to do about it.
    pub fn other(message: impl Into<String>) -> Self {
        Missing::Other(message.into())
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// The traceback of a task that returned `Err(ctx.plugin_error(data))` and no plugin handled.
fn plugin_error_message(data: &Payload) -> String {
    match data.to_json() {
        Some(v) => format!("the task raised a plugin error with {v}, and no plugin handled it"),
        None => "the task raised a plugin error, and no plugin handled it".to_string(),
    }
}

/// The part of a timeout message for a process with more than one app.
fn apps_hint(apps: usize) -> String {
    if apps <= 1 {
        return String::new();
    }
    format!(
        "; {apps} apps exist in this process, and calls without `.on(&app)` go to the default app (the first one built, or the one built with `make_default()`): send the task to the app whose worker runs with `.on(&app)`, or make that app the default"
    )
}
