//! `#[derive(Model)]` and `#[derive(EmbeddedModel)]` for cipherdoc.
//!
//! The generated code names only `::cipherdoc::model::...`; see that module
//! for what is generated and which attributes exist. Rules the derive can see
//! are compile errors pointing at the field; type-dependent rules are trait
//! bounds (`EqualityQueryable`, `RangeQueryable`, ...) spanned at the field's
//! type, so their messages come from the traits' `on_unimplemented`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Data, DeriveInput, Expr, ExprLit, ExprUnary, Fields, GenericArgument, Ident, Lit, LitBool,
    LitInt, LitStr, PathArguments, Type, UnOp, Visibility, meta::ParseNestedMeta,
    parse_macro_input,
};

/// Derives `cipherdoc::model::Model`: schema, typed field paths, BSON
/// conversion. Needs `#[model(app = "...")]` and a field `id: ObjectId`.
#[proc_macro_derive(Model, attributes(model, field, encrypted))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, Derive::Model)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `cipherdoc::model::EmbeddedModel` (and `FieldValue`, so the
/// struct can be a field of another model).
#[proc_macro_derive(EmbeddedModel, attributes(model, field, encrypted))]
pub fn derive_embedded_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, Derive::Embedded)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Which derive is expanding: they share the field schema, the typed field
/// paths and the BSON conversion, and differ in the trait they implement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Derive {
    /// `#[derive(Model)]`: a collection's documents, with an `id`.
    Model,
    /// `#[derive(EmbeddedModel)]`: a sub-document of a model.
    Embedded,
}

impl Derive {
    /// The derive's name, for messages.
    fn name(self) -> &'static str {
        match self {
            Derive::Model => "Model",
            Derive::Embedded => "EmbeddedModel",
        }
    }
}

#[derive(Default)]
struct ModelAttrs {
    app: Option<LitStr>,
    collection: Option<LitStr>,
    kms_provider: Option<LitStr>,
}

#[derive(Clone, Copy, PartialEq)]
enum QueryKind {
    Equality,
    Range,
    /// Text search: which of prefix, suffix and substring.
    Text(TextKinds),
}

#[derive(Clone, Copy, PartialEq)]
enum TextKinds {
    Prefix,
    Suffix,
    PrefixSuffix,
    Substring,
}

impl TextKinds {
    /// `"prefix"`, `"suffix"`, `"substring"`, `"prefix, suffix"` (either
    /// order, any spacing).
    fn parse(s: &str) -> Option<Self> {
        let mut parts: Vec<&str> = s.split(',').map(str::trim).collect();
        parts.sort_unstable();
        match parts.as_slice() {
            ["prefix"] => Some(Self::Prefix),
            ["suffix"] => Some(Self::Suffix),
            ["prefix", "suffix"] => Some(Self::PrefixSuffix),
            ["substring"] => Some(Self::Substring),
            _ => None,
        }
    }
}

struct Encrypted {
    span: Span,
    queries: Option<(QueryKind, LitStr)>,
    contention: Option<(i64, Span)>,
    min: Option<Expr>,
    max: Option<Expr>,
    sparsity: Option<(i64, Span)>,
    trim_factor: Option<(i64, Span)>,
    precision: Option<(i64, Span)>,
    kms_provider: Option<LitStr>,
    min_query_length: Option<(i64, Span)>,
    max_query_length: Option<(i64, Span)>,
    case_sensitive: Option<LitBool>,
    diacritic_sensitive: Option<LitBool>,
}

struct FieldDef {
    ident: Ident,
    ty: Type,
    vis: Visibility,
    key: String,
    db_column: Option<LitStr>,
    max_length: Option<LitInt>,
    max_digits: Option<LitInt>,
    decimal_places: Option<LitInt>,
    unique: Option<Span>,
    index: Option<Span>,
    kind: Option<LitStr>,
    encrypted: Option<Encrypted>,
}

fn err(span: Span, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, msg)
}

/// An integer literal, possibly negated (`contention = -1` must be parsed to
/// be refused with a clear message).
fn int_value(meta: &ParseNestedMeta<'_>) -> syn::Result<(i64, Span)> {
    let expr: Expr = meta.value()?.parse()?;
    let span = expr.span();
    let (neg, lit) = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(l), ..
        }) => (false, l),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => match &**inner {
            Expr::Lit(ExprLit {
                lit: Lit::Int(l), ..
            }) => (true, l),
            _ => return Err(err(span, "expected an integer literal")),
        },
        _ => return Err(err(span, "expected an integer literal")),
    };
    let v: i64 = lit.base10_parse()?;
    Ok((if neg { -v } else { v }, span))
}

fn parse_model_attrs(input: &DeriveInput, derive: Derive) -> syn::Result<ModelAttrs> {
    let mut out = ModelAttrs::default();
    for attr in &input.attrs {
        if !attr.path().is_ident("model") {
            continue;
        }
        if derive == Derive::Embedded {
            return Err(syn::Error::new_spanned(
                attr,
                "#[model(...)] belongs on a #[derive(Model)]; an embedded model has no app or collection",
            ));
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("app") {
                out.app = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("collection") {
                out.collection = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("kms_provider") {
                out.kms_provider = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error(
                    "unknown #[model] option; expected `app`, `collection` or `kms_provider`",
                ));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Parses a `#[field]` option shared with `#[encrypted]`; `Ok(false)` when
/// `meta` is not one.
fn field_option(def: &mut FieldDef, meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    if meta.path.is_ident("max_length") {
        def.max_length = Some(meta.value()?.parse()?);
    } else if meta.path.is_ident("max_digits") {
        def.max_digits = Some(meta.value()?.parse()?);
    } else if meta.path.is_ident("decimal_places") {
        def.decimal_places = Some(meta.value()?.parse()?);
    } else if meta.path.is_ident("kind") {
        let lit: LitStr = meta.value()?.parse()?;
        if !matches!(lit.value().as_str(), "char" | "text" | "email" | "url") {
            return Err(err(
                lit.span(),
                "unknown field kind; expected \"char\", \"text\", \"email\" or \"url\"",
            ));
        }
        def.kind = Some(lit);
    } else {
        return Ok(false);
    }
    Ok(true)
}

fn parse_field(field: &syn::Field) -> syn::Result<FieldDef> {
    let ident = field
        .ident
        .clone()
        .ok_or_else(|| syn::Error::new_spanned(field, "fields must be named"))?;
    let mut def = FieldDef {
        key: ident.to_string(),
        ident,
        ty: field.ty.clone(),
        vis: field.vis.clone(),
        db_column: None,
        max_length: None,
        max_digits: None,
        decimal_places: None,
        unique: None,
        index: None,
        kind: None,
        encrypted: None,
    };
    for attr in &field.attrs {
        if attr.path().is_ident("field") {
            attr.parse_nested_meta(|meta| {
                if field_option(&mut def, &meta)? {
                } else if meta.path.is_ident("unique") {
                    def.unique = Some(meta.path.span());
                } else if meta.path.is_ident("index") {
                    def.index = Some(meta.path.span());
                } else if meta.path.is_ident("db_column") {
                    def.db_column = Some(meta.value()?.parse()?);
                } else {
                    return Err(meta.error(
                        "unknown #[field] option; expected max_length, max_digits, decimal_places, unique, index, kind or db_column",
                    ));
                }
                Ok(())
            })?;
        } else if attr.path().is_ident("encrypted") {
            if def.encrypted.is_some() {
                return Err(syn::Error::new_spanned(attr, "duplicate #[encrypted]"));
            }
            let mut enc = Encrypted {
                span: attr.path().span(),
                queries: None,
                contention: None,
                min: None,
                max: None,
                sparsity: None,
                trim_factor: None,
                precision: None,
                kms_provider: None,
                min_query_length: None,
                max_query_length: None,
                case_sensitive: None,
                diacritic_sensitive: None,
            };
            if let syn::Meta::List(_) = &attr.meta {
                attr.parse_nested_meta(|meta| {
                    if field_option(&mut def, &meta)? {
                    } else if meta.path.is_ident("queries") {
                        let lit: LitStr = meta.value()?.parse()?;
                        let v = lit.value();
                        let kind = match v.as_str() {
                            "equality" => QueryKind::Equality,
                            "range" => QueryKind::Range,
                            other => match TextKinds::parse(other) {
                                Some(t) => QueryKind::Text(t),
                                None if other.contains("substring") => return Err(err(lit.span(), "substring cannot be combined with prefix or suffix (a MongoDB limitation); use \"substring\" alone")),
                                None => return Err(err(lit.span(), "unknown query type; expected \"equality\", \"range\", \"prefix\", \"suffix\", \"prefix, suffix\" or \"substring\"")),
                            },
                        };
                        enc.queries = Some((kind, lit));
                    } else if meta.path.is_ident("contention") {
                        enc.contention = Some(int_value(&meta)?);
                    } else if meta.path.is_ident("sparsity") {
                        enc.sparsity = Some(int_value(&meta)?);
                    } else if meta.path.is_ident("trim_factor") {
                        enc.trim_factor = Some(int_value(&meta)?);
                    } else if meta.path.is_ident("precision") {
                        enc.precision = Some(int_value(&meta)?);
                    } else if meta.path.is_ident("min") {
                        enc.min = Some(meta.value()?.parse()?);
                    } else if meta.path.is_ident("max") {
                        enc.max = Some(meta.value()?.parse()?);
                    } else if meta.path.is_ident("kms_provider") {
                        enc.kms_provider = Some(meta.value()?.parse()?);
                    } else if meta.path.is_ident("min_query_length") {
                        enc.min_query_length = Some(int_value(&meta)?);
                    } else if meta.path.is_ident("max_query_length") {
                        enc.max_query_length = Some(int_value(&meta)?);
                    } else if meta.path.is_ident("case_sensitive") {
                        enc.case_sensitive = Some(meta.value()?.parse()?);
                    } else if meta.path.is_ident("diacritic_sensitive") {
                        enc.diacritic_sensitive = Some(meta.value()?.parse()?);
                    } else if meta.path.is_ident("unique") || meta.path.is_ident("index") {
                        return Err(meta.error("encrypted fields can't be unique or indexed (a MongoDB limitation)"));
                    } else {
                        return Err(meta.error(
                            "unknown #[encrypted] option; expected queries, contention, min, max, sparsity, trim_factor, precision, min_query_length, max_query_length, case_sensitive, diacritic_sensitive, kms_provider, max_length, max_digits, decimal_places or kind",
                        ));
                    }
                    Ok(())
                })?;
            }
            def.encrypted = Some(enc);
        }
    }
    if let Some(c) = &def.db_column {
        def.key = c.value();
        if def.key.is_empty() || def.key.contains('.') || def.key.starts_with('$') {
            return Err(err(
                c.span(),
                "db_column must be a non-empty BSON key without '.' and not starting with '$'",
            ));
        }
    }
    Ok(def)
}

/// The last path segment of a type and its single generic argument, if any.
fn last_segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let arg = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((seg.ident.to_string(), arg))
}

fn is_option(ty: &Type) -> bool {
    matches!(last_segment(ty), Some((name, Some(_))) if name == "Option")
}

/// `Vec<T>` with `T` other than `u8`: an array (`Vec<u8>` is binary).
fn is_array(ty: &Type) -> bool {
    match last_segment(ty) {
        Some((name, Some(inner))) if name == "Vec" => {
            !matches!(last_segment(inner), Some((n, None)) if n == "u8")
        }
        _ => false,
    }
}

/// Checks the rules visible in the syntax; returns the compile-time trait
/// checks to emit for this field.
fn check_field(def: &FieldDef, derive: Derive) -> syn::Result<TokenStream2> {
    let ty = &def.ty;
    let name = &def.ident;
    let mut checks = TokenStream2::new();
    if def.kind.is_some() {
        checks.extend(
            quote_spanned! {ty.span()=> ::cipherdoc::model::__private::assert_text::<#ty>(); },
        );
    }
    let Some(enc) = &def.encrypted else {
        return Ok(checks);
    };
    if derive == Derive::Model && def.ident == "id" {
        return Err(err(enc.span, "the primary key `id` cannot be encrypted"));
    }
    if is_option(ty) {
        return Err(syn::Error::new_spanned(
            ty,
            format!(
                "encrypted field `{name}` cannot be `Option<_>`: MongoDB cannot encrypt null values; make it non-optional or remove #[encrypted]"
            ),
        ));
    }
    if let Some(span) = def.unique {
        return Err(err(
            span,
            format!(
                "encrypted field `{name}` cannot be unique: encrypted fields can't be part of a unique constraint; remove `unique` or #[encrypted]"
            ),
        ));
    }
    if let Some(span) = def.index {
        return Err(err(
            span,
            format!(
                "encrypted field `{name}` cannot be indexed: encrypted fields can't be indexed; remove `index` (use `queries` to query it) or remove #[encrypted]"
            ),
        ));
    }
    let Some((kind, lit)) = &enc.queries else {
        for (opt, span) in [
            ("contention", enc.contention.map(|c| c.1)),
            ("sparsity", enc.sparsity.map(|c| c.1)),
            ("trim_factor", enc.trim_factor.map(|c| c.1)),
            ("precision", enc.precision.map(|c| c.1)),
            ("min", enc.min.as_ref().map(Spanned::span)),
            ("max", enc.max.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                return Err(err(
                    span,
                    format!(
                        "`{opt}` on field `{name}` needs `queries = \"equality\"` or `queries = \"range\"`"
                    ),
                ));
            }
        }
        refuse_text_options(enc, |opt| {
            format!(
                "`{opt}` on field `{name}` needs `queries = \"prefix\"`, \"suffix\", \"prefix, suffix\" or \"substring\""
            )
        })?;
        return Ok(checks);
    };
    if !matches!(kind, QueryKind::Text(_)) {
        refuse_text_options(enc, |opt| {
            format!(
                "`{opt}` is a text-search option; field `{name}` has `queries = \"{}\"`",
                lit.value()
            )
        })?;
    }
    if is_array(ty) {
        return Err(err(
            lit.span(),
            format!(
                "encrypted array field `{name}` cannot have `queries` (a MongoDB limitation); remove `queries`"
            ),
        ));
    }
    if let Some((c, span)) = enc.contention {
        if c < 0 {
            return Err(err(span, "contention must be >= 0"));
        }
    }
    match kind {
        QueryKind::Equality => {
            for (opt, span) in [
                ("sparsity", enc.sparsity.map(|c| c.1)),
                ("trim_factor", enc.trim_factor.map(|c| c.1)),
                ("precision", enc.precision.map(|c| c.1)),
                ("min", enc.min.as_ref().map(Spanned::span)),
                ("max", enc.max.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    return Err(err(
                        span,
                        format!(
                            "`{opt}` is a range option; field `{name}` has `queries = \"equality\"`"
                        ),
                    ));
                }
            }
            checks.extend(quote_spanned! {ty.span()=> ::cipherdoc::model::__private::assert_equality::<#ty>(); });
        }
        QueryKind::Range => {
            if enc.min.is_none() || enc.max.is_none() {
                let missing = if enc.min.is_none() { "min" } else { "max" };
                return Err(err(
                    lit.span(),
                    format!(
                        "range field `{name}` needs both `min` and `max` (of the field's type); `{missing}` is missing"
                    ),
                ));
            }
            if let Some((s, span)) = enc.sparsity {
                if !(1..=4).contains(&s) {
                    return Err(err(span, "sparsity must be from 1 to 4"));
                }
            }
            if let Some((t, span)) = enc.trim_factor {
                if t < 0 || i32::try_from(t).is_err() {
                    return Err(err(span, "trim_factor must be a non-negative i32"));
                }
            }
            checks.extend(
                quote_spanned! {ty.span()=> ::cipherdoc::model::__private::assert_range::<#ty>(); },
            );
            match enc.precision {
                Some((p, span)) => {
                    if p < 0 || i32::try_from(p).is_err() {
                        return Err(err(span, "precision must be a non-negative i32"));
                    }
                    checks.extend(quote_spanned! {span=> ::cipherdoc::model::__private::assert_precision::<#ty>(); });
                }
                None => {
                    checks.extend(quote_spanned! {ty.span()=> ::cipherdoc::model::__private::assert_no_precision::<#ty>(); });
                }
            }
        }
        QueryKind::Text(kinds) => {
            check_text_field(def, enc, *kinds, lit)?;
            checks.extend(
                quote_spanned! {ty.span()=> ::cipherdoc::model::__private::assert_text::<#ty>(); },
            );
        }
    }
    Ok(checks)
}

/// An error at the first text-search option given, if any.
fn refuse_text_options(enc: &Encrypted, message: impl Fn(&str) -> String) -> syn::Result<()> {
    match text_option_spans(enc)
        .into_iter()
        .find_map(|(opt, span)| span.map(|s| (opt, s)))
    {
        Some((opt, span)) => Err(err(span, message(opt))),
        None => Ok(()),
    }
}

/// The spans of the text-search options that were given.
fn text_option_spans(enc: &Encrypted) -> [(&'static str, Option<Span>); 4] {
    [
        ("min_query_length", enc.min_query_length.map(|c| c.1)),
        ("max_query_length", enc.max_query_length.map(|c| c.1)),
        (
            "case_sensitive",
            enc.case_sensitive.as_ref().map(LitBool::span),
        ),
        (
            "diacritic_sensitive",
            enc.diacritic_sensitive.as_ref().map(LitBool::span),
        ),
    ]
}

/// A text-search field: no range options, query lengths `1 <= min <= max`
/// that fit an i32, and for substring a `max_length` (its strMaxLength) of
/// at least `max_query_length`.
fn check_text_field(
    def: &FieldDef,
    enc: &Encrypted,
    kinds: TextKinds,
    lit: &LitStr,
) -> syn::Result<()> {
    let name = &def.ident;
    for (opt, span) in [
        ("sparsity", enc.sparsity.map(|c| c.1)),
        ("trim_factor", enc.trim_factor.map(|c| c.1)),
        ("precision", enc.precision.map(|c| c.1)),
        ("min", enc.min.as_ref().map(Spanned::span)),
        ("max", enc.max.as_ref().map(Spanned::span)),
    ] {
        if let Some(span) = span {
            return Err(err(
                span,
                format!("`{opt}` is a range option; field `{name}` is a text-search field"),
            ));
        }
    }
    let (Some((lo, lo_span)), Some((hi, hi_span))) = (enc.min_query_length, enc.max_query_length)
    else {
        return Err(err(
            lit.span(),
            format!(
                "text-search field `{name}` needs `min_query_length` and `max_query_length` (the shortest and longest query, in characters)"
            ),
        ));
    };
    for (v, span, opt) in [
        (lo, lo_span, "min_query_length"),
        (hi, hi_span, "max_query_length"),
    ] {
        if v < 1 || i32::try_from(v).is_err() {
            return Err(err(span, format!("{opt} must be a positive i32")));
        }
    }
    if hi < lo {
        return Err(err(
            hi_span,
            "max_query_length must be at least min_query_length",
        ));
    }
    if kinds == TextKinds::Substring {
        let Some(ml) = &def.max_length else {
            return Err(err(
                lit.span(),
                format!(
                    "substring field `{name}` needs `max_length` (the longest value it stores, its strMaxLength)"
                ),
            ));
        };
        let ml: i64 = ml.base10_parse()?;
        if ml < hi || i32::try_from(ml).is_err() {
            return Err(err(
                def.max_length.as_ref().map_or(lit.span(), LitInt::span),
                "a substring field's max_length must be an i32 of at least max_query_length",
            ));
        }
    }
    Ok(())
}

fn type_string(ty: &Type) -> String {
    quote!(#ty)
        .to_string()
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
}

fn opt_u32(lit: Option<&LitInt>) -> syn::Result<TokenStream2> {
    if let Some(l) = lit {
        let v: u32 = l.base10_parse()?;
        Ok(quote!(::core::option::Option::Some(#v)))
    } else {
        Ok(quote!(::core::option::Option::None))
    }
}

/// The Rust integer type of a `QueryConfig::Range` option.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IntType {
    I64,
    I32,
}

fn opt_int(v: Option<(i64, Span)>, int: IntType) -> TokenStream2 {
    match v {
        Some((v, _)) if int == IntType::I32 => {
            // Range-checked in check_field.
            let v = i32::try_from(v).unwrap_or(i32::MAX);
            quote!(::core::option::Option::Some(#v))
        }
        Some((v, _)) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// Whether a field is the model's primary key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldRole {
    PrimaryKey,
    Plain,
}

/// The expression building this field's `FieldSchema`.
fn field_schema(def: &FieldDef, role: FieldRole) -> syn::Result<TokenStream2> {
    let ty = &def.ty;
    let key = &def.key;
    let rust_name = def.ident.to_string();
    let rust_type = type_string(ty);
    let m = quote!(::cipherdoc::model);
    let mut sets = TokenStream2::new();
    if def.max_length.is_some() || def.max_digits.is_some() || def.decimal_places.is_some() {
        let ml = opt_u32(def.max_length.as_ref())?;
        let md = opt_u32(def.max_digits.as_ref())?;
        let dp = opt_u32(def.decimal_places.as_ref())?;
        sets.extend(quote! {
            __f.options.max_length = #ml;
            __f.options.max_digits = #md;
            __f.options.decimal_places = #dp;
        });
    }
    if def.unique.is_some() {
        sets.extend(quote!(__f.unique = true;));
    }
    if def.index.is_some() {
        sets.extend(quote!(__f.indexed = true;));
    }
    if role == FieldRole::PrimaryKey {
        sets.extend(quote!(__f.primary_key = true;));
    }
    if let Some(k) = &def.kind {
        let variant = match k.value().as_str() {
            "text" => quote!(Text),
            "email" => quote!(Email),
            "url" => quote!(Url),
            _ => quote!(Char),
        };
        sets.extend(quote!(__f.kind = #m::FieldKind::#variant;));
    }
    if let Some(enc) = &def.encrypted {
        sets.extend(quote!(__f.encrypted = true;));
        if let Some(p) = &enc.kms_provider {
            sets.extend(quote!(__f.kms_provider = ::core::option::Option::Some(::std::string::String::from(#p));));
        }
        let contention = opt_int(enc.contention, IntType::I64);
        match &enc.queries {
            Some((QueryKind::Equality, _)) => sets.extend(quote! {
                __f.queries = ::core::option::Option::Some(#m::QueryConfig::Equality { contention: #contention });
            }),
            Some((QueryKind::Range, _)) => {
                let (Some(min), Some(max)) = (&enc.min, &enc.max) else {
                    return Err(err(enc.span, "range needs min and max"));
                };
                let sparsity = opt_int(enc.sparsity, IntType::I64);
                let precision = opt_int(enc.precision, IntType::I32);
                let trim = opt_int(enc.trim_factor, IntType::I32);
                // The typed `let`s make a bound of the wrong type a compile
                // error at the bound, with the field's type as the reason.
                sets.extend(quote! {
                    let __min: #ty = #min;
                    let __max: #ty = #max;
                    __f.queries = ::core::option::Option::Some(#m::QueryConfig::Range {
                        min: #m::__private::bound::<#ty>(&__min),
                        max: #m::__private::bound::<#ty>(&__max),
                        sparsity: #sparsity,
                        precision: #precision,
                        trim_factor: #trim,
                        contention: #contention,
                    });
                });
            }
            Some((QueryKind::Text(kinds), _)) => {
                // Range-checked in check_text_field.
                let len = |v: Option<(i64, Span)>| v.map_or(0, |(v, _)| u32::try_from(v).unwrap_or(0));
                let (lo, hi) = (len(enc.min_query_length), len(enc.max_query_length));
                let none = quote!(::core::option::Option::None);
                let lengths = quote!(::core::option::Option::Some((#lo, #hi)));
                let (prefix, suffix, substring) = match kinds {
                    TextKinds::Prefix => (lengths, none.clone(), none),
                    TextKinds::Suffix => (none.clone(), lengths, none),
                    TextKinds::PrefixSuffix => (lengths.clone(), lengths, none),
                    TextKinds::Substring => {
                        let ml: u32 = match &def.max_length {
                            Some(l) => l.base10_parse()?,
                            None => 0,
                        };
                        (none.clone(), none, quote!(::core::option::Option::Some((#ml, #lo, #hi))))
                    }
                };
                let case = if enc.case_sensitive.as_ref().is_none_or(LitBool::value) {
                    quote!(#m::__private::CaseSensitivity::Sensitive)
                } else {
                    quote!(#m::__private::CaseSensitivity::Insensitive)
                };
                let diacritics = if enc.diacritic_sensitive.as_ref().is_none_or(LitBool::value) {
                    quote!(#m::__private::DiacriticSensitivity::Sensitive)
                } else {
                    quote!(#m::__private::DiacriticSensitivity::Insensitive)
                };
                sets.extend(quote! {
                    __f.queries = ::core::option::Option::Some(#m::QueryConfig::Text {
                        index: #m::__private::text_index(#prefix, #suffix, #substring, #case, #diacritics),
                        contention: #contention,
                    });
                });
            }
            None => {}
        }
    }
    Ok(quote! {
        {
            #[allow(unused_mut)]
            let mut __f = #m::__private::field::<#ty>(#key, #rust_name, #rust_type);
            #sets
            __f
        }
    })
}

/// `PatientRecord` -> `patient_record`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).and_then(|j| chars.get(j));
            let next = chars.get(i + 1);
            let boundary = match prev {
                None => false,
                Some(p) => {
                    p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
                }
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn capability(def: &FieldDef) -> TokenStream2 {
    match def
        .encrypted
        .as_ref()
        .map(|e| e.queries.as_ref().map(|q| q.0))
    {
        None => quote!(Plain),
        Some(None) => quote!(EncryptedUnqueryable),
        Some(Some(QueryKind::Equality)) => quote!(EncryptedEquality),
        Some(Some(QueryKind::Range)) => quote!(EncryptedRange),
        Some(Some(QueryKind::Text(TextKinds::Prefix))) => quote!(EncryptedPrefix),
        Some(Some(QueryKind::Text(TextKinds::Suffix))) => quote!(EncryptedSuffix),
        Some(Some(QueryKind::Text(TextKinds::PrefixSuffix))) => quote!(EncryptedPrefixSuffix),
        Some(Some(QueryKind::Text(TextKinds::Substring))) => quote!(EncryptedSubstring),
    }
}

fn expand(input: &DeriveInput, derive: Derive) -> syn::Result<TokenStream2> {
    let named = named_fields(input, derive)?;
    let attrs = parse_model_attrs(input, derive)?;
    let (mut defs, checks) = parse_fields(named, derive)?;
    let pk = match derive {
        Derive::Model => Some(primary_key(&input.ident, &mut defs)?),
        Derive::Embedded => None,
    };
    check_unique_keys(&defs)?;
    let field_schemas = defs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let role = if pk == Some(i) {
                FieldRole::PrimaryKey
            } else {
                FieldRole::Plain
            };
            field_schema(d, role)
        })
        .collect::<syn::Result<Vec<_>>>()?;
    let parts = Parts {
        checks: checks_block(&checks, &defs),
        paths: typed_paths(&input.ident, derive, &defs),
        field_schemas,
        conversion: conversion(&defs),
    };
    match pk.and_then(|i| defs.get(i)) {
        Some(pk) => model_impl(input, &attrs, &pk.ident, &parts),
        None => Ok(embedded_impl(input, &parts)),
    }
}

/// The struct's named fields; a derive takes nothing else.
fn named_fields(input: &DeriveInput, derive: Derive) -> syn::Result<&syn::FieldsNamed> {
    let name = &input.ident;
    let derive_name = derive.name();
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            format!("#[derive({derive_name})] does not support generic structs"),
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(err(
            name.span(),
            format!("#[derive({derive_name})] works on structs with named fields"),
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(err(
            name.span(),
            format!("#[derive({derive_name})] works on structs with named fields"),
        ));
    };
    Ok(named)
}

/// Each field's definition and the compile-time checks of all fields; the
/// errors of every field at once.
fn parse_fields(
    named: &syn::FieldsNamed,
    derive: Derive,
) -> syn::Result<(Vec<FieldDef>, TokenStream2)> {
    let mut defs = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut checks = TokenStream2::new();
    for f in &named.named {
        match parse_field(f).and_then(|d| check_field(&d, derive).map(|c| (d, c))) {
            Ok((d, c)) => {
                checks.extend(c);
                defs.push(d);
            }
            Err(e) => match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            },
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok((defs, checks)),
    }
}

/// The index of a model's `id: ObjectId`, whose key becomes `_id`.
fn primary_key(name: &Ident, defs: &mut [FieldDef]) -> syn::Result<usize> {
    let Some(i) = defs.iter().position(|d| d.ident == "id") else {
        return Err(err(
            name.span(),
            "a Model needs a primary key field `id: ObjectId` (stored as `_id`)",
        ));
    };
    let d = &mut defs[i];
    if !matches!(last_segment(&d.ty), Some((n, None)) if n == "ObjectId") {
        return Err(syn::Error::new_spanned(
            &d.ty,
            "the primary key `id` must be a bson::oid::ObjectId",
        ));
    }
    if let Some(c) = &d.db_column {
        return Err(err(
            c.span(),
            "the primary key `id` is always stored as `_id`",
        ));
    }
    "_id".clone_into(&mut d.key);
    Ok(i)
}

/// Two fields on one BSON key would silently overwrite each other.
fn check_unique_keys(defs: &[FieldDef]) -> syn::Result<()> {
    for (i, d) in defs.iter().enumerate() {
        if defs[..i].iter().any(|o| o.key == d.key) {
            return Err(err(
                d.ident.span(),
                format!("two fields are stored under the BSON key `{}`", d.key),
            ));
        }
    }
    Ok(())
}

/// What both derives emit, made once.
struct Parts {
    /// The compile-time checks (trait bounds spanned at the fields).
    checks: TokenStream2,
    /// The typed field paths.
    paths: TypedPaths,
    /// Each field's `FieldSchema` expression.
    field_schemas: Vec<TokenStream2>,
    /// The BSON conversion.
    conversion: Conversion,
}

/// The compile-time checks: each field's trait bounds, and that no
/// encrypted field's type can hold null.
fn checks_block(checks: &TokenStream2, defs: &[FieldDef]) -> TokenStream2 {
    let m = quote!(::cipherdoc::model);
    let not_null = defs.iter().filter(|d| d.encrypted.is_some()).map(|d| {
        let ty = &d.ty;
        quote_spanned! {ty.span()=> const _: () = #m::__private::assert_not_null::<#ty>(); }
    });
    quote! {
        const _: () = {
            #[allow(dead_code, clippy::all)]
            fn __cipherdoc_checks() { #checks }
            #(#not_null)*
        };
    }
}

/// The typed field paths (the query markers): the `<Name>Fields` struct's
/// fields and their initialisers.
struct TypedPaths {
    /// `<Name>Fields`.
    name: Ident,
    /// Its doc comment.
    doc: String,
    /// Its fields, one per struct field.
    fields: Vec<TokenStream2>,
    /// Their initialisers (`__schema` and, for an embedded model,
    /// `__prefix` in scope).
    inits: Vec<TokenStream2>,
}

fn typed_paths(name: &Ident, derive: Derive, defs: &[FieldDef]) -> TypedPaths {
    let m = quote!(::cipherdoc::model);
    let model_param = match derive {
        Derive::Model => quote!(#name),
        Derive::Embedded => quote!(M),
    };
    let fields = defs
        .iter()
        .map(|d| {
            let ident = &d.ident;
            let fvis = &d.vis;
            let ty = &d.ty;
            let cap = capability(d);
            if d.encrypted.is_some() {
                quote!(#fvis #ident: #m::FieldPath<#model_param, #ty, #m::#cap>)
            } else {
                quote!(#fvis #ident: <#ty as #m::FieldValue>::Path<#model_param>)
            }
        })
        .collect();
    let inits = defs
        .iter()
        .map(|d| {
            let ident = &d.ident;
            let ty = &d.ty;
            let key = &d.key;
            let path = match derive {
                Derive::Model => quote!(::std::string::String::from(#key)),
                Derive::Embedded => quote!(::std::format!("{}.{}", __prefix, #key)),
            };
            if d.encrypted.is_some() {
                quote!(#ident: #m::FieldPath::new(#path, #m::__private::encrypted_info(&__schema.fields, #key)))
            } else {
                quote!(#ident: <<#ty as #m::FieldValue>::Path<#model_param> as #m::PathSet>::at_path(#path))
            }
        })
        .collect();
    TypedPaths {
        name: format_ident!("{}Fields", name),
        doc: format!("Typed field paths of [`{name}`]."),
        fields,
        inits,
    }
}

/// The BSON conversion's bodies: the struct's fields taken from
/// `__doc`, and put into it.
struct Conversion {
    take: TokenStream2,
    put: TokenStream2,
}

fn conversion(defs: &[FieldDef]) -> Conversion {
    let m = quote!(::cipherdoc::model);
    let idents: Vec<&Ident> = defs.iter().map(|d| &d.ident).collect();
    let keys: Vec<&String> = defs.iter().map(|d| &d.key).collect();
    let tys: Vec<&Type> = defs.iter().map(|d| &d.ty).collect();
    Conversion {
        take: quote! {
            #( #idents: #m::__private::take::<#tys>(&mut __doc, #keys)?, )*
        },
        put: quote! {
            #( #m::__private::put::<#tys>(&mut __doc, #keys, &self.#idents)?; )*
        },
    }
}

/// `impl Model`, the typed paths struct and `Name::fields()`.
fn model_impl(
    input: &DeriveInput,
    attrs: &ModelAttrs,
    pk: &Ident,
    parts: &Parts,
) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let vis = &input.vis;
    let name_str = name.to_string();
    let m = quote!(::cipherdoc::model);
    let Some(app) = &attrs.app else {
        return Err(err(
            name.span(),
            "#[derive(Model)] needs #[model(app = \"...\")]",
        ));
    };
    if app.value().is_empty() {
        return Err(err(app.span(), "app must not be empty"));
    }
    let collection = attrs.collection.as_ref().map_or_else(
        || format!("{}_{}", app.value(), snake_case(&name_str)),
        LitStr::value,
    );
    let kms = if let Some(p) = &attrs.kms_provider {
        quote!(::core::option::Option::Some(::std::string::String::from(#p)))
    } else {
        quote!(::core::option::Option::None)
    };
    let Parts {
        checks,
        paths:
            TypedPaths {
                name: fields_name,
                doc: fields_doc,
                fields: path_fields,
                inits: path_inits,
            },
        field_schemas,
        conversion: Conversion { take, put },
    } = parts;
    Ok(quote! {
        #checks

        #[doc = #fields_doc]
        #[allow(missing_docs)]
        #vis struct #fields_name {
            #(#path_fields,)*
        }

        impl ::core::fmt::Debug for #fields_name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name_str).finish_non_exhaustive()
            }
        }

        impl #name {
            /// The typed field paths of this model, for queries and ordering.
            pub fn fields() -> &'static #fields_name {
                <Self as #m::Model>::fields()
            }
        }

        impl #m::Model for #name {
            type Fields = #fields_name;

            fn schema() -> &'static #m::ModelSchema {
                static SCHEMA: #m::__private::OnceLock<#m::ModelSchema> = #m::__private::OnceLock::new();
                SCHEMA.get_or_init(|| {
                    let mut __s = #m::ModelSchema::new(#app, #name_str, #collection);
                    __s.kms_provider = #kms;
                    __s.fields = ::std::vec![#(#field_schemas),*];
                    __s
                })
            }

            fn fields() -> &'static Self::Fields {
                static FIELDS: #m::__private::OnceLock<#fields_name> = #m::__private::OnceLock::new();
                FIELDS.get_or_init(|| {
                    let __schema = <Self as #m::Model>::schema();
                    #fields_name { #(#path_inits,)* }
                })
            }

            fn id(&self) -> &#m::__private::ObjectId {
                &self.#pk
            }

            fn to_document(&self) -> ::core::result::Result<#m::__private::Document, #m::ModelError> {
                (|| -> ::core::result::Result<#m::__private::Document, #m::ValueError> {
                    let mut __doc = #m::__private::Document::new();
                    #put
                    ::core::result::Result::Ok(__doc)
                })()
                .map_err(|e| #m::ModelError::value(&<Self as #m::Model>::schema().label(), &e))
            }

            fn from_document(mut __doc: #m::__private::Document) -> ::core::result::Result<Self, #m::ModelError> {
                (|| -> ::core::result::Result<Self, #m::ValueError> {
                    ::core::result::Result::Ok(Self { #take })
                })()
                .map_err(|e| #m::ModelError::value(&<Self as #m::Model>::schema().label(), &e))
            }
        }
    })
}

/// `impl EmbeddedModel` and `impl FieldValue`, and the typed paths struct,
/// generic over the model it lies in.
fn embedded_impl(input: &DeriveInput, parts: &Parts) -> TokenStream2 {
    let name = &input.ident;
    let vis = &input.vis;
    let name_str = name.to_string();
    let m = quote!(::cipherdoc::model);
    let Parts {
        checks,
        paths:
            TypedPaths {
                name: fields_name,
                doc: fields_doc,
                fields: path_fields,
                inits: path_inits,
            },
        field_schemas,
        conversion: Conversion { take, put },
    } = parts;
    quote! {
        #checks

        #[doc = #fields_doc]
        #[allow(missing_docs)]
        #vis struct #fields_name<M: 'static> {
            #(#path_fields,)*
            __model: ::core::marker::PhantomData<fn() -> M>,
        }

        impl<M: 'static> ::core::fmt::Debug for #fields_name<M> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name_str).finish_non_exhaustive()
            }
        }

        impl<M: 'static> #m::PathSet for #fields_name<M> {
            fn at_path(__prefix: ::std::string::String) -> Self {
                let __schema = <#name as #m::EmbeddedModel>::schema();
                #fields_name { #(#path_inits,)* __model: ::core::marker::PhantomData }
            }
        }

        impl #m::EmbeddedModel for #name {
            const NAME: &'static str = #name_str;

            fn schema() -> &'static #m::EmbeddedSchema {
                static SCHEMA: #m::__private::OnceLock<#m::EmbeddedSchema> = #m::__private::OnceLock::new();
                SCHEMA.get_or_init(|| {
                    let mut __s = #m::EmbeddedSchema::new(#name_str);
                    __s.fields = ::std::vec![#(#field_schemas),*];
                    __s
                })
            }

            fn to_document(&self) -> ::core::result::Result<#m::__private::Document, #m::ValueError> {
                let mut __doc = #m::__private::Document::new();
                #put
                ::core::result::Result::Ok(__doc)
            }

            fn from_document(mut __doc: #m::__private::Document) -> ::core::result::Result<Self, #m::ValueError> {
                ::core::result::Result::Ok(Self { #take })
            }
        }

        impl #m::FieldValue for #name {
            const BSON_TYPE: &'static str = "object";
            type Path<M: 'static> = #fields_name<M>;

            fn kind() -> #m::FieldKind {
                #m::FieldKind::Embedded(#m::EmbeddedRef::of::<Self>())
            }

            fn to_bson(&self) -> ::core::result::Result<#m::__private::Bson, #m::ValueError> {
                <Self as #m::EmbeddedModel>::to_document(self).map(#m::__private::Bson::Document)
            }

            fn from_bson(value: #m::__private::Bson) -> ::core::result::Result<Self, #m::ValueError> {
                match value {
                    #m::__private::Bson::Document(d) => <Self as #m::EmbeddedModel>::from_document(d),
                    other => ::core::result::Result::Err(#m::ValueError::WrongType {
                        expected: "object",
                        found: #m::bson_type_name(&other),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("Patient"), "patient");
        assert_eq!(snake_case("PatientRecord"), "patient_record");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("Item2Price"), "item2_price");
    }
}
