//! The command line in one call: `cargo run --example cli -- --help`.
//!
//! Try `cargo run --example cli -- inspect`, `... -- add add '[2, 3]' --wait 5` (with the
//! in-process backend, `add --wait` runs no worker, so it times out: point `--broker-url` at
//! Redis and start `... -- run` in another terminal), `... -- stats --json`.

use qtasks::timer::{Schedule, Timer};

/// Adds two numbers.
#[qtasks::task(description = "Adds two numbers", tags = ["math"])]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Sends a daily report (a timer enqueues it).
#[qtasks::task(priority = 2, retry = 3)]
fn report(kind: String) -> String {
    format!("{kind} report sent")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Once a day, on whole UTC days (a timer that `run` starts with the worker).
    let daily = Schedule::every(std::time::Duration::from_secs(24 * 3600));
    let builder = qtasks::App::builder().name("cli-example").timer(Timer::new(
        "daily-report",
        daily,
        report.call("daily".into()),
    ));
    qtasks::cli::main(builder).await
}
