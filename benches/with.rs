//! Time per enter–body–exit cycle: `WithFuture` against one `async fn`, a boxed body and a
//! futures-util combinator chain. Run with `cargo bench --bench with`.
//!
//! Scenarios: (a) every phase ready at once; (b) every phase `Pending` once; (c) the body
//! fails and exit rolls back; (d) three managers nested, every phase `Pending` once; (e) the
//! same three managers as one tuple; (h) cycle (b) as a one-function manager (`scoped`),
//! against (b)'s `with` and `async fn`.

mod scenarios;

use core::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use scenarios::*;

fn single(c: &mut Criterion, name: &str, pending: bool, fail: bool) {
    let mut group = c.benchmark_group(name);
    group.bench_function("with", |b| {
        b.iter(|| run(with_future(black_box(pending), black_box(fail))))
    });
    group.bench_function("async_fn", |b| {
        b.iter(|| run(async_fn(black_box(pending), black_box(fail))))
    });
    group.bench_function("boxed", |b| {
        b.iter(|| run(boxed(black_box(pending), black_box(fail))))
    });
    group.bench_function("combinators", |b| {
        b.iter(|| run(combinators(black_box(pending), black_box(fail))))
    });
    group.finish();
}

fn cycles(c: &mut Criterion) {
    single(c, "a_ready", false, false);
    single(c, "b_pending", true, false);
    single(c, "c_rollback", true, true);

    let mut group = c.benchmark_group("d_nested3");
    group.bench_function("with", |b| {
        b.iter(|| run(with_future_nested(black_box(true))))
    });
    group.bench_function("async_fn", |b| {
        b.iter(|| run(async_fn_nested(black_box(true))))
    });
    group.bench_function("boxed", |b| b.iter(|| run(boxed_nested(black_box(true)))));
    group.finish();

    // (e): the same three managers as one tuple, against the nested `async fn`.
    let mut group = c.benchmark_group("e_tuple3");
    group.bench_function("with", |b| {
        b.iter(|| run(with_future_tuple(black_box(true))))
    });
    group.bench_function("async_fn", |b| {
        b.iter(|| run(async_fn_nested(black_box(true))))
    });
    group.finish();

    // (h): cycle (b) as a one-function manager, against (b)'s `with` and `async fn`.
    let mut group = c.benchmark_group("h_scoped");
    group.bench_function("scoped", |b| b.iter(|| run(scoped_with(black_box(true)))));
    group.bench_function("with", |b| {
        b.iter(|| run(with_future(black_box(true), black_box(false))))
    });
    group.bench_function("async_fn", |b| {
        b.iter(|| run(async_fn(black_box(true), black_box(false))))
    });
    group.finish();
}

criterion_group!(benches, cycles);
criterion_main!(benches);
