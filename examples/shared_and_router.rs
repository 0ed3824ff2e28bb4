//! `#[shared_task]` in a library-style module, and a router included by one app only.
//! `cargo run --example shared_and_router`

use std::time::Duration;

use qtasks::prelude::*;

/// What a library crate would hold: shared tasks and a router, no app.
mod billing {
    use qtasks::Router;

    /// Include it with `App::builder().include_router(&billing::ROUTER)`.
    pub(crate) static ROUTER: Router = Router::new("billing");

    /// A sync shared task: its handle blocks, usable outside any async runtime.
    #[qtasks::shared_task]
    pub(crate) fn vat(cents: u64) -> u64 {
        cents * 20 / 100
    }

    /// With `awaiting`, the handle is async.
    #[qtasks::shared_task(awaiting)]
    pub(crate) fn total(cents: u64) -> u64 {
        cents + cents * 20 / 100
    }

    /// Only in apps that include `ROUTER`.
    #[qtasks::task(router = ROUTER)]
    pub(crate) async fn charge(cents: u64) -> String {
        format!("charged {cents} cents")
    }
}

fn main() -> qtasks::Result<()> {
    // Show the logs (tasks' `ctx.get_logger(..)` lines, the worker's own): RUST_LOG, default info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let rt = tokio::runtime::Runtime::new().map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    let _guard = rt.enter();
    let shop = App::builder()
        .name("shop")
        .include_router(&billing::ROUTER)
        .make_default()
        .build()?;
    let other = App::builder().name("other").build()?;
    println!(
        "shop serves: {:?}",
        shop.tasks().iter().map(|t| t.name).collect::<Vec<_>>()
    );
    println!(
        "other serves: {:?}",
        other.tasks().iter().map(|t| t.name).collect::<Vec<_>>()
    );
    let worker = shop.spawn_worker();
    drop(_guard);

    // Plain sync code, outside the runtime: the shared task's handle blocks.
    let task = billing::vat.add_task(1000)?;
    let done = task.wait_blocking(Duration::from_secs(5))?;
    println!("vat(1000) on the default app: {:?}", done.returning);

    rt.block_on(async {
        let done = billing::total
            .add_task(1000)
            .await?
            .wait(Duration::from_secs(5))
            .await?;
        println!("total(1000): {:?}", done.returning);
        let done = billing::charge
            .add_task(1200)
            .await?
            .wait(Duration::from_secs(5))
            .await?;
        println!("charge(1200): {:?}", done.returning);
        let refused = billing::charge.call(1).on(&other).add_task().await;
        println!(
            "charge on an app without the router: {}",
            refused.unwrap_err()
        );
        worker.shutdown().await
    })
}
