//! Scenario (f): entering and closing N managers through an `ExitStack` against N nested
//! `with`s (N static: 1 and 10), every phase ready, and every phase `Pending` once. Run with
//! `cargo bench --bench stack` (about a minute; short measurement times per group).
//!
//! - `stack_with`: `with(ExitStack::new(), async |stack| { enter N in a loop; body })`;
//! - `stack_close`: a local `ExitStack`, N entered in a loop, then `close().await`;
//! - `nested_with`: N `with`s written out (a macro), the newest innermost.
//!
//! Every variant returns N and does the same work: each manager's enter and exit (the `Open`
//! manager of the other benchmarks), one increment per counter, one body step.

mod scenarios;

use core::hint::black_box;
use core::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scenarios::*;

fn stack(c: &mut Criterion) {
    for (phases, pending) in [("ready", false), ("pending", true)] {
        let mut group = c.benchmark_group(format!("f_stack_{phases}"));
        group
            .sample_size(40)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for n in [1_usize, 10, 1000] {
            group.bench_with_input(BenchmarkId::new("stack_with", n), &n, |b, &n| {
                b.iter(|| run(stack_with(black_box(n), black_box(pending))))
            });
            group.bench_with_input(BenchmarkId::new("stack_close", n), &n, |b, &n| {
                b.iter(|| run(stack_close(black_box(n), black_box(pending))))
            });
        }
        group.bench_with_input(BenchmarkId::new("nested_with", 1), &1, |b, _| {
            b.iter(|| run(nested_with_1(black_box(pending))))
        });
        group.bench_with_input(BenchmarkId::new("nested_with", 10), &10, |b, _| {
            b.iter(|| run(nested_with_10(black_box(pending))))
        });
        group.finish();
    }
}

criterion_group!(benches, stack);
criterion_main!(benches);
