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
/// If the [`WithFuture`](crate::WithFuture) is dropped mid-body, the exit closure does not run
/// (it could not be awaited); the resource is dropped, or handed to the synchronous hook set
/// with [`FromFns::on_cancel`].
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
/// # futures_executor::block_on(async {
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
    FromFns {
        enter,
        exit,
        cancel: (),
    }
}

/// A manager built by [`from_fns`]; `Cancel` is its cancellation hook (`()`: drop the
/// resource).
#[derive(Clone)]
pub struct FromFns<Enter, Exit, Cancel = ()> {
    enter: Enter,
    exit: Exit,
    cancel: Cancel,
}

impl<Enter, Exit> FromFns<Enter, Exit> {
    /// Sets the synchronous hook that receives the resource when the body is cancelled (the
    /// [`WithFuture`](crate::WithFuture) dropped mid-body), instead of dropping it: the
    /// closure form of [`AsyncExit::cancel`].
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use core::cell::Cell;
    /// use core::pin::pin;
    /// use core::task::{Context, Waker};
    /// use async_with::{Status, from_fns, with};
    ///
    /// struct Dma { running: bool }
    ///
    /// let stopped = Cell::new(false);
    /// let transfer = from_fns(
    ///     async || Ok::<_, ()>(Dma { running: true }),
    ///     async |mut dma: Dma, _status: Status| {
    ///         dma.running = false; // wait for the channel to drain, then stop it
    ///         Ok(())
    ///     },
    /// )
    /// .on_cancel(|mut dma: Dma| {
    ///     dma.running = false; // stop the channel at once: nothing can be awaited here
    ///     stopped.set(true);
    /// });
    ///
    /// // A body that never finishes, polled once and then dropped: cancelled.
    /// {
    ///     let mut future = pin!(with(transfer, async |_dma| {
    ///         core::future::pending::<()>().await;
    ///         Ok::<_, ()>(())
    ///     }));
    ///     let _ = future.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    /// } // dropped here
    /// assert!(stopped.get());
    /// # });
    /// ```
    pub fn on_cancel<Cancel, EnterFut, R, X>(
        self,
        cancel: Cancel,
    ) -> FromFns<Enter, Exit, OnCancel<Cancel>>
    where
        Enter: FnOnce() -> EnterFut,
        EnterFut: Future<Output = Result<R, X>>,
        Cancel: FnOnce(R),
    {
        FromFns {
            enter: self.enter,
            exit: self.exit,
            cancel: OnCancel { cancel },
        }
    }
}

impl<Enter, Exit, Cancel> fmt::Debug for FromFns<Enter, Exit, Cancel> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFns").finish_non_exhaustive()
    }
}

impl<Enter, EnterFut, Exit, ExitFut, Cancel, R, X> AsyncEnter for FromFns<Enter, Exit, Cancel>
where
    Enter: FnOnce() -> EnterFut,
    EnterFut: Future<Output = Result<R, X>>,
    Exit: FnOnce(R, Status) -> ExitFut,
    ExitFut: Future<Output = Result<(), X>>,
    Cancel: CancelHook<R>,
{
    type Resource = R;
    type Error = X;
    type Exit = ExitFn<Exit, Cancel>;
    type Enter = EnterFn<EnterFut, Exit, Cancel>;

    fn enter(self) -> Self::Enter {
        EnterFn {
            future: (self.enter)(),
            exit: Some(ExitFn {
                exit: self.exit,
                cancel: self.cancel,
            }),
        }
    }
}

pin_project! {
    /// Enter future of a [`from_fns`] manager: the enter closure's future, with the exit
    /// closure kept for later.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct EnterFn<Fut, Exit, Cancel = ()> {
        #[pin]
        future: Fut,
        exit: Option<ExitFn<Exit, Cancel>>,
    }
}

impl<Fut, Exit, Cancel> fmt::Debug for EnterFn<Fut, Exit, Cancel> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterFn").finish_non_exhaustive()
    }
}

impl<Fut, Exit, Cancel, R, X> Future for EnterFn<Fut, Exit, Cancel>
where
    Fut: Future<Output = Result<R, X>>,
{
    type Output = Result<(R, ExitFn<Exit, Cancel>), X>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resource = ready!(this.future.poll(cx))?;
        let exit = this.exit.take().expect("`EnterFn` polled after completion");
        Poll::Ready(Ok((resource, exit)))
    }
}

/// Exit handle of a [`from_fns`] manager: calls the exit closure with the body's [`Status`].
/// On cancellation the exit closure is not called; the resource goes to the `Cancel` hook.
pub struct ExitFn<Exit, Cancel = ()> {
    exit: Exit,
    cancel: Cancel,
}

impl<Exit, Cancel> fmt::Debug for ExitFn<Exit, Cancel> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitFn").finish_non_exhaustive()
    }
}

impl<Exit, ExitFut, Cancel, R, X> AsyncExit<R> for ExitFn<Exit, Cancel>
where
    Exit: FnOnce(R, Status) -> ExitFut,
    ExitFut: Future<Output = Result<(), X>>,
    Cancel: CancelHook<R>,
{
    type Error = X;
    type Future = ExitFut;

    fn exit(self, resource: R, outcome: Outcome<'_>) -> ExitFut {
        (self.exit)(resource, outcome.status())
    }

    fn cancel(self, resource: R) {
        self.cancel.cancel(resource);
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<F> Sealed for super::OnCancel<F> {}
}

/// What a [`from_fns`] manager does with the resource when the body is cancelled: `()` drops
/// it, [`OnCancel`] (from [`FromFns::on_cancel`]) calls a closure. Sealed.
pub trait CancelHook<R>: sealed::Sealed {
    /// Takes the resource of a cancelled body.
    fn cancel(self, resource: R);
}

impl<R> CancelHook<R> for () {
    fn cancel(self, resource: R) {
        drop(resource);
    }
}

/// A cancellation hook set with [`FromFns::on_cancel`].
#[derive(Clone)]
pub struct OnCancel<F> {
    cancel: F,
}

impl<F> fmt::Debug for OnCancel<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnCancel").finish_non_exhaustive()
    }
}

impl<R, F: FnOnce(R)> CancelHook<R> for OnCancel<F> {
    fn cancel(self, resource: R) {
        (self.cancel)(resource);
    }
}
