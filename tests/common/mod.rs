//! Helpers shared by the facade's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use qtasks::App;

pub(crate) mod faults;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod worker_process;

/// How long a test waits for work before failing. Generous: CI runs on 2 cores.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// A builder for a test app on its own in-memory backend, deaf to `QTASKS_*` variables.
pub(crate) fn builder(name: &str) -> qtasks::AppBuilder {
    App::builder().name(name).ignore_env()
}
