//! Arrays of managers, `[M; N]`, as managers: N managers of one type entered left to right
//! and exited right to left, with no allocation.

use core::array;
use core::fmt;
use core::future::Future;
use core::mem;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::error::{Fault, GroupError};
use crate::lend::{Lend, Shows};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::{Outcome, newest};

mod sealed {
    pub trait Sealed {}
}

/// An array of managers `[M; N]`, with the array types its futures keep. Sealed; it exists
/// because the futures are written with `pin-project-lite`, which takes no const generics.
pub trait ArrayOf: sealed::Sealed {
    /// The manager type.
    type Manager: AsyncEnter<Error = Self::Error>;
    /// The manager's error.
    type Error: fmt::Debug + Sync + 'static;
    /// `[M::Resource; N]`.
    type Resources;
    /// `[Option<Fault<M::Error>>; N]`.
    type Faults: AsMut<[Option<Fault<Error<Self>>>]> + AsRef<[Option<Fault<Error<Self>>>]>;
    /// The managers not entered yet.
    type Managers: Iterator<Item = Self::Manager>;
    /// The managers entered so far, with their exit handles.
    type Entered: AsMut<[Option<Entered<Self>>]> + AsRef<[Option<Entered<Self>>]>;
    /// The exit handles.
    type Exits;

    /// The managers, to enter one by one.
    fn managers(self) -> Self::Managers;
    /// An empty list of entered managers.
    fn none_entered() -> Self::Entered;
    /// No faults yet.
    fn no_faults() -> Self::Faults;
    /// All N managers entered: their resources and exit handles.
    fn all_entered(entered: &mut Self::Entered) -> (Self::Resources, Self::Exits);
    /// Resources and exit handles side by side, all entered, to exit from the right.
    fn pending(resources: Self::Resources, exits: Self::Exits) -> Self::Entered;
}

type Error<A> = <A as ArrayOf>::Error;
type Resource<A> = <<A as ArrayOf>::Manager as AsyncEnter>::Resource;
type ExitOf<A> = <<A as ArrayOf>::Manager as AsyncEnter>::Exit;
type ExitFuture<'x, A> = <ExitOf<A> as AsyncExit<Resource<A>>>::Future<'x>;
type Entered<A> = (Resource<A>, ExitOf<A>);

impl<M, const N: usize> sealed::Sealed for [M; N] where
    M: AsyncEnter<Error: fmt::Debug + Sync + 'static>
{
}

impl<M, const N: usize> ArrayOf for [M; N]
where
    M: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Manager = M;
    type Error = M::Error;
    type Resources = [M::Resource; N];
    type Faults = [Option<Fault<M::Error>>; N];
    type Managers = array::IntoIter<M, N>;
    type Entered = [Option<(M::Resource, M::Exit)>; N];
    type Exits = [M::Exit; N];

    fn managers(self) -> Self::Managers {
        self.into_iter()
    }

    fn none_entered() -> Self::Entered {
        array::from_fn(|_| None)
    }

    fn no_faults() -> Self::Faults {
        array::from_fn(|_| None)
    }

    fn all_entered(entered: &mut Self::Entered) -> (Self::Resources, Self::Exits) {
        let mut exits = array::from_fn(|_| None);
        let resources = array::from_fn(|i| {
            let (resource, exit) = entered[i].take().expect("every manager was entered");
            exits[i] = Some(exit);
            resource
        });
        (
            resources,
            exits.map(|exit| exit.expect("every manager was entered")),
        )
    }

    fn pending(resources: Self::Resources, exits: Self::Exits) -> Self::Entered {
        let mut exits = exits.into_iter();
        resources.map(|resource| Some((resource, exits.next().expect("one exit per resource"))))
    }
}

/// A manager per element: see the [module docs](crate::group). The resource is the array
/// of resources; the error keeps one [`Fault`] per position.
impl<M, const N: usize> AsyncEnter for [M; N]
where
    M: AsyncEnter<Error: fmt::Debug + Sync + 'static>,
{
    type Resource = [M::Resource; N];
    type Error = GroupError<[Option<Fault<M::Error>>; N]>;
    type Exit = ArrayExit<Self>;
    type Enter = ArrayEnter<Self>;

    fn enter(self) -> Self::Enter {
        let mut managers = self.managers();
        ArrayEnter {
            entering: managers.next().map(AsyncEnter::enter),
            unwind: Unwind::new(<[M; N]>::none_entered(), 0, Outcome::Success),
            managers,
            finished: false,
        }
    }
}

/// The faults so far and the position of the newest: what the next member's exit is shown,
/// lent to it while it runs.
struct Newest<A: ArrayOf> {
    faults: A::Faults,
    newest: Option<usize>,
}

impl<A: ArrayOf> Shows for Newest<A> {
    #[inline]
    fn shows<'v>(&'v self, outer: Outcome<'v>) -> Outcome<'v> {
        let fault = self.newest.and_then(|i| self.faults.as_ref()[i].as_ref());
        newest(fault.map(Fault::inner), outer)
    }
}

impl<A: ArrayOf> Newest<A> {
    /// Records `fault` of the member at `index` as the newest failure.
    fn record(&mut self, index: usize, fault: Fault<Error<A>>) {
        self.faults.as_mut()[index] = Some(fault);
        self.newest = Some(index);
    }
}

pin_project! {
    /// The entered members of an array, exited right to left, each seeing the newest failure
    /// (or the outcome the array was given while none failed, `'x`): the part the enter future
    /// (after a failed enter) and the exit future share.
    struct Unwind<'x, A>
    where
        A: ArrayOf,
    {
        // The faults, lent to the running exit (its position is `count`), if any.
        #[pin]
        lend: Lend<Newest<A>, (), ExitFuture<'x, A>>,
        outer: Outcome<'x>,
        // Positions `0..count` hold the members still to exit.
        entered: A::Entered,
        count: usize,
    }
}

impl<'x, A: ArrayOf> Unwind<'x, A> {
    /// Members `0..count` of `entered` to exit, newest first, each seeing the newest failure
    /// or `outer`.
    fn new(entered: A::Entered, count: usize, outer: Outcome<'x>) -> Self {
        Unwind {
            lend: Lend::new(
                Newest {
                    faults: A::no_faults(),
                    newest: None,
                },
                (),
            ),
            outer,
            entered,
            count,
        }
    }

    /// Exits what is left, right to left; resolves to the faults if any member failed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<A::Faults>> {
        let this = self.project();
        let mut lend = this.lend;
        loop {
            if lend.is_running() {
                let exited = ready!(lend.as_mut().poll(cx));
                if let Err(error) = exited {
                    lend.as_mut()
                        .value_mut()
                        .record(*this.count, Fault::Exit(error));
                }
            }
            if *this.count == 0 {
                let seen = lend.as_mut().value_mut();
                let faults = mem::replace(&mut seen.faults, A::no_faults());
                return Poll::Ready(seen.newest.take().map(|_| faults));
            }
            *this.count -= 1;
            let (resource, exit) = this.entered.as_mut()[*this.count]
                .take()
                .expect("an entered member exits once");
            lend.as_mut().start_exit(exit, resource, *this.outer);
        }
    }

    /// Cancellation: drops the running exit future, then cancels the members left, right to
    /// left; drops the faults.
    fn cancel(self: Pin<&mut Self>) {
        let this = self.project();
        drop(this.lend.take());
        cancel_each::<A>(&mut this.entered.as_mut()[..*this.count]);
        *this.count = 0;
    }
}

/// Cancels every member still in `slots`, right to left.
fn cancel_each<A: ArrayOf>(slots: &mut [Option<Entered<A>>]) {
    for slot in slots.iter_mut().rev() {
        if let Some((resource, exit)) = slot.take() {
            exit.cancel(resource);
        }
    }
}

/// Cancels every member still in `entered`, right to left.
fn cancel_all<A: ArrayOf>(mut entered: A::Entered) {
    cancel_each::<A>(entered.as_mut());
}

pin_project! {
    /// Enter future of an array of managers: enters them left to right; if one fails, exits
    /// those already entered, right to left, each seeing the newest failure.
    ///
    /// Dropped mid-way, it drops the running enter or exit future, then cancels every
    /// manager entered and not exited, right to left.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ArrayEnter<A>
    where
        A: ArrayOf,
    {
        #[pin]
        entering: Option<<A::Manager as AsyncEnter>::Enter>,
        // The members entered so far (`count` of them), and the unwinding after a failure.
        // No outer outcome is ever shown: unwinding starts after a failed enter.
        #[pin]
        unwind: Unwind<'static, A>,
        managers: A::Managers,
        finished: bool,
    }

    impl<A> PinnedDrop for ArrayEnter<A>
    where
        A: ArrayOf,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.entering.set(None);
            this.unwind.cancel();
        }
    }
}

impl<A: ArrayOf> Future for ArrayEnter<A> {
    type Output = Result<(A::Resources, ArrayExit<A>), GroupError<A::Faults>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        assert!(!*this.finished, "`ArrayEnter` polled after completion");
        while let Some(future) = this.entering.as_mut().as_pin_mut() {
            let entered = ready!(future.poll(cx));
            this.entering.set(None);
            let unwind = this.unwind.as_mut().project();
            let index = *unwind.count;
            match entered {
                Ok(pair) => {
                    unwind.entered.as_mut()[index] = Some(pair);
                    *unwind.count += 1;
                    if let Some(manager) = this.managers.next() {
                        this.entering.set(Some(manager.enter()));
                    }
                }
                Err(error) => {
                    unwind.lend.value_mut().record(index, Fault::Enter(error));
                }
            }
        }
        let mut unwind = this.unwind.as_mut().project();
        // While a member's exit runs, the faults are lent to it: unwinding is under way.
        if !unwind.lend.is_running() && unwind.lend.as_mut().value_mut().newest.is_none() {
            // Every manager entered (or there are none).
            *this.finished = true;
            let (resources, exits) = A::all_entered(unwind.entered);
            *unwind.count = 0;
            return Poll::Ready(Ok((resources, ArrayExit { exits })));
        }
        // A manager failed to enter: a failure is the newest, so `Success` is never shown.
        let faults = ready!(this.unwind.poll(cx));
        *this.finished = true;
        Poll::Ready(Err(GroupError::new(faults.expect("an enter failed"))))
    }
}

impl<A: ArrayOf> fmt::Debug for ArrayEnter<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayEnter")
            .field("entered", &self.unwind.count)
            .finish_non_exhaustive()
    }
}

/// Exit handle of an array of managers: exits them right to left.
pub struct ArrayExit<A: ArrayOf> {
    exits: A::Exits,
}

impl<A: ArrayOf> fmt::Debug for ArrayExit<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayExit").finish_non_exhaustive()
    }
}

impl<A: ArrayOf> AsyncExit<A::Resources> for ArrayExit<A> {
    type Error = GroupError<A::Faults>;
    type Future<'o> = ArrayExitFuture<'o, A>;

    fn exit<'o>(self, resources: A::Resources, outcome: Outcome<'o>) -> Self::Future<'o> {
        let entered = A::pending(resources, self.exits);
        let count = entered_len::<A>(&entered);
        // Each member's exit is created when the one to its right has finished, on a poll
        // (the rightmost on the first): until then, dropping the future cancels them all.
        ArrayExitFuture {
            unwind: Unwind::new(entered, count, outcome),
            finished: false,
        }
    }

    fn cancel(self, resources: A::Resources) {
        cancel_all::<A>(A::pending(resources, self.exits));
    }
}

/// The number of members in `entered`: `N`.
fn entered_len<A: ArrayOf>(entered: &A::Entered) -> usize {
    entered.as_ref().len()
}

pin_project! {
    /// Exit future of an array of managers: exits them right to left, each seeing the newest
    /// failure (lent for its whole exit), or the outcome the array was given (`'o`) if none
    /// failed.
    ///
    /// Dropped mid-way, it drops the running exit future, then cancels the managers to its
    /// left, right to left.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ArrayExitFuture<'o, A>
    where
        A: ArrayOf,
    {
        #[pin]
        unwind: Unwind<'o, A>,
        finished: bool,
    }

    impl<'o, A> PinnedDrop for ArrayExitFuture<'o, A>
    where
        A: ArrayOf,
    {
        fn drop(this: Pin<&mut Self>) {
            this.project().unwind.cancel();
        }
    }
}

impl<A: ArrayOf> Future for ArrayExitFuture<'_, A> {
    type Output = Result<(), GroupError<A::Faults>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        assert!(!*this.finished, "`ArrayExitFuture` polled after completion");
        let faults = ready!(this.unwind.poll(cx));
        *this.finished = true;
        Poll::Ready(match faults {
            None => Ok(()),
            Some(faults) => Err(GroupError::new(faults)),
        })
    }
}

impl<A: ArrayOf> fmt::Debug for ArrayExitFuture<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayExitFuture")
            .field("left_to_exit", &self.unwind.count)
            .finish_non_exhaustive()
    }
}
