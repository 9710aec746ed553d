//! The state machine behind [`WithFuture`](super::WithFuture) and
//! [`CancelOn`](super::CancelOn): enter, body, exit, phase by phase, and the two ways a stop
//! signal steps in (stopping the body, abandoning exit).
//!
//! Both futures hold a [`State`] and differ only in `C`, what a stopped body leaves in
//! [`Ended::Cancelled`]: [`Infallible`](core::convert::Infallible) for `WithFuture`, which has
//! no signal (the variant cannot exist, and the compiler removes every arm that handles it), and
//! `()` for `CancelOn`.

use core::any::Any;
use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::body::Body;
use crate::guard::OnUnwind;
use crate::lend::{Lend, Shows, Unborrowing, take_and_drop, unreachable_phase};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::{Failure, Outcome};
use crate::output::BodyOutput;

type BodyLend<'a, M, B> =
    Lend<<M as AsyncEnter>::Resource, <M as AsyncEnter>::Exit, BodyFuture<'a, M, B>>;
type BodyFuture<'a, M, B> = <B as Body<'a, <M as AsyncEnter>::Resource>>::Future;
type ExitFuture<'a, M> =
    <<M as AsyncEnter>::Exit as AsyncExit<<M as AsyncEnter>::Resource>>::Future<'a>;
/// How the body ended, lent to the exit future that borrows it.
type ExitLend<'a, M, B, C> = Lend<
    Ended<
        <B as Body<'a, <M as AsyncEnter>::Resource>>::Ok,
        <B as Body<'a, <M as AsyncEnter>::Resource>>::Err,
        C,
    >,
    (),
    ExitFuture<'a, M>,
>;

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    pub(crate) enum State<'a, M, B, C>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        Start { manager: M, body: Unborrowing<M::Resource, B> },
        Enter { #[pin] future: M::Enter, body: Unborrowing<M::Resource, B> },
        Body { #[pin] lend: BodyLend<'a, M, B> },
        // Its lend is empty once exit is over early (`abandon`, or `exit()` panicked): the
        // future has finished then, as in `Done`.
        Exit { #[pin] lend: ExitLend<'a, M, B, C> },
        Done,
    }
}

impl<'a, M, B, C> State<'a, M, B, C>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    #[inline]
    pub(crate) fn new(manager: M, body: Unborrowing<M::Resource, B>) -> Self {
        State::Start { manager, body }
    }

    /// The manager and the body of a state that has not started, for another `C`.
    ///
    /// # Panics
    ///
    /// If it has started. A future owned by value has never been polled (polling pins it, and
    /// a pinned `!Unpin` future cannot be moved out again), so no safe caller gets here.
    pub(crate) fn restart<D>(self) -> State<'a, M, B, D> {
        match self {
            State::Start { manager, body } => State::Start { manager, body },
            _ => started(),
        }
    }

    /// The manager, before the first poll takes it (for a manager that needs to be told where
    /// its future lives: [`crate::ScopedWith`]).
    #[inline]
    pub(crate) fn unstarted(self: Pin<&mut Self>) -> Option<&mut M> {
        match self.project() {
            StateProj::Start { manager, .. } => Some(manager),
            _ => None,
        }
    }

    /// The phase's name, for `Debug`.
    pub(crate) fn phase(&self) -> &'static str {
        match self {
            State::Start { .. } => "Start",
            State::Enter { .. } => "Enter",
            State::Body { .. } => "Body",
            State::Exit { lend } if lend.is_taken() => "Done",
            State::Exit { .. } => "Exit",
            State::Done => "Done",
        }
    }

    /// Whether the future has finished.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, State::Done) || matches!(self, State::Exit { lend } if lend.is_taken())
    }

    /// Whether exit has begun (it runs, or the future has finished).
    #[inline]
    pub(crate) fn is_exiting(&self) -> bool {
        matches!(self, State::Exit { .. } | State::Done)
    }
}

#[cold]
#[inline(never)]
fn started() -> ! {
    panic!("a `WithFuture` was moved after it was polled")
}

/// How the body ended, kept while exit runs.
pub(crate) enum Ended<T, E, C> {
    Ok(T),
    Err(E),
    /// A stop signal ended the body (only for `C = ()`).
    Cancelled(C),
    #[cfg(feature = "std")]
    Panicked(std::boxed::Box<dyn Any + Send>),
}

impl<T, E: fmt::Debug + Any + Sync, C> Shows for Ended<T, E, C> {
    #[inline]
    fn shows<'v>(&'v self, _outer: Outcome<'v>) -> Outcome<'v> {
        match self {
            Ended::Ok(_) => Outcome::Success,
            Ended::Err(error) => Outcome::Failure(Failure::new(error)),
            Ended::Cancelled(_) => Outcome::Cancelled,
            #[cfg(feature = "std")]
            Ended::Panicked(_) => Outcome::Panicked,
        }
    }
}

/// How the whole future ended: enter failed, or exit finished after the body ended.
pub(crate) enum Finished<T, E, X, C> {
    Enter(X),
    Exited(Ended<T, E, C>, Result<(), X>),
}

/// [`Finished`] for a manager `M` and a body `B`.
pub(crate) type FinishedFor<'a, M, B, C> = Finished<
    <B as Body<'a, <M as AsyncEnter>::Resource>>::Ok,
    <B as Body<'a, <M as AsyncEnter>::Resource>>::Err,
    <M as AsyncEnter>::Error,
    C,
>;

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

/// Drives the phases straight down, as far as they go in this poll.
#[inline]
pub(crate) fn poll<'a, M, B, C>(
    mut state: Pin<&mut State<'a, M, B, C>>,
    cx: &mut Context<'_>,
) -> Poll<FinishedFor<'a, M, B, C>>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
{
    // Straight down, phase by phase: after a transition the next `if let` tests a variant that
    // was just written, which the optimizer can fold away. Start and enter read the phase
    // through `*state` before they project: a projection that is only tested computes every
    // variant's field addresses first, and the optimizer did not always fold that (the
    // firmware's six scenarios: 300 bytes at `opt-level = "s"`). The body's test projects at
    // once: there, testing first cost 250.
    if let State::Start { .. } = *state {
        let StateReplace::Start { manager, body } = state.as_mut().project_replace(State::Done)
        else {
            unreachable_phase()
        };
        overwrite(
            state.as_mut(),
            State::Enter {
                future: manager.enter(),
                body,
            },
        );
    }
    // The body, from the poll that entered until the body is called (in the same poll, inside
    // the same panic catch as the body future's first poll).
    let mut body = None;
    if let State::Enter { .. } = *state {
        let StateProj::Enter { future, .. } = state.as_mut().project() else {
            unreachable_phase()
        };
        // Should the enter future's destructor panic (it is dropped in `project_replace`), the
        // resource it produced still gets `cancel` while unwinding.
        let entered = OnUnwind::new(ready!(future.poll(cx)), cancel_entered::<M>);
        let StateReplace::Enter {
            body: entered_body, ..
        } = state.as_mut().project_replace(State::Done)
        else {
            unreachable_phase()
        };
        let (resource, exit) = match entered.defuse() {
            Ok(entered) => entered,
            Err(error) => return Poll::Ready(Finished::Enter(error)),
        };
        overwrite(
            state.as_mut(),
            State::Body {
                lend: Lend::new(resource, exit),
            },
        );
        body = Some(entered_body);
    }
    let lend = if let StateProj::Body { mut lend, .. } = state.as_mut().project() {
        let polled = catch(|| {
            if let Some(body) = body {
                lend.as_mut().start(body);
            }
            lend.as_mut().poll(cx)
        });
        // Straight on to the exit future's first poll: the resource leaves the lend it was
        // borrowed from (through `lend`, with no second look at the phase: that look cost the
        // firmware 180 bytes), and the exit lend comes back. One arm per way the body ended,
        // each moving its value straight into the exit lend (one arm for both cost
        // callgrind's scenarios (a) to (d) with `std` 6 to 9 instructions a cycle).
        match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => {
                let (resource, exit) = lent::<M, B>(lend);
                let ended = match output.into_result() {
                    Ok(value) => Ended::Ok(value),
                    Err(error) => Ended::Err(error),
                };
                start_exit(state.as_mut(), resource, exit, ended)
            }
            #[cfg(feature = "std")]
            Err(payload) => {
                let (resource, exit) = lent::<M, B>(lend);
                start_exit(state.as_mut(), resource, exit, Ended::Panicked(payload))
            }
        }
    } else {
        // Neither `Start` nor `Enter` (they return above unless they went on) nor `Body`.
        let StateProj::Exit { lend } = state.as_mut().project() else {
            polled_after_completion()
        };
        lend
    };
    // The exit future is dropped before the body's value leaves the lend, which is left empty.
    // An exit lend with no future in it is a finished future too: `exit()` panicked and left
    // it empty (`start_exit`). Its one look at the lend's tag is the one `poll_take` makes.
    let (exited, ended, ()) = ready!(lend.poll_take(cx, polled_after_completion));
    state.set(State::Done);
    Poll::Ready(Finished::Exited(ended, exited))
}

/// Writes `next` over the current state, dropping what is left of it field by field, for the
/// variant it is: `Pin::set` calls the whole enum's drop glue, which is out of line once the
/// managers' futures make it large (callgrind's scenario (e), three managers as a tuple: 21
/// instructions a cycle for the two writes that follow `project_replace`). The writes of the
/// exit phase and of `Done` keep `set`: there it would take (e) to 483 / 527 instructions, but
/// cost the firmware 120 bytes at `opt-level = "s"` and scenario (d) without `std` 2.
/// `#[inline(always)]`: at `opt-level = "z"` it stayed a function of its own per manager.
#[inline(always)]
fn overwrite<'a, M, B, C>(state: Pin<&mut State<'a, M, B, C>>, next: State<'a, M, B, C>)
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    drop(state.project_replace(next));
}

/// The resource and the exit handle, out of the body's lend once its future is gone.
#[inline]
fn lent<'a, M, B>(lend: Pin<&mut BodyLend<'a, M, B>>) -> (M::Resource, M::Exit)
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    let Some(taken) = lend.take() else {
        unreachable_phase()
    };
    taken
}

/// Moves to the exit phase: the body's future is gone and `resource` has left its lend; it
/// goes to exit together with the outcome `ended` shows, and the exit lend is returned.
/// With `std` it has a caller more (a panicking body), and was left out of line where the
/// manager's `exit` is large: scenario (h) with `std`, 44 instructions a cycle.
#[cfg_attr(feature = "std", inline(always))]
#[cfg_attr(not(feature = "std"), inline)]
fn start_exit<'s, 'a, M, B, C>(
    mut state: Pin<&'s mut State<'a, M, B, C>>,
    resource: M::Resource,
    exit: M::Exit,
    ended: Ended<B::Ok, B::Err, C>,
) -> Pin<&'s mut ExitLend<'a, M, B, C>>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
{
    // The body's value, error or payload goes into the exit phase's lend first; the exit
    // future created next borrows the outcome it shows.
    state.set(State::Exit {
        lend: Lend::new(ended, ()),
    });
    let StateProj::Exit { lend } = state.project() else {
        unreachable_phase()
    };
    // Should `exit()` panic, the value is dropped and the lend left empty: the future has
    // finished (`is_done`), and polled again it panics as after completion. (A guard on the
    // lend, not on the state, so that the exit future's first poll follows with no second
    // look at the phase: callgrind's scenario (b), 2 instructions a cycle.)
    let mut lend = OnUnwind::new(lend, take_and_drop);
    lend.get()
        .as_mut()
        .start_exit(exit, resource, Outcome::Success);
    lend.defuse()
}

/// What [`stop`] did.
pub(crate) enum Stopped {
    /// The enter future was dropped; the future has finished.
    Enter,
    /// The body future was dropped and exit has begun, seeing [`Outcome::Cancelled`].
    Body,
    /// Nothing: exit had begun already.
    Nothing,
}

/// Stops the phase under way if it is enter or the body (a stop signal is ready).
pub(crate) fn stop<'a, M, B>(mut state: Pin<&mut State<'a, M, B, ()>>) -> Stopped
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
{
    match state.as_mut().project() {
        StateProj::Start { .. } | StateProj::Enter { .. } => {
            // The enter future's own `Drop` undoes what it had started, as when the future is
            // dropped mid-enter.
            state.set(State::Done);
            Stopped::Enter
        }
        StateProj::Body { lend } => {
            // The body future is dropped inside `take`, before the resource leaves the lend
            // for exit.
            let (resource, exit) = lent::<M, B>(lend);
            let _ = start_exit(state, resource, exit, Ended::Cancelled(()));
            Stopped::Body
        }
        StateProj::Exit { .. } | StateProj::Done => Stopped::Nothing,
    }
}

/// Abandons exit (its bound is ready): drops the exit future and returns how the body ended.
/// `None` if exit is not under way.
pub(crate) fn abandon<'a, M, B>(
    mut state: Pin<&mut State<'a, M, B, ()>>,
) -> Option<Ended<B::Ok, B::Err, ()>>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    let StateProj::Exit { lend } = state.as_mut().project() else {
        return None;
    };
    // The exit future goes first (it borrows the outcome), then the body's value leaves.
    // The lend is left empty: the future has finished.
    lend.take().map(|(ended, ())| ended)
}

/// What dropping the future runs (see the crate docs' `# Cancellation`). `#[inline]`: without
/// it, callgrind's scenario (b) with `std` cost 18 instructions more a cycle (234, not 216).
#[inline]
pub(crate) fn drop_state<'a, M, B, C>(state: Pin<&mut State<'a, M, B, C>>)
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    match state.project() {
        StateProj::Body { lend } => {
            // The body future is dropped inside `take`, before the resource moves. Should its
            // destructor panic, the resource is still in place: the guard takes it while
            // unwinding, and it gets `cancel` all the same.
            let mut lend = OnUnwind::new(lend, cancel_lent::<M, B>);
            cancel_lent::<M, B>(lend.get().as_mut());
            let _ = lend.defuse();
        }
        // The exit future goes first (it borrows the outcome), then the body's value, error or
        // payload.
        StateProj::Exit { lend } => lend.drop_all(),
        _ => {}
    }
}

/// `cancel` for what an enter future produced, if it produced a resource.
fn cancel_entered<M: AsyncEnter>(entered: Result<(M::Resource, M::Exit), M::Error>) {
    if let Ok((resource, exit)) = entered {
        exit.cancel(resource);
    }
}

/// `cancel` for whatever a [`Lend`] still holds.
fn cancel_lent<'a, M, B>(lend: Pin<&mut BodyLend<'a, M, B>>)
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    if let Some((resource, exit)) = lend.take() {
        exit.cancel(resource);
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("`WithFuture` polled after completion")
}
