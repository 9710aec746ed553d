//! The semantic contract, rule by rule (SPEC section 3, S1-S9 and S15-S17).
//!
//! Every schedule is driven by a hand poll loop with a counting waker; the scripted manager's
//! phases return `Pending` before `Ready`, and the harness checks that each `Pending` came
//! with a wake. Single-threaded and small, so that it runs under Miri.

mod support;

use core::convert::Infallible;
use core::future::{Future, Ready, ready};
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use std::cell::{Cell, RefCell};

use async_with::{
    AsyncEnter, AsyncExit, Error, Failure, Outcome, Status, closing, from_fns, null_context, with,
};
use futures_core::FusedFuture;

use support::Event::*;
use support::{
    After, BodyError, DropCount, Event, Fail, Harness, Log, Res, Scripted, TrackedBody, Yield,
};

fn exit_start(status: Status, value: u32) -> Event {
    ExitStart {
        status,
        value,
        failure: None,
    }
}

fn exit_failed(value: u32, failure: &str) -> Event {
    ExitStart {
        status: Status::Failure,
        value,
        failure: Some(failure.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// S1 Order
// ---------------------------------------------------------------------------------------------

#[test]
fn s1_order_across_suspensions() {
    let log = Log::new();
    let manager = Scripted::new(&log)
        .initial(10)
        .enter_pending(2)
        .exit_pending(3);
    let body_log = log.clone();
    let mut future = pin!(with(manager, async |res| {
        body_log.push(BodyStart);
        res.value += 1;
        Yield::logged(&body_log, 2).await;
        res.value += 1;
        Yield::logged(&body_log, 1).await;
        res.value += 1;
        body_log.push(BodyEnd);
        Ok::<_, BodyError>(res.value * 2)
    }));
    let mut h = Harness::new();

    // Nothing happens before the first poll: enter is called then.
    assert!(log.is_empty());

    // Enter: two suspensions.
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(log.events(), [EnterStart, EnterPending]);
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(log.events(), [EnterStart, EnterPending, EnterPending]);

    // Enter completes, the body starts in the same poll and suspends.
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(
        log.events()[3..],
        [EnterReady, EnterDrop, BodyStart, Yielded]
    );
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(log.events()[7..], [Yielded, Yielded]);

    // The body ends, exit starts in the same poll, sees the body's changes, and suspends.
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(
        log.events()[9..],
        [BodyEnd, exit_start(Status::Success, 13), ExitPending]
    );
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(log.len(), 14);

    // Exit completes: the with future is ready.
    assert_eq!(h.poll_once(future.as_mut()), Poll::Ready(Ok(26)));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterPending,
            EnterPending,
            EnterReady,
            EnterDrop,
            BodyStart,
            Yielded,
            Yielded,
            Yielded,
            BodyEnd,
            exit_start(Status::Success, 13),
            ExitPending,
            ExitPending,
            ExitPending,
            ResourceDrop(13),
            ExitReady,
            ExitDrop,
        ]
    );
    // 2 (enter) + 3 (body) + 3 (exit) suspensions, each with a wake, and one final poll.
    assert_eq!(h.pendings, 8);
    assert_eq!(h.wakes(), 8);
    assert_eq!(h.polls, 9);
}

#[test]
fn s1_no_suspension_completes_in_one_poll() {
    let log = Log::new();
    let body_log = log.clone();
    let mut future = pin!(with(Scripted::new(&log).initial(1), async |res| {
        body_log.push(BodyStart);
        res.value = 5;
        Ok::<_, BodyError>(())
    }));
    let mut h = Harness::new();
    assert_eq!(h.poll_once(future.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            BodyStart,
            exit_start(Status::Success, 5),
            ResourceDrop(5),
            ExitReady,
            ExitDrop,
        ]
    );
    assert_eq!(h.wakes(), 0);
}

#[test]
fn s1_body_gets_the_entered_resource_by_mut() {
    // The very object enter produced reaches the body (same address as the resource
    // enter's future created, seen through the `&mut`), and the body's writes reach exit.
    let log = Log::new();
    let seen_by_body = Cell::new(0_u32);
    let (out, _) = support::run(with(Scripted::new(&log).initial(7), async |res| {
        seen_by_body.set(res.value);
        res.value *= 3;
        Yield::new(1).await;
        res.value += 1;
        Ok::<_, BodyError>(res.value)
    }));
    assert_eq!(out, Ok(22));
    assert_eq!(seen_by_body.get(), 7);
    assert_eq!(log.count(|e| *e == exit_start(Status::Success, 22)), 1);
}

#[test]
fn s1_method_form_is_the_same_schedule() {
    let log = Log::new();
    let body_log = log.clone();
    let (out, h) = support::run(Scripted::new(&log).enter_pending(1).exit_pending(1).with(
        async |res: &mut Res| {
            body_log.push(BodyStart);
            Yield::new(1).await;
            Ok::<_, BodyError>(res.value + 1)
        },
    ));
    assert_eq!(out, Ok(1));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterPending,
            EnterReady,
            EnterDrop,
            BodyStart,
            exit_start(Status::Success, 0),
            ExitPending,
            ResourceDrop(0),
            ExitReady,
            ExitDrop,
        ]
    );
    assert_eq!((h.pendings, h.wakes()), (3, 3));
}

// ---------------------------------------------------------------------------------------------
// S2 Enter fails
// ---------------------------------------------------------------------------------------------

#[test]
fn s2_enter_error_skips_body_and_exit() {
    let log = Log::new();
    let ran = Cell::new(false);
    let body_ran = &ran;
    let captured = DropCount::new();
    let witness = captured.witness();
    let manager = Scripted::new(&log)
        .enter_pending(2)
        .enter_fails("no device");
    let mut future = pin!(with(manager, async move |_res| {
        let _witness = witness;
        body_ran.set(true);
        Ok::<_, BodyError>(())
    }));
    let mut h = Harness::new();
    let out = h.poll_to_end(future.as_mut());
    assert_eq!(out, Err(Error::Enter("no device")));
    assert!(!body_ran.get());
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterPending,
            EnterPending,
            EnterReady,
            EnterDrop
        ]
    );
    assert_eq!((h.pendings, h.wakes()), (2, 2));
    assert!(future.is_terminated());
    // The unused body (and what it captured) is gone, without a call.
    assert_eq!(captured.get(), 1);
    assert!(!body_ran.get());
}

#[test]
fn s2_enter_error_reaches_caller_unchanged() {
    #[derive(Debug, PartialEq)]
    struct Detailed {
        code: u16,
        text: String,
    }
    let manager = from_fns(
        async || -> Result<u32, Detailed> {
            Yield::new(1).await;
            Err(Detailed {
                code: 503,
                text: "busy".to_owned(),
            })
        },
        async |_n: u32, _status: Outcome<'_>| -> Result<(), Detailed> {
            panic!("exit must not run after a failed enter")
        },
    );
    let (out, _) = support::run(with(manager, async |_n| -> Result<(), BodyError> {
        panic!("the body must not run after a failed enter")
    }));
    let Err(Error::Enter(error)) = out else {
        panic!("expected an enter error, got {out:?}")
    };
    assert_eq!(
        error,
        Detailed {
            code: 503,
            text: "busy".to_owned()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// S3 Exit exactly once
// ---------------------------------------------------------------------------------------------

fn exits(log: &Log) -> usize {
    log.count(|e| matches!(e, ExitStart { .. }))
}

fn cancels(log: &Log) -> usize {
    log.count(|e| matches!(e, Cancel(_)))
}

#[test]
fn s3_exit_once_after_ok() {
    let log = Log::new();
    {
        let mut future = pin!(with(Scripted::new(&log).exit_pending(2), async |res| {
            Yield::new(1).await;
            Ok::<_, BodyError>(res.value)
        }));
        assert_eq!(support::poll_to_end(future.as_mut()), Ok(0));
        assert_eq!(exits(&log), 1);
    }
    // Dropping the finished future runs nothing more.
    assert_eq!(exits(&log), 1);
    assert_eq!(cancels(&log), 0);
    assert_eq!(log.count(|e| *e == ResourceDrop(0)), 1);
    assert_eq!(log.events().last(), Some(&ExitDrop));
}

#[test]
fn s3_exit_once_after_err() {
    let log = Log::new();
    {
        let mut future = pin!(with(
            Scripted::new(&log).initial(4).exit_pending(2),
            async |res| {
                Yield::new(1).await;
                Err::<(), _>(BodyError(res.value))
            }
        ));
        assert_eq!(
            support::poll_to_end(future.as_mut()),
            Err(Error::Body(BodyError(4)))
        );
        assert_eq!(exits(&log), 1);
    }
    assert_eq!(exits(&log), 1);
    assert_eq!(cancels(&log), 0);
    assert_eq!(log.count(|e| *e == exit_failed(4, "BodyError(4)")), 1);
    assert_eq!(log.count(|e| *e == ResourceDrop(4)), 1);
}

#[test]
fn s3_exit_once_after_immediate_err() {
    // The body fails on its first poll, without suspending.
    let log = Log::new();
    let (out, h) = support::run(with(Scripted::new(&log).exit_pending(1), async |_res| {
        Err::<(), _>(BodyError(1))
    }));
    assert_eq!(out, Err(Error::Body(BodyError(1))));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            exit_failed(0, "BodyError(1)"),
            ExitPending,
            ResourceDrop(0),
            ExitReady,
            ExitDrop,
        ]
    );
    assert_eq!(h.pendings, 1);
}

#[derive(Debug, PartialEq)]
struct Payload(u32);

#[cfg(feature = "std")]
#[test]
fn s3_panic_runs_exit_then_resumes_payload() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let log = Log::new();
    let body_log = log.clone();
    let mut future = Box::pin(with(
        Scripted::new(&log).initial(3).exit_pending(2),
        async move |res| {
            let _guard = body_log.on_drop(BodyDrop);
            body_log.push(BodyStart);
            Yield::new(1).await;
            if res.value == 3 {
                std::panic::panic_any(Payload(42));
            }
            Ok::<u32, BodyError>(res.value)
        },
    ));
    let mut h = Harness::new();
    let caught = catch_unwind(AssertUnwindSafe(|| h.poll_to_end(future.as_mut())));
    let payload = caught.expect_err("the body's panic resumes after exit");
    assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(42)));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            BodyStart,
            BodyDrop,
            exit_start(Status::Panicked, 3),
            ExitPending,
            ExitPending,
            ResourceDrop(3),
            ExitReady,
            ExitDrop,
        ]
    );
    // The panic surfaced only after exit completed: 1 (body) + 2 (exit) suspensions.
    assert_eq!((h.pendings, h.wakes()), (3, 3));
    assert!(future.is_terminated());
    drop(future);
    assert_eq!(exits(&log), 1);
    assert_eq!(cancels(&log), 0);
}

#[cfg(feature = "std")]
fn panics_before_its_future(_res: &mut Res) -> Ready<Result<u32, BodyError>> {
    std::panic::panic_any(Payload(7))
}

#[cfg(feature = "std")]
#[test]
fn s3_panic_while_creating_body_future_runs_exit() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let log = Log::new();
    let mut future = Box::pin(with(
        Scripted::new(&log).enter_pending(1).exit_pending(1),
        panics_before_its_future,
    ));
    let mut h = Harness::new();
    let caught = catch_unwind(AssertUnwindSafe(|| h.poll_to_end(future.as_mut())));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<Payload>(),
        Some(&Payload(7))
    );
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterPending,
            EnterReady,
            EnterDrop,
            exit_start(Status::Panicked, 0),
            ExitPending,
            ResourceDrop(0),
            ExitReady,
            ExitDrop,
        ]
    );
    drop(future);
    assert_eq!(cancels(&log), 0);
}

#[cfg(feature = "std")]
#[test]
fn s3_panic_resumes_even_when_exit_fails() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let log = Log::new();
    let mut future = Box::pin(with(Scripted::new(&log).exit_fails("flush"), async |res| {
        if res.value == 0 {
            std::panic::panic_any(Payload(1));
        }
        Ok::<(), BodyError>(())
    }));
    let caught = catch_unwind(AssertUnwindSafe(|| support::poll_to_end(future.as_mut())));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<Payload>(),
        Some(&Payload(1))
    );
    assert_eq!(exits(&log), 1);
    assert!(log.events().contains(&exit_start(Status::Panicked, 0)));
}

/// A body future that panics when polled, and panics again when dropped the first time; it
/// counts its drops.
#[cfg(feature = "std")]
struct PanicsTwice<'a> {
    armed: bool,
    drops: &'a Cell<u32>,
}

#[cfg(feature = "std")]
impl Future for PanicsTwice<'_> {
    type Output = Result<u32, BodyError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        std::panic::panic_any(Payload(5))
    }
}

#[cfg(feature = "std")]
impl Drop for PanicsTwice<'_> {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
        if core::mem::take(&mut self.armed) {
            std::panic::panic_any(Payload(6))
        }
    }
}

/// A boxed `with` of these tests, named.
#[cfg(feature = "std")]
type BoxedWith<'a> = Pin<Box<dyn FusedFuture<Output = Result<u32, Error<Fail, BodyError>>> + 'a>>;

/// A `with` (resource value 4) whose body future panics when polled and again when first
/// dropped, polled once: the destructor's panic has escaped `poll` (checked here).
#[cfg(feature = "std")]
fn after_escaped_destructor_panic<'a>(log: &Log, drops: &'a Cell<u32>) -> BoxedWith<'a> {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let mut future = Box::pin(with(Scripted::new(log).initial(4), |_res: &mut Res| {
        PanicsTwice { armed: true, drops }
    }));
    let caught = catch_unwind(AssertUnwindSafe(|| support::poll_to_end(future.as_mut())));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<Payload>(),
        Some(&Payload(6)),
        "the destructor's panic escapes poll"
    );
    future
}

/// The body panics and its future's destructor panics too: the second panic escapes `poll`
/// before exit runs, and the resource is still in place, so dropping the future afterwards
/// hands it to `cancel`, once (documented under `# Panics`).
#[cfg(feature = "std")]
#[test]
fn s3_body_destructor_panic_escapes_then_drop_cancels() {
    let log = Log::new();
    let drops = Cell::new(0);
    let future = after_escaped_destructor_panic(&log, &drops);
    assert_eq!(drops.get(), 1, "the body future is gone");
    assert_eq!(exits(&log), 0);
    assert_eq!(cancels(&log), 0);
    assert!(!future.is_terminated());
    drop(future);
    assert_eq!(drops.get(), 1, "and is not dropped again");
    assert_eq!(exits(&log), 0);
    assert_eq!(log.count(|e| *e == Cancel(4)), 1);
    assert_eq!(cancels(&log), 1);
}

/// After the body future's destructor panic escaped `poll` (above), polling again panics with
/// a message that says so; with `std` that panic is the body's, so exit runs, seeing
/// `Panicked`, and the panic resumes.
#[cfg(feature = "std")]
#[test]
fn s3_poll_after_an_escaped_panic_panics_and_exits() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let log = Log::new();
    let drops = Cell::new(0);
    let mut future = after_escaped_destructor_panic(&log, &drops);
    let again = catch_unwind(AssertUnwindSafe(|| support::poll_to_end(future.as_mut())));
    let again = again.unwrap_err();
    let message = again.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(
        message.contains("polled again after a panic"),
        "{message:?}"
    );
    assert_eq!(exits(&log), 1);
    assert!(log.events().contains(&exit_start(Status::Panicked, 4)));
    assert!(future.is_terminated());
    drop(future);
    assert_eq!((cancels(&log), drops.get()), (0, 1));
}

/// A body future that stays pending (waking itself) and panics when dropped.
struct PendingPanicsOnDrop;

impl Future for PendingPanicsOnDrop {
    type Output = Result<(), BodyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for PendingPanicsOnDrop {
    fn drop(&mut self) {
        std::panic::panic_any(Payload(7))
    }
}

/// A resource that counts its drops.
struct Counted<'a>(&'a Cell<u32>);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The body future's destructor panics while the `WithFuture` is dropped mid-body: the panic
/// propagates, and on its way the resource still goes to `cancel`, once, and is dropped once —
/// as the same steps written as an `async fn` with a cancel guard would. It holds in every
/// feature set: it depends on panics unwinding, not on `std` (documented under `# Panics`).
#[test]
fn s3_body_destructor_panic_during_drop_still_cancels() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let (drops, cancels) = (Cell::new(0), Cell::new(0));
    let manager = from_fns(
        || ready(Ok::<_, Fail>(Counted(&drops))),
        |_: Counted<'_>, _: Outcome<'_>| ready(Ok(())),
    )
    .on_cancel(|_: Counted<'_>| cancels.set(cancels.get() + 1));
    let mut future = Box::pin(with(manager, |_: &mut Counted<'_>| PendingPanicsOnDrop));
    assert!(support::poll_once(future.as_mut()).is_pending());
    assert_eq!((drops.get(), cancels.get()), (0, 0));
    let caught = catch_unwind(AssertUnwindSafe(move || drop(future)));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<Payload>(),
        Some(&Payload(7)),
        "the destructor's panic propagates"
    );
    assert_eq!(cancels.get(), 1, "cancel ran once, while unwinding");
    assert_eq!(
        drops.get(),
        1,
        "the resource was dropped once (by the cancel hook)"
    );
}

/// An enter future that is ready with a counted resource at once and panics when dropped.
struct EnterPanicsOnDrop<'a>(Option<Counted<'a>>);

impl<'a> Future for EnterPanicsOnDrop<'a> {
    type Output = Result<Counted<'a>, Fail>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(self.0.take().expect("polled once")))
    }
}

impl Drop for EnterPanicsOnDrop<'_> {
    fn drop(&mut self) {
        std::panic::panic_any(Payload(8))
    }
}

/// The enter future's destructor panics just after it produced the resource: the panic
/// propagates, the body and exit do not run, and the resource still goes to `cancel`, once.
#[test]
fn s3_enter_destructor_panic_still_cancels_the_resource() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let (drops, cancels, bodies) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let manager = from_fns(
        || EnterPanicsOnDrop(Some(Counted(&drops))),
        |_: Counted<'_>, _: Outcome<'_>| ready(Ok(())),
    )
    .on_cancel(|_: Counted<'_>| cancels.set(cancels.get() + 1));
    let mut future = Box::pin(with(manager, async |_| bodies.set(1)));
    let caught = catch_unwind(AssertUnwindSafe(|| support::poll_once(future.as_mut())));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<Payload>(),
        Some(&Payload(8))
    );
    assert_eq!((cancels.get(), drops.get(), bodies.get()), (1, 1, 0));
    assert!(future.is_terminated());
    drop(future);
    assert_eq!((cancels.get(), drops.get()), (1, 1), "nothing runs twice");
}

/// Without `std` a body panic is not caught: it unwinds through `poll`, exit does not run, and
/// dropping the future afterwards cancels the resource (documented under `# Panics`).
#[cfg(not(feature = "std"))]
#[test]
fn s3_without_std_body_panic_unwinds_then_drop_cancels() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let log = Log::new();
    let body_log = log.clone();
    let mut future = Box::pin(with(Scripted::new(&log).initial(2), async move |res| {
        let _guard = body_log.on_drop(BodyDrop);
        Yield::new(1).await;
        if res.value == 2 {
            panic!("body panic");
        }
        Ok::<(), BodyError>(())
    }));
    let caught = catch_unwind(AssertUnwindSafe(|| support::poll_to_end(future.as_mut())));
    assert!(caught.is_err());
    assert_eq!(exits(&log), 0);
    assert_eq!(log.events(), [EnterStart, EnterReady, EnterDrop, BodyDrop]);
    drop(future);
    assert_eq!(
        log.events()[4..],
        [Cancel(2), ResourceDrop(2)],
        "the resource is cancelled exactly once"
    );
}

// ---------------------------------------------------------------------------------------------
// S4 Exit knows the outcome
// ---------------------------------------------------------------------------------------------

/// A body error that is neither `Clone` nor `Copy` and counts its drops: exit can only have
/// seen it by reference.
#[derive(Debug)]
struct Tracked {
    code: u32,
    _witness: support::Witness,
}

/// A transaction-like manager: commits on success, rolls back on failure, and classifies the
/// body's error by downcasting it.
struct Transaction<'l> {
    seen: &'l RefCell<Vec<String>>,
}

struct Finish<'l> {
    seen: &'l RefCell<Vec<String>>,
}

impl<'l> AsyncEnter for Transaction<'l> {
    type Resource = Vec<u32>;
    type Error = Infallible;
    type Exit = Finish<'l>;
    type Enter = Ready<Result<(Vec<u32>, Finish<'l>), Infallible>>;

    fn enter(self) -> Self::Enter {
        ready(Ok((Vec::new(), Finish { seen: self.seen })))
    }
}

impl AsyncExit<Vec<u32>> for Finish<'_> {
    type Error = Infallible;
    type Future<'o> = After<Result<(), Infallible>>;

    fn exit<'o>(self, rows: Vec<u32>, outcome: Outcome<'o>) -> Self::Future<'o> {
        let line = match outcome {
            Outcome::Success => format!("commit {rows:?}"),
            Outcome::Failure(failure) => {
                assert!(failure.downcast_ref::<u32>().is_none());
                assert_eq!(
                    failure.is::<BodyError>(),
                    failure.downcast_ref::<BodyError>().is_some()
                );
                if let Some(tracked) = failure.downcast_ref::<Tracked>() {
                    format!("rollback {rows:?}: tracked {}", tracked.code)
                } else if let Some(BodyError(code)) = failure.downcast_ref::<BodyError>() {
                    format!("rollback {rows:?}: body error {code}")
                } else {
                    format!("rollback {rows:?}: other {failure:?}")
                }
            }
            Outcome::Panicked => "rollback after panic".to_owned(),
            _ => "rollback: cancelled".to_owned(),
        };
        self.seen.borrow_mut().push(line);
        After::new(1, Ok(()))
    }
}

#[test]
fn s4_exit_sees_failure_by_reference() {
    let seen = RefCell::new(Vec::new());
    let drops = DropCount::new();
    let witness = drops.witness();
    let (out, _) = support::run(with(Transaction { seen: &seen }, async move |rows| {
        rows.push(1);
        Yield::new(1).await;
        rows.push(2);
        Err::<(), _>(Tracked {
            code: 409,
            _witness: witness,
        })
    }));
    assert_eq!(*seen.borrow(), ["rollback [1, 2]: tracked 409"]);
    // The error exit looked at is the one the caller gets: not copied, not yet dropped.
    assert_eq!(drops.get(), 0);
    let Err(Error::Body(error)) = out else {
        panic!("expected a body error, got {out:?}")
    };
    assert_eq!(error.code, 409);
    drop(error);
    assert_eq!(drops.get(), 1);
}

#[test]
fn s4_exit_tells_success_from_failure() {
    let seen = RefCell::new(Vec::new());
    let (ok, _) = support::run(with(Transaction { seen: &seen }, async |rows| {
        rows.push(7);
        Ok::<_, BodyError>(rows.len())
    }));
    assert_eq!(ok, Ok(1));
    let (err, _) = support::run(with(Transaction { seen: &seen }, async |rows| {
        rows.push(8);
        Err::<usize, _>(BodyError(5))
    }));
    assert_eq!(err, Err(Error::Body(BodyError(5))));
    let (other, _) = support::run(with(Transaction { seen: &seen }, async |_rows| {
        Err::<(), _>("text error")
    }));
    assert_eq!(other, Err(Error::Body("text error")));
    assert_eq!(
        *seen.borrow(),
        [
            "commit [7]",
            "rollback [8]: body error 5",
            "rollback []: other \"text error\"",
        ]
    );
}

#[test]
fn s4_outcome_status_and_failure_accessors() {
    let error = BodyError(3);
    let failure = Outcome::Failure(Failure::new(&error));
    assert_eq!(failure.status(), Status::Failure);
    assert!(!failure.is_success());
    let lent = failure.failure().unwrap();
    assert!(core::ptr::eq(
        lent.downcast_ref::<BodyError>().unwrap(),
        &error
    ));
    assert_eq!(format!("{lent:?}"), "BodyError(3)");
    assert!(Outcome::Success.is_success());
    assert!(Outcome::Success.failure().is_none());
    assert_eq!(Outcome::Panicked.status(), Status::Panicked);
    assert!(Outcome::Panicked.failure().is_none());
    assert!(Status::Success.is_success());
    assert!(!Status::Failure.is_success());
}

// ---------------------------------------------------------------------------------------------
// S5 No error is silently lost
// ---------------------------------------------------------------------------------------------

#[test]
fn s5_body_and_exit_errors_both_kept() {
    let log = Log::new();
    let (out, _) = support::run(with(
        Scripted::new(&log)
            .exit_pending(1)
            .exit_fails("rollback failed"),
        async |res| {
            Yield::new(1).await;
            Err::<(), _>(BodyError(res.value + 7))
        },
    ));
    assert_eq!(
        out,
        Err(Error::BodyAndExit {
            body: BodyError(7),
            exit: "rollback failed"
        })
    );
    let error = out.unwrap_err();
    assert_eq!(error.body(), Some(&BodyError(7)));
    assert_eq!(error.manager(), Some(&"rollback failed"));
    assert_eq!(exits(&log), 1);
    assert!(log.events().contains(&exit_failed(0, "BodyError(7)")));
}

#[test]
fn s5_exit_error_after_ok_drops_the_value() {
    let log = Log::new();
    let drops = DropCount::new();
    let witness = drops.witness();
    let mut future = pin!(with(
        Scripted::new(&log)
            .exit_pending(1)
            .exit_fails("close failed"),
        async move |_res| Ok::<_, BodyError>(witness)
    ));
    let out = support::poll_to_end(future.as_mut());
    assert!(matches!(out, Err(Error::Exit("close failed"))), "{out:?}");
    // The body's value was dropped before the error was returned.
    assert_eq!(drops.get(), 1);
    assert_eq!(out.as_ref().unwrap_err().body(), None);
    assert_eq!(out.as_ref().unwrap_err().manager(), Some(&"close failed"));
}

#[derive(Debug, PartialEq)]
enum AppError {
    Device(&'static str),
    Parse(BodyError),
    Both(BodyError, &'static str),
}

impl From<&'static str> for AppError {
    fn from(error: &'static str) -> Self {
        AppError::Device(error)
    }
}

impl From<BodyError> for AppError {
    fn from(error: BodyError) -> Self {
        AppError::Parse(error)
    }
}

/// What an application does: run a `with`, and `?` its error into the app's type.
async fn app_step(manager: Scripted, body_fails: bool, keep_both: bool) -> Result<u32, AppError> {
    let result = with(manager, async |res| {
        Yield::new(1).await;
        if body_fails {
            Err(BodyError(res.value))
        } else {
            Ok(res.value + 100)
        }
    })
    .await;
    let value = if keep_both {
        result.map_err(|e| e.collapse_with(AppError::Both))?
    } else {
        result.map_err(Error::collapse::<AppError>)?
    };
    Ok(value)
}

#[test]
fn s5_collapse_into_user_error() {
    let log = Log::new();
    let cases = [
        (Scripted::new(&log), false, Ok(100)),
        (
            Scripted::new(&log).enter_fails("absent"),
            false,
            Err(AppError::Device("absent")),
        ),
        (
            Scripted::new(&log).initial(3),
            true,
            Err(AppError::Parse(BodyError(3))),
        ),
        (
            Scripted::new(&log).exit_fails("stuck"),
            false,
            Err(AppError::Device("stuck")),
        ),
        // Both failed: `collapse` keeps the body's error, the cause.
        (
            Scripted::new(&log).initial(4).exit_fails("stuck"),
            true,
            Err(AppError::Parse(BodyError(4))),
        ),
    ];
    for (manager, body_fails, expected) in cases {
        let (out, _) = support::run(app_step(manager, body_fails, false));
        assert_eq!(out, expected);
    }
    // `collapse_with` keeps both.
    let (out, _) = support::run(app_step(
        Scripted::new(&log).initial(5).exit_fails("stuck"),
        true,
        true,
    ));
    assert_eq!(out, Err(AppError::Both(BodyError(5), "stuck")));
    // ... and still uses `From` for a single failure.
    let (out, _) = support::run(app_step(Scripted::new(&log).initial(6), true, true));
    assert_eq!(out, Err(AppError::Parse(BodyError(6))));
}

#[test]
fn s5_display_and_source_mention_every_failure() {
    use std::error::Error as _;

    #[derive(Debug)]
    struct E(&'static str);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {}

    /// What an error reporter prints: each error of the chain, joined.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut next = error.source();
        while let Some(source) = next {
            text = format!("{text}: {source}");
            next = source.source();
        }
        text
    }

    // Both failures reach the reader, each once: the exit error in `Display` (it cannot also
    // be the source), the body's error as the source.
    let both: Error<E, E> = Error::BodyAndExit {
        body: E("parse"),
        exit: E("rollback"),
    };
    let text = chain(&both);
    assert_eq!(text.matches("parse").count(), 1, "{text}");
    assert_eq!(text.matches("rollback").count(), 1, "{text}");
    assert_eq!(both.source().unwrap().to_string(), "parse");

    // A single failure is the source, and `Display` names the phase without repeating it.
    let exit: Error<E, E> = Error::Exit(E("flush"));
    assert!(!exit.to_string().contains("flush"));
    assert_eq!(exit.source().unwrap().to_string(), "flush");
    assert_eq!(chain(&exit).matches("flush").count(), 1);

    let enter: Error<E, E> = Error::Enter(E("absent"));
    assert_eq!(enter.source().unwrap().to_string(), "absent");
    assert_ne!(enter.to_string(), exit.to_string(), "the phase is named");

    let body: Error<E, E> = Error::Body(E("bad input"));
    assert_eq!(body.source().unwrap().to_string(), "bad input");
    assert_ne!(body.to_string(), enter.to_string());
}

// ---------------------------------------------------------------------------------------------
// S6 Suppression: the caller's `Error::recover`
// ---------------------------------------------------------------------------------------------

/// Python's `suppress(NotFound)`: a body error 404 becomes the value 0.
fn suppress_404(error: BodyError) -> Result<u32, BodyError> {
    if error.0 == 404 { Ok(0) } else { Err(error) }
}

#[test]
fn s6_recover_suppresses_body_error_only() {
    let log = Log::new();
    let run_with = |manager: Scripted, code: u32| {
        support::run(with(manager, async move |_res| {
            Yield::new(1).await;
            Err::<u32, _>(BodyError(code))
        }))
        .0
    };

    // Body failed, exit succeeded: the caller may turn the error into a value.
    let out = run_with(Scripted::new(&log), 404).or_else(|e| e.recover(suppress_404));
    assert_eq!(out, Ok(0));
    // Exit still ran, and saw the failure (suppression is after the fact, not in exit).
    assert_eq!(log.events()[3], exit_failed(0, "BodyError(404)"));

    // The recovery may decline: the error stays a body error.
    let out = run_with(Scripted::new(&log), 500).or_else(|e| e.recover(suppress_404));
    assert_eq!(out, Err(Error::Body(BodyError(500))));

    // Exit failed too: nothing is offered to the closure, both errors come back.
    let called = Cell::new(false);
    let out = run_with(Scripted::new(&log).exit_fails("rollback"), 404).or_else(|e| {
        e.recover(|e| {
            called.set(true);
            suppress_404(e)
        })
    });
    assert_eq!(
        out,
        Err(Error::BodyAndExit {
            body: BodyError(404),
            exit: "rollback"
        })
    );
    assert!(!called.get());

    // Enter and exit errors are never offered either.
    let enter: Error<Fail, BodyError> = Error::Enter("absent");
    assert_eq!(
        enter.recover(|_| -> Result<u32, _> { panic!("not offered") }),
        Err(Error::Enter("absent"))
    );
    let exit: Error<Fail, BodyError> = Error::Exit("flush");
    assert_eq!(
        exit.recover(|_| -> Result<u32, _> { panic!("not offered") }),
        Err(Error::Exit("flush"))
    );
}

#[test]
fn s6_manager_cannot_swallow_the_body_error() {
    // An exit that succeeds (the only thing a manager can do) leaves the body's error intact.
    let (out, _) = support::run(with(null_context(()), async |_| {
        Err::<u32, _>(BodyError(9))
    }));
    assert_eq!(out, Err(Error::Body(BodyError(9))));
}

// ---------------------------------------------------------------------------------------------
// S7 Cancellation = drop
// ---------------------------------------------------------------------------------------------

#[test]
fn s7_drop_before_first_poll_runs_nothing() {
    let log = Log::new();
    let drops = DropCount::new();
    let witness = drops.witness();
    let future = with(Scripted::new(&log), async move |_res| {
        let _witness = witness;
        Ok::<_, BodyError>(())
    });
    drop(future);
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(drops.get(), 1);
}

#[test]
fn s7_drop_during_enter() {
    let log = Log::new();
    let drops = DropCount::new();
    let witness = drops.witness();
    let ran = Cell::new(false);
    let body_ran = &ran;
    {
        let mut future = pin!(with(
            Scripted::new(&log).enter_pending(5),
            async move |_res| {
                let _witness = witness;
                body_ran.set(true);
                Ok::<_, BodyError>(())
            }
        ));
        Harness::new().poll_pending(future.as_mut(), 2);
        assert!(!future.is_terminated());
    }
    assert_eq!(
        log.events(),
        [EnterStart, EnterPending, EnterPending, EnterDrop]
    );
    assert!(!body_ran.get());
    assert_eq!(drops.get(), 1);
}

#[test]
fn s7_drop_during_body() {
    let log = Log::new();
    let body_log = log.clone();
    {
        let mut future = pin!(with(
            Scripted::new(&log).initial(1).exit_pending(1),
            async move |res| {
                let _guard = body_log.on_drop(BodyDrop);
                body_log.push(BodyStart);
                res.value = 8;
                Yield::logged(&body_log, 100).await;
                body_log.push(BodyEnd);
                Ok::<_, BodyError>(())
            }
        ));
        Harness::new().poll_pending(future.as_mut(), 3);
        assert_eq!(log.events().last(), Some(&Yielded));
    }
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            BodyStart,
            Yielded,
            Yielded,
            Yielded,
            // The body future goes first, then the resource goes to `cancel`, once.
            BodyDrop,
            Cancel(8),
            ResourceDrop(8),
        ]
    );
    assert_eq!(exits(&log), 0);
}

#[test]
fn s7_drop_during_body_future_drop_sees_live_resource() {
    // The hand-written body future reads the resource in its `Drop`: under Miri this is a
    // use-after-free if the resource went first.
    fn body(res: &mut Res) -> TrackedBody<'_> {
        TrackedBody::new(res, 50)
    }
    let log = Log::new();
    {
        let mut future = pin!(with(Scripted::new(&log).initial(10), body));
        Harness::new().poll_pending(future.as_mut(), 4);
    }
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            BodyStart,
            Yielded,
            Yielded,
            Yielded,
            Yielded,
            BodyFutureDrop(14),
            Cancel(14),
            ResourceDrop(14),
        ]
    );
}

#[test]
fn s7_drop_during_body_default_cancel_drops_resource() {
    // `from_fns` uses the default `cancel`: drop the resource, never call the exit closure.
    let log = Log::new();
    let exit_called = Cell::new(false);
    let enter_log = log.clone();
    let body_log = log.clone();
    {
        let manager = from_fns(
            async move || Ok::<_, Fail>(Res::new(&enter_log, 3)),
            async |_res: Res, _status: Outcome<'_>| {
                exit_called.set(true);
                Ok(())
            },
        );
        let mut future = pin!(with(manager, async move |res| {
            let _guard = body_log.on_drop(BodyDrop);
            res.value += 1;
            Yield::new(10).await;
            Ok::<_, BodyError>(())
        }));
        Harness::new().poll_pending(future.as_mut(), 2);
    }
    assert_eq!(log.events(), [BodyDrop, ResourceDrop(4)]);
    assert!(!exit_called.get());
}

#[test]
fn s7_drop_during_body_from_fns_on_cancel_hook() {
    // `from_fns(..).on_cancel(..)`: the hook gets the live resource, once, after the body
    // future was dropped; the exit closure never runs.
    let log = Log::new();
    let exit_called = Cell::new(false);
    let cancels = Cell::new(0);
    let enter_log = log.clone();
    let body_log = log.clone();
    let hook_log = log.clone();
    {
        let manager = from_fns(
            async move || Ok::<_, Fail>(Res::new(&enter_log, 3)),
            async |_res: Res, _status: Outcome<'_>| {
                exit_called.set(true);
                Ok(())
            },
        )
        .on_cancel(|res: Res| {
            cancels.set(cancels.get() + 1);
            hook_log.push(Cancel(res.value));
            assert_eq!(res.value, 4, "the hook sees what the body did");
        });
        let mut future = pin!(with(manager, async move |res| {
            let _guard = body_log.on_drop(BodyDrop);
            res.value += 1;
            Yield::new(10).await;
            Ok::<_, BodyError>(())
        }));
        Harness::new().poll_pending(future.as_mut(), 2);
    }
    assert_eq!(log.events(), [BodyDrop, Cancel(4), ResourceDrop(4)]);
    assert_eq!(cancels.get(), 1);
    assert!(!exit_called.get());
}

#[test]
fn s15_from_fns_on_cancel_does_not_run_after_completion() {
    let cancels = Cell::new(0);
    let manager = from_fns(
        async || Ok::<_, Fail>(1_u32),
        async |_n: u32, _status: Outcome<'_>| Ok(()),
    )
    .on_cancel(|_n: u32| cancels.set(cancels.get() + 1));
    let (out, _) = support::run(with(manager, async |n| Ok::<_, BodyError>(*n + 1)));
    assert_eq!(out, Ok(2));
    assert_eq!(cancels.get(), 0);
}

#[test]
fn s7_drop_during_exit() {
    let log = Log::new();
    {
        let mut future = pin!(with(
            Scripted::new(&log).initial(2).exit_pending(5),
            async |res| {
                res.value = 6;
                Ok::<_, BodyError>(())
            }
        ));
        Harness::new().poll_pending(future.as_mut(), 2);
        assert!(!future.is_terminated());
    }
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            exit_start(Status::Success, 6),
            ExitPending,
            ExitPending,
            // The exit future is dropped; its own `Drop` (here: its resource field) cleans up.
            ExitDrop,
            ResourceDrop(6),
        ]
    );
    assert_eq!(cancels(&log), 0);
    assert_eq!(exits(&log), 1);
}

/// A body error with a destructor (the value `WithFuture` keeps for exit must be dropped, and
/// only after the exit future that borrows it).
#[derive(Debug)]
struct OwnedError(#[allow(dead_code)] support::Witness);

/// Runs a closure when dropped.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[test]
fn s7_drop_during_exit_drops_the_exit_future_then_the_body_error() {
    let drops = DropCount::new();
    // What the exit future saw as it was dropped: the error's drop count, and the error itself.
    let seen = Cell::new(None);
    {
        let manager = from_fns(
            async || Ok::<_, Fail>(1_u32),
            async |_n: u32, outcome: Outcome<'_>| {
                let _check = Finally(|| {
                    let error = outcome.error::<OwnedError>().map(|e| format!("{e:?}"));
                    seen.set(Some((drops.get(), error.is_some())));
                });
                Yield::new(3).await;
                Ok::<(), Fail>(())
            },
        );
        let witness = drops.witness();
        let mut future = pin!(with(manager, async move |_n| {
            Err::<(), _>(OwnedError(witness))
        }));
        Harness::new().poll_pending(future.as_mut(), 2);
        assert!(!future.is_terminated());
        assert_eq!(drops.get(), 0, "the error lives while exit runs");
        assert_eq!(seen.get(), None);
    }
    assert_eq!(
        seen.get(),
        Some((0, true)),
        "the exit future goes first, seeing the error"
    );
    assert_eq!(drops.get(), 1, "then the error, once");
}

#[test]
fn s7_drop_after_completion_cancels_nothing() {
    let log = Log::new();
    {
        let mut future = pin!(with(Scripted::new(&log), async |_res| {
            Yield::new(1).await;
            Ok::<_, BodyError>(())
        }));
        assert_eq!(support::poll_to_end(future.as_mut()), Ok(()));
    }
    assert_eq!(cancels(&log), 0);
    assert_eq!(exits(&log), 1);
    assert_eq!(log.count(|e| matches!(e, ResourceDrop(_))), 1);
}

// ---------------------------------------------------------------------------------------------
// S8 After completion
// ---------------------------------------------------------------------------------------------

#[test]
#[should_panic(expected = "polled after completion")]
fn s8_poll_after_ready_panics() {
    let mut future = pin!(with(null_context(1), async |n| Ok::<_, BodyError>(*n)));
    let mut h = Harness::new();
    assert_eq!(h.poll_once(future.as_mut()), Poll::Ready(Ok(1)));
    let _ = h.poll_once(future.as_mut());
}

#[test]
#[should_panic(expected = "polled after completion")]
fn s8_poll_after_enter_error_panics() {
    let log = Log::new();
    let mut future = pin!(with(
        Scripted::new(&log).enter_fails("no"),
        async |_res| Ok::<_, BodyError>(())
    ));
    let mut h = Harness::new();
    assert_eq!(
        h.poll_once(future.as_mut()),
        Poll::Ready(Err(Error::Enter("no")))
    );
    let _ = h.poll_once(future.as_mut());
}

#[test]
fn s8_poll_after_ready_runs_nothing_again() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let log = Log::new();
    let mut future = Box::pin(with(Scripted::new(&log), async |_res| {
        Ok::<_, BodyError>(())
    }));
    assert_eq!(support::poll_to_end(future.as_mut()), Ok(()));
    let before = log.events();
    let again = catch_unwind(AssertUnwindSafe(|| support::poll_once(future.as_mut())));
    let message = again.unwrap_err();
    let message = message
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| message.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(message.contains("polled after completion"), "{message}");
    assert_eq!(log.events(), before);
    drop(future);
    assert_eq!(log.events(), before);
}

/// A `with` whose enter, body and exit each return `Pending` once, then succeed.
fn each_phase_pending_once(
    log: &Log,
) -> impl FusedFuture<Output = Result<(), Error<&'static str, BodyError>>> + std::fmt::Debug + '_ {
    with(
        Scripted::new(log).enter_pending(1).exit_pending(1),
        async |_res| {
            Yield::new(1).await;
            Ok::<_, BodyError>(())
        },
    )
}

#[test]
fn s8_is_terminated() {
    let log = Log::new();
    let mut future = pin!(each_phase_pending_once(&log));
    let mut h = Harness::new();
    assert!(!future.is_terminated(), "before the first poll");
    for phase in ["enter", "body", "exit"] {
        assert!(h.poll_once(future.as_mut()).is_pending());
        assert!(!future.is_terminated(), "during {phase}");
    }
    assert_eq!(h.poll_once(future.as_mut()), Poll::Ready(Ok(())));
    assert!(future.is_terminated(), "after Ready");

    // Also after an error.
    let mut failed = pin!(with(
        Scripted::new(&log).exit_fails("x"),
        async |_res| Err::<(), _>(BodyError(0))
    ));
    assert!(!failed.is_terminated());
    assert!(h.poll_once(failed.as_mut()).is_ready());
    assert!(failed.is_terminated());
}

/// A panic in `AsyncEnter::enter` or `AsyncExit::exit` themselves leaves the future finished:
/// `is_terminated` is true, another poll panics as after completion, and dropping it cancels
/// nothing (documented under `# Panics`).
#[cfg(feature = "std")]
#[test]
fn s8_panic_in_enter_or_exit_call_leaves_it_finished() {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    for (in_enter, payload) in [(true, 8), (false, 9)] {
        let cancels = Cell::new(0);
        // Plain closures: `from_fns` calls them in `enter()` and `exit()` themselves.
        let manager = from_fns(
            move || -> Ready<Result<u32, Fail>> {
                if in_enter {
                    std::panic::panic_any(Payload(8));
                }
                ready(Ok(1))
            },
            |_: u32, _: Outcome<'_>| -> Ready<Result<(), Fail>> {
                std::panic::panic_any(Payload(9))
            },
        )
        .on_cancel(|_: u32| cancels.set(cancels.get() + 1));
        let mut future = Box::pin(with(manager, async |n| *n += 1));
        let caught = catch_unwind(AssertUnwindSafe(|| support::poll_to_end(future.as_mut())));
        assert_eq!(
            caught.unwrap_err().downcast_ref::<Payload>(),
            Some(&Payload(payload))
        );
        assert!(future.is_terminated(), "in_enter: {in_enter}");
        let again = catch_unwind(AssertUnwindSafe(|| support::poll_to_end(future.as_mut())));
        let message = again.unwrap_err();
        let message = message.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("polled after completion"), "{message:?}");
        drop(future);
        assert_eq!(cancels.get(), 0, "cancel does not run");
    }
}

#[test]
fn s8_debug_shows_the_phase() {
    let log = Log::new();
    let mut future = pin!(each_phase_pending_once(&log));
    let mut h = Harness::new();
    let phase = |f: &dyn std::fmt::Debug| format!("{f:?}");
    assert!(phase(&future).contains("Start"));
    let _ = h.poll_once(future.as_mut());
    assert!(phase(&future).contains("Enter"));
    let _ = h.poll_once(future.as_mut());
    assert!(phase(&future).contains("Body"));
    let _ = h.poll_once(future.as_mut());
    assert!(phase(&future).contains("Exit"));
    let _ = h.poll_once(future.as_mut());
    assert!(phase(&future).contains("Done"));
}

// ---------------------------------------------------------------------------------------------
// S9 Eager drop
// ---------------------------------------------------------------------------------------------

fn tracked_body(res: &mut Res) -> TrackedBody<'_> {
    TrackedBody::new(res, 2)
}

#[test]
fn s9_eager_drop() {
    let log = Log::new();
    let mut future = pin!(with(
        Scripted::new(&log)
            .initial(1)
            .enter_pending(1)
            .exit_pending(1),
        tracked_body
    ));
    let mut h = Harness::new();
    let out = h.poll_to_end(future.as_mut());
    assert_eq!(out, Ok(4));
    // Taken when `Ready` is returned, before the `WithFuture` itself is dropped.
    let at_ready = log.events();
    assert_eq!(
        at_ready,
        [
            EnterStart,
            EnterPending,
            EnterReady,
            EnterDrop, // enter future gone before the body starts
            BodyStart,
            Yielded,
            Yielded,
            BodyEnd,
            BodyFutureDrop(4), // body future gone before exit starts, resource still alive
            exit_start(Status::Success, 4),
            ExitPending,
            ResourceDrop(4),
            ExitReady,
            ExitDrop, // exit future gone before the output is returned
        ]
    );
    assert_eq!((h.pendings, h.wakes()), (4, 4));
}

#[test]
fn s9_eager_drop_after_body_error() {
    fn failing(res: &mut Res) -> impl Future<Output = Result<(), BodyError>> + '_ {
        struct Fails<'r>(&'r mut Res);
        impl Future for Fails<'_> {
            type Output = Result<(), BodyError>;
            fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
                Poll::Ready(Err(BodyError(self.0.value)))
            }
        }
        impl Drop for Fails<'_> {
            fn drop(&mut self) {
                let value = self.0.value;
                self.0.log(BodyFutureDrop(value));
            }
        }
        Fails(res)
    }
    let log = Log::new();
    let mut future = pin!(with(Scripted::new(&log).initial(2), failing));
    assert_eq!(
        support::poll_to_end(future.as_mut()),
        Err(Error::Body(BodyError(2)))
    );
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            BodyFutureDrop(2),
            exit_failed(2, "BodyError(2)"),
            ResourceDrop(2),
            ExitReady,
            ExitDrop,
        ]
    );
}

#[test]
fn s9_async_body_locals_dropped_before_exit() {
    let log = Log::new();
    let body_log = log.clone();
    let mut future = pin!(with(
        Scripted::new(&log).exit_pending(1),
        async move |_res| {
            let _guard = body_log.on_drop(BodyDrop);
            Yield::new(1).await;
            Ok::<_, BodyError>(())
        }
    ));
    assert_eq!(support::poll_to_end(future.as_mut()), Ok(()));
    let body_drop = log.position(&BodyDrop);
    let exit = log.position(&exit_start(Status::Success, 0));
    assert!(body_drop < exit, "{log:?}");
}

// ---------------------------------------------------------------------------------------------
// A resource that borrows: a driver holding `&mut Bus`, and a body capturing locals
// ---------------------------------------------------------------------------------------------

struct Bus {
    log: Vec<&'static str>,
    writes: Vec<u8>,
}

struct Driver<'b> {
    bus: &'b mut Bus,
    address: u8,
}

impl Driver<'_> {
    async fn write(&mut self, byte: u8) {
        Yield::new(1).await;
        self.bus.writes.push(self.address ^ byte);
    }
}

/// Claims the bus for a device: a hand-written enter future that waits once.
struct Claim<'b> {
    bus: &'b mut Bus,
    address: u8,
}

struct ClaimFuture<'b> {
    bus: Option<&'b mut Bus>,
    address: u8,
    waited: bool,
}

impl<'b> Future for ClaimFuture<'b> {
    type Output = Result<(Driver<'b>, Release), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let address = self.address;
        let bus = self
            .bus
            .take()
            .expect("ClaimFuture polled after completion");
        bus.log.push("claim");
        Poll::Ready(Ok((Driver { bus, address }, Release)))
    }
}

impl<'b> AsyncEnter for Claim<'b> {
    type Resource = Driver<'b>;
    type Error = Fail;
    type Exit = Release;
    type Enter = ClaimFuture<'b>;

    fn enter(self) -> ClaimFuture<'b> {
        ClaimFuture {
            bus: Some(self.bus),
            address: self.address,
            waited: false,
        }
    }
}

struct Release;

struct ReleaseFuture<'b> {
    driver: Option<Driver<'b>>,
    waited: bool,
}

impl Future for ReleaseFuture<'_> {
    type Output = Result<(), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let driver = self.driver.take().expect("polled after completion");
        driver.bus.log.push("release");
        Poll::Ready(Ok(()))
    }
}

impl<'b> AsyncExit<Driver<'b>> for Release {
    type Error = Fail;
    type Future<'o> = ReleaseFuture<'b>;

    fn exit(self, driver: Driver<'b>, outcome: Outcome<'_>) -> ReleaseFuture<'b> {
        driver.bus.log.push(match outcome.status() {
            Status::Success => "exit ok",
            Status::Failure => "exit failed",
            Status::Panicked => "exit panicked",
            _ => "exit cancelled",
        });
        ReleaseFuture {
            driver: Some(driver),
            waited: false,
        }
    }

    fn cancel(self, driver: Driver<'b>) {
        driver.bus.log.push("cancel");
    }
}

#[test]
fn non_static_resource_and_body_capturing_locals() {
    let mut bus = Bus {
        log: Vec::new(),
        writes: Vec::new(),
    };
    let payload = vec![1_u8, 2, 3];
    let mut written = 0_usize;
    let mut h = Harness::new();
    {
        let mut future = pin!(with(
            Claim {
                bus: &mut bus,
                address: 0x10,
            },
            async |driver| {
                driver.bus.log.push("body");
                for &byte in &payload {
                    driver.write(byte).await;
                    written += 1;
                }
                Ok::<_, BodyError>(driver.bus.writes.len())
            }
        ));
        assert_eq!(h.poll_to_end(future.as_mut()), Ok(3));
    }
    assert_eq!(written, 3);
    assert_eq!(bus.writes, [0x11, 0x12, 0x13]);
    assert_eq!(bus.log, ["claim", "body", "exit ok", "release"]);
    // enter 1 + body 3 + exit 1
    assert_eq!((h.pendings, h.wakes()), (5, 5));

    // Cancelled mid-body: the borrowed bus sees `cancel`, and is usable afterwards.
    {
        let mut future = pin!(with(
            Claim {
                bus: &mut bus,
                address: 0,
            },
            async |driver| {
                driver.write(9).await;
                driver.write(8).await;
                Ok::<_, BodyError>(())
            }
        ));
        h.poll_pending(future.as_mut(), 2);
    }
    assert_eq!(bus.log[4..], ["claim", "cancel"]);
    assert_eq!(bus.writes, [0x11, 0x12, 0x13]);

    // A failing body: exit sees the failure.
    let (out, _) = support::run(with(
        Claim {
            bus: &mut bus,
            address: 0,
        },
        async |driver| Err::<(), _>(BodyError(u32::from(driver.address))),
    ));
    assert_eq!(out, Err(Error::Body(BodyError(0))));
    assert_eq!(bus.log[6..], ["claim", "exit failed", "release"]);
}

// ---------------------------------------------------------------------------------------------
// S15 Managers from closures
// ---------------------------------------------------------------------------------------------

#[test]
fn s15_from_fns_async_closures() {
    let log = Log::new();
    let enter_log = log.clone();
    let manager = from_fns(
        async move || {
            enter_log.push(EnterStart);
            Yield::logged(&enter_log, 2).await;
            enter_log.push(EnterReady);
            Ok::<_, Fail>(Res::new(&enter_log, 1))
        },
        async |res: Res, status: Outcome<'_>| {
            res.log(exit_start(status.status(), res.value));
            Yield::new(1).await;
            res.log(ExitReady);
            drop(res);
            Ok(())
        },
    );
    let body_log = log.clone();
    let mut h = Harness::new();
    let mut future = pin!(with(manager, async move |res| {
        body_log.push(BodyStart);
        res.value += 1;
        Yield::logged(&body_log, 1).await;
        Ok::<_, BodyError>(res.value)
    }));
    assert_eq!(h.poll_to_end(future.as_mut()), Ok(2));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            Yielded,
            Yielded,
            EnterReady,
            BodyStart,
            Yielded,
            exit_start(Status::Success, 2),
            ExitReady,
            ResourceDrop(2),
        ]
    );
    assert_eq!((h.pendings, h.wakes()), (4, 4));
}

#[test]
fn s15_from_fns_exit_gets_failure_status() {
    let log = Log::new();
    let enter_log = log.clone();
    let manager = from_fns(
        async move || Ok::<_, Fail>(Res::new(&enter_log, 0)),
        async |res: Res, status: Outcome<'_>| {
            res.log(exit_start(status.status(), res.value));
            if status.is_success() {
                Ok(())
            } else {
                Err("rolled back")
            }
        },
    );
    let (out, _) = support::run(with(manager, async |_res| Err::<(), _>(BodyError(1))));
    assert_eq!(
        out,
        Err(Error::BodyAndExit {
            body: BodyError(1),
            exit: "rolled back"
        })
    );
    assert_eq!(
        log.events(),
        [exit_start(Status::Failure, 0), ResourceDrop(0)]
    );
}

#[test]
fn s15_from_fns_enter_error_skips_exit() {
    let exit_called = Cell::new(false);
    let manager = from_fns(
        async || {
            Yield::new(1).await;
            Err::<u32, Fail>("refused")
        },
        async |_n: u32, _status: Outcome<'_>| {
            exit_called.set(true);
            Ok(())
        },
    );
    let (out, _) = support::run(with(manager, async |_n| Ok::<_, BodyError>(())));
    assert_eq!(out, Err(Error::Enter("refused")));
    assert!(!exit_called.get());
}

async fn open_counter() -> Result<u32, Fail> {
    Yield::new(1).await;
    Ok(7)
}

async fn close_counter(count: u32, status: Outcome<'_>) -> Result<(), Fail> {
    Yield::new(1).await;
    match (count, status.status()) {
        (8, Status::Success) => Ok(()),
        _ => Err("unexpected close"),
    }
}

async fn increment(count: &mut u32) -> Result<u32, BodyError> {
    Yield::new(1).await;
    *count += 1;
    Ok(*count)
}

async fn increment_twice(count: &mut u32) -> Result<u32, BodyError> {
    *count += 2;
    Ok(*count)
}

#[test]
fn s15_from_fns_async_fn_items() {
    // Enter, exit and body are all `async fn` items; exit checks what it got back.
    let (out, h) = support::run(with(from_fns(open_counter, close_counter), increment));
    assert_eq!(out, Ok(8));
    assert_eq!((h.pendings, h.wakes()), (3, 3));

    let (out, _) = support::run(with(from_fns(open_counter, close_counter), increment_twice));
    assert_eq!(out, Err(Error::Exit("unexpected close")));
}

/// What a library exports: a manager built from closures, returned as `impl AsyncEnter`.
fn connect(log: &Log, address: &'static str) -> impl AsyncEnter<Resource = Res, Error = Fail> {
    let log = log.clone();
    from_fns(
        async move || {
            log.push(EnterStart);
            Yield::new(1).await;
            if address.is_empty() {
                Err("no address")
            } else {
                Ok(Res::new(&log, address.len() as u32))
            }
        },
        async |res: Res, status: Outcome<'_>| {
            res.log(exit_start(status.status(), res.value));
            Yield::new(1).await;
            Ok(())
        },
    )
}

/// The same through a borrowed argument: the returned manager keeps the borrow.
fn connect_borrowed<'a>(
    log: &'a Log,
    address: &'a str,
) -> impl AsyncEnter<Resource = Res, Error = Fail> + 'a {
    from_fns(
        async move || {
            if address.is_empty() {
                Err("no address")
            } else {
                Ok(Res::new(log, address.len() as u32))
            }
        },
        async |res: Res, status: Outcome<'_>| {
            res.log(exit_start(status.status(), res.value));
            Ok(())
        },
    )
}

#[test]
fn s15_from_fns_returned_as_impl_trait() {
    let log = Log::new();
    let (out, h) = support::run(with(connect(&log, "sensor"), async |conn| {
        conn.value *= 10;
        Ok::<_, BodyError>(conn.value)
    }));
    assert_eq!(out, Ok(60));
    assert_eq!((h.pendings, h.wakes()), (2, 2));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            exit_start(Status::Success, 60),
            ResourceDrop(60)
        ]
    );

    let (out, _) =
        support::run(connect(&log, "").with(async |_conn: &mut Res| Ok::<_, BodyError>(0)));
    assert_eq!(out, Err(Error::Enter("no address")));

    let address = String::from("bus0");
    let (out, _) = support::run(with(connect_borrowed(&log, &address), async |conn| {
        Ok::<_, BodyError>(conn.value)
    }));
    assert_eq!(out, Ok(4));
    assert!(
        log.events()
            .ends_with(&[exit_start(Status::Success, 4), ResourceDrop(4)])
    );
}

// ---------------------------------------------------------------------------------------------
// S16 Managers by hand
// ---------------------------------------------------------------------------------------------

#[test]
fn s16_hand_written_manager() {
    // The scripted manager's futures are named types; drive the protocol by hand, as a
    // combinator or an executor-less HAL would.
    let log = Log::new();
    let mut h = Harness::new();
    let enter: support::ScriptedEnterFuture = Scripted::new(&log)
        .initial(1)
        .enter_pending(1)
        .exit_pending(1)
        .exit_fails("nack")
        .enter();
    let mut enter = pin!(enter);
    let (mut res, exit): (Res, support::ScriptedExit) = h.poll_to_end(enter.as_mut()).unwrap();
    res.value = 2;
    let error = BodyError(2);
    let exit_future: support::ScriptedExitFuture =
        exit.exit(res, Outcome::Failure(Failure::new(&error)));
    let mut exit_future = pin!(exit_future);
    assert_eq!(h.poll_to_end(exit_future.as_mut()), Err("nack"));
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterPending,
            EnterReady,
            exit_failed(2, "BodyError(2)"),
            ExitPending,
            ResourceDrop(2),
            ExitReady,
        ]
    );

    // And through `with`, where the body is a hand-written future too.
    let log = Log::new();
    let (out, h) = support::run(with(
        Scripted::new(&log).enter_pending(2).exit_pending(2),
        tracked_body,
    ));
    assert_eq!(out, Ok(3));
    assert_eq!((h.pendings, h.wakes()), (6, 6));
    assert_eq!(exits(&log), 1);
}

#[test]
fn s16_hand_written_cancel_hook_runs_once() {
    let log = Log::new();
    let (res, exit) = support::poll_to_end(pin!(Scripted::new(&log).initial(5).enter())).unwrap();
    exit.cancel(res);
    assert_eq!(
        log.events(),
        [
            EnterStart,
            EnterReady,
            EnterDrop,
            Cancel(5),
            ResourceDrop(5)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// S17 Helpers
// ---------------------------------------------------------------------------------------------

struct Conn {
    log: Log,
    close_fails: bool,
}

impl Conn {
    fn new(log: &Log, close_fails: bool) -> Self {
        Conn {
            log: log.clone(),
            close_fails,
        }
    }

    async fn close(self) -> Result<(), Fail> {
        self.log.push(Note("close start"));
        Yield::new(1).await;
        self.log.push(Note("close end"));
        if self.close_fails {
            Err("close failed")
        } else {
            Ok(())
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.log.push(Note("conn dropped"));
    }
}

const CLOSED: [Event; 3] = [Note("close start"), Note("close end"), Note("conn dropped")];

#[test]
fn s17_closing_calls_close_on_ok_and_err() {
    let log = Log::new();
    let body_log = log.clone();
    let (out, h) = support::run(with(
        closing(Conn::new(&log, false), Conn::close),
        async |_conn| {
            body_log.push(BodyStart);
            Ok::<_, BodyError>(1)
        },
    ));
    assert_eq!(out, Ok(1));
    assert_eq!(h.pendings, 1);
    assert_eq!(log.events()[0], BodyStart);
    assert_eq!(log.events()[1..], CLOSED);

    let log = Log::new();
    let (out, _) = support::run(with(
        closing(Conn::new(&log, false), Conn::close),
        async |_conn| Err::<(), _>(BodyError(2)),
    ));
    assert_eq!(out, Err(Error::Body(BodyError(2))));
    assert_eq!(log.events(), CLOSED);

    // A failing close is reported, alone or with the body's error.
    let log = Log::new();
    let (out, _) = support::run(with(
        closing(Conn::new(&log, true), Conn::close),
        async |_conn| Ok::<_, BodyError>(()),
    ));
    assert_eq!(out, Err(Error::Exit("close failed")));
    let (out, _) = support::run(with(
        closing(Conn::new(&log, true), Conn::close),
        async |_conn| Err::<(), _>(BodyError(3)),
    ));
    assert_eq!(
        out,
        Err(Error::BodyAndExit {
            body: BodyError(3),
            exit: "close failed"
        })
    );
    assert_eq!(log.count(|e| *e == Note("close end")), 2);
}

#[test]
fn s17_closing_with_async_closure_and_cancel() {
    let log = Log::new();
    let (out, _) = support::run(with(
        closing(vec![1, 2], async |v: Vec<i32>| {
            Yield::new(1).await;
            if v == [1, 2, 3] { Ok(()) } else { Err(v.len()) }
        }),
        async |v| {
            v.push(3);
            Ok::<_, BodyError>(v.len())
        },
    ));
    assert_eq!(out, Ok(3));

    // Cancelled mid-body: the value is dropped, not closed.
    let log2 = log.clone();
    {
        let mut future = pin!(with(
            closing(Conn::new(&log, false), Conn::close),
            async move |_conn| {
                Yield::logged(&log2, 10).await;
                Ok::<_, BodyError>(())
            }
        ));
        Harness::new().poll_pending(future.as_mut(), 1);
    }
    assert_eq!(log.events(), [Yielded, Note("conn dropped")]);
}

#[test]
fn s17_nullcontext() {
    let drops = DropCount::new();
    let witness = drops.witness();
    let mut future = pin!(with(null_context((vec![1_u8], witness)), async |value| {
        Yield::new(1).await;
        value.0.push(2);
        Ok::<_, BodyError>(value.0.len())
    }));
    let mut h = Harness::new();
    assert!(h.poll_once(future.as_mut()).is_pending());
    assert_eq!(drops.get(), 0, "the value lives while the body runs");
    assert_eq!(h.poll_once(future.as_mut()), Poll::Ready(Ok(2)));
    assert_eq!(drops.get(), 1, "exit drops the value");

    // Method form, a body error, and an error type that says exit cannot fail.
    let out: Result<u32, Error<Infallible, BodyError>> =
        support::run(null_context(41_u32).with(async |n: &mut u32| Err(BodyError(*n + 1)))).0;
    assert_eq!(out, Err(Error::Body(BodyError(42))));
    let (out, h) = support::run(null_context(41_u32).with(async |n: &mut u32| {
        *n += 1;
        Ok::<_, BodyError>(*n)
    }));
    assert_eq!(out, Ok(42));
    assert_eq!(h.polls, 1);
}
