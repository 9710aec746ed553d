//! [`SendExitStack`]: the exit stack a spawned task holds, a type with no lifetime.

use core::fmt;
use core::future::{Ready, ready};
use core::ops::{Deref, DerefMut};

use super::{CloseErrors, ExitStack, StackEntry, StackExit, StackExitFuture};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

/// An [`ExitStack`] whose entries may borrow for `'a` and are all `Send`, so that the stack is
/// `Send` itself (and `Sync` where the target has compare-and-swap): for scoped threads that
/// register on one `&stack`. A spawned task holds a [`SendExitStack`] instead.
pub type ScopedSendExitStack<'a, X> = ExitStack<'a, X, dyn StackEntry<X> + Send + 'a>;

/// An exit stack for a spawned task: every entry is `Send` and `'static`, and the type has no
/// lifetime, so a `with` over it can be awaited inside any spawned future — an `async move`
/// block, an `async fn` that does other work before and after, a closure or an `async fn` as
/// the body.
///
/// It is a [`ScopedSendExitStack<'static, X>`](ScopedSendExitStack) behind a type with no
/// lifetime parameter, and dereferences to it: every method of [`ExitStack`] works on it.
/// Why a type of its own: to check that a spawned future is `Send`, the compiler forgets the
/// lifetimes inside the types the future holds and asks the body closure to accept the
/// resource type with *any* lifetimes there, which a closure inferred for one stack type does
/// not (E0308-like "implementation of `FnOnce` is not general enough"). A type with no
/// lifetime leaves it nothing to forget.
///
/// ```
/// use async_with::{SendExitStack, SendManager, from_fns, with};
///
/// fn connect(peer: u16) -> impl SendManager<Resource = u16, Error = String> + use<> {
///     from_fns(async move || Ok(peer), async |_peer: u16, _| Ok(()))
/// }
///
/// /// A connection handler: other work before and after its stack.
/// async fn handler(peers: Vec<u16>) -> Result<usize, String> {
///     let opened = with(SendExitStack::<String>::new(), async |stack| -> Result<usize, String> {
///         for peer in peers {
///             stack.enter_context(connect(peer)).await?;
///         }
///         Ok(stack.len())
///     })
///     .await
///     .map_err(|e| e.to_string())?;
///     Ok(opened)
/// }
///
/// fn assert_spawnable<F: Future + Send + 'static>(_: F) {}
/// assert_spawnable(handler(vec![1, 2]));
/// assert_spawnable(async move { handler(vec![3]).await });
/// ```
pub struct SendExitStack<X> {
    inner: ScopedSendExitStack<'static, X>,
}

impl<X> SendExitStack<X> {
    /// An empty, open stack.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        SendExitStack {
            inner: ExitStack::new(),
        }
    }

    /// An empty, open stack (not `const` under `--cfg loom`, the model checker's build).
    #[cfg(loom)]
    pub fn new() -> Self {
        SendExitStack {
            inner: ExitStack::new(),
        }
    }

    /// Moves every entry to a new, open stack without running anything, as
    /// [`ExitStack::pop_all`] does; the new stack is a `SendExitStack` too.
    #[must_use = "dropping the returned stack cancels every entry it took"]
    pub fn pop_all(&mut self) -> Self {
        SendExitStack {
            inner: self.inner.pop_all(),
        }
    }

    /// The stack with its lifetime spelled out.
    pub fn into_inner(self) -> ScopedSendExitStack<'static, X> {
        self.inner
    }
}

impl<X> Deref for SendExitStack<X> {
    type Target = ScopedSendExitStack<'static, X>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<X> DerefMut for SendExitStack<X> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl<X> Default for SendExitStack<X> {
    fn default() -> Self {
        Self::new()
    }
}

impl<X> fmt::Debug for SendExitStack<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// A `SendExitStack` is a manager as an [`ExitStack`] is: its resource is the stack, and exit
/// closes it.
impl<X: fmt::Debug + Sync + 'static> AsyncEnter for SendExitStack<X> {
    type Resource = Self;
    type Error = CloseErrors<X>;
    type Exit = StackExit;
    type Enter = Ready<Result<(Self, StackExit), CloseErrors<X>>>;

    fn enter(self) -> Self::Enter {
        ready(Ok((self, StackExit)))
    }
}

impl<X: fmt::Debug + Sync + 'static> AsyncExit<SendExitStack<X>> for StackExit {
    type Error = CloseErrors<X>;
    type Future<'o> = StackExitFuture<'static, 'o, X, dyn StackEntry<X> + Send>;

    fn exit<'o>(self, stack: SendExitStack<X>, outcome: Outcome<'o>) -> Self::Future<'o> {
        StackExit.exit(stack.inner, outcome)
    }
}
