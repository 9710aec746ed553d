//! [`CancelOn`]: a `with` that a stop signal ends gracefully, its exit still awaited.

use core::fmt;
use core::future::{Future, Pending};
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::FusedFuture;
use pin_project_lite::pin_project;

use super::WithFuture;
use super::cancel_error::CancelError;
use super::state::{self, Ended, Finished, State, Stopped};
use crate::body::Body;
use crate::error::Error;
use crate::lend::unreachable_phase;
use crate::manager::AsyncEnter;

impl<'a, M, B> WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    /// Ends the `with` gracefully when `signal` is ready: the body stops, and exit still runs
    /// **and is awaited**, seeing [`Outcome::Cancelled`](crate::Outcome::Cancelled).
    ///
    /// `signal` is any future; its output is ignored: `tokio::time::sleep(d)`,
    /// `embassy_time::Timer::after(d)`, `CancellationToken::cancelled()`, a channel's receiver,
    /// a hand-written poll-based future. Nothing is allocated, and the returned [`CancelOn`]
    /// has a name. What happens in each phase is in [`CancelOn`]'s docs; the crate docs'
    /// [cancellation section](crate#cancellation) compares it with dropping the future.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use core::cell::RefCell;
    /// use async_with::{CancelError, Outcome, from_fns, with};
    ///
    /// let log = RefCell::new(Vec::new());
    /// let tx = from_fns(
    ///     async || Ok::<_, ()>("tx"),
    ///     async |_tx, outcome: Outcome<'_>| {
    ///         // Awaited although the body was stopped: an async ROLLBACK fits here.
    ///         log.borrow_mut().push(if outcome.is_success() { "COMMIT" } else { "ROLLBACK" });
    ///         Ok(())
    ///     },
    /// );
    /// // A body that would wait forever, and a signal that is ready at once.
    /// let result = with(tx, async |_tx| core::future::pending::<()>().await)
    ///     .cancel_on(async {})
    ///     .await;
    /// assert_eq!(result, Err(CancelError::Body { exit: None }));
    /// assert_eq!(*log.borrow(), ["ROLLBACK"]);
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// If the `WithFuture` has been polled. No safe code can do that: polling pins it, and a
    /// pinned `WithFuture` cannot be moved out again to call this.
    pub fn cancel_on<S: Future>(self, signal: S) -> CancelOn<'a, M, B, S> {
        let mut this = self;
        let state = core::mem::replace(&mut this.state, State::Done);
        CancelOn {
            state: state.restart(),
            guard: Guard::Body {
                signal,
                bound: core::future::pending(),
            },
        }
    }
}

pin_project! {
    /// Future for [`WithFuture::cancel_on`]: a `with` that a stop signal ends gracefully.
    ///
    // One block comment, for pin-project-lite (see `WithFuture`).
    /**
    It resolves to `Result<T, CancelError<M::Error, E>>`: `Ok(t)` and
    [`CancelError::Failed`] are what the `with` would have resolved to without a signal; the
    other variants say where a signal ended it.

    The signal is polled after the `with`, in each poll of enter and the body, and dropped
    when exit begins: stopped during enter, the enter future is dropped
    ([`CancelError::Entering`]); stopped during the body, the body's future is dropped and
    exit runs with [`Outcome::Cancelled`](crate::Outcome::Cancelled), awaited and shielded
    from the signal ([`CancelError::Body`]). [`abandon_exit_on`](CancelOn::abandon_exit_on)
    bounds exit. Dropping a `CancelOn` is abortive, as dropping a `WithFuture`. The whole
    story, phase by phase, with groups and exit stacks and the comparison with Python, Trio and
    tokio-util, is the crate docs' [Cancellation](crate#cancellation).

    ```
    # futures_executor::block_on(async {
    use core::future::Future;
    use core::pin::Pin;
    use async_with::{Body, CancelOn, NullContext, Value, null_context, with};

    /// A job that a shutdown signal can stop: a named type, for a struct field.
    struct Stoppable<'a, B, S>
    where
        B: Body<'a, u32>,
    {
        run: CancelOn<'a, NullContext<u32>, B, S>,
    }

    let job = Stoppable {
        run: with(null_context(5), async |n| Value(*n + 1)).cancel_on(core::future::pending::<()>()),
    };
    assert_eq!(job.run.await, Ok(6));
    # });
    ```

    # Auto traits

    `Send` when the `WithFuture` and the two signals are; `!Unpin`, as the `WithFuture`.
    */
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct CancelOn<'a, M, B, S, G = Pending<()>>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        #[pin]
        state: State<'a, M, B, ()>,
        #[pin]
        guard: Guard<S, G>,
    }

    impl<'a, M, B, S, G> PinnedDrop for CancelOn<'a, M, B, S, G>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        fn drop(this: Pin<&mut Self>) {
            state::drop_state(this.project().state);
        }
    }
}

pin_project! {
    /// The signals still to poll: each is dropped when the phase it guards ends.
    #[project = GuardProj]
    #[project_replace = GuardReplace]
    enum Guard<S, G> {
        /// Enter and the body: the stop signal, and the exit bound for later.
        Body { #[pin] signal: S, bound: G },
        /// Exit: its bound.
        Exit { #[pin] bound: G },
        /// Finished.
        Done,
    }
}

impl<'a, M, B, S> CancelOn<'a, M, B, S>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    /// Bounds exit: when `bound` is ready while exit runs, the exit future is dropped
    /// unfinished and the future resolves to [`CancelError::ExitAbandoned`]. `bound` is polled
    /// only during exit; see [`CancelOn`]'s docs for what an abandoned exit leaves.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{CancelError, Outcome, from_fns, with};
    ///
    /// // An exit that never finishes: its goodbye is never acknowledged.
    /// let peer = from_fns(async || Ok::<_, ()>(()), async |_, _: Outcome<'_>| {
    ///     core::future::pending::<Result<(), ()>>().await
    /// });
    /// let result = with(peer, async |_| core::future::pending::<()>().await)
    ///     .cancel_on(async {})
    ///     .abandon_exit_on(async {})
    ///     .await;
    /// assert_eq!(result, Err(CancelError::ExitAbandoned { body: None, cancelled: true }));
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// If the `CancelOn` has been polled (which no safe code can do, as for
    /// [`WithFuture::cancel_on`]).
    pub fn abandon_exit_on<G: Future>(self, bound: G) -> CancelOn<'a, M, B, S, G> {
        let mut this = self;
        let state = core::mem::replace(&mut this.state, State::Done);
        let Guard::Body { signal, .. } = core::mem::replace(&mut this.guard, Guard::Done) else {
            unreachable!("a `CancelOn` owned by value has not been polled")
        };
        CancelOn {
            state: state.restart(),
            guard: Guard::Body { signal, bound },
        }
    }
}

impl<'a, M, B, S, G> Future for CancelOn<'a, M, B, S, G>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
    S: Future,
    G: Future,
{
    type Output = Result<B::Ok, CancelError<M::Error, B::Err>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(finished) = state::poll(this.state.as_mut(), cx) {
                this.guard.set(Guard::Done);
                return Poll::Ready(finish(finished));
            }
            let GuardProj::Body { signal, .. } = this.guard.as_mut().project() else {
                break;
            };
            // Exit may have begun in this poll: the body ended on its own, and is not stopped.
            let stopped = !this.state.is_exiting() && {
                if signal.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match state::stop(this.state.as_mut()) {
                    Stopped::Enter => {
                        this.guard.set(Guard::Done);
                        return Poll::Ready(Err(CancelError::Entering));
                    }
                    Stopped::Body => true,
                    Stopped::Nothing => false,
                }
            };
            // Exit has begun: the signal's work is done, and exit is shielded from it.
            let GuardReplace::Body { bound, .. } = this.guard.as_mut().project_replace(Guard::Done)
            else {
                unreachable_phase()
            };
            this.guard.set(Guard::Exit { bound });
            // An exit just started by the stop has not been polled yet: once more round.
            if !stopped {
                break;
            }
        }
        let GuardProj::Exit { bound } = this.guard.as_mut().project() else {
            return Poll::Pending;
        };
        if bound.poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The exit future is dropped first, then the bound.
        let abandoned = state::abandon(this.state.as_mut());
        this.guard.set(Guard::Done);
        let abandoned = match abandoned {
            Some(Ended::Ok(_)) | None => CancelError::ExitAbandoned {
                body: None,
                cancelled: false,
            },
            Some(Ended::Err(body)) => CancelError::ExitAbandoned {
                body: Some(body),
                cancelled: false,
            },
            Some(Ended::Cancelled(())) => CancelError::ExitAbandoned {
                body: None,
                cancelled: true,
            },
            #[cfg(feature = "std")]
            Some(Ended::Panicked(payload)) => std::panic::resume_unwind(payload),
        };
        Poll::Ready(Err(abandoned))
    }
}

/// The output for a `with` whose exit ran to its end.
#[inline]
fn finish<T, E, X>(finished: Finished<T, E, X, ()>) -> Result<T, CancelError<X, E>> {
    match finished {
        Finished::Enter(error) => Err(CancelError::Failed(Error::Enter(error))),
        Finished::Exited(ended, exited) => match (ended, exited) {
            (Ended::Ok(value), Ok(())) => Ok(value),
            (Ended::Ok(_), Err(exit)) => Err(CancelError::Failed(Error::Exit(exit))),
            (Ended::Err(body), Ok(())) => Err(CancelError::Failed(Error::Body(body))),
            (Ended::Err(body), Err(exit)) => {
                Err(CancelError::Failed(Error::BodyAndExit { body, exit }))
            }
            (Ended::Cancelled(()), exited) => Err(CancelError::Body { exit: exited.err() }),
            #[cfg(feature = "std")]
            (Ended::Panicked(payload), _) => std::panic::resume_unwind(payload),
        },
    }
}

impl<'a, M, B, S, G> CancelOn<'a, M, B, S, G>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    /// The manager, until the first poll enters it.
    #[inline]
    pub(crate) fn unstarted(self: Pin<&mut Self>) -> Option<&mut M> {
        self.project().state.unstarted()
    }
}

impl<'a, M, B, S, G> FusedFuture for CancelOn<'a, M, B, S, G>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
    S: Future,
    G: Future,
{
    fn is_terminated(&self) -> bool {
        self.state.is_done()
    }
}

impl<'a, M, B, S, G> fmt::Debug for CancelOn<'a, M, B, S, G>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = match self.guard {
            Guard::Body { .. } => "signal",
            Guard::Exit { .. } => "exit bound",
            Guard::Done => "none",
        };
        f.debug_struct("CancelOn")
            .field("phase", &self.state.phase())
            .field("guarding", &guard)
            .finish()
    }
}
