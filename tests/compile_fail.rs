//! Compile-fail tests (S10, S11, S13, S18): the body cannot carry a borrowed resource out of `with`
//! (one manager or a tuple), a `SendManager` cannot be built from non-`Send` parts,
//! nothing can reach it after the future completed, a plain closure returning `async move`
//! is rejected, and `WithFuture` is `#[must_use]` (`!Unpin` is checked in `auto_traits.rs`).
//!
//! The `.stderr` files match the stable compiler used by CI (rustc 1.95). Regenerate them
//! with `TRYBUILD=overwrite cargo test --test compile_fail` and read every one: each must fail
//! for the reason its comment states. `tests/ui/pass/` holds the same code written the
//! supported way; it must compile and run, which shows the failures come from the leaked
//! borrow (or the missing await) and nothing else.

// Run once, with default features (the messages do not depend on them; each run takes minutes).
#[cfg(all(not(miri), feature = "std"))]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
