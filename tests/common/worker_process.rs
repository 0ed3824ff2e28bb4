//! The test binary itself, re-executed as a worker process (for the tests that kill, freeze or
//! crash workers): its `worker_process_entry_point` test runs a worker when the environment
//! variable the caller names holds `url\napp`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::DEADLINE;

/// The body of a binary's `worker_process_entry_point` test: when `env` holds `url\napp`, runs a
/// worker of that app (its builder passed through `configure`) until the process is killed;
/// otherwise returns at once.
pub(crate) fn run_worker_if_asked(
    env: &str,
    configure: impl FnOnce(qtasks::AppBuilder) -> qtasks::AppBuilder,
) {
    let Ok(spec) = std::env::var(env) else {
        return;
    };
    let (url, app_name) = spec.split_once('\n').expect("url\\napp");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let app = configure(super::builder(app_name).broker_url(url))
            .build()
            .unwrap();
        println!("worker ready");
        app.run_forever().await.unwrap();
    });
}

/// This test binary running a worker in another process, its output readable line by line.
pub(crate) struct WorkerProcess {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl WorkerProcess {
    /// Starts the worker of app `app` on `url` (`env` is the variable the binary's
    /// `worker_process_entry_point` reads) and waits until it says it is ready.
    pub(crate) fn start(env: &str, url: &str, app: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "worker_process_entry_point", "--nocapture"])
            .env(env, format!("{url}\n{app}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let process = WorkerProcess { child, lines };
        process.wait_for_line("worker ready");
        process
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Blocks until the process prints a line containing `needle`.
    pub(crate) fn wait_for_line(&self, needle: &str) -> String {
        self.wait_for_any(&[needle])
    }

    /// Blocks until the process prints a line containing one of `needles`.
    pub(crate) fn wait_for_any(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if needles.iter().any(|n| line.contains(n)) => return line,
                Ok(_) => continue,
                Err(e) => panic!("worker process never printed one of {needles:?}: {e}"),
            }
        }
    }

    /// Counts the lines containing `needle` the process prints, until there are `want` of them
    /// or `within` has passed.
    pub(crate) fn count_lines(
        &self,
        needle: &str,
        want: usize,
        within: std::time::Duration,
    ) -> usize {
        let deadline = Instant::now() + within;
        let mut seen = 0;
        while seen < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => seen += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        seen
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A raw connection to the Redis at `url` for a test's own bookkeeping keys, without a
/// response timeout (the tests block on lists, BLPOP, for up to the deadline).
#[cfg(feature = "redis")]
pub(crate) async fn raw_redis(url: &str) -> qtasks::redis::redis::aio::MultiplexedConnection {
    use qtasks::redis::redis;
    let (_, url) = qtasks::redis::RedisOptions::from_url(url).unwrap();
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Sends `signal` to process `pid`.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid} failed");
}
