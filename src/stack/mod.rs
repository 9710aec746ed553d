//! [`ExitStack`]: managers entered at run time and exited together — Python's
//! `contextlib.AsyncExitStack`, JavaScript's `AsyncDisposableStack`. Feature `alloc`.

#[allow(unsafe_code)]
mod arena;
mod entry;
mod error;
mod send;

use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;
use core::future::{Future, Ready, ready};
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, ready};

use self::arena::{Arena, Closing, Node};
use crate::manager::closing::ClosingExit;
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

pub use self::entry::OnExitFn;
pub use self::entry::StackEntry;
use self::entry::{Defer, OnExit, Registered};
pub use self::entry::{InfallibleExit, Infallibly};
pub use self::error::CloseErrors;
pub use self::send::{ScopedSendExitStack, SendExitStack};

/// A stack of exits registered at run time, closed together in reverse order — Python's
/// `AsyncExitStack`, JavaScript's `AsyncDisposableStack`.
///
/// Four kinds of entry, one last-in-first-out order across all of them:
///
/// | method | registers | Python | JavaScript |
/// |---|---|---|---|
/// | [`enter_context`](ExitStack::enter_context) | a manager, entered now; its resource is lent to you | `enter_async_context` | `use` |
/// | [`adopt`](ExitStack::adopt) | a value with an async close function | `push_async_callback` + value | `adopt` |
/// | [`defer`](ExitStack::defer) | an async closure | `push_async_callback` | `defer` |
/// | [`push_exit`](ExitStack::push_exit) | an async closure that sees how the scope ended | `push_async_exit` | — |
///
/// The resources lent by `enter_context` and `adopt` are `&mut` borrows of the stack: usable side by
/// side (open a connection per peer in a loop, then use them all), and ended by the borrow
/// checker before the stack can be closed, moved or dropped.
///
/// [`close`](ExitStack::close) runs every exit, newest first, each seeing the newest failure
/// of an exit before it (or success). The stack is itself a manager: with [`with`](crate::with)
/// it is closed after the body, and its exits see the body's outcome, as in Python.
///
/// Every entry's error converts into `X` (through `From`), and every failure while closing is
/// kept, in order, in a [`CloseErrors<X>`].
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{ExitStack, Outcome, Status, from_fns};
///
/// fn connect(peer: &'static str) -> impl async_with::AsyncEnter<Resource = String, Error = String> {
///     from_fns(async move || Ok(format!("conn:{peer}")), async |_c: String, _s: Outcome<'_>| Ok(()))
/// }
///
/// let mut stack = ExitStack::<String>::new();
/// let mut conns = Vec::new();
/// for peer in ["a", "b", "c"] {
///     conns.push(stack.enter_context(connect(peer)).await?);
/// }
/// for conn in &mut conns {
///     conn.push('!'); // all three are usable together
/// }
/// assert_eq!(*conns[2], "conn:c!");
/// drop(conns); // the borrows end before the stack can be closed
/// stack.close().await.map_err(|e| e.into_vec().join(", "))?;
/// # Ok::<(), String>(())
/// # }).unwrap();
/// ```
///
/// # Cancellation
///
/// Dropping the stack unclosed, or dropping the [`CloseFuture`] (or the [`WithFuture`] the
/// stack is managed by) mid-close, is cancellation: the exit under way has its future
/// dropped, and every entry not yet closed gets its synchronous cancel hook
/// ([`AsyncExit::cancel`] for entered managers; adopted values and deferred closures are
/// dropped without running), newest first, exactly once — in a loop, without recursion.
///
/// A close owns the entries it closes: `close` moves them out of the stack, which is closed
/// from that call on. So a [`CloseFuture`] that is leaked (`mem::forget`) leaks its entries
/// with it, exits under way included, and the stack, empty, drops nothing of them later.
///
/// [`WithFuture`]: crate::WithFuture
///
/// # Threads
///
/// `ExitStack<'a, X>` accepts entries that are not `Send` and is not `Send` itself. Its twin
/// [`SendExitStack<X>`](SendExitStack) accepts only `Send + 'static` entries, is `Send` and
/// `Sync` (on targets with compare-and-swap), and has no lifetime parameter, so that a `with`
/// over it can be awaited in any spawned task (its docs say why the lifetime matters). For
/// `Send` entries that borrow — scoped threads registering on one `&stack` — there is
/// [`ScopedSendExitStack<'a, X>`](ScopedSendExitStack).
///
/// Registering through `&self` takes no lock: each entry is one heap allocation, linked into
/// the stack with one compare-and-swap, so a thread, task or interrupt handler registering on
/// a shared `SendExitStack` never waits for another, however it was preempted. Where the
/// target has no compare-and-swap, the stack is not `Sync` and a registration is a plain write.
/// Closing, `pop_all` and dropping take `&mut self`.
pub struct ExitStack<'a, X, D: ?Sized + StackEntry<X> = dyn StackEntry<X> + 'a> {
    arena: Arena<D>,
    closed: bool,
    _scope: Scope<'a, X>,
}

/// The stack's lifetime (what its entries may borrow) and error type, for variance only.
type Scope<'a, X> = PhantomData<(&'a (), fn() -> X)>;

mod sealed {
    pub trait Sealed {}
    impl<X> Sealed for dyn super::StackEntry<X> + '_ {}
    impl<X> Sealed for dyn super::StackEntry<X> + Send + '_ {}
}

/// The entry type an [`ExitStack`] keeps (`dyn StackEntry<X> + 'a`, with `+ Send` for a
/// [`SendExitStack`]) and the entries it can erase into it. Sealed.
pub trait EntryList<E>: sealed::Sealed {
    #[doc(hidden)]
    fn erase(entry: NonNull<Node<Self, E>>) -> NonNull<Node<Self>>;
}

impl<'a, X, E: StackEntry<X> + 'a> EntryList<E> for dyn StackEntry<X> + 'a {
    fn erase(entry: NonNull<Node<Self, E>>) -> NonNull<Node<Self>> {
        entry
    }
}

impl<'a, X, E: StackEntry<X> + Send + 'a> EntryList<E> for dyn StackEntry<X> + Send + 'a {
    fn erase(entry: NonNull<Node<Self, E>>) -> NonNull<Node<Self>> {
        entry
    }
}

impl<'a, X, D: ?Sized + StackEntry<X>> ExitStack<'a, X, D> {
    /// An empty, open stack.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        ExitStack {
            arena: Arena::new(),
            closed: false,
            _scope: PhantomData,
        }
    }

    /// An empty, open stack (not `const` under `--cfg loom`, the model checker's build).
    #[cfg(loom)]
    pub fn new() -> Self {
        ExitStack {
            arena: Arena::new(),
            closed: false,
            _scope: PhantomData,
        }
    }

    /// How many entries are registered and not yet closed.
    pub fn len(&self) -> usize {
        self.arena.len()
    }

    /// `true` if no entry is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` once [`close`](ExitStack::close) or [`close_with`](ExitStack::close_with) was called
    /// (the entries then belong to the close), or the stack was closed as a manager.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn register<'s, R: 's, H>(&'s self, resource: R, exit: H) -> &'s mut R
    where
        H: AsyncExit<R>,
        D: EntryList<Registered<R, H, X>>,
    {
        assert!(!self.closed, "registered an entry on a closed `ExitStack`");
        self.arena.push(
            Registered::new(resource, exit),
            D::erase,
            Registered::resource,
        )
    }

    /// Enters `manager` now and registers its exit; lends its resource until the stack is
    /// borrowed mutably (closed, moved or dropped).
    ///
    /// If entering fails, nothing is registered and the error is returned; entries
    /// registered before are untouched. If this future is dropped while entering, nothing is
    /// registered either.
    ///
    /// # Panics
    ///
    /// If the stack is closed.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use core::convert::Infallible;
    /// use async_with::{ExitStack, null_context};
    ///
    /// // `null_context` cannot fail: a stack of `Infallible` errors.
    /// let stack = ExitStack::<Infallible>::new();
    /// let a = stack.enter_context(null_context(1)).await.unwrap();
    /// let b = stack.enter_context(null_context(2)).await.unwrap();
    /// *a += *b; // both borrowed at once
    /// assert_eq!((*a, stack.len()), (3, 2));
    /// # });
    /// ```
    pub async fn enter_context<'s, M>(&'s self, manager: M) -> Result<&'s mut M::Resource, M::Error>
    where
        M: AsyncEnter<Resource: 's>,
        M::Exit: AsyncExit<M::Resource, Error: Into<X>>,
        D: EntryList<Registered<M::Resource, M::Exit, X>>,
    {
        let (resource, exit) = manager.enter().await?;
        Ok(self.register(resource, exit))
    }

    /// [`enter_context`](ExitStack::enter_context) for a manager that cannot fail (its error is
    /// [`Infallible`]: [`null_context`](crate::null_context), an infallible lock), whatever the
    /// stack's error type: nothing to convert, so `X` needs no `From<Infallible>`, and nothing
    /// to unwrap.
    ///
    /// (`enter_context` itself asks `M::Error: Into<X>`, which `Infallible` meets only for an
    /// `X` with a `From<Infallible>` impl; one method for both is not possible on stable Rust,
    /// since the two rules would overlap for such an `X`.)
    ///
    /// # Panics
    ///
    /// If the stack is closed.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{ExitStack, null_context};
    ///
    /// let stack = ExitStack::<std::io::Error>::new();
    /// let limit = stack.enter_infallible(null_context(3_u32)).await;
    /// *limit += 1;
    /// assert_eq!((*limit, stack.len()), (4, 1));
    /// # });
    /// ```
    pub async fn enter_infallible<'s, M>(&'s self, manager: M) -> &'s mut M::Resource
    where
        M: AsyncEnter<Resource: 's, Error = Infallible>,
        D: EntryList<Registered<M::Resource, Infallibly<M::Exit, X>, X>>,
    {
        let Ok((resource, exit)) = manager.enter().await;
        self.register(resource, Infallibly::new(exit))
    }

    /// Registers `value` to be closed by `close` (an async function or closure taking it by
    /// value), and lends it — Python's `aclosing` as an entry, JavaScript's `adopt`.
    ///
    /// On cancellation the value is dropped without `close`.
    ///
    /// # Panics
    ///
    /// If the stack is closed.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::ExitStack;
    ///
    /// struct File { flushed: bool }
    /// async fn flush(mut file: File) -> Result<(), &'static str> {
    ///     file.flushed = true; // an async flush would be awaited here
    ///     Ok(())
    /// }
    ///
    /// let mut stack = ExitStack::<&str>::new();
    /// let file = stack.adopt(File { flushed: false }, flush);
    /// assert!(!file.flushed);
    /// assert_eq!(stack.close().await, Ok(()));
    /// # });
    /// ```
    pub fn adopt<T, F, Fut, E>(&self, value: T, close: F) -> &mut T
    where
        F: FnOnce(T) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<X>,
        D: EntryList<Registered<T, ClosingExit<F>, X>>,
    {
        self.register(value, ClosingExit::new(close))
    }

    /// Registers an async closure to run when the stack closes — Python's
    /// `push_async_callback`, JavaScript's `defer`.
    ///
    /// On cancellation the closure is dropped without running.
    ///
    /// # Panics
    ///
    /// If the stack is closed.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use std::cell::RefCell;
    /// use async_with::ExitStack;
    ///
    /// let log = RefCell::new(Vec::new());
    /// let mut stack = ExitStack::<()>::new();
    /// stack.defer(async || { log.borrow_mut().push("first registered"); Ok::<_, ()>(()) });
    /// stack.defer(async || { log.borrow_mut().push("second registered"); Ok::<_, ()>(()) });
    /// stack.close().await.unwrap();
    /// assert_eq!(*log.borrow(), ["second registered", "first registered"]);
    /// # });
    /// ```
    pub fn defer<F, Fut, E>(&self, f: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<X>,
        D: EntryList<Registered<(), Defer<F>, X>>,
    {
        self.register((), Defer::new(f));
    }

    /// Registers an async closure that runs when the stack closes and sees how the scope
    /// ended: the body's [`Outcome`], or the newest failure of an exit before it (the rule in
    /// [`group`](crate::group#what-each-exit-sees)) — Python's `push_async_exit`. The closure
    /// may hold the outcome across its awaits.
    ///
    /// On cancellation the closure is dropped without running.
    ///
    /// # Panics
    ///
    /// If the stack is closed.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use std::cell::RefCell;
    /// use async_with::{ExitStack, with};
    ///
    /// let rolled_back = RefCell::new(None);
    /// let result = with(ExitStack::<()>::new(), async |stack| {
    ///     stack.push_exit(async |outcome| {
    ///         core::future::ready(()).await; // an async rollback
    ///         // Still lent after the await: the body's error itself.
    ///         *rolled_back.borrow_mut() = outcome.error::<&str>().copied();
    ///         Ok::<_, ()>(())
    ///     });
    ///     Err::<(), _>("body failed")
    /// })
    /// .await;
    /// assert!(result.is_err());
    /// assert_eq!(*rolled_back.borrow(), Some("body failed"));
    /// # });
    /// ```
    pub fn push_exit<F, E>(&self, f: F)
    where
        // Lets the compiler infer the closure's argument type (`async |outcome| ..`).
        F: AsyncFnOnce(Outcome<'_>) -> Result<(), E>,
        F: for<'o> OnExitFn<'o, Error = E>,
        E: Into<X>,
        D: EntryList<Registered<(), OnExit<F>, X>>,
    {
        self.register((), OnExit::new(f));
    }

    /// Moves every entry to a new, open stack without running anything — Python's
    /// `pop_all`, JavaScript's `move`. This stack is left empty (and stays open).
    ///
    /// The pattern of a constructor that opens several resources and hands them to its
    /// caller only if all of them opened: open them on a stack managed by [`with`](crate::with)
    /// (so that a failure part-way closes, asynchronously, what was opened, each exit seeing
    /// the failure), and `pop_all` into the value returned once all succeeded. The resources
    /// stay in the stack with their exits (they are lent, never handed out by value): what
    /// the new owner needs from them, keep as cheap handles or copies.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{ExitStack, Outcome, Status, from_fns, with};
    ///
    /// let open = |name: &'static str| from_fns(
    ///     async move || if name == "bad" { Err("refused") } else { Ok(name) },
    ///     async |_: &'static str, _: Outcome<'_>| Ok(()),
    /// );
    ///
    /// /// Opens every name, or none.
    /// async fn open_all<M>(names: &[&'static str], open: impl Fn(&'static str) -> M)
    ///     -> Result<(Vec<&'static str>, ExitStack<'static, &'static str>), async_with::Error<async_with::CloseErrors<&'static str>, &'static str>>
    /// where
    ///     M: async_with::AsyncEnter<Resource = &'static str, Error = &'static str> + 'static,
    /// {
    ///     with(ExitStack::new(), async |stack| {
    ///         let mut opened = Vec::new();
    ///         for name in names {
    ///             opened.push(*stack.enter_context(open(name)).await?);
    ///         }
    ///         Ok((opened, stack.pop_all())) // hand over: the scope's exit closes nothing
    ///     })
    ///     .await
    /// }
    ///
    /// let (names, mut owned) = open_all(&["a", "b"], open).await.unwrap();
    /// assert_eq!((names, owned.len()), (vec!["a", "b"], 2));
    /// owned.close().await.unwrap();
    ///
    /// assert!(open_all(&["a", "bad"], open).await.is_err()); // "a" was closed again
    /// # });
    /// ```
    #[must_use = "dropping the returned stack cancels every entry it took (use `close` to exit them)"]
    pub fn pop_all(&mut self) -> Self {
        ExitStack {
            arena: self.arena.take(),
            closed: false,
            _scope: PhantomData,
        }
    }
}

impl<'a, X, D> ExitStack<'a, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    /// Runs every exit, newest first; resolves to every failure, in order. Each exit sees
    /// the newest failure of the exits before it, or `Success`.
    ///
    /// The entries move into the returned future, and the stack is closed from this call on:
    /// a second close runs nothing and resolves to `Ok(())`. Dropping the returned future
    /// mid-way cancels the rest (see [Cancellation](ExitStack#cancellation)).
    pub fn close(&mut self) -> CloseFuture<'_, 'a, 'static, X, D> {
        self.close_with(Outcome::Success)
    }

    /// As [`close`](ExitStack::close), with the exits seeing `outcome` (until one fails) —
    /// for a scope that ended with an error the caller still holds. The exits may keep it
    /// across their awaits.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use std::cell::RefCell;
    /// use async_with::{ExitStack, Failure, Outcome};
    ///
    /// let seen = RefCell::new(Vec::new());
    /// let mut stack = ExitStack::<()>::new();
    /// stack.push_exit(async |outcome| {
    ///     seen.borrow_mut().push(format!("{outcome:?}"));
    ///     Ok::<_, ()>(())
    /// });
    ///
    /// let error = "parse failed";
    /// stack.close_with(Outcome::Failure(Failure::new(&error))).await.unwrap();
    /// assert_eq!(*seen.borrow(), [r#"Failure("parse failed")"#]);
    /// # });
    /// ```
    pub fn close_with<'o>(&mut self, outcome: Outcome<'o>) -> CloseFuture<'_, 'a, 'o, X, D> {
        // The entries leave the stack now: whatever happens to the future (finished, dropped
        // or leaked), the stack holds none of them.
        self.closed = true;
        CloseFuture {
            closing: Closing::new(self.arena.take(), outcome),
            _stack: PhantomData,
        }
    }
}

/// The failures of a close, as its result.
fn close_result<X>(errors: Vec<X>) -> Result<(), CloseErrors<X>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CloseErrors::new(errors))
    }
}

impl<X, D: ?Sized + StackEntry<X>> Default for ExitStack<'_, X, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<X, D: ?Sized + StackEntry<X>> fmt::Debug for ExitStack<'_, X, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitStack")
            .field("entries", &self.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl<X, D: ?Sized + StackEntry<X>> Drop for ExitStack<'_, X, D> {
    fn drop(&mut self) {
        self.arena.cancel_all();
    }
}

/// Future of [`ExitStack::close`] and [`ExitStack::close_with`]: exits every entry, newest
/// first, each seeing the newest failure or the outcome given (`'o`).
///
/// It owns the entries while it runs, and borrows the stack only to keep it from being used
/// meanwhile. Dropped before it finished, it cancels what is left (see
/// [Cancellation](ExitStack#cancellation)); leaked, it leaks them.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct CloseFuture<'s, 'a, 'o, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    closing: Closing<'o, X, D>,
    _stack: PhantomData<&'s mut ExitStack<'a, X, D>>,
}

impl<X, D> Future for CloseFuture<'_, '_, '_, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    type Output = Result<(), CloseErrors<X>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let errors = ready!(self.get_mut().closing.poll(cx));
        Poll::Ready(close_result(errors))
    }
}

impl<X, D> fmt::Debug for CloseFuture<'_, '_, '_, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseFuture")
            .field("left", &self.closing.len())
            .field("failures", &self.closing.failures())
            .finish()
    }
}

/// The stack is a manager: its resource is the stack itself, and exit closes it, each entry
/// seeing the body's outcome (or the newest failure of an entry closed before it; after a
/// panicking body, `Panicked` throughout).
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{ExitStack, Outcome, Status, from_fns, with};
///
/// let peers = ["a", "b"];
/// let total = with(ExitStack::<String>::new(), async |stack| -> Result<usize, String> {
///     let mut lens = 0;
///     for peer in peers {
///         let conn = stack
///             .enter_context(from_fns(async move || Ok::<_, String>(peer.repeat(2)), async |_: String, _: Outcome<'_>| Ok(())))
///             .await?;
///         lens += conn.len();
///     }
///     Ok(lens)
/// })
/// .await;
/// assert_eq!(total.ok(), Some(4));
/// # });
/// ```
impl<'a, X, D> AsyncEnter for ExitStack<'a, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    type Resource = Self;
    type Error = CloseErrors<X>;
    type Exit = StackExit;
    type Enter = Ready<Result<(Self, StackExit), CloseErrors<X>>>;

    fn enter(self) -> Self::Enter {
        ready(Ok((self, StackExit)))
    }
}

/// Exit handle of an [`ExitStack`] used as a manager: closes it.
#[derive(Debug)]
pub struct StackExit;

impl<'a, X, D> AsyncExit<ExitStack<'a, X, D>> for StackExit
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    type Error = CloseErrors<X>;
    type Future<'o> = StackExitFuture<'a, 'o, X, D>;

    fn exit<'o>(self, mut stack: ExitStack<'a, X, D>, outcome: Outcome<'o>) -> Self::Future<'o> {
        stack.closed = true;
        StackExitFuture {
            closing: Closing::new(stack.arena.take(), outcome),
            _stack: PhantomData,
        }
    }
}

/// Exit future of an [`ExitStack`] used as a manager: owns the stack's entries and closes
/// them, each seeing the newest failure or the body's outcome (`'o`).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct StackExitFuture<'a, 'o, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    closing: Closing<'o, X, D>,
    _stack: PhantomData<ExitStack<'a, X, D>>,
}

impl<X, D> Future for StackExitFuture<'_, '_, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    type Output = Result<(), CloseErrors<X>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let errors = ready!(self.get_mut().closing.poll(cx));
        Poll::Ready(close_result(errors))
    }
}

impl<X, D> fmt::Debug for StackExitFuture<'_, '_, X, D>
where
    X: fmt::Debug + Sync + 'static,
    D: ?Sized + StackEntry<X>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackExitFuture")
            .field("left", &self.closing.len())
            .field("failures", &self.closing.failures())
            .finish()
    }
}
