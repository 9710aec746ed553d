//! Python's `async with` for Rust, and the `await using` of JavaScript and C#: acquire a
//! resource asynchronously, run a body that borrows it, then release it asynchronously,
//! knowing how the body ended. On any executor, in `no_std`, with no heap allocation.
//!
//! ```text
//! with(manager, async |resource| body).await
//!
//!   1. enter:  manager.enter()         -> resource                        awaited to completion
//!   2. body:   body(&mut resource)     -> Ok(v) | Err(e) | () | Value(v)  awaited to completion
//!   3. exit:   exit(resource, outcome) -> Ok(()) | Err(x)                 awaited to completion
//! ```
//!
//! [`with`] returns a [`WithFuture`]: one hand-written future that drives the enter, body and
//! exit futures in turn. It has a name, so it can be a struct field or the return type of a
//! trait method; it needs no allocator and no runtime.
//!
//! # Quickstart
//!
//! A sensor that is powered up for the body and powered down after it, whatever the body
//! returned:
//!
//! ```
//! use async_with::{AsyncEnter, Error, Outcome, Value, from_fns, with};
//!
//! struct Sensor { powered: bool, resolution: u8 }
//!
//! #[derive(Debug, PartialEq)]
//! struct Timeout;
//!
//! impl Sensor {
//!     async fn power_up(&mut self) -> Result<(), Timeout> { self.powered = true; Ok(()) }
//!     async fn read(&mut self) -> Result<u16, Timeout> { Ok(2150) }
//!     async fn power_down(&mut self) -> Result<(), Timeout> { self.powered = false; Ok(()) }
//! }
//!
//! /// The sensor, powered for the duration of a body.
//! fn powered(sensor: &mut Sensor) -> impl AsyncEnter<Resource = &mut Sensor, Error = Timeout> {
//!     from_fns(
//!         async move || {
//!             sensor.power_up().await?;
//!             Ok(sensor)
//!         },
//!         async |sensor: &mut Sensor, _outcome: Outcome<'_>| sensor.power_down().await,
//!     )
//! }
//!
//! # futures_executor::block_on(async {
//! let mut sensor = Sensor { powered: false, resolution: 10 };
//!
//! // A body that may fail returns a `Result`.
//! let reading = with(powered(&mut sensor), async |sensor| sensor.read().await).await;
//! assert_eq!(reading, Ok(2150));
//! assert!(!sensor.powered); // exit ran
//!
//! // `?` in the body: give the closure its return type, so that `?` knows its error type.
//! let average = with(powered(&mut sensor), async |sensor| -> Result<u16, Timeout> {
//!     let first = sensor.read().await?;
//!     let second = sensor.read().await?;
//!     Ok((first + second) / 2)
//! })
//! .await;
//! assert_eq!(average, Ok(2150));
//!
//! // A body that cannot fail returns `()` or `Value(v)` and names no error type; only the
//! // manager can fail then, and `into_manager` takes its error out.
//! let resolution = with(powered(&mut sensor), async |sensor| {
//!     sensor.resolution = 12;
//!     Value(sensor.resolution)
//! })
//! .await
//! .map_err(Error::into_manager);
//! assert_eq!(resolution, Ok(12));
//!
//! // A failing body still powers the sensor down, and its error comes back unchanged.
//! let failed = with(powered(&mut sensor), async |_sensor| Err::<u16, _>(Timeout)).await;
//! assert_eq!(failed, Err(Error::Body(Timeout)));
//! assert!(!sensor.powered);
//! # });
//! ```
//!
//! The body is an async closure (`async |r| ..`) or an `async fn` taking `&mut R`. A plain
//! closure that returns `async move { .. }` is refused by the compiler: it cannot say that
//! the block borrows `r`. The body cannot keep the resource: its output cannot borrow it.
//!
//! # What runs when
//!
//! - **Enter fails**: no body, no exit; the result is `Err(Error::Enter(x))`.
//! - **The body returns** (`Ok`, `Err`, `()` or `Value`): exit runs, sees the [`Outcome`],
//!   and is awaited. If the body and exit both fail, [`Error::BodyAndExit`] keeps both
//!   errors.
//! - **The body panics**: with the `std` feature, exit runs with [`Outcome::Panicked`], then
//!   the panic resumes. Without `std`, the panic unwinds through `poll` and exit does not run.
//!   Every panic case is in the table under [`WithFuture`'s `# Panics`](WithFuture#panics).
//! - **A stop signal fires** ([`WithFuture::cancel_on`]): the body's future is dropped, and
//!   exit still runs and is awaited, with [`Outcome::Cancelled`]. This is graceful
//!   cancellation; see [Cancellation](#cancellation).
//! - **The future is dropped** (a `select!`, a timeout, an aborted task): `Drop` cannot await,
//!   so the body's future is dropped, then the resource goes to the synchronous
//!   [`AsyncExit::cancel`] instead of exit. This is abortive cancellation; see
//!   [Cancellation](#cancellation).
//!
//! # Cancellation
//!
//! A `with` can be stopped in two ways.
//!
//! - **Graceful: a stop signal.** `with(m, body).cancel_on(signal)` takes any future as the
//!   signal (a timer, a shutdown channel's receiver, `CancellationToken::cancelled()`); when it
//!   is ready, the body stops and exit **is awaited**, seeing [`Outcome::Cancelled`]: the
//!   ROLLBACK is sent, the buffer flushed, the peer told goodbye. The result is
//!   [`CancelError`]. Nothing is allocated, and [`CancelOn`] has a name.
//! - **Abortive: dropping the future.** Rust cancels a future by dropping it, and `Drop` is
//!   synchronous: no exit can be awaited then. The resource goes to the exit handle's
//!   [`AsyncExit::cancel`] (by default it is dropped), exactly once.
//!
//! | the signal is ready, or the future is dropped, during | graceful ([`cancel_on`](WithFuture::cancel_on)) | abortive (drop) |
//! |---|---|---|
//! | before the first poll | the signal is polled only after the `with` has been | nothing: [`AsyncEnter::enter`] was never called |
//! | enter | the enter future is dropped (its own `Drop` undoes what it had started); no resource exists, nothing exits: [`CancelError::Entering`] | the same, with no output |
//! | the body | the body's future is dropped, the resource still alive; then [`AsyncExit::exit`] runs with [`Outcome::Cancelled`] and is awaited, shielded from the signal (which is not polled again): [`CancelError::Body`], keeping exit's error if it failed | the body's future is dropped, the resource still alive; then it goes to [`AsyncExit::cancel`]; exit does not run |
//! | exit | nothing: exit is shielded (the signal was dropped when exit began). An optional bound, [`CancelOn::abandon_exit_on`], drops the exit future if it is ready first: [`CancelError::ExitAbandoned`] | the exit future is dropped; its own `Drop` cleans up; `cancel` does not run (exit has the resource) |
//! | after `Ready` | nothing | nothing |
//!
//! So after a successful enter, exactly one of `exit` and `cancel` is called, unless the
//! future is leaked (below) or a panic in the manager's own code ends it on the way.
//!
//! **Both ready in the same poll.** Each poll polls the `with` first, then the signal: a body
//! that finished in that poll is not stopped, and exit sees how it really ended.
//!
//! **Signals are dropped as their phase ends**: the stop signal when exit begins (a timer's
//! entry is not held while exit runs), the exit bound when exit ends. A signal is polled only
//! during the phases it guards; a timer given as the exit bound starts when it is created, so
//! create it lazily (`async { sleep(d).await }`) to measure from the start of exit.
//!
//! **Groups and exit stacks** follow the same rules member by member. Stopped in the body,
//! every member of a tuple or an array, and every entry of an [`ExitStack`], exits right to
//! left (newest first), seeing `Cancelled`, or the newest failure once an exit before it has
//! failed (the [rule](group#what-each-exit-sees)). Stopped or dropped while a group enters,
//! the group's enter future is dropped, and the members it had entered get their synchronous
//! `cancel`, right to left. That includes a group unwinding after a member failed to enter:
//! the members entered before it exit inside the group's enter future, so a signal ready then
//! drops the exit under way (as dropping the future during exit would) and cancels the members
//! not yet exited; the result is [`CancelError::Entering`], and the enter error is dropped.
//! Dropped mid-body, every member gets `cancel`.
//!
//! **Panics** and what they leave are in [`WithFuture`'s `# Panics`](WithFuture#panics); a
//! panic while a signal drops the body's future propagates out of `poll` before exit starts,
//! and the resource gets `cancel` when the future is dropped.
//!
//! **Compared with other runtimes.** Python raises `CancelledError` inside the task, so
//! `__aexit__` runs and awaits; `cancel_on` gives that, and the cancellation is a value exit
//! sees, not an exception it might swallow. Trio shields cleanup in a cancel scope with
//! `shield=True` and bounds it with `move_on_after`; here exit is always shielded from the
//! signal, and [`abandon_exit_on`](CancelOn::abandon_exit_on) is the bound. tokio-util's
//! `run_until_cancelled` and `with_cancellation_token` drop the future when the token fires:
//! that is the abortive path, and a transaction under them gets no awaited ROLLBACK.
//!
//! **One-function managers** ([`scoped`]) follow the same table: their teardown (the code
//! after `scope.lend(..).await`) is their exit, so a signal lets it run and await, seeing
//! `Cancelled`; dropped mid-body, the body's future goes first, then the resource, then the
//! closure's future, whose code after the lend does not run (the [docs of `scoped`](fn@scoped) have
//! every case).
//!
//! **Writing `cancel`.** Put there the synchronous part of the cleanup (stop a DMA channel,
//! deassert a chip select, mark a connection as broken), or give [`from_fns`] a hook with
//! [`FromFns::on_cancel`]. Exit should treat [`Outcome::Cancelled`] as incomplete work: roll
//! back, flush, say goodbye.
//!
//! **Leaks.** A future that is leaked (`mem::forget`, a reference cycle, a task that is never
//! polled again and never dropped) runs neither `exit` nor `cancel`. No Rust type can promise
//! cleanup then.
//!
//! # Exit sees how the body ended, for as long as it runs
//!
//! The exit closure of [`from_fns`] (and every [`AsyncExit`]) receives the body's [`Outcome`]:
//! `Success`, `Failure` with the body's error lent, `Panicked` or `Cancelled`. It may await
//! while holding it — report the error, then roll back — with nothing cloned or allocated: the
//! error stays inside the [`WithFuture`], lent until exit has finished, and the caller
//! receives it afterwards. This is Python's
//!
//! ```python
//! async def __aexit__(self, exc_type, exc, tb):
//!     if exc is not None:
//!         await self.conn.send(f"audit: {exc!r}")
//!     await (self.conn.rollback() if exc else self.conn.commit())
//! ```
//!
//! [`Outcome::error`] gives the error as its type when exit knows it (and `None` for another
//! type: match on [`Outcome::failure`] and use [`Failure::downcast`] to tell the two apart).
//!
//! ```
//! use async_with::{Error, Outcome, Status, from_fns, with};
//!
//! #[derive(Debug, PartialEq)]
//! enum DbError { Conflict }
//!
//! struct Conn { sent: Vec<String> }
//!
//! impl Conn {
//!     async fn send(&mut self, line: &str) -> Result<(), DbError> {
//!         self.sent.push(line.to_owned()); // a network round trip in a real client
//!         Ok(())
//!     }
//! }
//!
//! # futures_executor::block_on(async {
//! let mut conn = Conn { sent: Vec::new() };
//! let conn_ref = &mut conn;
//! let tx = from_fns(
//!     async move || {
//!         conn_ref.send("BEGIN").await?;
//!         Ok::<_, DbError>(conn_ref)
//!     },
//!     async |conn: &mut Conn, outcome: Outcome<'_>| {
//!         if let Some(error) = outcome.error::<DbError>() {
//!             conn.send(&format!("audit: {error:?}")).await?; // awaits, the error lent
//!         }
//!         match outcome.status() {
//!             Status::Success => conn.send("COMMIT").await,
//!             _ => conn.send("ROLLBACK").await,
//!         }
//!     },
//! );
//! let result = with(tx, async |conn| -> Result<(), DbError> {
//!     conn.send("UPDATE accounts ..").await?;
//!     Err(DbError::Conflict)
//! })
//! .await;
//! assert_eq!(result, Err(Error::Body(DbError::Conflict))); // the error, after exit
//! assert_eq!(conn.sent, ["BEGIN", "UPDATE accounts ..", "audit: Conflict", "ROLLBACK"]);
//! # });
//! ```
//!
//! Managers that run other exits — [tuples and arrays](group), the exit stack ([`stack`]) —
//! follow one rule for what each exit sees, stated in [`group`](group#what-each-exit-sees).
//!
//! # The pieces
//!
//! | item | what it is |
//! |---|---|
//! | [`with`], [`AsyncEnter::with`] | enter, body, exit; they return a [`WithFuture`] |
//! | [`WithFuture`] | the future: nameable in struct fields, trait methods and generic code; a [`FusedFuture`] |
//! | [`CancelOn`], [`CancelError`] | a `with` given a stop signal ([`WithFuture::cancel_on`]): the body stops, exit is awaited; its error says where the signal ended it |
//! | [`AsyncEnter`] | a manager: [`enter`](AsyncEnter::enter) yields the resource and an exit handle |
//! | [`AsyncExit`] | an exit handle: [`exit`](AsyncExit::exit) releases the resource, seeing the body's [`Outcome`]; [`cancel`](AsyncExit::cancel) is the synchronous release when the future is dropped |
//! | [`scoped`] | Python's `@asynccontextmanager`: a manager written as one async closure — setup, `scope.lend(resource).await`, teardown — sharing its locals; run with [`Scoped::with`] (no allocation) or, with `alloc`, as a manager anywhere. Its parts: [`Scoped`], [`Scope`], [`Lending`], [`ScopeFn`], [`ScopedWith`], [`ScopedCancelOn`]; see [`scoped`](fn@scoped) |
//! | [`from_fns`] | a manager from an async enter closure and an async exit closure; [`FromFns::on_cancel`] adds a cancel hook. Its parts: [`FromFns`], [`FromFnsEnter`], [`FromFnsExit`], [`OnCancel`], [`CancelHook`] |
//! | [`closing`] | Python's `aclosing`: exit calls an async close function on the value. Its parts: [`Closing`], [`ClosingExit`] |
//! | [`null_context`] | Python's `nullcontext`: lends a value, does nothing on exit. Its parts: [`NullContext`], [`NoExit`] |
//! | [`SendManager`] | one bound for a manager whose whole `with` is `Send`, for a library's return type: `impl SendManager<Resource = R, Error = X> + use<>` |
//! | [`Body`] | names a body's future: `impl for<'r> Body<'r, R, Ok = T, Err = E>` for a closure body |
//! | [`BodyOutput`], [`Value`] | what a body may return: `Result<T, E>`, `()` or `Value(t)` |
//! | [`Outcome`], [`Failure`], [`Status`] | how the body ended, as exit sees it for its whole run; [`Failure`] lends the body's error (`{:?}`, [`downcast`](Failure::downcast)); [`Outcome::error`] is the typed look |
//! | [`Error`] | the error of a `with`: [`Enter`](Error::Enter), [`Body`](Error::Body), [`Exit`](Error::Exit) or [`BodyAndExit`](Error::BodyAndExit); [`collapse`](Error::collapse) gives one error of your type; [`map_manager`](Error::map_manager) and [`map_body`](Error::map_body) convert one side |
//! | [`group`]: [`GroupError`], [`Fault`] | tuples and arrays of managers, entered as one; the group's error keeps every member's failure |
//! | [`ExitStack`], [`SendExitStack`], [`CloseErrors`] | (feature `alloc`) managers entered at run time and exited together, Python's `AsyncExitStack`; the rest is in [`stack`] |
//! | [`FusedFuture`] | re-exported from `futures-core`, for `is_terminated` without another dependency |
//!
//! **Errors.** Every failure is kept. Where you want one error of your own type, "collapse"
//! is the verb: [`Error::collapse`], [`Error::collapse_group`], [`Error::collapse_nested`],
//! [`Error::collapse_group_nested`] (a group with a nested `with` inside),
//! [`Error::collapse_stack`] (a `with` over an exit stack),
//! [`GroupError::collapse`] and [`CloseErrors::collapse`] keep the first failure, converted
//! with `Into`, and drop the others.
//!
//! **Several managers.** A tuple `(A, B, ..)` of managers, or an array `[M; N]`, is a
//! manager, and the body gets the tuple (array) of resources. The rules are those of nested
//! `with`s, with no allocation; the [`group`] module has them and an example. Managers that
//! depend on each other (a transaction made from a connection) nest two `with`s.
//!
//! **Managers known only at run time.** With the `alloc` feature, an [`ExitStack`] enters
//! managers one by one ([`ExitStack::enter_context`]), adopts values with an async close,
//! defers async closures, and closes them all in reverse order. It is a manager itself.
//!
//! **Writing a manager.** Write it as one async closure with [`scoped`] (setup and teardown
//! share locals, as in Python's `@asynccontextmanager`), build it from two async closures with
//! [`from_fns`], or implement [`AsyncEnter`] and [`AsyncExit`] by hand with named, poll-based
//! futures, as an embedded HAL would (the example on [`AsyncEnter`]).
//!
//! # Feature flags
//!
//! - `std` (default): a panicking body still runs exit, with [`Outcome::Panicked`], and then
//!   the panic resumes. Implies `alloc`.
//! - `alloc`: the exit stack, [`ExitStack`] and the [`stack`] module; a [`Scoped`] usable as a
//!   manager (one allocation per use). Needs an allocator, not `std`.
//! - `loom`: for the repository's model checker (`loom/`) only; without `--cfg loom` it
//!   changes nothing but compiling loom.
//! - With neither (`default-features = false`), nothing needs `std` or an allocator, and
//!   nothing allocates: [`with`], the managers and the groups all work. A panic in the body
//!   unwinds through `poll` without running exit.
//!
//! ```toml
//! [dependencies]
//! async-with = { version = "0.1", default-features = false } # firmware, Embassy
//! ```
//!
//! The minimum Rust version is 1.85 (async closures, edition 2024).
//!
// Links to the exit stack resolve only with `alloc`; without it they point at the features.
#![cfg_attr(
    feature = "alloc",
    doc = "[`ExitStack`]: crate::ExitStack\n[`SendExitStack`]: crate::SendExitStack\n[`CloseErrors`]: crate::CloseErrors\n[`CloseErrors::collapse`]: crate::CloseErrors::collapse\n[`ExitStack::enter_context`]: crate::ExitStack::enter_context\n[`stack`]: crate::stack\n[`Error::collapse_stack`]: crate::Error::collapse_stack"
)]
#![cfg_attr(
    not(feature = "alloc"),
    doc = "[`ExitStack`]: #feature-flags\n[`SendExitStack`]: #feature-flags\n[`CloseErrors`]: #feature-flags\n[`CloseErrors::collapse`]: #feature-flags\n[`ExitStack::enter_context`]: #feature-flags\n[`stack`]: #feature-flags\n[`Error::collapse_stack`]: #feature-flags"
)]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core,
    clippy::undocumented_unsafe_blocks
)]
// `unsafe` lives in two modules, each allowing it for itself: `lend` (a future's borrow of a
// value beside it: the body's of the resource, an exit's of the outcome) and `stack::arena`
// (the exit stack's entries).
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod body;
mod error;
pub mod group;
mod guard;
#[allow(unsafe_code)]
mod lend;
mod manager;
mod outcome;
mod output;
mod scoped;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod stack;
mod with;

pub use crate::body::Body;
pub use crate::error::Error;
pub use crate::group::{Fault, GroupError};
pub use crate::manager::closing::{Closing, ClosingExit, closing};
pub use crate::manager::from_fns::{
    CancelHook, ExitFn, FromFns, FromFnsEnter, FromFnsExit, OnCancel, from_fns,
};
pub use crate::manager::null_context::{NoExit, NullContext, null_context};
pub use crate::manager::send::SendManager;
pub use crate::manager::{AsyncEnter, AsyncExit};
pub use crate::outcome::{Failure, Outcome, Status};
pub use crate::output::{BodyOutput, Value};
pub use crate::scoped::{Lending, Scope, ScopeFn, Scoped, ScopedCancelOn, ScopedWith, scoped};
#[cfg(feature = "alloc")]
pub use crate::scoped::{ScopedEnter, ScopedExit, ScopedTeardown};
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use crate::stack::{CloseErrors, ExitStack, SendExitStack};
pub use crate::with::{CancelError, CancelOn, WithFuture, with};

/// Re-exported from `futures-core`, so that `is_terminated` can be called without adding that
/// crate: `use async_with::FusedFuture;`.
pub use futures_core::FusedFuture;

// The README's code blocks are compiled and run as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
