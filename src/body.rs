//! [`Body`]: names the future of a body that borrows the resource.

use core::future::Future;

use crate::output::BodyOutput;

mod sealed {
    pub trait Sealed<'r, R, Bound> {}
}

/// A body: a closure that borrows the resource as `&'r mut R` and returns a future of a
/// [`BodyOutput`] (`Result<Ok, Err>`, `()` or [`Value<Ok>`](crate::Value)).
///
/// You never implement this trait: it is implemented for every
/// `FnOnce(&'r mut R) -> impl Future<Output = impl BodyOutput>`, which includes async closures
/// (`async |r| { .. }`) and `async fn` items taking `&mut R`. It exists because the future of an
/// async closure cannot be named on stable Rust, and [`WithFuture`](crate::WithFuture) has to
/// store it.
///
/// [`with`](crate::with) asks for `for<'r> Body<'r, R, Ok = T, Err = E>`: the output types
/// are the same for every borrow, so the body cannot return the resource or anything that
/// borrows it.
///
/// The third parameter is never written: its default `&'r R` makes the higher-ranked bound
/// range only over lifetimes `'r` that `R` outlives, so that resources with lifetimes of their
/// own (a driver borrowing a bus) work.
///
/// # Naming a body: `impl for<'r> Body<'r, R, ..>`, not `impl AsyncFnOnce`
///
/// To name a [`WithFuture`](crate::WithFuture) whose body is a closure, in a return type or a
/// bound, write the body as `impl for<'r> Body<'r, R, Ok = T, Err = E>`:
///
/// ```
/// use core::convert::Infallible;
/// use async_with::{Body, NullContext, Value, WithFuture, null_context, with};
///
/// /// Counts the set bits of `word`, inside a `with`.
/// fn popcount(
///     word: u32,
/// ) -> WithFuture<'static, NullContext<u32>, impl for<'r> Body<'r, u32, Ok = u32, Err = Infallible>>
/// {
///     with(null_context(word), async |w| Value(w.count_ones()))
/// }
///
/// # futures_executor::block_on(async {
/// let Ok(bits) = popcount(0b1011).await;
/// assert_eq!(bits, 3);
/// # });
/// ```
///
/// `impl AsyncFnOnce(&mut u32) -> Value<u32>` in that place is refused (E0277, "expected a
/// `FnOnce(&mut u32)` closure"). `WithFuture` stores the body's future, so its type must name
/// that future; an `AsyncFnOnce`'s future cannot be named on stable Rust, which is why
/// `WithFuture` asks for `Body`, whose [`Future`](Body::Future) names it. An opaque
/// `impl AsyncFnOnce(..)` promises only `AsyncFnOnce`, so the compiler cannot see that it is a
/// `Body` too:
///
/// ```compile_fail,E0277
/// # use async_with::{NullContext, Value, WithFuture, null_context, with};
/// fn popcount(
///     word: u32,
/// ) -> WithFuture<'static, NullContext<u32>, impl AsyncFnOnce(&mut u32) -> Value<u32>> {
///     with(null_context(word), async |w| Value(w.count_ones()))
/// }
/// ```
///
/// The `for<'r>` says the body works with a borrow of any length, and `Ok = T, Err = E` that
/// its output is the same type whatever the borrow. A generic function with a type parameter
/// `B` writes the same bound on `B` (see [`WithFuture`](crate::WithFuture)'s examples).
///
/// # A closure returning `async move { .. }` is not a body
///
/// `|r| async move { r.read().await }` does not satisfy the bound: the compiler cannot tell
/// that the block's type may depend on the lifetime of `r` (the "lending closure" limit).
/// Write an async closure, `async |r| r.read().await`, or an `async fn`.
pub trait Body<'r, R, Bound = &'r R>: sealed::Sealed<'r, R, Bound> {
    /// What the body returns on success.
    type Ok;
    /// What the body returns on failure.
    type Err;
    /// The body's future, borrowing the resource for `'r`.
    type Future: Future<Output: BodyOutput<Ok = Self::Ok, Err = Self::Err>>;

    /// Calls the body with the resource.
    fn call(self, resource: &'r mut R) -> Self::Future;
}

impl<'r, R, F, Fut> sealed::Sealed<'r, R, &'r R> for F
where
    F: FnOnce(&'r mut R) -> Fut,
    Fut: Future<Output: BodyOutput>,
{
}

impl<'r, R, F, Fut> Body<'r, R> for F
where
    F: FnOnce(&'r mut R) -> Fut,
    Fut: Future<Output: BodyOutput>,
{
    type Ok = <Fut::Output as BodyOutput>::Ok;
    type Err = <Fut::Output as BodyOutput>::Err;
    type Future = Fut;

    fn call(self, resource: &'r mut R) -> Fut {
        self(resource)
    }
}
