//! What an [`ExitStack`](super::ExitStack) keeps per entry: a resource and its exit handle,
//! whatever kind of entry it came from, as one state machine behind a `dyn` trait.

use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::manager::AsyncExit;
use crate::outcome::Outcome;

mod sealed {
    pub trait Sealed {}
    pub trait SealedHandler<'o> {}
}

/// One entry of an exit stack, type-erased: every kind (an entered manager, an adopted value,
/// a deferred closure, an exit handler) is "an exit that sees the outcome". Sealed: the stack
/// makes its entries itself.
pub trait StackEntry<X>: sealed::Sealed {
    /// Starts the asynchronous exit, showing it `outcome`, which its future keeps until it is
    /// dropped. `'static` stands for the life of the close that owns the entry: only the
    /// stack's close (in `arena.rs`) calls this, and it drops the entry before what the outcome
    /// borrows.
    fn start(self: Pin<&mut Self>, outcome: Outcome<'static>);

    /// Polls the exit started by [`start`](StackEntry::start); its error converted into `X`.
    fn poll_exit(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), X>>;

    /// Synchronous release: an entry not yet exiting gets its cancel hook; an exit under way
    /// has its future dropped.
    fn cancel(self: Pin<&mut Self>);
}

pin_project! {
    /// A resource and the exit handle that releases it.
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<R, H>
    where
        H: AsyncExit<R>,
    {
        Waiting { resource: R, exit: H },
        Exiting { #[pin] future: H::Future<'static> },
        Done,
    }
}

pin_project! {
    /// An entry of an exit stack: a resource (`()` for deferred closures) and the exit handle
    /// that releases it. The resource stays in place, lent to the caller, until the stack
    /// closes. Made only by the stack's registration methods.
    pub struct Registered<R, H, X>
    where
        H: AsyncExit<R>,
    {
        #[pin]
        state: State<R, H>,
        _error: PhantomData<fn() -> X>,
    }
}

impl<R, H: AsyncExit<R>, X> Registered<R, H, X> {
    pub(crate) fn new(resource: R, exit: H) -> Self {
        Registered {
            state: State::Waiting { resource, exit },
            _error: PhantomData,
        }
    }

    /// The resource, for the stack to lend.
    pub(crate) fn resource(self: Pin<&mut Self>) -> &mut R {
        match self.project().state.project() {
            StateProj::Waiting { resource, .. } => resource,
            _ => unreachable!("a new entry is waiting"),
        }
    }
}

impl<R, H: AsyncExit<R>, X> sealed::Sealed for Registered<R, H, X> {}

impl<R, H, X> StackEntry<X> for Registered<R, H, X>
where
    H: AsyncExit<R, Error: Into<X>>,
{
    fn start(self: Pin<&mut Self>, outcome: Outcome<'static>) {
        let mut state = self.project().state;
        if let StateReplace::Waiting { resource, exit } =
            state.as_mut().project_replace(State::Done)
        {
            state.set(State::Exiting {
                future: exit.exit(resource, outcome),
            });
        }
    }

    fn poll_exit(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), X>> {
        let mut state = self.project().state;
        let StateProj::Exiting { future } = state.as_mut().project() else {
            return Poll::Ready(Ok(()));
        };
        let exited = ready!(future.poll(cx));
        state.set(State::Done);
        Poll::Ready(exited.map_err(Into::into))
    }

    fn cancel(self: Pin<&mut Self>) {
        let mut state = self.project().state;
        // Dropping an exit future under way happens in `project_replace`, in place.
        if let StateReplace::Waiting { resource, exit } =
            state.as_mut().project_replace(State::Done)
        {
            exit.cancel(resource);
        }
    }
}

/// Exit handle of [`ExitStack::defer`](super::ExitStack::defer): runs the closure.
pub struct Defer<F> {
    f: F,
}

impl<F> Defer<F> {
    pub(crate) fn new(f: F) -> Self {
        Defer { f }
    }
}

impl<F> fmt::Debug for Defer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defer").finish_non_exhaustive()
    }
}

impl<F, Fut, E> AsyncExit<()> for Defer<F>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Error = E;
    type Future<'o> = Fut;

    fn exit(self, (): (), _outcome: Outcome<'_>) -> Fut {
        (self.f)()
    }
}

/// Exit handle of [`ExitStack::push_exit`](super::ExitStack::push_exit): runs the closure
/// with how the scope ended.
pub struct OnExit<F> {
    f: F,
}

impl<F> OnExit<F> {
    pub(crate) fn new(f: F) -> Self {
        OnExit { f }
    }
}

impl<F> fmt::Debug for OnExit<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnExit").finish_non_exhaustive()
    }
}

impl<F, E> AsyncExit<()> for OnExit<F>
where
    F: for<'o> OnExitFn<'o, Error = E>,
{
    type Error = E;
    type Future<'o> = <F as OnExitFn<'o>>::Future;

    fn exit<'o>(self, (): (), outcome: Outcome<'o>) -> Self::Future<'o> {
        self.f.call(outcome)
    }
}

/// An exit handler of [`ExitStack::push_exit`](super::ExitStack::push_exit) for one outcome
/// lifetime `'o`: implemented for every `FnOnce(Outcome<'o>) -> impl Future<Output =
/// Result<(), E>>`. Sealed; it names the handler's future, which may borrow the outcome.
pub trait OnExitFn<'o>: sealed::SealedHandler<'o> {
    /// The handler's error.
    type Error;
    /// The future the handler returns.
    type Future: Future<Output = Result<(), Self::Error>>;
    /// Calls the handler.
    fn call(self, outcome: Outcome<'o>) -> Self::Future;
}

impl<'o, F, Fut, E> sealed::SealedHandler<'o> for F
where
    F: FnOnce(Outcome<'o>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
}

impl<'o, F, Fut, E> OnExitFn<'o> for F
where
    F: FnOnce(Outcome<'o>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Error = E;
    type Future = Fut;

    #[inline]
    fn call(self, outcome: Outcome<'o>) -> Fut {
        self(outcome)
    }
}

pin_project! {
    /// The exit future of an entry that cannot fail, with the stack's error type.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct InfallibleExit<F, X> {
        #[pin]
        future: F,
        _error: PhantomData<fn() -> X>,
    }
}

impl<F: Future<Output = Result<(), Infallible>>, X> Future for InfallibleExit<F, X> {
    type Output = Result<(), X>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), X>> {
        let Ok(()) = ready!(self.project().future.poll(cx));
        Poll::Ready(Ok(()))
    }
}

/// The exit handle of a manager that cannot fail, given the stack's error type `X`, so that it
/// joins any stack ([`ExitStack::enter_infallible`](super::ExitStack::enter_infallible)).
pub struct Infallibly<H, X> {
    exit: H,
    _error: PhantomData<fn() -> X>,
}

impl<H, X> Infallibly<H, X> {
    pub(crate) fn new(exit: H) -> Self {
        Infallibly {
            exit,
            _error: PhantomData,
        }
    }
}

impl<H, X> fmt::Debug for Infallibly<H, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Infallibly").finish_non_exhaustive()
    }
}

impl<R, H: AsyncExit<R, Error = Infallible>, X> AsyncExit<R> for Infallibly<H, X> {
    type Error = X;
    type Future<'o> = InfallibleExit<H::Future<'o>, X>;

    fn exit<'o>(self, resource: R, outcome: Outcome<'o>) -> Self::Future<'o> {
        InfallibleExit {
            future: self.exit.exit(resource, outcome),
            _error: PhantomData,
        }
    }

    fn cancel(self, resource: R) {
        self.exit.cancel(resource);
    }
}
