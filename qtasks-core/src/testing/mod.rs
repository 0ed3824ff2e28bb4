//! Test helpers (feature `testing`): the [`TestKit`](testkit::TestKit), which runs tasks
//! inline through the full execution pipeline and records what they enqueue, and the
//! [`conformance`] suite every backend passes, and the [`server::ServerProcess`] the backends'
//! private test servers run as.

pub mod conformance;
pub mod server;
pub mod testkit;
