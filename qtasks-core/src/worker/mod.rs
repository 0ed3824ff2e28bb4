//! The worker: claims tasks in batches, runs up to `max_tasks_process` at once through the
//! execution pipeline, acknowledges them in batches, and shuts down gracefully.
//!
//! - `scope.rs`: [`WorkerScope`](scope::WorkerScope), the worker as tasks and the app see it
//!   (id, dependency scope, held tasks and their cancellation), and its public face
//!   [`WorkerRef`](crate::WorkerRef); below the executor;
//! - `handle.rs`: [`WorkerHandle`](crate::WorkerHandle) and
//!   [`WorkerRunner`](crate::component::WorkerRunner);
//! - `cancel.rs`: [`CancelSignal`](cancel::CancelSignal), the signal that stops one task;
//! - `queues.rs`: the claimed-job and finished-execution queues;
//! - `run.rs`: the run loop (fetcher, lanes, flusher, renewer, heartbeat, cancel listener).

pub(crate) mod cancel;
pub(crate) mod handle;
pub(crate) mod queues;
pub(crate) mod run;
pub(crate) mod scope;
