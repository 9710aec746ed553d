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
use super::{newest, outcome_of};
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
    type Exits: IntoIterator<Item = ExitOf<Self>>;
    /// The resources with their exit handles, to be exited.
    type Pending: DoubleEndedIterator<Item = Entered<Self>> + ExactSizeIterator;

    /// The managers, to enter one by one.
    fn managers(self) -> Self::Managers;
    /// An empty list of entered managers.
    fn none_entered() -> Self::Entered;
    /// No faults yet.
    fn no_faults() -> Self::Faults;
    /// All N managers entered: their resources and exit handles.
    fn all_entered(entered: &mut Self::Entered) -> (Self::Resources, Self::Exits);
    /// Resources and exit handles side by side, to exit from the right.
    fn pending(resources: Self::Resources, exits: Self::Exits) -> Self::Pending;
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
    type Pending = array::IntoIter<(M::Resource, M::Exit), N>;

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

    fn pending(resources: Self::Resources, exits: Self::Exits) -> Self::Pending {
        let mut exits = exits.into_iter();
        resources
            .map(|resource| (resource, exits.next().expect("one exit per resource")))
            .into_iter()
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
            unwinding: None,
            managers,
            entered: <[M; N]>::none_entered(),
            count: 0,
            faults: <[M; N]>::no_faults(),
            newest: None,
            finished: false,
        }
    }
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
        #[pin]
        unwinding: Option<ExitFuture<A>>,
        managers: A::Managers,
        entered: A::Entered,
        count: usize,
        faults: A::Faults,
        newest: Option<usize>,
        finished: bool,
    }

    impl<A> PinnedDrop for ArrayEnter<A>
    where
        A: ArrayOf,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.entering.set(None);
            this.unwinding.set(None);
            let entered = this.entered.as_mut();
            for slot in entered[..*this.count].iter_mut().rev() {
                if let Some((resource, exit)) = slot.take() {
                    exit.cancel(resource);
                }
            }
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
            match entered {
                Ok(pair) => {
                    this.entered.as_mut()[*this.count] = Some(pair);
                    *this.count += 1;
                    if let Some(manager) = this.managers.next() {
                        this.entering.set(Some(manager.enter()));
                    }
                }
                Err(error) => {
                    this.faults.as_mut()[*this.count] = Some(Fault::Enter(error));
                    *this.newest = Some(*this.count);
                }
            }
        }
        if this.newest.is_none() {
            // Every manager entered (or there are none).
            *this.finished = true;
            let (resources, exits) = A::all_entered(this.entered);
            *this.count = 0;
            return Poll::Ready(Ok((resources, ArrayExit { exits })));
        }
        loop {
            if let Some(future) = this.unwinding.as_mut().as_pin_mut() {
                let fault = this.newest.map(|i| this.faults.as_mut()[i].as_ref());
                let fault = fault.flatten().map(Fault::inner);
                let outcome = newest(fault, Outcome::Success);
                let exited = ready!(ExitOf::<A>::poll_exit(future, cx, outcome));
                this.unwinding.set(None);
                if let Err(error) = exited {
                    this.faults.as_mut()[*this.count] = Some(Fault::Exit(error));
                    *this.newest = Some(*this.count);
                }
            }
            if *this.count == 0 {
                *this.finished = true;
                let faults = mem::replace(this.faults, A::no_faults());
                return Poll::Ready(Err(GroupError { faults }));
            }
            *this.count -= 1;
            let (resource, exit) = this.entered.as_mut()[*this.count]
                .take()
                .expect("an entered manager exits once");
            let faults = this.faults.as_mut();
            let fault = this.newest.and_then(|i| faults[i].as_ref());
            let future = exit.exit(resource, newest(fault.map(Fault::inner), Outcome::Success));
            this.unwinding.set(Some(future));
        }
    }
}

impl<A: ArrayOf> fmt::Debug for ArrayEnter<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayEnter")
            .field("entered", &self.count)
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
        let mut pending = A::pending(resources, self.exits);
        let current = pending
            .next_back()
            .map(|(resource, exit)| exit.exit(resource, outcome));
        ArrayExitFuture {
            status: outcome.status(),
            current,
            pending,
            faults: A::no_faults(),
            newest: None,
            finished: false,
        }
    }

    fn cancel(self, resources: A::Resources) {
        let mut pending = A::pending(resources, self.exits);
        while let Some((resource, exit)) = pending.next_back() {
            exit.cancel(resource);
        }
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
        // The running exit; its position is `pending.len()`.
        #[pin]
        current: Option<ExitFuture<A>>,
        pending: A::Pending,
        faults: A::Faults,
        newest: Option<usize>,
        finished: bool,
    }

    impl<A> PinnedDrop for ArrayExitFuture<A>
    where
        A: ArrayOf,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.current.set(None);
            while let Some((resource, exit)) = this.pending.next_back() {
                exit.cancel(resource);
            }
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
        let mut this = self.project();
        assert!(!*this.finished, "`ArrayExitFuture` polled after completion");
        loop {
            if let Some(future) = this.current.as_mut().as_pin_mut() {
                let faults = this.faults.as_mut();
                let fault = this.newest.and_then(|i| faults[i].as_ref());
                let seen = newest(fault.map(Fault::inner), outcome);
                let exited = ready!(ExitOf::<A>::poll_exit(future, cx, seen));
                this.current.set(None);
                if let Err(error) = exited {
                    let index = this.pending.len();
                    this.faults.as_mut()[index] = Some(Fault::Exit(error));
                    *this.newest = Some(index);
                }
            }
            let Some((resource, exit)) = this.pending.next_back() else {
                *this.finished = true;
                let faults = mem::replace(this.faults, A::no_faults());
                return Poll::Ready(match this.newest.take() {
                    None => Ok(()),
                    Some(_) => Err(GroupError { faults }),
                });
            };
            let faults = this.faults.as_mut();
            let fault = this.newest.and_then(|i| faults[i].as_ref());
            let future = exit.exit(resource, newest(fault.map(Fault::inner), outcome));
            this.current.set(Some(future));
        }
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
            .field("left_to_exit", &self.pending.len())
            .finish_non_exhaustive()
    }
}
