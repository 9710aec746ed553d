//! The benchmark scenarios, shared by `benches/with.rs` (time), `examples/bench_table.rs`
//! (sizes, allocations) and `benches/callgrind.sh` (instruction counts).
//!
//! One enter–body–exit cycle is written four ways, with the same manager, body and semantics
//! (enter error, body error, exit error, both):
//!
//! - `with`: this crate's `WithFuture`;
//! - `async_fn`: one generic `async fn` taking an async closure — the compiler's own state
//!   machine, the practical limit;
//! - `boxed`: the body boxed as `Pin<Box<dyn Future>>` on every call, the style of sqlx's
//!   transaction helpers and of `async-trait`;
//! - `combinators`: futures-util's `and_then`/`then` chain; the body takes the resource by value
//!   and hands it back, because a combinator cannot lend it.
//!
//! Scenario (h) writes cycle (b) a fifth way, as a one-function manager (`scoped`).

#![allow(dead_code)] // each user of this module uses a different part of it

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

use async_with::{AsyncEnter, AsyncExit, CancelError, Error, Failure, Outcome, scoped, with};
use futures_util::{FutureExt, TryFutureExt};

/// A future that is `Pending` once (after waking) when `pending`, then `Ready(value)`: a
/// yield to the executor, like a peripheral or socket that is not ready on the first poll.
pub struct Step<T> {
    value: Option<T>,
    pending: bool,
}

impl<T> Step<T> {
    pub fn new(value: T, pending: bool) -> Self {
        Step {
            value: Some(value),
            pending,
        }
    }
}

impl<T: Unpin> Future for Step<T> {
    type Output = T;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if self.pending {
            self.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.value.take().expect("Step polled after completion"))
    }
}

/// The resource: a counter the body increments.
#[derive(Debug)]
pub struct Counter {
    pub n: u64,
}

/// The failure of every phase in these scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

/// The manager: enter opens a counter, exit commits (success) or rolls back (failure).
#[derive(Clone, Copy)]
pub struct Open {
    pub pending: bool,
}

/// The exit handle of [`Open`].
pub struct Close {
    pending: bool,
}

impl AsyncEnter for Open {
    type Resource = Counter;
    type Error = Fault;
    type Exit = Close;
    type Enter = Step<Result<(Counter, Close), Fault>>;

    #[inline]
    fn enter(self) -> Self::Enter {
        let close = Close {
            pending: self.pending,
        };
        Step::new(Ok((Counter { n: 0 }, close)), self.pending)
    }
}

impl AsyncExit<Counter> for Close {
    type Error = Fault;
    type Future<'o> = Step<Result<(), Fault>>;

    #[inline]
    fn exit<'o>(self, counter: Counter, outcome: Outcome<'o>) -> Self::Future<'o> {
        // Commit or roll back: either way the counter is consumed.
        core::hint::black_box((counter.n, outcome.is_success()));
        Step::new(Ok(()), self.pending)
    }
}

/// The body: one step, one increment, then success or failure.
pub async fn body(counter: &mut Counter, pending: bool, fail: bool) -> Result<u64, Fault> {
    Step::new((), pending).await;
    counter.n += 1;
    if fail { Err(Fault) } else { Ok(counter.n) }
}

/// The body for the combinator chain: takes the resource and gives it back.
pub async fn body_owned(
    mut counter: Counter,
    pending: bool,
    fail: bool,
) -> (Counter, Result<u64, Fault>) {
    let out = body(&mut counter, pending, fail).await;
    (counter, out)
}

/// What the cycle returns in every variant (`X`: the manager's error).
pub type Out<T, E, X = Fault> = Result<T, Error<X, E>>;

fn combine<T, E>(body: Result<T, E>, exit: Result<(), Fault>) -> Out<T, E> {
    match (body, exit) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(exit)) => Err(Error::Exit(exit)),
        (Err(body), Ok(())) => Err(Error::Body(body)),
        (Err(body), Err(exit)) => Err(Error::BodyAndExit { body, exit }),
    }
}

fn outcome<T, E: core::fmt::Debug + Sync + 'static>(out: &Result<T, E>) -> Outcome<'_> {
    match out {
        Ok(_) => Outcome::Success,
        Err(error) => Outcome::Failure(Failure::new(error)),
    }
}

/// The same cycle as one generic `async fn`.
pub async fn async_fn_with<T, E: core::fmt::Debug + Sync + 'static>(
    manager: Open,
    body: impl AsyncFnOnce(&mut Counter) -> Result<T, E>,
) -> Out<T, E> {
    let (mut counter, close) = manager.enter().await.map_err(Error::Enter)?;
    let out = body(&mut counter).await;
    let exited = close.exit(counter, outcome(&out)).await;
    combine(out, exited)
}

/// A stop signal that never fires: always `Pending` (it never wakes the task either; the
/// phases it guards do).
pub struct Never;

impl Future for Never {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// What a cycle with a stop signal returns.
pub type Stoppable<T, E> = Result<T, CancelError<Fault, E>>;

/// Scenario (g): cycle (b) given a stop signal that never fires.
pub fn with_signal(pending: bool) -> impl Future<Output = Stoppable<u64, Fault>> {
    with(Open { pending }, async move |c| {
        body(c, pending, false).await
    })
    .cancel_on(Never)
}

pub fn async_fn_select(pending: bool) -> impl Future<Output = Stoppable<u64, Fault>> {
    async_fn_select_with(Open { pending }, Never, async move |c| {
        body(c, pending, false).await
    })
}

/// Polls `future`, then `signal`: `Some(output)`, or `None` once the signal is ready first.
/// The hand-written `select` an `async fn` needs for a stop signal.
struct First<'s, F, S> {
    future: Pin<&'s mut F>,
    signal: Pin<&'s mut S>,
}

impl<F: Future, S: Future> Future for First<'_, F, S> {
    type Output = Option<F::Output>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        match self.signal.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The same cycle as [`async_fn_with`], stopped gracefully by `signal`: the practical limit for
/// `cancel_on`.
pub async fn async_fn_select_with<T, E: core::fmt::Debug + Sync + 'static>(
    manager: Open,
    signal: impl Future,
    body: impl AsyncFnOnce(&mut Counter) -> Result<T, E>,
) -> Stoppable<T, E> {
    // In an `Option`, to be dropped when exit begins, as `cancel_on` drops it.
    let mut signal = pin!(Some(signal));
    let entered = {
        let mut enter = pin!(manager.enter());
        First {
            future: enter.as_mut(),
            signal: signal.as_mut().as_pin_mut().expect("the signal"),
        }
        .await
    };
    let (mut counter, close) = match entered {
        Some(entered) => entered.map_err(|x| CancelError::Failed(Error::Enter(x)))?,
        None => return Err(CancelError::Entering),
    };
    let ended = {
        let mut running = pin!(body(&mut counter));
        First {
            future: running.as_mut(),
            signal: signal.as_mut().as_pin_mut().expect("the signal"),
        }
        .await
    };
    signal.set(None);
    match ended {
        Some(out) => {
            let exited = close.exit(counter, outcome(&out)).await;
            combine(out, exited).map_err(CancelError::Failed)
        }
        None => {
            let exited = close.exit(counter, Outcome::Cancelled).await;
            Err(CancelError::Body { exit: exited.err() })
        }
    }
}

/// A boxed body, as `sqlx`-style helpers take it.
pub type BoxedBody<'c, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + 'c>>;

/// The same cycle with the body boxed on every call.
pub async fn boxed_with<T, E: core::fmt::Debug + Sync + 'static>(
    manager: Open,
    body: impl for<'c> FnOnce(&'c mut Counter) -> BoxedBody<'c, T, E>,
) -> Out<T, E> {
    let (mut counter, close) = manager.enter().await.map_err(Error::Enter)?;
    let out = body(&mut counter).await;
    let exited = close.exit(counter, outcome(&out)).await;
    combine(out, exited)
}

/// The same cycle as a futures-util combinator chain.
pub fn combinators(pending: bool, fail: bool) -> impl Future<Output = Out<u64, Fault>> {
    Open { pending }
        .enter()
        .map_err(Error::Enter)
        .and_then(move |(counter, close)| {
            body_owned(counter, pending, fail).then(move |(counter, out)| {
                let exit = close.exit(counter, outcome(&out));
                exit.map(move |exited| combine(out, exited))
            })
        })
}

/// Scenario cycles (a)–(c): one manager; `pending` makes every phase yield once; `fail`
/// makes the body fail so that exit rolls back.
pub fn with_future(pending: bool, fail: bool) -> impl Future<Output = Out<u64, Fault>> {
    with(Open { pending }, async move |c| {
        body(c, pending, fail).await
    })
}

pub fn async_fn(pending: bool, fail: bool) -> impl Future<Output = Out<u64, Fault>> {
    async_fn_with(Open { pending }, async move |c| {
        body(c, pending, fail).await
    })
}

pub fn boxed(pending: bool, fail: bool) -> impl Future<Output = Out<u64, Fault>> {
    boxed_with(Open { pending }, move |c| Box::pin(body(c, pending, fail)))
}

/// Scenario (h): cycle (b) as a one-function manager, `scoped(..).with(body)`. Compared with
/// (b)'s `with` ([`with_future`]) and (b)'s `async fn` ([`async_fn`]), reused as they are.
///
/// How it maps to (b), phase by phase:
///
/// - setup is [`Open::enter`]: one `Step` (`Pending` once when `pending`) that yields the
///   counter or a `Fault` (`?`: the closure's error before the lend is `Error::Enter`);
/// - the body is (b)'s, the same closure;
/// - teardown is [`Close::exit`]: the same `black_box` of the counter and the outcome, then
///   one `Step` yielding `Ok(())` or a `Fault` (`Error::Exit`).
///
/// The local `opened`, taken at setup and added at teardown, is what setup shares with
/// teardown here; in (b) that is the exit handle `Close`, which the `with` keeps and the
/// `async fn` holds across the body as a local, so neither needs extra work to match it (the
/// counter starts at 0 in every variant; keeping `opened` and adding it costs 3 instructions
/// per cycle under callgrind).
pub fn scoped_with(pending: bool) -> impl Future<Output = Out<u64, Fault>> {
    scoped(async move |scope| {
        let counter = Step::new(Ok::<_, Fault>(Counter { n: 0 }), pending).await?;
        let opened = counter.n;
        let (counter, outcome) = scope.lend(counter).await;
        core::hint::black_box((counter.n + opened, outcome.is_success()));
        Step::new(Ok::<(), Fault>(()), pending).await
    })
    .with(async move |c| body(c, pending, false).await)
}

/// The nested error: three managers, newest outermost.
pub type Nested = Out<u64, Error<Fault, Error<Fault, Fault>>>;

/// Scenario (d): three managers nested, every phase yielding once when `pending`.
pub fn with_future_nested(pending: bool) -> impl Future<Output = Nested> {
    with(Open { pending }, async move |a| {
        with(Open { pending }, async move |b| {
            with(Open { pending }, async move |c| {
                let n = body(c, pending, false).await?;
                Ok(n + a.n + b.n)
            })
            .await
        })
        .await
    })
}

/// The error of three managers as a tuple.
pub type Tuple3 = Out<
    u64,
    Fault,
    async_with::GroupError<(
        Option<async_with::Fault<Fault>>,
        Option<async_with::Fault<Fault>>,
        Option<async_with::Fault<Fault>>,
    )>,
>;

/// Scenario (e): the three managers of (d) as one tuple, every phase yielding once when
/// `pending`.
pub fn with_future_tuple(pending: bool) -> impl Future<Output = Tuple3> {
    with(
        (Open { pending }, Open { pending }, Open { pending }),
        async move |(a, b, c)| {
            let n = body(c, pending, false).await?;
            Ok(n + a.n + b.n)
        },
    )
}

pub fn async_fn_nested(pending: bool) -> impl Future<Output = Nested> {
    async_fn_with(Open { pending }, async move |a| {
        async_fn_with(Open { pending }, async move |b| {
            async_fn_with(Open { pending }, async move |c| {
                let n = body(c, pending, false).await?;
                Ok(n + a.n + b.n)
            })
            .await
        })
        .await
    })
}

pub fn boxed_nested(pending: bool) -> impl Future<Output = Nested> {
    // A boxed body cannot capture a borrow from an outer body (the box would have to outlive
    // every lifetime of its argument), so each level copies what the inner one needs.
    boxed_with(Open { pending }, move |a| {
        let an = a.n;
        Box::pin(async move {
            boxed_with(Open { pending }, move |b| {
                let outer = an + b.n;
                Box::pin(async move {
                    boxed_with(Open { pending }, move |c| {
                        Box::pin(async move {
                            let n = body(c, pending, false).await?;
                            Ok(n + outer)
                        })
                    })
                    .await
                })
            })
            .await
        })
    })
}

/// Polls `future` to completion with a no-op waker, so that the executor costs next to
/// nothing. Every `Pending` here has already woken itself.
#[inline]
pub fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario (f): N managers entered and closed through an `ExitStack` (feature `alloc`), against
// N nested `with`s where N is static. Each manager is the `Open` above; every manager but the
// newest gets one increment, and the newest runs `body` (one step, one increment), so both
// forms do the same work and return N.

#[cfg(feature = "alloc")]
#[allow(unused_imports)] // `benches/with.rs` uses none of it
pub use self::stack::*;

#[cfg(feature = "alloc")]
mod stack {
    use core::future::Future;

    use async_with::{CloseErrors, Error, ExitStack, with};

    use super::{Fault, Open, Out, body};

    /// What a stack cycle returns: the body's (or an enter's) `Fault`, or every failure of
    /// the close.
    pub type StackOut = Out<u64, Fault, CloseErrors<Fault>>;

    /// Enters `n` managers on `stack`, in a loop.
    pub async fn enter_n(
        stack: &ExitStack<'_, Fault>,
        n: usize,
        pending: bool,
    ) -> Result<u64, Fault> {
        let mut sum = 0;
        for i in 0..n {
            let counter = stack.enter_context(Open { pending }).await?;
            if i + 1 < n {
                counter.n += 1;
                sum += counter.n;
            } else {
                sum += body(counter, pending, false).await?;
            }
        }
        Ok(sum)
    }

    /// `n` managers on a stack used as a manager: `with(ExitStack::new(), ..)` closes it after
    /// the body, each exit seeing the body's outcome.
    pub fn stack_with(n: usize, pending: bool) -> impl Future<Output = StackOut> {
        with(ExitStack::<Fault>::new(), async move |stack| {
            enter_n(stack, n, pending).await
        })
    }

    /// `n` managers on a local stack closed explicitly with `close().await` (an enter or body
    /// failure returns early and drops the stack, which cancels instead of closing).
    pub async fn stack_close(n: usize, pending: bool) -> StackOut {
        let mut stack = ExitStack::<Fault>::new();
        let sum = enter_n(&stack, n, pending).await.map_err(Error::Body)?;
        stack.close().await.map_err(Error::Exit)?;
        Ok(sum)
    }
}

/// `with`s nested as deep as there are tokens after `;` — N static. The innermost runs `body`;
/// each outer one increments its counter and adds it to what the inner returned.
macro_rules! nested_with {
    ($pending:ident; $_last:tt) => {
        with(Open { pending: $pending }, async move |c| {
            body(c, $pending, false).await
        })
    };
    ($pending:ident; $_head:tt $($rest:tt)+) => {
        with(Open { pending: $pending }, async move |c| {
            c.n += 1;
            let n = c.n;
            nested_with!($pending; $($rest)+).await.map(|m| m + n)
        })
    };
}

/// Scenario (f), N = 1, as one `with`: the baseline of the stack with one entry.
pub fn nested_with_1(pending: bool) -> impl Future<Output = Result<u64, impl core::fmt::Debug>> {
    nested_with!(pending; x)
}

/// Scenario (f), N = 10, as ten nested `with`s.
pub fn nested_with_10(pending: bool) -> impl Future<Output = Result<u64, impl core::fmt::Debug>> {
    nested_with!(pending; x x x x x x x x x x)
}
