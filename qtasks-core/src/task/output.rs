//! [`TaskOutput`]: what a task's result must be (stored, then decoded by whoever reads it),
//! with the compile error that says so.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type a task can return: its result is stored, then decoded by whoever reads it, so it
/// must be serializable both ways, owned and sendable. The generated code asserts it at the
/// return type as written, so a type that is not gets this trait's message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's result: results are stored and read back by other processes, so they must implement serde's `Serialize` and `Deserialize` (owned, `Send`, `'static`)",
    label = "not a serializable task result",
    note = "derive `Serialize, Deserialize` for it, or return a type that has them (`String`, `Vec<T>`, `serde_json::Value`)"
)]
pub trait TaskOutput: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> TaskOutput for T {}

/// Compile-time assertion that `T` can be a task's result (spanned at the return type).
pub fn assert_output<T: TaskOutput>() {}

/// Compile-time assertion that a value can be a task's result (what a `decode` function
/// returns, spanned at its path).
pub fn assert_output_value<T: TaskOutput>(_value: &T) {}
