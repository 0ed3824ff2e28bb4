//! The testing kit (the seeds' `SyncTestCase` / `AsyncTestCase`): runs tasks inline through
//! the full executor pipeline, with no worker and no Redis, and records what tasks enqueue.
//!
//! (The guide chapter `docs/testing.md` has this example compiled and run.)
//!
//! ```text
//! use qtasks::testing::TestKit;
//!
//! #[qtasks::task]
//! async fn double(n: i64) -> i64 { n * 2 }
//!
//! #[test]
//! fn doubles() {
//!     let kit = TestKit::new(qtasks::App::builder().name("kit-doc")).unwrap();
//!     let done = kit.run_blocking(double.call(21)).unwrap();
//!     assert_eq!(done.returning, Some(42));
//! }
//! # doubles();
//! ```
//!
//! [`TestKit::run`] is the same path a worker takes for one task: extractors, middlewares,
//! plugins, events, `max_time`, panics caught, and retries (run again at once, without the
//! backoff delay, up to the task's `retry`). It returns the task's final record. Tasks that
//! the task under test enqueues are not run: they are recorded ([`TestKit::enqueued`]) and
//! kept in the app's backend, so a test can assert on them, or start a worker on
//! [`TestKit::app`] to run them. Components are swapped on the builder the kit is made from
//! ([`AppBuilder::map_backend`](crate::AppBuilder::map_backend),
//! [`AppBuilder::backend`](crate::AppBuilder::backend), `plugin`, `events`).
//!
//! Use [`TestKit::run`] in `#[tokio::test]` and [`TestKit::run_blocking`] in plain `#[test]`.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use crate::app::builder::AppBuilder;
use crate::app::handle::App;
use crate::backend::{
    Backend, Broker, CancelOutcome, CancelRequest, Completion, Delivery, Existing, Lease, NewTask,
    Outcome, QueueStats,
};
use crate::error::{Error, Result};
use crate::execute::execute;
use crate::task::call::TaskCall;
use crate::task::def::TaskDef;
use crate::task::name::TaskName;
use crate::task::payload::Payload;
use crate::task::record::Task;
use crate::task::status::TaskStatus;
use crate::worker::cancel::CancelSignal;
use crate::worker::scope::WorkerScope;

/// Runs tasks inline and records what they enqueue. See the [module docs](self).
pub struct TestKit {
    app: App,
    recorder: Arc<Recorder>,
    worker: Arc<WorkerScope>,
}

/// A task that was enqueued while the kit watched.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The task's uuid.
    pub uuid: Uuid,
    /// The registered task name.
    pub task_name: TaskName,
    /// The priority it was enqueued with.
    pub priority: i32,
    /// The encoded arguments.
    pub args: Payload,
}

impl Enqueued {
    /// The arguments as JSON (`{"a": 1, "b": 2}`).
    pub fn args_json(&self) -> serde_json::Value {
        self.args.to_json().unwrap_or(serde_json::Value::Null)
    }

    /// Decodes the arguments into `T::Args`, when this is a call of task `T`.
    pub fn args_of<T: TaskDef>(&self) -> Option<T::Args> {
        if self.task_name != T::entry().name {
            return None;
        }
        self.args.decode().ok()
    }
}

#[derive(Default)]
struct Recorder {
    enqueued: Mutex<Vec<Enqueued>>,
}

/// The broker wrapper that records every enqueue before passing it on.
struct RecordingBroker {
    inner: Arc<dyn Broker>,
    recorder: Arc<Recorder>,
}

impl Broker for RecordingBroker {
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<Vec<Existing>>> {
        self.recorder
            .enqueued
            .lock()
            .extend(tasks.iter().map(|t| Enqueued {
                uuid: t.uuid,
                task_name: t.task_name.clone(),
                priority: t.priority,
                args: t.args.clone(),
            }));
        self.inner.enqueue(tasks)
    }
    fn claim(&self, max: usize) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        self.inner.claim(max)
    }
    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        self.inner.complete(done)
    }
    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        self.inner.requeue(leases)
    }
    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, Result<CancelOutcome>> {
        self.inner.cancel(uuid, reason)
    }
    fn stats(&self) -> BoxFuture<'_, Result<QueueStats>> {
        self.inner.stats()
    }
    fn lease_duration(&self) -> Option<std::time::Duration> {
        self.inner.lease_duration()
    }
    fn started<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        self.inner.started(leases)
    }
    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        self.inner.renew(leases)
    }
    fn claim_starting(
        &self,
        max: usize,
        start: usize,
    ) -> BoxFuture<'_, Result<(Vec<Delivery>, usize)>> {
        self.inner.claim_starting(max, start)
    }
    fn set_limits(&self, limits: &[crate::control::TaskLimits]) -> Result<()> {
        self.inner.set_limits(limits)
    }
    fn set_queues(&self, queues: &crate::control::QueueSelection) -> Result<()> {
        self.inner.set_queues(queues)
    }
    fn progress<'a>(
        &'a self,
        lease: Lease,
        value: &'a crate::task::payload::Payload,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.progress(lease, value)
    }
    fn cancel_requests(&self) -> Option<futures::stream::BoxStream<'static, CancelRequest>> {
        self.inner.cancel_requests()
    }
}

impl TestKit {
    /// Builds the app from `builder` (its tasks, plugins, events, components), with a broker
    /// that records every enqueue.
    pub fn new(builder: AppBuilder) -> Result<TestKit> {
        let recorder = Arc::new(Recorder::default());
        let rec = recorder.clone();
        let app = builder
            .map_backend(move |b: Backend| Backend {
                broker: Arc::new(RecordingBroker {
                    inner: b.broker,
                    recorder: rec,
                }),
                ..b
            })
            .build()?;
        let worker = Arc::new(WorkerScope::new(format!("{}-inline", app.name())));
        Ok(TestKit {
            app,
            recorder,
            worker,
        })
    }

    /// The app under test.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// How many times in a row [`run`](Self::run) runs a task again that said
    /// [`TaskError::rate_limited`](crate::TaskError::rate_limited) before it gives up.
    pub const MAX_LATER: u32 = 100;

    /// Runs `call` inline to its final state and returns the record with its typed result.
    pub async fn run<T: TaskDef>(&self, call: TaskCall<T>) -> Result<Task<T::Output>> {
        let entry = T::entry();
        let (args, priority, _unique_key) = call.into_parts();
        let args = Payload::encode(&args).map_err(|e| Error::Encode {
            task: entry.name.to_string(),
            source: Box::new(e),
        })?;
        self.run_payload(entry.name, args, priority).await?.decode()
    }

    /// Runs the task called `task_name` inline with JSON-like `args` (a named map or a
    /// positional list), as a worker would run `app.add_task(task_name, args)`.
    pub async fn run_named(&self, task_name: &str, args: impl Serialize) -> Result<Task> {
        let args = Payload::encode(&args).map_err(|e| Error::Encode {
            task: task_name.to_string(),
            source: Box::new(e),
        })?;
        self.run_payload(task_name, args, None).await
    }

    /// [`TestKit::run`] for plain `#[test]` functions: runs on a runtime of its own. Must not
    /// be called from inside a tokio runtime (use `run(..).await` there).
    pub fn run_blocking<T: TaskDef>(&self, call: TaskCall<T>) -> Result<Task<T::Output>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Worker(format!(
                "TestKit::run_blocking({:?}) was called inside a tokio runtime, where it cannot block; use `kit.run(..).await` in async tests",
                T::entry().name
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Worker(format!("cannot start a tokio runtime for the test: {e}"))
            })?;
        runtime.block_on(self.run(call))
    }

    async fn run_payload(
        &self,
        task_name: &str,
        args: Payload,
        priority: Option<i32>,
    ) -> Result<Task> {
        let entry = self
            .app
            .task(task_name)
            .ok_or_else(|| self.app.unknown_task(task_name))?;
        let created = SystemTime::now();
        let mut delivery = Delivery {
            uuid: Uuid::new_v4(),
            task_name: entry.name.into(),
            priority: priority.unwrap_or_else(|| self.app.default_priority(entry)),
            args,
            attempt: 1,
            token: 0,
            meta: Default::default(),
        };
        let mut task = Task::new(
            delivery.uuid,
            entry.name,
            delivery.priority,
            delivery.args.clone(),
            created,
        );
        let mut later = 0;
        loop {
            let outcome = execute(&self.app, &self.worker, &delivery, CancelSignal::new()).await;
            task.attempts = delivery.attempt;
            task.updated_at = SystemTime::now();
            match outcome {
                Outcome::Success(result) => {
                    task.status = TaskStatus::Success;
                    task.returning = Some(result);
                }
                Outcome::Failed { traceback } | Outcome::DeadLetter { traceback, .. } => {
                    task.status = TaskStatus::Error;
                    task.traceback = Some(traceback);
                }
                Outcome::Cancelled { reason } => {
                    task.status = TaskStatus::Cancel;
                    task.cancel_reason = Some(reason);
                }
                Outcome::Retry { traceback, .. } => {
                    task.traceback = Some(traceback);
                    delivery.attempt += 1;
                    continue;
                }
                // Runs again at once: the kit does not wait out the delay.
                Outcome::Later { .. } if later < Self::MAX_LATER => {
                    later += 1;
                    continue;
                }
                Outcome::Later { .. } => {
                    task.status = TaskStatus::Error;
                    task.traceback = Some(format!(
                        "rate limited {} times in a row: the test kit runs a rate-limited \
                         task again at once, and this one never ran to an end",
                        Self::MAX_LATER
                    ));
                }
            }
            return Ok(task.with_app(&self.app));
        }
    }

    /// Every task enqueued through the app since the kit was made (or last cleared), in order.
    pub fn enqueued(&self) -> Vec<Enqueued> {
        self.recorder.enqueued.lock().clone()
    }

    /// The calls of task `T` enqueued so far, with their typed arguments.
    pub fn enqueued_of<T: TaskDef>(&self) -> Vec<T::Args> {
        self.recorder
            .enqueued
            .lock()
            .iter()
            .filter_map(Enqueued::args_of::<T>)
            .collect()
    }

    /// Tears down the dependencies the runs created: the worker scope of the kit's inline
    /// worker, then the app's broker, storage and global-config scopes (for tests that assert
    /// on teardown).
    pub async fn close(&self) {
        let grace = self.app.config().grace_period;
        self.worker.dependencies().close_after_children(grace).await;
        self.app.close_dependencies().await;
    }

    /// Forgets what was recorded.
    pub fn clear_enqueued(&self) {
        self.recorder.enqueued.lock().clear();
    }
}

impl std::fmt::Debug for TestKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKit")
            .field("app", &self.app)
            .field("enqueued", &self.recorder.enqueued.lock().len())
            .finish()
    }
}
