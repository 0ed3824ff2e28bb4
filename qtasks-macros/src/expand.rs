//! Expand: the code a task turns into.
//!
//! For `async fn add(a: i64, b: i64) -> i64` this writes:
//! - `struct add;`, a zero-sized value with the function's name, whose `run` method holds the
//!   original body (callable directly in unit tests: `add.run(2, 3).await`), and whose `call`
//!   and `add_task` methods build and enqueue typed calls;
//! - `struct __QtasksArgs_add { a: i64, b: i64 }`, the payload (a named map on the wire);
//! - `impl TaskDef for add` and a `TaskEntry` element of the `TASKS` distributed slice, whose
//!   handler decodes the arguments, builds the extractors, calls `run` (a sync function on the
//!   blocking pool) and encodes the output.

use crate::model::Unique;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::model::{result_ok, yield_types, Extra, Flavor, ParamKind, Return, TaskModel};

/// On error: the errors, plus the function as written so the rest of the crate still
/// type-checks against it (one mistake, one error).
pub(crate) fn fallback(func: &syn::ItemFn, err: syn::Error) -> TokenStream {
    let mut out = err.to_compile_error();
    let mut func = func.clone();
    for input in func.sig.inputs.iter_mut() {
        if let syn::FnArg::Typed(pt) = input {
            pt.attrs.retain(|a| !a.path().is_ident("extract"));
        }
    }
    out.extend(quote!(#[allow(dead_code)] #func));
    out
}

pub(crate) fn expand(task: &TaskModel) -> TokenStream {
    let p = quote!(::qtasks::__private);
    let func = &task.func;
    let vis = &func.vis;
    let ident = task.ident();
    let name = match &task.name {
        Some(n) => n.value(),
        None => ident.to_string(),
    };
    let args_ident = format_ident!("__QtasksArgs_{}", ident);
    let entry_ident = format_ident!("__QTASKS_ENTRY_{}", ident);
    let docs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let cfgs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    let other_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc") && !a.path().is_ident("cfg"))
        .collect();

    // Payload fields and the signature string for messages.
    let payload: Vec<(&syn::Ident, &syn::Type)> = task
        .params
        .iter()
        .filter_map(|param| match &param.kind {
            ParamKind::Payload(id) => Some((id, &param.ty)),
            ParamKind::Extractor => None,
        })
        .collect();
    let field_names: Vec<_> = payload.iter().map(|(id, _)| *id).collect();
    let field_types: Vec<_> = payload.iter().map(|(_, ty)| *ty).collect();
    let signature = payload
        .iter()
        .map(|(id, ty)| format!("{}: {}", id, type_text(ty)))
        .collect::<Vec<_>>()
        .join(", ");
    // Each field (de)serializes through a function that compiles even when its type is not
    // serde-compatible, so that such a type gives one error (from `assert_payload`, spanned at
    // the parameter) instead of a dozen from serde's derive.
    let mut field_attrs = Vec::new();
    let mut field_fns = Vec::new();
    // Each parameter's registry record, whose check decodes one value through the same field
    // function as the worker (`App::add_task` checks by-name arguments with it).
    let mut params = Vec::new();
    for (id, ty) in &payload {
        let ser = format_ident!("__ser_{}", id);
        let de = format_ident!("__de_{}", id);
        let ser_path = format!("{args_ident}::{ser}");
        let de_path = format!("{args_ident}::{de}");
        field_attrs.push(quote!(#[serde(serialize_with = #ser_path, deserialize_with = #de_path)]));
        let param_name = id.to_string();
        let param_ty = type_text(ty);
        params.push(quote! {
            #p::TaskParam {
                name: #param_name,
                ty: #param_ty,
                check: {
                    fn __check(__bytes: &[u8]) -> ::core::result::Result<(), ::std::string::String> {
                        let mut __decoder = #p::field_decoder(__bytes);
                        #args_ident::#de(&mut __decoder)
                            .map(|_| ())
                            .map_err(|__e| ::std::string::ToString::to_string(&__e))
                    }
                    __check
                },
            }
        });
        field_fns.push(quote! {
            fn #ser<__S: #p::serde::Serializer>(__v: &#ty, __s: __S) -> ::core::result::Result<__S::Ok, __S::Error> {
                #[allow(unused_imports)]
                use #p::field::{SerializeNever as _, SerializeReal as _};
                (&#p::field::Ser(__v)).qtasks_serialize(__s)
            }
            fn #de<'de, __D: #p::serde::Deserializer<'de>>(__d: __D) -> ::core::result::Result<#ty, __D::Error> {
                #[allow(unused_imports)]
                use #p::field::{DeserializeNever as _, DeserializeReal as _};
                (&#p::field::De::<#ty>::new()).qtasks_deserialize(__d)
            }
        });
    }
    let payload_asserts = payload.iter().map(|(_, ty)| {
        quote_spanned! {ty.span()=>
            #p::assert_payload::<#ty>();
        }
    });

    // The run method: the original function, as a method of the struct.
    let sig = &func.sig;
    let inputs = &sig.inputs;
    let output = &sig.output;
    let asyncness = &sig.asyncness;
    let body = &func.block;
    let run_doc =
        format!("Runs the body of task `{name}` directly, without a queue (for unit tests).");

    // Output type and the conversion of the return value.
    let (output_ty, into_result) = match &task.ret {
        Return::Unit => (
            quote!(()),
            quote!(::core::result::Result::<(), #p::TaskError>::Ok(__out)),
        ),
        Return::Plain(ty) => (
            quote!(#ty),
            quote!(::core::result::Result::<#ty, #p::TaskError>::Ok(__out)),
        ),
        Return::Result(ty) => (
            quote!(<#ty as #p::IntoTaskResult>::Output),
            quote!(<#ty as #p::IntoTaskResult>::into_task_result(__out)),
        ),
    };
    // With `decode`, what is stored is what the decode function returns: typed handles read
    // the type written after it (`decode = f -> Type`), else JSON-like data (the macro cannot
    // see `f`'s return type).
    let fn_output_ty = output_ty.clone();
    let output_ty = match (&task.decode, &task.decode_output) {
        (Some(_), Some(ty)) => quote!(#ty),
        (Some(_), None) => quote!(#p::serde_json::Value),
        (None, _) => output_ty,
    };
    // Each result type the task stores or reads back must be serializable: one error, at the
    // type as written, instead of serde's from every place that uses it.
    let result_types: Vec<&syn::Type> = match &task.ret {
        Return::Unit => None,
        Return::Plain(ty) => Some(ty),
        Return::Result(ty) => result_ok(ty),
    }
    .into_iter()
    .chain(task.decode_output.as_ref())
    .collect();
    let output_asserts = result_types.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            #p::assert_output::<#ty>();
        }
    });
    // The return type as written, for `inspect` and messages.
    let output_str = match &task.ret {
        Return::Unit => "()".to_string(),
        Return::Plain(ty) | Return::Result(ty) => type_text(ty),
    };

    // Handler: decode, extract, call, encode.
    let mut extract_stmts = Vec::new();
    let mut call_args = Vec::new();
    let mut checks = Vec::new();
    for (i, param) in task.params.iter().enumerate() {
        match &param.kind {
            ParamKind::Payload(id) => call_args.push(quote!(__args.#id)),
            ParamKind::Extractor if yield_types(&param.ty).is_some() => {
                let var = format_ident!("__extract_{}", i);
                let ty = &param.ty;
                let generate = generate_fn(task, &param.ty, &p);
                extract_stmts.push(quote_spanned! {ty.span()=>
                    let #var = {
                        #generate
                        <#ty>::new(&__ctx, __generate)
                    };
                });
                call_args.push(quote!(#var));
            }
            ParamKind::Extractor => {
                let var = format_ident!("__extract_{}", i);
                let ty = &param.ty;
                extract_stmts.push(quote_spanned! {ty.span()=>
                    let #var = <#ty as #p::FromTaskContext>::from_task_context(&__ctx).await?;
                });
                checks.push(quote_spanned! {ty.span()=>
                    __problems.extend(<#ty as #p::FromTaskContext>::check(__app));
                });
                call_args.push(quote!(#var));
            }
        }
    }
    let invoke = if task.is_async() {
        quote!(let __out = #ident.run(#(#call_args),*).await;)
    } else {
        quote!(let __out = #p::run_blocking(&__ctx, move || #ident.run(#(#call_args),*)).await?;)
    };
    let kind = if task.is_async() {
        quote!(#p::TaskKind::Async)
    } else {
        quote!(#p::TaskKind::Sync)
    };
    let shared = task.flavor == Flavor::Shared;
    let router = match &task.router {
        Some(r) => quote!(::core::option::Option::Some(&#r)),
        None => quote!(::core::option::Option::None),
    };
    let options = options(task, &fn_output_ty, &p);
    let sig_span = sig.span();
    let handler = quote_spanned! {sig_span=>
        #[allow(clippy::let_unit_value, clippy::unit_arg)]
        fn __handler(__ctx: #p::TaskContext, __payload: #p::Payload) -> #p::BoxFuture<'static, ::core::result::Result<#p::Payload, #p::TaskError>> {
            ::std::boxed::Box::pin(async move {
                let __args: #args_ident = #p::decode_args(&__ctx, &__payload)?;
                #(#extract_stmts)*
                #invoke
                let __out = #into_result?;
                #[allow(unused_imports)]
                use #p::output::{OutputNever as _, OutputReal as _};
                (&#p::output::Out::of(&__out)).qtasks_encode(&__ctx, &__out)
            })
        }
    };
    let yielded = task
        .params
        .iter()
        .find_map(|p| yield_types(&p.ty))
        .map(|(item, _)| quote!(#item))
        .unwrap_or_else(|| quote!(()));
    // A sync #[shared_task] without `awaiting` gets a blocking handle, usable outside any
    // async runtime; every other task's handle is async.
    let blocking_handle =
        task.flavor == Flavor::Shared && !task.is_async() && task.awaiting.is_none();
    let add_task_fn = if blocking_handle {
        let doc = format!("Enqueues task `{name}` on the current app, blocking the thread (usable outside an async runtime); returns it with status `new`. Declare the task with `awaiting` for an async handle.");
        quote! {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            #vis fn add_task(&self, #( #field_names: #field_types ),*) -> #p::Result<#p::Task<#output_ty>> {
                self.call(#( #field_names ),*).add_task_blocking()
            }
        }
    } else {
        let doc =
            format!("Enqueues task `{name}` on the current app; returns it with status `new`.");
        quote! {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            #vis async fn add_task(&self, #( #field_names: #field_types ),*) -> #p::Result<#p::Task<#output_ty>> {
                self.call(#( #field_names ),*).add_task().await
            }
        }
    };
    let call_doc = format!("A pre-built call of task `{name}`: set `.priority(..)`, `.timeout(..)`, `.on(&app)`, then `.add_task()`.");
    let struct_doc = if docs.is_empty() {
        let text = format!("Task `{name}`.");
        quote!(#[doc = #text])
    } else {
        quote!(#(#docs)*)
    };
    let args_doc = format!("The arguments of task `{name}`.");

    quote! {
        #struct_doc
        #(#cfgs)*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #ident;

        #[doc = #args_doc]
        #[doc(hidden)]
        #(#cfgs)*
        #[allow(non_camel_case_types)]
        #[derive(#p::serde::Serialize, #p::serde::Deserialize)]
        #[serde(crate = "::qtasks::__private::serde")]
        #vis struct #args_ident {
            #( #field_attrs #vis #field_names: #field_types, )*
        }

        #(#cfgs)*
        #[allow(non_snake_case)]
        impl #args_ident {
            #(#field_fns)*
        }

        #(#cfgs)*
        impl #ident {
            #[doc = #run_doc]
            #(#other_attrs)*
            #[allow(clippy::too_many_arguments, clippy::unused_async)]
            #vis #asyncness fn run(&self, #inputs) #output #body

            #[doc = #call_doc]
            #[allow(clippy::too_many_arguments)]
            #vis fn call(&self, #( #field_names: #field_types ),*) -> #p::TaskCall<#ident> {
                #p::TaskCall::new(#args_ident { #( #field_names ),* })
            }

            #add_task_fn
        }

        #(#cfgs)*
        const _: fn() = || {
            #(#payload_asserts)*
            #(#output_asserts)*
        };


        #(#cfgs)*
        impl #p::TaskDef for #ident {
            type Args = #args_ident;
            type Output = #output_ty;
            type Yielded = #yielded;
            fn entry() -> &'static #p::TaskEntry {
                &#entry_ident
            }
        }

        #(#cfgs)*
        #[#p::linkme::distributed_slice(#p::TASKS)]
        #[linkme(crate = ::qtasks::__private::linkme)]
        #[allow(non_upper_case_globals)]
        static #entry_ident: #p::TaskEntry = #p::TaskEntry {
            name: #name,
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            kind: #kind,
            shared: #shared,
            router: #router,
            signature: #signature,
            params: &[#(#params),*],
            output: #output_str,
            options: #options,
            check: {
                fn __check(__app: &#p::App) -> ::std::vec::Vec<#p::Missing> {
                    #[allow(unused_mut)]
                    let mut __problems = ::std::vec::Vec::new();
                    #(#checks)*
                    __problems
                }
                __check
            },
            handler: {
                #handler
                __handler
            },
        };
    }
}

/// `fn __generate(item: Y) -> BoxFuture<'static, R>`: the task's `generate_handler` (sync or
/// async) as the `Yield` parameter calls it; without a handler, the reply is `()`.
fn generate_fn(task: &TaskModel, ty: &syn::Type, p: &TokenStream) -> TokenStream {
    let Some((item, reply)) = yield_types(ty) else {
        return TokenStream::new();
    };
    let reply = reply.map(|r| quote!(#r)).unwrap_or_else(|| quote!(()));
    match &task.generate_handler {
        Some(handler) => quote_spanned! {handler.span()=>
            fn __generate(__item: #item) -> #p::BoxFuture<'static, #reply> {
                #[allow(unused_imports)]
                use #p::reply::{FutureKind as _, ValueKind as _};
                let __reply = #handler(__item);
                let __kind = (&__reply).qtasks_reply_kind();
                ::std::boxed::Box::pin(__kind.into_reply(__reply))
            }
        },
        None => quote! {
            fn __generate(_: #item) -> #p::BoxFuture<'static, #reply> {
                ::std::boxed::Box::pin(async {})
            }
        },
    }
}

/// A type (or any tokens) as a person writes it: `Result<u8, KeyError>`, not the token
/// stream's `Result < u8 , KeyError >`.
pub(crate) fn type_text(tokens: &impl ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
    ] {
        text = text.replace(from, to);
    }
    text
}

fn path_str(path: &syn::Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// A `Duration` from a number of seconds written as a literal (the model accepts only
/// integer and float literals), computed here so the generated code is a constant.
fn seconds(expr: &syn::Expr, p: &TokenStream) -> TokenStream {
    let secs = match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse::<f64>().ok(),
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Float(f),
            ..
        }) => f.base10_parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(secs) if (0.0..1e10).contains(&secs) => {
            let nanos = (secs * 1e9).round() as u64;
            quote!(#p::Duration::from_nanos(#nanos))
        }
        _ => syn::Error::new(
            expr.span(),
            "expected a number of seconds between 0 and 10^10, such as 30 or 0.5",
        )
        .to_compile_error(),
    }
}

fn options(task: &TaskModel, fn_output_ty: &TokenStream, p: &TokenStream) -> TokenStream {
    let mut fields = Vec::new();
    if let Some(pr) = &task.priority {
        fields.push(quote!(priority: ::core::option::Option::Some(#pr),));
    }
    if task.echo.is_some() {
        fields.push(quote!(echo: true,));
    }
    if let Some(mt) = &task.max_time {
        let d = seconds(mt, p);
        fields.push(quote!(max_time: ::core::option::Option::Some(#d),));
    }
    if let Some(r) = &task.retry {
        fields.push(quote!(retry: #r,));
    }
    if !task.retry_on.is_empty() {
        let names = task.retry_on.iter().map(path_str);
        let tests = task.retry_on.iter().map(|ty| {
            quote_spanned! {ty.span()=> #p::error_is::<#ty>(__err) }
        });
        fields.push(quote! {
            retry_on: ::core::option::Option::Some(#p::RetryOn {
                names: &[#(#names),*],
                matches: {
                    fn __retry_on(__err: &#p::TaskError) -> bool {
                        #(#tests)||*
                    }
                    __retry_on
                },
            }),
        });
    }
    if task.retry_backoff.is_some()
        || task.retry_delay.is_some()
        || task.retry_max_delay.is_some()
        || task.retry_jitter.is_some()
    {
        let fixed = task
            .retry_backoff
            .as_ref()
            .is_some_and(|b| b.value() == "fixed");
        let delay = match &task.retry_delay {
            Some(d) => seconds(d, p),
            None => quote!(#p::Duration::from_millis(100)),
        };
        let backoff = if fixed {
            quote!(#p::Backoff::Fixed(#delay))
        } else {
            let max = match &task.retry_max_delay {
                Some(d) => seconds(d, p),
                None => quote!(#p::Duration::from_secs(60)),
            };
            let jitter = task.retry_jitter.as_ref().is_none_or(|b| b.value);
            quote!(#p::Backoff::Exponential { base: #delay, max: #max, jitter: #jitter })
        };
        fields.push(quote!(backoff: #backoff,));
    }
    if let Some(decode) = &task.decode {
        let name = path_str(decode);
        let decoded_ty = match &task.decode_output {
            Some(ty) => quote_spanned!(ty.span()=> : #ty),
            None => TokenStream::new(),
        };
        // What the function returns is stored: it must be serializable (asserted at the type
        // when written, else at the function's path).
        let check_decoded = match &task.decode_output {
            Some(_) => TokenStream::new(),
            None => quote_spanned! {decode.span()=>
                ::qtasks::__private::assert_output_value(&__decoded);
            },
        };
        let apply = quote_spanned! {decode.span()=>
            fn __decode(__ctx: &#p::TaskContext, __result: #p::Payload) -> ::core::result::Result<#p::Payload, #p::TaskError> {
                #[allow(unused_imports)]
                use #p::output::{OutputNever as _, OutputReal as _};
                let __value: #fn_output_ty = (&#p::output::Out::<#fn_output_ty>::new()).qtasks_decode(__ctx, &__result)?;
                let __decoded #decoded_ty = #decode(__value);
                #check_decoded
                (&#p::output::Out::of(&__decoded)).qtasks_encode(__ctx, &__decoded)
            }
        };
        fields.push(quote! {
            transform: ::core::option::Option::Some(#p::ResultTransform {
                name: #name,
                apply: { #apply __decode },
            }),
        });
    }
    if let Some(handler) = &task.generate_handler {
        let name = path_str(handler);
        fields.push(quote!(generate_handler: ::core::option::Option::Some(#name),));
    }
    fields.extend(flow_options(task, p));
    if let Some(executor) = &task.executor {
        let name = path_str(executor);
        let value = quote_spanned!(executor.span()=> #p::executor(&#executor));
        fields.push(quote! {
            executor: ::core::option::Option::Some({
                const __EXECUTOR: &'static dyn #p::TaskExecutor = #value;
                fn __execute(__ctx: #p::TaskContext, __args: #p::Payload) -> #p::BoxFuture<'static, #p::Outcome> {
                    #p::run_executor(__EXECUTOR, __ctx, __args)
                }
                #p::ExecutorRef { name: #name, execute: __execute }
            }),
        });
    }
    for (key, list) in [
        (quote!(middlewares_before), &task.middlewares_before),
        (quote!(middlewares_after), &task.middlewares_after),
    ] {
        if list.is_empty() {
            continue;
        }
        let refs = list.iter().map(|m| {
            let name = path_str(m);
            let value = quote_spanned!(m.span()=> #p::middleware(&#m));
            quote!({
                const __MIDDLEWARE: &'static dyn #p::TaskMiddleware = #value;
                fn __before<'a>(__ctx: &'a #p::TaskContext, __args: &'a mut #p::Payload) -> #p::BoxFuture<'a, ::core::result::Result<(), #p::TaskError>> {
                    __MIDDLEWARE.before(__ctx, __args)
                }
                fn __after<'a>(__ctx: &'a #p::TaskContext, __result: &'a mut ::core::result::Result<#p::Payload, #p::TaskError>) -> #p::BoxFuture<'a, ()> {
                    __MIDDLEWARE.after(__ctx, __result)
                }
                #p::MiddlewareRef { name: #name, before: __before, after: __after }
            })
        });
        fields.push(quote!(#key: &[#(#refs),*],));
    }
    if let Some(d) = &task.description {
        fields.push(quote!(description: ::core::option::Option::Some(#d),));
    }
    if !task.tags.is_empty() {
        let tags = &task.tags;
        fields.push(quote!(tags: &[#(#tags),*],));
    }
    if !task.extra.is_empty() {
        let pairs = task.extra.iter().map(|(k, v)| {
            let key = k.to_string();
            let value = match v {
                Extra::Str(s) => quote!(#p::ExtraValue::Str(#s)),
                Extra::Int(i) => quote!(#p::ExtraValue::Int(#i)),
                Extra::Float(f) => quote!(#p::ExtraValue::Float(#f)),
                Extra::Bool(b) => quote!(#p::ExtraValue::Bool(#b)),
            };
            quote!((#key, #value))
        });
        fields.push(quote!(extra: &[#(#pairs),*],));
    }
    quote!(#p::TaskOptions { #(#fields)* ..#p::TaskOptions::DEFAULT })
}

/// The `unique` and `limits` fields of a task's options (`unique`, `unique_for`, `debounce`,
/// `concurrency`, `concurrency_key`, `rate_limit`, `rate_limit_key`).
fn flow_options(task: &TaskModel, p: &TokenStream) -> Vec<TokenStream> {
    let mut fields = Vec::new();
    let names = |idents: &[syn::Ident]| {
        let names = idents.iter().map(|i| i.to_string());
        quote!(&[#(#names),*])
    };
    let some_duration = |expr: &Option<syn::Expr>| match expr {
        Some(e) => {
            let d = seconds(e, p);
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    if task.unique.is_some() || task.debounce.is_some() || task.throttle.is_some() {
        let key = match &task.unique {
            Some(Unique::AllArgs) => quote!(#p::KeyFrom::AllArgs),
            Some(Unique::Args(args)) => {
                let list = names(args);
                quote!(#p::KeyFrom::Args(#list))
            }
            None => quote!(#p::KeyFrom::Name),
        };
        let hold_after = match &task.unique_for {
            Some(e) => seconds(e, p),
            None => quote!(#p::Duration::ZERO),
        };
        let debounce = some_duration(&task.debounce);
        let throttle = some_duration(&task.throttle);
        fields.push(quote! {
            unique: ::core::option::Option::Some(#p::Unique {
                key: #key,
                hold_after: #hold_after,
                throttle: #throttle,
                debounce: #debounce,
            }),
        });
    }
    if let Some(queue) = &task.queue {
        fields.push(quote!(queue: ::core::option::Option::Some(#queue),));
    }
    if task.concurrency.is_some() || task.rate_limit.is_some() {
        let concurrency = match &task.concurrency {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        let key_list = |key: &Option<Vec<syn::Ident>>| match key {
            Some(idents) => {
                let list = names(idents);
                quote!(::core::option::Option::Some(#list))
            }
            None => quote!(::core::option::Option::None),
        };
        let concurrency_key = key_list(&task.concurrency_key);
        let rate_key = key_list(&task.rate_limit_key);
        let rate = match &task.rate_limit {
            Some((_, permits, per)) => quote! {
                ::core::option::Option::Some(#p::Rate {
                    permits: #permits,
                    per: #p::Duration::from_secs(#per),
                })
            },
            None => quote!(::core::option::Option::None),
        };
        fields.push(quote! {
            limits: #p::Limits {
                concurrency: #concurrency,
                concurrency_key: #concurrency_key,
                rate: #rate,
                rate_key: #rate_key,
            },
        });
    }
    fields
}
