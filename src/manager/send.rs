//! [`SendManager`]: one bound for a manager whose whole `with` can move between threads.

use crate::manager::{AsyncEnter, AsyncExit};

/// A manager whose `with` is `Send`: the manager, its resource and error, its enter future,
/// its exit handle and its exit future are all `Send`.
///
/// Implemented for every such [`AsyncEnter`] (you never implement it). Its use is in return
/// types: `impl AsyncEnter<..>` hides the enter and exit futures, so the caller cannot know
/// they are `Send` and `tokio::spawn` refuses the `with`. Return
/// `impl SendManager<Resource = R, Error = X>` instead, and the promise is part of the
/// signature (checked where the function is defined).
///
/// With edition 2024, a returned `impl Trait` captures every lifetime in scope, including
/// those of the arguments; add `+ use<>` so that the caller can spawn it with `'static` data.
/// If the manager does borrow, name every lifetime its resource's type carries:
/// `fn savepoint<'t, 'c>(tx: &'t mut Tx<'c>) -> impl SendManager<..> + use<'t, 'c>`.
///
/// When the resource itself has a lifetime (`Transaction<'c>`), a `tokio::spawn`ed `with`
/// with an async *closure* body can fail with "implementation of `FnOnce` is not general
/// enough": the compiler proves the spawned future `Send` with its lifetimes erased. An
/// `async fn` body (`async fn step(tx: &mut Transaction<'_>) -> ..`) is accepted as it is.
///
/// # Examples
///
/// ```
/// use async_with::{Outcome, SendManager, Status, from_fns, with};
///
/// pub struct Conn { pub peer: String }
///
/// /// A library function: a connection closed gracefully after the body.
/// pub fn connect(peer: &str) -> impl SendManager<Resource = Conn, Error = String> + use<> {
///     let peer = peer.to_owned();
///     from_fns(
///         async move || Ok(Conn { peer }),
///         async |conn: Conn, _status: Outcome<'_>| {
///             // an async close (TLS close_notify, say) would be awaited here
///             drop(conn);
///             Ok(())
///         },
///     )
/// }
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
/// # async fn main() {
/// // The caller: the whole `with` runs on another worker thread.
/// let task = tokio::spawn(with(connect("db.local"), async |conn| {
///     Ok::<_, String>(conn.peer.len())
/// }));
/// assert_eq!(task.await.unwrap(), Ok(8));
/// # }
/// ```
pub trait SendManager:
    AsyncEnter<
        Resource: Send,
        Error: Send,
        Enter: Send,
        Exit: Send + for<'o> AsyncExit<Self::Resource, Future<'o>: Send>,
    > + Send
{
}

impl<M> SendManager for M where
    M: AsyncEnter<
            Resource: Send,
            Error: Send,
            Enter: Send,
            Exit: Send + for<'o> AsyncExit<M::Resource, Future<'o>: Send>,
        > + Send
{
}
