//! [`Task`]: the record of one task (the seeds' `Task` schema), typed by its result.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::app::handle::App;
use crate::error::{Error, Result};
use crate::task::name::TaskName;
use crate::task::payload::Payload;
use crate::task::status::TaskStatus;

/// One task: what was asked, where it is, and how it ended.
///
/// `R` is the type of `returning`: the task's output type for typed handles
/// (`add.add_task(2, 3)` gives a `Task<i64>`), and [`Payload`] for untyped access
/// (`app.get(uuid)`).
#[derive(Clone, Serialize, Deserialize)]
pub struct Task<R = Payload> {
    /// The task's id.
    pub uuid: Uuid,
    /// The registered task name.
    pub task_name: TaskName,
    /// The status.
    pub status: TaskStatus,
    /// The priority: lower runs first.
    pub priority: i32,
    /// The encoded arguments.
    pub args: Payload,
    /// When the task was enqueued.
    pub created_at: SystemTime,
    /// When the record last changed.
    pub updated_at: SystemTime,
    /// The result, once the status is `success`.
    pub returning: Option<R>,
    /// The error with its source chain, once the status is `error` (or `retry`).
    pub traceback: Option<String>,
    /// Why the task was cancelled, once the status is `cancel`.
    pub cancel_reason: Option<String>,
    /// How many times a worker started this task.
    pub attempts: u32,
    /// The attempts that ended, oldest first: which worker ran each, from when to when, and
    /// how it ended (the last [`ATTEMPTS_KEPT`] of them; empty for records written before
    /// the history was kept).
    #[serde(default)]
    pub history: Vec<Attempt>,
    /// Extra fields (plugins, custom data).
    pub extra: BTreeMap<String, String>,
    /// The newest progress the task reported while it ran
    /// ([`TaskContext::progress`](crate::TaskContext::progress)), encoded; `None` when it
    /// reported none (or its backend keeps none).
    #[serde(default)]
    pub progress: Option<Payload>,
    #[serde(skip)]
    pub(crate) app: Option<App>,
    /// Set by an enqueue that found another task holding the call's unique key.
    #[serde(skip)]
    pub(crate) existing: bool,
}

impl<R> Task<R> {
    /// The app this task was read from or sent to, when known.
    pub fn app(&self) -> Option<&App> {
        self.app.as_ref()
    }

    /// Whether the enqueue that returned this task found it already holding the call's
    /// unique key (a unique or debounced task, or `.unique_key(..)`) and returned it instead of
    /// writing a new task. False for tasks read back with `get` or `wait`.
    pub fn is_existing(&self) -> bool {
        self.existing
    }

    pub(crate) fn with_app(mut self, app: &App) -> Self {
        self.app = Some(app.clone());
        self
    }

    fn map_returning<S>(self, returning: Option<S>) -> Task<S> {
        Task {
            uuid: self.uuid,
            task_name: self.task_name,
            status: self.status,
            priority: self.priority,
            args: self.args,
            created_at: self.created_at,
            updated_at: self.updated_at,
            returning,
            traceback: self.traceback,
            cancel_reason: self.cancel_reason,
            attempts: self.attempts,
            history: self.history,
            extra: self.extra,
            progress: self.progress,
            app: self.app,
            existing: self.existing,
        }
    }
}

impl Task<Payload> {
    /// A fresh record with status `new`.
    pub fn new(
        uuid: Uuid,
        task_name: impl Into<TaskName>,
        priority: i32,
        args: Payload,
        now: SystemTime,
    ) -> Self {
        Task {
            uuid,
            task_name: task_name.into(),
            status: TaskStatus::New,
            priority,
            args,
            created_at: now,
            updated_at: now,
            returning: None,
            traceback: None,
            cancel_reason: None,
            attempts: 0,
            history: Vec::new(),
            extra: BTreeMap::new(),
            progress: None,
            app: None,
            existing: false,
        }
    }

    /// Decodes `returning` into `R`, naming the task and the type when it does not fit.
    pub fn decode<R: DeserializeOwned>(self) -> Result<Task<R>> {
        let returning = match &self.returning {
            Some(p) => Some(p.decode::<R>().map_err(|e| Error::Decode {
                task: self.task_name.to_string(),
                uuid: self.uuid,
                what: "result",
                expected: std::any::type_name::<R>(),
                source: Box::new(e),
            })?),
            None => None,
        };
        Ok(self.map_returning(returning))
    }
}

impl<R: DeserializeOwned> Task<R> {
    /// Waits until the task reaches a final status (`success`, `error`, `cancel`) and returns
    /// it, or [`Error::Timeout`]. Waiting is a notification from storage, never a poll.
    pub async fn wait(&self, timeout: Duration) -> Result<Task<R>> {
        let app = self.app.clone().ok_or(Error::NoApp)?;
        app.wait(self.uuid, timeout).await?.decode::<R>()
    }

    /// [`wait`](Self::wait) from sync code, blocking the thread (as
    /// [`TaskCall::add_task_blocking`](crate::TaskCall::add_task_blocking)).
    pub fn wait_blocking(&self, timeout: Duration) -> Result<Task<R>> {
        let app = self.app.clone().ok_or(Error::NoApp)?;
        let what = format!("the blocking wait of task {:?}", self.task_name.as_str());
        app.block_on_checked(&what, self.wait(timeout))?
    }
}

impl<R: fmt::Debug> fmt::Debug for Task<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Task");
        d.field("status", &self.status)
            .field("uuid", &self.uuid)
            .field("task_name", &self.task_name)
            .field("priority", &self.priority)
            .field("args", &self.args)
            .field("returning", &self.returning)
            .field("traceback", &self.traceback);
        if let Some(reason) = &self.cancel_reason {
            d.field("cancel_reason", reason);
        }
        d.field("attempts", &self.attempts);
        if !self.history.is_empty() {
            d.field("history", &self.history);
        }
        if !self.extra.is_empty() {
            d.field("extra", &self.extra);
        }
        if let Some(progress) = &self.progress {
            d.field("progress", progress);
        }
        d.finish()
    }
}

/// How many ended attempts a record keeps in [`Task::history`] (the newest ones).
pub const ATTEMPTS_KEPT: usize = 20;

/// One attempt of a task that ended: which worker ran it, when, and how it ended (the
/// Redis and PostgreSQL backends store it as text: [`backend::encode_attempt`](crate::backend::encode_attempt)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Which attempt (1 for the first).
    pub attempt: u32,
    /// The id of the worker that ran it.
    pub worker: String,
    /// When it started (the worker's clock).
    pub started_at: SystemTime,
    /// When it ended (the worker's clock).
    pub finished_at: SystemTime,
    /// How it ended: `success`, `error`, `cancel`, or `retry` (it failed and ran again).
    pub status: TaskStatus,
}
