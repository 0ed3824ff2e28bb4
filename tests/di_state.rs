//! Typed state, the key-value state, custom and optional extractors, and extractors in sync
//! tasks together with echo.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use qtasks::{BuildProblem, Error, TaskStatus};
use tokio::sync::Barrier;

/// Tasks that need `State<Greeting>`: behind a router, since every router-less task of this
/// test binary is part of every app it builds.
static GREETING: Router = Router::new("greeting");

#[derive(Debug)]
struct Greeting {
    word: String,
}

// ---------------------------------------------------------------------------------------
// State present, and optional state.

#[qtasks::task(router = GREETING)]
async fn greet(greeting: State<Greeting>, name: String) -> String {
    format!("{}, {name}", greeting.word)
}

struct NeverProvided;

#[qtasks::task]
async fn maybe_state(
    provided: Option<State<Greeting>>,
    absent: Option<State<NeverProvided>>,
) -> (bool, bool) {
    (provided.is_some(), absent.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_read_typed_state_and_optional_state() {
    let app = builder("di-state-present")
        .include_router(&GREETING)
        .state(Greeting {
            word: "hello".into(),
        })
        .build()
        .unwrap();
    assert_eq!(app.state::<Greeting>().unwrap().word, "hello");
    assert!(app.state::<NeverProvided>().is_none());
    let worker = app.spawn_worker();
    let done = greet
        .call("ann".into())
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning.as_deref(), Some("hello, ann"));
    let done = maybe_state
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some((true, false)));
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Missing state: `build()` lists every missing one at once, naming task and type.

static NEEDS_STATE: Router = Router::new("needs-state");

struct MailConfig;
struct BillingConfig;

#[qtasks::task(router = NEEDS_STATE)]
async fn send_mail(_cfg: State<MailConfig>) {}

#[qtasks::task(router = NEEDS_STATE)]
fn charge(_cfg: State<BillingConfig>, _mail: State<MailConfig>, _greeting: State<Greeting>) {}

#[test]
fn an_app_that_serves_none_of_the_tasks_needing_a_state_builds_without_it() {
    // `send_mail` and `charge` need states, but only apps that include their router serve them.
    let app = builder("di-state-not-served").build().unwrap();
    assert!(app.task("send_mail").is_none() && app.task("charge").is_none());
}

#[test]
fn build_fails_listing_every_missing_state() {
    let err = builder("di-state-missing")
        .state(Greeting { word: "hi".into() })
        .include_router(&NEEDS_STATE)
        .build()
        .unwrap_err();
    let Error::Build(problems) = &err else {
        panic!("expected a build error, got {err}");
    };
    let text = err.to_string();
    assert_eq!(problems.len(), 3, "{text}");
    for (task, ty) in [
        ("send_mail", "di_state::MailConfig"),
        ("charge", "di_state::BillingConfig"),
        ("charge", "di_state::MailConfig"),
    ] {
        assert!(
            problems
                .iter()
                .map(ToString::to_string)
                .any(|p| p.contains(&format!("task {task:?}"))
                    && p.contains(&format!("`State<{ty}>`"))
                    && p.contains(".state(")),
            "no problem names task {task} and State<{ty}>:\n{text}"
        );
        assert!(
            problems.iter().any(|p| matches!(
                p,
                BuildProblem::MissingState { task: t, state, .. } if t == task && *state == ty
            )),
            "no MissingState problem for task {task} and {ty}:\n{text}"
        );
    }
    assert!(!text.contains("Greeting"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Key-value state: the seed's API, and no lost update under concurrency.

const INCREMENTS: usize = 100;
static ALL_INCREMENTING: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(INCREMENTS));

#[qtasks::task]
async fn increment(counters: KvState<u64>) -> Result<u64, TaskError> {
    tokio::time::timeout(DEADLINE, ALL_INCREMENTING.wait())
        .await
        .map_err(|_| TaskError::msg("the increments never ran at the same time"))?;
    Ok(counters.modify("hits", |n| n.copied().unwrap_or(0) + 1))
}

#[qtasks::task]
fn increment_sync(counters: KvState<u64>) -> u64 {
    counters.modify("sync-hits", |n| n.copied().unwrap_or(0) + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_state_loses_no_update_under_concurrency() {
    let app = builder("di-state-kv-concurrent")
        .max_tasks_process(INCREMENTS)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let mut tasks = Vec::new();
    for _ in 0..INCREMENTS {
        tasks.push(increment.call().on(&app).add_task().await.unwrap());
        tasks.push(increment_sync.call().on(&app).add_task().await.unwrap());
    }
    let mut seen = Vec::new();
    for task in tasks {
        let done = task.wait(DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
        seen.push(done.returning.unwrap());
    }
    let kv = app.kv_state::<u64>();
    assert_eq!(kv.get("hits"), Some(INCREMENTS as u64));
    assert_eq!(kv.get("sync-hits"), Some(INCREMENTS as u64));
    // Every increment saw a distinct value.
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), INCREMENTS);
    worker.shutdown().await.unwrap();
}

#[test]
fn kv_state_api() {
    let app = builder("di-state-kv-api").build().unwrap();
    let kv = app.kv_state::<serde_json::Value>();
    assert_eq!(kv.get("a"), None);
    assert_eq!(kv.set("a", 1.into()), None);
    assert_eq!(kv.set("a", 2.into()), Some(1.into()));
    let all = kv.update([("b", "x".into()), ("c", true.into())]);
    assert_eq!(all.len(), 3);
    assert_eq!(kv.get_all(), all);
    assert_eq!(kv.delete("b"), Some("x".into()));
    assert_eq!(kv.delete("b"), None);
    assert_eq!(kv.get_all().keys().collect::<Vec<_>>(), ["a", "c"]);
    kv.clear();
    assert!(kv.get_all().is_empty());
    // One store per value type, shared by every handle of the app.
    app.kv_state::<u64>().set("n", 5);
    assert_eq!(app.kv_state::<u64>().get("n"), Some(5));
    assert_eq!(app.kv_state::<serde_json::Value>().get("n"), None);
    // Another app has its own stores.
    let other = builder("di-state-kv-api-other").build().unwrap();
    assert_eq!(other.kv_state::<u64>().get("n"), None);
}

// ---------------------------------------------------------------------------------------
// A custom extractor, its build check, and `Option<_>` of it.

/// Who runs the task: built from the app's state, checked at build time.
struct Operator(String);

struct Operators {
    on_duty: String,
}

impl FromTaskContext for Operator {
    async fn from_task_context(ctx: &TaskContext) -> Result<Self, TaskError> {
        let ops = ctx
            .app()
            .state::<Operators>()
            .ok_or_else(|| TaskError::msg("no operators"))?;
        Ok(Operator(format!("{} for {}", ops.on_duty, ctx.task_name())))
    }

    fn check(app: &App) -> Vec<Missing> {
        match app.state::<Operators>() {
            Some(_) => Vec::new(),
            None => vec![Missing::other(
                "`Operator` needs `.state(Operators { .. })`",
            )],
        }
    }
}

/// An extractor that never works: `Option<_>` of it is `None`.
struct Unavailable;

static UNAVAILABLE_TRIES: AtomicUsize = AtomicUsize::new(0);

impl FromTaskContext for Unavailable {
    async fn from_task_context(_ctx: &TaskContext) -> Result<Self, TaskError> {
        UNAVAILABLE_TRIES.fetch_add(1, Ordering::SeqCst);
        Err(TaskError::msg("not available"))
    }
    fn check(_app: &App) -> Vec<Missing> {
        vec![Missing::other("never available")]
    }
}

#[qtasks::task(router = OPERATED)]
async fn who(#[extract] op: Operator, #[extract] maybe: Option<Unavailable>, n: u32) -> String {
    format!("{} #{n} ({})", op.0, maybe.is_some())
}

static OPERATED: Router = Router::new("operated");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_extractors_and_optional_ones() {
    let err = builder("di-state-custom-missing")
        .include_router(&OPERATED)
        .build()
        .unwrap_err();
    let Error::Build(problems) = &err else {
        panic!("expected a build error, got {err}");
    };
    // `Operator` is checked; `Option<Unavailable>` never fails the build.
    assert_eq!(problems.len(), 1, "{err}");
    assert!(
        problems[0].to_string().contains("task \"who\"")
            && problems[0].to_string().contains("needs `.state(Operators"),
        "{err}"
    );
    assert!(
        matches!(&problems[0], BuildProblem::Unprovided { task, .. } if task == "who"),
        "{:?}",
        problems[0]
    );

    let app = builder("di-state-custom")
        .include_router(&OPERATED)
        .state(Operators {
            on_duty: "ada".into(),
        })
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let done = who
        .call(3)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning.as_deref(), Some("ada for who #3 (false)"));
    assert!(UNAVAILABLE_TRIES.load(Ordering::SeqCst) >= 1);
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Sync and async tasks take the same extractors, with echo first.

static WORKER_DEP_CREATED: AtomicUsize = AtomicUsize::new(0);

struct Shared(usize);

impl Dependency for Shared {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(Shared(WORKER_DEP_CREATED.fetch_add(1, Ordering::SeqCst)))
    }
}

struct PerRun(String);

impl Dependency for PerRun {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        let task = ctx.task().ok_or("a task-scoped dependency sees its task")?;
        Ok(PerRun(task.task_uuid.to_string()))
    }
}

#[qtasks::task(echo, router = GREETING)]
fn sync_everything(
    task: SyncTask,
    greeting: State<Greeting>,
    shared: Depends<Shared, scope::Worker>,
    per_run: Depends<PerRun>,
    kv: KvState<String>,
    ctx: TaskContext,
    name: String,
) -> (String, usize, bool) {
    kv.set("last", name.clone());
    let own_uuid =
        per_run.0 == task.ctx().task_uuid.to_string() && ctx.task_uuid == task.ctx().task_uuid;
    (format!("{} {name}", greeting.word), shared.0, own_uuid)
}

#[qtasks::task(echo, router = GREETING)]
async fn async_everything(
    task: AsyncTask,
    greeting: State<Greeting>,
    shared: Depends<Shared, scope::Worker>,
    per_run: Depends<PerRun>,
    kv: KvState<String>,
    ctx: TaskContext,
    name: String,
) -> (String, usize, bool) {
    kv.set("last", name.clone());
    let own_uuid =
        per_run.0 == task.ctx.task_uuid.to_string() && ctx.task_uuid == task.ctx.task_uuid;
    (format!("{} {name}", greeting.word), shared.0, own_uuid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_async_tasks_take_the_same_extractors_with_echo() {
    let app = builder("di-state-sync-async")
        .include_router(&GREETING)
        .state(Greeting { word: "hey".into() })
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let a = async_everything
        .call("a".into())
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    let s = sync_everything
        .call("s".into())
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    let (a_text, a_shared, a_own) = a.returning.unwrap();
    let (s_text, s_shared, s_own) = s.returning.unwrap();
    assert_eq!((a_text.as_str(), s_text.as_str()), ("hey a", "hey s"));
    assert_eq!(a_shared, s_shared, "one worker-scoped value for both");
    assert!(a_own && s_own);
    assert_eq!(app.kv_state::<String>().get("last").as_deref(), Some("s"));
    worker.shutdown().await.unwrap();
}
