//! With `alloc`, a [`Scoped`] is a manager: `with(scoped(..), body)`, a member of a tuple or an
//! array, an entry of an [`ExitStack`](crate::ExitStack). Its closure's future lives in a cell
//! on the heap (one allocation per use), owned by whichever piece runs it.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::manager::{ScopeEnter, ScopeExit, ScopeFuture};
use super::{ScopeFn, Scoped};
use crate::lend::{BoxedCell, Teardown};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

type Cell<R, C> = BoxedCell<R, ScopeFuture<R, C>>;

impl<R, C, X> AsyncEnter for Scoped<R, C>
where
    C: for<'s> ScopeFn<'s, R, Error = X>,
{
    type Resource = R;
    type Error = X;
    type Exit = ScopedExit<R, C>;
    type Enter = ScopedEnter<R, C>;

    /// Allocates the cell the closure's future will live in, until teardown ends.
    fn enter(self) -> ScopedEnter<R, C> {
        let owner = BoxedCell::new();
        ScopedEnter(ScopeEnter::new(owner.pointer(), self.closure, owner))
    }
}

/// The enter future of a [`Scoped`] used as a manager (feature `alloc`): runs the closure up to
/// its lend.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ScopedEnter<R, C: ScopeFn<'static, R>>(ScopeEnter<R, C, Cell<R, C>>);

impl<R, C: ScopeFn<'static, R>> Future for ScopedEnter<R, C> {
    type Output = Result<(R, ScopedExit<R, C>), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0)
            .poll(cx)
            .map(|entered| entered.map(|(resource, exit)| (resource, ScopedExit(exit))))
    }
}

impl<R, C: ScopeFn<'static, R>> fmt::Debug for ScopedEnter<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedEnter").finish_non_exhaustive()
    }
}

/// The exit handle of a [`Scoped`] used as a manager (feature `alloc`): gives the resource and
/// the outcome back to the closure. Its [`cancel`](AsyncExit::cancel) drops the resource, then
/// the closure's future.
pub struct ScopedExit<R, C: ScopeFn<'static, R>>(ScopeExit<R, ScopeFuture<R, C>, Cell<R, C>>);

impl<R, C: ScopeFn<'static, R>> AsyncExit<R> for ScopedExit<R, C> {
    type Error = C::Error;
    type Future<'o> = ScopedTeardown<'o, R, C>;

    fn exit<'o>(self, resource: R, outcome: Outcome<'o>) -> ScopedTeardown<'o, R, C> {
        ScopedTeardown(self.0.exit(resource, outcome))
    }

    fn cancel(self, resource: R) {
        self.0.cancel(resource);
    }
}

impl<R, C: ScopeFn<'static, R>> fmt::Debug for ScopedExit<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedExit").finish_non_exhaustive()
    }
}

/// The exit future of a [`Scoped`] used as a manager (feature `alloc`): runs the closure's
/// teardown. Dropped before it finishes, it drops the closure's future, then frees its cell.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ScopedTeardown<'o, R, C: ScopeFn<'static, R>>(
    Teardown<'o, R, ScopeFuture<R, C>, Cell<R, C>>,
);

impl<R, C: ScopeFn<'static, R>> Future for ScopedTeardown<'_, R, C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl<R, C: ScopeFn<'static, R>> fmt::Debug for ScopedTeardown<'_, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedTeardown").finish_non_exhaustive()
    }
}
