//! Where plugins and events meet the runtime: the few functions the app, the worker and the
//! executor call at their trigger points. Each starts with one emptiness check, so an app
//! without plugins or event handlers pays one branch per point and allocates nothing.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::backend::{Delivery, NewTask, Outcome};
use crate::events::{Events, TaskCancel, TaskEvent, TaskFailure, TaskSuccess};
use crate::plugin::{Plugins, Trigger};
use crate::worker::WorkerShared;
use crate::{executor, App, Payload, Task, TaskContext, TaskError, TaskErrorKind, TaskRun};

/// An app's plugins and event handlers.
#[derive(Clone, Default, Debug)]
pub(crate) struct Hooks {
    pub(crate) plugins: Plugins,
    pub(crate) events: Events,
}

impl Hooks {
    /// Whether anything is registered.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.plugins.is_empty() && self.events.is_empty()
    }
}

/// `add_task`, before the broker: app then broker triggers.
pub(crate) async fn before_enqueue(app: &App, task: &mut NewTask) {
    let plugins = &app.hooks().plugins;
    plugins.fire(&mut Trigger::AddTaskBefore { task }).await;
    plugins.fire(&mut Trigger::BrokerAddBefore { task }).await;
}

/// `add_task`, after the broker: broker then app triggers.
pub(crate) async fn after_enqueue(app: &App, new: &NewTask, task: &mut Task) {
    let plugins = &app.hooks().plugins;
    plugins
        .fire(&mut Trigger::BrokerAddAfter { task: new })
        .await;
    plugins.fire(&mut Trigger::AddTaskAfter { task }).await;
}

/// Runs one delivery the way the worker does: worker triggers, the executor pipeline, retry
/// trigger, task events. The worker's lanes and the testing kit both call this.
pub(crate) async fn execute(
    app: &App,
    worker: &Arc<WorkerShared>,
    delivery: &Delivery,
    cancel: CancellationToken,
) -> Outcome {
    let hooks = app.hooks();
    if hooks.is_empty() {
        return executor::execute(app, worker, delivery, cancel).await;
    }
    let plugins = &hooks.plugins;
    let mut owned;
    let mut delivery = delivery;
    if !plugins.is_empty() {
        owned = delivery.clone();
        plugins
            .fire(&mut Trigger::WorkerAdd {
                delivery: &mut owned,
            })
            .await;
        delivery = &owned;
        plugins
            .fire(&mut Trigger::WorkerExecuteBefore { delivery })
            .await;
    }
    let event = TaskEvent {
        app,
        task_name: &delivery.task_name,
        task_uuid: delivery.uuid,
        attempt: delivery.attempt,
        priority: delivery.priority,
    };
    hooks.events.fire_task_running(&event);

    let mut outcome = executor::execute(app, worker, delivery, cancel).await;

    if let Outcome::Retry { traceback, delay } = &outcome {
        let mut next = Some(*delay);
        plugins
            .fire(&mut Trigger::Retry {
                delivery,
                traceback,
                delay: &mut next,
            })
            .await;
        outcome = match next {
            Some(delay) => Outcome::Retry {
                traceback: traceback.clone(),
                delay,
            },
            None => Outcome::Failed {
                traceback: traceback.clone(),
            },
        };
    }
    plugins
        .fire(&mut Trigger::WorkerExecuteAfter {
            delivery,
            outcome: &mut outcome,
        })
        .await;

    let events = &hooks.events;
    events.fire_task_stopping(&event);
    match &outcome {
        Outcome::Success(result) => events.fire_task_success(&TaskSuccess {
            task: event,
            result,
        }),
        Outcome::Failed { traceback } | Outcome::DeadLetter { traceback, .. } => events
            .fire_task_error(&TaskFailure {
                task: event,
                traceback,
                retry_in: None,
            }),
        Outcome::Retry { traceback, delay } => events.fire_task_error(&TaskFailure {
            task: event,
            traceback,
            retry_in: Some(*delay),
        }),
        Outcome::Cancelled { reason } => events.fire_task_cancel(&TaskCancel {
            task: event,
            reason,
        }),
    }
    outcome
}

/// The executor's triggers around the function call, in the default pipeline
/// ([`TaskRun::pipeline`]): arguments replaced, before, the call, after, a plugin error
/// answered, the result replaced.
pub(crate) async fn call(run: &mut TaskRun) -> Result<Payload, TaskError> {
    if run.ctx().app().hooks().plugins.is_empty() {
        return run.call().await;
    }
    let ctx = run.ctx().clone();
    let plugins = &ctx.app().hooks().plugins;
    plugins
        .fire(&mut Trigger::ArgsReplace {
            ctx: &ctx,
            args: run.args_mut(),
        })
        .await;
    plugins
        .fire(&mut Trigger::ExecuteBefore { ctx: &ctx })
        .await;
    let mut result = run.call().await;
    plugins
        .fire(&mut Trigger::ExecuteAfter {
            ctx: &ctx,
            result: &result,
        })
        .await;
    if let Err(err) = &result {
        if let TaskErrorKind::PluginError(data) = err.kind() {
            let mut replaced = None;
            plugins
                .fire(&mut Trigger::PluginError {
                    ctx: &ctx,
                    data,
                    result: &mut replaced,
                })
                .await;
            if let Some(payload) = replaced {
                result = Ok(payload);
            }
        }
    }
    if let Ok(payload) = &mut result {
        plugins
            .fire(&mut Trigger::ResultReplace {
                ctx: &ctx,
                result: payload,
            })
            .await;
    }
    result
}

/// The task's `decode`, then the plugins' decode trigger (the result in the form storage keeps).
pub(crate) async fn decode(run: &TaskRun, result: Payload) -> Result<Payload, TaskError> {
    let mut result = run.decode(result)?;
    let plugins = &run.ctx().app().hooks().plugins;
    if !plugins.is_empty() {
        plugins
            .fire(&mut Trigger::Decode {
                ctx: run.ctx(),
                result: &mut result,
            })
            .await;
    }
    Ok(result)
}

/// The execution is over, whatever its executor did.
pub(crate) async fn task_close(ctx: &TaskContext) {
    let plugins = &ctx.app().hooks().plugins;
    if !plugins.is_empty() {
        plugins.fire(&mut Trigger::TaskClose { ctx }).await;
    }
}
