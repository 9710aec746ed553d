//! Several managers entered as one: tuples `(A, B, ..)` and arrays `[M; N]`.
//!
//! A tuple of up to 8 managers or an array of managers is itself an [`AsyncEnter`](crate::AsyncEnter), whose
//! resource is the tuple (array) of resources:
//!
//! ```
//! # futures_executor::block_on(async {
//! use async_with::{Outcome, Status, from_fns, null_context, with};
//!
//! let lock = null_context("guard"); // cannot fail
//! let conn = from_fns(async || Ok::<_, u8>(40_u32), async |_c: u32, _s: Outcome<'_>| Ok(()));
//!
//! let sum = with((lock, conn), async |(guard, conn)| {
//!     assert_eq!(*guard, "guard");
//!     Ok::<_, u8>(*conn + 2)
//! })
//! .await;
//! assert_eq!(sum.ok(), Some(42));
//! # });
//! ```
//!
//! The rules are exactly those of the nested form `with(a, async |a| with(b, async |b| ..))`:
//!
//! - enter runs left to right, each awaited to completion before the next starts;
//! - after the body, exit runs right to left;
//! - if a manager's enter fails, those already entered exit, right to left, and see that
//!   failure as their [`Outcome`](crate::Outcome);
//! - if an exit fails, the exits to its left see that failure (the newest one, as Python
//!   passes the newest exception outward); otherwise they see the body's outcome — except
//!   that after a panicking body (feature `std`) every exit sees `Panicked`, and the panic
//!   resumes after the last one;
//! - dropped mid-group, the running phase's future is dropped first, then every manager that
//!   was entered and has not exited gets its synchronous [`AsyncExit::cancel`](crate::AsyncExit::cancel), right to left,
//!   exactly once.
//!
//! One difference from the nested form: a panic inside a member's own code — its `enter()` or
//! `exit()` method, or the future either returns — unwinds out of `poll`, as it does for a
//! single manager, while in the nested form that panic would happen inside an outer body and
//! the outer exits would run with `Panicked`. Every other member entered and not exited then
//! gets `cancel`, right to left, exactly once (while unwinding, or when the future is dropped);
//! the panicking member runs nothing more. The exception is a panic in the *destructor* of a
//! member's enter or exit future (or of `cancel` itself): the members still to exit may then
//! have their resources dropped without `cancel`. The same holds for an exit stack's entries.
//! Nothing unsound follows; only that synchronous cleanup is lost.
//!
//! The managers may have different error types. The group's error is a [`GroupError`] that
//! holds, per position, the [`Fault`] of that manager if it had one: nothing is lost, and
//! [`Error::collapse_group`](crate::Error::collapse_group) turns the whole result into your error type.
//!
//! Every member's error must be `Debug + Sync + 'static`, because the members to its left may
//! look at it through [`Failure`](crate::Failure) while their exits run (`Sync`, so that the exit futures
//! holding it stay `Send`).
//!
//! # What each exit sees
//!
//! One rule, for groups, for the exit stack (`ExitStack`, feature `alloc`) and for any wrapper: **an exit sees
//! the newest failure before it, or else the outcome its runner was given** — the body's, for
//! the outermost one — **except that a panic under way stays `Panicked`**. The outcome is passed
//! once, to [`AsyncExit::exit`](crate::AsyncExit::exit), and the exit future may keep it until
//! it finishes; a group creates each member's exit future only when the member to its right
//! has finished, with the outcome the rule gives at that moment, and keeps the failure it
//! shows in place until that exit finishes. Nothing depends on how a future is polled, so a
//! third-party wrapper that forwards `exit` to the handle it wraps — `self.inner.exit(r,
//! outcome)` — passes the rule on unchanged.
//!
//! A body stopped by a signal ([`cancel_on`](crate::WithFuture::cancel_on)) is an outcome like
//! the others: every member's exit sees `Cancelled`, right to left, until an exit fails; the
//! members to its left then see that failure (and roll back for it as they would for
//! `Cancelled`).
//!
//! # Managers that depend on each other
//!
//! A tuple's managers are built before any of them is entered, so the second cannot be made
//! from the first one's resource (Python's `async with connect() as c, c.transaction() as tx`).
//! Nest two `with`s for that; [`Error::collapse_nested`](crate::Error::collapse_nested) turns
//! the nested error into yours in one call:
//!
//! ```
//! # futures_executor::block_on(async {
//! use async_with::{AsyncEnter, Error, Outcome, Status, from_fns, with};
//!
//! struct Conn;
//! struct Tx<'c> { _conn: &'c mut Conn, rows: u32 }
//!
//! #[derive(Debug, PartialEq)]
//! enum AppError { Io(&'static str), Db(&'static str), Parse }
//! impl From<&'static str> for AppError { fn from(e: &'static str) -> Self { AppError::Db(e) } }
//! impl From<std::io::ErrorKind> for AppError { fn from(_: std::io::ErrorKind) -> Self { AppError::Io("io") } }
//!
//! fn connect() -> impl AsyncEnter<Resource = Conn, Error = std::io::ErrorKind> {
//!     from_fns(async || Ok(Conn), async |_c: Conn, _s: Outcome<'_>| Ok(()))
//! }
//! fn transaction(conn: &mut Conn) -> impl AsyncEnter<Resource = Tx<'_>, Error = &'static str> {
//!     from_fns(async move || Ok(Tx { _conn: conn, rows: 0 }), async |_t: Tx<'_>, _s: Outcome<'_>| Ok(()))
//! }
//!
//! async fn insert() -> Result<u32, AppError> {
//!     with(connect(), async |conn| {
//!         with(transaction(conn), async |tx| -> Result<u32, AppError> {
//!             tx.rows += 1;
//!             if tx.rows == 0 { return Err(AppError::Parse) }
//!             Ok(tx.rows)
//!         })
//!         .await
//!     })
//!     .await
//!     .map_err(Error::collapse_nested)
//! }
//! assert_eq!(insert().await, Ok(1));
//! # });
//! ```

/// The tuple arities that are managers, the one list of them: calls `$callback!` once per
/// arity with its length and, per position, `(index Manager manager Error)`. A 9-tuple is one
/// more line here (and one in the module docs, which say "up to 8").
macro_rules! for_each_tuple {
    ($callback:ident) => {
        $callback!(2: (0 A a X0) (1 B b X1));
        $callback!(3: (0 A a X0) (1 B b X1) (2 C c X2));
        $callback!(4: (0 A a X0) (1 B b X1) (2 C c X2) (3 D d X3));
        $callback!(5: (0 A a X0) (1 B b X1) (2 C c X2) (3 D d X3) (4 E e X4));
        $callback!(6: (0 A a X0) (1 B b X1) (2 C c X2) (3 D d X3) (4 E e X4) (5 F f X5));
        $callback!(7: (0 A a X0) (1 B b X1) (2 C c X2) (3 D d X3) (4 E e X4) (5 F f X5) (6 G g X6));
        $callback!(8: (0 A a X0) (1 B b X1) (2 C c X2) (3 D d X3) (4 E e X4) (5 F f X5) (6 G g X6) (7 H h X7));
    };
}

mod array;
mod error;
mod pair;
mod tuple;

pub use self::error::{Fault, FaultList, Faults, GroupError};
