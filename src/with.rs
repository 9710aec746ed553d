//! [`with`] and its future, [`WithFuture`].

use core::any::Any;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use futures_core::FusedFuture;
use pin_project_lite::pin_project;

use crate::body::Body;
use crate::error::Error;
use crate::lend::Lend;
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::{Failure, Outcome};
use crate::output::BodyOutput;

/// Enters `manager`, runs `body` with `&mut` to the resource, then exits — Python's
/// `async with manager as resource: body`.
///
/// The body is an async closure, `async |resource| { .. }`, returning `Result<T, E>`. The
/// returned [`WithFuture`] resolves to `Ok(T)` when enter, body and exit all succeed, and to
/// an [`Error`] that keeps every failure otherwise.
///
/// `E` must be `Debug + 'static`, because exit may print or downcast it ([`Failure`]). An
/// error that borrows a local (`&str` into a buffer) has to be mapped to an owned one in the
/// body.
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Status, from_fns, with};
///
/// let log = core::cell::RefCell::new(Vec::new());
/// let door = from_fns(
///     async || {
///         log.borrow_mut().push("open");
///         Ok::<_, ()>(0_u32) // visitors counted while open
///     },
///     async |visitors: u32, status: Status| {
///         log.borrow_mut().push(if status.is_success() { "close" } else { "alarm" });
///         assert_eq!(visitors, 2);
///         Ok(())
///     },
/// );
///
/// let counted = with(door, async |visitors| {
///     *visitors += 2;
///     Ok::<_, ()>(*visitors)
/// })
/// .await;
///
/// assert_eq!(counted, Ok(2));
/// assert_eq!(*log.borrow(), ["open", "close"]);
/// # });
/// ```
pub fn with<'a, M, B, O, T, E>(manager: M, body: B) -> WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: AsyncFnOnce(&mut M::Resource) -> O,
    O: BodyOutput<Ok = T, Err = E>,
    B: for<'r> Body<'r, M::Resource, Ok = T, Err = E>,
    E: fmt::Debug + 'static,
{
    WithFuture {
        state: State::Start { manager, body },
    }
}

pin_project! {
    /// Future for [`with`] and [`AsyncEnter::with`]: enter, then body, then exit.
    ///
    /// It resolves to `Result<T, Error<M::Error, E>>` where the body returns `Result<T, E>`:
    ///
    /// | enter | body | exit | output |
    /// |---|---|---|---|
    /// | `Err(x)` | not run | not run | `Err(Error::Enter(x))` |
    /// | `Ok` | `Ok(t)` | `Ok` | `Ok(t)` |
    /// | `Ok` | `Ok(t)` | `Err(x)` | `Err(Error::Exit(x))` (`t` is dropped) |
    /// | `Ok` | `Err(e)` | `Ok` | `Err(Error::Body(e))` |
    /// | `Ok` | `Err(e)` | `Err(x)` | `Err(Error::BodyAndExit { body: e, exit: x })` |
    /// | `Ok` | panics (`std`) | runs with [`Outcome::Panicked`] | the panic resumes |
    ///
    /// Each phase's future is dropped as soon as it completes, before the next phase starts,
    /// and the body's future is always dropped before the resource it borrows. Nothing happens
    /// until the first poll: [`AsyncEnter::enter`] is called then.
    ///
    /// # Cancellation
    ///
    /// Rust cancels a future by dropping it, and `Drop` is synchronous: no asynchronous exit
    /// can run at that point. What happens depends on the phase the future is in when dropped:
    ///
    /// - **During enter**: the enter future is dropped. No resource was produced, so there is
    ///   nothing to exit; the enter future's own `Drop` cleans up what it had started.
    /// - **During the body**: the body future is dropped first, while the resource is still
    ///   alive; then the resource goes to the exit handle's synchronous
    ///   [`AsyncExit::cancel`] (by default: dropped), exactly once. [`AsyncExit::exit`] does
    ///   not run.
    /// - **During exit**: the exit future is dropped; its own `Drop` cleans up.
    ///
    /// Python delivers cancellation into the body as an exception, so `__aexit__` still runs
    /// and may await; Trio can even shield that cleanup from further cancellation. Both rely on
    /// a runtime that can resume a cancelled task. A Rust future that is dropped never runs
    /// again, so the only code that can react is synchronous. If a resource needs an
    /// asynchronous release on every path, keep the task alive (e.g. cancel through a signal
    /// the body observes, and return `Err`), or make `cancel` hand the resource to something
    /// that will close it later.
    ///
    /// Not even `cancel` runs if the future is leaked (`mem::forget`, a reference cycle, a task
    /// that is never dropped): no Rust type can promise cleanup then.
    ///
    /// # Panics
    ///
    /// Polling again after it returned `Ready` panics.
    ///
    /// With the `std` feature, a panic in the body is caught, exit runs with
    /// [`Outcome::Panicked`], and then the panic resumes with its original payload — even if
    /// exit failed, whose error is then dropped (the panic is the more severe failure). If the
    /// future is dropped while that exit runs, the payload is dropped with it and the panic
    /// does not resume: dropping is cancellation.
    ///
    /// A panic in enter or exit, or in the body without `std`, unwinds through `poll` and
    /// leaves the future finished or mid-phase; if it is then dropped mid-body, `cancel` runs
    /// as for any drop. A panic in [`AsyncEnter::enter`] or [`AsyncExit::exit`] themselves
    /// (not their futures) leaves it finished: `is_terminated` is true, and another poll
    /// panics as after completion. If the body panics and its future's destructor panics too,
    /// that second panic escapes `poll` before exit can run; dropping the future then runs
    /// `cancel`.
    ///
    /// # Auto traits
    ///
    /// `Send` when the manager, the exit handle, the resource, the body and its future, and
    /// the enter, body and exit futures, and the outputs are; it never requires `Sync` of them.
    /// It is never `Sync` itself: nothing needs a shared reference to a future, and this way
    /// the auto trait does not change when some crate in the build turns on `std` (whose
    /// caught panic payload is only `Send`).
    ///
    /// It is `!Unpin`: the body's future borrows the resource stored inside this future, so it
    /// must not move once polled. Pin it (`core::pin::pin!`, `Box::pin`) or `.await` it, as
    /// any async block.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct WithFuture<'a, M, B>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        #[pin]
        state: State<'a, M, B>,
    }

    impl<'a, M, B> PinnedDrop for WithFuture<'a, M, B>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut state = this.project().state;
            if let StateProj::Body { lend, .. } = state.as_mut().project() {
                // The body future is dropped inside `take`, before the resource moves.
                let resource = lend.take();
                if let (Some(resource), StateReplace::Body { exit, .. }) =
                    (resource, state.project_replace(State::Done))
                {
                    exit.cancel(resource);
                }
            }
        }
    }
}

type BodyFuture<'a, M, B> = <B as Body<'a, <M as AsyncEnter>::Resource>>::Future;
type ExitFuture<M> = <<M as AsyncEnter>::Exit as AsyncExit<<M as AsyncEnter>::Resource>>::Future;

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<'a, M, B>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        Start { manager: M, body: B },
        Enter { #[pin] future: M::Enter, body: B },
        Body { #[pin] lend: Lend<M::Resource, BodyFuture<'a, M, B>>, exit: M::Exit },
        Exit { #[pin] future: ExitFuture<M>, ended: Ended<B::Ok, B::Err> },
        Done,
    }
}

/// How the body ended, kept while exit runs.
enum Ended<T, E> {
    Ok(T),
    Err(E),
    #[cfg(feature = "std")]
    Panicked(std::boxed::Box<dyn Any + Send>),
}

impl<T, E: fmt::Debug + Any> Ended<T, E> {
    fn outcome(&self) -> Outcome<'_> {
        match self {
            Ended::Ok(_) => Outcome::Success,
            Ended::Err(error) => Outcome::Failure(Failure::new(error)),
            #[cfg(feature = "std")]
            Ended::Panicked(_) => Outcome::Panicked,
        }
    }
}

/// Runs `f`; with `std`, a panic in it is caught and returned as its payload.
#[cfg(feature = "std")]
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, std::boxed::Box<dyn Any + Send>> {
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(f))
}

/// Runs `f`; without `std`, panics are not caught.
#[cfg(not(feature = "std"))]
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, core::convert::Infallible> {
    Ok(f())
}

impl<'a, M, B> Future for WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + 'static,
{
    type Output = Result<B::Ok, Error<M::Error, B::Err>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        // Straight down, phase by phase: after a transition the next `if let` tests a variant
        // that was just written, which the optimizer can fold away.
        if let StateProj::Start { .. } = state.as_mut().project() {
            let StateReplace::Start { manager, body } = state.as_mut().project_replace(State::Done)
            else {
                unreachable!()
            };
            state.set(State::Enter {
                future: manager.enter(),
                body,
            });
        }
        if let StateProj::Enter { future, .. } = state.as_mut().project() {
            let entered = ready!(future.poll(cx));
            let StateReplace::Enter { body, .. } = state.as_mut().project_replace(State::Done)
            else {
                unreachable!()
            };
            let (resource, exit) = match entered {
                Ok(entered) => entered,
                Err(error) => return Poll::Ready(Err(Error::Enter(error))),
            };
            state.set(State::Body {
                lend: Lend::new(resource),
                exit,
            });
            let StateProj::Body { lend, .. } = state.as_mut().project() else {
                unreachable!()
            };
            if let Err(payload) = catch(|| lend.start(body)) {
                exit_after_panic(state.as_mut(), payload);
            }
        }
        if let StateProj::Body { mut lend, .. } = state.as_mut().project() {
            let ended = match catch(|| lend.as_mut().poll_body(cx)) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(output)) => match output.into_result() {
                    Ok(value) => Ended::Ok(value),
                    Err(error) => Ended::Err(error),
                },
                #[cfg(feature = "std")]
                Err(payload) => Ended::Panicked(payload),
            };
            start_exit(state.as_mut(), ended);
        }
        let StateProj::Exit { future, .. } = state.as_mut().project() else {
            panic!("`WithFuture` polled after completion")
        };
        let exited = ready!(future.poll(cx));
        let StateReplace::Exit { ended, .. } = state.project_replace(State::Done) else {
            unreachable!()
        };
        Poll::Ready(match (ended, exited) {
            (Ended::Ok(value), Ok(())) => Ok(value),
            (Ended::Ok(_), Err(exit)) => Err(Error::Exit(exit)),
            (Ended::Err(body), Ok(())) => Err(Error::Body(body)),
            (Ended::Err(body), Err(exit)) => Err(Error::BodyAndExit { body, exit }),
            #[cfg(feature = "std")]
            (Ended::Panicked(payload), _) => std::panic::resume_unwind(payload),
        })
    }
}

/// Moves from the body phase to the exit phase: the body future is already gone; the resource
/// leaves the cell and goes to exit together with the outcome.
#[inline]
fn start_exit<'a, M, B>(mut state: Pin<&mut State<'a, M, B>>, ended: Ended<B::Ok, B::Err>)
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + 'static,
{
    let StateProj::Body { lend, .. } = state.as_mut().project() else {
        unreachable!()
    };
    let resource = lend.take().expect("the resource is in place until exit");
    let StateReplace::Body { exit, .. } = state.as_mut().project_replace(State::Done) else {
        unreachable!()
    };
    let future = exit.exit(resource, ended.outcome());
    state.set(State::Exit { future, ended });
}

/// The body's closure panicked before it returned a future.
#[cfg(feature = "std")]
fn exit_after_panic<'a, M, B>(
    state: Pin<&mut State<'a, M, B>>,
    payload: std::boxed::Box<dyn Any + Send>,
) where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + 'static,
{
    start_exit(state, Ended::Panicked(payload));
}

#[cfg(not(feature = "std"))]
fn exit_after_panic<'a, M, B>(_: Pin<&mut State<'a, M, B>>, never: core::convert::Infallible)
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    match never {}
}

impl<'a, M, B> FusedFuture for WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + 'static,
{
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

impl<'a, M, B> fmt::Debug for WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.state {
            State::Start { .. } => "Start",
            State::Enter { .. } => "Enter",
            State::Body { .. } => "Body",
            State::Exit { .. } => "Exit",
            State::Done => "Done",
        };
        f.debug_struct("WithFuture").field("phase", &phase).finish()
    }
}
