//! Procedural macros of qtasks: `#[task]` and `#[shared_task]`.
//!
//! Both go through one pipeline: [`parse`] reads the attribute and the function as written,
//! [`model`] turns them into what the task is (options, payload parameters, extractors, return
//! shape), [`check`] finds every misuse with an error spanned at the token that caused it, and
//! [`expand`] writes the code. On error the function is still emitted, so one mistake gives
//! one error. Use the macros through the `qtasks` crate, which re-exports them.

extern crate proc_macro;

mod check;
mod expand;
mod model;
mod parse;

use proc_macro::TokenStream;

/// Turns a function into a task: a zero-sized struct with the function's name that can be
/// enqueued (`add.add_task(2, 3)`), registered for every app (or for the apps that include its
/// `router`).
///
/// Keys (the guide's `docs/tasks.md` explains each): `name = ".."`, `priority = N`, `echo`,
/// `max_time = secs`, `retry = N`, `retry_on = [ErrorType, ..]`, `retry_backoff = "fixed" |
/// "exponential"`, `retry_delay = secs`, `retry_max_delay = secs`, `retry_jitter = bool`,
/// `decode = path::to::fn -> Type` (the arrow and type optional: without them typed handles
/// read the result as `serde_json::Value`), `tags = [".."]`, `description = ".."`,
/// `generate_handler = path::to::fn`, `executor = Type`, `middlewares_before = [Type, ..]`,
/// `middlewares_after = [Type, ..]`, `router = PATH`; any other `key = literal` (a string,
/// integer, float or bool) is kept as the task's `extra`, typed as written.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    run(model::Flavor::Task, attr.into(), item.into()).into()
}

/// Like `#[task]`, for tasks declared in libraries and shared by every app: takes the same
/// keys except `router`, plus `awaiting`. Called without an app, it uses the current one (the
/// running task's app, else the process default). A sync function's handle blocks
/// (`add_task` usable outside an async runtime) unless `awaiting` makes it async.
#[proc_macro_attribute]
pub fn shared_task(attr: TokenStream, item: TokenStream) -> TokenStream {
    run(model::Flavor::Shared, attr.into(), item.into()).into()
}

fn run(
    flavor: model::Flavor,
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let err = syn::Error::new(
                e.span(),
                format!("#[{}] goes on a function: {e}", flavor.attr_name()),
            );
            let mut out = err.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    let args = match parse::parse_args(attr) {
        Ok(a) => a,
        Err(e) => return expand::fallback(&func, e),
    };
    let mut errors = check::Errors::default();
    let task = model::build(flavor, args, func.clone(), &mut errors);
    check::check(&task, &mut errors);
    match errors.into_result() {
        Ok(()) => expand::expand(&task),
        Err(e) => expand::fallback(&func, e),
    }
}
