//! [`with`] and its future, [`WithFuture`]; the self-borrows it rests on are in `crate::lend`.

use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use futures_core::FusedFuture;
use pin_project_lite::pin_project;

use crate::body::Body;
use crate::error::Error;
use crate::lend::Unborrowing;
use crate::manager::AsyncEnter;
use crate::output::BodyOutput;

mod cancel_error;
mod cancel_on;
mod state;

pub use self::cancel_error::CancelError;
pub use self::cancel_on::CancelOn;
use self::state::{Ended, Finished, State};

/// Enters `manager`, runs `body` with `&mut` to the resource, then exits — Python's
/// `async with manager as resource: body`.
///
/// The body is an async closure, `async |resource| { .. }`, or an `async fn` taking
/// `&mut Resource`. It returns one of three things ([`BodyOutput`]):
///
/// | the body returns | meaning | `with` resolves to |
/// |---|---|---|
/// | `Result<T, E>` | it may fail | `Result<T, Error<X, E>>` |
/// | `()` | it cannot fail and has nothing to return | `Result<(), Error<X, Infallible>>` |
/// | [`Value(t)`](crate::Value) | it cannot fail and returns `t` | `Result<T, Error<X, Infallible>>` |
///
/// where `X` is the manager's error. The returned [`WithFuture`] resolves to `Ok` when enter,
/// body and exit all succeed, and to an [`Error`] that keeps every failure otherwise.
///
/// The future's lifetime `'a` is inferred. It bounds how long the future may live: the
/// resource type must outlive it, and it is the lifetime given to the body's borrow of the
/// resource. To spawn the future (`tokio::spawn`), `'a` must be `'static`, so the manager,
/// the resource and the body must borrow nothing; see
/// [`WithFuture`'s `'a`](WithFuture#the-lifetime-a). What dropping the future does, and how
/// [`cancel_on`](WithFuture::cancel_on) stops it gracefully instead, is in the crate docs'
/// [Cancellation](crate#cancellation).
///
/// # Examples
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Outcome, Status, Value, from_fns, with};
///
/// let log = core::cell::RefCell::new(Vec::new());
/// let door = from_fns(
///     async || {
///         log.borrow_mut().push("open");
///         Ok::<_, ()>(0_u32) // visitors counted while open
///     },
///     async |visitors: u32, status: Outcome<'_>| {
///         log.borrow_mut().push(if status.is_success() { "close" } else { "alarm" });
///         assert_eq!(visitors, 2);
///         Ok(())
///     },
/// );
///
/// let counted = with(door, async |visitors| {
///     *visitors += 2;
///     Value(*visitors) // counting cannot fail
/// })
/// .await;
///
/// assert_eq!(counted, Ok(2));
/// assert_eq!(*log.borrow(), ["open", "close"]);
/// # });
/// ```
///
/// ## A body that cannot fail
///
/// Return `()` or [`Value`](crate::Value): no `Ok(..)`, no error type to name. The body's
/// side of [`Error`] is then [`Infallible`](core::convert::Infallible), so only the manager
/// can fail: [`Error::into_manager`] takes its error out in one call. If the manager cannot
/// fail either ([`null_context`](crate::null_context)), `Err` has no value at all and
/// `let Ok(v) = ..` is irrefutable.
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Error, Outcome, Status, Value, from_fns, null_context, with};
///
/// #[derive(Debug, PartialEq)]
/// struct Busy;
///
/// // A lock that may be busy; the body only increments.
/// let lock = from_fns(async || Ok::<_, Busy>(0_u32), async |_n: u32, _: Outcome<'_>| Ok(()));
/// let result: Result<(), Busy> = with(lock, async |n| *n += 1)
///     .await
///     .map_err(Error::into_manager);
/// assert_eq!(result, Ok(()));
///
/// // Neither side can fail: no `match`, no `unwrap`.
/// let Ok(sum) = with(null_context([1, 2, 3]), async |xs| Value(xs.iter().sum::<i32>())).await;
/// assert_eq!(sum, 6);
/// # });
/// ```
///
/// ## `?` in the body
///
/// Give the closure its return type: `async |r| -> Result<T, E> { .. }` (the braces are then
/// required). An async closure's return type is inferred from its body, and neither `?` nor a
/// final `Ok(v)` says what `E` is: `?` converts its error with `From` into whatever `E` turns
/// out to be, and `Ok(v)` fits every `E`. Without the annotation the compiler stops with
/// "type annotations needed" (E0283). The same holds for `?` in any closure; a
/// turbofish on the final `Ok::<_, E>(v)` works too, and so does a surrounding function whose
/// return type fixes `E`.
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Error, null_context, with};
///
/// #[derive(Debug, PartialEq)]
/// struct NotADigit(u8);
///
/// async fn digit(byte: u8) -> Result<u8, NotADigit> {
///     if byte.is_ascii_digit() { Ok(byte - b'0') } else { Err(NotADigit(byte)) }
/// }
///
/// let parsed = with(null_context(*b"4x"), async |bytes| -> Result<u8, NotADigit> {
///     let tens = digit(bytes[0]).await?;
///     let ones = digit(bytes[1]).await?;
///     Ok(tens * 10 + ones)
/// })
/// .await;
/// assert_eq!(parsed, Err(Error::Body(NotADigit(b'x'))));
/// # });
/// ```
///
/// ## Generic code: the bounds a driver writes
///
/// The body's error must be `Debug + Sync + 'static`: exit receives it lent as a [`Failure`](crate::Failure),
/// which prints it with `{:?}` and can downcast it to its type, and downcasting (`Any`) works
/// only for `'static` types. An error that borrows a local (`&str` into a buffer) has to be
/// mapped to an owned one inside the body. `Sync`, because exit may hold the lent error across
/// its awaits: a future holding `&E` is `Send` only if `E` is `Sync`, and without the bound
/// every exit that awaits would make the whole `with` impossible to spawn. Plain error enums,
/// `std::io::Error` and `Box<dyn Error + Send + Sync>` are `Sync`; an error holding a `Cell`
/// or an `Rc` is not, and `with` refuses it (E0277, "cannot be shared between threads
/// safely"); so is `Box<dyn Error>` without `+ Send + Sync`.
///
/// In a generic driver the error is an associated type, and the compiler assumes neither:
/// without the bounds, `with` fails with E0310 ("the associated type `<BUS as
/// ErrorType>::Error` may not live long enough") or E0277. Write them on the associated type:
/// `BUS::Error: Sync + 'static`. `Debug` usually comes with the trait already (embedded-hal's
/// `ErrorType::Error: Error`, which implies `Debug`). The manager's error needs none of these
/// bounds.
///
/// A chip-select transaction on an embedded-hal-style bus (the traits are declared here to
/// keep the example self-contained; embedded-hal-async's have the same shape):
///
/// ```
/// use core::fmt::Debug;
/// use async_with::{AsyncEnter, Error, Outcome, Status, from_fns, with};
///
/// trait ErrorType {
///     type Error: Debug;
/// }
///
/// trait Bus: ErrorType {
///     async fn select(&mut self) -> Result<(), Self::Error>;
///     async fn transfer(&mut self, byte: u8) -> Result<u8, Self::Error>;
///     async fn deselect(&mut self) -> Result<(), Self::Error>;
/// }
///
/// /// The bus with the chip selected for the duration of a body.
/// fn selected<BUS: Bus>(bus: &mut BUS) -> impl AsyncEnter<Resource = &mut BUS, Error = BUS::Error> {
///     from_fns(
///         async move || {
///             bus.select().await?;
///             Ok(bus)
///         },
///         async |bus: &mut BUS, _status: Outcome<'_>| bus.deselect().await,
///     )
/// }
///
/// /// A generic driver: `BUS::Error: Sync + 'static` are the bounds `with` adds.
/// async fn read_register<BUS>(bus: &mut BUS, register: u8) -> Result<u8, BUS::Error>
/// where
///     BUS: Bus,
///     BUS::Error: Sync + 'static,
/// {
///     with(selected(bus), async |bus| -> Result<u8, BUS::Error> {
///         bus.transfer(register).await?;
///         bus.transfer(0).await
///     })
///     .await
///     .map_err(Error::collapse) // one error type on both sides: the body's if both failed
/// }
///
/// // A bus that echoes what it was sent one transfer later.
/// #[derive(Debug, PartialEq)]
/// struct Nak;
///
/// struct Echo { last: u8, selected: bool }
///
/// impl ErrorType for Echo {
///     type Error = Nak;
/// }
///
/// impl Bus for Echo {
///     async fn select(&mut self) -> Result<(), Nak> { self.selected = true; Ok(()) }
///     async fn transfer(&mut self, byte: u8) -> Result<u8, Nak> {
///         if !self.selected { return Err(Nak) }
///         Ok(core::mem::replace(&mut self.last, byte))
///     }
///     async fn deselect(&mut self) -> Result<(), Nak> { self.selected = false; Ok(()) }
/// }
///
/// # futures_executor::block_on(async {
/// let mut bus = Echo { last: 0, selected: false };
/// assert_eq!(read_register(&mut bus, 0x0f).await, Ok(0x0f));
/// assert!(!bus.selected, "exit deselected the chip");
/// # });
/// ```
pub fn with<'a, M, B, O, T, E>(manager: M, body: B) -> WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: AsyncFnOnce(&mut M::Resource) -> O,
    O: BodyOutput<Ok = T, Err = E>,
    B: for<'r> Body<'r, M::Resource, Ok = T, Err = E>,
    E: fmt::Debug + Sync + 'static,
{
    WithFuture {
        state: State::new(manager, Unborrowing::new(body)),
    }
}

pin_project! {
    /// Future for [`with`] and [`AsyncEnter::with`]: enter, then body, then exit.
    ///
    // One block comment, not `///` lines: pin-project-lite parses each attribute with one
    // step of recursion, and a `///` line per line of these docs would exceed its limit.
    /**
    It resolves to `Result<T, Error<M::Error, E>>` where the body returns `Result<T, E>`.
    A body returning `()` or [`Value(t)`](crate::Value) counts as `Ok(())` or `Ok(t)` with
    `E` = [`Infallible`](core::convert::Infallible): the rows with `Err(e)` cannot happen,
    and exit sees [`Outcome::Success`] (or [`Outcome::Panicked`]).

    | enter | body | exit | output |
    |---|---|---|---|
    | `Err(x)` | not run | not run | `Err(Error::Enter(x))` |
    | `Ok` | `Ok(t)`, `()` or `Value(t)` | `Ok` | `Ok(t)` (`Ok(())` for `()`) |
    | `Ok` | `Ok(t)`, `()` or `Value(t)` | `Err(x)` | `Err(Error::Exit(x))` (`t` is dropped) |
    | `Ok` | `Err(e)` | `Ok` | `Err(Error::Body(e))` |
    | `Ok` | `Err(e)` | `Err(x)` | `Err(Error::BodyAndExit { body: e, exit: x })` |
    | `Ok` | panics (`std`) | runs with [`Outcome::Panicked`] | the panic resumes |
    | `Ok` | panics (no `std`) | not run; `cancel` if the future is then dropped | the panic unwinds through `poll` |
    | `Ok` | future dropped mid-body | not run; [`AsyncExit::cancel`] runs | none (cancelled) |

    Each phase's future is dropped as soon as it completes, before the next phase starts,
    and the body's future is always dropped before the resource it borrows. Nothing happens
    until the first poll: [`AsyncEnter::enter`] is called then. Dropping the future is
    cancellation ([below](#cancellation)); what each panic does is under [Panics](#panics).

    # Cancellation

    Dropping the future is abortive cancellation: the phase under way has its future
    dropped, and a resource entered and not yet exited goes to the synchronous
    [`AsyncExit::cancel`](crate::AsyncExit::cancel), exactly once; dropped during exit, the
    exit future is dropped instead. [`cancel_on`](WithFuture::cancel_on) adds graceful
    cancellation: a stop signal ends the body and exit is still awaited. Both, phase by phase,
    with groups, exit stacks and leaks: the crate docs'
    [Cancellation](crate#cancellation).

    # The lifetime `'a`

    `'a` bounds how long the future may live: a `WithFuture<'a, M, B>` cannot outlive `'a`,
    and the resource type must outlive it (`M::Resource: 'a`). It is the lifetime that the
    body's borrow of the resource is given in the type of the body's future
    (`B: Body<'a, M::Resource>`). The borrow itself ends when the body's future is dropped,
    before exit takes the resource; the body cannot return anything that borrows the resource.

    [`with`] infers `'a`; it is written only where the type is named. A future that is
    spawned (`tokio::spawn`) or kept in a `static` must be `'static`, and so must `'a`: a
    `WithFuture<'static, M, B>`, whose manager, resource and body borrow nothing. A future
    returned from a method that borrows `self` is a `WithFuture<'_, ..>`, as in the trait
    method below.

    # Examples

    Most code just `.await`s it. The type has a name, though, so it can be kept in a struct,
    returned from a trait method, and passed through generic code; it is a
    [`FusedFuture`], re-exported as `async_with::FusedFuture`, so `is_terminated` needs no
    other crate.

    The body's type is a closure's, which has no name. Where it has to be written, write it
    as a type parameter `B` or as `impl for<'r> Body<'r, R, Ok = T, Err = E>` (see
    [`Body`](crate::Body) for why not `impl AsyncFnOnce(&mut R) -> ..`).

    A struct field: the struct takes the manager and body as parameters, with the bounds
    `WithFuture` itself has.

    ```
    # futures_executor::block_on(async {
    use async_with::{AsyncEnter, Body, Value, WithFuture, null_context, with};

    /// A unit of work queued for later, with its label.
    struct Job<'a, M, B>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        label: &'static str,
        run: WithFuture<'a, M, B>,
    }

    let job = Job {
        label: "double",
        run: with(null_context(21), async |n| Value(*n * 2)),
    };
    assert_eq!(job.label, "double");
    let Ok(n) = job.run.await;
    assert_eq!(n, 42);
    # });
    ```

    A trait method: both the manager and the body are `impl Trait` in the return type, so
    the caller still gets a `WithFuture` (and can call `is_terminated`). Returning
    `impl Future<Output = ..>` works too, if callers only `.await` it.

    ```
    use core::convert::Infallible;
    use core::pin::pin;
    use async_with::{AsyncEnter, Body, FusedFuture, Outcome, Status, Value, WithFuture, from_fns, with};

    #[derive(Debug, PartialEq)]
    struct Fault;

    trait Gauge {
        /// Reads the gauge, in tenths.
        fn measure(&self) -> WithFuture<
            '_,
            impl AsyncEnter<Resource = u32, Error = Fault>,
            impl for<'r> Body<'r, u32, Ok = u32, Err = Infallible>,
        >;
    }

    struct Tank { level: u32 }

    impl Gauge for Tank {
        fn measure(&self) -> WithFuture<
            '_,
            impl AsyncEnter<Resource = u32, Error = Fault>,
            impl for<'r> Body<'r, u32, Ok = u32, Err = Infallible>,
        > {
            let gauge = from_fns(async || Ok(self.level), async |_: u32, _: Outcome<'_>| Ok(()));
            with(gauge, async |level| Value(*level * 10))
        }
    }

    # futures_executor::block_on(async {
    let tank = Tank { level: 7 };
    let mut reading = pin!(tank.measure());
    assert!(!reading.is_terminated());
    assert_eq!(reading.as_mut().await, Ok(70));
    assert!(reading.is_terminated());
    # });
    ```

    A generic function that runs the caller's body inside its own manager: it repeats the
    bounds of [`with`]. The `AsyncFnOnce` bound is there for the caller's sake: it lets
    the compiler infer the closure's argument type, so `async |n| ..` needs no annotation.

    ```
    use core::cell::RefCell;
    use core::convert::Infallible;
    use core::fmt::Debug;
    use async_with::{AsyncEnter, Body, BodyOutput, Outcome, Status, WithFuture, from_fns, with};

    /// Runs `body` with a counter starting at zero, and logs the count on exit.
    fn counting<'a, B, O, T, E>(
        log: &'a RefCell<Vec<u32>>,
        body: B,
    ) -> WithFuture<'a, impl AsyncEnter<Resource = u32, Error = Infallible> + 'a, B>
    where
        B: AsyncFnOnce(&mut u32) -> O,
        O: BodyOutput<Ok = T, Err = E>,
        B: for<'r> Body<'r, u32, Ok = T, Err = E>,
        E: Debug + Sync + 'static,
    {
        let counter = from_fns(async || Ok(0), async |count: u32, _status: Outcome<'_>| {
            log.borrow_mut().push(count);
            Ok(())
        });
        with(counter, body)
    }

    # futures_executor::block_on(async {
    let log = RefCell::new(Vec::new());
    let Ok(()) = counting(&log, async |n| *n += 3).await.map_err(|e| e.into_body());
    let failed = counting(&log, async |n| -> Result<(), &'static str> {
        *n += 1;
        Err("out of range")
    })
    .await;
    assert!(failed.is_err());
    assert_eq!(*log.borrow(), [3, 1]);
    # });
    ```

    Do not add `B: Body<'a, R>` next to `B: for<'r> Body<'r, R, ..>` on such a function:
    the compiler then cannot choose between the two (E0283). The higher-ranked bound
    already covers `'a`.

    # Panics

    Polling again after it returned `Ready` panics with "`WithFuture` polled after
    completion".

    For a panic anywhere else, the table below says what runs and what state the future is
    left in. Its last column uses two states:

    - **finished**: `is_terminated` is true; polling again panics with "`WithFuture` polled
      after completion"; dropping runs nothing more.
    - **mid-body**: the resource is still inside, with no body future. Polling again panics
      with "`WithFuture` polled again after a panic escaped an earlier `poll`"; with `std`,
      that panic counts as the body's: exit runs with [`Outcome::Panicked`], then the panic
      resumes, and the future is finished. Dropping it runs `cancel` on the resource.

    | the panic is in | what runs | the future is then |
    |---|---|---|
    | [`AsyncEnter::enter`], the method (called on the first poll) | no exit, no `cancel`: no resource exists. The manager (moved into the call) and the body closure are dropped | finished |
    | the enter future's `poll` | no exit, no `cancel` | entering: polling again polls the enter future again (an `async` block's future then panics with "`async fn` resumed after panicking"); dropping drops it and the body closure |
    | the body closure or the body future (its `poll`, or its destructor when it completes), with `std` | the panic is caught; the body future, if any, is dropped; exit runs with [`Outcome::Panicked`] and is awaited; then the panic resumes with its original payload. An exit error is dropped: the panic is the more severe failure. If the future is dropped while that exit runs, the payload is dropped with it and the panic does not resume | finished |
    | the body future's destructor, after the body panicked, with `std` | this second panic escapes `poll` before exit runs; the first payload is dropped | mid-body |
    | the body closure or the body future (its `poll`, or its destructor when it completes), without `std` | nothing: the panic unwinds through `poll`, and exit does not run | mid-body; but if the body future's `poll` panicked, that future is still there: polling again polls it again (an async closure's future then panics with "`async fn` resumed after panicking"), and dropping drops it before `cancel` |
    | the body future's destructor, while the `WithFuture` is dropped mid-body (with or without `std`) | the body future is dropped and its panic propagates; on the way, `cancel` still runs on the resource. A panic inside that `cancel` aborts the process, as any panic during unwinding does | gone |
    | [`AsyncExit::exit`], the method (called when the body has ended) | no `cancel`: the resource and the exit handle were moved into the call. The body's value or error is dropped; after a body panic (`std`), its payload is dropped and this panic propagates instead | finished |
    | the exit future's `poll` | no `cancel` | exiting: polling again polls the exit future again (an `async` block's future then panics, as above); dropping drops it and the body's value, error or payload |
    | the enter future's destructor, when enter has finished | exit does not run; the resource it produced goes to `cancel` while unwinding (as in the row for the body future's destructor) | finished |
    | the exit future's destructor, when exit has finished | its result is dropped while unwinding; the body's value, error or payload stays inside | exiting, with no exit future: polling again panics with "`WithFuture` polled again after a panic escaped an earlier `poll`"; dropping drops the body's value, error or payload |
    | [`AsyncExit::cancel`] (called while the `WithFuture` is dropped mid-body) | the panic propagates out of the drop; the resource and the exit handle were moved into `cancel` | gone |

    Where panics abort (`panic = "abort"`, as on the Cortex-M targets), none of this happens:
    the first panic ends the program.

    # Auto traits

    `Send` when the manager, the exit handle, the resource, the body and its future, and
    the enter, body and exit futures, and the outputs are; it never requires `Sync` of them.
    It is never `Sync` itself: nothing needs a shared reference to a future, and this way
    the auto trait does not change when some crate in the build turns on `std` (whose
    caught panic payload is only `Send`).

    It is `!Unpin`: the body's future borrows the resource stored inside this future, so it
    must not move once polled. Pin it (`core::pin::pin!`, `Box::pin`) or `.await` it, as
    any async block.
    */
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct WithFuture<'a, M, B>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        #[pin]
        state: State<'a, M, B, Infallible>,
    }

    impl<'a, M, B> PinnedDrop for WithFuture<'a, M, B>
    where
        M: AsyncEnter,
        M::Resource: 'a,
        B: Body<'a, M::Resource>,
    {
        fn drop(this: Pin<&mut Self>) {
            state::drop_state(this.project().state);
        }
    }
}

impl<'a, M, B> Future for WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
{
    type Output = Result<B::Ok, Error<M::Error, B::Err>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(state::poll(self.project().state, cx)) {
            Finished::Enter(error) => Err(Error::Enter(error)),
            Finished::Exited(ended, exited) => match (ended, exited) {
                (Ended::Ok(value), Ok(())) => Ok(value),
                (Ended::Ok(_), Err(exit)) => Err(Error::Exit(exit)),
                (Ended::Err(body), Ok(())) => Err(Error::Body(body)),
                (Ended::Err(body), Err(exit)) => Err(Error::BodyAndExit { body, exit }),
                (Ended::Cancelled(never), _) => match never {},
                #[cfg(feature = "std")]
                (Ended::Panicked(payload), _) => std::panic::resume_unwind(payload),
            },
        })
    }
}

impl<'a, M, B> WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    /// The manager, until the first poll enters it.
    #[inline]
    pub(crate) fn unstarted(self: Pin<&mut Self>) -> Option<&mut M> {
        self.project().state.unstarted()
    }

    /// A `with` of `manager` and a body already known not to borrow its resource in its output.
    #[inline]
    pub(crate) fn from_parts(manager: M, body: Unborrowing<M::Resource, B>) -> Self {
        WithFuture {
            state: State::new(manager, body),
        }
    }
}

impl<'a, M, B> FusedFuture for WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
    B::Err: fmt::Debug + Sync + 'static,
{
    fn is_terminated(&self) -> bool {
        self.state.is_done()
    }
}

impl<'a, M, B> fmt::Debug for WithFuture<'a, M, B>
where
    M: AsyncEnter,
    M::Resource: 'a,
    B: Body<'a, M::Resource>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithFuture")
            .field("phase", &self.state.phase())
            .finish()
    }
}
