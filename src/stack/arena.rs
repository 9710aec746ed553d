//! The exit stack's entries: heap cells that never move, each lending its resource while the
//! stack lives.
//!
//! This module and `lend.rs` hold the crate's only `unsafe` code (the crate root denies
//! `unsafe_code`; each of the two allows it for itself). An [`Arena`] owns a list of
//! boxed entries (type-erased as `D`, a `dyn` entry trait) and hands out `&mut` to the
//! resource inside an entry from `&self`, the way typed-arena and bumpalo hand out `&mut T`
//! from `&Arena`. The list is intrusive and last-in-first-out: each entry's box, a [`Node`],
//! holds a [`Link`] to the entry pushed before it, and the arena holds the newest link. A
//! push from `&self` is one compare-and-swap of that head (a `Cell` write where the target has
//! no compare-and-swap, and the arena is then `!Sync`): no lock, so no thread or interrupt
//! handler ever waits for another, and no list to grow, so one allocation per entry. Its
//! invariants:
//!
//! 1. Every entry is a heap allocation made by `Box` (a `Node`), kept as a raw pointer (never
//!    as a `Box`, whose moves would assert uniqueness over the allocation while a lent `&mut`
//!    points into it), and freed only by [`Arena::pop`] (also from `Drop`), through
//!    `Box::from_raw`, once: `pop` unlinks it first.
//! 2. An entry never moves: the list is made of pointers between the boxes. So an entry may
//!    be pinned, and a resource lent from it stays valid until the entry is freed.
//! 3. A lent `&'s mut R` borrows the arena for `'s` (it comes from [`Arena::push`], which
//!    takes `&'s self`). Everything that reaches an entry after it was pushed — [`Arena::top`],
//!    [`Arena::pop`], [`Arena::take`] and `Drop` — takes `&mut self` or `self`, so the borrow
//!    checker ends every lent reference before an entry is touched again or freed.
//! 4. `&self` methods touch only the head, the count and the `Link` of a node that is not yet
//!    published (the pushing thread's own), never an entry already in the list, and no
//!    reference to a `Link` or an entry is made for them. A node is published by the
//!    compare-and-swap that makes it the head (`Release`); whoever reads it later through
//!    `&mut self` has synchronised with that (the `&mut` itself was handed over with `Acquire`
//!    or by a join). The lent `&mut R` covers only the entry, never its `Link`. Under
//!    `--cfg loom` the head and the count are loom's atomics, and `loom/tests/push.rs` runs
//!    every interleaving of two threads pushing.
//! 5. `Arena<D>` is `Send` and `Sync` only when `D` is `Send`: its entries are created on the
//!    thread that pushes them and dropped on the one that closes the stack.
//!
//! A close ([`Closing`]) adds the exit futures' borrow of the outcome. Each entry's exit
//! future keeps the outcome it was shown until it finishes, but an entry's type is erased
//! when it is pushed, before any outcome exists, so the future is stored for `'static` and
//! shown an outcome whose lifetime is extended to `'static` here. It borrows the outer outcome
//! (`'o`, whatever the stack's runner was shown) or the newest failure, an element of the
//! close's own `Vec` of errors. Invariants of the close:
//!
//! 6. A `Closing<'o, ..>` owns the entries being closed (the arena was moved into it; the
//!    stack is left empty and closed), so no entry can outlive it: leaking the close leaks the
//!    entries with it, and nothing outside can reach or drop them later. Its type names `'o`,
//!    so it cannot outlive the outer outcome.
//! 7. Only the top entry's exit future exists at a time, and the `Vec` is pushed to (which may
//!    move its elements) only after that entry has been popped, so the error an exit future
//!    borrows stays in place while it lives. `Closing`'s `Drop` cancels (drops) the remaining
//!    entries before its fields, the `Vec` among them, are dropped; moving a `Closing` moves
//!    neither the boxed entries nor the `Vec`'s elements.
//! 8. The exit future's output, `Result<(), H::Error>`, does not name the outcome's lifetime,
//!    and [`AsyncExit::exit`](crate::AsyncExit::exit) is generic over it, so neither the
//!    handle nor the future can keep the outcome beyond the future's own life (as in
//!    `lend.rs`, invariant 4).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt::Debug;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, ready};

use super::entry::StackEntry;
use crate::outcome::{Outcome, newest};

// The model checker's atomics under `--cfg loom` (loom/tests/push.rs), the real ones otherwise.
#[cfg(all(target_has_atomic = "ptr", not(loom)))]
use core::sync::atomic::{AtomicPtr, AtomicUsize};
#[cfg(all(target_has_atomic = "ptr", loom))]
use loom::sync::atomic::{AtomicPtr, AtomicUsize};

/// One entry's box: the link to the entry pushed before it, then the entry `E` — last, and
/// the only field that names `E`, so that a `Node<D, E>` unsizes to a `Node<D>` (`E` erased to
/// the `dyn` entry type `D`).
#[repr(C)]
pub struct Node<D: ?Sized, E: ?Sized = D> {
    link: Link<D>,
    entry: E,
}

/// The list's pointers, at the start of every node: the node pushed before this one (null for
/// the oldest) and this node itself, type-erased (a fat pointer, which an atomic cannot hold,
/// so the head points at the `Link` and the `Link` at its node).
pub(crate) struct Link<D: ?Sized> {
    older: *mut Link<D>,
    /// Written by `push` before the node is published; initialized in every linked node.
    node: MaybeUninit<NonNull<Node<D>>>,
}

impl<D: ?Sized, E: ?Sized> core::fmt::Debug for Node<D, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl<D: ?Sized, E> Node<D, E> {
    /// A node for `entry`, not linked yet.
    pub(crate) fn new(entry: E) -> Self {
        Node {
            link: Link {
                older: ptr::null_mut(),
                node: MaybeUninit::uninit(),
            },
            entry,
        }
    }
}

/// Erases a node's entry type `E` to the arena's `D` (an unsizing coercion).
type Erase<D, E> = fn(NonNull<Node<D, E>>) -> NonNull<Node<D>>;

/// A list of pinned, heap-allocated entries that lend resources while it is borrowed.
pub(crate) struct Arena<D: ?Sized> {
    /// The newest node's `Link`, null when the arena is empty.
    head: Head<D>,
    /// How many nodes are linked.
    count: Count,
    /// Owns `D`s (for drop check and auto traits).
    _owns: PhantomData<Box<D>>,
}

// SAFETY: the arena owns its entries (invariant 1) and moves them between threads only as a
// `Box<D>` would: sending it is sound when `D: Send` (invariant 5).
unsafe impl<D: ?Sized + Send> Send for Arena<D> {}

// SAFETY: `&Arena` only pushes new nodes and reads the count, both through atomics (invariant
// 4); a pushed entry may then be dropped on another thread, hence `D: Send`.
#[cfg(target_has_atomic = "ptr")]
unsafe impl<D: ?Sized + Send> Sync for Arena<D> {}

impl<D: ?Sized> Arena<D> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Arena {
            head: Head::new(ptr::null_mut()),
            count: Count::new(0),
            _owns: PhantomData,
        }
    }

    /// Not `const` under `--cfg loom`: the model checker's atomics are made at run time.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Arena {
            head: Head::new(ptr::null_mut()),
            count: Count::new(0),
            _owns: PhantomData,
        }
    }

    /// How many entries the arena holds (with pushes racing on other threads: as of some
    /// moment during the call).
    pub(crate) fn len(&self) -> usize {
        self.count.get()
    }

    /// Boxes `entry` in a [`Node`], links it (erased to `D` by `erase`) as the newest, and
    /// lends the resource that `resource` points at inside it, for as long as the arena is
    /// borrowed.
    // `&mut` from `&self` is the point of an arena (invariant 3 says why it is sound).
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn push<E, R>(
        &self,
        entry: E,
        erase: Erase<D, E>,
        resource: fn(Pin<&mut E>) -> &mut R,
    ) -> &mut R {
        let node: NonNull<Node<D, E>> = NonNull::from(Box::leak(Box::new(Node::new(entry))));
        let erased = erase(node);
        let link: *mut Link<D> = erased.as_ptr().cast::<Link<D>>();
        // SAFETY: the node comes from the `Box` just above and is reachable from nowhere else
        // (it is not published yet); the entry never moves (invariant 2), so it may be pinned.
        // Only the entry field is borrowed, never the `Link` (invariant 4).
        let resource: *mut R = resource(unsafe { Pin::new_unchecked(&mut (*node.as_ptr()).entry) });
        // SAFETY: `link` points at the first field of the node (`#[repr(C)]`), derived from
        // `erased`, and the node is not published yet: this thread alone writes it.
        unsafe { ptr::addr_of_mut!((*link).node).write(MaybeUninit::new(erased)) };
        self.head.push(link);
        self.count.increment();
        // SAFETY: the resource lives inside the entry, which stays allocated and unmoved until
        // `pop` or `Drop`, neither of which can run while `'s` lasts (invariant 3); no other
        // reference to it exists (the entry is reached again only through `&mut self`).
        unsafe { &mut *resource }
    }

    /// The newest entry, pinned; `None` if the arena is empty.
    pub(crate) fn top(&mut self) -> Option<Pin<&mut D>> {
        let link = NonNull::new(self.head.get_mut())?;
        // SAFETY: a linked `Link` is live (invariant 1), its `node` written before it was
        // published, and `&mut self` ends every lent reference (invariant 3), so reading it and
        // borrowing its node's entry is exclusive; the entry never moves (invariant 2).
        unsafe {
            let node = (*link.as_ptr()).node.assume_init();
            Some(Pin::new_unchecked(&mut (*node.as_ptr()).entry))
        }
    }

    /// Unlinks and frees the newest entry.
    pub(crate) fn pop(&mut self) {
        let Some(link) = NonNull::new(self.head.get_mut()) else {
            return;
        };
        // `&mut self` means no push races with this (invariant 3): reading the link's fields
        // and moving the head back is exclusive.
        // SAFETY: the link is live (invariant 1).
        let older = unsafe { (*link.as_ptr()).older };
        // SAFETY: the link is live, and its `node` was written before it was published.
        let node = unsafe { (*link.as_ptr()).node.assume_init() };
        self.head.set_mut(older);
        self.count.decrement_mut();
        // SAFETY: `node` is the pointer made from the node's `Box` in `push`; it left the list
        // just now, so it is freed exactly once (invariant 1); no lent reference is alive
        // (invariant 3).
        drop(unsafe { Box::from_raw(node.as_ptr()) });
    }

    /// Synchronously cancels every entry, newest first, in a loop (no recursion however many
    /// there are): an exit under way has its future dropped, the others their cancel hook.
    pub(crate) fn cancel_all<X>(&mut self)
    where
        D: StackEntry<X>,
    {
        while let Some(top) = self.top() {
            top.cancel();
            self.pop();
        }
    }

    /// Moves every entry to a new arena, leaving this one empty.
    pub(crate) fn take(&mut self) -> Self {
        let head = self.head.get_mut();
        self.head.set_mut(ptr::null_mut());
        let count = self.count.get_mut();
        self.count.set_mut(0);
        Arena {
            head: Head::new(head),
            count: Count::new(count),
            _owns: PhantomData,
        }
    }
}

impl<D: ?Sized> Drop for Arena<D> {
    fn drop(&mut self) {
        // Newest first, in a loop: no recursion however many entries there are.
        while !self.head.get_mut().is_null() {
            self.pop();
        }
    }
}

/// A close under way: the entries (moved out of the stack), the failures so far, newest last,
/// and the outcome the close was given (invariants 6 to 8).
pub(crate) struct Closing<'o, X, D: ?Sized + StackEntry<X>> {
    arena: Arena<D>,
    errors: Vec<X>,
    outer: Outcome<'o>,
    /// Whether the top entry's exit has started.
    started: bool,
}

// Nothing in a close is pinned inline: the entries live in their own heap cells.
impl<X, D: ?Sized + StackEntry<X>> Unpin for Closing<'_, X, D> {}

impl<'o, X, D: ?Sized + StackEntry<X>> Closing<'o, X, D> {
    /// Closes the entries of `arena`, newest first, each seeing the newest failure or `outer`.
    pub(crate) fn new(arena: Arena<D>, outer: Outcome<'o>) -> Self {
        Closing {
            arena,
            errors: Vec::new(),
            outer,
            started: false,
        }
    }

    /// How many entries are left to close.
    pub(crate) fn len(&self) -> usize {
        self.arena.len()
    }

    /// How many exits have failed so far.
    pub(crate) fn failures(&self) -> usize {
        self.errors.len()
    }
}

impl<X: Debug + Any + Sync, D: ?Sized + StackEntry<X>> Closing<'_, X, D> {
    /// Runs the exits, newest first; resolves to the failures, oldest first.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Vec<X>> {
        while let Some(mut top) = self.arena.top() {
            if !self.started {
                let seen = newest(self.errors.last(), self.outer);
                // The outcome borrows `outer` (alive for `'o`, which this close cannot outlive)
                // or the newest error in `errors`, which is not pushed to while this entry's
                // future lives (invariant 7); the entry, and with it the future, is dropped
                // by this close before either goes (invariant 6), and the future cannot pass
                // the outcome on (invariant 8).
                // SAFETY: the two types differ only in the outcome's lifetime; the borrow it
                // stands for outlives the future that receives it, by the invariants above.
                let seen = unsafe { core::mem::transmute::<Outcome<'_>, Outcome<'static>>(seen) };
                top.as_mut().start(seen);
                self.started = true;
            }
            let exited = ready!(top.poll_exit(cx));
            self.started = false;
            // The finished entry goes before its error joins the list (invariant 7).
            self.arena.pop();
            if let Err(error) = exited {
                self.errors.push(error);
            }
        }
        Poll::Ready(core::mem::take(&mut self.errors))
    }
}

impl<X, D: ?Sized + StackEntry<X>> Drop for Closing<'_, X, D> {
    fn drop(&mut self) {
        // Cancelled mid-close: the exit under way is dropped, the rest cancelled, newest
        // first, all before `errors` is dropped (invariant 7).
        self.arena.cancel_all();
    }
}

/// The head of the list, pushed to from `&self` (see invariant 4).
#[cfg(target_has_atomic = "ptr")]
struct Head<D: ?Sized>(AtomicPtr<Link<D>>);

#[cfg(target_has_atomic = "ptr")]
impl<D: ?Sized> Head<D> {
    #[cfg(not(loom))]
    const fn new(link: *mut Link<D>) -> Self {
        Head(AtomicPtr::new(link))
    }

    #[cfg(loom)]
    fn new(link: *mut Link<D>) -> Self {
        Head(AtomicPtr::new(link))
    }

    /// Makes `link` (a node not yet published) the newest, linked to the head it replaces:
    /// a compare-and-swap loop that never waits for another thread.
    fn push(&self, link: *mut Link<D>) {
        use core::sync::atomic::Ordering;
        let mut older = self.0.load(Ordering::Relaxed);
        loop {
            // SAFETY: `link` is the pushing thread's own, unpublished node (invariant 4).
            unsafe { ptr::addr_of_mut!((*link).older).write(older) };
            // `Release`: the node's contents happen before whoever later reads it from here.
            match self
                .0
                .compare_exchange_weak(older, link, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(newer) => older = newer,
            }
        }
    }

    fn get_mut(&mut self) -> *mut Link<D> {
        #[cfg(not(loom))]
        let value = *self.0.get_mut();
        #[cfg(loom)]
        let value = self.0.with_mut(|link| *link);
        value
    }

    fn set_mut(&mut self, link: *mut Link<D>) {
        #[cfg(not(loom))]
        {
            *self.0.get_mut() = link;
        }
        #[cfg(loom)]
        self.0.with_mut(|head| *head = link);
    }
}

/// Without compare-and-swap the arena is `!Sync` (no `Sync` impl above), so a `Cell` is
/// enough: a push is a plain write, and nothing else can run in between on this thread.
#[cfg(not(target_has_atomic = "ptr"))]
struct Head<D: ?Sized>(core::cell::Cell<*mut Link<D>>);

#[cfg(not(target_has_atomic = "ptr"))]
impl<D: ?Sized> Head<D> {
    const fn new(link: *mut Link<D>) -> Self {
        Head(core::cell::Cell::new(link))
    }

    fn push(&self, link: *mut Link<D>) {
        // SAFETY: `link` is the pushing thread's own, unpublished node (invariant 4).
        unsafe { ptr::addr_of_mut!((*link).older).write(self.0.get()) };
        self.0.set(link);
    }

    fn get_mut(&mut self) -> *mut Link<D> {
        self.0.get()
    }

    fn set_mut(&mut self, link: *mut Link<D>) {
        self.0.set(link);
    }
}

/// The number of linked nodes.
#[cfg(target_has_atomic = "ptr")]
struct Count(AtomicUsize);

#[cfg(target_has_atomic = "ptr")]
impl Count {
    #[cfg(not(loom))]
    const fn new(n: usize) -> Self {
        Count(AtomicUsize::new(n))
    }

    #[cfg(loom)]
    fn new(n: usize) -> Self {
        Count(AtomicUsize::new(n))
    }

    fn get(&self) -> usize {
        self.0.load(core::sync::atomic::Ordering::Relaxed)
    }

    fn increment(&self) {
        self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }

    fn get_mut(&mut self) -> usize {
        #[cfg(not(loom))]
        let value = *self.0.get_mut();
        #[cfg(loom)]
        let value = self.0.with_mut(|n| *n);
        value
    }

    fn set_mut(&mut self, n: usize) {
        #[cfg(not(loom))]
        {
            *self.0.get_mut() = n;
        }
        #[cfg(loom)]
        self.0.with_mut(|count| *count = n);
    }

    fn decrement_mut(&mut self) {
        #[cfg(not(loom))]
        {
            *self.0.get_mut() -= 1;
        }
        #[cfg(loom)]
        self.0.with_mut(|n| *n -= 1);
    }
}

#[cfg(not(target_has_atomic = "ptr"))]
struct Count(core::cell::Cell<usize>);

#[cfg(not(target_has_atomic = "ptr"))]
impl Count {
    const fn new(n: usize) -> Self {
        Count(core::cell::Cell::new(n))
    }

    fn get(&self) -> usize {
        self.0.get()
    }

    fn increment(&self) {
        self.0.set(self.0.get() + 1);
    }

    fn get_mut(&mut self) -> usize {
        self.0.get()
    }

    fn set_mut(&mut self, n: usize) {
        self.0.set(n);
    }

    fn decrement_mut(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
