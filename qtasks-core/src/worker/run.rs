//! The worker: claims tasks in batches, runs up to `max_tasks_process` at once, acknowledges
//! them in batches, and shuts down gracefully.
//!
//! Shape: one fetcher claims as many tasks as there are free slots (a slot is held by a task
//! from its claim until its acknowledgement: prefetched, running or finished; bounded) and
//! blocks on the broker's wake-up when the queue is empty; `max_tasks_process` lanes take tasks
//! from the claimed-job queue and run them through the executor (no spawn per task); one
//! flusher acknowledges finished tasks in batches (whatever has finished since its last call,
//! so an idle worker acknowledges at once and a busy one in large batches).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::handle::App;
use crate::backend::{AttemptRun, CancelRequest, Completion, Lease};
use crate::control::{QueueSelection, TaskLimits, DEFAULT_QUEUE};
use crate::error::Result;
use crate::execute::execute;
use crate::ext::events::WorkerEvent;
use crate::ext::plugin::{ComponentKind, Trigger};
use crate::observe;
use crate::task::backoff::Backoff;
use crate::worker::queues::{DoneQueue, Job, JobQueue, StartQueue, MAX_ACK_BATCH};
use crate::worker::scope::{WorkerScope, LEASE_LOST};

/// Most tasks claimed in one broker call.
const MAX_CLAIM_BATCH: usize = 1024;
/// How often a worker records that it is alive (`App::ping`, `live_workers`).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// How long one heartbeat counts: a worker missing three in a row is considered gone.
const HEARTBEAT_TTL: Duration = Duration::from_secs(6);

/// Runs the built-in worker until it is asked to stop, then shuts it down gracefully.
pub(crate) async fn run(app: App, worker: Arc<WorkerScope>) -> Result<()> {
    let config = app.config().clone();
    let lanes_n = config.max_tasks_process;
    let capacity = lanes_n + config.prefetch();
    let jobs = Arc::new(JobQueue::default());
    let slots = Arc::new(Semaphore::new(capacity));
    let done = Arc::new(DoneQueue::default());
    let stopped = CancellationToken::new();
    // The concurrency and rate limits of this app's tasks, applied by every claim.
    let limits: Vec<TaskLimits> = app
        .tasks()
        .iter()
        .filter_map(|t| TaskLimits::of(t.name, &t.options.limits))
        .collect();
    app.backend().broker.set_limits(&limits)?;
    // The queues it claims from: the configured ones, or `default` and every queue its tasks
    // declare.
    let queues = config.queues.clone().unwrap_or_else(|| {
        let tasks = app.tasks();
        let declared = tasks.iter().filter_map(|t| t.options.queue);
        QueueSelection::equal(std::iter::once(DEFAULT_QUEUE).chain(declared))
    });
    app.backend().broker.set_queues(&queues)?;
    tracing::info!(worker = %worker.id(), concurrency = lanes_n, prefetch = config.prefetch(), "worker started");
    // Listed as live before it says it runs (`worker_running`), not a tick later.
    beat(&app, &worker).await;
    lifecycle(&app, &worker, true).await;

    let fetcher = tokio::spawn(fetch_loop(
        app.clone(),
        worker.clone(),
        slots.clone(),
        jobs.clone(),
    ));
    // With leases, a task's start is recorded before it runs (`Broker::started`), batched.
    let starts = app
        .backend()
        .broker
        .lease_duration()
        .map(|_| Arc::new(StartQueue::default()));
    let marker = starts.as_ref().map(|starts| {
        tokio::spawn(start_loop(
            app.clone(),
            worker.clone(),
            starts.clone(),
            stopped.clone(),
        ))
    });
    let lane_parts = Arc::new(Lane {
        app: app.clone(),
        worker: worker.clone(),
        jobs: jobs.clone(),
        done: done.clone(),
        slots: slots.clone(),
        starts,
        worker_id: worker.id().into(),
    });
    let mut lanes = JoinSet::new();
    for _ in 0..lanes_n {
        lanes.spawn(lane(lane_parts.clone()));
    }
    let flusher = tokio::spawn(flush_loop(
        app.clone(),
        worker.clone(),
        done.clone(),
        slots.clone(),
    ));
    let renewer = app.backend().broker.lease_duration().map(|lease| {
        tokio::spawn(renew_loop(
            app.clone(),
            worker.clone(),
            lease,
            stopped.clone(),
        ))
    });
    let heartbeat = tokio::spawn(heartbeat_loop(app.clone(), worker.clone(), stopped.clone()));
    let cancels = app
        .backend()
        .broker
        .cancel_requests()
        .map(|requests| tokio::spawn(cancel_loop(worker.clone(), requests, stopped.clone())));

    worker.shutdown().cancelled().await;
    tracing::info!(worker = %worker.id(), "worker stopping");
    let _ = fetcher.await;

    // Prefetched tasks go back to the queue at once.
    let returned: Vec<Lease> = jobs.take_all().map(|job| job.delivery.lease()).collect();
    requeue(&app, &worker, returned).await;

    // Running tasks get the grace period.
    let grace = config.grace_period;
    let finished =
        tokio::time::timeout(grace, async { while lanes.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(worker = %worker.id(), ?grace, "grace period over; stopping the tasks still running and returning them to the queue");
        lanes.abort_all();
        while lanes.join_next().await.is_some() {}
    }
    done.close();
    let _ = flusher.await;
    // Worker-scoped dependencies go after the task-scoped ones of every execution.
    worker.dependencies().close_after_children(grace).await;
    stopped.cancel();
    if let Some(marker) = marker {
        let _ = marker.await;
    }
    if let Some(renewer) = renewer {
        let _ = renewer.await;
    }
    let _ = heartbeat.await;
    if let Some(cancels) = cancels {
        let _ = cancels.await;
    }
    // Whatever is still held was not acknowledged: back to the queue, attempt not counted.
    let left = worker.leases();
    requeue(&app, &worker, left).await;
    lifecycle(&app, &worker, false).await;
    tracing::info!(worker = %worker.id(), "worker stopped");
    Ok(())
}

/// The worker's start/stop plugin triggers and `worker_running`/`worker_stopping` events.
async fn lifecycle(app: &App, worker: &WorkerScope, start: bool) {
    let hooks = app.hooks();
    if hooks.is_empty() {
        return;
    }
    let component = ComponentKind::Worker;
    let event = WorkerEvent {
        app,
        worker_id: worker.id(),
    };
    if start {
        hooks.plugins.fire(&mut Trigger::Start(component)).await;
        hooks.events.fire_worker_running(&event);
    } else {
        hooks.plugins.fire(&mut Trigger::Stop(component)).await;
        hooks.events.fire_worker_stopping(&event);
    }
}

async fn beat(app: &App, worker: &WorkerScope) {
    let global = &app.backend().global_config;
    match global.heartbeat(worker.id(), HEARTBEAT_TTL).await {
        Ok(()) => observe::heartbeat(),
        Err(e) => {
            observe::backend_error("heartbeat");
            tracing::warn!(worker = %worker.id(), error = %e, "cannot record the worker's heartbeat");
        }
    }
}

async fn requeue(app: &App, worker: &WorkerScope, leases: Vec<Lease>) {
    if leases.is_empty() {
        return;
    }
    match app.backend().broker.requeue(&leases).await {
        Ok(()) => {
            tracing::info!(worker = %worker.id(), count = leases.len(), "returned tasks to the queue")
        }
        Err(e) => {
            observe::backend_error("requeue");
            tracing::error!(worker = %worker.id(), count = leases.len(), error = %e, "cannot return tasks to the queue; they run again when their lease expires")
        }
    }
    worker.release(leases.iter().map(|l| l.uuid));
}

async fn fetch_loop(
    app: App,
    worker: Arc<WorkerScope>,
    slots: Arc<Semaphore>,
    jobs: Arc<JobQueue>,
) {
    let broker = app.backend().broker.clone();
    let leases = broker.lease_duration().is_some();
    let mut backoff = Backoff::RECONNECT.steps();
    loop {
        let first = tokio::select! {
            biased;
            _ = worker.shutdown().cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        first.forget();
        let mut wanted = 1;
        while wanted < MAX_CLAIM_BATCH {
            match slots.try_acquire() {
                Ok(p) => {
                    p.forget();
                    wanted += 1;
                }
                Err(_) => break,
            }
        }
        // Tasks that lanes free now will run at once: the claim marks them started too (with
        // leases; without, nothing is recorded at a start).
        let start = if leases {
            jobs.idle_lanes().min(wanted)
        } else {
            0
        };
        let claimed = tokio::select! {
            biased;
            _ = worker.shutdown().cancelled() => {
                slots.add_permits(wanted);
                return;
            }
            claimed = broker.claim_starting(wanted, start) => claimed,
        };
        let (deliveries, started) = match claimed {
            Ok(d) => {
                backoff.reset();
                d
            }
            Err(e) => {
                observe::backend_error("claim");
                slots.add_permits(wanted);
                let delay = backoff.next_delay();
                tracing::warn!(worker = %worker.id(), error = %e, ?delay, "cannot claim tasks; trying again");
                tokio::select! {
                    _ = worker.shutdown().cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        slots.add_permits(wanted.saturating_sub(deliveries.len()));
        jobs.push(
            worker
                .hold(deliveries)
                .into_iter()
                .enumerate()
                .map(|(i, (delivery, cancel))| Job {
                    delivery,
                    cancel,
                    started: i < started,
                })
                .collect(),
        );
    }
}

/// What every lane shares.
struct Lane {
    app: App,
    worker: Arc<WorkerScope>,
    jobs: Arc<JobQueue>,
    done: Arc<DoneQueue>,
    slots: Arc<Semaphore>,
    /// Where starts are recorded first (backends with leases).
    starts: Option<Arc<StartQueue>>,
    /// The worker's id, for the runs it reports (shared, not copied per task).
    worker_id: Arc<str>,
}

/// One lane: runs claimed jobs one after the other through the execution pipeline. A job
/// whose lease was lost is not started (or, lost while it ran, not acknowledged): its slot is
/// freed and the task is left to the worker that holds it now.
async fn lane(parts: Arc<Lane>) {
    let Lane {
        app,
        worker,
        jobs,
        done,
        slots,
        starts,
        worker_id,
    } = &*parts;
    while let Some(job) = jobs.next(worker.shutdown()).await {
        let uuid = job.delivery.uuid;
        // Without leases (an in-process backend) nothing can take a task away: no start to
        // record, no stage to track.
        let ours = match starts {
            None => true,
            Some(_) if job.started => worker.begin(uuid),
            Some(starts) => {
                starts.push(job.delivery.lease()).await.unwrap_or(false) && worker.begin(uuid)
            }
        };
        if !ours {
            tracing::warn!(worker = %worker.id(), task_name = %job.delivery.task_name, task_uuid = %uuid, "not starting a prefetched task: {LEASE_LOST}");
            worker.release([uuid]);
            slots.add_permits(1);
            continue;
        }
        let started_at = SystemTime::now();
        let outcome = execute(app, worker, &job.delivery, job.cancel).await;
        if starts.is_some() && !worker.finish(uuid) {
            // Its lease went while it ran: the acknowledgement would be rejected.
            tracing::warn!(worker = %worker.id(), task_name = %job.delivery.task_name, task_uuid = %uuid, "not acknowledging a task stopped by a lost lease (its completion would be rejected): {LEASE_LOST}");
            worker.release([uuid]);
            slots.add_permits(1);
            continue;
        }
        done.push(Completion {
            lease: job.delivery.lease(),
            outcome,
            run: Some(AttemptRun::ended_now(worker_id, &job.delivery, started_at)),
        });
    }
}

/// Records the starts lanes ask for, everything pending in one call, and answers each lane.
/// A failing call is tried again with backoff; when the worker stops, pending starts are
/// refused (the tasks go back to the queue with the rest).
async fn start_loop(
    app: App,
    worker: Arc<WorkerScope>,
    starts: Arc<StartQueue>,
    stopped: CancellationToken,
) {
    let broker = app.backend().broker.clone();
    let mut backoff = Backoff::RECONNECT.steps();
    loop {
        let batch = tokio::select! {
            _ = stopped.cancelled() => break,
            batch = starts.take() => batch,
        };
        let leases: Vec<Lease> = batch.iter().map(|(lease, _)| *lease).collect();
        let lost = loop {
            match broker.started(&leases).await {
                Ok(lost) => {
                    backoff.reset();
                    break Some(lost);
                }
                Err(e) => {
                    observe::backend_error("started");
                    let delay = backoff.next_delay();
                    tracing::warn!(worker = %worker.id(), error = %e, count = leases.len(), ?delay, "cannot record that tasks start; trying again");
                    tokio::select! {
                        _ = stopped.cancelled() => break None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        let Some(lost) = lost else {
            for (_, tx) in batch {
                let _ = tx.send(false);
            }
            break;
        };
        if !lost.is_empty() {
            worker.lose(&lost);
        }
        for (lease, tx) in batch {
            let _ = tx.send(!lost.contains(&lease));
        }
    }
    starts.refuse_all();
}

/// Acknowledges finished executions in batches, then frees their slots.
async fn flush_loop(
    app: App,
    worker: Arc<WorkerScope>,
    done: Arc<DoneQueue>,
    slots: Arc<Semaphore>,
) {
    let broker = app.backend().broker.clone();
    let mut batch = Vec::with_capacity(MAX_ACK_BATCH);
    let mut backoff = Backoff::RECONNECT.steps();
    while done.take(&mut batch).await {
        let mut failures = 0;
        loop {
            match broker.complete(&batch).await {
                Ok(rejected) => {
                    backoff.reset();
                    for lease in &rejected {
                        tracing::warn!(worker = %worker.id(), task_uuid = %lease.uuid, "completion rejected: the task's lease had expired and another worker owns it now");
                    }
                    break;
                }
                Err(e) => {
                    observe::backend_error("complete");
                    let delay = backoff.next_delay();
                    failures += 1;
                    tracing::warn!(worker = %worker.id(), error = %e, count = batch.len(), ?delay, "cannot acknowledge finished tasks; trying again");
                    if worker.shutdown().is_cancelled() && failures >= 5 {
                        tracing::error!(worker = %worker.id(), count = batch.len(), "giving up acknowledging after shutdown; the tasks run again when their lease expires");
                        break;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        worker.release(batch.iter().map(|c| c.lease.uuid));
        // The tasks' slots are free once they are acknowledged.
        slots.add_permits(batch.len());
        batch.clear();
    }
}

/// Renews the leases of every held task, three times per lease duration.
async fn renew_loop(
    app: App,
    worker: Arc<WorkerScope>,
    lease: Duration,
    stopped: CancellationToken,
) {
    let broker = app.backend().broker.clone();
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leases = worker.leases();
        if leases.is_empty() {
            continue;
        }
        match broker.renew(&leases).await {
            Ok(lost) if !lost.is_empty() => {
                let lost = worker.lose(&lost);
                if !lost.is_empty() {
                    tracing::warn!(worker = %worker.id(), running = ?lost.running, unstarted = ?lost.unstarted, "stopping the running tasks and dropping the prefetched tasks whose leases are gone: {LEASE_LOST}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                observe::backend_error("renew");
                tracing::warn!(worker = %worker.id(), error = %e, count = leases.len(), "cannot renew leases");
            }
        }
    }
}

/// Records that the worker is alive, every [`HEARTBEAT_INTERVAL`]; marks it gone at the end.
async fn heartbeat_loop(app: App, worker: Arc<WorkerScope>, stopped: CancellationToken) {
    let config = app.backend().global_config.clone();
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.cancelled() => break,
            _ = tick.tick() => {}
        }
        match config.heartbeat(worker.id(), HEARTBEAT_TTL).await {
            Ok(()) => observe::heartbeat(),
            Err(e) => {
                observe::backend_error("heartbeat");
                tracing::warn!(worker = %worker.id(), error = %e, "cannot record the worker's heartbeat");
            }
        }
    }
    // A heartbeat that expires at once: the worker is no longer listed as live.
    let _ = config.heartbeat(worker.id(), Duration::ZERO).await;
}

/// Applies cancels of running tasks asked by other processes.
async fn cancel_loop(
    worker: Arc<WorkerScope>,
    mut requests: futures::stream::BoxStream<'static, CancelRequest>,
    stopped: CancellationToken,
) {
    use futures::StreamExt;
    loop {
        let request = tokio::select! {
            _ = stopped.cancelled() => return,
            request = requests.next() => match request {
                Some(r) => r,
                None => return,
            },
        };
        worker.cancel_running(request.uuid, &request.reason);
    }
}
