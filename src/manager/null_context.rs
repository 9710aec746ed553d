//! [`null_context`]: a manager that lends a value and does nothing on exit.

use core::convert::Infallible;
use core::future::{Ready, ready};

use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// Lends `value` to the body and does nothing on exit — Python's `contextlib.nullcontext`.
///
/// Useful where a manager is expected but there is nothing to acquire: an optional lock, a
/// test double, a resource that is already open.
///
/// The name is Rust's spelling of Python's (`snake_case`, as `NullContext` is its type);
/// searching the docs for `nullcontext` finds it.
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Value, null_context, with};
///
/// // Neither the manager nor the body can fail: the pattern is irrefutable.
/// let Ok(doubled) = with(null_context(21), async |n| Value(*n * 2)).await;
/// assert_eq!(doubled, 42);
///
/// // A body that can fail: its error is the only one there can be.
/// let parsed = with(null_context("4x"), async |s| s.parse::<u8>()).await;
/// assert!(parsed.map_err(|e| e.into_body()).is_err());
/// # });
/// ```
#[doc(alias = "nullcontext")]
pub fn null_context<T>(value: T) -> NullContext<T> {
    NullContext { value }
}

/// A manager that lends its value and does nothing on exit; made by [`null_context`] (see its
/// examples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "managers do nothing unless entered (`with(manager, body)`)"]
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

/// Exit handle that does nothing (the value is dropped); used by [`null_context`].
///
/// A hand-written manager whose resource needs no release can use it as its
/// [`Exit`](AsyncEnter::Exit). Its error is [`Infallible`], so the manager's must be too:
///
/// ```
/// use core::convert::Infallible;
/// use core::future::{Ready, ready};
/// use async_with::{AsyncEnter, NoExit, Value, with};
///
/// /// A snapshot of a configuration: taken on enter, nothing to release.
/// struct Snapshot<'a>(&'a [u8]);
///
/// impl AsyncEnter for Snapshot<'_> {
///     type Resource = Vec<u8>;
///     type Error = Infallible;
///     type Exit = NoExit;
///     type Enter = Ready<Result<(Vec<u8>, NoExit), Infallible>>;
///
///     fn enter(self) -> Self::Enter {
///         ready(Ok((self.0.to_vec(), NoExit)))
///     }
/// }
///
/// # futures_executor::block_on(async {
/// let config = [1, 2, 3];
/// let Ok(sum) = with(Snapshot(&config), async |copy| Value(copy.iter().sum::<u8>())).await;
/// assert_eq!(sum, 6);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoExit;

impl<T> AsyncExit<T> for NoExit {
    type Error = Infallible;
    type Future<'o> = Ready<Result<(), Infallible>>;

    fn exit<'o>(self, _value: T, _outcome: Outcome<'o>) -> Self::Future<'o> {
        ready(Ok(()))
    }
}
