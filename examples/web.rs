//! The web dashboard over a live workload: `cargo run --features web --example web`, then open
//! the link it prints (loopback only; the link carries the token that changes need).
//!
//! A producer enqueues a mix of tasks (some fail into the dead letter, some return HTML, which
//! the pages show as text), a worker runs them and a timer fires every 30 s. Options:
//! `--listen ADDR` (default 127.0.0.1:8080), `--for-secs N` to stop on its own after N seconds
//! (also `QTASKS_EXAMPLE_SECS=N`), `--broker-url redis://..` to run it on Redis.

use std::time::Duration;

use qtasks::timer::{Schedule, Timer};
use qtasks::web::Dashboard;

/// Pretends to resize an image: takes a few milliseconds.
#[qtasks::task(name = "images.resize")]
async fn resize(width: u32, height: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(u64::from(width % 50) + 5)).await;
    width * height
}

/// Fails for order numbers divisible by 7.
#[qtasks::task(name = "orders.charge")]
async fn charge(order: u64) -> Result<u64, std::io::Error> {
    if order % 7 == 0 {
        return Err(std::io::Error::other(format!(
            "card declined for order {order}"
        )));
    }
    Ok(order)
}

/// Returns markup: the dashboard shows it as text.
#[qtasks::task(name = "pages.render")]
async fn render(title: String) -> String {
    format!("<h1>{title}</h1><script>alert('never runs')</script>")
}

/// Sends a digest (a timer enqueues it).
#[qtasks::task(name = "mail.digest")]
async fn digest(kind: String) -> String {
    format!("{kind} digest sent")
}

/// `--name value` from the arguments.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: std::net::SocketAddr = listen.parse().map_err(|e| qtasks::Error::Config {
        key: "--listen".into(),
        value: listen.clone(),
        expected: format!("an address such as 127.0.0.1:8080 ({e})"),
    })?;
    let stop_after = arg("--for-secs")
        .or_else(|| std::env::var("QTASKS_EXAMPLE_SECS").ok())
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut builder = qtasks::App::builder().name("web-example").timer(Timer::new(
        "digest",
        Schedule::every(Duration::from_secs(30)),
        digest.call("half-minute".into()),
    ));
    if let Some(url) = arg("--broker-url") {
        builder = builder.broker_url(url);
    }
    let app = builder.build()?;
    let worker = app.spawn_worker();
    let timers = app.spawn_timers();

    // The workload: a few tasks a second.
    let producer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(150));
            for n in 0u64.. {
                tick.tick().await;
                let sent = match n % 5 {
                    0..=2 => resize
                        .call(640 + (n % 97) as u32, 480)
                        .on(&app)
                        .add_task()
                        .await
                        .map(|_| ()),
                    3 => charge.call(n).on(&app).add_task().await.map(|_| ()),
                    _ => render
                        .call(format!("page {n}"))
                        .on(&app)
                        .add_task()
                        .await
                        .map(|_| ()),
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "the producer could not enqueue");
                }
            }
        })
    };

    let dashboard = Dashboard::new(app.clone());
    let link = match dashboard.token_value() {
        Some(token) => format!("http://{listen}/#token={token}"),
        None => format!("http://{listen}/"),
    };
    println!("dashboard of app {:?} at {link}", app.name());
    let stop = async {
        match stop_after {
            Some(after) => tokio::time::sleep(after).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        served = dashboard.serve(listen) => served?,
        _ = stop => {}
    }
    producer.abort();
    timers.shutdown().await;
    worker.shutdown().await?;
    println!("stopped");
    Ok(())
}
