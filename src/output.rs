//! [`BodyOutput`]: what a body may return — `Result<T, E>`, `()`, or [`Value`].

use core::convert::Infallible;

mod sealed {
    pub trait Sealed {}
    impl<T, E> Sealed for Result<T, E> {}
    impl Sealed for () {}
    impl<T> Sealed for super::Value<T> {}
}

/// What a body may return: a `Result<T, E>`, nothing (`()`), or a [`Value`].
///
/// A body that cannot fail does not have to name an error type:
///
/// | the body returns | `with` resolves to |
/// |---|---|
/// | `Result<T, E>` | `Result<T, Error<X, E>>` |
/// | `()` | `Result<(), Error<X, Infallible>>` |
/// | [`Value(t)`](Value) | `Result<T, Error<X, Infallible>>` |
///
/// where `X` is the manager's error. Sealed: these three are all there is, so the body's
/// output can never borrow the resource.
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Value, null_context, with};
///
/// // Nothing to return and nothing that can fail: no `Ok(())`, no error type.
/// let Ok(()) = with(null_context(1), async |n| *n += 1).await;
///
/// // A value, and nothing that can fail.
/// let Ok(two) = with(null_context(1), async |n| Value(*n + 1)).await;
/// assert_eq!(two, 2);
/// # });
/// ```
pub trait BodyOutput: sealed::Sealed {
    /// The value of a successful body.
    type Ok;
    /// The error of a failed body ([`Infallible`] when it cannot fail).
    type Err;

    /// The output as a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> BodyOutput for Result<T, E> {
    type Ok = T;
    type Err = E;

    #[inline]
    fn into_result(self) -> Self {
        self
    }
}

impl BodyOutput for () {
    type Ok = ();
    type Err = Infallible;

    #[inline]
    fn into_result(self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The value of a body that cannot fail: `async |r| Value(r.len())`.
///
/// The short form of `Ok::<_, Infallible>(value)`. A body that returns nothing needs neither:
/// it returns `()`.
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Value, null_context, with};
///
/// let Ok(len) = with(null_context(*b"abc"), async |bytes| Value(bytes.len())).await;
/// assert_eq!(len, 3);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Value<T>(pub T);

impl<T> BodyOutput for Value<T> {
    type Ok = T;
    type Err = Infallible;

    #[inline]
    fn into_result(self) -> Result<T, Infallible> {
        Ok(self.0)
    }
}
