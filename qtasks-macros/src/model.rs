//! Model: what the task is, built from the parsed attribute and function.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Lit, LitStr, Pat, Path, ReturnType, Type};

use crate::check::Errors;
use crate::parse::Arg;

/// Which attribute: `#[task]` or `#[shared_task]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Task,
    Shared,
}

impl Flavor {
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            Flavor::Task => "qtasks::task",
            Flavor::Shared => "qtasks::shared_task",
        }
    }

    /// The keys this attribute accepts (besides `key = literal` extras): the keys both
    /// attributes share, plus `router` for `#[task]` or `awaiting` for `#[shared_task]`.
    pub(crate) fn keys(self) -> Vec<&'static str> {
        const COMMON: &[&str] = &[
            "name",
            "priority",
            "echo",
            "max_time",
            "retry",
            "retry_on",
            "retry_backoff",
            "retry_delay",
            "retry_max_delay",
            "retry_jitter",
            "decode",
            "tags",
            "description",
            "generate_handler",
            "executor",
            "middlewares_before",
            "middlewares_after",
            "unique",
            "unique_for",
            "debounce",
            "throttle",
            "concurrency",
            "concurrency_key",
            "rate_limit",
            "rate_limit_key",
            "queue",
        ];
        let own = match self {
            Flavor::Task => "router",
            Flavor::Shared => "awaiting",
        };
        COMMON.iter().copied().chain([own]).collect()
    }
}

/// Type names that are extractors without `#[extract]`: the built-in ones.
pub(crate) const BUILTIN_EXTRACTORS: &[&str] = &[
    "AsyncTask",
    "SyncTask",
    "TaskContext",
    "State",
    "KvState",
    "Depends",
    "Yield",
];

/// The task handle types that `echo` puts first.
pub(crate) const TASK_HANDLES: &[&str] = &["AsyncTask", "SyncTask"];

pub(crate) struct TaskModel {
    pub flavor: Flavor,
    pub func: ItemFn,
    pub name: Option<LitStr>,
    pub priority: Option<Expr>,
    pub echo: Option<Span>,
    pub max_time: Option<Expr>,
    pub retry: Option<Expr>,
    pub retry_on: Vec<Path>,
    pub retry_backoff: Option<LitStr>,
    pub retry_delay: Option<Expr>,
    pub retry_max_delay: Option<Expr>,
    pub retry_jitter: Option<syn::LitBool>,
    pub decode: Option<Path>,
    /// The type the `decode` function returns, when written: `decode = f -> Type`.
    pub decode_output: Option<Type>,
    pub tags: Vec<LitStr>,
    pub description: Option<LitStr>,
    pub generate_handler: Option<Path>,
    pub executor: Option<Path>,
    pub middlewares_before: Vec<Path>,
    pub middlewares_after: Vec<Path>,
    pub router: Option<Path>,
    pub awaiting: Option<Span>,
    /// `unique` (a flag: the whole arguments) or `unique = [arg, ..]`.
    pub unique: Option<Unique>,
    pub unique_for: Option<Expr>,
    pub debounce: Option<Expr>,
    pub throttle: Option<Expr>,
    pub concurrency: Option<Expr>,
    pub concurrency_key: Option<Vec<Ident>>,
    /// `rate_limit = "50/s"`, checked when parsed.
    pub rate_limit: Option<(LitStr, u32, u64)>,
    pub rate_limit_key: Option<Vec<Ident>>,
    /// `queue = "mail"` (checked when the app is built).
    pub queue: Option<LitStr>,
    pub extra: Vec<(Ident, Extra)>,
    pub params: Vec<Param>,
    pub ret: Return,
}

/// What `unique` keys on.
pub(crate) enum Unique {
    /// `unique`: every argument.
    AllArgs,
    /// `unique = [a, b]`: these arguments.
    Args(Vec<Ident>),
}

/// The value of an extra `key = literal`, typed as written.
pub(crate) enum Extra {
    Str(LitStr),
    Int(i64),
    Float(f64),
    Bool(bool),
}

pub(crate) struct Param {
    pub ty: Type,
    pub kind: ParamKind,
    /// Span of the whole parameter, for errors.
    pub span: Span,
}

pub(crate) enum ParamKind {
    /// Decoded from the task's arguments, under this name.
    Payload(Ident),
    /// Built from the task's context.
    Extractor,
}

pub(crate) enum Return {
    /// No return type: the output is `()`.
    Unit,
    /// `-> T`.
    Plain(Type),
    /// `-> Result<T, E>` (any type whose last segment is `Result`).
    Result(Type),
}

impl TaskModel {
    pub(crate) fn is_async(&self) -> bool {
        self.func.sig.asyncness.is_some()
    }

    pub(crate) fn ident(&self) -> &Ident {
        &self.func.sig.ident
    }
}

/// The last path segment's name of a type (`State` for `qtasks::State<Config>`).
pub(crate) fn type_name(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        _ => None,
    }
}

/// The `T` of `Option<T>`.
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

pub(crate) fn is_builtin_extractor(ty: &Type) -> bool {
    let ty = option_inner(ty).unwrap_or(ty);
    type_name(ty).is_some_and(|n| BUILTIN_EXTRACTORS.iter().any(|b| n == b))
}

/// The `T` of a `Result<T, E>` return type (its first type argument).
pub(crate) fn result_ok(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(ok) => Some(ok),
        _ => None,
    }
}

/// `Y` and `R` of a `Yield<Y, R>` parameter type (`R` is `None` when omitted).
pub(crate) fn yield_types(ty: &Type) -> Option<(&Type, Option<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Yield" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let item = types.next()?;
    Some((item, types.next()))
}

pub(crate) fn is_task_handle(ty: &Type) -> bool {
    type_name(ty).is_some_and(|n| TASK_HANDLES.iter().any(|b| n == b))
}

pub(crate) fn build(
    flavor: Flavor,
    args: Vec<Arg>,
    mut func: ItemFn,
    errors: &mut Errors,
) -> TaskModel {
    let params = build_params(&mut func, errors);
    let ret = match &func.sig.output {
        ReturnType::Default => Return::Unit,
        ReturnType::Type(_, ty) => match type_name(ty) {
            Some(n) if n == "Result" => Return::Result((**ty).clone()),
            _ => Return::Plain((**ty).clone()),
        },
    };
    let mut model = TaskModel {
        flavor,
        func,
        name: None,
        priority: None,
        echo: None,
        max_time: None,
        retry: None,
        retry_on: Vec::new(),
        retry_backoff: None,
        retry_delay: None,
        retry_max_delay: None,
        retry_jitter: None,
        decode: None,
        decode_output: None,
        tags: Vec::new(),
        description: None,
        generate_handler: None,
        executor: None,
        middlewares_before: Vec::new(),
        middlewares_after: Vec::new(),
        router: None,
        awaiting: None,
        unique: None,
        unique_for: None,
        debounce: None,
        throttle: None,
        concurrency: None,
        concurrency_key: None,
        rate_limit: None,
        rate_limit_key: None,
        queue: None,
        extra: Vec::new(),
        params,
        ret,
    };
    let mut seen: Vec<Ident> = Vec::new();
    for arg in args {
        if let Some(first) = seen.iter().find(|k| **k == arg.key) {
            errors.push(syn::Error::new(
                arg.key.span(),
                format!(
                    "duplicate key `{}`: it is already set earlier in this attribute",
                    first
                ),
            ));
            continue;
        }
        seen.push(arg.key.clone());
        apply(&mut model, arg, errors);
    }
    model
}

fn build_params(func: &mut ItemFn, errors: &mut Errors) -> Vec<Param> {
    let mut params = Vec::new();
    for input in func.sig.inputs.iter_mut() {
        let FnArg::Typed(pt) = input else {
            // Receivers are reported by check.
            continue;
        };
        let before = pt.attrs.len();
        pt.attrs.retain(|a| !a.path().is_ident("extract"));
        let marked = pt.attrs.len() != before;
        let span = pt.span();
        let kind = if marked || is_builtin_extractor(&pt.ty) {
            ParamKind::Extractor
        } else {
            match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    ParamKind::Payload(pi.ident.clone())
                }
                other => {
                    errors.push(syn::Error::new(
                        other.span(),
                        "a task argument needs a plain name (it is the key of the argument in the task's payload); destructure it in the body, or mark an extractor with #[extract]",
                    ));
                    ParamKind::Payload(Ident::new("__invalid", other.span()))
                }
            }
        };
        params.push(Param {
            ty: (*pt.ty).clone(),
            kind,
            span,
        });
    }
    params
}

fn apply(model: &mut TaskModel, arg: Arg, errors: &mut Errors) {
    let key = arg.key.to_string();
    let valid = model.flavor.keys();
    if model.flavor == Flavor::Shared && key == "router" {
        errors.push(syn::Error::new(
            arg.key.span(),
            "a shared task is registered for every app, so it has no router: use #[qtasks::task(router = ..)] for a task that only the apps including the router have",
        ));
        return;
    }
    if let Some(hint) = python_key(model.flavor, &key) {
        errors.push(syn::Error::new(
            arg.key.span(),
            format!(
                "unknown key `{key}` in #[{}]: {hint}",
                model.flavor.attr_name()
            ),
        ));
        return;
    }
    if let Some((arrow, _)) = &arg.ret {
        if key != "decode" {
            // Reported, then the key applied without the type: one mistake, one error.
            errors.push(syn::Error::new(
                arrow.span(),
                format!("`-> Type` names what a `decode` function returns (`decode = path::to::fn -> Type`); `{key}` takes no type"),
            ));
        }
    }
    if !valid.contains(&key.as_str()) {
        // Any other `key = literal` is extra data, unless it looks like a typo of a key.
        let near = valid
            .iter()
            .find(|k| edit_distance(k, &key) <= 2 && key.len() > 2);
        let extra = match &arg.value {
            Some(value) if near.is_none() => extra_value(value),
            _ => Ok(None),
        };
        match (extra, near) {
            (Err(e), _) => errors.push(e),
            (Ok(Some(value)), _) => model.extra.push((arg.key.clone(), value)),
            (Ok(None), Some(near)) => errors.push(syn::Error::new(
                arg.key.span(),
                format!(
                    "unknown key `{key}` in #[{}]: did you mean `{near}`? Valid keys: {}; any other `key = literal` is kept as extra",
                    model.flavor.attr_name(),
                    valid.join(", ")
                ),
            )),
            (Ok(None), None) => errors.push(syn::Error::new(
                arg.key.span(),
                format!(
                    "unknown key `{key}` in #[{}]. Valid keys: {}; any other `key = literal` (a string, number or bool) is kept as extra",
                    model.flavor.attr_name(),
                    valid.join(", ")
                ),
            )),
        }
        return;
    }
    let span = arg.key.span();
    match key.as_str() {
        "echo" => model.echo = flag(&arg, errors),
        "awaiting" => model.awaiting = flag(&arg, errors),
        "name" => model.name = lit_str(&arg, errors),
        "description" => model.description = lit_str(&arg, errors),
        "priority" => model.priority = int_expr(&arg, true, errors),
        "retry" => model.retry = int_expr(&arg, false, errors),
        "max_time" => model.max_time = number(&arg, errors),
        "retry_delay" => model.retry_delay = number(&arg, errors),
        "retry_max_delay" => model.retry_max_delay = number(&arg, errors),
        "retry_jitter" => model.retry_jitter = bool_lit(&arg, errors),
        "retry_backoff" => {
            model.retry_backoff = lit_str(&arg, errors).and_then(|s| {
                if matches!(s.value().as_str(), "fixed" | "exponential") {
                    Some(s)
                } else {
                    errors.push(syn::Error::new(
                        s.span(),
                        "`retry_backoff` is \"fixed\" (the same `retry_delay` before every retry) or \"exponential\" (`retry_delay` doubling up to `retry_max_delay`, with jitter unless `retry_jitter = false`)",
                    ));
                    None
                }
            })
        }
        "tags" => {
            model.tags = list(
                &arg,
                errors,
                |e| match e {
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(s), ..
                    }) => Some(s.clone()),
                    _ => None,
                },
                "a string such as \"mail\"",
            )
        }
        "retry_on" => {
            model.retry_on = path_list(&arg, errors, "an error type such as std::io::Error")
        }
        "middlewares_before" => {
            model.middlewares_before = path_list(&arg, errors, "a middleware type")
        }
        "middlewares_after" => {
            model.middlewares_after = path_list(&arg, errors, "a middleware type")
        }
        "decode" => {
            model.decode = path(&arg, errors, "a function path");
            model.decode_output = arg.ret.map(|(_, ty)| ty);
        }
        "generate_handler" => model.generate_handler = path(&arg, errors, "a function path"),
        "executor" => model.executor = path(&arg, errors, "an executor type"),
        "router" => model.router = path(&arg, errors, "the path of a `static` Router"),
        "unique" => {
            model.unique = match &arg.value {
                None => Some(Unique::AllArgs),
                Some(_) => Some(Unique::Args(ident_list(&arg, errors))),
            }
        }
        "unique_for" => model.unique_for = number(&arg, errors),
        "debounce" => model.debounce = number(&arg, errors),
        "throttle" => model.throttle = number(&arg, errors),
        "concurrency" => model.concurrency = int_expr(&arg, false, errors),
        "concurrency_key" => model.concurrency_key = Some(ident_list(&arg, errors)),
        "rate_limit" => {
            model.rate_limit = lit_str(&arg, errors).and_then(|s| match parse_rate(&s.value()) {
                Ok((permits, per)) => Some((s, permits, per)),
                Err(message) => {
                    errors.push(syn::Error::new(s.span(), message));
                    None
                }
            })
        }
        "rate_limit_key" => model.rate_limit_key = Some(ident_list(&arg, errors)),
        "queue" => model.queue = lit_str(&arg, errors),
        _ => errors.push(syn::Error::new(
            span,
            "internal: key accepted but not modelled",
        )),
    }
}

/// The names of Python QTasks' decorators that are no key here, with the key (or attribute)
/// to write instead: a "did you mean" for someone who knows QTasks.
fn python_key(flavor: Flavor, key: &str) -> Option<&'static str> {
    Some(match key {
        "retry_on_exc" => "did you mean `retry_on`? Python QTasks' `retry_on_exc = [..]` is `retry_on = [ErrorType, ..]` here: the error types to retry, found through the error's source chain",
        "middlewares" => "did you mean `middlewares_before` or `middlewares_after`? Python QTasks' `middlewares` are two lists here: `middlewares_before = [Type, ..]` run before the function, `middlewares_after = [Type, ..]` after it",
        "timeout" => "did you mean `max_time`? `max_time = secs` limits one attempt of the task; a caller's wait (QTasks' `add_task(timeout=..)`) is `.timeout(duration)` on the call: `add.call(2, 3).timeout(Duration::from_secs(5)).add_task()`",
        "awaiting" if flavor == Flavor::Task => "did you mean #[qtasks::shared_task(awaiting)]? `awaiting` makes a sync shared task's handle async, and the handle of a #[qtasks::task] is always async: remove it",
        _ => return None,
    })
}

/// What to write instead of Python's `True`, `False` or `None`.
fn python_literal(expr: &Expr) -> Option<&'static str> {
    let Expr::Path(p) = expr else { return None };
    let ident = p.path.get_ident()?;
    match ident.to_string().as_str() {
        "True" => Some("write `true`"),
        "False" => Some("write `false`"),
        "None" => Some("a key without a value is left out"),
        _ => None,
    }
}

/// The typed value of an extra `key = literal`: `None` when it is no literal at all.
fn extra_value(expr: &Expr) -> syn::Result<Option<Extra>> {
    if let Some(rust) = python_literal(expr) {
        return Err(syn::Error::new(
            expr.span(),
            format!(
                "`{}` is Python's spelling: {rust}",
                quote::ToTokens::to_token_stream(expr)
            ),
        ));
    }
    let (negative, lit) = match expr {
        Expr::Lit(l) => (false, &l.lit),
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => match &*u.expr {
            Expr::Lit(l) if matches!(l.lit, Lit::Int(_) | Lit::Float(_)) => (true, &l.lit),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let value = match lit {
        Lit::Str(s) => Extra::Str(s.clone()),
        Lit::Bool(b) => Extra::Bool(b.value),
        Lit::Int(i) => {
            let magnitude = i.base10_parse::<i128>()?;
            let value = if negative { -magnitude } else { magnitude };
            match i64::try_from(value) {
                Ok(v) => Extra::Int(v),
                Err(_) => {
                    return Err(syn::Error::new(
                        expr.span(),
                        "an extra integer must fit in an i64; write a larger number as a string (`key = \"..\"`)",
                    ))
                }
            }
        }
        Lit::Float(f) => {
            let magnitude = f.base10_parse::<f64>()?;
            if !magnitude.is_finite() {
                return Err(syn::Error::new(
                    expr.span(),
                    "an extra float must be finite (an f64); write it as a string (`key = \"..\"`)",
                ));
            }
            Extra::Float(if negative { -magnitude } else { magnitude })
        }
        other => {
            return Err(syn::Error::new(
                other.span(),
                "an extra value is a string, an integer, a float or a bool literal (`key = \"text\"`, `key = 3`, `key = 0.5`, `key = true`)",
            ))
        }
    };
    Ok(Some(value))
}

fn value<'a>(arg: &'a Arg, errors: &mut Errors, what: &str) -> Option<&'a Expr> {
    if arg.value.is_none() {
        errors.push(syn::Error::new(
            arg.key.span(),
            format!("`{}` needs a value: `{} = {what}`", arg.key, arg.key),
        ));
    }
    arg.value.as_ref()
}

fn flag(arg: &Arg, errors: &mut Errors) -> Option<Span> {
    match &arg.value {
        None => Some(arg.key.span()),
        Some(Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        })) => b.value.then(|| arg.key.span()),
        Some(other) => {
            errors.push(syn::Error::new(
                other.span(),
                format!(
                    "`{}` is a flag: write `{}` or `{} = true`{}",
                    arg.key,
                    arg.key,
                    arg.key,
                    python_note(other)
                ),
            ));
            None
        }
    }
}

fn bool_lit(arg: &Arg, errors: &mut Errors) -> Option<syn::LitBool> {
    match value(arg, errors, "true")? {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.clone()),
        other => {
            errors.push(syn::Error::new(
                other.span(),
                format!(
                    "`{}` takes `true` or `false`{}",
                    arg.key,
                    python_note(other)
                ),
            ));
            None
        }
    }
}

/// ` (`True` is Python's spelling)` after a message, for Python's bools.
fn python_note(expr: &Expr) -> String {
    match python_literal(expr) {
        Some(_) => format!(
            " (`{}` is Python's spelling)",
            quote::ToTokens::to_token_stream(expr)
        ),
        None => String::new(),
    }
}

fn lit_str(arg: &Arg, errors: &mut Errors) -> Option<LitStr> {
    match value(arg, errors, "\"...\"")? {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        other => {
            errors.push(syn::Error::new(
                other.span(),
                format!("`{}` takes a string literal", arg.key),
            ));
            None
        }
    }
}

fn int_expr(arg: &Arg, signed: bool, errors: &mut Errors) -> Option<Expr> {
    let e = value(arg, errors, "3")?;
    let ok = match e {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(_), ..
        }) => true,
        Expr::Unary(u) if signed && matches!(u.op, syn::UnOp::Neg(_)) => {
            matches!(
                &*u.expr,
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Int(_),
                    ..
                })
            )
        }
        _ => false,
    };
    if ok {
        Some(e.clone())
    } else {
        let kind = if signed {
            "an integer"
        } else {
            "a whole number"
        };
        errors.push(syn::Error::new(
            e.span(),
            format!("`{}` takes {kind} literal", arg.key),
        ));
        None
    }
}

fn number(arg: &Arg, errors: &mut Errors) -> Option<Expr> {
    let e = value(arg, errors, "30.0")?;
    match e {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(_) | Lit::Float(_),
            ..
        }) => Some(e.clone()),
        _ => {
            errors.push(syn::Error::new(
                e.span(),
                format!("`{}` takes a number of seconds, such as 30 or 0.5", arg.key),
            ));
            None
        }
    }
}

fn path(arg: &Arg, errors: &mut Errors, what: &str) -> Option<Path> {
    match value(arg, errors, what)? {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        other => {
            errors.push(syn::Error::new(
                other.span(),
                format!("`{}` takes {what}", arg.key),
            ));
            None
        }
    }
}

fn list<T>(
    arg: &Arg,
    errors: &mut Errors,
    item: impl Fn(&Expr) -> Option<T>,
    what: &str,
) -> Vec<T> {
    let Some(e) = value(arg, errors, &format!("[{what}]")) else {
        return Vec::new();
    };
    let Expr::Array(arr) = e else {
        errors.push(syn::Error::new(
            e.span(),
            format!("`{}` takes a list: `{} = [{what}, ..]`", arg.key, arg.key),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for el in &arr.elems {
        match item(el) {
            Some(v) => out.push(v),
            None => errors.push(syn::Error::new(
                el.span(),
                format!("each entry of `{}` must be {what}", arg.key),
            )),
        }
    }
    out
}

/// `[a, b]`: argument names.
fn ident_list(arg: &Arg, errors: &mut Errors) -> Vec<Ident> {
    list(
        arg,
        errors,
        |e| match e {
            Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
            _ => None,
        },
        "an argument name such as order_id",
    )
}

/// `"50/s"` as (permits, period in seconds); the error says what is expected. The same
/// grammar as `qtasks::control::Rate::parse`, checked here so a typo fails the build.
fn parse_rate(text: &str) -> Result<(u32, u64), String> {
    let bad = || {
        format!(
            "`rate_limit` is \"<count>/<unit>\" with a count above 0 and a unit of s, m or h (\"50/s\", \"10/m\", \"1000/h\", \"5/30s\"), not {text:?}"
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let permits: u32 = count.trim().parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let digits = unit.chars().take_while(|c| c.is_ascii_digit()).count();
    let (times, unit) = unit.split_at(digits);
    let times: u64 = if times.is_empty() {
        1
    } else {
        times.parse().map_err(|_| bad())?
    };
    let seconds = match unit {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    if permits == 0 || times == 0 {
        return Err(bad());
    }
    Ok((permits, seconds * times))
}

fn path_list(arg: &Arg, errors: &mut Errors, what: &str) -> Vec<Path> {
    list(
        arg,
        errors,
        |e| match e {
            Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
            _ => None,
        },
        what,
    )
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_parse_with_their_units() {
        assert_eq!(parse_rate("50/s"), Ok((50, 1)));
        assert_eq!(parse_rate("10/m"), Ok((10, 60)));
        assert_eq!(parse_rate("100 / hour"), Ok((100, 3600)));
        assert_eq!(parse_rate("5/30s"), Ok((5, 30)));
        for bad in ["50", "0/s", "x/s", "5/d", "5/0s", "-1/s"] {
            let err = parse_rate(bad).expect_err(bad);
            assert!(err.contains("<count>/<unit>"), "{err}");
        }
    }
}
