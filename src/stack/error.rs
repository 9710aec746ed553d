//! [`CloseErrors`]: every failure while closing an exit stack, in order.

use alloc::vec::Vec;
use core::fmt;

/// The failures of closing an [`ExitStack`](super::ExitStack), in the order they happened
/// (newest entry first). Never empty.
///
/// When the stack is used as a manager and the body failed too, the body's error is beside
/// these in [`Error::BodyAndExit`](crate::Error::BodyAndExit): nothing is lost.
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::ExitStack;
///
/// let mut stack = ExitStack::<&str>::new();
/// stack.defer(async || Err("first registered"));
/// stack.defer(async || Ok::<_, &str>(()));
/// stack.defer(async || Err("last registered"));
/// let errors = stack.close().await.unwrap_err();
/// assert_eq!(errors.iter().collect::<Vec<_>>(), [&"last registered", &"first registered"]);
/// assert_eq!(errors.to_string(), "2 exits failed while closing the stack; the last one: first registered");
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloseErrors<X> {
    errors: Vec<X>,
}

impl<X> CloseErrors<X> {
    pub(crate) fn new(errors: Vec<X>) -> Self {
        debug_assert!(!errors.is_empty());
        CloseErrors { errors }
    }

    /// The failures, in the order they happened.
    pub fn iter(&self) -> core::slice::Iter<'_, X> {
        self.errors.iter()
    }

    /// How many exits failed (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false`: a `CloseErrors` holds at least one failure.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The first failure (the cause, by the crate's convention).
    pub fn first(&self) -> &X {
        &self.errors[0]
    }

    /// The failures, in the order they happened.
    pub fn into_vec(self) -> Vec<X> {
        self.errors
    }

    /// The first failure (the cause) converted into `T` through `From`, the others dropped:
    /// the same verb as [`Error::collapse`](crate::Error::collapse) and
    /// [`GroupError::collapse`](crate::GroupError::collapse).
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::ExitStack;
    ///
    /// let mut stack = ExitStack::<&str>::new();
    /// stack.defer(async || Err("flush failed"));
    /// stack.defer(async || Err("close failed"));
    /// let cause: String = stack.close().await.unwrap_err().collapse();
    /// assert_eq!(cause, "close failed");
    /// # });
    /// ```
    pub fn collapse<T>(self) -> T
    where
        X: Into<T>,
    {
        self.errors
            .into_iter()
            .next()
            .expect("a `CloseErrors` holds at least one failure")
            .into()
    }
}

impl<X, E> crate::Error<CloseErrors<X>, E> {
    /// One error of type `T` for a `with` over an exit stack: the body's error if the body
    /// failed, otherwise the stack's first failure ([`CloseErrors::collapse`]); the others are
    /// dropped. With `T` the stack's own error type (`io::Error`, say) this is the one call
    /// that turns the whole result into it — no `From<CloseErrors<X>>` impl is needed, which
    /// the orphan rule would forbid for a foreign `T`.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use std::io;
    /// use async_with::{Error, ExitStack, with};
    ///
    /// async fn run() -> io::Result<u8> {
    ///     with(ExitStack::<io::Error>::new(), async |stack| {
    ///         stack.defer(async || Err(io::Error::other("flush failed")));
    ///         Ok::<_, io::Error>(7)
    ///     })
    ///     .await
    ///     .map_err(Error::collapse_stack)
    /// }
    /// assert_eq!(run().await.unwrap_err().to_string(), "flush failed");
    /// # });
    /// ```
    pub fn collapse_stack<T>(self) -> T
    where
        X: Into<T>,
        E: Into<T>,
    {
        match self {
            crate::Error::Enter(stack) | crate::Error::Exit(stack) => stack.collapse(),
            crate::Error::Body(body) | crate::Error::BodyAndExit { body, .. } => body.into(),
        }
    }
}

impl<'e, X> IntoIterator for &'e CloseErrors<X> {
    type Item = &'e X;
    type IntoIter = core::slice::Iter<'e, X>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Says how many exits failed; the first failure is [`source`](core::error::Error::source),
/// and with several, the newest (last) is printed here too.
impl<X: fmt::Display> fmt::Display for CloseErrors<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [_] => f.write_str("an exit failed while closing the stack"),
            [.., last] => write!(
                f,
                "{} exits failed while closing the stack; the last one: {last}",
                self.errors.len()
            ),
            [] => f.write_str("no exit failed"),
        }
    }
}

impl<X: core::error::Error + 'static> core::error::Error for CloseErrors<X> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.errors
            .first()
            .map(|e| e as &(dyn core::error::Error + 'static))
    }
}
