//! [`TaskLogger`]: a task's logger, through `tracing`.

use uuid::Uuid;

/// A task's logger ([`TaskContext::get_logger`]): `tracing` events with target
/// `qtasks::task` and the fields `logger`, `task_name` and `task_uuid`.
#[derive(Debug, Clone)]
pub struct TaskLogger {
    pub(crate) name: String,
    pub(crate) task_name: &'static str,
    pub(crate) task_uuid: Uuid,
}

macro_rules! log_method {
    ($(#[$doc:meta] $method:ident => $macro:ident),* $(,)?) => {$(
        #[$doc]
        pub fn $method(&self, message: impl std::fmt::Display) {
            tracing::$macro!(
                target: "qtasks::task",
                logger = %self.name,
                task_name = self.task_name,
                task_uuid = %self.task_uuid,
                "{message}"
            );
        }
    )*};
}

impl TaskLogger {
    /// The logger's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    log_method! {
        /// Logs at level TRACE.
        trace => trace,
        /// Logs at level DEBUG.
        debug => debug,
        /// Logs at level INFO.
        info => info,
        /// Logs at level WARN.
        warn => warn,
        /// Logs at level ERROR.
        error => error,
    }
}
