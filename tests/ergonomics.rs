//! What a new user writes first (issue: ergonomics): bodies that cannot fail, `?` in a body,
//! a spawnable manager returned from a library, the future stored in a struct, returned from a
//! trait method and named in a generic function, and a generic driver's error bounds.

use core::convert::Infallible;
use core::fmt::Debug;
use core::future::Future;
use core::task::{Context, Poll};
use std::cell::RefCell;
use std::rc::Rc;

use async_with::{
    AsyncEnter, Body, Error, FusedFuture, Outcome, SendManager, Status, Value, WithFuture,
    from_fns, null_context, with,
};

/// A manager whose exit records the status it saw.
fn recorded(
    log: &RefCell<Vec<Status>>,
    enter_fails: bool,
) -> impl AsyncEnter<Resource = u32, Error = &'static str> + '_ {
    from_fns(
        async move || if enter_fails { Err("busy") } else { Ok(1) },
        async |_n: u32, status: Outcome<'_>| {
            log.borrow_mut().push(status.status());
            Ok(())
        },
    )
}

#[test]
fn a_body_returning_unit_is_an_infallible_success() {
    futures_executor::block_on(async {
        let log = RefCell::new(Vec::new());
        let seen = Rc::new(RefCell::new(0));
        let result: Result<(), Error<&str, Infallible>> = with(recorded(&log, false), async |n| {
            *n += 1;
            *seen.borrow_mut() = *n;
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(*seen.borrow(), 2);
        assert_eq!(*log.borrow(), [Status::Success]);
    });
}

#[test]
fn a_value_body_is_an_infallible_success() {
    futures_executor::block_on(async {
        let log = RefCell::new(Vec::new());
        let result: Result<u32, Error<&str, Infallible>> =
            with(recorded(&log, false), async |n| Value(*n * 10)).await;
        assert_eq!(result, Ok(10));
        assert_eq!(*log.borrow(), [Status::Success]);
    });
}

#[test]
fn the_method_form_takes_unit_and_value_bodies_too() {
    futures_executor::block_on(async {
        let Ok(()) = null_context(1).with(async |n| *n += 1).await;
        let Ok(v) = null_context(1).with(async |n| Value(*n + 1)).await;
        assert_eq!(v, 2);
    });
}

#[test]
fn an_infallible_body_with_a_failing_manager_gives_the_manager_error_in_one_call() {
    futures_executor::block_on(async {
        let log = RefCell::new(Vec::new());
        let result = with(recorded(&log, true), async |n| *n += 1)
            .await
            .map_err(Error::into_manager);
        assert_eq!(result, Err("busy"));
        assert!(log.borrow().is_empty(), "no exit after a failed enter");

        let failing_exit = from_fns(
            async || Ok::<_, u8>(0_u8),
            async |_n: u8, _status: Outcome<'_>| Err(7_u8),
        );
        let result = with(failing_exit, async |n| Value(*n))
            .await
            .map_err(Error::into_manager);
        assert_eq!(result, Err(7));
    });
}

#[test]
fn with_both_infallible_the_value_comes_out_without_a_match() {
    futures_executor::block_on(async {
        // `Result<T, Error<Infallible, Infallible>>` has no `Err` value: the pattern is
        // irrefutable.
        let Ok(sum) = with(null_context([1, 2, 3]), async |xs| {
            Value(xs.iter().sum::<i32>())
        })
        .await;
        assert_eq!(sum, 6);
    });
}

#[derive(Debug, PartialEq)]
struct ParseError;

async fn parse_digit(byte: u8) -> Result<u8, ParseError> {
    if byte.is_ascii_digit() {
        Ok(byte - b'0')
    } else {
        Err(ParseError)
    }
}

#[test]
fn question_mark_in_a_body_with_an_explicit_return_type() {
    futures_executor::block_on(async {
        let digits = with(
            null_context(*b"42"),
            async |bytes| -> Result<u8, ParseError> {
                let tens = parse_digit(bytes[0]).await?;
                let ones = parse_digit(bytes[1]).await?;
                Ok(tens * 10 + ones)
            },
        )
        .await;
        assert_eq!(digits, Ok(42));

        let bad = with(
            null_context(*b"4x"),
            async |bytes| -> Result<u8, ParseError> {
                let tens = parse_digit(bytes[0]).await?;
                let ones = parse_digit(bytes[1]).await?;
                Ok(tens * 10 + ones)
            },
        )
        .await
        .map_err(Error::into_body);
        assert_eq!(bad, Err(ParseError));
    });
}

/// What a library exports: a spawnable manager, its lifetime captures cut with `use<>`.
fn connect(peer: &str) -> impl SendManager<Resource = String, Error = std::io::Error> + use<> {
    let peer = peer.to_owned();
    from_fns(
        async move || Ok(peer),
        async |_peer: String, _status: Outcome<'_>| Ok(()),
    )
}

#[test]
fn a_returned_send_manager_can_be_spawned_on_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let peer = String::from("db.local"); // dropped before the task runs: nothing borrowed
    let task = runtime.spawn(with(connect(&peer), async |conn| {
        tokio::task::yield_now().await;
        Ok::<_, std::io::Error>(conn.len())
    }));
    drop(peer);
    let len = runtime.block_on(task).unwrap().map_err(|e| e.to_string());
    assert_eq!(len, Ok(8));
}

/// A struct that keeps a `with` future of a known manager; the body stays a type parameter,
/// bounded by `Body` at the lifetime the struct is instantiated at.
struct Job<'a, B>
where
    B: Body<'a, u32>,
{
    id: u32,
    future: WithFuture<'a, async_with::NullContext<u32>, B>,
}

/// A generic function returning the future: the body named by its `Body` bound.
fn doubled<'a, B>(start: u32, body: B) -> WithFuture<'a, async_with::NullContext<u32>, B>
where
    B: AsyncFnOnce(&mut u32) -> Result<u32, Infallible>,
    B: for<'r> Body<'r, u32, Ok = u32, Err = Infallible>,
{
    with(null_context(start * 2), body)
}

#[test]
fn the_future_is_stored_named_and_polled_by_hand() {
    let job = Job {
        id: 1,
        future: with(null_context(5), async |n| Value(*n + 1)),
    };
    assert_eq!(job.id, 1);
    let mut future = Box::pin(job.future);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(!future.is_terminated());
    assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(6)));
    assert!(
        future.is_terminated(),
        "FusedFuture is re-exported and callable"
    );

    let result = futures_executor::block_on(doubled(5, async |n: &mut u32| Ok(*n + 1)));
    assert_eq!(result, Ok(11));
}

/// A trait method returning the future (as a driver trait would).
trait Reader {
    fn read(&self) -> impl Future<Output = Result<u32, Error<Infallible, Infallible>>>;
}

struct Fixed(u32);

impl Reader for Fixed {
    fn read(&self) -> impl Future<Output = Result<u32, Error<Infallible, Infallible>>> {
        with(null_context(self.0), async |n| Value(*n))
    }
}

#[test]
fn a_trait_method_returns_the_future() {
    let Ok(n) = futures_executor::block_on(Fixed(9).read());
    assert_eq!(n, 9);
}

/// An embedded-hal-style trait: the bus's error is an associated type.
trait ErrorType {
    type Error: Debug;
}

trait Bus: ErrorType {
    async fn transfer(&mut self, byte: u8) -> Result<u8, Self::Error>;
}

/// A generic driver: the only bounds the body's error adds are `Sync + 'static`.
async fn read_register<BUS>(bus: BUS) -> Result<u8, Error<Infallible, BUS::Error>>
where
    BUS: Bus,
    BUS::Error: Sync + 'static,
{
    with(null_context(bus), async |bus| bus.transfer(0x0f).await).await
}

#[derive(Debug, PartialEq)]
struct NoAck;

struct Echo(bool);

impl ErrorType for Echo {
    type Error = NoAck;
}

impl Bus for Echo {
    async fn transfer(&mut self, byte: u8) -> Result<u8, NoAck> {
        if self.0 { Ok(byte) } else { Err(NoAck) }
    }
}

#[test]
fn a_generic_driver_compiles_with_a_static_bound_on_the_bus_error() {
    futures_executor::block_on(async {
        assert_eq!(read_register(Echo(true)).await, Ok(0x0f));
        assert_eq!(read_register(Echo(false)).await, Err(Error::Body(NoAck)));
    });
}

/// `std` is a default feature, so plain `cargo test` builds and runs this (CI also runs the
/// suite with `--no-default-features`, where it is left out).
#[cfg(feature = "std")]
#[test]
fn with_default_features_a_panicking_body_still_runs_exit() {
    let log = RefCell::new(Vec::new());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures_executor::block_on(with(recorded(&log, false), async |_n| -> () {
            panic!("body panicked")
        }))
    }));
    assert!(caught.is_err());
    assert_eq!(*log.borrow(), [Status::Panicked]);
}
