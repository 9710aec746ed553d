//! The exit stack's entries: heap cells that never move, each lending its resource while the
//! stack lives.
//!
//! This module and `with/lend.rs` hold the crate's only `unsafe` code (the crate root denies
//! `unsafe_code`; each of the two allows it for itself). An [`Arena`] owns a list of
//! boxed entries (type-erased as `D`, a `dyn` entry trait) and hands out `&mut` to the
//! resource inside an entry from `&self`, the way typed-arena and bumpalo hand out `&mut T`
//! from `&Arena`. Its invariants:
//!
//! 1. Every entry is a heap allocation made by `Box`, kept as a raw pointer (never as a `Box`,
//!    whose moves would assert uniqueness over the allocation while a lent `&mut` points into
//!    it), and freed only by [`Arena::pop`] or `Drop`, through `Box::from_raw`, once.
//! 2. An entry never moves: the list holds pointers, and the list's own reallocation moves
//!    only those pointers. So an entry may be pinned, and a resource lent from it stays valid
//!    until the entry is freed.
//! 3. A lent `&'s mut R` borrows the arena for `'s` (it comes from [`Arena::push`], which
//!    takes `&'s self`). Everything that reaches an entry after it was pushed — [`Arena::top`],
//!    [`Arena::pop`], [`Arena::take`] and `Drop` — takes `&mut self` or `self`, so the borrow
//!    checker ends every lent reference before an entry is touched again or freed.
//! 4. `&self` methods change only the list of pointers, never an entry, and never hold a
//!    reference into the list across a call to user code (none is made while the list is
//!    borrowed). Two threads sharing `&Arena` are kept apart by [`Lock`]: on targets with
//!    compare-and-swap a spin lock on an atomic flag (the second thread waits for the first);
//!    elsewhere a `Cell`, which makes the arena `!Sync`, and a re-entrant use panics.
//! 5. `Arena<D>` is `Send` and `Sync` only when `D` is `Send`: its entries are created on the
//!    thread that pushes them and dropped on the one that closes the stack.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;

/// A list of pinned, heap-allocated entries that lend resources while it is borrowed.
pub(crate) struct Arena<D: ?Sized> {
    entries: UnsafeCell<Vec<NonNull<D>>>,
    lock: Lock,
    /// Owns `D`s (for drop check and auto traits).
    _owns: PhantomData<Box<D>>,
}

// SAFETY: the arena owns its entries (invariant 1) and moves them between threads only as a
// `Box<D>` would: sending it is sound when `D: Send` (invariant 5).
unsafe impl<D: ?Sized + Send> Send for Arena<D> {}

// SAFETY: `&Arena` only pushes pointers and reads the length, serialised by the atomic `Lock`
// (invariant 4); a pushed entry may then be dropped on another thread, hence `D: Send`.
#[cfg(target_has_atomic = "8")]
unsafe impl<D: ?Sized + Send> Sync for Arena<D> {}

impl<D: ?Sized> Arena<D> {
    pub(crate) const fn new() -> Self {
        Arena {
            entries: UnsafeCell::new(Vec::new()),
            lock: Lock::new(),
            _owns: PhantomData,
        }
    }

    /// How many entries the arena holds.
    pub(crate) fn len(&self) -> usize {
        let _guard = self.lock.acquire();
        // SAFETY: the lock is held, so no other `&self` call changes the list now; no `&mut`
        // to the list exists outside `&mut self` methods (invariant 4).
        unsafe { (*self.entries.get()).len() }
    }

    /// Boxes `entry`, keeps it (erased to `D` by `erase`), and lends the resource that
    /// `resource` points at inside it, for as long as the arena is borrowed.
    // `&mut` from `&self` is the point of an arena (invariant 3 says why it is sound).
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn push<E, R>(
        &self,
        entry: E,
        erase: fn(NonNull<E>) -> NonNull<D>,
        resource: fn(Pin<&mut E>) -> &mut R,
    ) -> &mut R {
        let raw = NonNull::from(Box::leak(Box::new(entry)));
        // SAFETY: `raw` comes from the `Box` just above and is not reachable from anywhere
        // else yet; the entry never moves (invariant 2), so it may be pinned.
        let resource: *mut R = resource(unsafe { Pin::new_unchecked(&mut *raw.as_ptr()) });
        let erased = erase(raw);
        {
            let _guard = self.lock.acquire();
            // SAFETY: the lock is held (invariant 4); pushing moves only pointers, so the
            // resources lent earlier stay valid (invariant 2).
            unsafe { (*self.entries.get()).push(erased) };
        }
        // SAFETY: the resource lives inside the entry, which stays allocated and unmoved until
        // `pop`, `take` or `Drop`, none of which can run while `'s` lasts (invariant 3); no
        // other reference to it exists (the entry is reached again only through `&mut self`).
        unsafe { &mut *resource }
    }

    /// The newest entry, pinned; `None` if the arena is empty.
    pub(crate) fn top(&mut self) -> Option<Pin<&mut D>> {
        let top = *self.entries.get_mut().last()?;
        // SAFETY: `&mut self` ends every lent reference (invariant 3), so this is the only
        // reference to the entry; it is live (invariant 1) and never moves (invariant 2).
        Some(unsafe { Pin::new_unchecked(&mut *top.as_ptr()) })
    }

    /// Frees the newest entry.
    pub(crate) fn pop(&mut self) {
        if let Some(top) = self.entries.get_mut().pop() {
            // SAFETY: the pointer came from `Box::into_raw` and left the list just now, so it
            // is freed exactly once (invariant 1); no lent reference is alive (invariant 3).
            drop(unsafe { Box::from_raw(top.as_ptr()) });
        }
    }

    /// Moves every entry to a new arena, leaving this one empty.
    pub(crate) fn take(&mut self) -> Self {
        Arena {
            entries: UnsafeCell::new(core::mem::take(self.entries.get_mut())),
            lock: Lock::new(),
            _owns: PhantomData,
        }
    }
}

impl<D: ?Sized> Drop for Arena<D> {
    fn drop(&mut self) {
        // Newest first, in a loop: no recursion however many entries there are.
        while !self.entries.get_mut().is_empty() {
            self.pop();
        }
    }
}

/// Serialises `&Arena` calls across threads (see invariant 4).
#[cfg(target_has_atomic = "8")]
struct Lock(core::sync::atomic::AtomicBool);

#[cfg(target_has_atomic = "8")]
impl Lock {
    const fn new() -> Self {
        Lock(core::sync::atomic::AtomicBool::new(false))
    }

    fn acquire(&self) -> LockGuard<'_> {
        use core::sync::atomic::Ordering;
        // A spin lock: the sections it guards are a push onto a `Vec` or a read of its length,
        // and no user code runs inside them.
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        LockGuard(self)
    }
}

#[cfg(target_has_atomic = "8")]
impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.0.0.store(false, core::sync::atomic::Ordering::Release);
    }
}

/// Without compare-and-swap the arena is `!Sync`, so a `Cell` is enough.
#[cfg(not(target_has_atomic = "8"))]
struct Lock(core::cell::Cell<bool>);

#[cfg(not(target_has_atomic = "8"))]
impl Lock {
    const fn new() -> Self {
        Lock(core::cell::Cell::new(false))
    }

    fn acquire(&self) -> LockGuard<'_> {
        assert!(!self.0.replace(true), "an `ExitStack` was re-entered");
        LockGuard(self)
    }
}

#[cfg(not(target_has_atomic = "8"))]
impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.0.0.set(false);
    }
}

struct LockGuard<'l>(&'l Lock);
