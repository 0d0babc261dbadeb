//! Text-search options: libmongocrypt's `StringOpts` rules (its
//! `test-mc-textopts.c` cases) and the server's checks of text fields in
//! `encryptedFields`, each a typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::pedantic
)]

use bson::{Bson, Document, doc};
use cipherdoc_crypto::efc::{EncryptedFieldConfig, TextFieldError};
use cipherdoc_crypto::text::{
    CaseSensitivity, DiacriticSensitivity, StringOpts, StringOptsError, TextIndexKind,
};

fn opts(d: Document) -> Result<StringOpts, StringOptsError> {
    StringOpts::from_document(&d)
}

#[test]
fn string_opts_as_libmongocrypt_parses_them() {
    let o = opts(doc! {"caseSensitive": true, "diacriticSensitive": false,
    "prefix": {"strMinQueryLength": 1, "strMaxQueryLength": 2}})
    .unwrap();
    assert_eq!(o.index().case, CaseSensitivity::Sensitive);
    assert_eq!(o.index().diacritics, DiacriticSensitivity::Insensitive);
    let p = o.index().prefix.unwrap();
    assert_eq!((p.min_query_length(), p.max_query_length()), (1, 2));
    let o = opts(doc! {"caseSensitive": true, "diacriticSensitive": false,
    "substring": {"strMaxLength": 10, "strMinQueryLength": 3, "strMaxQueryLength": 8}})
    .unwrap();
    let s = o.index().substring.unwrap();
    assert_eq!(
        (s.max_length(), s.min_query_length(), s.max_query_length()),
        (10, 3, 8)
    );
    let both = opts(doc! {"caseSensitive": false, "diacriticSensitive": true,
    "prefix": {"strMinQueryLength": 4, "strMaxQueryLength": 9},
    "suffix": {"strMinQueryLength": 3, "strMaxQueryLength": 8}})
    .unwrap();
    assert!(both.index().prefix.is_some() && both.index().suffix.is_some());

    let cases: Vec<(Document, StringOptsError)> = vec![
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false},
            StringOptsError::NoIndexKind,
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false,
            "substring": {"strMaxLength": 10, "strMinQueryLength": 3, "strMaxQueryLength": 8},
            "prefix": {"strMinQueryLength": 2, "strMaxQueryLength": 10}},
            StringOptsError::SubstringWithAffix,
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false,
            "prefix": {"strMaxLength": 12, "strMinQueryLength": 2, "strMaxQueryLength": 10}},
            StringOptsError::MaxLengthNotAllowed {
                kind: TextIndexKind::Prefix,
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false,
            "suffix": {"strMaxLength": 15, "strMinQueryLength": 4, "strMaxQueryLength": 12}},
            StringOptsError::MaxLengthNotAllowed {
                kind: TextIndexKind::Suffix,
            },
        ),
        (
            doc! {"caseSensitive": 123, "diacriticSensitive": false},
            StringOptsError::WrongType {
                name: "caseSensitive",
                expected: "a bool",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": "false"},
            StringOptsError::WrongType {
                name: "diacriticSensitive",
                expected: "a bool",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false, "substring": "invalid"},
            StringOptsError::WrongType {
                name: "substring",
                expected: "a document",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false, "substring": {"strMaxLength": "10"}},
            StringOptsError::WrongType {
                name: "strMaxLength",
                expected: "an int32",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false, "substring": {"strMaxLength": -1}},
            StringOptsError::NotPositive {
                name: "strMaxLength",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false, "unknown": true},
            StringOptsError::UnknownField {
                name: "unknown".into(),
            },
        ),
        (
            doc! {"diacriticSensitive": false, "prefix": {"strMinQueryLength": 1, "strMaxQueryLength": 2}},
            StringOptsError::Missing {
                name: "caseSensitive",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false, "prefix": {"strMinQueryLength": 1}},
            StringOptsError::Missing {
                name: "strMaxQueryLength",
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false, "prefix": {"strMinQueryLength": 3, "strMaxQueryLength": 2}},
            StringOptsError::MaxBelowMin {
                kind: TextIndexKind::Prefix,
            },
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false,
            "substring": {"strMaxLength": 5, "strMinQueryLength": 1, "strMaxQueryLength": 8}},
            StringOptsError::MaxLengthBelowMaxQueryLength,
        ),
        (
            doc! {"caseSensitive": true, "diacriticSensitive": false,
            "substring": {"strMinQueryLength": 1, "strMaxQueryLength": 8}},
            StringOptsError::MaxLengthRequired,
        ),
    ];
    for (d, want) in cases {
        assert_eq!(opts(d.clone()).unwrap_err(), want, "{d}");
    }
}

fn field(queries: Bson, bson_type: &str) -> Document {
    doc! {"fields": [{
        "path": "name",
        "keyId": Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![1; 16] }),
        "bsonType": bson_type,
        "queries": queries,
    }]}
}

fn text_q(qt: &str) -> Document {
    let mut d = doc! {"queryType": qt, "contention": 0_i64, "strMinQueryLength": 2,
    "strMaxQueryLength": 10, "caseSensitive": false, "diacriticSensitive": true};
    if qt.starts_with("substring") {
        d.insert("strMaxLength", 60);
    }
    d
}

fn validate(d: &Document) -> Result<EncryptedFieldConfig, TextFieldError> {
    let efc = EncryptedFieldConfig::from_document(d).map_err(|e| e.text.expect("a text error"))?;
    efc.validate()
        .map_err(|e| e.text.clone().unwrap_or_else(|| panic!("{e}")))?;
    Ok(efc)
}

#[test]
fn text_fields_in_encrypted_fields() {
    // Prefix and suffix together, stable and preview names.
    let efc = validate(&field(
        Bson::Array(vec![
            text_q("prefix").into(),
            text_q("suffixPreview").into(),
        ]),
        "string",
    ))
    .unwrap();
    let t = efc.fields[0].text_index("fields[0]").unwrap().unwrap();
    assert_eq!(t.contention, 0);
    assert_eq!(t.index.case, CaseSensitivity::Insensitive);
    assert!(t.index.prefix.is_some() && t.index.suffix.is_some() && t.index.substring.is_none());
    assert!(efc.fields[0].needs_anchor_padding());
    assert_eq!(efc.effective_str_encode_version(), 1);
    let efc = validate(&field(text_q("substringPreview").into(), "string")).unwrap();
    let s = efc.fields[0]
        .text_index("fields[0]")
        .unwrap()
        .unwrap()
        .index
        .substring
        .unwrap();
    assert_eq!(
        (s.max_length(), s.min_query_length(), s.max_query_length()),
        (60, 2, 10)
    );

    let with = |d: &mut Document, k: &str, v: Bson| {
        d.insert(k, v);
        d.clone()
    };
    let bad: Vec<(Document, TextFieldError)> = vec![
        (
            field(
                Bson::Array(vec![text_q("substring").into(), text_q("prefix").into()]),
                "string",
            ),
            StringOptsError::SubstringWithAffix.into(),
        ),
        (
            field(text_q("prefix").into(), "int"),
            TextFieldError::NotString,
        ),
        (
            field(
                Bson::Array(vec![
                    text_q("prefix").into(),
                    doc! {"queryType": "equality"}.into(),
                ]),
                "string",
            ),
            TextFieldError::MixedWithOtherQueries,
        ),
        (
            field(
                Bson::Array(vec![
                    text_q("prefix").into(),
                    text_q("prefixPreview").into(),
                ]),
                "string",
            ),
            TextFieldError::DuplicateKind {
                kind: TextIndexKind::Prefix,
            },
        ),
        (
            field(
                Bson::Array(vec![
                    text_q("prefix").into(),
                    with(&mut text_q("suffix"), "contention", Bson::Int64(4)).into(),
                ]),
                "string",
            ),
            TextFieldError::Disagree {
                option: "contention",
            },
        ),
        (
            field(
                Bson::Array(vec![
                    text_q("prefix").into(),
                    with(&mut text_q("suffix"), "caseSensitive", Bson::Boolean(true)).into(),
                ]),
                "string",
            ),
            TextFieldError::Disagree {
                option: "caseSensitive",
            },
        ),
        (
            field(
                {
                    let mut d = text_q("prefix");
                    d.remove("strMinQueryLength");
                    d.into()
                },
                "string",
            ),
            StringOptsError::Missing {
                name: "strMinQueryLength",
            }
            .into(),
        ),
        (
            field(
                with(&mut text_q("prefix"), "strMaxLength", Bson::Int32(60)).into(),
                "string",
            ),
            StringOptsError::MaxLengthNotAllowed {
                kind: TextIndexKind::Prefix,
            }
            .into(),
        ),
        (
            field(
                {
                    let mut d = text_q("substring");
                    d.remove("strMaxLength");
                    d.into()
                },
                "string",
            ),
            StringOptsError::MaxLengthRequired.into(),
        ),
        (
            field(
                with(&mut text_q("substring"), "strMaxLength", Bson::Int32(5)).into(),
                "string",
            ),
            StringOptsError::MaxLengthBelowMaxQueryLength.into(),
        ),
        (
            field(
                with(&mut text_q("suffix"), "strMaxQueryLength", Bson::Int32(1)).into(),
                "string",
            ),
            StringOptsError::MaxBelowMin {
                kind: TextIndexKind::Suffix,
            }
            .into(),
        ),
        (
            field(
                with(&mut text_q("suffix"), "strMinQueryLength", Bson::Int32(0)).into(),
                "string",
            ),
            StringOptsError::NotPositive {
                name: "strMinQueryLength",
            }
            .into(),
        ),
    ];
    for (d, want) in bad {
        assert_eq!(validate(&d).unwrap_err(), want, "{d}");
    }
    // A type error names the field path.
    let e = EncryptedFieldConfig::from_document(&field(
        with(&mut text_q("prefix"), "caseSensitive", Bson::Int32(1)).into(),
        "string",
    ))
    .unwrap_err();
    assert_eq!(e.path, "fields[0].queries.caseSensitive");
}

#[test]
fn key_id_reuse_is_a_server_error_only() {
    let key = Bson::Binary(bson::Binary {
        subtype: bson::spec::BinarySubtype::Uuid,
        bytes: vec![7; 16],
    });
    let d = doc! {"fields": [
        {"path": "a", "keyId": key.clone(), "bsonType": "string", "queries": text_q("prefix")},
        {"path": "b", "keyId": key, "bsonType": "string", "queries": text_q("suffix")},
    ]};
    let efc = EncryptedFieldConfig::from_document(&d).unwrap();
    let e = efc.validate().unwrap_err();
    assert_eq!(e.path, "fields[1]");
    assert!(e.problem.contains("needs its own key"), "{e}");
}
