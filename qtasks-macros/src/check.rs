//! Check: every misuse the macro can see, each spanned at the token that caused it.

use syn::spanned::Spanned;
use syn::FnArg;

use crate::model::{
    is_task_handle, result_ok, type_name, yield_types, ParamKind, Return, TaskModel, Unique,
};

/// Errors collected across parse, model and check, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub(crate) fn into_result(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

pub(crate) fn check(task: &TaskModel, errors: &mut Errors) {
    let sig = &task.func.sig;
    let attr = task.flavor.attr_name();
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new(
            sig.generics.params.span(),
            format!("#[{attr}] functions cannot be generic: a task is registered once, with concrete argument types"),
        ));
    }
    if let Some(wc) = &sig.generics.where_clause {
        errors.push(syn::Error::new(
            wc.span(),
            format!("#[{attr}] functions cannot have a where clause"),
        ));
    }
    for input in &sig.inputs {
        if let FnArg::Receiver(r) = input {
            errors.push(syn::Error::new(
                r.span(),
                format!("#[{attr}] goes on a free function, not a method: `self` cannot be sent to a worker; use `echo` and a `task: AsyncTask` parameter to reach the task itself"),
            ));
        }
    }
    if let Some(c) = &sig.constness {
        errors.push(syn::Error::new(
            c.span(),
            format!("#[{attr}] functions cannot be `const`"),
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new(
            u.span(),
            format!("#[{attr}] functions cannot be `unsafe`"),
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new(
            v.span(),
            format!("#[{attr}] functions cannot be variadic"),
        ));
    }
    check_output(task, errors);
    check_generator(task, errors);
    check_backoff(task, errors);
    check_flow(task, errors);

    let expected_handle = if task.is_async() {
        "AsyncTask"
    } else {
        "SyncTask"
    };
    for (i, p) in task.params.iter().enumerate() {
        if !is_task_handle(&p.ty) {
            continue;
        }
        let name = type_name(&p.ty).map(|n| n.to_string()).unwrap_or_default();
        if i != 0 {
            errors.push(syn::Error::new(
                p.span,
                format!("the task handle `{name}` must be the first parameter"),
            ));
        } else if name != expected_handle {
            let kind = if task.is_async() {
                "an async fn"
            } else {
                "a sync fn"
            };
            errors.push(syn::Error::new(
                p.ty.span(),
                format!("{kind} takes `{expected_handle}` as its task handle, not `{name}`"),
            ));
        } else if task.echo.is_none() {
            errors.push(syn::Error::new(
                p.span,
                format!(
                    "the task handle `{name}` is passed only with `echo`: write #[{attr}(echo)]"
                ),
            ));
        }
    }
    if let Some(echo) = task.echo {
        let first_is_handle = task.params.first().is_some_and(|p| is_task_handle(&p.ty));
        if !first_is_handle {
            errors.push(syn::Error::new(
                echo,
                format!("`echo` passes the task handle as the first parameter, but the function has none: add `task: {expected_handle}` first"),
            ));
        }
    }
    for p in &task.params {
        if let ParamKind::Payload(_) = p.kind {
            if let syn::Type::Reference(r) = &p.ty {
                errors.push(syn::Error::new(
                    r.span(),
                    "a task argument must be owned (it is decoded from the task's payload): use `String` for `&str`, `Vec<T>` for `&[T]`",
                ));
            }
            if let syn::Type::ImplTrait(it) = &p.ty {
                errors.push(syn::Error::new(
                    it.span(),
                    "a task argument must have a concrete type, not `impl Trait`",
                ));
            }
        }
    }
}

/// A `Yield<Item, Reply>` parameter and `generate_handler` go together.
fn check_generator(task: &TaskModel, errors: &mut Errors) {
    let yields: Vec<_> = task
        .params
        .iter()
        .filter(|p| type_name(&p.ty).is_some_and(|n| n == "Yield"))
        .collect();
    for extra in yields.iter().skip(1) {
        errors.push(syn::Error::new(
            extra.span,
            "a task takes at most one `Yield` parameter: everything it yields goes through the one `generate_handler`",
        ));
    }
    match yields.first() {
        Some(y) => match yield_types(&y.ty) {
            None => errors.push(syn::Error::new(
                y.ty.span(),
                "write the yielded type: `Yield<Item>`, or `Yield<Item, Reply>` with a `generate_handler` that returns `Reply`",
            )),
            Some((_, Some(reply))) if task.generate_handler.is_none() && !is_unit(reply) => {
                errors.push(syn::Error::new(
                    reply.span(),
                    format!(
                        "the replies of `Yield<_, {}>` come from a `generate_handler`: add `generate_handler = path::to::handler` (a fn, sync or async, from the item to the reply), or use `Yield<Item>`",
                        quote::ToTokens::to_token_stream(reply)
                    ),
                ))
            }
            Some(_) => {}
        },
        None => {
            if let Some(handler) = &task.generate_handler {
                errors.push(syn::Error::new(
                    handler.span(),
                    "`generate_handler` handles what the task yields, but the function has no `Yield` parameter: add `y: Yield<Item, Reply>` and call `y.send(item).await`",
                ));
            }
        }
    }
}

fn is_unit(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Tuple(t) if t.elems.is_empty())
}

/// Retry keys without `retry`, and backoff keys that contradict each other.
fn check_backoff(task: &TaskModel, errors: &mut Errors) {
    let retries = task.retry.as_ref().is_some_and(|r| {
        !matches!(r, syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(i), .. }) if i.base10_digits() == "0")
    });
    if !retries {
        let spans = [
            task.retry_on.first().map(|p| ("retry_on", p.span())),
            task.retry_backoff
                .as_ref()
                .map(|b| ("retry_backoff", b.span())),
            task.retry_delay.as_ref().map(|d| ("retry_delay", d.span())),
            task.retry_max_delay
                .as_ref()
                .map(|d| ("retry_max_delay", d.span())),
            task.retry_jitter
                .as_ref()
                .map(|j| ("retry_jitter", j.span())),
        ];
        for (key, span) in spans.into_iter().flatten() {
            errors.push(syn::Error::new(
                span,
                format!("`{key}` has no effect without retries: add `retry = N` (N more attempts after a failure)"),
            ));
        }
        return;
    }
    let fixed = task
        .retry_backoff
        .as_ref()
        .is_some_and(|b| b.value() == "fixed");
    if !fixed {
        return;
    }
    if let Some(max) = &task.retry_max_delay {
        errors.push(syn::Error::new(
            max.span(),
            "`retry_max_delay` caps an exponential backoff; with `retry_backoff = \"fixed\"` every retry waits `retry_delay`",
        ));
    }
    if let Some(jitter) = &task.retry_jitter {
        errors.push(syn::Error::new(
            jitter.span(),
            "`retry_jitter` applies to exponential backoff; with `retry_backoff = \"fixed\"` every retry waits exactly `retry_delay`",
        ));
    }
}

/// A result is stored and read back by other processes, so it must be owned.
fn check_output(task: &TaskModel, errors: &mut Errors) {
    let ty = match &task.ret {
        Return::Plain(ty) => ty,
        Return::Result(ty) => match result_ok(ty) {
            Some(ok) => ok,
            None => return,
        },
        Return::Unit => return,
    };
    if let syn::Type::Reference(r) = ty {
        errors.push(syn::Error::new(
            r.span(),
            "a task's result must be owned (it is stored, then decoded by whoever reads it): return `String` for `&str`, `Vec<T>` for `&[T]`",
        ));
    }
}

/// Flow-control keys: the arguments they name exist, and the keys that refine another come
/// with it.
fn check_flow(task: &TaskModel, errors: &mut Errors) {
    let payload: Vec<String> = task
        .params
        .iter()
        .filter_map(|p| match &p.kind {
            ParamKind::Payload(name) => Some(name.to_string()),
            ParamKind::Extractor => None,
        })
        .collect();
    let lists = [
        (
            "unique",
            match &task.unique {
                Some(Unique::Args(names)) => Some(names),
                _ => None,
            },
        ),
        ("concurrency_key", task.concurrency_key.as_ref()),
        ("rate_limit_key", task.rate_limit_key.as_ref()),
    ];
    for (key, names) in lists {
        for name in names.into_iter().flatten() {
            if !payload.iter().any(|p| name == p) {
                errors.push(syn::Error::new(
                    name.span(),
                    format!(
                        "`{key}` names `{name}`, which is not an argument of the task (its arguments: {})",
                        if payload.is_empty() { "none".to_string() } else { payload.join(", ") }
                    ),
                ));
            }
        }
        if let Some(names) = names {
            if names.is_empty() {
                errors.push(syn::Error::new(
                    task.func.sig.ident.span(),
                    format!("`{key} = []` names no argument: list at least one, such as `{key} = [order_id]`"),
                ));
            }
        }
    }
    if let Some(zero) = task.concurrency.as_ref().filter(|c| {
        matches!(c, syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(i), .. }) if i.base10_digits() == "0")
    }) {
        errors.push(syn::Error::new(
            zero.span(),
            "`concurrency = 0` would never run the task: give at least 1 (pause the task to stop it for a while)",
        ));
    }
    if let (Some(_), Some(throttle)) = (&task.debounce, &task.throttle) {
        errors.push(syn::Error::new(
            throttle.span(),
            "`throttle` drops the calls within its window and `debounce` keeps the last one: a task has one or the other",
        ));
    }
    if let (Some(for_), None) = (&task.unique_for, &task.unique) {
        errors.push(syn::Error::new(
            for_.span(),
            "`unique_for` keeps a unique task's key taken after it finished: add `unique` (or `unique = [arg, ..]`)",
        ));
    }
    if let (Some(key), None) = (&task.concurrency_key, &task.concurrency) {
        if let Some(first) = key.first() {
            errors.push(syn::Error::new(
                first.span(),
                "`concurrency_key` makes the concurrency limit per key: add `concurrency = N` (at most N running at once per key)",
            ));
        }
    }
    if let (Some(key), None) = (&task.rate_limit_key, &task.rate_limit) {
        if let Some(first) = key.first() {
            errors.push(syn::Error::new(
                first.span(),
                "`rate_limit_key` makes the rate limit per key: add `rate_limit = \"N/s\"`",
            ));
        }
    }
}
