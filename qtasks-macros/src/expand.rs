//! Expand: the code a task turns into.
//!
//! For `async fn add(a: i64, b: i64) -> i64` this writes:
//! - `struct add;`, a zero-sized value with the function's name, whose `run` method holds the
//!   original body (callable directly in unit tests: `add.run(2, 3).await`), and whose `call`
//!   and `add_task` methods build and enqueue typed calls;
//! - `struct __QtasksArgs_add { a: i64, b: i64 }`, the payload (a named map on the wire);
//! - `impl TaskDef for add` and a `TaskSpec` element of the `TASKS` distributed slice, whose
//!   handler decodes the arguments, builds the extractors, calls `run` (a sync function on the
//!   blocking pool) and encodes the output.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::model::{Flavor, ParamKind, Return, TaskModel};

/// On error: the errors, plus the function as written so the rest of the crate still
/// type-checks against it (one mistake, one error).
pub fn fallback(func: &syn::ItemFn, err: syn::Error) -> TokenStream {
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

pub fn expand(task: &TaskModel) -> TokenStream {
    let p = quote!(::qtasks::__private);
    let func = &task.func;
    let vis = &func.vis;
    let ident = task.ident();
    let name = match &task.name {
        Some(n) => n.value(),
        None => ident.to_string(),
    };
    let args_ident = format_ident!("__QtasksArgs_{}", ident);
    let spec_ident = format_ident!("__QTASKS_SPEC_{}", ident);
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
        .map(|(id, ty)| {
            format!("{}: {}", id, ty.to_token_stream())
                .replace(" < ", "<")
                .replace(" >", ">")
        })
        .collect::<Vec<_>>()
        .join(", ");
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
    let output_str = output_ty.to_string();

    // Handler: decode, extract, call, encode.
    let mut extract_stmts = Vec::new();
    let mut call_args = Vec::new();
    let mut checks = Vec::new();
    for (i, param) in task.params.iter().enumerate() {
        match &param.kind {
            ParamKind::Payload(id) => call_args.push(quote!(__args.#id)),
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
    let options = options(task, &p);
    let sig_span = sig.span();
    let handler = quote_spanned! {sig_span=>
        #[allow(clippy::let_unit_value, clippy::unit_arg)]
        fn __handler(__ctx: #p::TaskContext, __payload: #p::Payload) -> #p::BoxFuture<'static, ::core::result::Result<#p::Payload, #p::TaskError>> {
            ::std::boxed::Box::pin(async move {
                let __args: #args_ident = #p::decode_args(&__ctx, &__payload)?;
                #(#extract_stmts)*
                #invoke
                let __out = #into_result?;
                #p::encode_output(&__ctx, &__out)
            })
        }
    };
    let add_task_doc =
        format!("Enqueues task `{name}` on the current app; returns it with status `new`.");
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
            #( #vis #field_names: #field_types, )*
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

            #[doc = #add_task_doc]
            #[allow(clippy::too_many_arguments)]
            #vis async fn add_task(&self, #( #field_names: #field_types ),*) -> #p::Result<#p::Task<#output_ty>> {
                self.call(#( #field_names ),*).add_task().await
            }
        }

        #(#cfgs)*
        impl #p::TaskDef for #ident {
            type Args = #args_ident;
            type Output = #output_ty;
            fn spec() -> &'static #p::TaskSpec {
                &#spec_ident
            }
        }

        #(#cfgs)*
        const _: fn() = || {
            #(#payload_asserts)*
        };

        #(#cfgs)*
        #[#p::linkme::distributed_slice(#p::TASKS)]
        #[linkme(crate = ::qtasks::__private::linkme)]
        #[allow(non_upper_case_globals)]
        static #spec_ident: #p::TaskSpec = #p::TaskSpec {
            name: #name,
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            kind: #kind,
            shared: #shared,
            router: #router,
            signature: #signature,
            output: #output_str,
            options: #options,
            check: {
                fn __check(__app: &#p::App) -> ::std::vec::Vec<::std::string::String> {
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

fn options(task: &TaskModel, p: &TokenStream) -> TokenStream {
    let mut fields = Vec::new();
    if let Some(pr) = &task.priority {
        fields.push(quote!(priority: ::core::option::Option::Some(#pr),));
    }
    if task.echo.is_some() {
        fields.push(quote!(echo: true,));
    }
    if let Some(mt) = &task.max_time {
        let secs = quote_spanned!(mt.span()=> (#mt) as f64);
        fields.push(quote!(max_time: ::core::option::Option::Some(#p::Duration::from_nanos((#secs * 1e9) as u64)),));
    }
    if let Some(r) = &task.retry {
        fields.push(quote!(retry: #r,));
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
                syn::Lit::Str(s) => s.value(),
                other => other.to_token_stream().to_string(),
            };
            quote!((#key, #value))
        });
        fields.push(quote!(extra: &[#(#pairs),*],));
    }
    let _ = Span::call_site();
    quote!(#p::TaskOptions { #(#fields)* ..#p::TaskOptions::DEFAULT })
}
