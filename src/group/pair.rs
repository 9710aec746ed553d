//! [`Pair`]: two managers entered as one, the left one outside the right one — the engine
//! behind tuples, which nest pairs to the left: `(A, B, C)` runs as `Pair<Pair<Leaf<A>, B>, C>`.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::error::Fault;
use crate::guard::OnUnwind;
use crate::lend::{Lend, unreachable_phase};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// The left side of a [`Pair`]: a manager whose errors can be kept per position.
///
/// Implemented by [`Leaf`] (one manager: one position) and [`Pair`] (its error already is
/// its positions). You never implement it.
pub trait Member: AsyncEnter {
    /// The faults of this member's positions.
    type Faults;

    /// The faults for an error this member returned in the given phase.
    fn faults(fault: Fault<Self::Error>) -> Self::Faults;

    /// The faults when this member did not fail.
    fn no_faults() -> Self::Faults;
}

/// The leftmost manager of a tuple, as a [`Member`] with one position. Enters, exits and
/// cancels exactly as the manager it wraps.
#[derive(Debug)]
pub struct Leaf<M>(pub M);

impl<M: AsyncEnter> AsyncEnter for Leaf<M> {
    type Resource = M::Resource;
    type Error = M::Error;
    type Exit = M::Exit;
    type Enter = M::Enter;

    #[inline]
    fn enter(self) -> Self::Enter {
        self.0.enter()
    }
}

impl<M: AsyncEnter> Member for Leaf<M> {
    type Faults = Option<Fault<M::Error>>;

    #[inline]
    fn faults(fault: Fault<M::Error>) -> Self::Faults {
        Some(fault)
    }

    #[inline]
    fn no_faults() -> Self::Faults {
        None
    }
}

/// Two managers as one: `left` is entered first and exited last. Its resource is
/// `(left, right)`; its error keeps a fault per position.
#[derive(Debug)]
pub struct Pair<L, R> {
    left: L,
    right: R,
}

impl<L, R> Pair<L, R> {
    /// `left` outside `right`.
    pub fn new(left: L, right: R) -> Self {
        Pair { left, right }
    }
}

/// The error of a [`Pair`]: the left member's faults and the right manager's.
type PairFaults<L, R> = (
    <L as Member>::Faults,
    Option<Fault<<R as AsyncEnter>::Error>>,
);

type ExitFuture<'o, M> =
    <<M as AsyncEnter>::Exit as AsyncExit<<M as AsyncEnter>::Resource>>::Future<'o>;

/// The right member's error, lent to the left member's exit future while it runs.
type LeftExit<'o, L, R> = Lend<Option<<R as AsyncEnter>::Error>, (), ExitFuture<'o, L>>;

impl<L, R> AsyncEnter for Pair<L, R>
where
    L: Member,
    R: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Resource = (L::Resource, R::Resource);
    type Error = PairFaults<L, R>;
    type Exit = PairExit<L, R>;
    type Enter = PairEnter<L, R>;

    #[inline]
    fn enter(self) -> Self::Enter {
        PairEnter {
            state: EnterState::Left {
                future: self.left.enter(),
                right: self.right,
            },
        }
    }
}

impl<L, R> Member for Pair<L, R>
where
    L: Member,
    R: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Faults = PairFaults<L, R>;

    #[inline]
    fn faults(fault: Fault<Self::Error>) -> Self::Faults {
        // A pair's error already holds each position's phase.
        fault.into_inner()
    }

    #[inline]
    fn no_faults() -> Self::Faults {
        (L::no_faults(), None)
    }
}

/// The synchronous release of an entered member that will not exit.
fn cancel<M: AsyncEnter>((resource, exit): (M::Resource, M::Exit)) {
    exit.cancel(resource);
}

pin_project! {
    /// Enter future of a [`Pair`]: enters the left member, then the right one; if the right
    /// one fails, exits the left one (which sees that failure, lent for its whole exit) before
    /// resolving.
    ///
    /// Dropped while entering the right manager, it drops that enter future and then cancels
    /// the left member.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct PairEnter<L, R>
    where
        L: Member,
        R: AsyncEnter,
    {
        #[pin]
        state: EnterState<L, R>,
    }

    impl<L, R> PinnedDrop for PairEnter<L, R>
    where
        L: Member,
        R: AsyncEnter,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut state = this.project().state;
            match state.as_mut().project() {
                EnterProj::Right { .. } => {
                    // `project_replace` drops the right enter future in place first.
                    if let EnterReplace::Right { resource, exit, .. } = state.project_replace(EnterState::Done) {
                        exit.cancel(resource);
                    }
                }
                // The left exit future goes first, then the error it borrows.
                EnterProj::Unwind { lend } => drop(lend.take()),
                _ => {}
            }
        }
    }
}

pin_project! {
    #[project = EnterProj]
    #[project_replace = EnterReplace]
    enum EnterState<L, R>
    where
        L: Member,
        R: AsyncEnter,
    {
        Left { #[pin] future: L::Enter, right: R },
        Right { #[pin] future: R::Enter, resource: L::Resource, exit: L::Exit },
        // The outcome shown is the right member's error, kept in the lend: `'static` stands
        // for the lend's own life.
        Unwind { #[pin] lend: LeftExit<'static, L, R> },
        Done,
    }
}

impl<L, R> Future for PairEnter<L, R>
where
    L: Member,
    R: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Output = Result<((L::Resource, R::Resource), PairExit<L, R>), PairFaults<L, R>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        if let EnterProj::Left { future, .. } = state.as_mut().project() {
            let entered = ready!(future.poll(cx));
            let EnterReplace::Left { right, .. } = state.as_mut().project_replace(EnterState::Done)
            else {
                unreachable!()
            };
            let (resource, exit) = match entered {
                Ok(entered) => entered,
                Err(error) => {
                    return Poll::Ready(Err((L::faults(Fault::Enter(error)), None)));
                }
            };
            // The left member is entered: should `right.enter()` panic, it gets `cancel`.
            let left = OnUnwind::new((resource, exit), cancel::<L>);
            let future = right.enter();
            let (resource, exit) = left.defuse();
            state.set(EnterState::Right {
                future,
                resource,
                exit,
            });
        }
        if let EnterProj::Right { future, .. } = state.as_mut().project() {
            let entered = ready!(future.poll(cx));
            let EnterReplace::Right { resource, exit, .. } =
                state.as_mut().project_replace(EnterState::Done)
            else {
                unreachable!()
            };
            match entered {
                Ok((right, right_exit)) => {
                    return Poll::Ready(Ok((
                        (resource, right),
                        PairExit {
                            left: exit,
                            right: right_exit,
                        },
                    )));
                }
                Err(error) => {
                    state.set(EnterState::Unwind {
                        lend: Lend::new(Some(error), ()),
                    });
                    let EnterProj::Unwind { lend } = state.as_mut().project() else {
                        unreachable!()
                    };
                    // The error is what the lend shows; the outer outcome is never shown.
                    lend.start_exit(exit, resource, Outcome::Success);
                }
            }
        }
        let EnterProj::Unwind { mut lend } = state.as_mut().project() else {
            panic!("`PairEnter` polled after completion")
        };
        let exited = ready!(lend.as_mut().poll(cx));
        let Some((Some(error), ())) = lend.take() else {
            unreachable_phase()
        };
        state.set(EnterState::Done);
        let left = match exited {
            Ok(()) => L::no_faults(),
            Err(x) => L::faults(Fault::Exit(x)),
        };
        Poll::Ready(Err((left, Some(Fault::Enter(error)))))
    }
}

impl<L: Member, R: AsyncEnter> fmt::Debug for PairEnter<L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.state {
            EnterState::Left { .. } => "EnterLeft",
            EnterState::Right { .. } => "EnterRight",
            EnterState::Unwind { .. } => "ExitLeft",
            EnterState::Done => "Done",
        };
        f.debug_struct("PairEnter").field("phase", &phase).finish()
    }
}

/// Exit handle of a [`Pair`]: exits the right manager, then the left member.
pub struct PairExit<L: Member, R: AsyncEnter> {
    left: L::Exit,
    right: R::Exit,
}

impl<L: Member, R: AsyncEnter> fmt::Debug for PairExit<L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairExit").finish_non_exhaustive()
    }
}

impl<L, R> AsyncExit<(L::Resource, R::Resource)> for PairExit<L, R>
where
    L: Member,
    R: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Error = PairFaults<L, R>;
    type Future<'o> = PairExitFuture<'o, L, R>;

    #[inline]
    fn exit<'o>(
        self,
        (left, right): (L::Resource, R::Resource),
        outcome: Outcome<'o>,
    ) -> Self::Future<'o> {
        // The left member has not exited: should the right one's `exit()` panic, it gets
        // `cancel`.
        let guard = OnUnwind::new((left, self.left), cancel::<L>);
        let future = self.right.exit(right, outcome);
        let (resource, exit) = guard.defuse();
        PairExitFuture {
            state: ExitState::Right {
                future,
                exit,
                resource,
                outer: outcome,
            },
        }
    }

    #[inline]
    fn cancel(self, (left, right): (L::Resource, R::Resource)) {
        self.right.cancel(right);
        self.left.cancel(left);
    }
}

pin_project! {
    /// Exit future of a [`Pair`]: the right manager's exit, then the left member's, which
    /// sees the right one's failure (lent for its whole exit) if it failed, and the outcome
    /// the pair was given otherwise.
    ///
    /// Dropped while the right manager exits, it drops that exit future and then cancels the
    /// left member.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct PairExitFuture<'o, L, R>
    where
        L: Member,
        R: AsyncEnter,
    {
        #[pin]
        state: ExitState<'o, L, R>,
    }

    impl<'o, L, R> PinnedDrop for PairExitFuture<'o, L, R>
    where
        L: Member,
        R: AsyncEnter,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut state = this.project().state;
            match state.as_mut().project() {
                ExitProj::Right { .. } => {
                    // `project_replace` drops the right exit future in place first.
                    if let ExitReplace::Right { resource, exit, .. } = state.project_replace(ExitState::Done) {
                        exit.cancel(resource);
                    }
                }
                // The left exit future goes first, then the error it borrows.
                ExitProj::Left { lend } => drop(lend.take()),
                ExitProj::Done => {}
            }
        }
    }
}

pin_project! {
    #[project = ExitProj]
    #[project_replace = ExitReplace]
    enum ExitState<'o, L, R>
    where
        L: Member,
        R: AsyncEnter,
    {
        // The pair's outcome, for the left member if the right one succeeds: kept only until
        // the left member's exit starts (in this variant, not beside the state: a field the
        // left exit's variant overlaps).
        Right { #[pin] future: ExitFuture<'o, R>, exit: L::Exit, resource: L::Resource, outer: Outcome<'o> },
        Left { #[pin] lend: LeftExit<'o, L, R> },
        Done,
    }
}

impl<L, R> Future for PairExitFuture<'_, L, R>
where
    L: Member,
    R: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Output = Result<(), PairFaults<L, R>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        if let ExitProj::Right { future, .. } = state.as_mut().project() {
            let exited = ready!(future.poll(cx));
            let ExitReplace::Right {
                exit,
                resource,
                outer,
                ..
            } = state.as_mut().project_replace(ExitState::Done)
            else {
                unreachable!()
            };
            state.set(ExitState::Left {
                lend: Lend::new(exited.err(), ()),
            });
            let ExitProj::Left { lend } = state.as_mut().project() else {
                unreachable!()
            };
            // Shows the right member's error if it failed, the pair's outcome otherwise.
            lend.start_exit(exit, resource, outer);
        }
        let ExitProj::Left { mut lend } = state.as_mut().project() else {
            panic!("`PairExitFuture` polled after completion")
        };
        let exited = ready!(lend.as_mut().poll(cx));
        let Some((right, ())) = lend.take() else {
            unreachable_phase()
        };
        state.set(ExitState::Done);
        Poll::Ready(match (exited, right) {
            (Ok(()), None) => Ok(()),
            (left, right) => Err((
                left.err()
                    .map_or_else(L::no_faults, |x| L::faults(Fault::Exit(x))),
                right.map(Fault::Exit),
            )),
        })
    }
}

impl<L: Member, R: AsyncEnter> fmt::Debug for PairExitFuture<'_, L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.state {
            ExitState::Right { .. } => "ExitRight",
            ExitState::Left { .. } => "ExitLeft",
            ExitState::Done => "Done",
        };
        f.debug_struct("PairExitFuture")
            .field("phase", &phase)
            .finish()
    }
}
