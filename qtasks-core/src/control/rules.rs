//! The flow-control options of a task ([`Unique`], [`Limits`], [`Rate`]) and the rules a
//! worker gives its broker ([`TaskLimits`]).

use std::fmt;
use std::time::Duration;

/// Which arguments a key is made of (`unique = [order_id]`): every argument, or the named ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFrom {
    /// The task name alone (`debounce` without `unique = [..]`): one task of the name at a
    /// time.
    Name,
    /// All the arguments (`unique` alone): two calls are the same when their arguments are.
    AllArgs,
    /// The values of these parameters, in this order.
    Args(&'static [&'static str]),
}

/// `unique`, `unique_for` and `debounce` of a task's attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unique {
    /// What the key is made of (a call's `.unique_key(..)` replaces it).
    pub key: KeyFrom,
    /// How long the key stays taken after the task finished (`unique_for = 60.0`); zero: it
    /// is free as soon as the task is final.
    pub hold_after: Duration,
    /// `throttle = 60.0`: at most one task per key is enqueued in this window; an enqueue
    /// within it (counted from the holder's enqueue, whatever its status) returns the holder
    /// and writes nothing (the call is dropped, not deferred). `None`: no throttle.
    pub throttle: Option<Duration>,
    /// `debounce = 2.0`: each enqueue with the key replaces the pending task's arguments and
    /// moves its start to this long after the last call; `None`: no debounce.
    pub debounce: Option<Duration>,
}

/// A rate: `permits` starts per `per` (`rate_limit = "50/s"`, `"10/m"`, `"100/h"`; the
/// attribute checks the text when it compiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many starts.
    pub permits: u32,
    /// In how long.
    pub per: Duration,
}

impl Rate {
    /// The time between two starts when the rate is used evenly (`"50/s"`: 20 ms).
    pub fn interval(&self) -> Duration {
        self.per / self.permits
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.permits, self.per.as_secs_f64())
    }
}

/// `concurrency`, `concurrency_key`, `rate_limit` and `rate_limit_key` of a task's attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// At most this many running at once, across every worker (`concurrency = 4`); per key
    /// when `concurrency_key` is set.
    pub concurrency: Option<u32>,
    /// The arguments the concurrency key is made of (`concurrency_key = [account_id]`).
    pub concurrency_key: Option<&'static [&'static str]>,
    /// At most this many starts per period, across every worker (`rate_limit = "50/s"`); per
    /// key when `rate_limit_key` is set.
    pub rate: Option<Rate>,
    /// The arguments the rate key is made of (`rate_limit_key = [customer_id]`).
    pub rate_key: Option<&'static [&'static str]>,
}

impl Limits {
    /// No limit.
    pub const NONE: Limits = Limits {
        concurrency: None,
        concurrency_key: None,
        rate: None,
        rate_key: None,
    };

    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }
}

/// The limits of one task name, as a worker hands them to its broker
/// ([`Broker::set_limits`](crate::backend::Broker::set_limits)) when it starts: the broker
/// applies them when it claims, for every worker of the app together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLimits {
    /// The task name.
    pub task_name: String,
    /// At most this many of its claims held at once (per key when `concurrency_per_key`).
    pub concurrency: Option<u32>,
    /// Whether the concurrency limit is per key (the task's `concurrency_key`).
    pub concurrency_per_key: bool,
    /// At most this rate of claims (per key when `rate_per_key`).
    pub rate: Option<Rate>,
    /// Whether the rate limit is per key (the task's `rate_limit_key`).
    pub rate_per_key: bool,
}

impl TaskLimits {
    /// The rules of a task name with these limits; `None` when it has none.
    pub fn of(task_name: &str, limits: &Limits) -> Option<TaskLimits> {
        limits.is_set().then(|| TaskLimits {
            task_name: task_name.to_string(),
            concurrency: limits.concurrency,
            concurrency_per_key: limits.concurrency_key.is_some(),
            rate: limits.rate,
            rate_per_key: limits.rate_key.is_some(),
        })
    }
}
