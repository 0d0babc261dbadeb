//! Typed lookups build the expected Q ASTs; custom field types
//! (the reference's EncryptedFieldMixin).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::many_single_char_names,
    missing_debug_implementations
)]

use bson::{Bson, oid::ObjectId};
use cipherdoc::model::{
    Cond, EqualityQueryable, Expr, FieldKind, FieldPath, FieldValue, Lookup, Model as _,
    ModelError, Plain, Q, QueryConfig, ValueError, bson_type_name,
};
use cipherdoc::{EmbeddedModel, Model};

/// A user type made encryptable and equality-queryable.
#[derive(Debug, Clone, PartialEq)]
pub struct Iban(String);

impl FieldValue for Iban {
    const BSON_TYPE: &'static str = "string";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Custom("Iban")
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::String(self.0.replace(' ', "")))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::String(s) if s.len() >= 15 => Ok(Iban(s)),
            Bson::String(_) => Err(ValueError::Invalid {
                what: "IBAN",
                reason: "too short".into(),
            }),
            other => Err(ValueError::WrongType {
                expected: "string",
                found: bson_type_name(&other),
            }),
        }
    }
}
impl EqualityQueryable for Iban {}

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Address {
    pub city: String,
    #[encrypted(queries = "equality")]
    pub street: String,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "bank", collection = "accounts")]
pub struct Account {
    pub id: ObjectId,
    pub owner: String,
    pub nickname: Option<String>,
    pub level: i16,
    #[encrypted(queries = "equality")]
    pub iban: Iban,
    #[encrypted(queries = "range", min = 0, max = 1_000_000, contention = 2)]
    pub balance: i64,
    #[encrypted]
    pub notes: String,
    pub pbig: u64,
    pub address: Address,
}

fn cond<M: cipherdoc::model::Model>(q: &Q<M>) -> Cond {
    match q.expr().unwrap() {
        Expr::Cond(c) => c.clone(),
        other => panic!("not a single condition: {other:?}"),
    }
}

#[test]
fn custom_type_is_encryptable_and_queryable() {
    let s = Account::schema();
    let iban = s.field("iban").unwrap();
    assert_eq!(iban.kind, FieldKind::Custom("Iban"));
    assert_eq!(iban.bson_type, "string");
    assert!(iban.encrypted);
    cipherdoc::model::validate(s).unwrap();

    let a = Account {
        id: ObjectId::new(),
        owner: "Ann".into(),
        nickname: Some("a".into()),
        level: 3,
        iban: Iban("DE89370400440532013000".into()),
        balance: 10,
        notes: "vip".into(),
        pbig: 1,
        address: Address {
            city: "Paris".into(),
            street: "Rue de Rivoli".into(),
        },
    };
    assert_eq!(Account::from_document(a.to_document().unwrap()).unwrap(), a);

    let c = cond(
        &Account::fields()
            .iban
            .eq(Iban("DE89 3704 0044 0532 0130 00".into())),
    );
    assert_eq!(c.value, Bson::String("DE89370400440532013000".into()));
    assert_eq!(
        c.encrypted.unwrap().queries,
        Some(QueryConfig::Equality { contention: None })
    );

    let mut d = a.to_document().unwrap();
    d.insert("iban", "DE89");
    let e = Account::from_document(d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bank.Account: field 'iban' invalid IBAN: too short"
    );
}

#[test]
fn every_lookup_builds_its_condition() {
    let f = Account::fields();
    let cases: Vec<(Q<Account>, &str, Lookup, Bson, bool)> = vec![
        (f.owner.eq("Ann"), "owner", Lookup::Eq, "Ann".into(), false),
        (
            f.owner.ne(String::from("Bob")),
            "owner",
            Lookup::Ne,
            "Bob".into(),
            false,
        ),
        (
            f.level.is_in([1, 2]),
            "level",
            Lookup::In,
            Bson::Array(vec![Bson::Int32(1), Bson::Int32(2)]),
            false,
        ),
        (f.level.lt(5), "level", Lookup::Lt, Bson::Int32(5), false),
        (f.level.lte(5), "level", Lookup::Lte, Bson::Int32(5), false),
        (f.level.gt(5), "level", Lookup::Gt, Bson::Int32(5), false),
        (f.level.gte(5), "level", Lookup::Gte, Bson::Int32(5), false),
        (
            f.level.range(1, 9),
            "level",
            Lookup::Range,
            Bson::Array(vec![Bson::Int32(1), Bson::Int32(9)]),
            false,
        ),
        (
            f.owner.contains("nn"),
            "owner",
            Lookup::Contains,
            "nn".into(),
            false,
        ),
        (
            f.owner.starts_with("A"),
            "owner",
            Lookup::StartsWith,
            "A".into(),
            false,
        ),
        (
            f.nickname.is_null(true),
            "nickname",
            Lookup::IsNull,
            Bson::Boolean(true),
            false,
        ),
        (
            f.nickname.eq("x"),
            "nickname",
            Lookup::Eq,
            "x".into(),
            false,
        ),
        (
            f.nickname.contains("x"),
            "nickname",
            Lookup::Contains,
            "x".into(),
            false,
        ),
        (f.balance.eq(5), "balance", Lookup::Eq, Bson::Int64(5), true),
        (f.balance.ne(5), "balance", Lookup::Ne, Bson::Int64(5), true),
        (
            f.balance.is_in([5, 6]),
            "balance",
            Lookup::In,
            Bson::Array(vec![Bson::Int64(5), Bson::Int64(6)]),
            true,
        ),
        (f.balance.lt(5), "balance", Lookup::Lt, Bson::Int64(5), true),
        (
            f.balance.lte(5),
            "balance",
            Lookup::Lte,
            Bson::Int64(5),
            true,
        ),
        (f.balance.gt(5), "balance", Lookup::Gt, Bson::Int64(5), true),
        (
            f.balance.gte(5),
            "balance",
            Lookup::Gte,
            Bson::Int64(5),
            true,
        ),
        (
            f.balance.range(0, 100),
            "balance",
            Lookup::Range,
            Bson::Array(vec![Bson::Int64(0), Bson::Int64(100)]),
            true,
        ),
        (
            f.address.city.eq("Paris"),
            "address.city",
            Lookup::Eq,
            "Paris".into(),
            false,
        ),
        (
            f.address.street.eq("Main"),
            "address.street",
            Lookup::Eq,
            "Main".into(),
            true,
        ),
        (
            f.id.eq(ObjectId::from_bytes([1; 12])),
            "_id",
            Lookup::Eq,
            Bson::ObjectId(ObjectId::from_bytes([1; 12])),
            false,
        ),
    ];
    for (q, path, lookup, value, encrypted) in cases {
        let c = cond(&q);
        assert_eq!(
            (c.path.as_str(), c.lookup, &c.value),
            (path, lookup, &value),
            "{path} {}",
            lookup.name()
        );
        assert_eq!(c.encrypted.is_some(), encrypted, "{path} {}", lookup.name());
    }
    let info = cond(&f.balance.gt(1)).encrypted.unwrap();
    assert_eq!(info.bson_type, "long");
    assert_eq!(
        info.queries,
        Some(QueryConfig::Range {
            min: Bson::Int64(0),
            max: Bson::Int64(1_000_000),
            sparsity: None,
            precision: None,
            trim_factor: None,
            contention: Some(2),
        })
    );
    assert!(f.notes.encrypted().is_some_and(|i| i.queries.is_none()));
    assert_eq!(f.notes.path(), "notes");
}

#[test]
fn operators_build_and_or_not_trees() {
    let f = Account::fields();
    let a = || f.owner.eq("a");
    let b = || f.level.eq(1);
    let c = || f.balance.gt(2);
    let leaf = |q: Q<Account>| q.expr_unchecked().clone();

    assert_eq!(leaf(a() & b()), Expr::And(vec![leaf(a()), leaf(b())]));
    // Chains flatten: (a & b) & c has three children.
    assert_eq!(
        leaf(a() & b() & c()),
        Expr::And(vec![leaf(a()), leaf(b()), leaf(c())])
    );
    assert_eq!(
        leaf(a() | b() | c()),
        Expr::Or(vec![leaf(a()), leaf(b()), leaf(c())])
    );
    assert_eq!(leaf(!a()), Expr::Not(Box::new(leaf(a()))));
    // Precedence is Rust's: & binds tighter than |.
    assert_eq!(
        leaf(a() | b() & c()),
        Expr::Or(vec![leaf(a()), Expr::And(vec![leaf(b()), leaf(c())])])
    );
    assert_eq!(
        leaf(!(a() | b())),
        Expr::Not(Box::new(Expr::Or(vec![leaf(a()), leaf(b())])))
    );
    assert_eq!(leaf(Q::all()), Expr::And(vec![]));
    assert_eq!(leaf(Q::all() & a()), Expr::And(vec![leaf(a())]));

    let asc = f.level.asc();
    assert_eq!((asc.path.as_str(), asc.descending), ("level", false));
    assert!(f.address.city.desc().descending);
}

#[test]
fn unconvertible_lookup_values_are_reported_with_the_field() {
    let f = Account::fields();
    let q = f.owner.eq("ok") & f.pbig.gt(u64::MAX);
    let e = q.expr().unwrap_err();
    let ModelError::InvalidLookup { path, lookup, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((path.as_str(), *lookup), ("pbig", "gt"));
    assert_eq!(
        e.to_string(),
        "bank.Account: cannot query field 'pbig' with gt: value out of range for u64: larger than the BSON long maximum"
    );
    assert!((!q).expr().is_err());
    assert!(f.pbig.is_in([1, u64::MAX]).expr().is_err());
    assert!(f.pbig.range(0, u64::MAX).expr().is_err());
}
