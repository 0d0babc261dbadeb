//! Range maths timings: edges of full-domain int32/int64 values and a typical
//! int64 mincover.

// Test/bench code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use cipherdoc_crypto::range::{
    Edges, OnEmpty, RangeQuery, encode_int32, encode_int64, min_cover, min_cover_int64,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    c.bench_function("edges int32 full domain (sp 2, tf default)", |b| {
        b.iter(|| {
            let ost = encode_int32(black_box(123_456_789), Some(i32::MIN), Some(i32::MAX)).unwrap();
            let edges = Edges::new(ost, 2, None).unwrap();
            edges.iter().map(|e| e.as_bytes().len()).sum::<usize>()
        });
    });
    c.bench_function("edges int64 full domain (sp 2, tf default)", |b| {
        b.iter(|| {
            let ost =
                encode_int64(black_box(1_234_567_890_123), Some(i64::MIN), Some(i64::MAX)).unwrap();
            let edges = Edges::new(ost, 2, None).unwrap();
            edges.iter().map(|e| e.as_bytes().len()).sum::<usize>()
        });
    });
    c.bench_function(
        "mincover int64 full domain [1000, 2_000_000] (sp 2, tf default)",
        |b| {
            b.iter(|| {
                let q = RangeQuery {
                    lower: black_box(1000),
                    include_lower: true,
                    upper: 2_000_000,
                    include_upper: false,
                };
                min_cover_int64(q, Some(i64::MIN), Some(i64::MAX), 2, None, OnEmpty::Error)
                    .unwrap()
                    .len()
            });
        },
    );
    c.bench_function(
        "mincover int64 encoded bounds, wide range (sp 1, tf 0)",
        |b| {
            let lo = encode_int64(-123_456_789, None, None).unwrap();
            let hi = encode_int64(987_654_321_012, None, None).unwrap();
            b.iter(|| {
                min_cover(black_box(lo), true, hi, true, 1, Some(0), OnEmpty::Error)
                    .unwrap()
                    .len()
            });
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
