//! The dashboard in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`). Opens the overview, enqueues a task from the page and
//! sees it reach `success` without a reload, opens its detail, makes a task fail into the
//! dead letter and retries it from the page, and checks that a result holding HTML is shown as
//! text (its script never runs). Takes a screenshot of each page (into `docs/web/` with
//! `QTASKS_UPDATE_SCREENSHOTS=1`, else into the temp dir).
//!
//! Skipped with a message when chromedriver is missing, failed when `QTASKS_REQUIRE_BROWSER=1`
//! (CI). Every wait is on a condition in the page, with a deadline.
#![cfg(feature = "web")]

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use qtasks::prelude::*;
use qtasks::timer::{Schedule, Timer};
use qtasks::web::Dashboard;
use qtasks::Uuid;
use serde_json::json;

use common::DEADLINE;

#[qtasks::task(name = "ui.add")]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Fails the first time it runs for a key, succeeds after.
#[qtasks::task(name = "ui.flaky")]
async fn flaky(key: String) -> Result<String, std::io::Error> {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = SEEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(key.clone());
    if first {
        return Err(std::io::Error::other(format!("{key}: the first run fails")));
    }
    Ok(format!("{key} done"))
}

/// Always fails.
#[qtasks::task(name = "ui.boom")]
async fn boom(why: String) -> Result<(), std::io::Error> {
    Err(std::io::Error::other(why))
}

/// A result holding markup: the page must show it as text.
#[qtasks::task(name = "ui.html")]
async fn html() -> String {
    r#"<script>window.__pwned = 1</script><b id="injected">bold</b>"#.to_string()
}

const TOKEN: &str = "browser-token";

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chromedriver binary, when this machine has one.
fn chromedriver() -> Option<PathBuf> {
    let named = std::env::var_os("QTASKS_CHROMEDRIVER").map(PathBuf::from);
    let candidates = named
        .into_iter()
        .chain(["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts chromedriver on a free loopback port and waits until it accepts connections.
async fn start_driver(binary: &PathBuf) -> Driver {
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let driver = Driver { child, port };
    let until = tokio::time::Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < until,
            "chromedriver did not listen on {port} in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
    });
    if std::path::Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session through chromedriver")
}

/// Waits (with the deadline) for an element matching `css`.
async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(DEADLINE)
        .every(Duration::from_millis(50))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css:?} within {DEADLINE:?}: {e}"))
}

fn screenshot_dir() -> PathBuf {
    if std::env::var("QTASKS_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/web")
    } else {
        std::env::temp_dir().join("qtasks-web-screenshots")
    }
}

async fn screenshot(client: &Client, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Enqueues from the overview's form; returns the new task's uuid.
async fn enqueue_from_page(client: &Client, task: &str, args: &str) -> Uuid {
    wait_for(client, "#enqueue-task option[value]").await;
    client
        .find(Locator::Css("#enqueue-task"))
        .await
        .unwrap()
        .select_by_value(task)
        .await
        .unwrap();
    let area = client.find(Locator::Css("#enqueue-args")).await.unwrap();
    area.clear().await.unwrap();
    area.send_keys(args).await.unwrap();
    let before = client
        .find(Locator::Css("#enqueue-result"))
        .await
        .unwrap()
        .attr("data-uuid")
        .await
        .unwrap();
    client
        .find(Locator::Css("#enqueue-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The result box names the new task once the API answered.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = wait_for(client, "#enqueue-result[data-uuid]")
            .await
            .attr("data-uuid")
            .await
            .unwrap();
        if let Some(uuid) = now.filter(|u| Some(u) != before.as_ref()) {
            return Uuid::try_parse(&uuid).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the page did not show the enqueued task"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follows a link of the navigation bar (the page changes without a reload).
async fn go(client: &Client, page: &str) {
    client
        .find(Locator::Css(&format!("nav a[data-page={page}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let Some(binary) = chromedriver() else {
        if std::env::var("QTASKS_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("QTASKS_REQUIRE_BROWSER=1 but chromedriver is missing: apt-get install chromium chromium-driver (or set QTASKS_CHROMEDRIVER)");
        }
        eprintln!("skipping the browser test: no chromedriver (apt-get install chromium chromium-driver, or set QTASKS_CHROMEDRIVER)");
        return;
    };
    let app = common::builder("web-browser")
        .timer(Timer::new(
            "nightly-sum",
            Schedule::cron("0 0 3 * * *").unwrap(),
            add.call(1, 2),
        ))
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(Dashboard::new(app.clone()).token(TOKEN).serve_on(listener));
    // Some history for the pages.
    for i in 0..12 {
        let t = app.add_task("ui.add", json!([i, i])).await.unwrap();
        app.wait(t.uuid, DEADLINE).await.unwrap();
    }
    let failed = app
        .add_task("ui.boom", json!({"why": "the disk is full"}))
        .await
        .unwrap();
    app.wait(failed.uuid, DEADLINE).await.unwrap();

    let driver = start_driver(&binary).await;
    let client = browser(&driver).await;
    let base = format!("http://{addr}");
    client
        .goto(&format!("{base}/#token={TOKEN}"))
        .await
        .unwrap();
    // The live figures arrive through the server-sent events.
    wait_for(&client, "#counts .card[data-count=success]").await;

    // Enqueue from the page; it reaches success with no reload.
    let added = enqueue_from_page(&client, "ui.add", r#"{"a": 2, "b": 40}"#).await;
    wait_for(
        &client,
        &format!("#enqueue-result[data-uuid='{added}'][data-status=success]"),
    )
    .await;
    assert_eq!(
        app.get(added).await.unwrap().unwrap().status,
        TaskStatus::Success
    );
    wait_for(&client, "#chart svg rect").await;
    // The latency chart beside it: the runs above drew its lines.
    wait_for(
        &client,
        "#latency-chart svg polyline[data-series='execution-p50_ms']",
    )
    .await;
    wait_for(
        &client,
        "#latency-chart svg polyline[data-series='queue-p95_ms']",
    )
    .await;
    screenshot(&client, "overview").await;

    // Its detail.
    client
        .find(Locator::Css("#enqueue-result a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "#task-status [data-status=success]").await;
    let result = wait_for(&client, "#task-result")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(result.trim(), "42");

    // A failure into the dead letter, retried from the page.
    go(&client, "overview").await;
    let flaky_uuid = enqueue_from_page(&client, "ui.flaky", r#"{"key": "k1"}"#).await;
    wait_for(
        &client,
        &format!("#enqueue-result[data-uuid='{flaky_uuid}'][data-status=error]"),
    )
    .await;
    go(&client, "dead").await;
    let row = format!("#dead-table tr[data-uuid='{flaky_uuid}']");
    wait_for(&client, &row).await;
    screenshot(&client, "dead").await;
    client
        .find(Locator::Css(&format!(
            "button[data-action=retry][data-uuid='{flaky_uuid}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = app.wait(flaky_uuid, DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{done:?}");
    assert_eq!(done.attempts, 2);
    // The row leaves the dead letter without a reload (the live update refetches).
    let until = tokio::time::Instant::now() + DEADLINE;
    while !client
        .find_all(Locator::Css(&row))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < until,
            "the retried task stayed on the dead-letter page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Its detail shows both attempts, with the worker that ran each and how each ended.
    client
        .goto(&format!("{base}/tasks/{flaky_uuid}"))
        .await
        .unwrap();
    wait_for(&client, "#task-status [data-status=success]").await;
    assert_eq!(done.history.len(), 2, "{done:?}");
    wait_for(&client, "#task-attempts tr[data-attempt='2']").await;
    // Read in one script: the live updates redraw the page under the driver's feet.
    let rows = client
        .execute(
            "return [...document.querySelectorAll('#task-attempts tbody tr')].map((r) => \
             [Number(r.dataset.attempt), r.querySelector('td.worker').textContent, \
             r.querySelector('[data-status]').dataset.status]);",
            vec![],
        )
        .await
        .unwrap();
    let expected: Vec<_> = done
        .history
        .iter()
        .map(|a| json!([a.attempt, a.worker, a.status.as_str()]))
        .collect();
    assert_eq!(rows, json!(expected));
    assert_eq!(done.history[0].status, TaskStatus::Error);
    let timeline = client
        .execute(
            "return document.getElementById('task-timeline').textContent;",
            vec![],
        )
        .await
        .unwrap();
    let timeline = timeline.as_str().unwrap_or_default();
    assert!(
        timeline.contains(&format!("attempt 2 started on {}", done.history[1].worker)),
        "{timeline}"
    );
    client
        .execute(
            "document.getElementById('task-timeline').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&client, "attempts").await;

    // A result holding HTML is text.
    go(&client, "overview").await;
    let html_uuid = enqueue_from_page(&client, "ui.html", "{}").await;
    wait_for(
        &client,
        &format!("#enqueue-result[data-uuid='{html_uuid}'][data-status=success]"),
    )
    .await;
    client
        .find(Locator::Css("#enqueue-result a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = wait_for(&client, "#task-result")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        shown.contains("<script>window.__pwned = 1</script>"),
        "shown as text: {shown}"
    );
    let ran = client
        .execute(
            "return [typeof window.__pwned, document.querySelectorAll('#injected').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        ran,
        json!(["undefined", 0]),
        "the result's markup never became elements"
    );
    screenshot(&client, "task").await;

    // The other pages.
    go(&client, "tasks").await;
    wait_for(&client, "#tasks-table tr[data-status=success]").await;
    screenshot(&client, "tasks").await;
    go(&client, "schedules").await;
    let timer = wait_for(&client, "#schedules td")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(timer, "nightly-sum");
    screenshot(&client, "schedules").await;
    go(&client, "workers").await;
    wait_for(&client, "#workers li.mono").await;
    screenshot(&client, "workers").await;

    client.close().await.unwrap();
    drop(driver);
    server.abort();
    worker.shutdown().await.unwrap();
}
