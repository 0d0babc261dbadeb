//! Criterion benchmarks of text-search payloads (single thread): insert
//! payloads (blob 11 with `b`, encoded) and find payloads (blob 18) for a
//! 20-character string, with a substring index (query lengths 2 to 10,
//! strMaxLength 60) and with a prefix index (query lengths 1 to 20); and the
//! server's stored value 17 for the substring case.
//!
//! Each benchmark runs twice: wall-clock time and the calling thread's CPU
//! time (names prefixed `cpu/`; see `cpu_time`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod cpu_time;

use std::hint::black_box;

use cipherdoc_crypto::client::UserKey;
use cipherdoc_crypto::client_text::{encrypt_text_find, encrypt_text_insert};
use cipherdoc_crypto::server::text::{build_indexed_text_value, text_insert_token_sets};
use cipherdoc_crypto::text::{
    AffixIndex, CaseSensitivity, DiacriticSensitivity, SubstringIndex, TextIndex, TextIndexKind,
    TextQuery,
};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use cpu_time::ThreadCpuTime;
use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group, criterion_main};

/// 20 characters, as the benchmark asks.
const VALUE: &str = "Margaret Whitmoreson";

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, prefix: &str) {
    assert_eq!(VALUE.chars().count(), 20);
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
    let base = TextIndex {
        case: CaseSensitivity::Insensitive,
        diacritics: DiacriticSensitivity::Insensitive,
        prefix: None,
        suffix: None,
        substring: None,
    };
    let substring = TextIndex {
        substring: Some(SubstringIndex::new(60, 2, 10).unwrap()),
        ..base
    };
    let prefix_ix = TextIndex {
        prefix: Some(AffixIndex::new(TextIndexKind::Prefix, 1, 20).unwrap()),
        ..base
    };
    for (name, index, query, q) in [
        (
            "substring 2..10, max 60",
            &substring,
            TextQuery::Substring,
            "whitmore",
        ),
        ("prefix 1..20", &prefix_ix, TextQuery::Prefix, "marg"),
    ] {
        c.bench_function(
            &format!("{prefix}text insert payload, 20 chars, {name}"),
            |b| {
                b.iter(|| {
                    let p = encrypt_text_insert(
                        black_box(VALUE),
                        index,
                        &tokens,
                        user,
                        8,
                        &mut OsRandom,
                    )
                    .unwrap();
                    black_box(p.encode())
                });
            },
        );
        c.bench_function(&format!("{prefix}text find payload, {name}"), |b| {
            b.iter(|| {
                let f = encrypt_text_find(black_box(q), index, query, &tokens, 8).unwrap();
                black_box(f.encode())
            });
        });
    }

    // Server side: the stored value 17 of the substring payload.
    let iup = encrypt_text_insert(VALUE, &substring, &tokens, user, 8, &mut OsRandom).unwrap();
    let counts = vec![1u64; text_insert_token_sets(&iup).unwrap().len()];
    c.bench_function(
        &format!("{prefix}text stored value 17, 20 chars, substring 2..10 (encode)"),
        |b| {
            b.iter(|| {
                let v = build_indexed_text_value(black_box(&iup), &counts, &mut OsRandom).unwrap();
                black_box(v.encode().unwrap())
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
