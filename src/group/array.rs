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
use super::outcome_of;
use crate::guard::OnUnwind;
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::{Outcome, Status};

mod sealed {
    pub trait Sealed {}
}

/// An array of managers `[M; N]`, with the array types its futures keep. Sealed; it exists
/// because the futures are written with `pin-project-lite`, which takes no const generics.
pub trait ArrayOf: sealed::Sealed {
    /// The manager type.
    type Manager: AsyncEnter<Error = Self::Error>;
    /// The manager's error.
    type Error: fmt::Debug + 'static;
    /// `[M::Resource; N]`.
    type Resources;
    /// `[Option<Fault<M::Error>>; N]`.
    type Faults: AsMut<[Option<Fault<Error<Self>>>]>;
    /// The managers not entered yet.
    type Managers: Iterator<Item = Self::Manager>;
    /// The managers entered so far, with their exit handles.
    type Entered: AsMut<[Option<Entered<Self>>]>;
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
type ExitFuture<A> = <ExitOf<A> as AsyncExit<Resource<A>>>::Future;
type Entered<A> = (Resource<A>, ExitOf<A>);

impl<M, const N: usize> sealed::Sealed for [M; N] where M: AsyncEnter<Error: fmt::Debug + 'static> {}

impl<M, const N: usize> ArrayOf for [M; N]
where
    M: AsyncEnter<Error: fmt::Debug + 'static>,
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
    M: AsyncEnter<Error: fmt::Debug + 'static>,
{
    type Resource = [M::Resource; N];
    type Error = GroupError<[Option<Fault<M::Error>>; N]>;
    type Exit = ArrayExit<Self>;
    type Enter = ArrayEnter<Self>;

    fn enter(self) -> Self::Enter {
        let mut managers = self.managers();
        ArrayEnter {
            entering: managers.next().map(AsyncEnter::enter),
            unwind: Unwind::new(<[M; N]>::none_entered(), 0, None),
            managers,
            finished: false,
        }
    }
}

pin_project! {
    /// The entered members of an array, exited right to left, each seeing the newest failure
    /// (or the given outcome while none failed): the part the enter future (after a failed
    /// enter) and the exit future share.
    struct Unwind<A>
    where
        A: ArrayOf,
    {
        // The running exit; its position is `count`.
        #[pin]
        current: Option<ExitFuture<A>>,
        // Positions `0..count` hold the members still to exit.
        entered: A::Entered,
        count: usize,
        faults: A::Faults,
        // The position of the newest fault.
        newest: Option<usize>,
    }
}

impl<A: ArrayOf> Unwind<A> {
    /// Members `0..count` of `entered` to exit, `current` (at position `count`) under way.
    fn new(entered: A::Entered, count: usize, current: Option<ExitFuture<A>>) -> Self {
        Unwind {
            current,
            entered,
            count,
            faults: A::no_faults(),
            newest: None,
        }
    }

    /// Exits what is left, right to left; resolves to the faults if any member failed.
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        outcome: Outcome<'_>,
    ) -> Poll<Option<A::Faults>> {
        let mut this = self.project();
        loop {
            if let Some(future) = this.current.as_mut().as_pin_mut() {
                let seen = seen::<A>(this.faults, *this.newest, outcome);
                let exited = ready!(ExitOf::<A>::poll_exit(future, cx, seen));
                this.current.set(None);
                if let Err(error) = exited {
                    record::<A>(this.faults, this.newest, *this.count, Fault::Exit(error));
                }
            }
            if *this.count == 0 {
                let faults = mem::replace(this.faults, A::no_faults());
                return Poll::Ready(this.newest.take().map(|_| faults));
            }
            *this.count -= 1;
            let (resource, exit) = this.entered.as_mut()[*this.count]
                .take()
                .expect("an entered member exits once");
            let seen = seen::<A>(this.faults, *this.newest, outcome);
            this.current.set(Some(exit.exit(resource, seen)));
        }
    }

    /// Cancellation: drops the running exit future, then cancels the members left, right to
    /// left.
    fn cancel(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.current.set(None);
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

/// Records `fault` of the member at `index` as the newest failure.
fn record<A: ArrayOf>(
    faults: &mut A::Faults,
    newest: &mut Option<usize>,
    index: usize,
    fault: Fault<Error<A>>,
) {
    faults.as_mut()[index] = Some(fault);
    *newest = Some(index);
}

/// What the next member sees: the newest fault's error, or `outcome` while none failed.
fn seen<'f, A: ArrayOf>(
    faults: &'f mut A::Faults,
    newest: Option<usize>,
    outcome: Outcome<'f>,
) -> Outcome<'f> {
    let faults: &'f [Option<Fault<Error<A>>>] = faults.as_mut();
    let fault = newest.and_then(|i| faults[i].as_ref());
    crate::outcome::newest(fault.map(Fault::inner), outcome)
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
        #[pin]
        unwind: Unwind<A>,
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
                    record::<A>(unwind.faults, unwind.newest, index, Fault::Enter(error));
                }
            }
        }
        let unwind = this.unwind.as_mut().project();
        if unwind.newest.is_none() {
            // Every manager entered (or there are none).
            *this.finished = true;
            let (resources, exits) = A::all_entered(unwind.entered);
            *unwind.count = 0;
            return Poll::Ready(Ok((resources, ArrayExit { exits })));
        }
        // A manager failed to enter: a failure is the newest, so `Success` is never shown.
        let faults = ready!(this.unwind.poll(cx, Outcome::Success));
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
    type Future = ArrayExitFuture<A>;

    fn exit(self, resources: A::Resources, outcome: Outcome<'_>) -> Self::Future {
        // The members to its left have not exited: should the rightmost member's `exit()`
        // panic, they get `cancel`.
        let mut entered = OnUnwind::new(A::pending(resources, self.exits), cancel_all::<A>);
        let slots = entered.get().as_mut();
        let count = slots.len().saturating_sub(1);
        // The rightmost member's exit is created now, with the body's error itself.
        let current = slots
            .last_mut()
            .and_then(Option::take)
            .map(|(resource, exit)| exit.exit(resource, outcome));
        let entered = entered.defuse();
        ArrayExitFuture {
            status: outcome.status(),
            unwind: Unwind::new(entered, count, current),
            finished: false,
        }
    }

    fn cancel(self, resources: A::Resources) {
        cancel_all::<A>(A::pending(resources, self.exits));
    }

    fn poll_exit(
        future: Pin<&mut Self::Future>,
        cx: &mut Context<'_>,
        outcome: Outcome<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        future.poll_with(cx, outcome)
    }
}

pin_project! {
    /// Exit future of an array of managers: exits them right to left, each seeing the newest
    /// failure, or the body's outcome if none failed.
    ///
    /// Dropped mid-way, it drops the running exit future, then cancels the managers to its
    /// left, right to left.
    ///
    /// Polled as a plain `Future` rather than through [`AsyncExit::poll_exit`], the managers
    /// after the first see a stand-in for the body's error, with the same [`Status`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ArrayExitFuture<A>
    where
        A: ArrayOf,
    {
        status: Status,
        #[pin]
        unwind: Unwind<A>,
        finished: bool,
    }

    impl<A> PinnedDrop for ArrayExitFuture<A>
    where
        A: ArrayOf,
    {
        fn drop(this: Pin<&mut Self>) {
            this.project().unwind.cancel();
        }
    }
}

impl<A: ArrayOf> ArrayExitFuture<A> {
    #[inline]
    fn poll_with(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        outcome: Outcome<'_>,
    ) -> Poll<Result<(), GroupError<A::Faults>>> {
        let this = self.project();
        assert!(!*this.finished, "`ArrayExitFuture` polled after completion");
        let faults = ready!(this.unwind.poll(cx, outcome));
        *this.finished = true;
        Poll::Ready(match faults {
            None => Ok(()),
            Some(faults) => Err(GroupError::new(faults)),
        })
    }
}

impl<A: ArrayOf> Future for ArrayExitFuture<A> {
    type Output = Result<(), GroupError<A::Faults>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = outcome_of(self.status);
        self.poll_with(cx, outcome)
    }
}

impl<A: ArrayOf> fmt::Debug for ArrayExitFuture<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayExitFuture")
            .field("left_to_exit", &self.unwind.count)
            .finish_non_exhaustive()
    }
}
