//! One-function managers: setup, lend, teardown in one async closure — Python's
//! `@asynccontextmanager`.
//!
//! [`scoped`] takes an async closure that receives a [`Scope`]. The closure sets the resource
//! up, lends it with `scope.lend(resource).await` — the body runs there, borrowing it — and
//! gets it back with the body's [`Outcome`] to tear down. Setup and teardown are one function,
//! so they share locals (a start time, a pool handle, a log line), which two closures of
//! [`from_fns`](crate::from_fns) cannot:
//!
//! ```
//! # futures_executor::block_on(async {
//! use async_with::{Status, scoped};
//!
//! let mut trace = Vec::new();
//! let total = scoped(async |scope| {
//!     let started = 7u32; // a local of setup, used in teardown
//!     trace.push("begin");
//!     let (tx, outcome) = scope.lend(Vec::<u32>::new()).await;
//!     match outcome.status() {
//!         Status::Success => trace.push("commit"),
//!         _ => trace.push("rollback"),
//!     }
//!     assert_eq!((started, tx.len()), (7, 2));
//!     Ok::<_, ()>(())
//! })
//! .with(async |tx| {
//!     tx.extend([1, 2]);
//!     Ok::<_, ()>(tx.iter().sum::<u32>())
//! })
//! .await;
//! assert_eq!(total, Ok(3));
//! assert_eq!(trace, ["begin", "commit"]);
//! # });
//! ```
//!
//! Errors: a closure that returns `Err` before its lend resolves failed to enter
//! ([`Error::Enter`](crate::Error::Enter)); after it, to exit ([`Error::Exit`](crate::Error::Exit),
//! or [`Error::BodyAndExit`](crate::Error::BodyAndExit) beside the body's error). The outcome
//! the lend returns may be held across the teardown's awaits: the body's error stays where it
//! is, lent. No allocation, `no_std`, any executor.
//!
//! # Why `scoped(..).with(body)`, not a manager for [`with`](crate::with)
//!
//! The resource the closure lends and, during teardown, the body's error it sees, live in the
//! closure's own future, so that future has to stay in one place from setup to teardown and
//! may not outlive the `with` whose error it borrows. A manager cannot give it that place: its
//! enter future is dropped when entering ends and its exit handle is moved, and an exit future
//! anyone can create and leak would leave the closure holding an error that is gone.
//! [`Scoped::with`] returns a [`ScopedWith`] that holds the closure's future beside the `with`'s
//! state, in one pinned future. For the same reason a `Scoped` is not a member of a tuple, an
//! array or an [`ExitStack`](crate::ExitStack): each member's exit is created by the group,
//! which could not keep that promise without a heap allocation per member.
//!
//! # Misuse and cancellation
//!
//! | what the closure or the caller does | what happens |
//! |---|---|
//! | returns `Ok` without lending | panic: "the closure of `scoped` returned `Ok` without lending a resource" (Python raises `RuntimeError` for a generator that did not yield) |
//! | lends twice | does not compile: [`Scope::lend`] takes the scope by value |
//! | returns `Err` or panics before the lend | the `with` resolves to `Error::Enter`, or the panic propagates from `poll`; the body does not run |
//! | drops the lend future before it resolves (a `select` it lost) | the resource is dropped with it; if it was not yet lent the body never runs; the closure goes on without it |
//! | leaks a polled lend future (`mem::forget` of a `Box`) | the body runs with the resource (it was lent); teardown cannot get it back, and it is dropped with the closure's future |
//! | fails or panics after the lend | `Error::Exit` (or `BodyAndExit`), or the panic propagates from `poll` |
//! | the `ScopedWith` is dropped during setup | the closure's future is dropped, with its locals |
//! | … mid-body | the body's future is dropped, then the resource, then the closure's future; the closure's code after the lend does not run |
//! | … during teardown | the closure's future is dropped where it is suspended |
//! | a signal ([`ScopedWith::cancel_on`]) fires mid-body | the body's future is dropped, the lend returns with [`Outcome::Cancelled`], teardown runs and is awaited |
//!
//! While the body runs the closure is not polled, so it never touches the resource while the
//! body borrows it, and the body never sees a resource that moved: it borrows it inside the
//! `with`'s state, where it stays until the body's future is gone.

#[cfg(feature = "alloc")]
mod boxed;
mod cancel_on;
pub(crate) mod manager;
mod scope;
mod with;

use core::fmt;
use core::future::Future;

#[cfg(feature = "alloc")]
pub use self::boxed::{ScopedEnter, ScopedExit, ScopedTeardown};
pub use self::cancel_on::ScopedCancelOn;
pub use self::scope::{Lending, Scope};
pub use self::with::ScopedWith;
use self::manager::ScopeManager;
use crate::body::Body;
use crate::lend::Unborrowing;
use crate::output::BodyOutput;
use crate::with::WithFuture;

mod sealed {
    pub trait Sealed<'s, R> {}
}

/// A one-function manager's closure: called with a [`Scope<'s, R>`](Scope), returning a future
/// of `Result<(), Error>`.
///
/// You never implement this trait: it is implemented for every
/// `FnOnce(Scope<'s, R>) -> impl Future<Output = Result<(), E>>`, which includes async closures
/// and `async fn` items. It names the closure's future, which stable Rust cannot name for an
/// `AsyncFnOnce` (as [`Body`] does for bodies). [`scoped`] asks for
/// `for<'s> ScopeFn<'s, R, Error = E>`: the closure works with a scope of any lifetime, so it
/// cannot keep the scope or the outcome it lends beyond its own future. To return a scoped
/// manager from a function, write `Scoped<R, impl for<'s> ScopeFn<'s, R, Error = E>>`
/// (see [`Scoped`]).
pub trait ScopeFn<'s, R>: sealed::Sealed<'s, R> {
    /// The closure's error, before or after the lend.
    type Error;
    /// The closure's future.
    type Future: Future<Output = Result<(), Self::Error>>;

    /// Calls the closure with its scope.
    fn call(self, scope: Scope<'s, R>) -> Self::Future;
}

impl<'s, R, C, Fut, X> sealed::Sealed<'s, R> for C
where
    C: FnOnce(Scope<'s, R>) -> Fut,
    Fut: Future<Output = Result<(), X>>,
{
}

impl<'s, R, C, Fut, X> ScopeFn<'s, R> for C
where
    C: FnOnce(Scope<'s, R>) -> Fut,
    Fut: Future<Output = Result<(), X>>,
{
    type Error = X;
    type Future = Fut;

    #[inline]
    fn call(self, scope: Scope<'s, R>) -> Fut {
        self(scope)
    }
}

/// Builds a one-function manager from an async closure: setup, `scope.lend(resource).await`,
/// teardown. Run it with [`Scoped::with`]; see the [module docs](self).
#[inline]
pub fn scoped<R, E, C>(closure: C) -> Scoped<R, C>
where
    C: AsyncFnOnce(Scope<'_, R>) -> Result<(), E>,
    C: for<'s> ScopeFn<'s, R, Error = E>,
{
    Scoped {
        closure,
        _resource: core::marker::PhantomData,
    }
}

/// A one-function manager: an async closure that lends a resource of type `R` once
/// ([`scoped`]).
///
/// A library returns one as `Scoped<R, impl for<'s> ScopeFn<'s, R, Error = E>>`:
///
/// ```
/// use async_with::{ScopeFn, Scoped, Status, scoped};
///
/// /// Counts how many bodies ran successfully on `counter`.
/// fn counting(successes: &mut u32) -> Scoped<u32, impl for<'s> ScopeFn<'s, u32, Error = ()> + '_> {
///     scoped(async move |scope| {
///         let (_, outcome) = scope.lend(0).await;
///         if outcome.status() == Status::Success {
///             *successes += 1;
///         }
///         Ok(())
///     })
/// }
///
/// # futures_executor::block_on(async {
/// let mut successes = 0;
/// let run = counting(&mut successes).with(async |n| Ok::<_, ()>(*n + 1)).await;
/// assert_eq!(run, Ok(1));
/// assert_eq!(successes, 1);
/// # });
/// ```
#[must_use = "a scoped manager does nothing until `.with(body)` is awaited"]
pub struct Scoped<R, C> {
    closure: C,
    _resource: core::marker::PhantomData<fn(R) -> R>,
}

impl<R, C> Scoped<R, C> {
    /// Runs the closure with `body`: setup until the lend, the body with the lent resource,
    /// then teardown, which sees how the body ended. The arguments are those of
    /// [`with`](crate::with)'s body.
    #[inline]
    pub fn with<'a, B, O, T, E, X>(self, body: B) -> ScopedWith<'a, R, C, B>
    where
        C: for<'s> ScopeFn<'s, R, Error = X>,
        R: 'a,
        B: AsyncFnOnce(&mut R) -> O,
        O: BodyOutput<Ok = T, Err = E>,
        B: for<'r> Body<'r, R, Ok = T, Err = E>,
        E: fmt::Debug + Sync + 'static,
    {
        ScopedWith::new(WithFuture::from_parts(
            ScopeManager::new(self.closure),
            Unborrowing::new(body),
        ))
    }
}

impl<R, C> fmt::Debug for Scoped<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}
