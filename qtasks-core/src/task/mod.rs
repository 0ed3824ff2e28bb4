//! Tasks: what a task is ([`TaskDef`](crate::TaskDef), its registry entry
//! [`TaskEntry`](crate::registry::TaskEntry) and options), what a task carries
//! ([`TaskName`](crate::TaskName), [`Payload`](crate::Payload), checked against the task's
//! parameters by [`check_args`](crate::registry::check_args)), what it becomes
//! ([`Task`](crate::Task), the record with its [`TaskStatus`](crate::TaskStatus)), and how it is
//! called ([`TaskCall`](crate::TaskCall), [`Router`](crate::Router), [`Backoff`](crate::Backoff)).
//!
//! The lowest layer of the crate next to `error`: nothing here runs a task.

pub(crate) mod args;
pub(crate) mod backoff;
pub(crate) mod blob;
pub(crate) mod call;
pub(crate) mod def;
pub(crate) mod entry;
pub(crate) mod extra;
pub(crate) mod name;
pub(crate) mod output;
pub(crate) mod payload;
pub(crate) mod record;
pub(crate) mod router;
pub(crate) mod status;
