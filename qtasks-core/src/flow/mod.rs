//! Flows: work made of more than one task run, or started by time.
//!
//! - `chain.rs`: [`Chain`](crate::chain::Chain), each step's result the next step's argument;
//! - `generator.rs`: [`Yield`](crate::Yield) and [`YieldStream`](crate::YieldStream),
//!   generator tasks and the stream of what they yield;
//! - `timer.rs`: [`Timer`](crate::timer::Timer)s, cron and interval schedules that enqueue
//!   tasks, once per tick across every instance.

pub(crate) mod chain;
pub(crate) mod generator;
pub(crate) mod timer;
