//! The self-borrow: a value and the future that borrows it, stored side by side.
//!
//! This module and `stack/arena.rs` (the exit stack) hold the crate's only `unsafe` code; the
//! crate root denies `unsafe_code` and each of the two allows it for itself. A [`Lend`] owns a
//! value and, while a future runs, that future, which borrows the value. Two kinds of future
//! borrow it: a **body** future holding `&mut` to the resource ([`Lend::start`], used by
//! [`crate::WithFuture`]), and an **exit** future holding an [`Outcome`] that lends an error
//! kept in the value ([`Lend::start_exit`]: the body's error inside `WithFuture`, the newest
//! failure inside a group). The second half of the module holds the self-borrow of one-function
//! managers (a closure's future and the slot it lends its resource through; invariants 6–8).
//! The invariants of [`Lend`]:
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
//! 3. The future is always dropped before the value leaves the slot ([`Lend::take`],
//!    [`Lend::poll_take`]), so the borrow it holds never dangles. A `Lend` has no `Drop` of its
//!    own: dropping one drops the future (an ordinary field) and never the value or the kept
//!    value. Its owner takes both out first, on every path — [`crate::WithFuture`] and the
//!    groups do, to hand them on, to `cancel` or to drop them ([`Lend::drop_all`], which takes
//!    nothing when neither needs dropping: there is nothing to leak then); should a future's
//!    destructor panic while its owner is dropped, the value stays in place (a body's resource
//!    is then cancelled by a guard compiled only where panics unwind; an exit's value leaks).
//!    (A `Drop` here cost 260 bytes of flash over the firmware's six `with`s, and kept nested
//!    `with`s from being inlined into each other.) The phase is written without dropping
//!    what it held only where it held no future (`Phase::replace_empty`, checked by
//!    `debug_assert!`): nothing is skipped that needed dropping.
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
use core::ptr::NonNull;
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

impl<F> Phase<F> {
    /// Writes `next` over a phase with no future: there is nothing to drop, so this runs no
    /// drop glue (which the optimizer does not always see is empty: an out-of-line call at
    /// `opt-level = "z"`).
    #[inline]
    fn replace_empty(&mut self, next: Self) {
        debug_assert!(!matches!(self, Phase::Running(_)));
        core::mem::forget(core::mem::replace(self, next));
    }
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
        this.phase
            .replace_empty(Phase::Running(body.body.call(resource)));
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
        this.phase
            .replace_empty(Phase::Running(exit.exit(resource, shown)));
    }

    /// Whether a future exists (started and not yet finished).
    #[inline]
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    /// Whether the value and the kept value are gone ([`Lend::take`], [`Lend::poll_take`]).
    #[inline]
    pub(crate) fn is_taken(&self) -> bool {
        matches!(self.phase, Phase::Taken)
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

    /// Polls the future; once it completes, drops it and moves the value and the kept value
    /// out with its output ([`Lend::poll`], then [`Lend::take`], with one write of the phase).
    /// Calls `idle`, which panics, if no future runs (the caller knows why, and what to say).
    /// `#[inline(always)]`: at `opt-level = "z"` it stayed a function of its own per exit
    /// future (the firmware: 80 bytes at `"z"`, for 32 at `"s"`).
    #[inline(always)]
    pub(crate) fn poll_take(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        idle: fn() -> !,
    ) -> Poll<(F::Output, V, K)> {
        // SAFETY: nothing is moved out of `this` while the future exists; the future is
        // re-pinned right away and only ever dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        let Phase::Running(future) = &mut this.phase else {
            idle()
        };
        // SAFETY: as in `poll`: `future` lives inside the pinned `Lend` and is never moved.
        let output = core::task::ready!(unsafe { Pin::new_unchecked(future) }.poll(cx));
        // The borrower goes first (invariant 3). Should its destructor panic, the phase is
        // `Taken` all the same (an assignment writes its value while unwinding too): the value
        // then leaks, and is never read or dropped twice.
        this.phase = Phase::Taken;
        // SAFETY: the phase was `Running`, so the value and the kept value are initialized; the
        // future that borrowed the value was dropped just above, so no reference to either
        // exists; `Taken` records that they are gone.
        Poll::Ready(unsafe {
            (
                output,
                this.value.get_mut().assume_init_read(),
                this.kept.assume_init_read(),
            )
        })
    }

    /// [`Lend::take`], for an owner that has no use for the value and the kept value: drops
    /// the future if there is one, then them.
    #[inline]
    pub(crate) fn drop_all(self: Pin<&mut Self>) {
        if core::mem::needs_drop::<V>() || core::mem::needs_drop::<K>() {
            take_and_drop(self);
        }
        // Otherwise nothing needs dropping but the future, which the owner's drop glue drops
        // as a field. (Known at compile time: this function is then empty, so small that the
        // owner's drop is inlined where it was before exits borrowed the outcome; callgrind's
        // scenario (d) without `std`: 27 instructions a cycle.)
    }

    /// Drops the future if there is one, then moves the value and the kept value out (`None`
    /// if they were taken before). `#[inline(always)]`: at `opt-level = "z"` it stayed a
    /// function of its own per lend type (the firmware: 40 bytes).
    #[inline(always)]
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
        this.phase.replace_empty(Phase::Taken);
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

/// Drops the future if there is one, then the value and the kept value, out of line: for the
/// rare paths, a future dropped before it finished ([`Lend::drop_all`]; inlined, it made the
/// owner's drop too large to be inlined itself) and an `exit()` that panicked (the guard of
/// `WithFuture`'s exit phase).
#[inline(never)]
pub(crate) fn take_and_drop<V, K, F: Future>(lend: Pin<&mut Lend<V, K, F>>) {
    drop(lend.take());
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

// One-function managers (`crate::scoped`): the closure's future and the slot it lends through.
//
// A one-function manager is an async closure that sets up, lends the resource through a slot
// (`Scope::lend`), and tears down once the lend returns. Its future lives in a [`ScopeCell`]
// from setup to teardown; the [`crate::ScopedWith`] that owns the cell drives it through a
// private manager whose enter future, exit handle and exit future ([`Teardown`]) reach the cell
// through a [`CellRef`] (or, for a `Scoped` used as a manager, own it on the heap:
// [`BoxedCell`]). The resource itself is moved, never borrowed across the boundary: the
// closure's lend future moves it into the slot, the enter future moves it out (into the
// `WithFuture` state, where the body borrows it as for any manager), and exit moves it back
// together with the outcome. The invariants, in addition to 1–5 above:
//
// 6. A `ScopeCell` is pinned inside a `ScopedWith` (or a `ScopedCancelOn`), beside the
//    `WithFuture` (field `inner`) that holds every `CellRef` to it; `inner` is declared first,
//    so it is dropped first, and no `CellRef` is used once it is gone. Such a `CellRef` is made
//    only by that future's `poll` (from the pinned cell) and moves, never copied, from the
//    manager to its enter future, to the exit handle, to the `Teardown`: one holder at a time,
//    each used only inside `inner`'s `poll` and `drop`, while nothing else borrows the cell
//    (the outer `poll` holds `&mut` to both fields and lends `inner` only). `&mut` to the
//    `!Unpin` cell does not claim uniqueness (invariant 1), so the pointer stays valid across
//    polls. (Without a `ScopedWith`, the cell is on the heap: invariant 6', at `BoxedCell`.)
// 7. A `SlotRef` exists only inside the closure's future, which the cell owns: the closure gets
//    it inside `Scope<'s, R>`, for every `'s` (a higher-ranked bound), and its output cannot
//    name `'s`, so neither the scope nor its lend future can leave the future (a `'static`
//    place, a capture, the output) or outlive it. The future is dropped before the slot
//    (`drop_future` empties the cell first; field order otherwise). The slot is touched by the
//    closure's future only while it is polled or dropped, and by the cell's owner only between
//    those polls: never at the same time (`Scope` is `Send` but not `Sync`, and a thread that
//    borrows it must be joined before the poll that started it returns).
// 8. The outcome given back to the closure lives as long as the exit future it was given to
//    (`AsyncExit::exit`'s `'o`): inside a `ScopedWith`, it borrows the body's value in the
//    `WithFuture`'s exit phase. The exit future is a `Teardown`, which drops the closure's future
//    (if it is still running) in its own `Drop`, so the closure's future never outlives the
//    outcome it may hold. Leaking a `Teardown` must then leave the closure's future unreachable,
//    never dropped: inside a `ScopedWith` the `Teardown` lives in `inner`'s state and cannot be
//    leaked apart from it (leaking the whole `ScopedWith` leaks the value it borrows too); a
//    `Teardown` of a `Scoped` used as a manager owns the heap cell (6'), so a leaked one leaks
//    the closure's future with it, whoever created it and whatever outcome it was given.

/// What the slot between the closure and the `with` holds.
enum Slot<R> {
    /// Nothing lent yet.
    Empty,
    /// The lend future has moved the resource in; the enter future takes it.
    Offered(R),
    /// The resource is with the body.
    Lent,
    /// Exit has moved the resource back with the outcome; the lend future takes both.
    Returned(R, Outcome<'static>),
    /// The lend is over (returned, withdrawn, or the closure's future is gone).
    Closed,
}

/// A one-function manager's closure future `F` and the slot for its resource `R`.
pub(crate) struct ScopeCell<R, F> {
    /// The closure's future: `Idle` before it is started, `Taken` once it finished or was
    /// dropped. Declared before the slot: dropped before it (invariant 7).
    future: UnsafeCell<Phase<F>>,
    slot: UnsafeCell<Slot<R>>,
    _pinned: PhantomPinned,
}

impl<R, F> ScopeCell<R, F> {
    #[inline]
    pub(crate) fn new() -> Self {
        ScopeCell {
            future: UnsafeCell::new(Phase::Idle),
            slot: UnsafeCell::new(Slot::Empty),
            _pinned: PhantomPinned,
        }
    }

    /// A pointer for the manager that drives this cell (invariant 6).
    #[inline]
    pub(crate) fn pointer(self: Pin<&mut Self>) -> CellRef<R, F> {
        // SAFETY: nothing is moved; the pointer is only used while the cell stays pinned.
        let this = unsafe { self.get_unchecked_mut() };
        CellRef(NonNull::from(this))
    }

    /// Whether the closure's future has been started and has not finished.
    pub(crate) fn is_running(&self) -> bool {
        // SAFETY: a shared look at the tag; the owner calls this between polls (invariant 6).
        matches!(unsafe { &*self.future.get() }, Phase::Running(_))
    }
}

/// The pointer from a one-function manager's enter future, exit handle and exit future to the
/// cell (invariant 6).
pub(crate) struct CellRef<R, F>(NonNull<ScopeCell<R, F>>);

// SAFETY: a `CellRef` moves between threads only together with the cell it points to (both
// are inside one `ScopedWith`), and it reaches only `R` and `F` through it.
unsafe impl<R: Send, F: Send> Send for CellRef<R, F> {}

impl<R, F> CellRef<R, F> {
    /// The cell's future and slot as raw pointers (never as references to the whole cell).
    #[inline]
    fn parts(&self) -> (*mut Phase<F>, *mut Slot<R>) {
        // SAFETY: the cell is alive and pinned while a `CellRef` is used (invariant 6); only
        // field addresses are taken, no reference to the cell.
        unsafe {
            let cell = self.0.as_ptr();
            (
                UnsafeCell::raw_get(core::ptr::addr_of!((*cell).future)),
                UnsafeCell::raw_get(core::ptr::addr_of!((*cell).slot)),
            )
        }
    }

    /// Moves the resource out of the slot if the closure has offered it, and marks it lent.
    #[inline]
    pub(crate) fn take_offered(&self) -> Option<R> {
        let (_, slot) = self.parts();
        // SAFETY: called between polls of the closure's future, so nothing else touches the
        // slot (invariant 7).
        let slot = unsafe { &mut *slot };
        match core::mem::replace(slot, Slot::Lent) {
            Slot::Offered(resource) => Some(resource),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Drops the closure's future, if it is running, then empties the slot.
    pub(crate) fn drop_future(&self) {
        let (future, slot) = self.parts();
        // SAFETY: only the owner reaches the future's place (invariant 6). The assignment drops
        // the future in place and writes `Taken`, also when the destructor panics.
        unsafe { *future = Phase::Taken };
        // SAFETY: the closure's future is gone, so nothing else refers to the slot
        // (invariant 7). What it held is dropped after the cell no longer refers to it.
        let left = core::mem::replace(unsafe { &mut *slot }, Slot::Closed);
        drop(left);
    }
}

impl<R, F: Future> CellRef<R, F> {
    /// Starts the closure's future: `make` receives the pointer to the slot.
    ///
    /// # Panics
    ///
    /// If it was started before (an internal invariant).
    #[inline]
    pub(crate) fn start(&self, make: impl FnOnce(SlotRef<R>) -> F) {
        let (future, slot) = self.parts();
        // SAFETY: the closure's future does not exist yet, so nothing else refers to its
        // place (invariant 6); the write drops only the `Idle` tag.
        let phase = unsafe { &mut *future };
        if !matches!(phase, Phase::Idle) {
            unreachable_phase()
        }
        // SAFETY: `slot` points into the pinned cell, which outlives the future (invariant 7).
        let slot = SlotRef(unsafe { NonNull::new_unchecked(slot) });
        *phase = Phase::Running(make(slot));
    }

    /// Polls the closure's future; drops it as soon as it completes.
    ///
    /// # Panics
    ///
    /// If it is not running (an internal invariant, or polled again after a panic).
    #[inline]
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<F::Output> {
        let (future, _) = self.parts();
        // SAFETY: only the owner's `poll` and `drop` reach the future's place, one at a time
        // (invariant 6); the future is pinned inside the cell and only dropped in place.
        let phase = unsafe { &mut *future };
        let Phase::Running(running) = phase else {
            unreachable_phase()
        };
        // SAFETY: the future lives in the pinned cell and is never moved, only dropped in
        // place: by the assignment below or by `drop_future`.
        let output = core::task::ready!(unsafe { Pin::new_unchecked(running) }.poll(cx));
        *phase = Phase::Taken;
        Poll::Ready(output)
    }
}

/// The pointer from the closure's scope handle and its lend future to the slot (invariant 7).
pub(crate) struct SlotRef<R>(NonNull<Slot<R>>);

// SAFETY: the slot is reached only while the closure's future is polled or dropped, never at
// the same time as its owner (invariant 7); moving the pointer to another thread moves access
// to `R` and to an outcome, which is `Send` (its error is `Sync`).
unsafe impl<R: Send> Send for SlotRef<R> {}

impl<R> SlotRef<R> {
    #[inline]
    fn slot(&mut self) -> &mut Slot<R> {
        // SAFETY: the slot outlives this pointer's holders, and nothing else touches it while
        // the closure's future is polled or dropped (invariant 7); the reference lasts for one
        // method of this type, which does not call out while it holds it.
        unsafe { self.0.as_mut() }
    }

    /// Offers the resource: the body starts when the closure's future next returns `Pending`.
    /// `Err` gives it back if something was lent through this slot before.
    #[inline]
    pub(crate) fn offer(&mut self, resource: R) -> Result<(), R> {
        let slot = self.slot();
        if !matches!(slot, Slot::Empty) {
            return Err(resource);
        }
        *slot = Slot::Offered(resource);
        Ok(())
    }

    /// The resource and the outcome, once exit has returned them.
    #[inline]
    pub(crate) fn take_back(&mut self) -> Option<(R, Outcome<'static>)> {
        let slot = self.slot();
        match core::mem::replace(slot, Slot::Closed) {
            Slot::Returned(resource, outcome) => Some((resource, outcome)),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Takes back a resource offered or returned but not yet taken (the lend future is dropped).
    pub(crate) fn withdraw(&mut self) -> Option<R> {
        let slot = self.slot();
        match core::mem::replace(slot, Slot::Closed) {
            Slot::Offered(resource) | Slot::Returned(resource, _) => Some(resource),
            other => {
                *slot = other;
                None
            }
        }
    }
}

/// The exit future of a one-function manager: gives the resource and the outcome back to the
/// closure, then polls its future through teardown.
///
/// `K` owns the cell (a [`BoxedCell`]: dropped after the closure's future, it frees it), or is
/// `()` when a `ScopedWith` holds the cell.
pub(crate) struct Teardown<'o, R, F, K> {
    cell: CellRef<R, F>,
    /// What goes back to the closure on the first poll.
    returning: Option<(R, Outcome<'o>)>,
    /// Declared last: dropped after `Drop::drop` has dropped the closure's future.
    _owner: Option<K>,
}

// Nothing in it is pinned: the closure's future lives in the cell.
impl<R, F, K> Unpin for Teardown<'_, R, F, K> {}

impl<'o, R, F: Future, K> Teardown<'o, R, F, K> {
    #[inline]
    pub(crate) fn new(
        cell: CellRef<R, F>,
        resource: R,
        outcome: Outcome<'o>,
        owner: Option<K>,
    ) -> Self {
        Teardown {
            cell,
            returning: Some((resource, outcome)),
            _owner: owner,
        }
    }
}

impl<R, F: Future, K> Future for Teardown<'_, R, F, K> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if let Some((resource, outcome)) = this.returning.take() {
            let (_, slot) = this.cell.parts();
            // The outcome borrows the body's value for `'o`; the closure's future that gets it
            // is dropped before this `Teardown` is (its `Drop`), so before `'o` ends (invariant
            // 8).
            // SAFETY: the two types differ only in the outcome's lifetime, and the borrow lasts
            // as long as anything that can read it, by the invariant just named.
            let outcome = unsafe { core::mem::transmute::<Outcome<'_>, Outcome<'static>>(outcome) };
            // SAFETY: between polls of the closure's future: nothing else touches the slot
            // (invariant 7).
            let slot = unsafe { &mut *slot };
            *slot = Slot::Returned(resource, outcome);
        }
        let output = core::task::ready!(this.cell.poll(cx));
        // Whatever the closure did not take back is dropped now.
        this.cell.drop_future();
        Poll::Ready(output)
    }
}

impl<R, F, K> Drop for Teardown<'_, R, F, K> {
    fn drop(&mut self) {
        // The resource first (as when the `with` is dropped mid-body), then the closure's future:
        // it must not outlive the outcome (invariant 8).
        drop(self.returning.take());
        self.cell.drop_future();
    }
}

/// A cell on the heap (feature `alloc`), for a [`crate::Scoped`] used as a manager: owned
/// through its pointer, so that moving the owner never moves or retags the cell (invariant 6'
/// below), and freed when the owner is dropped.
///
/// 6'. Without a `ScopedWith`, the pieces own the cell: the `BoxedCell` travels with the
///     `CellRef` made from it (enter future, then exit handle, then exit future), and each of
///     them drops the closure's future before the `BoxedCell` (its last field), which frees
///     the cell. Leaking a piece leaks the cell with the future inside, never dropped.
#[cfg(feature = "alloc")]
pub(crate) struct BoxedCell<R, F>(NonNull<ScopeCell<R, F>>);

// SAFETY: it owns the cell as a `Box` would; the cell holds an `R`, an `F` and an outcome
// (`Send`, its error is `Sync`).
#[cfg(feature = "alloc")]
unsafe impl<R: Send, F: Send> Send for BoxedCell<R, F> {}

#[cfg(feature = "alloc")]
impl<R, F> BoxedCell<R, F> {
    pub(crate) fn new() -> Self {
        let cell = alloc::boxed::Box::new(ScopeCell::new());
        BoxedCell(NonNull::from(alloc::boxed::Box::leak(cell)))
    }

    /// The pointer the pieces use; valid until this owner is dropped (invariant 6').
    pub(crate) fn pointer(&self) -> CellRef<R, F> {
        CellRef(self.0)
    }
}

#[cfg(feature = "alloc")]
impl<R, F> Drop for BoxedCell<R, F> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` in `new` and is freed only here; the
        // closure's future was dropped by the piece that owns this (invariant 6'), and no
        // `CellRef` is used after it.
        drop(unsafe { alloc::boxed::Box::from_raw(self.0.as_ptr()) });
    }
}
