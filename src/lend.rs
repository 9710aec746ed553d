//! The self-borrow: a resource and the body future that borrows it, stored side by side.
//!
//! This is the crate's only `unsafe` code. [`Lend`] owns a resource and, while the body runs,
//! the body future holding `&mut` to that resource. Its invariants:
//!
//! 1. The resource lives in an `UnsafeCell` inside a `!Unpin` type, and a `Lend` is only used
//!    through `Pin<&mut Lend>`, so the resource does not move while a body future exists.
//!    (`&mut` to a `!Unpin` type does not claim uniqueness under Stacked or Tree Borrows; that
//!    is what lets the pin projections above this module coexist with the body's borrow. It is
//!    the same exception the compiler's own async blocks rely on; `core::pin::UnsafePinned`
//!    will state it explicitly once it is stable.)
//! 2. While a body future exists, no reference to the resource slot is created here: the
//!    body's `&mut` is the only way to the resource.
//! 3. The body future is always dropped before the resource leaves the slot or is dropped
//!    ([`Lend::take`] and `Drop`), so the borrow it holds never dangles.
//! 4. The body's output cannot borrow the resource. This one is kept by the only caller,
//!    not here: [`crate::with`], the only place a `Lend` is created, requires the body for
//!    every lifetime `'r` with `Ok` and `Err` the same for all of them. (Stating that bound on
//!    [`Lend::start`] as well makes the trait solver ambiguous between it and the bound at
//!    `'a`; `pin-project-lite` cannot carry a higher-ranked bound on the state types instead.)

use core::cell::UnsafeCell;
use core::future::Future;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::body::Body;

/// A resource lent to the future `F` that borrows it.
pub(crate) struct Lend<R, F> {
    /// The body future; `Some` from [`Lend::start`] until it completes or is dropped.
    future: Option<F>,
    /// The resource; `None` once taken.
    resource: UnsafeCell<Option<R>>,
    _pinned: PhantomPinned,
}

impl<R, F: Future> Lend<R, F> {
    #[inline]
    pub(crate) fn new(resource: R) -> Self {
        Lend {
            future: None,
            resource: UnsafeCell::new(Some(resource)),
            _pinned: PhantomPinned,
        }
    }

    /// Calls `body` with `&'a mut` to the resource and keeps its future.
    ///
    /// `'a` is a lifetime chosen by the caller's type, not the real one: the real borrow lasts
    /// until the future is dropped, which this type guarantees happens first (invariant 3).
    /// Only [`crate::with`]'s future calls it, under the higher-ranked bound (invariant 4).
    #[inline]
    pub(crate) fn start<'a, B>(self: Pin<&mut Self>, body: B)
    where
        B: Body<'a, R, Future = F>,
        R: 'a,
    {
        // SAFETY: only `future` is written, and only while it is `None` (checked below), so no
        // pinned value is moved; the resource is reached through the cell, not moved.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(this.future.is_none(), "a body was started twice");
        // The slot is pinned (invariant 1) and the future created here is dropped before the
        // resource leaves it (invariant 3): `&'a mut R` stays valid while anything can use it.
        // SAFETY: no body future exists yet, so no other reference to the slot is alive (2).
        let resource: &'a mut R = unsafe { &mut *this.resource.get() }
            .as_mut()
            .expect("a body was started after the resource was taken");
        this.future = Some(body.call(resource));
    }

    /// Polls the body future; drops it as soon as it completes.
    ///
    /// # Panics
    ///
    /// If no body is running.
    #[inline]
    pub(crate) fn poll_body(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: nothing is moved out of `this`; the future is re-pinned right away and only
        // ever dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        let future = this.future.as_mut().expect("no body is running");
        // SAFETY: `future` lives inside the pinned `Lend` and is never moved: it is only
        // dropped in place, by the assignment below, by `take` or by `Drop`.
        let output = core::task::ready!(unsafe { Pin::new_unchecked(future) }.poll(cx));
        this.future = None;
        Poll::Ready(output)
    }

    /// Drops the body future if there is one, then moves the resource out.
    #[inline]
    pub(crate) fn take(self: Pin<&mut Self>) -> Option<R> {
        // SAFETY: the future is dropped in place, never moved; the resource was never pinned
        // (only the borrow of it needed a fixed address) and may be moved once no body future
        // exists.
        let this = unsafe { self.get_unchecked_mut() };
        this.future = None;
        this.resource.get_mut().take()
    }
}

impl<R, F> Drop for Lend<R, F> {
    fn drop(&mut self) {
        // Invariant 3: the borrower goes first. Field order would do the same; this states it.
        self.future = None;
    }
}
