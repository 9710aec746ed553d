//! [`ScopedCancelOn`]: a [`ScopedWith`](crate::ScopedWith) with a stop signal.

use core::fmt;
use core::future::{Future, Pending};
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::FusedFuture;
use pin_project_lite::pin_project;

use super::ScopeFn;
use super::manager::ScopeFuture;
use super::with::ScopedCancelOnInner;
use crate::body::Body;
use crate::lend::ScopeCell;
use crate::with::CancelError;

pin_project! {
    /// The future of [`ScopedWith::cancel_on`](crate::ScopedWith::cancel_on): a one-function
    /// manager's `with` that a signal can stop, the closure's teardown still awaited. It
    /// resolves as [`CancelOn`](crate::CancelOn) does.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ScopedCancelOn<'a, R, C, B, S, G = Pending<()>>
    where
        C: ScopeFn<'static, R>,
        R: 'a,
        B: Body<'a, R>,
    {
        // Declared first, dropped first (`lend.rs`, invariant 6).
        #[pin]
        inner: ScopedCancelOnInner<'a, R, C, B, S, G>,
        #[pin]
        cell: ScopeCell<R, ScopeFuture<R, C>>,
    }
}

impl<'a, R, C, B, S, G> ScopedCancelOn<'a, R, C, B, S, G>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
{
    #[inline]
    pub(crate) fn new(inner: ScopedCancelOnInner<'a, R, C, B, S, G>) -> Self {
        ScopedCancelOn {
            inner,
            cell: ScopeCell::new(),
        }
    }
}

impl<'a, R, C, B, S> ScopedCancelOn<'a, R, C, B, S>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
{
    /// Bounds the closure's teardown, as [`CancelOn::abandon_exit_on`](crate::CancelOn::abandon_exit_on)
    /// bounds exit: when `bound` is ready during teardown, the closure's future is dropped.
    pub fn abandon_exit_on<G: Future>(self, bound: G) -> ScopedCancelOn<'a, R, C, B, S, G> {
        ScopedCancelOn::new(self.inner.abandon_exit_on(bound))
    }
}

impl<'a, R, C, B, S, G> Future for ScopedCancelOn<'a, R, C, B, S, G>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
    B::Err: fmt::Debug + Sync + 'static,
    S: Future,
    G: Future,
{
    type Output = Result<B::Ok, CancelError<C::Error, B::Err>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(manager) = this.inner.as_mut().unstarted() {
            manager.cell = Some(this.cell.pointer());
        }
        this.inner.poll(cx)
    }
}

impl<'a, R, C, B, S, G> FusedFuture for ScopedCancelOn<'a, R, C, B, S, G>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
    B::Err: fmt::Debug + Sync + 'static,
    S: Future,
    G: Future,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl<'a, R, C, B, S, G> fmt::Debug for ScopedCancelOn<'a, R, C, B, S, G>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedCancelOn")
            .field("with", &self.inner)
            .field("closure_running", &self.cell.is_running())
            .finish()
    }
}
