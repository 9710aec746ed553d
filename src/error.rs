//! [`Error`]: every failure of one `with`, none lost.

use core::convert::Infallible;
use core::fmt;

/// The error of a [`WithFuture`](crate::WithFuture): which phases failed, with their errors.
///
/// `X` is the manager's error (enter and exit), `E` the body's. When both the body and exit
/// fail, both are kept ([`Error::BodyAndExit`]), like JavaScript's `SuppressedError` or
/// Python's `__context__`.
///
/// # Collapsing into your own error type
///
/// [`Error::collapse`] turns it into one error of your type through `From`, keeping the body's
/// error when both failed (it is usually the cause; the exit error is dropped, by your choice).
/// [`Error::collapse_with`] keeps both by letting you combine them.
///
/// ```
/// use async_with::Error;
///
/// #[derive(Debug, PartialEq)]
/// enum AppError {
///     Db(&'static str),
///     Parse(u32),
/// }
/// impl From<&'static str> for AppError {
///     fn from(e: &'static str) -> Self { AppError::Db(e) }
/// }
/// impl From<u32> for AppError {
///     fn from(e: u32) -> Self { AppError::Parse(e) }
/// }
///
/// let both: Error<&'static str, u32> = Error::BodyAndExit { body: 7, exit: "rollback failed" };
/// assert_eq!(both.collapse::<AppError>(), AppError::Parse(7));
///
/// // In a function returning `Result<_, AppError>`, name the target type: `?` converts
/// // through `From`, so the compiler cannot infer it from `map_err(Error::collapse)`.
/// fn parse() -> Result<u32, AppError> {
///     let result: Result<u32, Error<&'static str, u32>> = Err(Error::Exit("close failed"));
///     let value = result.map_err(Error::collapse::<AppError>)?;
///     Ok(value)
/// }
/// assert_eq!(parse(), Err(AppError::Db("close failed")));
/// ```
///
/// # Suppression
///
/// Python lets `__aexit__` swallow the body's exception by returning `True`. This crate does
/// not let a manager do that, as JavaScript's `await using` and C#'s `await using` do not: in
/// Rust the body's error is a value of the caller's type, a generic manager cannot invent the
/// `T` the caller expects instead of it, and an error that disappears inside a library is a
/// bug that is hard to find. Suppression is the caller's decision, made with
/// [`Error::recover`]: it turns a body error into a value when exit succeeded, and refuses
/// when exit failed too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error<X, E> {
    /// Enter failed: neither the body nor exit ran.
    Enter(X),
    /// The body failed; exit succeeded.
    Body(E),
    /// The body succeeded but exit failed; the body's value was dropped.
    Exit(X),
    /// The body failed, and then exit failed too.
    BodyAndExit {
        /// The body's error, the first failure.
        body: E,
        /// Exit's error, the newest failure.
        exit: X,
    },
}

impl<X, E> Error<X, E> {
    /// The body's error, if the body failed.
    pub fn body(&self) -> Option<&E> {
        match self {
            Error::Body(body) | Error::BodyAndExit { body, .. } => Some(body),
            Error::Enter(_) | Error::Exit(_) => None,
        }
    }

    /// The manager's error, if enter or exit failed.
    ///
    /// ```
    /// use async_with::Error;
    ///
    /// let both: Error<&str, u32> = Error::BodyAndExit { body: 7, exit: "rollback failed" };
    /// assert_eq!(both.body(), Some(&7));
    /// assert_eq!(both.manager(), Some(&"rollback failed"));
    ///
    /// let body_only: Error<&str, u32> = Error::Body(7);
    /// assert_eq!(body_only.manager(), None);
    /// ```
    pub fn manager(&self) -> Option<&X> {
        match self {
            Error::Enter(x) | Error::Exit(x) | Error::BodyAndExit { exit: x, .. } => Some(x),
            Error::Body(_) => None,
        }
    }

    /// One error of type `T`: the body's if the body failed, the manager's otherwise.
    ///
    /// When both the body and exit failed, the exit error is dropped; use
    /// [`collapse_with`](Error::collapse_with) to keep it.
    pub fn collapse<T>(self) -> T
    where
        X: Into<T>,
        E: Into<T>,
    {
        self.collapse_with(|body, _exit| body.into())
    }

    /// One error of type `T`, combining the two with `both` when the body and exit both failed.
    ///
    /// ```
    /// use async_with::Error;
    ///
    /// let both: Error<String, String> = Error::BodyAndExit {
    ///     body: "parse failed".into(),
    ///     exit: "rollback failed".into(),
    /// };
    /// let message = both.collapse_with(|body, exit| format!("{body} (then {exit})"));
    /// assert_eq!(message, "parse failed (then rollback failed)");
    /// ```
    pub fn collapse_with<T>(self, both: impl FnOnce(E, X) -> T) -> T
    where
        X: Into<T>,
        E: Into<T>,
    {
        match self {
            Error::Enter(x) | Error::Exit(x) => x.into(),
            Error::Body(e) => e.into(),
            Error::BodyAndExit { body, exit } => both(body, exit),
        }
    }

    /// Suppresses a body error: `f` may turn it into a value (`Ok`) or keep it (`Err`).
    ///
    /// Only [`Error::Body`] is offered to `f`: if enter or exit failed, the error is returned
    /// unchanged, so an exit failure is never swallowed together with the body's error.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{null_context, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Lookup { Missing, Corrupt }
    ///
    /// // Python's `with suppress(KeyError):`, made explicit at the call site.
    /// let found = with(null_context(()), async |_| Err::<u32, _>(Lookup::Missing))
    ///     .await
    ///     .or_else(|e| e.recover(|e| if e == Lookup::Missing { Ok(0) } else { Err(e) }));
    /// assert_eq!(found, Ok(0));
    ///
    /// let corrupt = with(null_context(()), async |_| Err::<u32, _>(Lookup::Corrupt))
    ///     .await
    ///     .or_else(|e| e.recover(|e| if e == Lookup::Missing { Ok(0) } else { Err(e) }));
    /// assert!(corrupt.is_err());
    /// # });
    /// ```
    pub fn recover<T>(self, f: impl FnOnce(E) -> Result<T, E>) -> Result<T, Self> {
        match self {
            Error::Body(e) => f(e).map_err(Error::Body),
            other => Err(other),
        }
    }

    /// Converts the manager's error (from enter or exit) with `f`, keeping the phase and the
    /// body's error: `Result::map_err` for one side.
    ///
    /// With a group of managers around a nested `with`, it is the first of two calls that give
    /// one error of your type: the group's first failure, then
    /// [`collapse_nested`](Error::collapse_nested).
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{Error, GroupError, Outcome, Status, from_fns, null_context, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum AppError { Lock(&'static str), Tx(u16), Parse }
    /// impl From<&'static str> for AppError { fn from(e: &'static str) -> Self { AppError::Lock(e) } }
    /// impl From<u16> for AppError { fn from(e: u16) -> Self { AppError::Tx(e) } }
    /// impl From<core::convert::Infallible> for AppError { fn from(n: core::convert::Infallible) -> Self { match n {} } }
    ///
    /// let lock = from_fns(async || Ok::<_, &str>(()), async |_: (), _: Outcome<'_>| Ok(()));
    /// let tx = from_fns(async || Ok::<_, u16>(0_u32), async |_: u32, _: Outcome<'_>| Err(409_u16));
    /// let result = with((lock, null_context(())), async |_| {
    ///     with(tx, async |rows| -> Result<u32, AppError> {
    ///         *rows += 1;
    ///         Ok(*rows)
    ///     })
    ///     .await
    /// })
    /// .await
    /// .map_err(|e| e.map_manager(GroupError::collapse::<AppError>).collapse_nested::<AppError>());
    /// assert_eq!(result, Err(AppError::Tx(409))); // the inner commit failed
    /// # });
    /// ```
    pub fn map_manager<X2>(self, f: impl FnOnce(X) -> X2) -> Error<X2, E> {
        match self {
            Error::Enter(x) => Error::Enter(f(x)),
            Error::Exit(x) => Error::Exit(f(x)),
            Error::Body(e) => Error::Body(e),
            Error::BodyAndExit { body, exit } => Error::BodyAndExit {
                body,
                exit: f(exit),
            },
        }
    }

    /// Converts the body's error with `f`, keeping the phase and the manager's error.
    ///
    /// ```
    /// use async_with::Error;
    ///
    /// let both: Error<&str, u8> = Error::BodyAndExit { body: 7, exit: "rollback failed" };
    /// let described = both.map_body(|code| format!("parse error {code}"));
    /// assert_eq!(described.body().map(String::as_str), Some("parse error 7"));
    /// assert_eq!(described.manager(), Some(&"rollback failed"));
    /// ```
    pub fn map_body<E2>(self, f: impl FnOnce(E) -> E2) -> Error<X, E2> {
        match self {
            Error::Enter(x) => Error::Enter(x),
            Error::Exit(x) => Error::Exit(x),
            Error::Body(e) => Error::Body(f(e)),
            Error::BodyAndExit { body, exit } => Error::BodyAndExit {
                body: f(body),
                exit,
            },
        }
    }
}

impl<E> Error<Infallible, E> {
    /// The body's error, when the manager cannot fail ([`null_context`](crate::null_context), or
    /// any manager whose error is [`Infallible`]): then `Body` is the only variant there is.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{null_context, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct ParseError;
    ///
    /// async fn parse() -> Result<u8, ParseError> {
    ///     with(null_context(*b"7"), async |digits| match digits[0] {
    ///         d @ b'0'..=b'9' => Ok(d - b'0'),
    ///         _ => Err(ParseError),
    ///     })
    ///     .await
    ///     .map_err(|e| e.into_body())
    /// }
    /// assert_eq!(parse().await, Ok(7));
    /// # });
    /// ```
    pub fn into_body(self) -> E {
        match self {
            Error::Body(e) => e,
            Error::Enter(never) | Error::Exit(never) | Error::BodyAndExit { exit: never, .. } => {
                match never {}
            }
        }
    }
}

impl<X> Error<X, Infallible> {
    /// The manager's error, when the body cannot fail (it returns `()` or
    /// [`Value`](crate::Value), or its error type is [`Infallible`]): then `Enter` and `Exit`
    /// are the only variants there are.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{Outcome, Status, from_fns, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Busy;
    ///
    /// let lock = from_fns(async || Err::<u8, _>(Busy), async |_: u8, _: Outcome<'_>| Ok(()));
    /// let result = with(lock, async |n| *n += 1).await.map_err(|e| e.into_manager());
    /// assert_eq!(result, Err(Busy));
    /// # });
    /// ```
    pub fn into_manager(self) -> X {
        match self {
            Error::Enter(x) | Error::Exit(x) => x,
            Error::Body(never) | Error::BodyAndExit { body: never, .. } => match never {},
        }
    }
}

impl<X, X2, E> Error<X, Error<X2, E>> {
    /// One error of type `T` for two nested `with`s (the outer manager's error `X`, the inner
    /// one's `X2`, the body's `E`): the first failure — the body's if it failed, else the
    /// inner manager's, else the outer one's. The others are dropped.
    ///
    /// Nesting is how managers that depend on each other are written (the second made from
    /// the first one's resource); see the [`group`](crate::group) module.
    ///
    /// ```
    /// use async_with::Error;
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum AppError { Conn(&'static str), Tx(u8), Body(char) }
    /// impl From<&'static str> for AppError { fn from(e: &'static str) -> Self { AppError::Conn(e) } }
    /// impl From<u8> for AppError { fn from(e: u8) -> Self { AppError::Tx(e) } }
    /// impl From<char> for AppError { fn from(e: char) -> Self { AppError::Body(e) } }
    ///
    /// let rollback_failed: Error<&'static str, Error<u8, char>> =
    ///     Error::Exit("close failed");
    /// assert_eq!(rollback_failed.collapse_nested::<AppError>(), AppError::Conn("close failed"));
    ///
    /// let body_failed: Error<&'static str, Error<u8, char>> =
    ///     Error::BodyAndExit { body: Error::BodyAndExit { body: 'x', exit: 3 }, exit: "close failed" };
    /// assert_eq!(body_failed.collapse_nested::<AppError>(), AppError::Body('x'));
    /// ```
    pub fn collapse_nested<T>(self) -> T
    where
        X: Into<T>,
        X2: Into<T>,
        E: Into<T>,
    {
        match self {
            Error::Enter(x) | Error::Exit(x) => x.into(),
            Error::Body(inner) | Error::BodyAndExit { body: inner, .. } => inner.collapse(),
        }
    }
}

/// Says which phase failed. The failure itself is [`source`](core::error::Error::source), so
/// that error reporters (`anyhow`, `eyre`, …) print each message once; only the exit error
/// after a failed body, which `source` cannot also return, is printed here.
impl<X: fmt::Display, E> fmt::Display for Error<X, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Enter(_) => f.write_str("entering the resource failed"),
            Error::Body(_) => f.write_str("the body failed"),
            Error::Exit(_) => f.write_str("exiting the resource failed"),
            Error::BodyAndExit { exit, .. } => {
                write!(
                    f,
                    "the body failed, and then exiting the resource failed: {exit}"
                )
            }
        }
    }
}

impl<X, E> core::error::Error for Error<X, E>
where
    X: core::error::Error + 'static,
    E: core::error::Error + 'static,
{
    /// The failure: the body's error when the body failed (also when exit failed after it),
    /// the manager's otherwise.
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Enter(x) | Error::Exit(x) => Some(x),
            Error::Body(e) | Error::BodyAndExit { body: e, .. } => Some(e),
        }
    }
}
