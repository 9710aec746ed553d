//! The size of each variant's future and the heap allocations per cycle, for every benchmark
//! scenario; and, for `benches/callgrind.sh`, a loop of cycles to count instructions in.
//!
//! ```sh
//! cargo run --release --example bench_table                 # the size / allocation table
//! cargo run --release --example bench_table -- cycles with 1000   # 1000 cycles of scenario (b)
//! cargo run --release --example bench_table -- cycles with 1000 ready   # of scenario (a)
//! cargo run --release --example bench_table -- cycles stack_with_10 1000  # scenario (f), N = 10
//! cargo run --release --example bench_table -- cycles scoped 1000   # scenario (h)
//! ```

#[path = "../benches/scenarios/mod.rs"]
mod scenarios;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::mem::size_of_val;
use std::sync::atomic::{AtomicUsize, Ordering};

use scenarios::*;

/// Counts heap allocations (the program is single-threaded).
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made while running `future` to completion.
fn allocations<F: std::future::Future>(future: F) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    black_box(run(future));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn row<F: std::future::Future>(scenario: &str, variant: &str, make: impl Fn() -> F) {
    let size = size_of_val(&make());
    let allocs = allocations(make());
    println!("| {scenario} | {variant} | {size} | {allocs} |");
}

/// Runs `n` cycles of scenario (b) with `variant` (of scenario (a) when `pending` is false;
/// the `*_rollback` variants run scenario (c), the `*_nested` and `with_tuple` variants
/// scenarios (d) and (e), `with_signal` and `async_fn_select` scenario (g), `scoped` scenario
/// (h), compared with `with` and `async_fn`; `stack_with_N`, `stack_close_N` (N = 1, 10,
/// 1000) and `nested_with_N` (N = 1, 10) run scenario (f)); the only function callgrind
/// counts (with what it calls). The variant is chosen once, outside
/// the loop: each variant's loop is its own function ([`repeat`]), so that adding a variant
/// changes neither the code nor the count of another.
#[inline(never)]
fn cycles(variant: &str, n: u64, pending: bool) {
    match variant {
        "with" => repeat(n, pending, |p| with_future(p, false)),
        "async_fn" => repeat(n, pending, |p| async_fn(p, false)),
        "with_rollback" => repeat(n, pending, |p| with_future(p, true)),
        "async_fn_rollback" => repeat(n, pending, |p| async_fn(p, true)),
        "boxed" => repeat(n, pending, |p| boxed(p, false)),
        "combinators" => repeat(n, pending, |p| combinators(p, false)),
        "with_nested" => repeat(n, pending, with_future_nested),
        "with_tuple" => repeat(n, pending, with_future_tuple),
        "async_fn_nested" => repeat(n, pending, async_fn_nested),
        "with_signal" => repeat(n, pending, with_signal),
        "async_fn_select" => repeat(n, pending, async_fn_select),
        "scoped" => repeat(n, pending, scoped_with),
        "nested_with_1" => repeat(n, pending, nested_with_1),
        "nested_with_10" => repeat(n, pending, nested_with_10),
        #[cfg(feature = "alloc")]
        stack if stack.starts_with("stack_") => stack_cycles(stack, n, pending),
        other => panic!("unknown variant {other}"),
    }
}

/// `n` cycles of the future `make` returns.
#[inline(never)]
fn repeat<F: std::future::Future>(n: u64, pending: bool, make: impl Fn(bool) -> F) {
    for _ in 0..n {
        drop(black_box(run(make(black_box(pending)))));
    }
}

/// `n` cycles of `stack_with_N` or `stack_close_N`.
#[cfg(feature = "alloc")]
fn stack_cycles(variant: &str, cycles: u64, pending: bool) {
    let (kind, n) = variant
        .rsplit_once('_')
        .expect("stack_with_N or stack_close_N");
    let n: usize = black_box(n.parse().expect("N in stack_with_N"));
    match kind {
        "stack_with" => repeat(cycles, pending, |p| stack_with(n, p)),
        "stack_close" => repeat(cycles, pending, |p| stack_close(n, p)),
        other => panic!("unknown variant {other}_N"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("cycles") {
        let variant = args
            .get(1)
            .expect("variant: with, async_fn, boxed or combinators");
        let n = args
            .get(2)
            .map_or(1000, |n| n.parse().expect("a number of cycles"));
        let pending = args.get(3).map(String::as_str) != Some("ready");
        cycles(variant, n, pending);
        return;
    }

    println!("| scenario | variant | future size (bytes) | heap allocations per cycle |");
    println!("|---|---|---:|---:|");
    for (scenario, pending, fail) in [
        ("(a) ready", false, false),
        ("(b) pending once", true, false),
        ("(c) body fails, rollback", true, true),
    ] {
        row(scenario, "`with`", || with_future(pending, fail));
        row(scenario, "`async fn`", || async_fn(pending, fail));
        row(scenario, "boxed body", || boxed(pending, fail));
        row(scenario, "combinators", || combinators(pending, fail));
    }
    row("(d) three nested", "`with`", || with_future_nested(true));
    row("(d) three nested", "`async fn`", || async_fn_nested(true));
    row("(d) three nested", "boxed body", || boxed_nested(true));
    row("(e) three as a tuple", "`with`", || with_future_tuple(true));
    row(
        "(g) a signal that never fires",
        "`with(..).cancel_on(..)`",
        || with_signal(true),
    );
    row(
        "(g) a signal that never fires",
        "`async fn` + `select`",
        || async_fn_select(true),
    );
    // (h): cycle (b) as a one-function manager; compare with (b)'s `with` and `async fn` rows.
    row("(h) one-function manager", "`scoped(..).with(..)`", || {
        scoped_with(true)
    });
    // (f): N managers through an `ExitStack` (N known at run time) against N nested `with`s
    // (N static). The stack's future does not grow with N; its entries are on the heap.
    row("(f) N = 1", "N nested `with`", || nested_with_1(true));
    #[cfg(feature = "alloc")]
    stack_rows(1);
    row("(f) N = 10", "N nested `with`", || nested_with_10(true));
    #[cfg(feature = "alloc")]
    stack_rows(10);
    #[cfg(feature = "alloc")]
    stack_rows(1000);
}

/// Scenario (f) rows for the stack with `n` entries.
#[cfg(feature = "alloc")]
fn stack_rows(n: usize) {
    let scenario = format!("(f) N = {n}");
    row(&scenario, "`ExitStack` in `with`", || stack_with(n, true));
    row(&scenario, "`ExitStack` + `close()`", || {
        stack_close(n, true)
    });
}
