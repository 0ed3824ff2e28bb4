//! Generator tasks: the [`Yield`] parameter, `generate_handler`, and the [`YieldStream`] a
//! caller reads the yielded values from.
//!
//! Python QTasks drains a generator, passes each item to `generate_handler` and throws the
//! replies away. Here a task takes `y: Yield<Item, Reply>`; `y.send(item).await` passes the
//! item to the task's `generate_handler` (a sync or async function `fn(Item) -> Reply`) and
//! returns its reply to the task; the function's own return value is the task's result. A
//! caller that enqueued the task with [`TaskCall::stream`](crate::TaskCall::stream) receives
//! every item as it is yielded.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::Stream;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;

use uuid::Uuid;

use crate::app::handle::App;
use crate::context::TaskContext;
use crate::error::{Error, Result};
use crate::task::call::TaskCall;
use crate::task::def::TaskDef;
use crate::task::payload::Payload;
use crate::task::record::Task;

/// How many yielded items a stream buffers before the task waits for the caller to read.
pub(crate) const STREAM_BUFFER: usize = 256;

/// The generator parameter of a task: `y.send(item).await` yields `item` and returns the
/// `generate_handler`'s reply.
///
/// (Needs the `qtasks` facade; the same code is compiled in `docs/generators.md`.)
///
/// ```ignore
/// use qtasks::Yield;
///
/// fn shout(step: String) -> String { step.to_uppercase() }
///
/// #[qtasks::task(generate_handler = shout)]
/// async fn steps(y: Yield<String, String>, n: u32) -> u32 {
///     let reply = y.send("init".to_string()).await;     // "INIT"
///     assert_eq!(reply, "INIT");
///     for i in 0..n { y.send(format!("step {i}")).await; }
///     n                                                // the task's result
/// }
/// ```
///
/// Without `generate_handler` the reply type is `()`: `Yield<Item>`. In a sync task, use
/// [`send_blocking`](Self::send_blocking).
pub struct Yield<Y, R = ()> {
    ctx: TaskContext,
    handler: fn(Y) -> BoxFuture<'static, R>,
    observer: Option<mpsc::Sender<Payload>>,
}

impl<Y: Serialize + Send + 'static, R: Send + 'static> Yield<Y, R> {
    /// Used by generated code: the parameter of a running task, with its handler.
    #[doc(hidden)]
    pub fn new(ctx: &TaskContext, handler: fn(Y) -> BoxFuture<'static, R>) -> Self {
        Yield {
            ctx: ctx.clone(),
            handler,
            observer: ctx.app().take_yield_observer(ctx.task_uuid),
        }
    }

    /// Yields `item`: the caller's stream (if any) receives it, then the task's
    /// `generate_handler` runs on it and its reply is returned.
    pub async fn send(&self, item: Y) -> R {
        if let Some(observer) = &self.observer {
            match Payload::encode(&item) {
                // A dropped stream is not an error: nobody is watching any more.
                Ok(payload) => {
                    let _ = observer.send(payload).await;
                }
                Err(e) => {
                    tracing::warn!(task_name = self.ctx.task_name(), task_uuid = %self.ctx.task_uuid, error = %e, "cannot encode a yielded item for the caller's stream")
                }
            }
        }
        (self.handler)(item).await
    }

    /// [`send`](Self::send) for sync tasks (blocks this blocking-pool thread).
    pub fn send_blocking(&self, item: Y) -> R {
        self.ctx.block_on(self.send(item))
    }
}

impl<Y, R> std::fmt::Debug for Yield<Y, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Yield")
            .field("task_uuid", &self.ctx.task_uuid)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<T: TaskDef> TaskCall<T> {
    /// Enqueues a generator task and returns it with the stream of the values it yields
    /// (through its [`Yield`](crate::Yield) parameter) as it runs. The stream ends when the
    /// task's attempt ends. Streaming works within the process running the worker.
    pub async fn stream(self) -> Result<(Task<T::Output>, YieldStream<T::Yielded>)> {
        let app = self.app()?;
        let uuid = self.uuid(&app);
        // Observe before enqueueing, so no item is missed; dropping the stream (also on
        // error) removes the observer.
        let stream = YieldStream::new(app.observe_yields(uuid), app.clone(), uuid, T::entry().name);
        let task = self.send(&app, uuid).await?;
        Ok((task, stream))
    }
}

/// The values a generator task yields, in order, as they are yielded. Ends when the task's
/// attempt ends. Read it with `futures::StreamExt::next` or [`YieldStream::next`].
///
/// Streams are delivered inside the process that runs the worker (the app's own worker);
/// a worker in another process does not stream back.
pub struct YieldStream<Y> {
    rx: mpsc::Receiver<Payload>,
    app: App,
    uuid: Uuid,
    task_name: &'static str,
    _item: PhantomData<fn() -> Y>,
}

impl<Y: DeserializeOwned> YieldStream<Y> {
    pub(crate) fn new(
        rx: mpsc::Receiver<Payload>,
        app: App,
        uuid: Uuid,
        task_name: &'static str,
    ) -> Self {
        YieldStream {
            rx,
            app,
            uuid,
            task_name,
            _item: PhantomData,
        }
    }

    /// The next yielded value; `None` once the task's attempt has ended.
    pub async fn next(&mut self) -> Option<Result<Y>> {
        futures::StreamExt::next(self).await
    }

    fn decode(&self, payload: Payload) -> Result<Y> {
        payload.decode::<Y>().map_err(|e| Error::Decode {
            task: self.task_name.to_string(),
            uuid: self.uuid,
            what: "yielded value",
            expected: std::any::type_name::<Y>(),
            source: Box::new(e),
        })
    }
}

impl<Y: DeserializeOwned> Stream for YieldStream<Y> {
    type Item = Result<Y>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(payload)) => Poll::Ready(Some(self.decode(payload))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A stream dropped before its task ran leaves nothing behind.
impl<Y> Drop for YieldStream<Y> {
    fn drop(&mut self) {
        self.app.take_yield_observer(self.uuid);
    }
}

impl<Y> std::fmt::Debug for YieldStream<Y> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YieldStream")
            .field("task_name", &self.task_name)
            .field("task_uuid", &self.uuid)
            .finish()
    }
}

/// Generated code turns a `generate_handler`'s return value into a future whether the
/// handler is async (it returns a future) or sync (it returns the reply): autoref
/// specialization on the concrete type, as `anyhow!` does.
#[doc(hidden)]
pub mod reply {
    use std::future::{ready, Future, Ready};

    /// The handler returned a future.
    #[derive(Debug)]
    pub struct FutureTag;
    /// The handler returned the reply itself.
    #[derive(Debug)]
    pub struct ValueTag;

    /// Picked first (by value) when the returned type is a future.
    pub trait FutureKind {
        /// The tag.
        fn qtasks_reply_kind(&self) -> FutureTag {
            FutureTag
        }
    }
    impl<F: Future> FutureKind for F {}

    /// Picked through autoref for any other type.
    pub trait ValueKind {
        /// The tag.
        fn qtasks_reply_kind(&self) -> ValueTag {
            ValueTag
        }
    }
    impl<T> ValueKind for &T {}

    impl FutureTag {
        /// The future itself.
        pub fn into_reply<F: Future>(self, f: F) -> F {
            f
        }
    }

    impl ValueTag {
        /// A ready future of the value.
        pub fn into_reply<T>(self, value: T) -> Ready<T> {
            ready(value)
        }
    }
}
