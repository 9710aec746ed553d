//! A counting global allocator for test binaries that prove "no allocation": `System`,
//! counting every allocation (and reallocation) of the calling thread unless paused. Include it
//! with `mod counting_alloc;` in the test file; it installs itself as the binary's allocator.

#![allow(dead_code)] // each test binary uses a different part

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Set while code outside the test's control (the std panic machinery) may allocate.
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

fn record_allocation() {
    // `try_with`: the allocator may be called while thread-locals are being torn down.
    if !PAUSED.try_with(Cell::get).unwrap_or(true) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

/// Allocations counted on this thread so far.
pub fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Stops (`true`) or resumes (`false`) counting on this thread.
pub fn pause_counting(paused: bool) {
    PAUSED.with(|p| p.set(paused));
}

/// Runs `f` and returns its result with the number of allocations it made on this thread.
pub fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = allocations();
    let out = f();
    (out, allocations() - before)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_allocation();
        // SAFETY: forwarded; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record_allocation();
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Polls `fut` to completion on this thread with a no-op waker, allocating nothing itself (so
/// it can run inside [`allocations_in`]); returns the output and the number of polls.
pub fn poll_to_end<F: std::future::Future>(fut: F) -> (F::Output, usize) {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut polls = 0;
    loop {
        polls += 1;
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        assert!(polls < 10_000_000, "the future did not finish");
    }
}
