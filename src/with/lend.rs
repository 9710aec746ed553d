//! The self-borrow: a resource and the body future that borrows it, stored side by side.
//!
//! This module and `stack/arena.rs` (the exit stack) hold the crate's only `unsafe` code; the
//! crate root denies `unsafe_code` and each of the two allows it for itself. [`Lend`] owns a
//! resource and, while the body runs, the body future holding `&mut` to that resource.
//! Its invariants:
//!
//! 1. The resource lives in an `UnsafeCell` inside a `!Unpin` type, and a `Lend` is only used
//!    through `Pin<&mut Lend>`, so the resource does not move while a body future exists.
//!    (`&mut` to a `!Unpin` type does not claim uniqueness under Stacked or Tree Borrows; that
//!    is what lets the pin projections above this module coexist with the body's borrow. It is
//!    the same exception the compiler's own async blocks rely on; `core::pin::UnsafePinned`
//!    will state it explicitly once it is stable.)
//! 2. While a body future exists, no reference to the resource slot is created here: the
//!    body's `&mut` is the only way to the resource.
//! 3. The body future is always dropped before the resource leaves the slot ([`Lend::take`]),
//!    so the borrow it holds never dangles. A `Lend` has no `Drop` of its own: dropping one
//!    drops the body future (an ordinary field) and never the resource or the kept value. Its
//!    owner takes both out first, on every path — [`crate::WithFuture`] does, to hand them to
//!    exit or to `cancel`; should the body future's destructor panic while the `WithFuture` is
//!    dropped, a guard (compiled only where panics unwind) takes them while unwinding. (A
//!    `Drop` here cost 260 bytes of flash over the firmware's six `with`s, and kept nested
//!    `with`s from being inlined into each other.)
//! 4. The body's output cannot borrow the resource, so nothing the body returns outlives the
//!    borrow. [`Lend::start`] takes the body as an [`Unborrowing`], which can only be made
//!    where the body is known, for every lifetime `'r`, to return the same `Ok` and `Err`
//!    types ([`Unborrowing::new`]'s bound): a type, not a promise of the caller. (Stating that
//!    higher-ranked bound on `start` itself makes the trait solver ambiguous between it and
//!    the bound at `'a`; `pin-project-lite` cannot carry it on the state types either.)

use core::cell::UnsafeCell;
use core::future::Future;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::body::Body;

/// A body `B` whose output cannot borrow a resource `R`: its `Ok` and `Err` types are the same
/// whatever the lifetime of the borrow (invariant 4). The only way to make one is
/// [`Unborrowing::new`], whose bound says so.
pub(crate) struct Unborrowing<R, B> {
    body: B,
    _resource: PhantomData<fn() -> R>,
}

impl<R, B> Unborrowing<R, B> {
    #[inline]
    pub(crate) fn new<T, E>(body: B) -> Self
    where
        B: for<'r> Body<'r, R, Ok = T, Err = E>,
    {
        Unborrowing {
            body,
            _resource: PhantomData,
        }
    }
}

/// A resource lent to the future `F` that borrows it, and a value `K` kept beside it and
/// handed out with it (the exit handle: what will release the resource).
pub(crate) struct Lend<R, K, F> {
    /// Whether the resource is in place and whether a body future borrows it.
    phase: Phase<F>,
    /// The resource: initialized unless `phase` is [`Phase::Taken`].
    resource: UnsafeCell<MaybeUninit<R>>,
    /// Initialized unless `phase` is [`Phase::Taken`]; never borrowed by the body.
    kept: MaybeUninit<K>,
    _pinned: PhantomPinned,
}

/// One tag for both the body future and the resource, so that finishing the body and taking
/// the resource write the same byte (and the optimizer folds the checks between them).
enum Phase<F> {
    /// The resource is in place; no body future exists.
    Idle,
    /// The resource is in place, and the body future borrows it.
    Running(F),
    /// The resource and the kept value have been moved out; no body future exists.
    Taken,
}

impl<R, K, F: Future> Lend<R, K, F> {
    #[inline]
    pub(crate) fn new(resource: R, kept: K) -> Self {
        Lend {
            phase: Phase::Idle,
            resource: UnsafeCell::new(MaybeUninit::new(resource)),
            kept: MaybeUninit::new(kept),
            _pinned: PhantomPinned,
        }
    }

    /// Calls `body` with `&'a mut` to the resource and keeps its future.
    ///
    /// `'a` is a lifetime chosen by the caller's type, not the real one: the real borrow lasts
    /// until the future is dropped, which this type guarantees happens first (invariant 3).
    /// The body comes as an [`Unborrowing`]: its output cannot borrow the resource
    /// (invariant 4).
    #[inline]
    pub(crate) fn start<'a, B>(self: Pin<&mut Self>, body: Unborrowing<R, B>)
    where
        B: Body<'a, R, Future = F>,
        R: 'a,
    {
        // SAFETY: only `phase` is written, and only while it holds no future (checked below),
        // so no pinned value is moved; the resource is reached through the cell, not moved.
        let this = unsafe { self.get_unchecked_mut() };
        if !matches!(this.phase, Phase::Idle) {
            unreachable_phase()
        }
        // The slot is pinned (invariant 1) and the future created here is dropped before the
        // resource leaves it (invariant 3): `&'a mut R` stays valid while anything can use it.
        // SAFETY: the phase is `Idle`, so the resource is initialized and no body future, hence
        // no other reference to the slot, exists (invariant 2).
        let resource: &'a mut R = unsafe { (*this.resource.get()).assume_init_mut() };
        this.phase = Phase::Running(body.body.call(resource));
    }

    /// Polls the body future; drops it as soon as it completes.
    ///
    /// # Panics
    ///
    /// If no body is running: polled again after a panic escaped an earlier poll.
    #[inline]
    pub(crate) fn poll_body(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: nothing is moved out of `this`; the future is re-pinned right away and only
        // ever dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        let Phase::Running(future) = &mut this.phase else {
            unreachable_phase()
        };
        // SAFETY: `future` lives inside the pinned `Lend` and is never moved: it is only
        // dropped in place: by the assignment below, by `take`, or as a field when the `Lend` is.
        let output = core::task::ready!(unsafe { Pin::new_unchecked(future) }.poll(cx));
        this.phase = Phase::Idle;
        Poll::Ready(output)
    }

    /// Drops the body future if there is one, then moves the resource and the kept value out
    /// (`None` if they were taken before).
    #[inline]
    pub(crate) fn take(self: Pin<&mut Self>) -> Option<(R, K)> {
        // SAFETY: the future is dropped in place, never moved; the resource was never pinned
        // (only the borrow of it needed a fixed address) and may be moved once no body future
        // exists.
        let this = unsafe { self.get_unchecked_mut() };
        match this.phase {
            Phase::Taken => return None,
            Phase::Idle => {}
            // The borrower goes first (invariant 3). Should its destructor panic, the phase is
            // `Idle` and the resource still in place, for a later `take`.
            Phase::Running(_) => this.phase = Phase::Idle,
        }
        // The phase says the slot is empty before the value leaves it: nothing reads it twice.
        this.phase = Phase::Taken;
        // SAFETY: the phase was `Idle` or `Running` (its future is dropped just above), so the
        // resource and the kept value are initialized and no reference to either exists;
        // `Taken` now records that they are gone, so they are neither read nor dropped again.
        Some(unsafe {
            (
                this.resource.get_mut().assume_init_read(),
                this.kept.assume_init_read(),
            )
        })
    }
}

/// The panic of a `WithFuture` polled in a phase it cannot go on from. The one way to get
/// there is to poll it again after a panic escaped its `poll` mid-body (the body closure or its
/// future's destructor panicked, and nothing caught it); every other caller is an internal
/// invariant. One function and one message for all of them, out of line, so that the hot
/// paths carry no panic arguments and the firmware one message.
#[cold]
#[inline(never)]
pub(crate) fn unreachable_phase() -> ! {
    panic!("`WithFuture` polled again after a panic escaped an earlier `poll`")
}
