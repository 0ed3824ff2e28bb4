//! The statuses a task goes through.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The status of a task, with the same names on the wire as Python QTasks.
///
/// `new` -> `process` -> `success` | `error` | `cancel`; `retry` between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Enqueued, not yet picked up.
    New,
    /// Picked up by a worker and running.
    Process,
    /// Finished with a result.
    Success,
    /// Finished with an error (see `traceback`).
    Error,
    /// Cancelled (see `cancel_reason`).
    Cancel,
    /// Failed and waiting for its next attempt.
    Retry,
}

impl TaskStatus {
    /// Whether the status is final (`success`, `error` or `cancel`): waiting stops there.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Success | TaskStatus::Error | TaskStatus::Cancel
        )
    }

    /// The wire name (`new`, `process`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::New => "new",
            TaskStatus::Process => "process",
            TaskStatus::Success => "success",
            TaskStatus::Error => "error",
            TaskStatus::Cancel => "cancel",
            TaskStatus::Retry => "retry",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => TaskStatus::New,
            "process" => TaskStatus::Process,
            "success" => TaskStatus::Success,
            "error" => TaskStatus::Error,
            "cancel" => TaskStatus::Cancel,
            "retry" => TaskStatus::Retry,
            _ => return None,
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
