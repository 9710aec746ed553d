//! The two halves of an asynchronous context manager, [`AsyncEnter`] and [`AsyncExit`], and
//! the managers built from closures and values: [`from_fns`](crate::from_fns),
//! [`closing`](crate::closing), [`null_context`](crate::null_context). A new ready-made
//! manager goes beside them.

pub(crate) mod closing;
pub(crate) mod from_fns;
pub(crate) mod null_context;
pub(crate) mod send;

use core::fmt::Debug;
use core::future::Future;

use crate::body::Body;
use crate::outcome::Outcome;
use crate::output::BodyOutput;
use crate::with::{WithFuture, with};

/// An asynchronous context manager: something that can be entered.
///
/// Entering produces two things: the **resource**, which the body borrows as `&mut`, and an
/// **exit handle** (an [`AsyncExit`]), which later consumes the resource and releases it. They
/// are separate so that the body sees only the resource, and so that managers compose without
/// allocation: a tuple `(A, B, ..)` of managers and an array `[M; N]` are managers
/// themselves, whose resource is the tuple (array) of resources — see [`group`](crate::group).
///
/// This is the `__aenter__` half of Python's protocol (and the `IntoFuture` of this crate):
/// `enter` consumes the manager and returns a named future, so a manager can be written by hand
/// with a poll-based future, built from two closures with [`from_fns`](crate::from_fns), or
/// returned from a library as `impl AsyncEnter<Resource = .., Error = ..>`.
///
/// # Examples
///
/// A manager written by hand, with ready futures (a real one would return a poll-based
/// future of its own):
///
/// ```
/// use core::convert::Infallible;
/// use core::future::{Ready, ready};
/// use async_with::{AsyncEnter, AsyncExit, Outcome};
///
/// /// Turns a light on for the duration of the body.
/// struct Light;
///
/// struct SwitchOff;
///
/// impl AsyncEnter for Light {
///     type Resource = u8; // brightness
///     type Error = Infallible;
///     type Exit = SwitchOff;
///     type Enter = Ready<Result<(u8, SwitchOff), Infallible>>;
///
///     fn enter(self) -> Self::Enter {
///         ready(Ok((100, SwitchOff)))
///     }
/// }
///
/// impl AsyncExit<u8> for SwitchOff {
///     type Error = Infallible;
///     type Future<'o> = Ready<Result<(), Infallible>>;
///
///     fn exit<'o>(self, brightness: u8, _outcome: Outcome<'o>) -> Self::Future<'o> {
///         assert_eq!(brightness, 50);
///         ready(Ok(()))
///     }
/// }
///
/// # futures_executor::block_on(async {
/// let seen = Light
///     .with(async |brightness: &mut u8| {
///         *brightness = 50;
///         Ok::<_, Infallible>(*brightness)
///     })
///     .await;
/// assert_eq!(seen, Ok(50));
/// # });
/// ```
pub trait AsyncEnter {
    /// What the body borrows as `&mut` between enter and exit.
    type Resource;

    /// The error of entering and of exiting.
    type Error;

    /// Releases the resource once the body has ended.
    type Exit: AsyncExit<Self::Resource, Error = Self::Error>;

    /// The future that acquires the resource.
    type Enter: Future<Output = Result<(Self::Resource, Self::Exit), Self::Error>>;

    /// Starts acquiring the resource.
    ///
    /// Called on the first poll of the [`WithFuture`], not when it is created.
    fn enter(self) -> Self::Enter;

    /// Enters `self`, runs `body` with the resource, and exits: the method form of [`with`].
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{AsyncEnter, null_context};
    ///
    /// let n = null_context(41).with(async |n| Ok::<_, ()>(*n + 1)).await;
    /// assert_eq!(n, Ok(42));
    /// # });
    /// ```
    fn with<'a, B, O, T, E>(self, body: B) -> WithFuture<'a, Self, B>
    where
        Self: Sized,
        Self::Resource: 'a,
        B: AsyncFnOnce(&mut Self::Resource) -> O,
        O: BodyOutput<Ok = T, Err = E>,
        B: for<'r> Body<'r, Self::Resource, Ok = T, Err = E>,
        E: Debug + Sync + 'static,
    {
        with(self, body)
    }
}

/// The exit half of an asynchronous context manager, returned by [`AsyncEnter::enter`].
///
/// It consumes the resource `R` and releases it, knowing how the body ended (Python's
/// `__aexit__`). Exactly one of [`exit`](AsyncExit::exit) and [`cancel`](AsyncExit::cancel)
/// runs for every successful enter, unless the future is leaked or a panic ends it on the way
/// (the rows of [`WithFuture`]'s `# Panics` table): `exit` when the body finished
/// (successfully, with an error, or — with the `std` feature — by panicking), `cancel` when
/// the [`WithFuture`] was dropped while the body was running, or when a destructor panicked
/// between enter and exit.
///
/// The exit future may borrow the [`Outcome`] for its whole run: [`Future<'o>`](AsyncExit::Future)
/// names it for the outcome's lifetime, so an exit can log the body's error to a remote sink,
/// await, and then decide, with the error still lent and nothing cloned. Whoever runs the exit
/// ([`WithFuture`], a group, an exit stack) keeps the outcome in place until the exit future is
/// gone; the future's output cannot borrow it.
///
/// # What each exit sees
///
/// The outcome is passed once, to `exit`, and an exit that runs other exits passes each of
/// them the outcome it chooses when it creates their futures. So a wrapper that forwards
/// `exit` to an inner handle — written the obvious way — shows the inner exit what it was
/// shown itself, and nothing polls an exit future differently from any other future. The
/// groups and the exit stack follow one rule, stated in [`group`](crate::group#what-each-exit-sees).
///
/// # Examples
///
/// A hand-written exit whose future keeps the outcome across its awaits:
///
/// ```
/// use core::future::Future;
/// use core::pin::Pin;
/// use core::task::{Context, Poll};
/// use async_with::{AsyncExit, Outcome};
///
/// /// Reports how the body ended, then releases (here: one poll each).
/// struct Report<'log> {
///     log: &'log core::cell::RefCell<Vec<String>>,
/// }
///
/// struct ReportFuture<'log, 'o> {
///     log: &'log core::cell::RefCell<Vec<String>>,
///     outcome: Outcome<'o>,
///     reported: bool,
/// }
///
/// impl<'log, 'o> Future for ReportFuture<'log, 'o> {
///     type Output = Result<(), ()>;
///
///     fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
///         if !self.reported {
///             // The body's error, still lent after a first `Pending`.
///             let line = format!("{:?}", self.outcome);
///             self.log.borrow_mut().push(line);
///             self.reported = true;
///             cx.waker().wake_by_ref();
///             return Poll::Pending;
///         }
///         Poll::Ready(Ok(()))
///     }
/// }
///
/// impl<'log> AsyncExit<u32> for Report<'log> {
///     type Error = ();
///     type Future<'o> = ReportFuture<'log, 'o>;
///
///     fn exit<'o>(self, _: u32, outcome: Outcome<'o>) -> ReportFuture<'log, 'o> {
///         ReportFuture { log: self.log, outcome, reported: false }
///     }
/// }
///
/// # futures_executor::block_on(async {
/// use async_with::{AsyncEnter, Error, Outcome, with};
///
/// let log = core::cell::RefCell::new(Vec::new());
/// // A manager whose exit handle is `Report` (written by hand as in `AsyncEnter`'s example):
/// # struct Counter<'log>(&'log core::cell::RefCell<Vec<String>>);
/// # impl<'log> AsyncEnter for Counter<'log> {
/// #     type Resource = u32;
/// #     type Error = ();
/// #     type Exit = Report<'log>;
/// #     type Enter = core::future::Ready<Result<(u32, Report<'log>), ()>>;
/// #     fn enter(self) -> Self::Enter { core::future::ready(Ok((7, Report { log: self.0 }))) }
/// # }
/// let failed = with(Counter(&log), async |_| Err::<(), _>("sensor offline")).await;
/// assert_eq!(failed, Err(Error::Body("sensor offline")));
/// assert_eq!(*log.borrow(), [r#"Failure("sensor offline")"#]);
/// # });
/// ```
pub trait AsyncExit<R> {
    /// The error of exiting.
    type Error;

    /// The future that releases the resource; it may borrow the outcome (`'o`) for its
    /// whole run.
    type Future<'o>: Future<Output = Result<(), Self::Error>>;

    /// Starts releasing `resource` after the body ended with `outcome`.
    fn exit<'o>(self, resource: R, outcome: Outcome<'o>) -> Self::Future<'o>;

    /// Releases `resource` synchronously because the body was cancelled: the [`WithFuture`]
    /// (or the group or stack holding this entry) was dropped before exit could run.
    ///
    /// It is called from a destructor, which cannot await: this is the place for a
    /// synchronous best effort (stop a DMA channel, mark a connection broken, roll back
    /// locally). The default drops the resource. It does not run when a stop signal ends the
    /// body ([`cancel_on`](WithFuture::cancel_on)): exit runs then, seeing
    /// [`Outcome::Cancelled`]. What each phase runs, both ways: the crate docs'
    /// [Cancellation](crate#cancellation).
    fn cancel(self, resource: R)
    where
        Self: Sized,
    {
        drop(resource);
    }
}
