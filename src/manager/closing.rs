//! [`closing`]: exit by calling an async close function — Python's `aclosing`.

use core::fmt;
use core::future::{Future, Ready, ready};

use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// Lends `value` to the body, then closes it with `close`, whatever the body did — Python's
/// `contextlib.aclosing`.
///
/// `close` is anything that consumes the value and returns a future of `Result<(), X>`: an
/// `async fn close(self)` method, or an async closure. Enter cannot fail. Stopped by a signal
/// ([`cancel_on`](crate::WithFuture::cancel_on)), exit sees `Cancelled` and closes the value,
/// awaited, as after any other ending; dropped mid-body (abortive cancellation), the value is
/// dropped without `close`.
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Value, closing, with};
///
/// struct File { buffered: usize }
///
/// impl File {
///     async fn close(self) -> Result<(), &'static str> {
///         if self.buffered > 0 { /* an async flush would go here */ }
///         Ok(())
///     }
/// }
///
/// let written = with(closing(File { buffered: 0 }, File::close), async |file| {
///     file.buffered += 5;
///     Value(5) // buffering cannot fail; `close` may
/// })
/// .await;
/// assert_eq!(written, Ok(5));
/// # });
/// ```
#[doc(alias = "aclosing")]
pub fn closing<T, F, Fut, X>(value: T, close: F) -> Closing<T, F>
where
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = Result<(), X>>,
{
    Closing { value, close }
}

/// A manager that closes its value on exit; made by [`closing`] (see its example).
#[must_use = "managers do nothing unless entered (`with(manager, body)`)"]
pub struct Closing<T, F> {
    value: T,
    close: F,
}

impl<T: fmt::Debug, F> fmt::Debug for Closing<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closing")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl<T, F, Fut, X> AsyncEnter for Closing<T, F>
where
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = Result<(), X>>,
{
    type Resource = T;
    type Error = X;
    type Exit = ClosingExit<F>;
    type Enter = Ready<Result<(T, ClosingExit<F>), X>>;

    fn enter(self) -> Self::Enter {
        ready(Ok((self.value, ClosingExit { close: self.close })))
    }
}

/// Exit handle of [`closing`]: calls the close function.
///
/// `exit` closes the value whatever the outcome, `Cancelled` included; `cancel` (the `with`
/// was dropped mid-body) drops it without closing, since `close` is asynchronous. Code that drives a manager without
/// [`with`](crate::with) meets it after entering:
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{AsyncEnter, AsyncExit, Outcome, closing};
///
/// struct Socket { open: bool }
///
/// async fn shutdown(socket: Socket) -> Result<(), &'static str> {
///     if socket.open { Ok(()) } else { Err("already closed") }
/// }
///
/// let (socket, close) = closing(Socket { open: true }, shutdown).enter().await?;
/// close.exit(socket, Outcome::Success).await?; // calls `shutdown(socket)`
/// # Ok::<(), &str>(())
/// # }).unwrap();
/// ```
pub struct ClosingExit<F> {
    close: F,
}

impl<F> ClosingExit<F> {
    /// The exit handle that calls `close`; the exit stack's `adopt` uses it too.
    #[cfg(feature = "alloc")]
    pub(crate) fn new(close: F) -> Self {
        ClosingExit { close }
    }
}

impl<F> fmt::Debug for ClosingExit<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClosingExit").finish_non_exhaustive()
    }
}

impl<T, F, Fut, X> AsyncExit<T> for ClosingExit<F>
where
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = Result<(), X>>,
{
    type Error = X;
    type Future<'o> = Fut;

    fn exit(self, value: T, _outcome: Outcome<'_>) -> Fut {
        (self.close)(value)
    }
}
