//! One-function managers: [`scoped`], its handle [`Scope`] and what runs it ([`ScopedWith`],
//! and with `alloc` the manager pieces in `boxed.rs`). The docs live on [`scoped`].

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
use self::manager::ScopeManager;
pub use self::scope::{Lending, Scope};
pub use self::with::ScopedWith;
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

/// One-function managers: setup, lend, teardown in one async closure — Python's
/// `@asynccontextmanager`.
///
/// [`scoped`] takes an async closure that receives a [`Scope`]. The closure sets the resource
/// up, lends it with `scope.lend(resource).await` — the body runs there, borrowing it — and
/// gets it back with the body's [`Outcome`](crate::Outcome) to tear down. Setup and teardown are one function,
/// so they share locals (a start time, a pool handle, a log line), which two closures of
/// [`from_fns`](crate::from_fns) cannot:
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Status, scoped};
///
/// let mut trace = Vec::new();
/// let total = scoped(async |scope| {
///     let started = 7u32; // a local of setup, used in teardown
///     trace.push("begin");
///     let (tx, outcome) = scope.lend(Vec::<u32>::new()).await;
///     match outcome.status() {
///         Status::Success => trace.push("commit"),
///         _ => trace.push("rollback"),
///     }
///     assert_eq!((started, tx.len()), (7, 2));
///     Ok::<_, ()>(())
/// })
/// .with(async |tx| {
///     tx.extend([1, 2]);
///     Ok::<_, ()>(tx.iter().sum::<u32>())
/// })
/// .await;
/// assert_eq!(total, Ok(3));
/// assert_eq!(trace, ["begin", "commit"]);
/// # });
/// ```
///
/// Errors: a closure that returns `Err` before its lend resolves failed to enter
/// ([`Error::Enter`](crate::Error::Enter)); after it, to exit ([`Error::Exit`](crate::Error::Exit),
/// or [`Error::BodyAndExit`](crate::Error::BodyAndExit) beside the body's error). The outcome
/// the lend returns may be held across the teardown's awaits: the body's error stays where it
/// is, lent. No allocation, `no_std`, any executor.
///
/// # Two ways to run it
///
/// - **`scoped(..).with(body)`** (and [`.cancel_on(signal)`](ScopedWith::cancel_on)): a
///   [`ScopedWith`] holds the closure's future beside the `with`'s state, in one pinned future.
///   No allocation, `no_std`.
/// - **As a manager** (feature `alloc`): [`Scoped`] is an [`AsyncEnter`](crate::AsyncEnter), so
///   `with(scoped(..), body)` works, and so do tuples, arrays, an
///   `ExitStack`'s `enter_context`, and a library's
///   `impl SendManager<..>` return type. The closure's future then lives in a heap cell, one
///   allocation per use, owned by the enter future, then the exit handle, then the exit
///   future (`ScopedEnter`, `ScopedExit`, `ScopedTeardown`).
///
/// Why the manager form allocates: the closure's future holds the lent resource's place and,
/// during teardown, the body's error; it must stay in one place from setup to teardown and must
/// never outlive the error it borrows. A manager's enter future is dropped when entering ends
/// and its exit handle is moved, so without a heap cell nothing stays in place. And an exit
/// future can be created by anyone (a group, a stack, a caller by hand) and leaked: the
/// closure's future must be owned by it, to be leaked with it, never dropped later holding an
/// error that is gone. A `ScopedWith` owns the error and the closure's future together, so it
/// needs neither.
///
/// # Misuse and cancellation
///
/// | what the closure or the caller does | what happens |
/// |---|---|
/// | returns `Ok` without lending | panic: "the closure of `scoped` returned `Ok` without lending a resource" (Python raises `RuntimeError` for a generator that did not yield) |
/// | lends twice | does not compile: [`Scope::lend`] takes the scope by value |
/// | returns `Err` or panics before the lend | the `with` resolves to `Error::Enter`, or the panic propagates from `poll`; the body does not run |
/// | drops the lend future before it resolves (a `select` it lost) | the resource is dropped with it; if it was not yet lent the body never runs; the closure goes on without it |
/// | leaks a polled lend future (`mem::forget` of a `Box`) | the body runs with the resource (it was lent); teardown cannot get it back, and it is dropped with the closure's future |
/// | fails or panics after the lend | `Error::Exit` (or `BodyAndExit`), or the panic propagates from `poll` |
/// | the `ScopedWith` is dropped during setup | the closure's future is dropped, with its locals |
/// | … mid-body | the body's future is dropped, then the resource, then the closure's future; the closure's code after the lend does not run |
/// | … during teardown | the closure's future is dropped where it is suspended |
/// | (manager form, by hand) the exit handle dropped without `exit` or `cancel` | the closure's future is dropped |
/// | (manager form, by hand) the exit future leaked | the closure's future and its cell leak with it: never dropped, never polled |
/// | a signal ([`ScopedWith::cancel_on`]) fires mid-body | the body's future is dropped, the lend returns with [`Outcome::Cancelled`](crate::Outcome::Cancelled), teardown runs and is awaited |
///
/// While the body runs the closure is not polled, so it never touches the resource while the
/// body borrows it, and the body never sees a resource that moved: it borrows it inside the
/// `with`'s state, where it stays until the body's future is gone.
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
/// A library returns one as `Scoped<R, impl for<'s> ScopeFn<'s, R, Error = E>>`, or, when it
/// is only used as a manager, as `impl AsyncEnter<Resource = R, Error = E>` (feature `alloc`).
/// To let callers spawn it, add `Future: Send` and `Send`:
/// `impl for<'s> ScopeFn<'s, R, Error = E, Future: Send> + Send` (or `impl SendManager<..>`).
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
    ///
    /// It allocates nothing (see [Two ways to run it](scoped#two-ways-to-run-it)); as a method
    /// it is chosen over [`AsyncEnter::with`](crate::AsyncEnter::with), which the manager form
    /// (feature `alloc`) would otherwise offer.
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
