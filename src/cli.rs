//! A command line for the user's own binary (feature `cli`): in one call, `main` gets the
//! subcommands `run`, `add`, `get`, `inspect`, `stats` and `migrate`.
//!
//! ```no_run
//! #[qtasks::task]
//! async fn add(a: i64, b: i64) -> i64 { a + b }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     qtasks::cli::main(qtasks::App::builder().name("shop")).await
//! }
//! ```
//!
//! ```text
//! shop run --concurrency 8            # a worker and the timers until Ctrl-C or SIGTERM (graceful)
//! shop add add '{"a": 2, "b": 3}'     # enqueue by name with JSON arguments (map or list)
//! shop add add '[2, 3]' --wait 5      # ... and wait up to 5 s for the result
//! shop get 0b5f0c1e-...               # a task's record
//! shop inspect                        # the app, its tasks and their options, plugins, timers
//! shop stats                          # queue depth per priority, counts per status, live workers
//! shop --json stats                   # any command's output as JSON, for programs
//! shop migrate                        # the backend's schema migrations (PostgreSQL), then exit
//! shop web --listen 127.0.0.1:8080    # the dashboard and JSON API (feature `web`; --token, --read-only)
//! shop grpc --listen 127.0.0.1:50051  # the gRPC API (feature `grpc`; --token)
//! RUST_LOG=debug shop run             # log lines on stderr: the tasks' and the worker's
//! shop --log-format json run          # ... as JSON, one object per line
//! ```
//!
//! [`main`] installs a `tracing` subscriber writing to stderr, unless the program has set a
//! global one already: its level comes from `RUST_LOG` (default `info`), its format from
//! `--log-format text|json`. That is where `ctx.get_logger(..)` lines and the worker's own
//! lines appear.
//!
//! Every command exits with a documented code ([`Exit`], listed in `--help`): `add --wait`
//! exits 3 when the task ended `error`, 4 when it ended `cancel`, 5 when it did not finish in
//! time; 2 is bad input, 6 an unreachable backend.
//!
//! The command line takes an [`AppBuilder`] rather than an app, so that `run --concurrency`
//! and `--broker-url` apply before the app is built. Runtime figures (`stats`, `get`) come
//! from the backend: with the in-process memory backend they describe this process only;
//! point `--broker-url` at Redis to see the whole deployment.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use qtasks_core::backend::inspect::PauseTarget;
use qtasks_core::control::QueueSelection;
use qtasks_core::{App, AppBuilder, Error, Result, Task, TaskStatus};
use serde_json::{json, Value};
use uuid::Uuid;

/// The exit codes, as `--help` lists them (one line per [`Exit`]).
const EXIT_CODES: &str = "Exit codes:
  0  success (`add --wait`: the task ended `success`)
  1  any other failure (the app cannot be built, the output cannot be written)
  2  bad input: a usage error, arguments that are not JSON or do not fit the task, an unknown task or uuid, an invalid setting
  3  `add --wait`: the task ended `error`
  4  `add --wait`: the task ended `cancel`
  5  `add --wait`: the task did not finish in time
  6  the backend is unreachable or failed";

/// How a command ended: the process's exit code (`--help` and `docs/cli.md` list them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what it was asked (`add --wait`: the task ended `success`).
    Success,
    /// 1: any other failure (the app cannot be built, the output cannot be written).
    Failure,
    /// 2: bad input: a usage error, arguments that are not JSON or do not fit the task, an
    /// unknown task name or uuid, an invalid setting. clap's usage errors exit 2 as well.
    BadInput,
    /// 3: `add --wait`: the task ended with status `error`.
    TaskFailed,
    /// 4: `add --wait`: the task ended with status `cancel`.
    TaskCancelled,
    /// 5: `add --wait`: the task did not reach a final status in time.
    TimedOut,
    /// 6: the backend (broker, storage, global config) could not be reached or failed.
    BackendUnreachable,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::BadInput => 2,
            Exit::TaskFailed => 3,
            Exit::TaskCancelled => 4,
            Exit::TimedOut => 5,
            Exit::BackendUnreachable => 6,
        }
    }

    /// The exit of a command that failed with `err`.
    pub fn of_error(err: &Error) -> Exit {
        match err {
            Error::Config { .. }
            | Error::UnknownTask { .. }
            | Error::Encode { .. }
            | Error::BadArguments { .. }
            | Error::NotFound(_) => Exit::BadInput,
            Error::Timeout { .. } => Exit::TimedOut,
            Error::Backend { .. } => Exit::BackendUnreachable,
            Error::ChainStep { status, .. } => Exit::of_status(*status),
            _ => Exit::Failure,
        }
    }

    /// The exit of `add --wait` for the task's final status.
    pub fn of_status(status: TaskStatus) -> Exit {
        match status {
            TaskStatus::Error => Exit::TaskFailed,
            TaskStatus::Cancel => Exit::TaskCancelled,
            _ => Exit::Success,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// The command line of a qtasks app.
#[derive(Debug, Parser)]
#[command(about = "Run and operate a qtasks app", long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// The backend to use (`memory://`, `redis://host:port/db`); overrides QTASKS_BROKER_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub broker_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The format of the log lines on stderr; their level comes from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of the log lines [`main`] writes to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event: time, level, target, message and fields.
    #[default]
    Text,
    /// One JSON object per event (`{"timestamp":..,"level":"INFO","fields":{"message":..}}`).
    Json,
}

/// Installs a global `tracing` subscriber that writes to stderr in `format`, with the levels
/// of `RUST_LOG` (default `info`; an invalid `RUST_LOG` is reported and `info` used). Returns
/// whether it was installed: `false` when the program has set a global subscriber already,
/// which is then kept. [`main`] calls it; call it yourself when you run commands with
/// [`run_from`].
pub fn install_logging(format: LogFormat) -> bool {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={spec:?} is not a valid log filter ({e}); logging at level info, as without RUST_LOG");
            EnvFilter::new("info")
        }),
        _ => EnvFilter::new("info"),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => fmt.try_init(),
        LogFormat::Json => fmt.json().try_init(),
    };
    installed.is_ok()
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a worker and the app's timers until Ctrl-C or SIGTERM, then stop gracefully.
    Run {
        /// Tasks run at the same time (the app's `max_tasks_process`).
        #[arg(long, short = 'c', value_name = "N")]
        concurrency: Option<usize>,
        /// Serve the Prometheus metrics at `http://ADDR/metrics` while running (needs the
        /// `metrics` feature); `127.0.0.1:9464` is the usual address.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// The queues to claim from: `mail=3,default=1` (by weight) or `mail,default` (strict
        /// order). Default: `default` and every queue the app's tasks declare.
        #[arg(long, value_name = "QUEUES")]
        queues: Option<String>,
    },
    /// Pause claims (enqueues go on, running tasks finish) of a task name, a queue, or the
    /// whole app, for every process of the app until `resume`; kept in the backend.
    Pause {
        /// Only tasks of this name.
        #[arg(long, conflicts_with = "queue")]
        task: Option<String>,
        /// Only tasks of this queue (`default` for the tasks that name none).
        #[arg(long)]
        queue: Option<String>,
    },
    /// Resume what `pause` paused.
    Resume {
        /// The task name given to `pause`.
        #[arg(long, conflicts_with = "queue")]
        task: Option<String>,
        /// The queue given to `pause`.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Enqueue a task by name with JSON arguments.
    Add {
        /// The task's registered name.
        task: String,
        /// The arguments as JSON: a map of parameter names (`{"a": 2}`) or a list (`[2, 3]`).
        #[arg(default_value = "{}")]
        args: String,
        /// Wait up to this many seconds for the task's end and print its result.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<f64>,
    },
    /// Print a task's record.
    Get {
        /// The task's uuid.
        uuid: Uuid,
    },
    /// Describe the app: settings, tasks and their options, plugins, timers.
    Inspect,
    /// Runtime figures: queue depth per priority, counts per status, live workers.
    Stats,
    /// Bring the backend's schema up to date (PostgreSQL: the versioned migrations) and exit,
    /// without starting a worker: for a deployment step before the new version's workers
    /// start. Backends without a schema (memory, Redis) have nothing to do.
    Migrate,
    /// Serve the web dashboard and its JSON API until Ctrl-C (feature `web`): changes need the
    /// token (`--token`, else `QTASKS_WEB_TOKEN`, else a random one printed at start).
    #[cfg(feature = "web")]
    Web {
        /// The address to listen on; loopback unless told otherwise.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The token changing requests need (`Authorization: Bearer <token>`).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Show tasks but refuse every change.
        #[arg(long)]
        read_only: bool,
    },
    /// Serve the gRPC API (`qtasks.v1.QTasksService`) until Ctrl-C (feature `grpc`): AddTask and
    /// Cancel need the token (`--token`, else `QTASKS_GRPC_TOKEN`, else a random one printed at
    /// start).
    #[cfg(feature = "grpc")]
    Grpc {
        /// The address to listen on; loopback unless told otherwise.
        #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The token changing calls need (`authorization: Bearer <token>` metadata).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
    },
}

/// Parses the process's arguments and runs the command, printing to stdout; returns the exit
/// code for `main` ([`Exit`]; on failure after printing the error to stderr). Prints help or
/// a usage error and exits the process when the arguments ask for it.
pub async fn main(builder: AppBuilder) -> std::process::ExitCode {
    main_from(builder, std::env::args_os()).await.into()
}

/// [`main`] with the arguments given (the first one is the program name) instead of the
/// process's: installs the logging ([`install_logging`]), prints to stdout and stderr, returns
/// how the command ended.
pub async fn main_from<I, T>(builder: AppBuilder, args: I) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = parse(args).unwrap_or_else(|e| e.exit());
    install_logging(cli.log_format);
    let mut out = std::io::stdout();
    match execute(builder, cli, &mut out).await {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::of_error(&e)
        }
    }
}

/// Parses `args` (the first one is the program name) and runs the command, writing its output
/// to `out` (tests, embedding); returns how it ended (`add --wait` of a task that failed is
/// `Ok(Exit::TaskFailed)`, its record written to `out`). A usage error is [`Error::Config`]
/// with clap's message; [`Exit::of_error`] gives an error's exit code.
pub async fn run_from<I, T>(
    builder: AppBuilder,
    args: I,
    out: &mut (dyn Write + Send),
) -> Result<Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = parse(args).map_err(|e| Error::Config {
        key: "command line".into(),
        value: String::new(),
        expected: e.to_string(),
    })?;
    execute(builder, cli, out).await
}

/// Parses arguments, naming the program after the running binary.
fn parse<I, T>(args: I) -> std::result::Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "qtasks".to_string());
    let matches = Cli::command().bin_name(name).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// Runs a parsed command; returns how it ended (see [`run_from`]).
pub async fn execute(
    mut builder: AppBuilder,
    cli: Cli,
    out: &mut (dyn Write + Send),
) -> Result<Exit> {
    if let Some(url) = &cli.broker_url {
        builder = builder.broker_url(url.clone());
    }
    if let Command::Run {
        concurrency,
        queues,
        ..
    } = &cli.command
    {
        if let Some(n) = concurrency {
            builder = builder.max_tasks_process(*n);
        }
        if let Some(spec) = queues {
            let selection = QueueSelection::parse(spec).map_err(|expected| Error::Config {
                key: "--queues".into(),
                value: spec.clone(),
                expected,
            })?;
            builder = builder.queues(selection);
        }
    }
    let app = builder.build()?;
    let json = cli.json;
    match cli.command {
        Command::Run { metrics_listen, .. } => {
            if let Some(addr) = metrics_listen {
                serve_metrics(&app, addr, out).await?;
            }
            let config = app.config();
            writeln!(
                out,
                "app {:?}: worker with concurrency {} and {} timer(s); Ctrl-C or SIGTERM stops it",
                app.name(),
                config.max_tasks_process,
                app.timers().len()
            )
            .map_err(io_error)?;
            app.run_forever().await?;
            writeln!(out, "stopped").map_err(io_error)?;
            Ok(Exit::Success)
        }
        Command::Add { task, args, wait } => {
            let args: Value = serde_json::from_str(&args).map_err(|e| Error::Config {
                key: "args".into(),
                value: args.clone(),
                expected: format!(
                    "JSON arguments: a map (`{{\"a\": 2}}`) or a list (`[2, 3]`): {e}"
                ),
            })?;
            let timeout = wait
                .map(|secs| {
                    Duration::try_from_secs_f64(secs).map_err(|_| Error::Config {
                        key: "--wait".into(),
                        value: secs.to_string(),
                        expected: "a positive number of seconds".into(),
                    })
                })
                .transpose()?;
            let mut record = app.add_task(&task, args).await?;
            let mut exit = Exit::Success;
            if let Some(timeout) = timeout {
                record = app.wait(record.uuid, timeout).await?;
                exit = Exit::of_status(record.status);
            }
            print_task(out, &record, json)?;
            Ok(exit)
        }
        Command::Get { uuid } => match app.get(uuid).await? {
            Some(task) => print_task(out, &task, json).map(|()| Exit::Success),
            None => Err(Error::NotFound(uuid)),
        },
        Command::Inspect => print(out, json, &inspect(&app), inspect_text).map(|()| Exit::Success),
        #[cfg(feature = "web")]
        Command::Web {
            listen,
            token,
            read_only,
        } => {
            let mut dashboard = qtasks_web::Dashboard::new(app.clone()).read_only(read_only);
            if let Some(token) = token {
                dashboard = dashboard.token(token);
            }
            let link = match dashboard.token_value() {
                Some(token) if !read_only => format!("http://{listen}/#token={token}"),
                _ => format!("http://{listen}/"),
            };
            writeln!(
                out,
                "app {:?}: dashboard at {link} (Ctrl-C stops it)",
                app.name()
            )
            .map_err(io_error)?;
            tokio::select! {
                served = dashboard.serve(listen) => served?,
                _ = tokio::signal::ctrl_c() => {}
            }
            writeln!(out, "stopped").map_err(io_error)?;
            Ok(Exit::Success)
        }
        #[cfg(feature = "grpc")]
        Command::Grpc { listen, token } => {
            let mut grpc = qtasks_grpc::Grpc::new(app.clone());
            if let Some(token) = token {
                grpc = grpc.token(token);
            }
            let listener = qtasks_grpc::bind(listen).await?;
            let bound = listener
                .local_addr()
                .map_err(|e| Error::Worker(format!("the gRPC listener has no address: {e}")))?;
            writeln!(
                out,
                "app {:?}: gRPC API qtasks.v1.QTasksService on {bound}, token {} (Ctrl-C stops it)",
                app.name(),
                grpc.token_value().unwrap_or("-")
            )
            .map_err(io_error)?;
            grpc.serve_on(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            writeln!(out, "stopped").map_err(io_error)?;
            Ok(Exit::Success)
        }
        Command::Migrate => {
            let migrated = app.backend().broker.migrate().await?;
            let value = match &migrated {
                Some(m) => json!({
                    "app": app.name(),
                    "schema": true,
                    "version": m.version,
                    "applied": m.applied,
                }),
                None => json!({"app": app.name(), "schema": false, "applied": []}),
            };
            print(out, json, &value, migrate_text).map(|()| Exit::Success)
        }
        Command::Pause { task, queue } => pause(&app, task, queue, true, json, out).await,
        Command::Resume { task, queue } => pause(&app, task, queue, false, json, out).await,
        Command::Stats => {
            let stats = app.backend().broker.stats().await?;
            let workers = app.backend().global_config.live_workers().await?;
            let value = json!({
                "app": app.name(),
                "ready_by_queue": stats.ready_by_queue,
                "ready_by_priority": stats.ready_by_priority,
                "ready": stats.ready_by_priority.values().sum::<u64>(),
                "scheduled": stats.scheduled,
                "running": stats.running,
                "by_status": stats.by_status,
                "dead_letter": stats.dead_letter,
                "live_workers": workers,
            });
            print(out, json, &value, stats_text).map(|()| Exit::Success)
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Worker(format!("cannot write the command's output: {e}"))
}

/// `pause` and `resume`: claims of a task name, a queue or the whole app stop or go on.
async fn pause(
    app: &App,
    task: Option<String>,
    queue: Option<String>,
    paused: bool,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<Exit> {
    let (target, what) = match (task, queue) {
        (Some(task), _) => (PauseTarget::Task(task.clone()), format!("task {task:?}")),
        (None, Some(queue)) => (
            PauseTarget::Queue(queue.clone()),
            format!("queue {queue:?}"),
        ),
        (None, None) => (PauseTarget::App, "every task".to_string()),
    };
    app.backend().broker.set_paused(&target, paused).await?;
    let value = json!({
        "app": app.name(),
        "paused": paused,
        "what": what,
    });
    print(out, json, &value, |v| {
        format!(
            "app {}: {} {}\n",
            v["app"].as_str().unwrap_or_default(),
            if v["paused"].as_bool() == Some(true) {
                "paused"
            } else {
                "resumed"
            },
            v["what"].as_str().unwrap_or_default()
        )
    })
    .map(|()| Exit::Success)
}

fn print(
    out: &mut (dyn Write + Send),
    json: bool,
    value: &Value,
    text: impl Fn(&Value) -> String,
) -> Result<()> {
    let rendered = if json {
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    } else {
        text(value)
    };
    writeln!(out, "{rendered}").map_err(io_error)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A task's record as JSON (arguments and result decoded).
pub fn task_json(task: &Task) -> Value {
    json!({
        "uuid": task.uuid,
        "task_name": task.task_name,
        "status": task.status.as_str(),
        "priority": task.priority,
        "args": task.args.to_json(),
        "returning": task.returning.as_ref().and_then(|r| r.to_json()),
        "traceback": task.traceback,
        "cancel_reason": task.cancel_reason,
        "attempts": task.attempts,
        "progress": task.progress.as_ref().and_then(|p| p.to_json()),
        "history": task.history.iter().map(|a| json!({
            "attempt": a.attempt,
            "worker": a.worker,
            "started_at": unix_seconds(a.started_at),
            "finished_at": unix_seconds(a.finished_at),
            "status": a.status.as_str(),
        })).collect::<Vec<_>>(),
        "created_at": unix_seconds(task.created_at),
        "updated_at": unix_seconds(task.updated_at),
        "extra": task.extra,
    })
}

fn print_task(out: &mut (dyn Write + Send), task: &Task, json: bool) -> Result<()> {
    print(out, json, &task_json(task), |v| {
        let mut s = String::new();
        for key in [
            "uuid",
            "task_name",
            "status",
            "priority",
            "args",
            "returning",
            "traceback",
            "cancel_reason",
            "attempts",
            "progress",
        ] {
            match &v[key] {
                Value::Null => {}
                Value::String(text) => s.push_str(&format!("{key:>13}: {text}\n")),
                other => s.push_str(&format!("{key:>13}: {other}\n")),
            }
        }
        // One line per ended attempt: number, worker, how long, how it ended.
        for a in v["history"].as_array().into_iter().flatten() {
            let took =
                a["finished_at"].as_f64().unwrap_or(0.0) - a["started_at"].as_f64().unwrap_or(0.0);
            s.push_str(&format!(
                "{:>13}: {} on {}, {took:.3} s\n",
                format!("attempt {}", a["attempt"]),
                a["status"].as_str().unwrap_or(""),
                a["worker"].as_str().unwrap_or(""),
            ));
        }
        s.trim_end().to_string()
    })
}

fn inspect(app: &App) -> Value {
    let config = app.config();
    let tasks: Vec<Value> = app
        .tasks()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "kind": format!("{:?}", t.kind).to_lowercase(),
                "signature": t.signature,
                "output": t.output,
                "location": t.location(),
                "router": t.router.map(|r| r.name()),
                "priority": t.options.priority.unwrap_or(config.task_default_priority),
                "retry": t.options.retry,
                "max_time": t.options.max_time.map(|d| d.as_secs_f64()),
                "echo": t.options.echo,
                "tags": t.options.tags,
                "description": t.options.description,
                "extra": t.options.extra.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let plugins: Vec<Value> = app
        .plugins()
        .names()
        .into_iter()
        .map(|(name, c)| json!({"name": name, "component": c.map(|c| c.as_str()).unwrap_or("all")}))
        .collect();
    let timers: Vec<Value> = app
        .timers()
        .iter()
        .map(|t| {
            json!({"name": t.name(), "task": t.task_name(), "schedule": schedule_text(t.schedule())})
        })
        .collect();
    json!({
        "app": app.name(),
        "version": env!("CARGO_PKG_VERSION"),
        "broker_url": config.broker_url.clone().unwrap_or_else(|| "memory://".into()),
        "config": {
            "max_tasks_process": config.max_tasks_process,
            "prefetch": config.prefetch(),
            "task_default_priority": config.task_default_priority,
            "result_ttl": config.result_ttl.as_secs_f64(),
            "grace_period": config.grace_period.as_secs_f64(),
        },
        "routers": app.routers().iter().map(|r| r.name()).collect::<Vec<_>>(),
        "tasks": tasks,
        "plugins": plugins,
        "timers": timers,
    })
}

fn schedule_text(schedule: &qtasks_core::timer::Schedule) -> String {
    match schedule {
        qtasks_core::timer::Schedule::Every(d) => format!("every {d:?}"),
        qtasks_core::timer::Schedule::Cron(c) => format!("cron {}", c.source()),
    }
}

fn inspect_text(v: &Value) -> String {
    let mut s = format!(
        "app {} (qtasks {}) on {}\n",
        v["app"].as_str().unwrap_or_default(),
        v["version"].as_str().unwrap_or_default(),
        v["broker_url"].as_str().unwrap_or_default()
    );
    if let Some(config) = v["config"].as_object() {
        let pairs: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!("config: {}\n", pairs.join(" ")));
    }
    let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
    s.push_str(&format!("tasks ({}):\n", tasks.len()));
    for t in &tasks {
        s.push_str(&format!(
            "  {} ({}) -> {}  [{} {}, priority {}, retry {}",
            t["name"].as_str().unwrap_or_default(),
            t["signature"].as_str().unwrap_or_default(),
            t["output"].as_str().unwrap_or_default(),
            t["kind"].as_str().unwrap_or_default(),
            t["location"].as_str().unwrap_or_default(),
            t["priority"],
            t["retry"],
        ));
        if let Some(max) = t["max_time"].as_f64() {
            s.push_str(&format!(", max_time {max}s"));
        }
        if t["echo"].as_bool() == Some(true) {
            s.push_str(", echo");
        }
        if let Some(tags) = t["tags"].as_array().filter(|t| !t.is_empty()) {
            let tags: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
            s.push_str(&format!(", tags {}", tags.join(",")));
        }
        if let Some(router) = t["router"].as_str() {
            s.push_str(&format!(", router {router}"));
        }
        s.push(']');
        if let Some(d) = t["description"].as_str() {
            s.push_str(&format!("  {d}"));
        }
        s.push('\n');
    }
    for (key, label) in [("plugins", "plugins"), ("timers", "timers")] {
        let items = v[key].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            continue;
        }
        s.push_str(&format!("{label} ({}):\n", items.len()));
        for item in items {
            let name = item["name"].as_str().unwrap_or_default();
            let detail = match item["task"].as_str() {
                Some(task) => format!("{task}, {}", item["schedule"].as_str().unwrap_or_default()),
                None => item["component"].as_str().unwrap_or_default().to_string(),
            };
            s.push_str(&format!("  {name}: {detail}\n"));
        }
    }
    s.trim_end().to_string()
}

fn migrate_text(v: &Value) -> String {
    let app = v["app"].as_str().unwrap_or_default();
    if v["schema"].as_bool() != Some(true) {
        return format!("app {app}: the backend has no schema to migrate");
    }
    let applied: Vec<&str> = v["applied"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if applied.is_empty() {
        format!(
            "app {app}: the schema is up to date (version {})",
            v["version"]
        )
    } else {
        format!(
            "app {app}: migrated the schema to version {} (applied {})",
            v["version"],
            applied.join(", ")
        )
    }
}

fn stats_text(v: &Value) -> String {
    let mut s = format!("app {}\n", v["app"].as_str().unwrap_or_default());
    s.push_str(&format!("ready: {}", v["ready"]));
    if let Some(by) = v["ready_by_priority"].as_object().filter(|m| !m.is_empty()) {
        let parts: Vec<String> = by
            .iter()
            .map(|(p, n)| format!("priority {p}: {n}"))
            .collect();
        s.push_str(&format!(" ({})", parts.join(", ")));
    }
    if let Some(by) = v["ready_by_queue"]
        .as_object()
        .filter(|m| m.len() > 1 || m.keys().any(|q| q != "default"))
    {
        let parts: Vec<String> = by.iter().map(|(q, n)| format!("{q}: {n}")).collect();
        s.push_str(&format!("\nready per queue: {}", parts.join(", ")));
    }
    s.push_str(&format!(
        "\nscheduled: {}\nrunning: {}\ndead letter: {}\n",
        v["scheduled"], v["running"], v["dead_letter"]
    ));
    if let Some(by) = v["by_status"].as_object() {
        let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(
            "by status: {}\n",
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        ));
    }
    let workers: Vec<&str> = v["live_workers"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    s.push_str(&format!(
        "live workers ({}): {}",
        workers.len(),
        workers.join(", ")
    ));
    s
}

/// `run --metrics-listen`: binds `addr` (failing before the worker starts when it cannot) and
/// serves the metrics there in the background.
#[cfg(feature = "metrics")]
async fn serve_metrics(
    app: &App,
    addr: std::net::SocketAddr,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config {
            key: "--metrics-listen".into(),
            value: addr.to_string(),
            expected: format!("an address this process can bind ({e}); pick a free port"),
        })?;
    let bound = listener.local_addr().map_err(io_error)?;
    crate::metrics::install()?;
    writeln!(out, "metrics at http://{bound}/metrics").map_err(io_error)?;
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::metrics::serve_on(app, listener).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

/// `run --metrics-listen` without the `metrics` feature: says what to turn on.
#[cfg(not(feature = "metrics"))]
async fn serve_metrics(
    _app: &App,
    addr: std::net::SocketAddr,
    _out: &mut (dyn Write + Send),
) -> Result<()> {
    Err(Error::Config {
        key: "--metrics-listen".into(),
        value: addr.to_string(),
        expected: "a binary built with qtasks' `metrics` feature".into(),
    })
}
