//! [`Scope`], the handle a one-function manager lends its resource through, and [`Lending`],
//! the future of that lend.

use core::cell::Cell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::lend::SlotRef;
use crate::outcome::Outcome;

/// Invariant in `'s` (the closure's own lifetime); `Send` but not `Sync` (`Cell`).
type ScopeMarker<'s> = PhantomData<(fn(&'s ()) -> &'s (), Cell<()>)>;

/// The handle a [`scoped`](fn@crate::scoped) closure receives: it lends the resource to the body
/// once, with [`lend`](Scope::lend).
///
/// It is consumed by `lend`, so a closure cannot lend twice (the second call does not
/// compile). The lifetime `'s` is the closure's own: the closure is called for every `'s`,
/// so the handle, its lend future and the outcome the lend returns stay inside the closure's
/// future; it cannot store them anywhere that outlives it, or return them.
///
/// `Send` when the resource is, so the closure's future can be spawned; never `Sync`.
///
/// Lending twice does not compile (the first `lend` moved the scope):
///
/// ```compile_fail,E0382
/// # futures_executor::block_on(async {
/// let _ = async_with::scoped(async |scope| {
///     let _ = scope.lend(1u8).await;
///     let _ = scope.lend(2u8).await;
///     Ok::<_, ()>(())
/// })
/// .with(async |n| Ok::<_, ()>(*n))
/// .await;
/// # });
/// ```
///
/// Nor does keeping the scope beyond the closure's future, here in a local of the caller:
///
/// ```compile_fail
/// # futures_executor::block_on(async {
/// let mut kept = None;
/// let _ = async_with::scoped(async |scope| {
///     kept = Some(scope);
///     Ok::<_, ()>(())
/// })
/// .with(async |n: &mut u8| Ok::<_, ()>(*n))
/// .await;
/// # });
/// ```
pub struct Scope<'s, R> {
    slot: SlotRef<R>,
    _scope: ScopeMarker<'s>,
}

impl<'s, R> Scope<'s, R> {
    #[inline]
    pub(crate) fn new(slot: SlotRef<R>) -> Self {
        Scope {
            slot,
            _scope: PhantomData,
        }
    }

    /// Lends `resource` to the body; resolves, once the body has ended, to the resource and
    /// how the body ended.
    ///
    /// The body starts as soon as the closure's future is suspended with this future polled
    /// once (at this `.await`), and the closure is not polled again until the body has ended:
    /// whatever else it awaits beside the lend (a `join`) waits for the body. The outcome is the
    /// body's, lent: [`Outcome::Failure`] borrows the body's error for as long as the closure
    /// runs (across its awaits), [`Outcome::Cancelled`] says a stop signal ended the body
    /// ([`ScopedWith::cancel_on`](crate::ScopedWith::cancel_on)), [`Outcome::Panicked`] that it
    /// panicked (with `std`; the panic resumes after the closure returns).
    ///
    /// Dropped before it resolves (the closure raced it against something that won), it drops
    /// the resource it holds; if it had not lent it yet the body never runs, and if the body
    /// has ended the outcome is not seen. Leaked (`mem::forget` of a boxed, polled lend), the
    /// resource stays with the `with`, which drops it when the closure's future is gone.
    #[inline]
    pub fn lend(self, resource: R) -> Lending<'s, R> {
        Lending {
            slot: self.slot,
            resource: Some(resource),
            offered: false,
            _scope: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Scope<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

/// The future of [`Scope::lend`]: resolves to the resource and the body's [`Outcome`].
#[must_use = "the body runs only while the closure awaits the lend"]
pub struct Lending<'s, R> {
    slot: SlotRef<R>,
    /// The resource until the first poll moves it into the slot.
    resource: Option<R>,
    /// Whether the resource is in the slot (or with the body) and not yet back.
    offered: bool,
    _scope: ScopeMarker<'s>,
}

// Nothing in it is pinned: the resource is moved out on the first poll.
impl<R> Unpin for Lending<'_, R> {}

impl<'s, R> Future for Lending<'s, R> {
    type Output = (R, Outcome<'s>);

    #[inline]
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(resource) = this.resource.take() {
            // The `with` takes it as soon as the closure's future returns `Pending`, and polls
            // that future again when the body has ended: no waker is needed.
            if this.slot.offer(resource).is_err() {
                unreachable!("one scope lends once")
            }
            this.offered = true;
            return Poll::Pending;
        }
        if !this.offered {
            lending_polled_after_completion()
        }
        match this.slot.take_back() {
            Some((resource, outcome)) => {
                this.offered = false;
                Poll::Ready((resource, outcome))
            }
            None => Poll::Pending,
        }
    }
}

impl<R> Drop for Lending<'_, R> {
    fn drop(&mut self) {
        if self.offered {
            drop(self.slot.withdraw());
        }
    }
}

impl<R> fmt::Debug for Lending<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.resource, self.offered) {
            (Some(_), _) => "Unpolled",
            (None, true) => "Lent",
            (None, false) => "Done",
        };
        f.debug_struct("Lending").field("state", &state).finish()
    }
}

#[cold]
#[inline(never)]
fn lending_polled_after_completion() -> ! {
    panic!("`Lending` polled after completion")
}
