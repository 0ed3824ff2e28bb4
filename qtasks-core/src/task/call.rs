//! [`TaskCall`]: a pre-built call of a task (Python's `task_func(*args)`).

use std::marker::PhantomData;
use std::time::Duration;

use uuid::Uuid;

use crate::app::handle::App;
use crate::error::{Error, Result};
use crate::task::def::TaskDef;
use crate::task::payload::Payload;
use crate::task::record::Task;

/// A task with its arguments, ready to enqueue: `add.call(2, 3).priority(1).add_task().await?`.
///
/// Built by the `call` method the macro generates. It can be kept, changed and sent later.
pub struct TaskCall<T: TaskDef> {
    args: T::Args,
    priority: Option<i32>,
    timeout: Option<Duration>,
    app: Option<App>,
    identity: Option<Identity>,
    unique_key: Option<String>,
    _task: PhantomData<T>,
}

/// The uuid a call asks for.
#[derive(Debug, Clone)]
enum Identity {
    /// This uuid.
    Id(Uuid),
    /// The uuid derived from this key (with the app's and the task's names).
    Key(String),
}

/// The namespace of uuids derived from idempotency keys (a UUID v5 namespace of qtasks' own).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a57_93d4_4b8e_a0c1_5e77_d2b9_0a13);

impl<T: TaskDef> TaskCall<T> {
    /// A call with these arguments (used by generated code).
    pub fn new(args: T::Args) -> Self {
        TaskCall {
            args,
            priority: None,
            timeout: None,
            app: None,
            identity: None,
            unique_key: None,
            _task: PhantomData,
        }
    }

    /// Enqueues the task under this uuid instead of a fresh one. Enqueueing a uuid that
    /// already exists changes nothing (the existing task is kept and returned as enqueued),
    /// so a producer that timed out may send the same call again without making a duplicate.
    pub fn id(mut self, uuid: Uuid) -> Self {
        self.identity = Some(Identity::Id(uuid));
        self
    }

    /// Enqueues the task under the uuid derived from `key` (a UUID v5 of the app's name, the
    /// task's name and the key), so sending the same call with the same key again, after a
    /// timeout or a crash, never makes a second task while the first one's record exists
    /// (queued, running, or finished within the result TTL). `"order-42"` for the call that
    /// handles order 42.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.identity = Some(Identity::Key(key.into()));
        self
    }

    /// Makes this call unique by `key` (per task name): while a task enqueued with the key is
    /// queued, waiting for a retry or running (and, with the task's `unique_for`, for that
    /// long after it finished), enqueueing another call with it writes nothing and returns
    /// that task, with [`Task::is_existing`] true. Replaces the key the task's `unique = [..]`
    /// would derive from the arguments. Unlike [`idempotency_key`](Self::idempotency_key),
    /// the key is free again once its task is done.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Overrides the task's priority for this call (lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Waits up to `timeout` for the final state: `add_task` then returns the finished task,
    /// or [`Error::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the call to this app instead of the current one.
    pub fn on(mut self, app: &App) -> Self {
        self.app = Some(app.clone());
        self
    }

    /// The arguments.
    pub fn args(&self) -> &T::Args {
        &self.args
    }

    pub(crate) fn into_parts(self) -> (T::Args, Option<i32>, Option<String>) {
        (self.args, self.priority, self.unique_key)
    }

    /// Enqueues the task. Returns it with status `new`, or, when a timeout was set, waits and
    /// returns it in its final state with its typed `returning`.
    pub async fn add_task(self) -> Result<Task<T::Output>> {
        let app = self.app()?;
        let uuid = self.uuid(&app);
        self.send(&app, uuid).await
    }

    /// [`add_task`](Self::add_task) from sync code, blocking the thread: for sync tasks,
    /// threads, `main` without a runtime, and async code on a multi-thread runtime. On a
    /// current-thread runtime it returns an error saying to use the async form.
    pub fn add_task_blocking(self) -> Result<Task<T::Output>> {
        let app = self.app()?;
        let uuid = self.uuid(&app);
        let what = format!("the blocking add_task of task {:?}", T::entry().name);
        app.block_on_checked(&what, self.send(&app, uuid))?
    }

    /// The uuid the task gets on `app`: the one asked for, or a fresh one.
    pub(crate) fn uuid(&self, app: &App) -> Uuid {
        match &self.identity {
            None => Uuid::new_v4(),
            Some(Identity::Id(uuid)) => *uuid,
            Some(Identity::Key(key)) => {
                let name = format!("{}\0{}\0{key}", app.name(), T::entry().name);
                Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
            }
        }
    }

    /// The app the call goes to: the one given with [`on`](Self::on), else the current one.
    pub(crate) fn app(&self) -> Result<App> {
        match &self.app {
            Some(app) => Ok(app.clone()),
            None => App::current(),
        }
    }

    /// Enqueues the call on `app` as task `uuid` (waiting when a timeout was set).
    pub(crate) async fn send(self, app: &App, uuid: Uuid) -> Result<Task<T::Output>> {
        let entry = T::entry();
        let args = Payload::encode(&self.args).map_err(|e| Error::Encode {
            task: entry.name.to_string(),
            source: Box::new(e),
        })?;
        let unique_key = self.unique_key.as_deref();
        let task = app
            .enqueue(uuid, entry, self.priority, args, unique_key)
            .await?;
        match self.timeout {
            Some(timeout) => app.wait(task.uuid, timeout).await?.decode(),
            None => task.decode(),
        }
    }
}

impl<T: TaskDef> Clone for TaskCall<T>
where
    T::Args: Clone,
{
    fn clone(&self) -> Self {
        TaskCall {
            args: self.args.clone(),
            priority: self.priority,
            timeout: self.timeout,
            app: self.app.clone(),
            identity: self.identity.clone(),
            unique_key: self.unique_key.clone(),
            _task: PhantomData,
        }
    }
}

impl<T: TaskDef> std::fmt::Debug for TaskCall<T>
where
    T::Args: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCall")
            .field("task", &T::entry().name)
            .field("args", &self.args)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("identity", &self.identity)
            .field("unique_key", &self.unique_key)
            .finish()
    }
}
