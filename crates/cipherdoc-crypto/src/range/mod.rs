//! Range index mathematics (qe-protocol.md §8): value encodings, edges, mincover.
//!
//! Byte-compatible with libmongocrypt (`src/mc-range-*.c`, `src/mc-rangeopts.c`).
//! Two levels of API:
//!
//! * **Spec-level functions** mirroring libmongocrypt one to one:
//!   [`encode_int32`], [`encode_int64`], [`encode_date`], [`encode_double`],
//!   [`encode_decimal128`] (§8.2) return an [`OstType`]; [`Edges::new`] turns
//!   one into the insert edges (§8.4); [`min_cover`] turns two encoded bounds
//!   into the mincover (§8.5), and [`min_cover_int32`] … [`min_cover_decimal128`]
//!   do it from typed bounds including libmongocrypt's bound checks.
//! * **Options-driven**: [`RangeOptions`] (what a user or `encryptedFields`
//!   gives) resolves with the §8.1 defaults into a [`RangeIndex`], whose
//!   [`RangeIndex::edges`] and [`RangeIndex::min_cover`] take [`RangeValue`]s
//!   and report the `sp`/`tf`/`pn`/`mn`/`mx` values a payload records.
//!
//! Edges and mincover strings are handed out as raw ASCII byte slices
//! ([`Edge::as_bytes`], [`MinCover::iter`]), which is exactly what the token
//! derivation hashes (§3).

mod decimal;
mod edges;
mod encoding;
mod error;
mod mincover;
mod options;

pub use decimal::decimal128_from_str;
pub use edges::{DEFAULT_SPARSITY, DEFAULT_TRIM_FACTOR, Edge, Edges, trim_factor_default};
pub use encoding::{
    OstInt, OstType, encode_date, encode_decimal128, encode_double, encode_int32, encode_int64,
};
pub use error::{BoundSide, PrecisionBoundProblem, RangeError};
pub use mincover::{
    MAX_MIN_COVER_LEN, MinCover, OnEmpty, RangeQuery, min_cover, min_cover_decimal128,
    min_cover_double, min_cover_int32, min_cover_int64,
};
pub use options::{RangeIndex, RangeOptions, RangeValue, RangeValueKind};
