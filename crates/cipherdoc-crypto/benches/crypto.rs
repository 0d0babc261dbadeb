//! Criterion benchmarks of the per-value hot paths (single thread).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;
use std::hint::black_box;

use bson::spec::BinarySubtype;
use bson::{Bson, Document, RawBsonRef, RawDocument};
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::payload::Fle1Algorithm;
use cipherdoc_crypto::server::build_indexed_equality_value;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, LocalMasterKey, OsRandom, unwrap_local, wrap_local};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn keys() -> (KeyId, DataKey, KeyId, DataKey) {
    let mut rng = OsRandom;
    (
        KeyId::generate(&mut rng).unwrap(),
        DataKey::generate(&mut rng).unwrap(),
        KeyId::generate(&mut rng).unwrap(),
        DataKey::generate(&mut rng).unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let (ki, kik, ku, kuk) = keys();
    let tokens = IndexKeyTokens::new(ki, &kik);
    let user = UserKey { id: ku, key: &kuk };
    let value = Bson::String("123-45-6789".into());
    let key_map: HashMap<KeyId, DataKey> =
        [(ki, kik.clone()), (ku, kuk.clone())].into_iter().collect();

    c.bench_function("equality insert payload (encode)", |b| {
        b.iter(|| {
            let p =
                client::encrypt_equality_insert(black_box(&value), &tokens, user, 8, &mut OsRandom)
                    .unwrap();
            black_box(p.encode())
        });
    });
    c.bench_function("equality find payload (encode)", |b| {
        b.iter(|| {
            black_box(
                client::encrypt_equality_find(black_box(&value), &tokens, 8)
                    .unwrap()
                    .encode(),
            )
        });
    });
    let iup = client::encrypt_equality_insert(&value, &tokens, user, 8, &mut OsRandom).unwrap();
    let iev = build_indexed_equality_value(&iup, 1, &mut OsRandom)
        .unwrap()
        .encode();
    c.bench_function("decrypt stored value 14", |b| {
        b.iter(|| black_box(client::decrypt_blob(black_box(&iev), &key_map).unwrap()));
    });
    let uev = client::encrypt_unindexed(&value, user, &mut OsRandom)
        .unwrap()
        .encode();
    c.bench_function("decrypt unindexed 16", |b| {
        b.iter(|| black_box(client::decrypt_blob(black_box(&uev), &key_map).unwrap()));
    });
    let kek = LocalMasterKey::from_slice(&[7u8; 96]).unwrap();
    let wrapped = wrap_local(&kek, &kuk, &mut OsRandom).unwrap();
    c.bench_function("unwrap local key", |b| {
        b.iter(|| black_box(unwrap_local(&kek, black_box(&wrapped)).unwrap()));
    });

    // The drivers' bulk-decryption benchmark: one document with 1,500 FLE1
    // deterministic string fields, decrypted whole from its BSON bytes.
    let mut doc = Document::new();
    for i in 0..1500 {
        let v = Bson::String(format!("value {i:04}"));
        let blob =
            client::encrypt_fle1(&v, Fle1Algorithm::Deterministic, user, &mut OsRandom).unwrap();
        doc.insert(
            format!("key{i:04}"),
            bson::Binary {
                subtype: BinarySubtype::Encrypted,
                bytes: blob.encode(),
            },
        );
    }
    let mut raw = Vec::new();
    doc.to_writer(&mut raw).unwrap();
    let mut g = c.benchmark_group("bulk decrypt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("document with 1500 FLE1 deterministic fields", |b| {
        b.iter(|| {
            let mut out = Document::new();
            for el in RawDocument::from_bytes(&raw).unwrap() {
                let (k, v) = el.unwrap();
                let v = match v {
                    RawBsonRef::Binary(bin) if bin.subtype == BinarySubtype::Encrypted => {
                        client::decrypt_blob(bin.bytes, &key_map).unwrap().unwrap()
                    }
                    other => Bson::try_from(other.to_raw_bson()).unwrap(),
                };
                out.insert(k, v);
            }
            black_box(out)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
