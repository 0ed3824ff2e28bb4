//! Flow control across processes: what a task's attribute asks of the backend beyond "run it
//! once": unique tasks and debounce (decided at enqueue), concurrency and rate limits (decided
//! at claim, for every worker process together).
//!
//! - `rules.rs`: the options as the attribute writes them ([`Unique`], [`Limits`], [`Rate`])
//!   and the per-task-name rules a worker hands its broker ([`TaskLimits`]);
//! - `keys.rs`: the keys one call resolves to ([`FlowKeys`]), derived from its arguments;
//! - `queues.rs`: named queues, the ones a worker serves ([`QueueSelection`]) and the order
//!   its claims look at them in ([`QueueTurns`]).
//!
//! The backends enforce them atomically (the memory backend under its queue lock, Redis in
//! its enqueue and claim scripts); `docs/flow-control.md` says what each option guarantees.

pub(crate) mod keys;
pub(crate) mod queues;
pub(crate) mod rules;

pub use keys::FlowKeys;
pub use queues::{check_queue_name, QueueSelection, QueueTurns, DEFAULT_QUEUE};
pub use rules::{KeyFrom, Limits, Rate, TaskLimits, Unique};
