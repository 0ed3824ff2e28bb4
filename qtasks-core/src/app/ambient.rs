//! The ambient app: which app a free call (`add.add_task(2, 3)`) goes to, and running code
//! with an app as the current one.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::app::handle::App;
use crate::error::{Error, Result};

static DEFAULT_APP: RwLock<Option<App>> = RwLock::new(None);

/// How many apps exist in this process (built and not yet dropped), for messages.
static LIVE_APPS: AtomicUsize = AtomicUsize::new(0);

tokio::task_local! {
    static CURRENT_APP: App;
}

thread_local! {
    static BLOCKING_APP: std::cell::RefCell<Option<App>> = const { std::cell::RefCell::new(None) };
}

impl App {
    /// The app that task handles use when none is given: the running task's own app, else the
    /// process default (the first app built, or the last one marked with
    /// [`AppBuilder::make_default`](crate::AppBuilder::make_default)).
    pub fn current() -> Result<App> {
        if let Ok(app) = CURRENT_APP.try_with(Clone::clone) {
            return Ok(app);
        }
        if let Some(app) = BLOCKING_APP.with(|a| a.borrow().clone()) {
            return Ok(app);
        }
        DEFAULT_APP.read().clone().ok_or(Error::NoApp)
    }

    /// How many apps exist in this process.
    pub(crate) fn live_apps() -> usize {
        LIVE_APPS.load(Ordering::Relaxed)
    }

    /// Counts an app that was built (`AppInner` counts its own end).
    pub(crate) fn count_live(up: bool) {
        if up {
            LIVE_APPS.fetch_add(1, Ordering::Relaxed);
        } else {
            LIVE_APPS.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Makes this app the process default.
    pub fn make_default(&self) {
        *DEFAULT_APP.write() = Some(self.clone());
    }

    /// Makes this app the process default when there is none yet, or when `force` is set.
    pub(crate) fn offer_as_default(&self, force: bool) {
        let mut default = DEFAULT_APP.write();
        if default.is_none() || force {
            *default = Some(self.clone());
        }
    }

    /// Runs `fut` with this app as the current app (what running tasks see).
    pub(crate) async fn scope<F: std::future::Future>(&self, fut: F) -> F::Output {
        CURRENT_APP.scope(self.clone(), fut).await
    }

    /// Runs `f` on this thread with this app as the current app (sync tasks).
    pub(crate) fn scope_blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = BLOCKING_APP.with(|a| a.borrow_mut().replace(self.clone()));
        let out = f();
        BLOCKING_APP.with(|a| *a.borrow_mut() = previous);
        out
    }

    /// Runs a future to completion from sync code, blocking the thread: the body of a sync
    /// task (it runs on the blocking pool), a thread of your own, or `main` without a runtime.
    ///
    /// Outside any runtime it uses the runtime the app was built on (or, for an app built
    /// outside one, drives the future on this thread). Like tokio's `Handle::block_on`, it
    /// panics when called from async code: there, `.await` the future instead.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(fut),
            Err(_) => match &self.inner().runtime {
                Some(handle) => handle.block_on(fut),
                None => futures::executor::block_on(fut),
            },
        }
    }
}

impl App {
    /// [`App::block_on`] for the blocking handles of the public API (`add_task_blocking`,
    /// `wait_blocking`, a sync `#[shared_task]`'s `add_task`), from any context: outside a
    /// runtime, in a sync task's body, and inside async code on a multi-thread runtime (the
    /// thread is handed over with `block_in_place`, so the runtime keeps running). On a
    /// current-thread runtime blocking would stall it: that is an error saying what to call
    /// instead. `what` names the call for the message.
    pub(crate) fn block_on_checked<F: std::future::Future>(
        &self,
        what: &str,
        fut: F,
    ) -> Result<F::Output> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Ok(self.block_on(fut));
        };
        if BLOCKING_APP.with(|a| a.borrow().is_some()) {
            // A sync task's body, on the blocking pool: blocking is what it is for.
            return Ok(handle.block_on(fut));
        }
        match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => Err(Error::Worker(format!(
                "{what} blocks the thread, and it was called inside a tokio current-thread runtime, which it would stall: in async code use the async form, `.call(..).on(&app).add_task().await` (or declare a sync `#[shared_task(awaiting)]` for an async handle), or call it from a thread of its own"
            ))),
            _ => Ok(tokio::task::block_in_place(|| handle.block_on(fut))),
        }
    }
}
