//! [`TaskDef`]: the trait of the struct `#[qtasks::task]` generates for each task.

use serde::{de::DeserializeOwned, Serialize};

use crate::task::entry::TaskEntry;

/// What `#[qtasks::task]` implements for the struct it generates.
///
/// The trait is named `TaskDef`, not `Task`, because [`Task`](crate::Task) is the record users
/// read back (the seeds' `Task` schema), and one name cannot serve both.
pub trait TaskDef: Copy + Send + Sync + 'static {
    /// The arguments (the function's payload parameters), encoded as a named map.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the task returns on success (`T` of `-> T` or `-> Result<T, E>`).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// What a generator task yields through its [`Yield`](crate::Yield) parameter (`()` for
    /// other tasks); callers observe it with [`TaskCall::stream`](crate::TaskCall::stream).
    type Yielded: DeserializeOwned + Send + 'static;
    /// The task's registry entry: name, options, handler.
    fn entry() -> &'static TaskEntry;
}
