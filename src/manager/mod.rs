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
use core::pin::Pin;
use core::task::{Context, Poll};

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
///     type Future = Ready<Result<(), Infallible>>;
///
///     fn exit(self, brightness: u8, _outcome: Outcome<'_>) -> Self::Future {
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
        E: Debug + 'static,
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
/// `exit` sees the body's [`Outcome`] only while it creates the exit future: the future itself
/// cannot borrow the outcome, so whatever it needs (commit or roll back, a log line) is decided
/// in `exit`.
pub trait AsyncExit<R> {
    /// The error of exiting.
    type Error;

    /// The future that releases the resource.
    type Future: Future<Output = Result<(), Self::Error>>;

    /// Starts releasing `resource` after the body ended with `outcome`.
    fn exit(self, resource: R, outcome: Outcome<'_>) -> Self::Future;

    /// Releases `resource` synchronously because the body was cancelled: the [`WithFuture`]
    /// (or the group or stack holding this entry) was dropped before exit could run.
    ///
    /// It is called from a destructor, which cannot await: this is the place for a
    /// synchronous best effort (stop a DMA channel, mark a connection broken, roll back
    /// locally). The default drops the resource. What each phase runs when dropped, and why
    /// Rust cannot await here as Python does: [`WithFuture`'s
    /// `# Cancellation`](WithFuture#cancellation).
    fn cancel(self, resource: R)
    where
        Self: Sized,
    {
        drop(resource);
    }

    /// Polls an exit future of this type, lending the body's outcome again.
    ///
    /// [`WithFuture`] and the groups of managers (tuples, arrays) poll exit futures through
    /// this function, never through `Future::poll` directly, and pass the outcome on every
    /// poll. The default ignores it and polls the future: an exit decides what to do in
    /// [`exit`](AsyncExit::exit). Only an exit that runs other exits one after another
    /// overrides it — a group shows each later member the body's outcome (or the newest
    /// failure) when it creates that member's exit future, after the first poll.
    #[inline]
    fn poll_exit(
        future: Pin<&mut Self::Future>,
        cx: &mut Context<'_>,
        outcome: Outcome<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        let _ = outcome;
        future.poll(cx)
    }
}
