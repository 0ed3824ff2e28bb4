//! Enqueueing and reading tasks: `add_task` (by name, typed, in bulk), `get`, `wait`, `cancel`,
//! `ping`. Every enqueue goes through one path (`write_batch`), with the enqueue plugins
//! around the broker call.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use crate::app::handle::App;
use crate::backend::{CancelOutcome, Existing, NewTask, TraceContext};
use crate::control::FlowKeys;
use crate::error::{BoxError, Error, Result};
use crate::ext::hooks;
use crate::ext::plugin::Trigger;
use crate::observe;
use crate::task::call::TaskCall;
use crate::task::def::TaskDef;
use crate::task::entry::TaskEntry;
use crate::task::payload::Payload;
use crate::task::record::Task;

impl App {
    /// The error for a task name this app does not serve, listing the ones it does.
    pub(crate) fn unknown_task(&self, name: &str) -> Error {
        Error::UnknownTask {
            name: name.to_string(),
            app: self.inner().name.clone(),
            known: self
                .tasks()
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Enqueues a task by name, for dynamic use (`app.add_task("add", json!([2, 3]))`).
    ///
    /// `args` is a named map (`{"a": 2, "b": 3}`) or a positional list (`[2, 3]`). It is checked
    /// against the task's parameters before anything is written: a map must have exactly the
    /// parameters' keys, a list one value per parameter, and each value must decode as its
    /// parameter's type. When they do not fit, this fails with [`Error::BadArguments`], whose
    /// [`ArgsError`](crate::registry::ArgsError) names the argument, the type it expects and
    /// the value given (`task "add": argument "a" expects i64, got "x"`). Typed calls
    /// (`add.call(2, 3).on(&app)`) are checked at compile time instead.
    pub async fn add_task(&self, task_name: &str, args: impl Serialize) -> Result<Task> {
        self.add_task_with_priority(task_name, args, None).await
    }

    /// [`add_task`](Self::add_task) with a priority (lower runs first); `None`: the task's
    /// default. For callers by name that carry one (the gRPC API's `AddTask`).
    pub async fn add_task_with_priority(
        &self,
        task_name: &str,
        args: impl Serialize,
        priority: Option<i32>,
    ) -> Result<Task> {
        let entry = self
            .task(task_name)
            .ok_or_else(|| self.unknown_task(task_name))?;
        let encode_error = |source: BoxError| Error::Encode {
            task: task_name.to_string(),
            source,
        };
        let args = Payload::encode(&args).map_err(|e| encode_error(Box::new(e)))?;
        entry
            .check_args(&args)
            .map_err(|problem| Error::BadArguments {
                task: task_name.to_string(),
                problem,
            })?;
        self.enqueue(Uuid::new_v4(), entry, priority, args, None)
            .await
    }

    /// Enqueues many calls in as few broker round trips as possible (batches of
    /// [`BULK_CHUNK`](Self::BULK_CHUNK)), each task written atomically with its queue entry.
    /// Returns the tasks with status `new`, in order. Timeouts set on the calls are ignored:
    /// wait on the returned tasks instead.
    pub async fn add_tasks<T: TaskDef>(
        &self,
        calls: impl IntoIterator<Item = TaskCall<T>>,
    ) -> Result<Vec<Task<T::Output>>> {
        let entry = T::entry();
        self.check_serves(entry)?;
        let now = SystemTime::now();
        let trace = observe::producer_trace();
        let mut calls = calls.into_iter().peekable();
        // Sized up front: growing a vector of records copies every record at each doubling.
        let mut out = Vec::with_capacity(calls.size_hint().0);
        let mut batch = Vec::with_capacity(Self::BULK_CHUNK);
        while calls.peek().is_some() {
            for call in calls.by_ref().take(Self::BULK_CHUNK) {
                let uuid = call.uuid(self);
                let (args, priority, unique_key) = call.into_parts();
                let args = Payload::encode(&args).map_err(|e| Error::Encode {
                    task: entry.name.to_string(),
                    source: Box::new(e),
                })?;
                let new = self.new_task(uuid, entry, priority, args, now, trace.clone());
                batch.push(new.with_flow(entry, unique_key.as_deref()));
            }
            self.write_batch(&mut batch, |task| {
                out.push(task.decode()?);
                Ok(())
            })
            .await?;
            batch.clear();
        }
        Ok(out)
    }

    /// A task to enqueue, with the call's priority or the task's default, and the producer's
    /// span context (`observe::producer_trace`, taken once per call or batch).
    fn new_task(
        &self,
        uuid: Uuid,
        entry: &'static TaskEntry,
        priority: Option<i32>,
        args: Payload,
        now: SystemTime,
        trace: Option<Box<TraceContext>>,
    ) -> NewTask {
        NewTask {
            uuid,
            task_name: entry.name.into(),
            priority: priority.unwrap_or_else(|| self.default_priority(entry)),
            args,
            created_at: now,
            not_before: None,
            trace,
            flow: None,
        }
    }

    /// Writes a batch to the broker in one call, with the enqueue plugins around it, and hands
    /// each task's `new` record to `each`, in order. The one path of `add_task`, typed calls and
    /// `add_tasks` (and, with the writer of [`PreparedTasks`], of enqueues in a caller's own
    /// database transaction).
    async fn write_batch(
        &self,
        batch: &mut [NewTask],
        each: impl FnMut(Task) -> Result<()>,
    ) -> Result<()> {
        self.before_write(batch).await;
        let existing = match self.inner().backend.broker.enqueue(batch).await {
            Ok(existing) => existing,
            Err(e) => {
                observe::backend_error("enqueue");
                return Err(e);
            }
        };
        self.after_write(batch, &existing, each).await
    }

    /// The enqueue plugins' `before_enqueue` on each task of a batch about to be written.
    async fn before_write(&self, batch: &mut [NewTask]) {
        if !self.hooks().plugins.is_empty() {
            for new in batch.iter_mut() {
                hooks::before_enqueue(self, new).await;
            }
        }
    }

    /// Hands the `new` record of each task of a written batch to `each`, in order, after the
    /// enqueue plugins' `after_enqueue`; for a task that found its unique key held
    /// (`existing`), the holder's record instead, marked [`Task::is_existing`].
    async fn after_write(
        &self,
        batch: &[NewTask],
        existing: &[Existing],
        mut each: impl FnMut(Task) -> Result<()>,
    ) -> Result<()> {
        let plugged = !self.hooks().plugins.is_empty();
        observe::enqueued(batch);
        let mut held = existing.iter().peekable();
        for (index, new) in batch.iter().enumerate() {
            if let Some(found) = held.next_if(|e| e.index == index) {
                tracing::debug!(task_name = %new.task_name, task_uuid = %found.uuid,
                    "unique key held: the existing task is returned");
                let mut task = match self.inner().backend.storage.get(found.uuid).await? {
                    Some(task) => task,
                    // It finished and expired since: say which task held the key.
                    None => Task::new(
                        found.uuid,
                        new.task_name.clone(),
                        new.priority,
                        new.args.clone(),
                        new.created_at,
                    ),
                };
                task.existing = true;
                each(task.with_app(self))?;
                continue;
            }
            tracing::debug!(task_name = %new.task_name, task_uuid = %new.uuid, "task enqueued");
            let mut task = Task::new(
                new.uuid,
                new.task_name.clone(),
                new.priority,
                new.args.clone(),
                new.created_at,
            );
            if plugged {
                hooks::after_enqueue(self, new, &mut task).await;
            }
            each(task.with_app(self))?;
        }
        Ok(())
    }

    /// Builds the tasks of `calls` exactly as [`add_tasks`](Self::add_tasks) does (uuids,
    /// priorities, encoded arguments, the `before_enqueue` plugins) without writing them: the
    /// caller writes [`PreparedTasks::tasks`] itself (a backend's enqueue inside the user's
    /// own database transaction, say), then calls [`PreparedTasks::written`]. Timeouts set on
    /// the calls are ignored.
    pub async fn prepare_tasks<T: TaskDef>(
        &self,
        calls: impl IntoIterator<Item = TaskCall<T>>,
    ) -> Result<PreparedTasks<T>> {
        let entry = T::entry();
        self.check_serves(entry)?;
        let now = SystemTime::now();
        let trace = observe::producer_trace();
        let mut tasks = Vec::new();
        for call in calls {
            let uuid = call.uuid(self);
            let (args, priority, unique_key) = call.into_parts();
            let args = Payload::encode(&args).map_err(|e| Error::Encode {
                task: entry.name.to_string(),
                source: Box::new(e),
            })?;
            let new = self.new_task(uuid, entry, priority, args, now, trace.clone());
            tasks.push(new.with_flow(entry, unique_key.as_deref()));
        }
        self.before_write(&mut tasks).await;
        Ok(PreparedTasks {
            app: self.clone(),
            tasks,
            _task: PhantomData,
        })
    }

    /// Refuses a task attached to a router this app did not include (the worker would not
    /// know it). Tasks without a router are in every app, so this costs them nothing.
    fn check_serves(&self, entry: &'static TaskEntry) -> Result<()> {
        match entry.router {
            Some(router) if !self.inner().routers.iter().any(|r| r.is(router)) => {
                Err(self.unknown_task(entry.name))
            }
            _ => Ok(()),
        }
    }

    /// How many tasks [`add_tasks`](Self::add_tasks) sends to the broker in one call.
    pub const BULK_CHUNK: usize = 1000;

    pub(crate) async fn enqueue(
        &self,
        uuid: Uuid,
        entry: &'static TaskEntry,
        priority: Option<i32>,
        args: Payload,
        unique_key: Option<&str>,
    ) -> Result<Task> {
        self.check_serves(entry)?;
        let now = SystemTime::now();
        let new = self.new_task(uuid, entry, priority, args, now, observe::producer_trace());
        let mut new = new.with_flow(entry, unique_key);
        let mut written = None;
        self.write_batch(std::slice::from_mut(&mut new), |task| {
            written = Some(task);
            Ok(())
        })
        .await?;
        written.ok_or_else(|| Error::backend("broker", "the enqueued task was not returned"))
    }

    /// Reads a task's record; `None` when it does not exist or has expired.
    pub async fn get(&self, uuid: Uuid) -> Result<Option<Task>> {
        let mut task = self.inner().backend.storage.get(uuid).await?;
        if !self.hooks().plugins.is_empty() {
            let trigger = &mut Trigger::Get { task: &mut task };
            self.hooks().plugins.fire(trigger).await;
        }
        Ok(task.map(|t| t.with_app(self)))
    }

    /// Waits until the task is final (`success`, `error`, `cancel`), or fails with
    /// [`Error::Timeout`] naming the task and its last status.
    pub async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Task> {
        match self.inner().backend.storage.wait(uuid, timeout).await? {
            Some(task) => Ok(task.with_app(self)),
            None => {
                let last = self.get(uuid).await?.ok_or(Error::NotFound(uuid))?;
                Err(Error::Timeout {
                    task: last.task_name.into_string(),
                    uuid,
                    app: self.name().to_string(),
                    waited: timeout,
                    status: last.status,
                    apps: App::live_apps(),
                })
            }
        }
    }

    /// Cancels a task: a queued one never runs; a running async task is stopped (its future is
    /// dropped), a running sync task is told through its context. Returns what was found.
    pub async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome> {
        let outcome = self.inner().backend.broker.cancel(uuid, reason).await?;
        if outcome == CancelOutcome::Running {
            for worker in self.local_workers() {
                worker.cancel_running(uuid, reason);
            }
        }
        Ok(outcome)
    }

    /// Whether at least one worker of this app is alive (in any process sharing the backend),
    /// judged by the heartbeats workers send every few seconds.
    pub async fn ping(&self) -> Result<bool> {
        Ok(!self
            .backend()
            .global_config
            .live_workers()
            .await?
            .is_empty())
    }
}

/// Tasks built for an app by [`App::prepare_tasks`] and written by the caller: a backend's
/// transactional enqueue writes [`tasks`](Self::tasks) in the user's transaction, then
/// [`written`](Self::written) gives the `new` records (running the `after_enqueue` plugins).
pub struct PreparedTasks<T: TaskDef> {
    app: App,
    tasks: Vec<NewTask>,
    _task: PhantomData<T>,
}

impl<T: TaskDef> PreparedTasks<T> {
    /// The tasks to write, in the order of the calls.
    pub fn tasks(&self) -> &[NewTask] {
        &self.tasks
    }

    /// The app they were built for.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The tasks were written: their records with status `new`, in order.
    pub async fn written(self) -> Result<Vec<Task<T::Output>>> {
        let mut out = Vec::with_capacity(self.tasks.len());
        self.app
            .after_write(&self.tasks, &[], |task| {
                out.push(task.decode()?);
                Ok(())
            })
            .await?;
        Ok(out)
    }
}

impl<T: TaskDef> std::fmt::Debug for PreparedTasks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedTasks")
            .field("task", &T::entry().name)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl NewTask {
    /// This task with the flow keys its options and the call's unique key ask for, and, with
    /// debounce, its start moved to the debounce time after now.
    fn with_flow(mut self, entry: &'static TaskEntry, unique_key: Option<&str>) -> Self {
        self.flow = FlowKeys::of(entry, &self.args, unique_key);
        if let Some(debounce) = self.flow.as_ref().and_then(|f| f.debounce) {
            self.not_before = Some(self.created_at + debounce);
        }
        self
    }
}
