//! [`nullcontext`]: a manager that lends a value and does nothing on exit.

use core::convert::Infallible;
use core::future::{Ready, ready};

use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// Lends `value` to the body and does nothing on exit — Python's `contextlib.nullcontext`.
///
/// Useful where a manager is expected but there is nothing to acquire: an optional lock, a
/// test double, a resource that is already open.
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{nullcontext, with};
///
/// let doubled = with(nullcontext(21), async |n| Ok::<_, ()>(*n * 2)).await;
/// assert_eq!(doubled, Ok(42));
/// # });
/// ```
pub fn nullcontext<T>(value: T) -> NullContext<T> {
    NullContext { value }
}

/// A manager that lends its value and does nothing on exit; made by [`nullcontext`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NullContext<T> {
    value: T,
}

impl<T> AsyncEnter for NullContext<T> {
    type Resource = T;
    type Error = Infallible;
    type Exit = NoExit;
    type Enter = Ready<Result<(T, NoExit), Infallible>>;

    fn enter(self) -> Self::Enter {
        ready(Ok((self.value, NoExit)))
    }
}

/// Exit handle that does nothing (the value is dropped); used by [`nullcontext`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoExit;

impl<T> AsyncExit<T> for NoExit {
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn exit(self, _value: T, _outcome: Outcome<'_>) -> Self::Future {
        ready(Ok(()))
    }
}
