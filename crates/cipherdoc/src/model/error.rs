//! Errors of the model layer.
//!
//! Messages never contain field values: a value may be the plaintext of an
//! encrypted field, and errors end up in logs.

/// What went wrong converting one value between Rust and BSON.
///
/// [`ValueError::Field`] wraps another error with the BSON key it happened
/// under, so an error from deep inside embedded models keeps its dotted path
/// (see [`ValueError::path`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The stored BSON value has another type than the field expects.
    #[error("expected BSON {expected}, found BSON {found}")]
    WrongType {
        /// The BSON type the field maps to (for example `"long"`).
        expected: &'static str,
        /// The BSON type that was found.
        found: &'static str,
    },
    /// The value does not fit the Rust type or the field's BSON type.
    #[error("value out of range for {rust_type}: {reason}")]
    OutOfRange {
        /// The Rust type of the field.
        rust_type: &'static str,
        /// Why, without the value itself.
        reason: &'static str,
    },
    /// The value has the right BSON type but cannot be read (for example a
    /// string that is not an IP address).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was expected (for example `"IP address"`).
        what: &'static str,
        /// Why it could not be read, without the value itself.
        reason: String,
    },
    /// A required field is absent from the document.
    #[error("missing from the document (only Option<_> fields may be absent)")]
    Missing,
    /// An error inside the field `key` (of an embedded model).
    #[error("field '{key}': {source}")]
    Field {
        /// BSON key of the field the error happened under.
        key: String,
        /// The error.
        #[source]
        source: Box<ValueError>,
    },
}

impl ValueError {
    /// Wraps this error as having happened under the BSON key `key`.
    #[must_use]
    pub fn at(self, key: &str) -> Self {
        ValueError::Field {
            key: key.to_owned(),
            source: Box::new(self),
        }
    }

    /// The dotted path this error happened under (empty when at the top) and
    /// the innermost error.
    pub fn path(&self) -> (String, &ValueError) {
        let mut path = String::new();
        let mut cur = self;
        while let ValueError::Field { key, source } = cur {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            cur = source;
        }
        (path, cur)
    }

    pub(crate) fn wrong_type(expected: &'static str, found: &bson::Bson) -> Self {
        ValueError::WrongType {
            expected,
            found: bson_type_name(found),
        }
    }
}

/// The `$type` name of a BSON value, as MongoDB spells it.
pub fn bson_type_name(value: &bson::Bson) -> &'static str {
    use bson::Bson;
    match value {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Array(_) => "array",
        Bson::Document(_) => "object",
        Bson::Boolean(_) => "bool",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Timestamp(_) => "timestamp",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::DateTime(_) => "date",
        Bson::Symbol(_) => "symbol",
        Bson::Decimal128(_) => "decimal",
        Bson::Undefined => "undefined",
        Bson::MaxKey => "maxKey",
        Bson::MinKey => "minKey",
        Bson::DbPointer(_) => "dbPointer",
    }
}

/// The error enum of the model layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A field value of `model` could not be converted to or from BSON.
    #[error("{model}: field '{path}' {source}")]
    Value {
        /// The model label, `app.Model`.
        model: String,
        /// Dotted path of the field (`patient_record.ssn`).
        path: String,
        /// The innermost error.
        #[source]
        source: ValueError,
    },
    /// The model's schema breaks a rule of Queryable Encryption; found when
    /// the model is registered (see [`validate`](crate::model::validate)).
    #[error("{model}: field '{field}' {problem}; {fix}")]
    InvalidSchema {
        /// The model label, `app.Model`.
        model: String,
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A lookup value could not be converted to BSON when the query was built.
    #[error("{model}: cannot query field '{path}' with {lookup}: {source}")]
    InvalidLookup {
        /// The model label, `app.Model`.
        model: String,
        /// Dotted path of the field.
        path: String,
        /// The lookup (`eq`, `lt`, ...).
        lookup: &'static str,
        /// Why the value could not be converted.
        #[source]
        source: ValueError,
    },
}

impl ModelError {
    /// Turns a [`ValueError`] raised while converting `model` into a
    /// [`ModelError::Value`] carrying the flattened dotted path.
    pub fn value(model: &str, error: &ValueError) -> Self {
        let (path, inner) = error.path();
        ModelError::Value {
            model: model.to_owned(),
            path,
            source: inner.clone(),
        }
    }
}
