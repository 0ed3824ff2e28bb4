//! Test helpers (feature `testing`): the [`TestKit`](testkit::TestKit), which runs tasks
//! inline through the full execution pipeline and records what they enqueue, and the
//! [`conformance`] suite every backend passes.

pub mod conformance;
pub mod testkit;
