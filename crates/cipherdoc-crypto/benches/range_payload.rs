//! Criterion benchmarks of range payload construction (single thread):
//! insert payloads (blob 11 with edges, encoded) for the issue-6 index shapes
//! and a range find payload (blob 13) for a typical int64 query.
//!
//! Each benchmark runs twice: wall-clock time (criterion's default) and the
//! calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID` via rustix, names prefixed `cpu/`). The
//! build machines are shared, and on a loaded machine wall time mostly
//! measures how often the thread was descheduled; CPU time does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::hint::black_box;

use bson::Bson;
use cipherdoc_crypto::client::UserKey;
use cipherdoc_crypto::client_range::{
    RangeFindOperators, encrypt_range_find, encrypt_range_insert,
};
use cipherdoc_crypto::payload::RangeOperator;
use cipherdoc_crypto::range::{RangeIndex, RangeValue};
use cipherdoc_crypto::server::build_indexed_range_value;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group, criterion_main};

mod cpu_time;
use cpu_time::ThreadCpuTime;

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, prefix: &str) {
    let mut rng = OsRandom;
    let (ki, kik) = (
        KeyId::generate(&mut rng).unwrap(),
        DataKey::generate(&mut rng).unwrap(),
    );
    let (ku, kuk) = (
        KeyId::generate(&mut rng).unwrap(),
        DataKey::generate(&mut rng).unwrap(),
    );
    let tokens = IndexKeyTokens::new(ki, &kik);
    let user = UserKey { id: ku, key: &kuk };

    let cases = [
        (
            "range insert payload int32 [0, 200] sp 1",
            RangeIndex::new(RangeValue::Int32(0), RangeValue::Int32(200), None, 1, None).unwrap(),
            Bson::Int32(123),
        ),
        (
            "range insert payload int64 [0, 2^40] sp 2",
            RangeIndex::new(
                RangeValue::Int64(0),
                RangeValue::Int64(1 << 40),
                None,
                2,
                None,
            )
            .unwrap(),
            Bson::Int64(987_654_321_012),
        ),
        (
            "range insert payload int32 full domain sp 2",
            RangeIndex::new(
                RangeValue::Int32(i32::MIN),
                RangeValue::Int32(i32::MAX),
                None,
                2,
                None,
            )
            .unwrap(),
            Bson::Int32(-123_456_789),
        ),
        (
            "range insert payload int64 full domain sp 2",
            RangeIndex::new(
                RangeValue::Int64(i64::MIN),
                RangeValue::Int64(i64::MAX),
                None,
                2,
                None,
            )
            .unwrap(),
            Bson::Int64(1_234_567_890_123_456),
        ),
    ];
    for (name, index, value) in &cases {
        c.bench_function(&format!("{prefix}{name}"), |b| {
            b.iter(|| {
                let p =
                    encrypt_range_insert(black_box(value), index, &tokens, user, 8, &mut OsRandom)
                        .unwrap();
                black_box(p.encode())
            });
        });
    }

    // Server side: the stored value 15 for a full-domain int64 payload.
    let (_, index, value) = &cases[3];
    let iup = encrypt_range_insert(value, index, &tokens, user, 8, &mut OsRandom).unwrap();
    let counts = vec![1u64; index.edge_count()];
    c.bench_function(
        &format!("{prefix}range stored value 15 int64 full domain (encode)"),
        |b| {
            b.iter(|| {
                let v = build_indexed_range_value(black_box(&iup), &counts, &mut OsRandom).unwrap();
                black_box(v.encode().unwrap())
            });
        },
    );

    // A typical int64 query: a month of millisecond timestamps inside a
    // full-domain index (sparsity 2, default trimFactor).
    let lo = 1_700_000_000_000i64;
    let hi = lo + 30 * 86_400_000;
    let ops = RangeFindOperators {
        payload_id: 0,
        first: RangeOperator::Gte,
        second: Some(RangeOperator::Lt),
    };
    c.bench_function(
        &format!("{prefix}range find payload int64 full domain, 30-day window"),
        |b| {
            b.iter(|| {
                let f = encrypt_range_find(
                    black_box(&Bson::Int64(lo)),
                    true,
                    &Bson::Int64(hi),
                    false,
                    index,
                    &tokens,
                    8,
                    ops,
                )
                .unwrap();
                black_box(f.encode())
            });
        },
    );
}

fn wall(c: &mut Criterion) {
    bench(c, "");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "cpu/");
}

criterion_group!(wall_benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);
