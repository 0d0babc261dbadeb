//! What the two engine benchmarks (`sqlite`, `pg_engine`) measure alike:
//! inserts into an indexed collection, and lookups by an indexed plaintext
//! field and by `_id`, against any [`Engine`]. Each bench adds what only its
//! engine has (PostgreSQL: concurrent clients, tag lookups, percentiles).

use std::time::Duration;

use bson::{Bson, Document, doc};
use cipherdoc_engine::{Engine, Filter, FindOptions, IndexSpec};
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use tokio::runtime::Runtime;

/// Patient `i`: `ssn` repeats 10 times, so an `ssn` lookup finds 10.
pub fn patient(i: usize) -> Document {
    doc! {"name": format!("patient-{i}"), "ssn": format!("{:09}", i / 10), "n": i64::try_from(i).unwrap()}
}

/// One engine under test, with the documents it stores.
pub struct Bench<'a> {
    pub rt: &'a Runtime,
    pub engine: &'a dyn Engine,
    /// `sqlite` or `pg`: the groups are `<prefix>_insert`, `<prefix>_find_<n>`.
    pub prefix: &'static str,
    /// The documents `offset..offset + n`.
    pub docs: fn(n: usize, offset: usize) -> Vec<Document>,
}

impl Bench<'_> {
    /// `<prefix>_insert`: batches of 1000 and single documents into `ins`,
    /// indexed on `ssn`. The group is returned open for the engine's own
    /// insert benchmarks; `offset` is the next unused document number.
    pub fn inserts<'c>(
        &self,
        c: &'c mut Criterion,
        measurement: Duration,
        offset: &mut usize,
    ) -> BenchmarkGroup<'c, WallTime> {
        let (rt, e, docs) = (self.rt, self.engine, self.docs);
        rt.block_on(e.create_index("ins", IndexSpec::new("ssn")))
            .unwrap();
        let mut g = c.benchmark_group(format!("{}_insert", self.prefix));
        g.sample_size(10).measurement_time(measurement);
        g.throughput(Throughput::Elements(1000));
        g.bench_function("insert_many_1000_indexed", |b| {
            b.iter_batched(
                || {
                    *offset += 1000;
                    docs(1000, *offset)
                },
                |batch| rt.block_on(e.insert_many("ins", batch)).unwrap(),
                BatchSize::LargeInput,
            );
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function("insert_one_indexed", |b| {
            b.iter_batched(
                || {
                    *offset += 1;
                    docs(1, *offset).pop().unwrap()
                },
                |d| rt.block_on(e.insert_one("ins", d)).unwrap(),
                BatchSize::SmallInput,
            );
        });
        g
    }

    /// Loads `n` documents into `p`, indexed on `ssn`, in batches of 10,000.
    pub fn load(&self, n: usize) {
        let (e, docs) = (self.engine, self.docs);
        self.rt.block_on(async {
            e.create_index("p", IndexSpec::new("ssn")).await.unwrap();
            for chunk in 0..n / 10_000 {
                e.insert_many("p", docs(10_000, chunk * 10_000))
                    .await
                    .unwrap();
            }
        });
    }

    /// One lookup of the 10 documents whose `ssn` is value `i`.
    pub fn ssn_find(&self, i: usize) {
        let f = Filter::eq("ssn", format!("{i:09}"));
        let r = self
            .rt
            .block_on(self.engine.find("p", &f, &FindOptions::default()))
            .unwrap();
        assert_eq!(r.len(), 10);
    }

    /// `indexed_equality_10_hits`: `ssn` lookups over `values` values.
    pub fn indexed_equality(&self, g: &mut BenchmarkGroup<'_, WallTime>, values: usize) {
        let mut i = 0usize;
        g.bench_function("indexed_equality_10_hits", |b| {
            b.iter(|| {
                i = (i + 7919) % values;
                self.ssn_find(i);
            });
        });
    }

    /// `id_lookup`: `find_one` by `_id`, over the first 1000 documents.
    pub fn id_lookup(&self, g: &mut BenchmarkGroup<'_, WallTime>) {
        let (rt, e) = (self.rt, self.engine);
        let all = FindOptions {
            limit: Some(1000),
            ..FindOptions::default()
        };
        let ids: Vec<Bson> = rt
            .block_on(e.find("p", &Filter::all(), &all))
            .unwrap()
            .into_iter()
            .map(|d| d.get("_id").unwrap().clone())
            .collect();
        let mut i = 0usize;
        g.bench_function("id_lookup", |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                rt.block_on(e.find_one("p", &Filter::eq("_id", ids[i].clone())))
                    .unwrap()
                    .unwrap();
            });
        });
    }
}
