//! Plugins: code at typed trigger points that can replace arguments, results and records.
//! `cargo run --example plugins`

use std::time::Duration;

use futures::future::BoxFuture;
use qtasks::plugin::{self, ComponentKind, Plugin, Trigger};
use qtasks::prelude::*;
use qtasks::{BoxError, Payload};

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task]
async fn lookup(ctx: TaskContext, key: String) -> Result<String, TaskError> {
    // Hand the problem to the plugins: one of them may answer instead.
    Err(ctx.plugin_error(serde_json::json!({ "missing": key })))
}

/// An async plugin written against the trait: logs every worker trigger.
struct Audit;

impl Plugin for Audit {
    fn name(&self) -> &str {
        "audit"
    }
    fn trigger<'a>(&'a self, trigger: &'a mut Trigger<'_>) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if let Trigger::WorkerExecuteAfter { delivery, outcome } = trigger {
                println!(
                    "audit: {} ({}) -> {:?}",
                    delivery.task_name, delivery.uuid, outcome
                );
            }
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Plugin failures are reported through `tracing`: show errors (RUST_LOG for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .try_init();
    // A closure plugin on every component: doubles integer results, answers plugin errors.
    let doubler = plugin::from_fn("doubler", |t: &mut Trigger<'_>| {
        match t {
            Trigger::ResultReplace { result, .. } => {
                if let Ok(n) = result.decode::<i64>() {
                    **result = Payload::encode(&(n * 2))?;
                }
            }
            Trigger::PluginError { data, result, .. } => {
                let data: serde_json::Value = data.decode()?;
                **result = Some(Payload::encode(&format!(
                    "default for {}",
                    data["missing"]
                ))?);
            }
            _ => {}
        }
        Ok(())
    });
    // A plugin that fails: reported with its name, the task goes on.
    let broken = plugin::from_fn("broken", |t: &mut Trigger<'_>| match t {
        Trigger::ExecuteBefore { .. } => Err("this plugin is broken".into()),
        _ => Ok(()),
    });
    let app = App::builder()
        .name("plugins")
        .plugin(doubler)
        .plugin(broken)
        .plugin_on(ComponentKind::Worker, Audit)
        .build()?;
    let worker = app.spawn_worker();
    let wait = Duration::from_secs(5);
    let sum = add.call(2, 3).on(&app).timeout(wait).add_task().await?;
    println!("add(2, 3) with the doubler -> {:?}", sum.returning);
    let answer = lookup
        .call("colour".into())
        .on(&app)
        .timeout(wait)
        .add_task()
        .await?;
    println!("lookup(\"colour\") -> {:?}", answer.returning);
    worker.shutdown().await
}
