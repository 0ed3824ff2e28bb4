//! Timers: an interval and a cron expression enqueue tasks from inside the app.
//! `cargo run --example timers` (runs for about three seconds)

use std::time::Duration;

use qtasks::prelude::*;
use qtasks::timer::{Schedule, Timer};

#[qtasks::task]
async fn heartbeat(at_ms: u64) -> u64 {
    println!("  heartbeat for tick {at_ms}");
    at_ms
}

#[qtasks::task]
async fn report(kind: String) -> String {
    println!("  {kind} report");
    kind
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let app = App::builder()
        .name("timers")
        // Every 500 ms, on multiples of 500 ms since the epoch; the task gets the tick's time.
        .timer(Timer::with(
            "heartbeat",
            Schedule::every(Duration::from_millis(500)),
            |tick| heartbeat.call(tick.unix_millis()),
        ))
        // At every whole second (cron with seconds, UTC).
        .timer(Timer::new(
            "report",
            Schedule::cron("* * * * * *")?,
            report.call("per-second".into()),
        ))
        .build()?;
    println!("running the app (worker and timers) for three seconds");
    app.run_until(tokio::time::sleep(Duration::from_secs(3)))
        .await?;
    println!("stopped");
    Ok(())
}
