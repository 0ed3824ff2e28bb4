//! Events: typed hooks that observe the app's life and every task's end (Python's
//! `app.events.on.*`).
//!
//! Register them on the builder with [`Events`]:
//!
//! (The guide chapter `docs/events.md` has this example compiled and run.)
//!
//! ```text
//! use qtasks::events::Events;
//!
//! let events = Events::new()
//!     .on_task_success(|e| println!("{} ({}) succeeded", e.task.task_name, e.task.task_uuid))
//!     .on_task_error(|e| println!("{} failed: {}", e.task.task_name, e.traceback));
//! let app = qtasks::App::builder().name("events-doc").events(events).build()?;
//! # Ok::<(), qtasks::Error>(())
//! ```
//!
//! Every event is fired, `task_success`, `task_error` and `task_cancel` included (Python QTasks
//! declares them and never fires them). Handlers are plain closures called on the task's own
//! path: keep them quick, and spawn a tokio task for slow work. A panicking handler is logged
//! and does not take the worker down. With no handler registered, nothing is built per task.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::app::handle::App;
use crate::error::panic_message;
use crate::task::payload::Payload;

/// The app starts (`run_forever`, `run_until`, the CLI's `run`) or stops.
#[derive(Debug)]
pub struct AppEvent<'a> {
    /// The app.
    pub app: &'a App,
}

/// A worker starts taking tasks or stops.
#[derive(Debug)]
pub struct WorkerEvent<'a> {
    /// The app the worker serves.
    pub app: &'a App,
    /// The worker's id (`app-pid-n`).
    pub worker_id: &'a str,
}

/// One execution of one task.
#[derive(Debug, Clone, Copy)]
pub struct TaskEvent<'a> {
    /// The app running the task.
    pub app: &'a App,
    /// The registered task name.
    pub task_name: &'a str,
    /// The task's uuid.
    pub task_uuid: Uuid,
    /// Which attempt this is (1 for the first run).
    pub attempt: u32,
    /// The priority the task was enqueued with.
    pub priority: i32,
}

/// A task ended with status `success`.
#[derive(Debug)]
pub struct TaskSuccess<'a> {
    /// Which execution.
    pub task: TaskEvent<'a>,
    /// The encoded result (`result.decode::<T>()`, or `result.to_json()`).
    pub result: &'a Payload,
}

/// An attempt of a task failed: the task ends with status `error`, or runs again after
/// `retry_in`.
#[derive(Debug)]
pub struct TaskFailure<'a> {
    /// Which execution.
    pub task: TaskEvent<'a>,
    /// The error with its source chain.
    pub traceback: &'a str,
    /// `Some(delay)` when the task will run again after `delay`; `None` when this was final.
    pub retry_in: Option<Duration>,
}

/// A task ended with status `cancel`.
#[derive(Debug)]
pub struct TaskCancel<'a> {
    /// Which execution.
    pub task: TaskEvent<'a>,
    /// Why it was cancelled.
    pub reason: &'a str,
}

macro_rules! events {
    ($($(#[$doc:meta])* $on:ident, $fire:ident, $field:ident: $ty:ident;)*) => {
        /// The event handlers of an app. Build it with the `on_*` methods and pass it to
        /// [`AppBuilder::events`](crate::AppBuilder::events); several handlers per event run
        /// in the order they were added.
        #[derive(Clone, Default)]
        pub struct Events {
            $($field: Vec<Arc<dyn for<'a> Fn(&$ty<'a>) + Send + Sync>>,)*
        }

        impl Events {
            $(
                $(#[$doc])*
                pub fn $on(mut self, handler: impl for<'a> Fn(&$ty<'a>) + Send + Sync + 'static) -> Self {
                    self.$field.push(Arc::new(handler));
                    self
                }

                pub(crate) fn $fire(&self, event: &$ty<'_>) {
                    for hook in &self.$field {
                        call_guarded(stringify!($field), || hook(event));
                    }
                }
            )*

            /// Whether no handler is registered for any event.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_empty())*
            }

            /// Adds every handler of `other` after this one's.
            pub fn merge(mut self, other: Events) -> Self {
                $(self.$field.extend(other.$field);)*
                self
            }
        }

        impl std::fmt::Debug for Events {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Events")
                    $(.field(stringify!($field), &self.$field.len()))*
                    .finish()
            }
        }
    };
}

events! {
    /// The app starts: before its worker and timers start.
    on_starting, fire_starting, starting: AppEvent;
    /// The app stops: after its worker and timers stopped.
    on_stopping, fire_stopping, stopping: AppEvent;
    /// A worker starts taking tasks.
    on_worker_running, fire_worker_running, worker_running: WorkerEvent;
    /// A worker stopped taking tasks (after its running tasks finished or were returned).
    on_worker_stopping, fire_worker_stopping, worker_stopping: WorkerEvent;
    /// A task execution starts.
    on_task_running, fire_task_running, task_running: TaskEvent;
    /// A task execution ended, whatever its outcome (fired before the outcome's event).
    on_task_stopping, fire_task_stopping, task_stopping: TaskEvent;
    /// A task ended with status `success`.
    on_task_success, fire_task_success, task_success: TaskSuccess;
    /// An attempt of a task failed (final error, or a retry to come: see `retry_in`).
    on_task_error, fire_task_error, task_error: TaskFailure;
    /// A task ended with status `cancel`.
    on_task_cancel, fire_task_cancel, task_cancel: TaskCancel;
}

impl Events {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }
}

fn call_guarded(event: &'static str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
        tracing::error!(
            event,
            panic = %panic_message(panic),
            "an event handler panicked; the event is skipped for it and the worker goes on"
        );
    }
}
