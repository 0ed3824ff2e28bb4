//! The testing kit: run tasks inline (no worker, no Redis) and see what they enqueue.
//! `cargo run --example testkit` (the same calls work in `#[test]` and `#[tokio::test]`).

use qtasks::prelude::*;
use qtasks::testing::TestKit;

#[qtasks::task]
async fn send_email(to: String) -> String {
    format!("sent to {to}")
}

#[qtasks::task(echo)]
async fn signup(task: AsyncTask, user: String) -> Result<String, TaskError> {
    task.add_task(send_email.call(format!("{user}@example.org")))
        .await?;
    Ok(format!("welcome {user}"))
}

fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let kit = TestKit::new(App::builder().name("testkit"))?;
    let done = kit.run_blocking(signup.call("ada".into()))?;
    println!("signup -> [{}] {:?}", done.status, done.returning);
    for e in kit.enqueued() {
        println!("it enqueued {} with {}", e.task_name, e.args_json());
    }
    Ok(())
}
