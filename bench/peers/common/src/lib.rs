//! What the peer benches share: the flags (`--tasks N --concurrency C --redis-url URL`), the
//! run table (one counter per task index, as qtasks' `examples/bench.rs` keeps), and the JSON
//! line they print.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;

/// The flags every peer bench takes.
#[derive(Debug, Clone)]
pub struct Args {
    /// Tasks to run end to end.
    pub tasks: u32,
    /// Worker concurrency (and producer concurrency where the producer has no bulk call).
    pub concurrency: usize,
    /// The Redis to use.
    pub redis_url: String,
}

impl Args {
    /// Reads `--tasks N --concurrency C --redis-url URL` (defaults 20000, 256,
    /// redis://127.0.0.1:6379/0); exits with a message on anything else.
    pub fn parse() -> Args {
        let mut args = Args {
            tasks: 20_000,
            concurrency: 256,
            redis_url: "redis://127.0.0.1:6379/0".into(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            match flag.as_str() {
                "--tasks" => args.tasks = value.parse().unwrap_or_else(|_| usage("bad --tasks")),
                "--concurrency" => {
                    args.concurrency = value.parse().unwrap_or_else(|_| usage("bad --concurrency"))
                }
                "--redis-url" => args.redis_url = value,
                _ => usage(&format!("unknown flag {flag}")),
            }
        }
        if args.tasks == 0 || args.concurrency == 0 {
            usage("--tasks and --concurrency must be at least 1");
        }
        args
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: BENCH --tasks N --concurrency C --redis-url URL");
    std::process::exit(2)
}

/// One counter per task index: how many times it ran (saturating), and how many runs in all.
#[derive(Debug)]
pub struct Table {
    runs: Vec<AtomicU8>,
    total: AtomicU64,
    all_ran: Notify,
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// The process's table, for `n` tasks (the first call fixes `n`).
pub fn table(n: u32) -> &'static Table {
    TABLE.get_or_init(|| Table {
        runs: (0..n).map(|_| AtomicU8::new(0)).collect(),
        total: AtomicU64::new(0),
        all_ran: Notify::new(),
    })
}

/// The table made by [`table`]; for the task bodies.
pub fn the_table() -> &'static Table {
    TABLE.get().expect("the table is made before any task runs")
}

impl Table {
    /// The no-op task's body: marks index `i` as run.
    pub fn mark(&self, i: u32) {
        if let Some(slot) = self.runs.get(i as usize) {
            let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(1))
            });
        }
        if self.total.fetch_add(1, Ordering::AcqRel) + 1 >= self.runs.len() as u64 {
            self.all_ran.notify_one();
        }
    }

    /// Runs so far (duplicates included).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Waits until there have been at least as many runs as tasks; false on timeout.
    pub async fn wait_all_ran(&self, limit: Duration) -> bool {
        let n = self.runs.len() as u64;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.all_ran.notified();
            if self.total() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.total() >= n;
            }
        }
    }

    /// (missing, duplicated): how many indices never ran, and how many ran more than once.
    pub fn check(&self) -> (u64, u64) {
        let mut missing = 0;
        let mut dup = 0;
        for slot in &self.runs {
            match slot.load(Ordering::Relaxed) {
                0 => missing += 1,
                1 => {}
                _ => dup += 1,
            }
        }
        (missing, dup)
    }
}

/// Prints the one JSON line of a finished run (and says on stderr what the check found).
pub fn report(queue: &str, args: &Args, elapsed: Duration, note: &str) {
    let (missing, dup) = the_table().check();
    if missing + dup > 0 {
        eprintln!("{queue}: FAILED: {missing} missing, {dup} duplicated");
    }
    let mut obj = serde_json::json!({
        "queue": queue,
        "scenario": "end_to_end",
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "elapsed_s": elapsed.as_secs_f64(),
        "tasks_per_s": (args.tasks as f64 / elapsed.as_secs_f64().max(1e-9)).round(),
        "exactly_once": missing == 0 && dup == 0,
    });
    if !note.is_empty() {
        obj["note"] = note.into();
    }
    println!("{obj}");
}

/// Prints the JSON line of a run that could not finish, and exits non-zero.
pub fn fail(queue: &str, args: &Args, error: &str) -> ! {
    let ran = TABLE.get().map(|t| t.total()).unwrap_or(0);
    let obj = serde_json::json!({
        "queue": queue,
        "scenario": "end_to_end",
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "tasks_per_s": null,
        "exactly_once": null,
        "error": format!("{error} ({ran} of {} ran)", args.tasks),
    });
    println!("{obj}");
    std::process::exit(1)
}
