//! [`TaskMiddleware`]: code that runs around a task's function (`middlewares_before`,
//! `middlewares_after`).

use futures::future::BoxFuture;

use crate::context::TaskContext;
use crate::error::TaskError;
use crate::task::payload::Payload;

/// Code that runs before or after a task's function, inside the executor.
///
/// A middleware listed in `middlewares_before = [..]` has its [`before`](Self::before) called,
/// in list order, before the arguments are decoded: it can read them, change them or refuse the
/// task. One listed in `middlewares_after = [..]` has its [`after`](Self::after) called, in list
/// order, with the function's result (before `decode`): it can read it or replace it. The
/// same type may be in both lists.
///
/// The attribute takes a value path: a unit struct (`struct Timing;`) or a `const`.
///
/// (Needs the `qtasks` facade; the same code is compiled in `docs/middleware-and-executors.md`.)
///
/// ```ignore
/// use qtasks::{Payload, TaskContext, TaskError, TaskMiddleware};
/// use futures::future::BoxFuture;
///
/// /// Doubles the `n` argument of every task it runs before.
/// struct DoubleN;
///
/// impl TaskMiddleware for DoubleN {
///     fn before<'a>(&'a self, _ctx: &'a TaskContext, args: &'a mut Payload)
///         -> BoxFuture<'a, Result<(), TaskError>> {
///         Box::pin(async move {
///             let mut map: std::collections::BTreeMap<String, i64> = args.decode()?;
///             if let Some(n) = map.get_mut("n") { *n *= 2; }
///             *args = Payload::encode(&map)?;
///             Ok(())
///         })
///     }
/// }
///
/// #[qtasks::task(middlewares_before = [DoubleN])]
/// async fn echo_n(n: i64) -> i64 { n }
/// ```
pub trait TaskMiddleware: Send + Sync + 'static {
    /// Runs before the function with its encoded arguments (a named map); an error ends the
    /// attempt with that error (retried like any other).
    fn before<'a>(
        &'a self,
        ctx: &'a TaskContext,
        args: &'a mut Payload,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        let _ = (ctx, args);
        Box::pin(async { Ok(()) })
    }

    /// Runs after the function with its result (the encoded output, or the error).
    fn after<'a>(
        &'a self,
        ctx: &'a TaskContext,
        result: &'a mut Result<Payload, TaskError>,
    ) -> BoxFuture<'a, ()> {
        let _ = (ctx, result);
        Box::pin(async {})
    }
}
