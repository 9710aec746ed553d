//! The private manager a [`ScopedWith`](crate::ScopedWith) drives its closure with: its enter
//! future runs the closure up to the lend, its exit handle gives the resource back, and its
//! exit future ([`Teardown`]) runs the closure to the end.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::ScopeFn;
use super::scope::Scope;
use crate::lend::{CellRef, Teardown, unreachable_phase};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// The closure's future, started with the `'static` scope the cell's type names (the closure
/// works for every `'s`, so it cannot tell).
pub(crate) type ScopeFuture<R, C> = <C as ScopeFn<'static, R>>::Future;

/// The manager: the closure, and where its future will live (set by `ScopedWith::poll` before
/// the first poll enters it).
pub(crate) struct ScopeManager<R, C: ScopeFn<'static, R>> {
    pub(crate) cell: Option<CellRef<R, ScopeFuture<R, C>>>,
    closure: C,
}

impl<R, C: ScopeFn<'static, R>, K> ScopeEnter<R, C, K> {
    /// An enter future for the cell behind `cell`, owned by `owner` (if not by a `ScopedWith`).
    #[inline]
    pub(crate) fn new(cell: CellRef<R, ScopeFuture<R, C>>, closure: C, owner: K) -> Self {
        ScopeEnter {
            cell: Some(cell),
            closure: Some(closure),
            owner: Some(owner),
        }
    }
}

impl<R, C: ScopeFn<'static, R>> ScopeManager<R, C> {
    #[inline]
    pub(crate) fn new(closure: C) -> Self {
        ScopeManager {
            cell: None,
            closure,
        }
    }
}

impl<R, C: ScopeFn<'static, R>> AsyncEnter for ScopeManager<R, C> {
    type Resource = R;
    type Error = C::Error;
    type Exit = ScopeExit<R, ScopeFuture<R, C>, ()>;
    type Enter = ScopeEnter<R, C, ()>;

    #[inline]
    fn enter(self) -> ScopeEnter<R, C, ()> {
        // `ScopedWith::poll` sets the pointer before the first poll enters.
        let Some(cell) = self.cell else {
            unreachable_phase()
        };
        ScopeEnter::new(cell, self.closure, ())
    }
}

/// Runs the closure until it lends the resource (or fails, or returns without lending).
///
/// `K` owns the cell (a [`BoxedCell`]) or is `()` when a `ScopedWith` holds it; it goes to the
/// exit handle with the pointer, and is dropped after the closure's future.
pub(crate) struct ScopeEnter<R, C: ScopeFn<'static, R>, K> {
    /// Handed to the exit handle once the resource is lent.
    cell: Option<CellRef<R, ScopeFuture<R, C>>>,
    /// Until the first poll calls it.
    closure: Option<C>,
    /// Moves to the exit handle with `cell`.
    owner: Option<K>,
}

// Nothing in it is pinned: the closure's future lives in the cell.
impl<R, C: ScopeFn<'static, R>, K> Unpin for ScopeEnter<R, C, K> {}

impl<R, C: ScopeFn<'static, R>, K> Future for ScopeEnter<R, C, K> {
    type Output = Result<(R, ScopeExit<R, ScopeFuture<R, C>, K>), C::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(cell) = &this.cell else {
            unreachable_phase()
        };
        if let Some(closure) = this.closure.take() {
            cell.start(|slot| closure.call(Scope::new(slot)));
        }
        match cell.poll(cx) {
            Poll::Ready(Err(error)) => {
                // The closure's future is gone; a resource it offered and leaked goes with the
                // cell.
                this.cell = None;
                Poll::Ready(Err(error))
            }
            Poll::Ready(Ok(())) => returned_without_lending(),
            Poll::Pending => match cell.take_offered() {
                Some(resource) => {
                    let cell = this.cell.take();
                    let owner = this.owner.take();
                    Poll::Ready(Ok((resource, ScopeExit { cell, owner })))
                }
                None => Poll::Pending,
            },
        }
    }
}

impl<R, C: ScopeFn<'static, R>, K> Drop for ScopeEnter<R, C, K> {
    fn drop(&mut self) {
        // Dropped mid-setup: the closure's future goes now, with its locals.
        if let Some(cell) = &self.cell {
            cell.drop_future();
        }
    }
}

/// Gives the resource back to the closure, with the outcome, for teardown.
pub(crate) struct ScopeExit<R, F, K> {
    cell: Option<CellRef<R, F>>,
    /// Moves to the exit future with `cell`.
    owner: Option<K>,
}

impl<R, F, X, K> AsyncExit<R> for ScopeExit<R, F, K>
where
    F: Future<Output = Result<(), X>>,
{
    type Error = X;
    type Future<'o> = Teardown<'o, R, F, K>;

    #[inline]
    fn exit<'o>(mut self, resource: R, outcome: Outcome<'o>) -> Teardown<'o, R, F, K> {
        let Some(cell) = self.cell.take() else {
            unreachable_phase()
        };
        Teardown::new(cell, resource, outcome, self.owner.take())
    }

    fn cancel(mut self, resource: R) {
        // The resource first, then the closure's future with its locals: the order in which
        // the closure's own future would drop them, suspended at the lend.
        drop(resource);
        if let Some(cell) = self.cell.take() {
            cell.drop_future();
        }
    }
}

impl<R, F, K> Drop for ScopeExit<R, F, K> {
    fn drop(&mut self) {
        // Only reached if neither `exit` nor `cancel` ran (a panic on the way): the closure's
        // future goes all the same.
        if let Some(cell) = self.cell.take() {
            cell.drop_future();
        }
    }
}

/// The panic of a closure that finished without lending.
#[cold]
#[inline(never)]
fn returned_without_lending() -> ! {
    panic!(
        "the closure of `scoped` returned `Ok` without lending a resource \
         (`scope.lend(resource).await`)"
    )
}
