//! Chains: a pipeline of tasks where each step's result is the next step's argument.
//!
//! (The guide chapter `docs/chains.md` has this example compiled and run.)
//!
//! ```text
//! # async fn demo(app: &qtasks::App) -> qtasks::Result<()> {
//! use std::time::Duration;
//! use qtasks::chain::Chain;
//!
//! #[qtasks::task]
//! async fn add(a: i64, b: i64) -> i64 { a + b }
//! #[qtasks::task]
//! async fn double(n: i64) -> i64 { n * 2 }
//! #[qtasks::task]
//! async fn show(n: i64) -> String { format!("= {n}") }
//!
//! let chain = Chain::new(add.call(2, 3)).then(double).then(show);
//! let handle = chain.on(app).start();
//! let last = handle.wait(Duration::from_secs(10)).await?;   // the last step's record
//! assert_eq!(last.returning.as_deref(), Some("= 10"));
//! # Ok(()) }
//! ```
//!
//! The first step is a full call; every next step is a task that takes one parameter, which
//! receives the previous step's result. Each step is an ordinary task (enqueued, run by any
//! worker, retried by its own settings, visible with `get`), started when the previous one
//! succeeded. The first step that does not succeed stops the chain: `wait` returns
//! [`Error::ChainStep`] naming that step, its task, uuid, status and error.
//!
//! The chain is driven by the process that started it (a tokio task that waits on each step's
//! completion notification): if that process exits, the step running then still completes,
//! and no later step starts.

use std::marker::PhantomData;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::app::handle::App;
use crate::error::{Error, Result};
use crate::task::call::TaskCall;
use crate::task::def::TaskDef;
use crate::task::entry::TaskEntry;
use crate::task::payload::Payload;
use crate::task::record::Task;
use crate::task::status::TaskStatus;

/// A pipeline of tasks whose final result has type `Out`. Built with [`Chain::new`] and
/// [`Chain::then`].
pub struct Chain<Out> {
    first: Payload,
    step_timeout: Duration,
    steps: Vec<&'static TaskEntry>,
    app: Option<App>,
    encode_error: Option<Error>,
    _out: PhantomData<fn() -> Out>,
}

impl<Out> std::fmt::Debug for Chain<Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("steps", &self.steps())
            .field("step_timeout", &self.step_timeout)
            .finish()
    }
}

impl<Out> Chain<Out> {
    fn with_step<Next>(self, entry: &'static TaskEntry) -> Chain<Next> {
        let mut steps = self.steps;
        steps.push(entry);
        Chain {
            first: self.first,
            step_timeout: self.step_timeout,
            steps,
            app: self.app,
            encode_error: self.encode_error,
            _out: PhantomData,
        }
    }

    /// Adds a step: task `T`, called with the previous step's result as its one argument.
    pub fn then<T: TaskDef>(self, _task: T) -> Chain<T::Output> {
        self.with_step(T::entry())
    }

    /// How long one step may take before the chain gives up on it (default one day).
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = timeout;
        self
    }

    /// Runs the chain on this app instead of the current one.
    pub fn on(mut self, app: &App) -> Self {
        self.app = Some(app.clone());
        self
    }

    /// The names of the steps' tasks, in order.
    pub fn steps(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name).collect()
    }
}

impl<Out: DeserializeOwned + Send + 'static> Chain<Out> {
    /// The first step: a task with its arguments.
    pub fn new<T: TaskDef<Output = Out>>(call: TaskCall<T>) -> Chain<Out> {
        let (first, encode_error) = match Payload::encode(call.args()) {
            Ok(p) => (p, None),
            Err(e) => (
                Payload::default(),
                Some(Error::Encode {
                    task: T::entry().name.to_string(),
                    source: Box::new(e),
                }),
            ),
        };
        Chain {
            first,
            step_timeout: Duration::from_secs(24 * 3600),
            steps: vec![T::entry()],
            app: None,
            encode_error,
            _out: PhantomData,
        }
    }

    /// Starts the chain in the background and returns the handle to wait for its end. Must be
    /// called inside a tokio runtime.
    pub fn start(self) -> ChainHandle<Out> {
        let current = Current::default();
        let app = match &self.app {
            Some(app) => app.name().to_string(),
            None => App::current()
                .map(|a| a.name().to_string())
                .unwrap_or_default(),
        };
        let join = tokio::spawn(self.drive(current.clone()));
        ChainHandle {
            join,
            current,
            app,
            _out: PhantomData,
        }
    }

    async fn drive(self, current: Current) -> Result<Task<Payload>> {
        if let Some(e) = self.encode_error {
            return Err(e);
        }
        let app = match self.app {
            Some(app) => app,
            None => App::current()?,
        };
        let mut args = self.first;
        let count = self.steps.len();
        let mut last = None;
        for (i, entry) in self.steps.into_iter().enumerate() {
            let task = app.enqueue(Uuid::new_v4(), entry, None, args, None).await?;
            *current.lock() = Some((entry.name, task.uuid));
            let done = app.wait(task.uuid, self.step_timeout).await?;
            tracing::debug!(task_name = entry.name, task_uuid = %done.uuid, step = i + 1, of = count, status = %done.status, "chain step ended");
            if done.status != TaskStatus::Success {
                return Err(step_error(i, &done));
            }
            // The next step takes the result as its one (positional) argument.
            let result: serde_json::Value = match &done.returning {
                Some(p) => p.decode().map_err(|e| Error::Decode {
                    task: done.task_name.to_string(),
                    uuid: done.uuid,
                    what: "result",
                    expected: "a self-describing value",
                    source: Box::new(e),
                })?,
                None => serde_json::Value::Null,
            };
            args = Payload::encode(&[result]).map_err(|e| Error::Encode {
                task: entry.name.to_string(),
                source: Box::new(e),
            })?;
            last = Some(done);
        }
        last.ok_or_else(|| Error::Worker("a chain needs at least one step".into()))
    }
}

fn step_error(step: usize, done: &Task) -> Error {
    Error::ChainStep {
        step: step + 1,
        task: done.task_name.to_string(),
        uuid: done.uuid,
        status: done.status,
        error: done
            .traceback
            .clone()
            .or_else(|| done.cancel_reason.clone())
            .unwrap_or_default(),
    }
}

/// The step running now, for messages.
type Current = std::sync::Arc<Mutex<Option<(&'static str, Uuid)>>>;

/// A running chain. Wait for its end with [`ChainHandle::wait`].
pub struct ChainHandle<Out> {
    join: JoinHandle<Result<Task<Payload>>>,
    current: Current,
    /// The name of the app the chain runs on, for messages.
    app: String,
    _out: PhantomData<fn() -> Out>,
}

impl<Out> std::fmt::Debug for ChainHandle<Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainHandle")
            .field("current", &*self.current.lock())
            .finish()
    }
}

impl<Out: DeserializeOwned> ChainHandle<Out> {
    /// Waits for the chain's end: the last step's record with its typed result, or the first
    /// failing step's error ([`Error::ChainStep`]), or [`Error::Timeout`] after `timeout`
    /// (naming the step running then; the chain keeps running).
    pub async fn wait(self, timeout: Duration) -> Result<Task<Out>> {
        let mut join = self.join;
        match tokio::time::timeout(timeout, &mut join).await {
            Ok(Ok(result)) => result?.decode(),
            Ok(Err(e)) => Err(Error::Worker(format!(
                "the chain's driver ended abnormally: {e}"
            ))),
            Err(_) => {
                let (task, uuid) = self.current.lock().unwrap_or(("chain", Uuid::nil()));
                Err(Error::Timeout {
                    task: format!("{task} (a chain step)"),
                    uuid,
                    app: self.app.clone(),
                    waited: timeout,
                    status: TaskStatus::Process,
                    apps: App::live_apps(),
                })
            }
        }
    }
}
