//! The self-borrow: a value and the future that borrows it, stored side by side.
//!
//! This module and `stack/arena.rs` (the exit stack) hold the crate's only `unsafe` code; the
//! crate root denies `unsafe_code` and each of the two allows it for itself. A [`Lend`] owns a
//! value and, while a future runs, that future, which borrows the value. Two kinds of future
//! borrow it: a **body** future holding `&mut` to the resource ([`Lend::start`], used by
//! [`crate::WithFuture`]), and an **exit** future holding an [`Outcome`] that lends an error
//! kept in the value ([`Lend::start_exit`]: the body's error inside `WithFuture`, the newest
//! failure inside a group). Its invariants:
//!
//! 1. The value lives in an `UnsafeCell` inside a `!Unpin` type, and a `Lend` is only used
//!    through `Pin<&mut Lend>`, so the value does not move while a future exists.
//!    (`&mut` to a `!Unpin` type does not claim uniqueness under Stacked or Tree Borrows; that
//!    is what lets the pin projections above this module coexist with the future's borrow. It
//!    is the same exception the compiler's own async blocks rely on; `core::pin::UnsafePinned`
//!    will state it explicitly once it is stable.)
//! 2. While a future exists, no reference to the value is created here, except the shared one
//!    an exit's outcome is built from: a body future's `&mut` is the only way to the value,
//!    and an exit future's outcome only shares it (reads it, or writes through interior
//!    mutability the value's own type has, which the `UnsafeCell` around it allows).
//! 3. The future is always dropped before the value leaves the slot ([`Lend::take`]), so the
//!    borrow it holds never dangles. A `Lend` has no `Drop` of its own: dropping one drops the
//!    future (an ordinary field) and never the value or the kept value. Its owner takes both out
//!    first, on every path — [`crate::WithFuture`] and the groups do, to hand them on or to
//!    `cancel`; should a future's destructor panic while its owner is dropped, the value stays
//!    in place (a body's resource is then cancelled by a guard compiled only where panics
//!    unwind; an exit's value leaks). (A `Drop` here cost 260 bytes of flash over the
//!    firmware's six `with`s, and kept nested `with`s from being inlined into each other.)
//! 4. The future's output cannot borrow the value, so nothing it returns outlives the borrow.
//!    For a body, [`Lend::start`] takes it as an [`Unborrowing`], which can only be made where
//!    the body is known, for every lifetime `'r`, to return the same `Ok` and `Err` types
//!    ([`Unborrowing::new`]'s bound): a type, not a promise of the caller. (Stating that
//!    higher-ranked bound on `start` itself makes the trait solver ambiguous between it and the
//!    bound at `'a`; `pin-project-lite` cannot carry it on the state types either.) For an
//!    exit it is the trait's signature: [`AsyncExit::exit`] is generic over every outcome
//!    lifetime `'o`, so neither the exit handle nor the code creating the future can keep the
//!    outcome beyond the future (it would have to outlive an arbitrary `'o`), and the output,
//!    `Result<(), H::Error>`, does not name `'o`.
//! 5. The lifetime `'a` the future is given (`Body<'a, ..>`, `AsyncExit::Future<'a>`) is chosen
//!    by the owner's type, not the real one: the real borrow lasts until the future is dropped,
//!    which invariant 3 guarantees happens first. For an exit, only the [`Outcome`] is given the
//!    longer lifetime — never `&'a V` — so `V` itself need not outlive `'a`; and the outer
//!    outcome it may show really lives for `'a`.

use core::cell::UnsafeCell;
use core::future::Future;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::body::Body;
use crate::manager::AsyncExit;
use crate::outcome::Outcome;

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

/// What an exit is shown, given the value a [`Lend`] keeps: the value's own failure, or the
/// outer outcome when the value holds none.
pub(crate) trait Shows {
    /// The outcome to show, borrowing `self`; `outer` is what the owner was shown itself.
    fn shows<'v>(&'v self, outer: Outcome<'v>) -> Outcome<'v>;
}

/// A value lent to the future `F` that borrows it, and a value `K` kept beside it and handed
/// out with it (for a body: the exit handle, which will release the resource).
pub(crate) struct Lend<V, K, F> {
    /// Whether the value is in place and whether a future borrows it.
    phase: Phase<F>,
    /// The value: initialized unless `phase` is [`Phase::Taken`].
    value: UnsafeCell<MaybeUninit<V>>,
    /// Initialized unless `phase` is [`Phase::Taken`]; never borrowed by the future.
    kept: MaybeUninit<K>,
    _pinned: PhantomPinned,
}

/// One tag for both the future and the value, so that finishing the future and taking the
/// value write the same byte (and the optimizer folds the checks between them).
enum Phase<F> {
    /// The value is in place; no future exists.
    Idle,
    /// The value is in place, and the future borrows it.
    Running(F),
    /// The value and the kept value have been moved out; no future exists.
    Taken,
}

impl<V, K, F: Future> Lend<V, K, F> {
    #[inline]
    pub(crate) fn new(value: V, kept: K) -> Self {
        Lend {
            phase: Phase::Idle,
            value: UnsafeCell::new(MaybeUninit::new(value)),
            kept: MaybeUninit::new(kept),
            _pinned: PhantomPinned,
        }
    }

    /// Calls `body` with `&'a mut` to the value (the resource) and keeps its future.
    ///
    /// `'a` is a lifetime chosen by the caller's type, not the real one (invariant 5). The body
    /// comes as an [`Unborrowing`]: its output cannot borrow the resource (invariant 4).
    #[inline]
    pub(crate) fn start<'a, B>(self: Pin<&mut Self>, body: Unborrowing<V, B>)
    where
        B: Body<'a, V, Future = F>,
        V: 'a,
    {
        // SAFETY: only `phase` is written, and only while it holds no future (checked below),
        // so no pinned value is moved; the value is reached through the cell, not moved.
        let this = unsafe { self.get_unchecked_mut() };
        if !matches!(this.phase, Phase::Idle) {
            unreachable_phase()
        }
        // The slot is pinned (invariant 1) and the future created here is dropped before the
        // value leaves it (invariant 3): `&'a mut V` stays valid while anything can use it.
        // SAFETY: the phase is `Idle`, so the value is initialized and no future, hence no
        // other reference to the slot, exists (invariant 2).
        let resource: &'a mut V = unsafe { (*this.value.get()).assume_init_mut() };
        this.phase = Phase::Running(body.body.call(resource));
    }

    /// Calls `exit` with `resource` and the outcome the value shows (see [`Shows`]), and keeps
    /// the exit future, which may borrow that outcome until it is dropped.
    ///
    /// `'a` is a lifetime chosen by the caller's type, and `outer` must really live that long;
    /// only the outcome built from the value is extended to it (invariant 5). Should `exit`
    /// panic, the phase stays `Idle`: the value is still in place, for [`Lend::take`].
    #[inline]
    pub(crate) fn start_exit<'a, R, H>(
        self: Pin<&mut Self>,
        exit: H,
        resource: R,
        outer: Outcome<'a>,
    ) where
        H: AsyncExit<R, Future<'a> = F>,
        V: Shows,
    {
        // SAFETY: only `phase` is written, and only while it holds no future (checked below),
        // so no pinned value is moved; the value is reached through the cell, not moved.
        let this = unsafe { self.get_unchecked_mut() };
        if !matches!(this.phase, Phase::Idle) {
            unreachable_phase()
        }
        // SAFETY: the phase is `Idle`, so the value is initialized and no future exists; the
        // reference is shared, and nothing writes the value while the future made below lives
        // (invariant 2).
        let value: &V = unsafe { (*this.value.get()).assume_init_ref() };
        let shown = value.shows(outer);
        // The outcome borrows the pinned value (invariant 1) or `outer` (which lives for `'a`);
        // the future it goes to is dropped before the value leaves the slot (invariant 3), and
        // cannot pass it on beyond its own life (invariant 4).
        // SAFETY: the two types differ only in the outcome's lifetime; the borrow it stands for
        // lasts as long as the future that receives it, by the invariants just named.
        let shown = unsafe { core::mem::transmute::<Outcome<'_>, Outcome<'a>>(shown) };
        this.phase = Phase::Running(exit.exit(resource, shown));
    }

    /// Whether a future exists (started and not yet finished).
    #[inline]
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    /// The value, while no future borrows it.
    ///
    /// # Panics
    ///
    /// If a future exists or the value was taken (an internal invariant).
    #[inline]
    pub(crate) fn value_mut(self: Pin<&mut Self>) -> &mut V {
        // SAFETY: nothing is moved out of `this`; the value is reached through the cell.
        let this = unsafe { self.get_unchecked_mut() };
        if !matches!(this.phase, Phase::Idle) {
            unreachable_phase()
        }
        // SAFETY: the phase is `Idle`: the value is initialized and no future borrows it; the
        // reference borrows `self`, so no future can be started while it lives.
        unsafe { (*this.value.get()).assume_init_mut() }
    }

    /// Polls the future; drops it as soon as it completes.
    ///
    /// # Panics
    ///
    /// If no future is running: polled again after a panic escaped an earlier poll.
    #[inline]
    pub(crate) fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
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

    /// Drops the future if there is one, then moves the value and the kept value out (`None`
    /// if they were taken before).
    #[inline]
    pub(crate) fn take(self: Pin<&mut Self>) -> Option<(V, K)> {
        // SAFETY: the future is dropped in place, never moved; the value was never pinned
        // (only the borrow of it needed a fixed address) and may be moved once no future
        // exists.
        let this = unsafe { self.get_unchecked_mut() };
        match this.phase {
            Phase::Taken => return None,
            Phase::Idle => {}
            // The borrower goes first (invariant 3). Should its destructor panic, the phase is
            // `Idle` and the value still in place, for a later `take`.
            Phase::Running(_) => this.phase = Phase::Idle,
        }
        // The phase says the slot is empty before the value leaves it: nothing reads it twice.
        this.phase = Phase::Taken;
        // SAFETY: the phase was `Idle` or `Running` (its future is dropped just above), so the
        // value and the kept value are initialized and no reference to either exists; `Taken`
        // now records that they are gone, so they are neither read nor dropped again.
        Some(unsafe {
            (
                this.value.get_mut().assume_init_read(),
                this.kept.assume_init_read(),
            )
        })
    }
}

/// The panic of a future polled in a phase it cannot go on from. The one way to get there is
/// to poll it again after a panic escaped its `poll` (a body closure, an `exit` method or a
/// future's destructor panicked, and nothing caught it); every other caller is an internal
/// invariant. One function and one message for all of them, out of line, so that the hot paths
/// carry no panic arguments and the firmware one message.
#[cold]
#[inline(never)]
pub(crate) fn unreachable_phase() -> ! {
    panic!("`WithFuture` polled again after a panic escaped an earlier `poll`")
}
