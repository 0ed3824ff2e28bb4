//! Parse: the attribute's `key`, `key = value`, `key = [..]` and `key = path -> Type` items,
//! as written.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token, Type};

/// One item of the attribute.
pub(crate) struct Arg {
    pub key: Ident,
    pub value: Option<Expr>,
    /// The `-> Type` after a path value (`decode = as_text -> String`).
    pub ret: Option<(Token![->], Type)>,
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        let mut ret = None;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            // `path -> Type`: a path followed by an arrow, which an expression cannot have.
            let fork = input.fork();
            if fork.parse::<syn::Path>().is_ok() && fork.peek(Token![->]) {
                let path: syn::Path = input.parse()?;
                let arrow: Token![->] = input.parse()?;
                let ty: Type = input.parse()?;
                ret = Some((arrow, ty));
                Some(Expr::Path(syn::ExprPath {
                    attrs: Vec::new(),
                    qself: None,
                    path,
                }))
            } else {
                Some(input.parse::<Expr>()?)
            }
        } else {
            None
        };
        Ok(Arg { key, value, ret })
    }
}

/// Parses `key, key = value, key = [a, b]`.
pub(crate) fn parse_args(attr: TokenStream) -> syn::Result<Vec<Arg>> {
    let parser = Punctuated::<Arg, Token![,]>::parse_terminated;
    Ok(syn::parse::Parser::parse2(parser, attr)?
        .into_iter()
        .collect())
}
