//! [`from_fns`]: a manager built from an async enter closure and an async exit closure.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// Builds a manager from an async `enter` and an async `exit` — Python's
/// `@asynccontextmanager`, with no trait impl and no type to name.
///
/// `enter` produces the resource (or an error); `exit` receives the resource back together
/// with the body's [`Outcome`], which it may hold across its awaits: the body's error stays
/// where it is, inside the [`WithFuture`](crate::WithFuture), lent until exit finishes — no
/// clone, no allocation. Both may be async closures or `async fn` items. A library can return
/// the result as `impl AsyncEnter<Resource = .., Error = ..>`, or as `impl SendManager<..>` if
/// callers will spawn it (see below).
///
/// This is Python's `__aexit__(exc_type, exc, tb)`: `outcome.failure()` is the exception,
/// [`Outcome::error`] its typed form, [`Outcome::status`] the commit-or-roll-back choice.
///
/// If the [`WithFuture`](crate::WithFuture) is dropped mid-body, the exit closure does not run
/// (it could not be awaited); the resource is dropped, or handed to the synchronous hook set
/// with [`FromFns::on_cancel`].
///
/// # Returning it from a library
///
/// `impl AsyncEnter<Resource = R, Error = X>` hides the enter and exit futures, so callers
/// cannot tell whether they are `Send`, and `tokio::spawn` refuses the `with` (E0277, "cannot
/// be sent between threads safely"). If your users will spawn it, return
/// `impl SendManager<Resource = R, Error = X>` instead ([`SendManager`](crate::SendManager)):
/// one bound that promises that the whole `with` is `Send`, checked where your function is
/// defined. Add `+ use<..>` naming only the lifetimes the manager borrows (`use<>` for none):
/// under edition 2024 a returned `impl Trait` captures every lifetime in scope, arguments
/// included, and the caller's `tokio::spawn` would then fail with E0597.
///
/// ```
/// use async_with::{Outcome, SendManager, Status, from_fns};
///
/// fn counter(start: &u32) -> impl SendManager<Resource = u32, Error = ()> + use<> {
///     let start = *start;
///     from_fns(async move || Ok(start), async |_n: u32, _status: Outcome<'_>| Ok(()))
/// }
/// # fn assert_send<T: Send + 'static>(_: &T) {}
/// # let f = async_with::with(counter(&1), async |n| *n += 1);
/// # assert_send(&f);
/// ```
///
/// `SendManager` is shorthand for these associated type bounds, which may also be written out:
/// `AsyncEnter<Resource: Send, Error: Send, Enter: Send,
/// Exit: Send + for<'o> AsyncExit<R, Future<'o>: Send>> + Send`.
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{AsyncEnter, Outcome, Status, Value, from_fns, with};
///
/// struct Conn { open: bool }
///
/// /// What a library would export: a connection that is always closed gracefully.
/// fn connect(addr: &str) -> impl AsyncEnter<Resource = Conn, Error = &'static str> + '_ {
///     from_fns(
///         async move || if addr.is_empty() { Err("no address") } else { Ok(Conn { open: true }) },
///         async |mut conn: Conn, _status: Outcome<'_>| {
///             conn.open = false; // an async close_notify would be awaited here
///             Ok(())
///         },
///     )
/// }
///
/// let sent = with(connect("sensor.local"), async |conn| {
///     assert!(conn.open);
///     Value(3) // bytes sent; this body cannot fail
/// })
/// .await;
/// assert_eq!(sent, Ok(3));
/// # });
/// ```
pub fn from_fns<Enter, EnterFut, Exit, R, X>(enter: Enter, exit: Exit) -> FromFns<Enter, Exit>
where
    Enter: FnOnce() -> EnterFut,
    EnterFut: Future<Output = Result<R, X>>,
    // Lets the compiler infer the exit closure's argument types (`async |conn, outcome| ..`).
    Exit: AsyncFnOnce(R, Outcome<'_>) -> Result<(), X>,
    Exit: for<'o> ExitFn<'o, R, Error = X>,
{
    FromFns {
        enter,
        exit,
        cancel: (),
    }
}

/// A manager built by [`from_fns`]; `Cancel` is its cancellation hook (`()`: drop the
/// resource).
///
/// Its closure parameters have no names, so it is returned as `impl AsyncEnter<..>` or
/// `impl SendManager<..>` (examples on [`from_fns`]), or taken generically (example on
/// [`CancelHook`]).
#[derive(Clone)]
#[must_use = "managers do nothing unless entered (`with(manager, body)`)"]
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
    /// use async_with::{Outcome, Status, from_fns, with};
    ///
    /// struct Dma { running: bool }
    ///
    /// let stopped = Cell::new(false);
    /// let transfer = from_fns(
    ///     async || Ok::<_, ()>(Dma { running: true }),
    ///     async |mut dma: Dma, _status: Outcome<'_>| {
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
    ///     let mut future = pin!(with(transfer, async |_dma| core::future::pending::<()>().await));
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

impl<Enter, EnterFut, Exit, Cancel, R, X> AsyncEnter for FromFns<Enter, Exit, Cancel>
where
    Enter: FnOnce() -> EnterFut,
    EnterFut: Future<Output = Result<R, X>>,
    Exit: for<'o> ExitFn<'o, R, Error = X>,
    Cancel: CancelHook<R>,
{
    type Resource = R;
    type Error = X;
    type Exit = FromFnsExit<Exit, Cancel>;
    type Enter = FromFnsEnter<EnterFut, Exit, Cancel>;

    fn enter(self) -> Self::Enter {
        FromFnsEnter {
            future: (self.enter)(),
            exit: Some(FromFnsExit {
                exit: self.exit,
                cancel: self.cancel,
            }),
        }
    }
}

pin_project! {
    /// Enter future of a [`from_fns`] manager: the enter closure's future, with the exit
    /// closure kept for later.
    ///
    /// [`with`](crate::with) drives it for you. A combinator that holds managers without
    /// `with` drives it by hand: awaiting it yields the resource and the [`FromFnsExit`] that
    /// releases it.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{AsyncEnter, AsyncExit, Outcome, Status, from_fns};
    ///
    /// let log = core::cell::RefCell::new(Vec::new());
    /// let session = from_fns(
    ///     async || Ok::<_, ()>(String::from("hello")),
    ///     async |greeting: String, outcome: Outcome<'_>| {
    ///         log.borrow_mut().push((greeting, outcome.status()));
    ///         Ok(())
    ///     },
    /// );
    ///
    /// let (mut greeting, exit) = session.enter().await?; // `enter` returns an `FromFnsEnter`
    /// greeting.push_str(", world");
    /// exit.exit(greeting, Outcome::Success).await?; // `exit` is an `FromFnsExit`
    /// assert_eq!(*log.borrow(), [("hello, world".to_string(), Status::Success)]);
    /// # Ok::<(), ()>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct FromFnsEnter<Fut, Exit, Cancel = ()> {
        #[pin]
        future: Fut,
        exit: Option<FromFnsExit<Exit, Cancel>>,
    }
}

impl<Fut, Exit, Cancel> fmt::Debug for FromFnsEnter<Fut, Exit, Cancel> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFnsEnter").finish_non_exhaustive()
    }
}

impl<Fut, Exit, Cancel, R, X> Future for FromFnsEnter<Fut, Exit, Cancel>
where
    Fut: Future<Output = Result<R, X>>,
{
    type Output = Result<(R, FromFnsExit<Exit, Cancel>), X>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resource = ready!(this.future.poll(cx))?;
        let exit = this
            .exit
            .take()
            .expect("`FromFnsEnter` polled after completion");
        Poll::Ready(Ok((resource, exit)))
    }
}

/// Exit handle of a [`from_fns`] manager: calls the exit closure with the body's
/// [`Outcome`], which the closure's future may keep until it finishes.
/// On cancellation the exit closure is not called; the resource goes to the `Cancel` hook.
///
/// It is what awaiting an [`FromFnsEnter`] yields (see there for `exit`). Its
/// [`cancel`](AsyncExit::cancel) is what a dropped [`WithFuture`](crate::WithFuture) calls:
///
/// ```
/// # futures_executor::block_on(async {
/// use core::cell::Cell;
/// use async_with::{AsyncEnter, AsyncExit, Outcome, Status, from_fns};
///
/// let cut = Cell::new(false);
/// let motor = from_fns(async || Ok::<_, ()>(1200_u32), async |_rpm: u32, _: Outcome<'_>| Ok(()))
///     .on_cancel(|_rpm: u32| cut.set(true)); // cut the power at once
///
/// let (rpm, exit) = motor.enter().await.unwrap();
/// exit.cancel(rpm); // the body was cancelled: the hook runs, the exit closure does not
/// assert!(cut.get());
/// # });
/// ```
pub struct FromFnsExit<Exit, Cancel = ()> {
    exit: Exit,
    cancel: Cancel,
}

impl<Exit, Cancel> fmt::Debug for FromFnsExit<Exit, Cancel> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFnsExit").finish_non_exhaustive()
    }
}

impl<Exit, Cancel, R, X> AsyncExit<R> for FromFnsExit<Exit, Cancel>
where
    Exit: for<'o> ExitFn<'o, R, Error = X>,
    Cancel: CancelHook<R>,
{
    type Error = X;
    type Future<'o> = <Exit as ExitFn<'o, R>>::Future;

    #[inline]
    fn exit<'o>(self, resource: R, outcome: Outcome<'o>) -> Self::Future<'o> {
        self.exit.call(resource, outcome)
    }

    fn cancel(self, resource: R) {
        self.cancel.cancel(resource);
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<F> Sealed for super::OnCancel<F> {}

    pub trait SealedExit<'o, R> {}
    impl<'o, R, F, Fut, X> SealedExit<'o, R> for F
    where
        F: FnOnce(R, crate::Outcome<'o>) -> Fut,
        Fut: core::future::Future<Output = Result<(), X>>,
    {
    }
}

/// An exit closure of [`from_fns`] for one outcome lifetime `'o`: implemented for every
/// `FnOnce(R, Outcome<'o>) -> impl Future<Output = Result<(), X>>`, async closures and
/// `async fn` items included. Sealed; it exists to name the closure's future, which may borrow
/// the outcome (`'o`), as [`AsyncExit::Future`].
///
/// A generic function that takes an exit closure states it as
/// `Exit: AsyncFnOnce(R, Outcome<'_>) -> Result<(), X>` (for the compiler to infer the closure's
/// arguments) and `Exit: for<'o> ExitFn<'o, R, Error = X>` (for [`from_fns`]), as `from_fns`
/// itself does.
pub trait ExitFn<'o, R>: sealed::SealedExit<'o, R> {
    /// The exit's error.
    type Error;
    /// The future the closure returns.
    type Future: Future<Output = Result<(), Self::Error>>;
    /// Calls the closure.
    fn call(self, resource: R, outcome: Outcome<'o>) -> Self::Future;
}

impl<'o, R, F, Fut, X> ExitFn<'o, R> for F
where
    F: FnOnce(R, Outcome<'o>) -> Fut,
    Fut: Future<Output = Result<(), X>>,
{
    type Error = X;
    type Future = Fut;

    #[inline]
    fn call(self, resource: R, outcome: Outcome<'o>) -> Fut {
        self(resource, outcome)
    }
}

/// What a [`from_fns`] manager does with the resource when the body is cancelled: `()` drops
/// it, [`OnCancel`] (from [`FromFns::on_cancel`]) calls a closure. Sealed.
///
/// You meet it in where clauses: code generic over any `from_fns` manager, with or without a
/// hook, bounds the third parameter of [`FromFns`] by it.
///
/// ```
/// use core::future::Future;
/// use async_with::{CancelHook, ExitFn, FromFns, Outcome, from_fns};
///
/// /// Accepts a `from_fns` manager of a `u32` whatever its cancellation hook.
/// fn accept<Enter, EnterFut, Exit, Cancel>(_manager: FromFns<Enter, Exit, Cancel>)
/// where
///     Enter: FnOnce() -> EnterFut,
///     EnterFut: Future<Output = Result<u32, ()>>,
///     Exit: for<'o> ExitFn<'o, u32, Error = ()>,
///     Cancel: CancelHook<u32>,
/// {
/// }
///
/// let plain = from_fns(async || Ok(1), async |_: u32, _: Outcome<'_>| Ok(()));
/// accept(plain); // the hook is `()`: a cancelled resource is dropped
/// let hooked =
///     from_fns(async || Ok(1), async |_: u32, _: Outcome<'_>| Ok(())).on_cancel(|_n: u32| {});
/// accept(hooked); // the hook is an `OnCancel`
/// ```
pub trait CancelHook<R>: sealed::Sealed {
    /// Takes the resource of a cancelled body.
    fn cancel(self, resource: R);
}

impl<R> CancelHook<R> for () {
    fn cancel(self, resource: R) {
        drop(resource);
    }
}

/// A cancellation hook set with [`FromFns::on_cancel`] (see its example).
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
