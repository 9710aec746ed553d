//! [`from_fns`]: a manager built from an async enter closure and an async exit closure.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::{Outcome, Status};

/// Builds a manager from an async `enter` and an async `exit` — Python's
/// `@asynccontextmanager`, with no trait impl and no type to name.
///
/// `enter` produces the resource (or an error); `exit` receives the resource back together
/// with the body's [`Status`]. Both may be async closures or `async fn` items. A library can
/// return the result as `impl AsyncEnter<Resource = .., Error = ..>`.
///
/// Exit closures get a [`Status`] rather than the full [`Outcome`], because an async closure
/// keeps its arguments for as long as it runs and the outcome only borrows the body's error.
/// To see the error itself, implement [`AsyncExit`] by hand.
///
/// # Returning it from a library
///
/// `impl AsyncEnter<Resource = R, Error = X>` hides the enter and exit futures, so callers
/// cannot tell whether they are `Send`. If your users will `tokio::spawn` the `with`, say so in
/// the return type with associated type bounds:
///
/// ```
/// use async_with::{AsyncEnter, AsyncExit, from_fns};
///
/// fn counter() -> impl AsyncEnter<
///     Resource = u32,
///     Error = (),
///     Enter: Send,
///     Exit: Send + AsyncExit<u32, Future: Send>,
/// > + Send {
///     from_fns(async || Ok(0), async |_n: u32, _status| Ok(()))
/// }
/// # fn assert_send<T: Send>(_: &T) {}
/// # let f = async_with::with(counter(), async |n| Ok::<_, ()>(*n));
/// # assert_send(&f);
/// ```
///
/// # Examples
///
/// ```
/// # async_with::__doc_block_on(async {
/// use async_with::{AsyncEnter, Status, from_fns, with};
///
/// struct Conn { open: bool }
///
/// /// What a library would export: a connection that is always closed gracefully.
/// fn connect(addr: &str) -> impl AsyncEnter<Resource = Conn, Error = &'static str> + '_ {
///     from_fns(
///         async move || if addr.is_empty() { Err("no address") } else { Ok(Conn { open: true }) },
///         async |mut conn: Conn, _status: Status| {
///             conn.open = false; // an async close_notify would be awaited here
///             Ok(())
///         },
///     )
/// }
///
/// let sent = with(connect("sensor.local"), async |conn| {
///     assert!(conn.open);
///     Ok::<_, &str>(3)
/// })
/// .await;
/// assert_eq!(sent, Ok(3));
/// # });
/// ```
pub fn from_fns<Enter, EnterFut, Exit, ExitFut, R, X>(
    enter: Enter,
    exit: Exit,
) -> FromFns<Enter, Exit>
where
    Enter: FnOnce() -> EnterFut,
    EnterFut: Future<Output = Result<R, X>>,
    Exit: FnOnce(R, Status) -> ExitFut,
    ExitFut: Future<Output = Result<(), X>>,
{
    FromFns { enter, exit }
}

/// A manager built by [`from_fns`].
#[derive(Clone)]
pub struct FromFns<Enter, Exit> {
    enter: Enter,
    exit: Exit,
}

impl<Enter, Exit> fmt::Debug for FromFns<Enter, Exit> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFns").finish_non_exhaustive()
    }
}

impl<Enter, EnterFut, Exit, ExitFut, R, X> AsyncEnter for FromFns<Enter, Exit>
where
    Enter: FnOnce() -> EnterFut,
    EnterFut: Future<Output = Result<R, X>>,
    Exit: FnOnce(R, Status) -> ExitFut,
    ExitFut: Future<Output = Result<(), X>>,
{
    type Resource = R;
    type Error = X;
    type Exit = ExitFn<Exit>;
    type Enter = EnterFn<EnterFut, Exit>;

    fn enter(self) -> Self::Enter {
        EnterFn {
            future: (self.enter)(),
            exit: Some(self.exit),
        }
    }
}

pin_project! {
    /// Enter future of a [`from_fns`] manager: the enter closure's future, with the exit
    /// closure kept for later.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct EnterFn<Fut, Exit> {
        #[pin]
        future: Fut,
        exit: Option<Exit>,
    }
}

impl<Fut, Exit> fmt::Debug for EnterFn<Fut, Exit> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterFn").finish_non_exhaustive()
    }
}

impl<Fut, Exit, R, X> Future for EnterFn<Fut, Exit>
where
    Fut: Future<Output = Result<R, X>>,
{
    type Output = Result<(R, ExitFn<Exit>), X>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resource = ready!(this.future.poll(cx))?;
        let exit = this.exit.take().expect("`EnterFn` polled after completion");
        Poll::Ready(Ok((resource, ExitFn { exit })))
    }
}

/// Exit handle of a [`from_fns`] manager: calls the exit closure with the body's [`Status`].
/// On cancellation the resource is dropped and the closure is not called.
pub struct ExitFn<Exit> {
    exit: Exit,
}

impl<Exit> fmt::Debug for ExitFn<Exit> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitFn").finish_non_exhaustive()
    }
}

impl<Exit, ExitFut, R, X> AsyncExit<R> for ExitFn<Exit>
where
    Exit: FnOnce(R, Status) -> ExitFut,
    ExitFut: Future<Output = Result<(), X>>,
{
    type Error = X;
    type Future = ExitFut;

    fn exit(self, resource: R, outcome: Outcome<'_>) -> ExitFut {
        (self.exit)(resource, outcome.status())
    }
}
