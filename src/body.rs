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
