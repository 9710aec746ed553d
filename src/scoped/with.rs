//! [`ScopedWith`]: the future of [`Scoped::with`](crate::Scoped::with).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::FusedFuture;
use pin_project_lite::pin_project;

use super::ScopeFn;
use super::manager::{ScopeFuture, ScopeManager};
use crate::body::Body;
use crate::error::Error;
use crate::lend::ScopeCell;
use crate::with::{CancelOn, WithFuture};

pin_project! {
    /// The future of [`Scoped::with`](crate::Scoped::with): runs the closure up to its lend,
    /// the body with the lent resource, and the rest of the closure; resolves as a
    /// [`WithFuture`] does, to the body's value or an [`Error`] (the closure's error before the
    /// lend is [`Error::Enter`], after it [`Error::Exit`]).
    ///
    /// It holds the closure's future in place from setup to teardown, beside the state of a
    /// `with`; no allocation. Dropped mid-body, it drops the body's future, then the resource,
    /// then the closure's future (its locals' destructors run; the code after its lend does
    /// not); see [`scoped`](fn@crate::scoped#misuse-and-cancellation) for every case.
    /// `Send` when the closure's future, the body's and the resource are; `!Unpin`.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ScopedWith<'a, R, C, B>
    where
        C: ScopeFn<'static, R>,
        R: 'a,
        B: Body<'a, R>,
    {
        // Declared first, dropped first: it holds every pointer to the cell (`lend.rs`,
        // invariant 6).
        #[pin]
        inner: WithFuture<'a, ScopeManager<R, C>, B>,
        #[pin]
        cell: ScopeCell<R, ScopeFuture<R, C>>,
    }
}

impl<'a, R, C, B> ScopedWith<'a, R, C, B>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
{
    #[inline]
    pub(crate) fn new(inner: WithFuture<'a, ScopeManager<R, C>, B>) -> Self {
        ScopedWith {
            inner,
            cell: ScopeCell::new(),
        }
    }

    /// Stops the body when `signal` is ready; the closure's teardown still runs and is
    /// awaited, seeing [`Outcome::Cancelled`](crate::Outcome::Cancelled). The same rules as
    /// [`WithFuture::cancel_on`] (the crate docs' [Cancellation](crate#cancellation)): during
    /// setup the signal drops the closure's future (`Err(CancelError::Entering)`); after the
    /// lend has returned the closure is shielded from it.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{CancelError, Outcome, scoped};
    ///
    /// let mut log = Vec::new();
    /// let result = scoped(async |scope| {
    ///     let (_, outcome) = scope.lend(0u8).await;
    ///     log.push(outcome.is_cancelled());
    ///     Ok::<_, ()>(())
    /// })
    /// .with(async |_| core::future::pending::<()>().await)
    /// .cancel_on(async {})
    /// .await;
    /// assert_eq!(result, Err(CancelError::Body { exit: None }));
    /// assert_eq!(log, [true]);
    /// # });
    /// ```
    pub fn cancel_on<S: Future>(self, signal: S) -> super::ScopedCancelOn<'a, R, C, B, S> {
        super::ScopedCancelOn::new(self.inner.cancel_on(signal))
    }
}

impl<'a, R, C, B> Future for ScopedWith<'a, R, C, B>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
    B::Err: fmt::Debug + Sync + 'static,
{
    type Output = Result<B::Ok, Error<C::Error, B::Err>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(manager) = this.inner.as_mut().unstarted() {
            manager.cell = Some(this.cell.pointer());
        }
        this.inner.poll(cx)
    }
}

impl<'a, R, C, B> FusedFuture for ScopedWith<'a, R, C, B>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
    B::Err: fmt::Debug + Sync + 'static,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl<'a, R, C, B> fmt::Debug for ScopedWith<'a, R, C, B>
where
    C: ScopeFn<'static, R>,
    R: 'a,
    B: Body<'a, R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedWith")
            .field("with", &self.inner)
            .field("closure_running", &self.cell.is_running())
            .finish()
    }
}

/// Used by [`ScopedCancelOn`](super::ScopedCancelOn) the same way.
pub(crate) type ScopedCancelOnInner<'a, R, C, B, S, G> = CancelOn<'a, ScopeManager<R, C>, B, S, G>;
