//! A library-style module: shared tasks and a router, declared without any app.

use qtasks::Router;

/// The billing tasks; apps that want them include this router.
pub(crate) static BILLING: Router = Router::new("billing");

/// A sync shared task: its handle blocks, so it can be called outside any async runtime.
#[qtasks::shared_task]
pub(crate) fn add_sync(a: i64, b: i64) -> i64 {
    a + b
}

/// A sync shared task with `awaiting`: its handle is async.
#[qtasks::shared_task(awaiting, priority = 2)]
pub(crate) fn add_awaiting(a: i64, b: i64) -> i64 {
    a + b
}

/// An async shared task with some keys.
#[qtasks::shared_task(name = "lib.greet", retry = 1, tags = ["lib"])]
pub(crate) async fn greet(name: String) -> String {
    format!("hello {name}")
}

/// A router task: only in apps that include `BILLING`.
#[qtasks::task(router = BILLING)]
pub(crate) async fn charge(cents: u64) -> u64 {
    cents + 1
}
