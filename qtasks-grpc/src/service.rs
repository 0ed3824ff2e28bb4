//! The `qtasks.v1.QTasksService` methods, on an [`App`]: each reads its request, checks the
//! token for the changing ones, calls the app and answers in the proto's shape.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use qtasks_core::backend::inspect::{Cursor, TaskQuery, MAX_PAGE};
use qtasks_core::backend::CancelOutcome;
use qtasks_core::{App, Error, TaskStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::auth::Access;
use crate::convert;
use crate::proto::q_tasks_service_server::QTasksService;
use crate::proto::{
    AddTaskRequest, AddTaskResponse, CancelRequest, CancelResponse, GetTaskRequest,
    GetTaskResponse, ListTasksRequest, ListTasksResponse, TaskEvent, WaitTaskRequest,
};

/// How long `WaitTask` follows a task when the request gives no timeout.
const DEFAULT_FOLLOW: Duration = Duration::from_secs(60);

/// How often `WaitTask` reads a task that is not final yet, to see a change of status that is
/// not final (`new` to `process`, `retry`). The final state is pushed by the storage at once.
const STATUS_STEP: Duration = Duration::from_millis(200);

/// The service: an app and who may change its tasks. Made by [`Grpc::service`](crate::Grpc)
/// (or [`service`](crate::service)) and added to a tonic server.
#[derive(Debug, Clone)]
pub struct QTasksGrpc {
    app: App,
    access: Arc<Access>,
}

impl QTasksGrpc {
    pub(crate) fn new(app: App, access: Access) -> Self {
        QTasksGrpc {
            app,
            access: Arc::new(access),
        }
    }
}

/// The stream of `WaitTask`.
pub type TaskEventStream = Pin<Box<dyn Stream<Item = Result<TaskEvent, Status>> + Send>>;

#[tonic::async_trait]
impl QTasksService for QTasksGrpc {
    async fn add_task(
        &self,
        request: Request<AddTaskRequest>,
    ) -> Result<Response<AddTaskResponse>, Status> {
        self.access.check(request.metadata(), "AddTask")?;
        let req = request.into_inner();
        let wait = convert::wait_secs("timeout", req.timeout)?;
        let args = convert::arguments(&self.app, &req.name, &req.args_json, &req.kwargs_json)?;
        let task = self
            .app
            .add_task_with_priority(&req.name, &args, req.priority)
            .await
            .map_err(convert::status_of)?;
        tracing::info!(task_name = %req.name, task_uuid = %task.uuid, "task enqueued over gRPC");
        let mut reply = AddTaskResponse {
            ok: true,
            uuid: task.uuid.to_string(),
            ..Default::default()
        };
        let Some(wait) = wait else {
            return Ok(Response::new(reply));
        };
        match self.app.wait(task.uuid, wait).await {
            Ok(done) if done.status == TaskStatus::Success => {
                reply.result_json = convert::result_json(&done);
            }
            Ok(done) => {
                reply.ok = false;
                reply.error = convert::failure(&done);
            }
            Err(e @ Error::Timeout { .. }) => {
                reply.ok = false;
                reply.error = format!("{e}; read it later with GetTask(uuid)");
            }
            Err(e) => return Err(convert::status_of(e)),
        }
        Ok(Response::new(reply))
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let req = request.into_inner();
        let uuid = convert::uuid(&req.uuid)?;
        let task = self
            .app
            .get(uuid)
            .await
            .map_err(convert::status_of)?
            .ok_or_else(|| convert::status_of(Error::NotFound(uuid)))?;
        Ok(Response::new(GetTaskResponse {
            ok: true,
            status: task.status.as_str().to_string(),
            result_json: if req.include_result {
                convert::result_json(&task)
            } else {
                String::new()
            },
            traceback: task.traceback.clone().unwrap_or_default(),
            error: String::new(),
        }))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        self.access.check(request.metadata(), "Cancel")?;
        let req = request.into_inner();
        let uuid = convert::uuid(&req.uuid)?;
        let reason = match req.reason.trim() {
            "" => "cancelled over gRPC",
            reason => reason,
        };
        let outcome = match self
            .app
            .cancel(uuid, reason)
            .await
            .map_err(convert::status_of)?
        {
            CancelOutcome::Cancelled => "cancelled",
            CancelOutcome::Running => "running",
            CancelOutcome::Finished => "finished",
            CancelOutcome::NotFound => return Err(convert::status_of(Error::NotFound(uuid))),
        };
        tracing::info!(task_uuid = %uuid, outcome, "task cancel asked over gRPC");
        Ok(Response::new(CancelResponse {
            ok: outcome != "finished",
            outcome: outcome.to_string(),
            error: if outcome == "finished" {
                format!("task {uuid} had already finished: nothing was cancelled")
            } else {
                String::new()
            },
        }))
    }

    type WaitTaskStream = TaskEventStream;

    async fn wait_task(
        &self,
        request: Request<WaitTaskRequest>,
    ) -> Result<Response<Self::WaitTaskStream>, Status> {
        let req = request.into_inner();
        let uuid = convert::uuid(&req.uuid)?;
        let follow = convert::wait_secs("timeout", req.timeout)?.unwrap_or(DEFAULT_FOLLOW);
        let first = self
            .app
            .get(uuid)
            .await
            .map_err(convert::status_of)?
            .ok_or_else(|| convert::status_of(Error::NotFound(uuid)))?;
        let (tx, mut rx) = mpsc::channel(16);
        let app = self.app.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + follow;
            let mut last = first.status;
            if tx.send(Ok(convert::event(&first))).await.is_err() || last.is_final() {
                return;
            }
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let msg = format!(
                        "task {uuid} is still {} after {follow:?}; call WaitTask again or read \
                         it with GetTask",
                        last.as_str()
                    );
                    let _ = tx.send(Err(Status::deadline_exceeded(msg))).await;
                    return;
                }
                let sent = match app.wait(uuid, left.min(STATUS_STEP)).await {
                    Ok(done) => {
                        let _ = tx.send(Ok(convert::event(&done))).await;
                        return;
                    }
                    Err(Error::Timeout { status, .. }) if status == last => true,
                    Err(Error::Timeout { .. }) => match app.get(uuid).await {
                        Ok(Some(now)) => {
                            last = now.status;
                            tx.send(Ok(convert::event(&now))).await.is_ok()
                        }
                        Ok(None) => {
                            let _ = tx
                                .send(Err(convert::status_of(Error::NotFound(uuid))))
                                .await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(convert::status_of(e))).await;
                            return;
                        }
                    },
                    Err(e) => {
                        let _ = tx.send(Err(convert::status_of(e))).await;
                        return;
                    }
                };
                if !sent {
                    return; // the client went away
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => 50,
            n if n <= MAX_PAGE => n,
            n => {
                return Err(Status::invalid_argument(format!(
                    "limit must be between 1 and {MAX_PAGE} (0: 50), not {n}"
                )))
            }
        };
        let non_empty = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        let query = TaskQuery {
            status: non_empty(req.status)
                .map(|s| convert::status(&s))
                .transpose()?,
            task_name: non_empty(req.task_name),
            cursor: non_empty(req.cursor)
                .map(|c| c.trim().parse::<Cursor>())
                .transpose()
                .map_err(convert::status_of)?,
            limit,
            ..TaskQuery::default()
        };
        let page = self
            .app
            .backend()
            .storage
            .list(&query)
            .await
            .map_err(convert::status_of)?;
        Ok(Response::new(ListTasksResponse {
            tasks: page.tasks.iter().map(convert::event).collect(),
            next_cursor: page.next.map(|c| c.to_string()).unwrap_or_default(),
        }))
    }
}
