//! Plugins: code attached to the app, or to one component, that runs at typed trigger points
//! and may replace what flows through them (arguments, results, records).
//!
//! A plugin implements [`Plugin`]: a name and one `trigger` method that receives every
//! [`Trigger`] of the components it is attached to. It matches the variants it cares about
//! and ignores the rest, which is also how a catch-all plugin (QTasks' `Globals`) is written.
//!
//! (The guide chapter `docs/plugins.md` has this example compiled and run.)
//!
//! ```text
//! use qtasks::plugin::{self, Trigger};
//!
//! // Adds one to every integer result.
//! let bump = plugin::from_fn("bump", |trigger: &mut Trigger<'_>| {
//!     if let Trigger::ResultReplace { result, .. } = trigger {
//!         if let Ok(n) = result.decode::<i64>() {
//!             **result = qtasks::Payload::encode(&(n + 1))?;
//!         }
//!     }
//!     Ok(())
//! });
//! let app = qtasks::App::builder().name("plugin-doc").plugin(bump).build()?;
//! # Ok::<(), qtasks::Error>(())
//! ```
//!
//! The trigger catalogue (QTasks' triggers, research/qtasks.md 3.8), by component:
//!
//! | component | triggers |
//! |---|---|
//! | App | [`AddTaskBefore`](Trigger::AddTaskBefore), [`AddTaskAfter`](Trigger::AddTaskAfter), [`Get`](Trigger::Get) |
//! | Broker | [`BrokerAddBefore`](Trigger::BrokerAddBefore), [`BrokerAddAfter`](Trigger::BrokerAddAfter) |
//! | Worker | [`WorkerAdd`](Trigger::WorkerAdd), [`WorkerExecuteBefore`](Trigger::WorkerExecuteBefore), [`WorkerExecuteAfter`](Trigger::WorkerExecuteAfter), [`Retry`](Trigger::Retry) |
//! | Executor | [`ArgsReplace`](Trigger::ArgsReplace), [`ExecuteBefore`](Trigger::ExecuteBefore), [`ExecuteAfter`](Trigger::ExecuteAfter), [`ResultReplace`](Trigger::ResultReplace), [`Decode`](Trigger::Decode), [`PluginError`](Trigger::PluginError), [`TaskClose`](Trigger::TaskClose) |
//! | every component | [`Start`](Trigger::Start), [`Stop`](Trigger::Stop) |
//!
//! A plugin that returns an error or panics is logged with its name and the trigger, the
//! other plugins still run, and the task goes on as if the failing plugin had done nothing.
//! With no plugin registered the app checks one empty list per trigger point and allocates
//! nothing.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::backend::{Delivery, NewTask, Outcome};
use crate::context::TaskContext;
use crate::error::{panic_message, BoxError, TaskError};
use crate::task::payload::Payload;
use crate::task::record::Task;

/// The components of an app, for attaching a plugin to one of them and for the start/stop
/// triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// The app itself (`add_task`, `get`).
    App,
    /// The queue.
    Broker,
    /// The worker (claiming, running, acknowledging).
    Worker,
    /// Records and results.
    Storage,
    /// The shared key-value store.
    GlobalConfig,
    /// What starts and stops the app (`run_forever`).
    Starter,
    /// The pipeline that runs one task.
    Executor,
}

impl ComponentKind {
    /// The lowercase name (`broker`, `global_config`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::App => "app",
            ComponentKind::Broker => "broker",
            ComponentKind::Worker => "worker",
            ComponentKind::Storage => "storage",
            ComponentKind::GlobalConfig => "global_config",
            ComponentKind::Starter => "starter",
            ComponentKind::Executor => "executor",
        }
    }
}

/// One trigger point, with what a plugin may read or replace there.
#[derive(Debug)]
#[non_exhaustive]
pub enum Trigger<'a> {
    /// `add_task`, before the task goes to the broker; may change the name, priority and
    /// arguments of the task. (QTasks `qtasks_add_task_before_broker`.)
    AddTaskBefore {
        /// The task about to be enqueued.
        task: &'a mut NewTask,
    },
    /// `add_task`, after the broker accepted the task. (`qtasks_add_task_after_broker`.)
    AddTaskAfter {
        /// The record returned to the caller (status `new`); may be replaced.
        task: &'a mut Task,
    },
    /// `app.get(uuid)`; may replace the record read. (`qtasks_get`.)
    Get {
        /// What storage returned.
        task: &'a mut Option<Task>,
    },
    /// The broker is about to write the task; may replace it. (`broker_add_before`.)
    BrokerAddBefore {
        /// The task about to be written.
        task: &'a mut NewTask,
    },
    /// The broker wrote the task. (`broker_add_after`.)
    BrokerAddAfter {
        /// The task written.
        task: &'a NewTask,
    },
    /// The worker took a claimed task; may change its arguments or priority before it runs.
    /// (`worker_add`.)
    WorkerAdd {
        /// The claimed task.
        delivery: &'a mut Delivery,
    },
    /// The worker is about to run the task. (`worker_execute_before`.)
    WorkerExecuteBefore {
        /// The task.
        delivery: &'a Delivery,
    },
    /// The task ran; may replace how it ended, before the broker records it.
    /// (`worker_remove_finished_task` and `worker_execute_after`.)
    WorkerExecuteAfter {
        /// The task.
        delivery: &'a Delivery,
        /// How it ended.
        outcome: &'a mut Outcome,
    },
    /// The attempt failed and will be retried; may change the delay, or set it to `None` to
    /// make this failure final. (`worker_task_error_retry`.)
    Retry {
        /// The task.
        delivery: &'a Delivery,
        /// The error of this attempt.
        traceback: &'a str,
        /// When the next attempt runs; `None` ends the task with status `error`.
        delay: &'a mut Option<Duration>,
    },
    /// The task's arguments, before they are decoded into the function's parameters; may
    /// replace them. (`task_executor_args_replace`.)
    ArgsReplace {
        /// The running task.
        ctx: &'a TaskContext,
        /// The encoded arguments.
        args: &'a mut Payload,
    },
    /// The function is about to be called. (`task_executor_before_execute`.)
    ExecuteBefore {
        /// The running task.
        ctx: &'a TaskContext,
    },
    /// The function returned. (`task_executor_after_execute`.)
    ExecuteAfter {
        /// The running task.
        ctx: &'a TaskContext,
        /// What it returned (encoded) or its error.
        result: &'a Result<Payload, TaskError>,
    },
    /// The task's successful result; may replace it.
    /// (`task_executor_after_execute_result_replace`.)
    ResultReplace {
        /// The running task.
        ctx: &'a TaskContext,
        /// The encoded result.
        result: &'a mut Payload,
    },
    /// The result after the task's result transform (its `decode = path` attribute), in the
    /// form storage will keep; may replace it. (The seeds' `task_executor_decode`, whose name
    /// it keeps.)
    Decode {
        /// The running task.
        ctx: &'a TaskContext,
        /// The encoded result.
        result: &'a mut Payload,
    },
    /// The task returned `Err(ctx.plugin_error(data))`; a plugin may turn it into a success
    /// by setting `result`. (`task_executor_run_task_trigger_error`.)
    PluginError {
        /// The running task.
        ctx: &'a TaskContext,
        /// What the task passed to `plugin_error`.
        data: &'a Payload,
        /// Set to make the task succeed with this result.
        result: &'a mut Option<Payload>,
    },
    /// The execution is over (success or not). (`task_executor_task_close`.)
    TaskClose {
        /// The task that ran.
        ctx: &'a TaskContext,
    },
    /// A component starts (`broker_start`, `worker_start`, `starter_start`, ...).
    Start(ComponentKind),
    /// A component stops (`broker_stop`, `worker_stop`, `starter_stop`, ...).
    Stop(ComponentKind),
}

impl Trigger<'_> {
    /// The component that fires this trigger.
    pub fn component(&self) -> ComponentKind {
        match self {
            Trigger::AddTaskBefore { .. } | Trigger::AddTaskAfter { .. } | Trigger::Get { .. } => {
                ComponentKind::App
            }
            Trigger::BrokerAddBefore { .. } | Trigger::BrokerAddAfter { .. } => {
                ComponentKind::Broker
            }
            Trigger::WorkerAdd { .. }
            | Trigger::WorkerExecuteBefore { .. }
            | Trigger::WorkerExecuteAfter { .. }
            | Trigger::Retry { .. } => ComponentKind::Worker,
            Trigger::ArgsReplace { .. }
            | Trigger::ExecuteBefore { .. }
            | Trigger::ExecuteAfter { .. }
            | Trigger::ResultReplace { .. }
            | Trigger::Decode { .. }
            | Trigger::PluginError { .. }
            | Trigger::TaskClose { .. } => ComponentKind::Executor,
            Trigger::Start(c) | Trigger::Stop(c) => *c,
        }
    }

    /// The trigger's name (`add_task_before`, `args_replace`, `start`, ...), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::AddTaskBefore { .. } => "add_task_before",
            Trigger::AddTaskAfter { .. } => "add_task_after",
            Trigger::Get { .. } => "get",
            Trigger::BrokerAddBefore { .. } => "broker_add_before",
            Trigger::BrokerAddAfter { .. } => "broker_add_after",
            Trigger::WorkerAdd { .. } => "worker_add",
            Trigger::WorkerExecuteBefore { .. } => "worker_execute_before",
            Trigger::WorkerExecuteAfter { .. } => "worker_execute_after",
            Trigger::Retry { .. } => "retry",
            Trigger::ArgsReplace { .. } => "args_replace",
            Trigger::ExecuteBefore { .. } => "execute_before",
            Trigger::ExecuteAfter { .. } => "execute_after",
            Trigger::ResultReplace { .. } => "result_replace",
            Trigger::Decode { .. } => "decode",
            Trigger::PluginError { .. } => "plugin_error",
            Trigger::TaskClose { .. } => "task_close",
            Trigger::Start(_) => "start",
            Trigger::Stop(_) => "stop",
        }
    }
}

/// Code that runs at trigger points. See the [module docs](self).
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name, used in logs and error reports.
    fn name(&self) -> &str;

    /// Handles one trigger: match the variants the plugin cares about, change what they let it
    /// change, return `Ok(())` for the rest. An error is logged with the plugin's name and
    /// does not stop the task or the worker.
    fn trigger<'a>(&'a self, trigger: &'a mut Trigger<'_>) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// A plugin from a name and a synchronous closure (`plugin::from_fn("audit", |t| ..)`).
pub fn from_fn<F>(name: impl Into<String>, f: F) -> FnPlugin<F>
where
    F: Fn(&mut Trigger<'_>) -> Result<(), BoxError> + Send + Sync + 'static,
{
    FnPlugin {
        name: name.into(),
        f,
    }
}

/// A plugin made by [`from_fn`].
pub struct FnPlugin<F> {
    name: String,
    f: F,
}

impl<F> Plugin for FnPlugin<F>
where
    F: Fn(&mut Trigger<'_>) -> Result<(), BoxError> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn trigger<'a>(&'a self, trigger: &'a mut Trigger<'_>) -> BoxFuture<'a, Result<(), BoxError>> {
        let result = (self.f)(trigger);
        Box::pin(std::future::ready(result))
    }
}

impl<F> std::fmt::Debug for FnPlugin<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnPlugin")
            .field("name", &self.name)
            .finish()
    }
}

/// The plugins of an app, each attached to every component or to one.
#[derive(Clone, Default)]
pub struct Plugins {
    entries: Vec<(Option<ComponentKind>, Arc<dyn Plugin>)>,
}

impl Plugins {
    /// Attaches a plugin to every component (it sees every trigger).
    pub(crate) fn add(&mut self, component: Option<ComponentKind>, plugin: Arc<dyn Plugin>) {
        self.entries.push((component, plugin));
    }

    /// Whether no plugin is registered: trigger points check this and do nothing else.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The registered plugins' names and the component each is attached to (`None` = all).
    pub fn names(&self) -> Vec<(String, Option<ComponentKind>)> {
        self.entries
            .iter()
            .map(|(c, p)| (p.name().to_string(), *c))
            .collect()
    }

    /// Runs every plugin attached to the trigger's component, in registration order. A
    /// plugin's error or panic is logged with its name and skipped.
    pub async fn fire(&self, trigger: &mut Trigger<'_>) {
        if self.entries.is_empty() {
            return;
        }
        let component = trigger.component();
        for (attached, plugin) in &self.entries {
            if attached.is_some_and(|c| c != component) {
                continue;
            }
            // A plugin may panic while making its future (closure plugins run there) or
            // while it runs: both are caught.
            let t: &mut Trigger<'_> = &mut *trigger;
            let outcome = match std::panic::catch_unwind(AssertUnwindSafe(move || {
                let t = t;
                plugin.trigger(t)
            })) {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            let message = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("panicked: {}", panic_message(panic)),
            };
            report_failure(plugin.name(), trigger, &message);
        }
    }
}

fn report_failure(plugin: &str, trigger: &Trigger<'_>, message: &str) {
    let (task_name, task_uuid) = match trigger {
        Trigger::ArgsReplace { ctx, .. }
        | Trigger::ExecuteBefore { ctx }
        | Trigger::ExecuteAfter { ctx, .. }
        | Trigger::ResultReplace { ctx, .. }
        | Trigger::Decode { ctx, .. }
        | Trigger::PluginError { ctx, .. }
        | Trigger::TaskClose { ctx } => (Some(ctx.task_name()), Some(ctx.task_uuid)),
        Trigger::WorkerAdd { delivery } => (Some(delivery.task_name.as_ref()), Some(delivery.uuid)),
        Trigger::WorkerExecuteBefore { delivery }
        | Trigger::WorkerExecuteAfter { delivery, .. }
        | Trigger::Retry { delivery, .. } => {
            (Some(delivery.task_name.as_ref()), Some(delivery.uuid))
        }
        Trigger::AddTaskBefore { task } | Trigger::BrokerAddBefore { task } => {
            (Some(task.task_name.as_ref()), Some(task.uuid))
        }
        Trigger::BrokerAddAfter { task } => (Some(task.task_name.as_ref()), Some(task.uuid)),
        Trigger::AddTaskAfter { task } => (Some(task.task_name.as_ref()), Some(task.uuid)),
        Trigger::Get { .. } | Trigger::Start(_) | Trigger::Stop(_) => (None, None),
    };
    tracing::error!(
        plugin,
        trigger = trigger.name(),
        component = trigger.component().as_str(),
        task_name,
        task_uuid = task_uuid.map(|u| u.to_string()),
        error = message,
        "plugin {plugin:?} failed at trigger {}: {message}; it is skipped and the task goes on",
        trigger.name()
    );
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(c, p)| (p.name().to_string(), *c)))
            .finish()
    }
}

/// Starts or stops every component at once (the starter's lifecycle).
pub(crate) async fn fire_lifecycle(plugins: &Plugins, start: bool) {
    if plugins.is_empty() {
        return;
    }
    let order = [
        ComponentKind::Starter,
        ComponentKind::GlobalConfig,
        ComponentKind::Storage,
        ComponentKind::Broker,
        ComponentKind::App,
    ];
    if start {
        for c in order {
            plugins.fire(&mut Trigger::Start(c)).await;
        }
    } else {
        for c in order.into_iter().rev() {
            plugins.fire(&mut Trigger::Stop(c)).await;
        }
    }
}
