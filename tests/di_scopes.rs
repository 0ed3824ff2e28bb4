//! Dependency scopes have real lifetimes: counted creations and teardowns under concurrency,
//! dependencies of dependencies, teardown order, and the scope rules.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use qtasks::{DependencyError, TaskStatus};
use tokio::sync::Barrier;

// ---------------------------------------------------------------------------------------
// 100 concurrent tasks: one worker-scoped pool, 100 task-scoped connections.

const CONCURRENT: usize = 100;

static POOLS_CREATED: AtomicUsize = AtomicUsize::new(0);
static POOLS_CLOSED: AtomicUsize = AtomicUsize::new(0);
static CONNS_CREATED: AtomicUsize = AtomicUsize::new(0);
static CONNS_CLOSED: AtomicUsize = AtomicUsize::new(0);
/// Connections torn down before their own task's body had finished (must stay 0).
static CONNS_CLOSED_EARLY: AtomicUsize = AtomicUsize::new(0);
static ALL_RUNNING: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(CONCURRENT));

struct Pool {
    open: AtomicBool,
}

impl Dependency for Pool {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        POOLS_CREATED.fetch_add(1, Ordering::SeqCst);
        // Let concurrent first users pile up on the one creation.
        tokio::task::yield_now().await;
        Ok(Pool {
            open: AtomicBool::new(true),
        })
    }
    async fn close(&self) -> Result<(), BoxError> {
        self.open.store(false, Ordering::SeqCst);
        POOLS_CLOSED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Conn {
    id: usize,
    open: AtomicBool,
    body_done: AtomicBool,
    pool: Depends<Pool, scope::Worker>,
}

impl Dependency for Conn {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        let pool = ctx.resolve::<Pool, scope::Worker>().await?;
        Ok(Conn {
            id: CONNS_CREATED.fetch_add(1, Ordering::SeqCst),
            open: AtomicBool::new(true),
            body_done: AtomicBool::new(false),
            pool,
        })
    }
    async fn close(&self) -> Result<(), BoxError> {
        if !self.body_done.load(Ordering::SeqCst) {
            CONNS_CLOSED_EARLY.fetch_add(1, Ordering::SeqCst);
        }
        self.open.store(false, Ordering::SeqCst);
        CONNS_CLOSED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Holds its connection while all 100 tasks run at once, then reports whether the
/// connection and the pool were still open at its end.
#[qtasks::task]
async fn use_conn(
    pool: Depends<Pool, scope::Worker>,
    conn: Depends<Conn, scope::Task>,
) -> Result<(usize, bool), TaskError> {
    tokio::time::timeout(DEADLINE, ALL_RUNNING.wait())
        .await
        .map_err(|_| TaskError::msg("the 100 tasks never ran at the same time"))?;
    let same_pool = std::ptr::eq(&*pool, &*conn.pool);
    let open = conn.open.load(Ordering::SeqCst) && pool.open.load(Ordering::SeqCst);
    conn.body_done.store(true, Ordering::SeqCst);
    Ok((conn.id, open && same_pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_scope_once_task_scope_per_execution_under_concurrency() {
    let app = builder("di-scopes-concurrent")
        .max_tasks_process(CONCURRENT)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT {
        tasks.push(use_conn.call().on(&app).add_task().await.unwrap());
    }
    let mut ids = HashSet::new();
    for task in tasks {
        let done = task.wait(DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
        let (id, open_at_end) = done.returning.unwrap();
        assert!(
            open_at_end,
            "connection {id} or the pool was closed before its task ended"
        );
        ids.insert(id);
    }
    // 100 executions, 100 distinct connections, all alive at the same time (the barrier).
    assert_eq!(ids.len(), CONCURRENT);
    assert_eq!(CONNS_CREATED.load(Ordering::SeqCst), CONCURRENT);
    // A result is stored only after its execution's teardown.
    assert_eq!(CONNS_CLOSED.load(Ordering::SeqCst), CONCURRENT);
    assert_eq!(CONNS_CLOSED_EARLY.load(Ordering::SeqCst), 0);
    // One pool for the worker, still open while the worker runs.
    assert_eq!(POOLS_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(POOLS_CLOSED.load(Ordering::SeqCst), 0);
    worker.shutdown().await.unwrap();
    assert_eq!(POOLS_CLOSED.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Each worker has its own worker-scoped value; component scopes are once per app.

static PER_WORKER_CREATED: AtomicUsize = AtomicUsize::new(0);
static PER_WORKER_CLOSED: AtomicUsize = AtomicUsize::new(0);
static PER_APP_CREATED: AtomicUsize = AtomicUsize::new(0);
static PER_APP_CLOSED: AtomicUsize = AtomicUsize::new(0);

struct WorkerCache(usize);

impl Dependency for WorkerCache {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(WorkerCache(
            PER_WORKER_CREATED.fetch_add(1, Ordering::SeqCst),
        ))
    }
    async fn close(&self) -> Result<(), BoxError> {
        PER_WORKER_CLOSED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct BrokerClient(usize);

impl Dependency for BrokerClient {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(BrokerClient(PER_APP_CREATED.fetch_add(1, Ordering::SeqCst)))
    }
    async fn close(&self) -> Result<(), BoxError> {
        PER_APP_CLOSED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[qtasks::task]
async fn which_instances(
    cache: Depends<WorkerCache, scope::Worker>,
    client: Depends<BrokerClient, scope::Broker>,
) -> (usize, usize) {
    (cache.0, client.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_scope_is_per_worker_and_component_scope_per_app() {
    let app = builder("di-scopes-per-worker").build().unwrap();
    let mut seen_caches = HashSet::new();
    let mut seen_clients = HashSet::new();
    for round in 0..2 {
        let worker = app.spawn_worker();
        for _ in 0..5 {
            let done = which_instances
                .call()
                .on(&app)
                .timeout(DEADLINE)
                .add_task()
                .await
                .unwrap();
            let (cache, client) = done.returning.unwrap();
            seen_caches.insert(cache);
            seen_clients.insert(client);
        }
        worker.shutdown().await.unwrap();
        assert_eq!(PER_WORKER_CLOSED.load(Ordering::SeqCst), round + 1);
    }
    // Two workers, one value each; one broker-scoped value across both.
    assert_eq!(seen_caches.len(), 2);
    assert_eq!(PER_WORKER_CREATED.load(Ordering::SeqCst), 2);
    assert_eq!(seen_clients.len(), 1);
    assert_eq!(PER_APP_CLOSED.load(Ordering::SeqCst), 0);
    app.close_dependencies().await;
    assert_eq!(PER_APP_CREATED.load(Ordering::SeqCst), 1);
    assert_eq!(PER_APP_CLOSED.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Dependencies of dependencies: each created once per scope, torn down in reverse order.

static ORDER_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(event: impl Into<String>) {
    ORDER_LOG.lock().unwrap().push(event.into());
}

struct Settings;
struct Db {
    _settings: Depends<Settings, scope::Worker>,
}
struct Repo {
    _db: Depends<Db, scope::Task>,
}
struct Audit {
    _db: Depends<Db, scope::Task>,
}

impl Dependency for Settings {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        log("create Settings");
        Ok(Settings)
    }
    async fn close(&self) -> Result<(), BoxError> {
        log("close Settings");
        Ok(())
    }
}

impl Dependency for Db {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        assert!(
            ctx.task().is_some(),
            "a task-scoped constructor sees its task"
        );
        let settings = ctx.resolve::<Settings, scope::Worker>().await?;
        log("create Db");
        Ok(Db {
            _settings: settings,
        })
    }
    async fn close(&self) -> Result<(), BoxError> {
        log("close Db");
        Ok(())
    }
}

impl Dependency for Repo {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        let db = ctx.resolve::<Db, scope::Task>().await?;
        log("create Repo");
        Ok(Repo { _db: db })
    }
    async fn close(&self) -> Result<(), BoxError> {
        log("close Repo");
        Ok(())
    }
}

impl Dependency for Audit {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        let db = ctx.resolve::<Db, scope::Task>().await?;
        log("create Audit");
        Ok(Audit { _db: db })
    }
    async fn close(&self) -> Result<(), BoxError> {
        log("close Audit");
        Ok(())
    }
}

#[qtasks::task]
async fn layered(repo: Depends<Repo>, audit: Depends<Audit>) -> bool {
    // Both share the one `Db` of this execution.
    std::ptr::eq(&*repo._db, &*audit._db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_depend_on_dependencies_and_close_in_reverse_order() {
    let app = builder("di-scopes-layered").build().unwrap();
    let worker = app.spawn_worker();
    let done = layered
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(true), "{:?}", done.traceback);
    worker.shutdown().await.unwrap();
    let log = ORDER_LOG.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "create Settings",
            "create Db",
            "create Repo",
            "create Audit",
            "close Audit",
            "close Repo",
            "close Db",
            "close Settings",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Scope rules: no cycles, no longer-lived value holding a shorter-lived one.

struct Chicken;
struct Egg;

impl Dependency for Chicken {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        ctx.resolve::<Egg, scope::Task>().await?;
        Ok(Chicken)
    }
}

impl Dependency for Egg {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        ctx.resolve::<Chicken, scope::Task>().await?;
        Ok(Egg)
    }
}

struct PerTask;
struct Hoarder;

impl Dependency for PerTask {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(PerTask)
    }
}

impl Dependency for Hoarder {
    async fn create(ctx: &DependencyContext) -> Result<Self, BoxError> {
        ctx.resolve::<PerTask, scope::Task>().await?;
        Ok(Hoarder)
    }
}

#[qtasks::task]
async fn cyclic(_c: Depends<Chicken>) {}

#[qtasks::task]
async fn hoarding(_h: Depends<Hoarder, scope::Worker>) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_and_scope_inversions_fail_the_task_with_an_explanation() {
    let app = builder("di-scopes-rules").build().unwrap();
    let worker = app.spawn_worker();
    let done = cyclic
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    let traceback = done.traceback.unwrap();
    assert!(
        traceback.contains("dependency cycle: ")
            && traceback.contains("Chicken -> ")
            && traceback.contains("Egg -> "),
        "{traceback}"
    );

    let task = hoarding.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    let traceback = done.traceback.unwrap();
    assert!(
        traceback.contains("Hoarder` (scope worker) cannot depend on")
            && traceback.contains("PerTask` of the shorter scope task"),
        "{traceback}"
    );
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Resolving by hand from the context, and the typed error.

struct Lazy(u32);

impl Dependency for Lazy {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(Lazy(7))
    }
}

struct Broken;

impl Dependency for Broken {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Err("not today".into())
    }
}

#[qtasks::task]
async fn resolve_by_hand(ctx: TaskContext) -> Result<u32, TaskError> {
    let a = ctx.resolve::<Lazy, scope::Task>().await?;
    let b = ctx.resolve::<Lazy, scope::Task>().await?;
    assert!(Arc::ptr_eq(&a.clone().into_inner(), &b.into_inner()));
    let err = ctx.resolve::<Broken, scope::Task>().await.err().unwrap();
    assert!(err.is::<DependencyError>());
    Ok(a.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_can_resolve_dependencies_from_its_context() {
    let app = builder("di-scopes-by-hand").build().unwrap();
    let worker = app.spawn_worker();
    let done = resolve_by_hand
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(7), "{:?}", done.traceback);
    worker.shutdown().await.unwrap();
}
