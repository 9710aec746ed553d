//! A sweep of one-function managers against a model: the closure lends (or fails, panics,
//! loses or leaks its lend) after 0 or 1 `Pending`s, the body and the teardown each pend 0 or 1
//! times and end `Ok`, `Err` or in a panic, a stop signal fires at every poll index (or never),
//! and the harness drops the future after every number of polls (or never); each run, as
//! `scoped(..).with(body)` and (feature `alloc`) as the manager of `with(scoped(..), body)`,
//! must produce exactly the event log, the output and the poll count the model predicts.
//!
//! Besides the model's log, every run checks: the resource, the closure's local and the body's
//! guard are each dropped exactly once; the closure logs nothing while the body runs (it is not
//! polled); the body's guard is dropped before the resource, and before teardown starts. The
//! body and the teardown write the resource on each poll, so that Miri would see a use after
//! it moved or was freed. The grid is small enough to run in full under Miri.

mod support;

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use async_with::{CancelError, Error, Outcome, Status, scoped};
use support::{CountingWaker, Yield};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    /// Lends the resource.
    Lend,
    /// Returns `Err` before lending.
    Fail,
    /// Panics before lending (only with `std`).
    Panic,
    /// Polls its lend once, drops it, returns `Err`.
    Lost,
    /// Polls its lend once, forgets it, goes on without taking the resource back.
    Leaked,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Ok,
    Err,
    Panic,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    setup_pending: u32,
    setup: Setup,
    body_pending: u32,
    body: End,
    teardown_pending: u32,
    teardown: End,
    /// The signal is ready at its `k`-th poll (after `k` `Pending`s).
    signal: Option<u32>,
    /// Dropped after this many polls, if not finished by then.
    drop_after: Option<u32>,
    /// `with(scoped(..), body)` instead of `scoped(..).with(body)`.
    as_manager: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Setup,
    /// Setup's `Pending`s and the lend.
    Offer,
    BodyStart,
    BodyEnd,
    BodyDrop,
    Saw(Status),
    TeardownEnd,
    LocalDrop,
    ResDrop,
    SignalFired,
}

#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<Ev>>>);

impl Log {
    fn push(&self, ev: Ev) {
        self.0.borrow_mut().push(ev);
    }
    fn events(&self) -> Vec<Ev> {
        self.0.borrow().clone()
    }
}

struct OnDrop(Log, Ev);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.push(self.1.clone());
    }
}

/// The resource: written by the body and the teardown on each poll.
struct Res {
    writes: Box<u32>,
    log: Log,
}

impl Drop for Res {
    fn drop(&mut self) {
        self.log.push(Ev::ResDrop);
    }
}

#[derive(Debug, PartialEq)]
struct BodyErr;

#[derive(Debug, PartialEq)]
enum Out {
    Value,
    Enter,
    Body,
    Exit,
    BodyAndExit,
    Entering,
    Cancelled { exit: bool },
    Panicked,
    Dropped,
}

/// A `Yield` that also writes the resource before each of its polls.
async fn touching(res: &mut Res, n: u32) {
    for _ in 0..n {
        *res.writes += 1;
        Yield::new(1).await;
    }
    *res.writes += 1;
}

/// The model: the log, the output and the number of polls.
fn model(case: &Case) -> (Vec<Ev>, Out, u32) {
    if case.drop_after == Some(0) {
        return (Vec::new(), Out::Dropped, 0);
    }
    let dropped_after = |p: u32| case.drop_after == Some(p);
    // The signal is polled once a poll, after the `with`, while enter or the body runs; it is
    // ready at its `k`-th poll, in poll `k + 1`.
    let fires = |p: u32| case.signal.is_some_and(|k| k + 1 == p);
    let mut log = vec![Ev::Setup];
    // Setup pends in polls `1..s` and ends in poll `s`.
    let s = case.setup_pending + 1;
    for p in 1..s {
        if fires(p) {
            log.extend([Ev::SignalFired, Ev::LocalDrop]);
            return (log, Out::Entering, p);
        }
        if dropped_after(p) {
            log.push(Ev::LocalDrop);
            return (log, Out::Dropped, p);
        }
    }
    match case.setup {
        Setup::Fail => {
            log.push(Ev::LocalDrop);
            return (log, Out::Enter, s);
        }
        Setup::Panic => {
            log.push(Ev::LocalDrop);
            return (log, Out::Panicked, s);
        }
        Setup::Lost => {
            log.extend([Ev::ResDrop, Ev::LocalDrop]);
            return (log, Out::Enter, s);
        }
        Setup::Lend | Setup::Leaked => log.extend([Ev::Offer, Ev::BodyStart]),
    }
    // The body starts in poll `s`, pends until `body_end`, and ends there.
    let body_end = s + case.body_pending;
    let mut cancelled = false;
    let mut teardown_start = body_end;
    for p in s..body_end {
        if fires(p) {
            log.extend([Ev::SignalFired, Ev::BodyDrop]);
            cancelled = true;
            teardown_start = p;
            break;
        }
        if dropped_after(p) {
            log.extend([Ev::BodyDrop, Ev::ResDrop, Ev::LocalDrop]);
            return (log, Out::Dropped, p);
        }
    }
    let status = if cancelled {
        Status::Cancelled
    } else {
        match case.body {
            End::Ok => {
                log.extend([Ev::BodyEnd, Ev::BodyDrop]);
                Status::Success
            }
            End::Err => {
                log.extend([Ev::BodyEnd, Ev::BodyDrop]);
                Status::Failure
            }
            End::Panic => {
                log.push(Ev::BodyDrop);
                Status::Panicked
            }
        }
    };
    // Teardown starts in the poll the body ended (or was stopped) in.
    if case.setup == Setup::Leaked {
        // It never takes the resource back: it ends at once, and the resource goes with the
        // closure's future.
        log.extend([Ev::TeardownEnd, Ev::LocalDrop, Ev::ResDrop]);
        return (log, finished(status, End::Ok, cancelled), teardown_start);
    }
    log.push(Ev::Saw(status));
    let end = teardown_start + case.teardown_pending;
    for p in teardown_start..end {
        if dropped_after(p) {
            log.extend([Ev::ResDrop, Ev::LocalDrop]);
            return (log, Out::Dropped, p);
        }
    }
    match case.teardown {
        End::Ok | End::Err => log.extend([Ev::ResDrop, Ev::TeardownEnd, Ev::LocalDrop]),
        End::Panic => log.extend([Ev::ResDrop, Ev::LocalDrop]),
    }
    (log, finished(status, case.teardown, cancelled), end)
}

fn finished(status: Status, teardown: End, cancelled: bool) -> Out {
    if teardown == End::Panic || status == Status::Panicked {
        return Out::Panicked;
    }
    let exit_failed = teardown == End::Err;
    if cancelled {
        return Out::Cancelled { exit: exit_failed };
    }
    match (status, exit_failed) {
        (Status::Success, false) => Out::Value,
        (Status::Success, true) => Out::Exit,
        (_, false) => Out::Body,
        (_, true) => Out::BodyAndExit,
    }
}

/// Runs `case`; returns the log, the output and the number of polls.
fn execute(case: Case) -> (Vec<Ev>, Out, u32) {
    let log = Log::default();
    let closure_log = log.clone();
    let closure = async move |scope: async_with::Scope<'_, Res>| -> Result<(), &'static str> {
        let log = closure_log;
        log.push(Ev::Setup);
        let _local = OnDrop(log.clone(), Ev::LocalDrop);
        Yield::new(case.setup_pending as usize).await;
        match case.setup {
            Setup::Fail => return Err("setup"),
            Setup::Panic => panic!("setup panicked"),
            _ => {}
        }
        let res = Res {
            writes: Box::new(0),
            log: log.clone(),
        };
        match case.setup {
            Setup::Fail | Setup::Panic => unreachable!(),
            Setup::Lost => {
                let mut lend = scope.lend(res);
                let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut lend).poll(cx)));
                assert!(first.await.is_pending());
                drop(lend);
                return Err("lost");
            }
            Setup::Leaked => {
                let mut lend = scope.lend(res);
                let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut lend).poll(cx)));
                assert!(first.await.is_pending());
                log.push(Ev::Offer);
                std::mem::forget(lend);
                Yield::new(1).await;
                log.push(Ev::TeardownEnd);
                return Ok(());
            }
            Setup::Lend => {}
        }
        log.push(Ev::Offer);
        let (mut res, outcome) = scope.lend(res).await;
        log.push(Ev::Saw(outcome.status()));
        if let Outcome::Failure(failure) = outcome {
            assert_eq!(failure.downcast_ref::<BodyErr>(), Some(&BodyErr));
        }
        touching(&mut res, case.teardown_pending).await;
        assert!(*res.writes > 0);
        drop(res);
        match case.teardown {
            End::Ok => {
                log.push(Ev::TeardownEnd);
                Ok(())
            }
            End::Err => {
                log.push(Ev::TeardownEnd);
                Err("teardown")
            }
            End::Panic => panic!("teardown panicked"),
        }
    };
    let body_log = log.clone();
    let body = async move |res: &mut Res| -> Result<(), BodyErr> {
        body_log.push(Ev::BodyStart);
        let _guard = OnDrop(body_log.clone(), Ev::BodyDrop);
        touching(res, case.body_pending).await;
        match case.body {
            End::Ok => {
                body_log.push(Ev::BodyEnd);
                Ok(())
            }
            End::Err => {
                body_log.push(Ev::BodyEnd);
                Err(BodyErr)
            }
            End::Panic => panic!("body panicked"),
        }
    };
    let signal_log = log.clone();
    let mut signal_polls = 0;
    let signal = std::future::poll_fn(move |cx| {
        let k = case.signal.unwrap_or(u32::MAX);
        if signal_polls == k {
            signal_log.push(Ev::SignalFired);
            return Poll::Ready(());
        }
        signal_polls += 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    });
    let (out, polls) = if case.as_manager {
        manager_run(case, closure, body, signal)
    } else {
        let with = scoped(closure).with(body);
        if case.signal.is_some() {
            drive(case, with.cancel_on(signal), cancel_out)
        } else {
            drive(case, with, plain_out)
        }
    };
    (log.events(), out, polls)
}

#[cfg(feature = "alloc")]
fn manager_run<C, B, S>(case: Case, closure: C, body: B, signal: S) -> (Out, u32)
where
    C: for<'s> async_with::ScopeFn<'s, Res, Error = &'static str>,
    C: AsyncFnOnce(async_with::Scope<'_, Res>) -> Result<(), &'static str>,
    B: for<'r> async_with::Body<'r, Res, Ok = (), Err = BodyErr>,
    B: AsyncFnOnce(&mut Res) -> Result<(), BodyErr>,
    S: Future,
{
    let with = async_with::with(scoped(closure), body);
    if case.signal.is_some() {
        drive(case, with.cancel_on(signal), cancel_out)
    } else {
        drive(case, with, plain_out)
    }
}

#[cfg(not(feature = "alloc"))]
fn manager_run<C, B, S>(_: Case, _: C, _: B, _: S) -> (Out, u32) {
    unreachable!("only with `alloc`")
}

fn plain_out(output: Result<(), Error<&'static str, BodyErr>>) -> Out {
    match output {
        Ok(()) => Out::Value,
        Err(Error::Enter(_)) => Out::Enter,
        Err(Error::Body(_)) => Out::Body,
        Err(Error::Exit(_)) => Out::Exit,
        Err(Error::BodyAndExit { .. }) => Out::BodyAndExit,
    }
}

fn cancel_out(output: Result<(), CancelError<&'static str, BodyErr>>) -> Out {
    match output {
        Err(CancelError::Entering) => Out::Entering,
        Err(CancelError::Body { exit }) => Out::Cancelled {
            exit: exit.is_some(),
        },
        Err(CancelError::Failed(error)) => plain_out(Err(error)),
        Ok(()) => Out::Value,
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// Polls `future` until it is ready, panics (caught) or is dropped after `drop_after` polls.
fn drive<F: Future>(case: Case, future: F, out: impl Fn(F::Output) -> Out) -> (Out, u32) {
    let waker = std::sync::Arc::new(CountingWaker::default());
    let waker = std::task::Waker::from(waker);
    let mut cx = Context::from_waker(&waker);
    let mut future = Box::pin(future);
    let mut polls = 0;
    loop {
        if case.drop_after == Some(polls) {
            drop(future);
            return (Out::Dropped, polls);
        }
        polls += 1;
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(output)) => return (out(output), polls),
            Ok(Poll::Pending) => assert!(polls < 50, "no end"),
            Err(_) => {
                drop(future);
                return (Out::Panicked, polls);
            }
        }
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let setups: &[Setup] = if cfg!(feature = "std") {
        &[
            Setup::Lend,
            Setup::Fail,
            Setup::Panic,
            Setup::Lost,
            Setup::Leaked,
        ]
    } else {
        &[Setup::Lend, Setup::Fail, Setup::Lost, Setup::Leaked]
    };
    let ends: &[End] = if cfg!(feature = "std") {
        &[End::Ok, End::Err, End::Panic]
    } else {
        &[End::Ok, End::Err]
    };
    let managers: &[bool] = if cfg!(feature = "alloc") {
        &[false, true]
    } else {
        &[false]
    };
    for &as_manager in managers {
        for setup_pending in 0..=1 {
            for &setup in setups {
                for body_pending in 0..=1 {
                    for &body in ends {
                        for teardown_pending in 0..=1 {
                            for &teardown in ends {
                                let base = Case {
                                    setup_pending,
                                    setup,
                                    body_pending,
                                    body,
                                    teardown_pending,
                                    teardown,
                                    signal: None,
                                    drop_after: None,
                                    as_manager,
                                };
                                let (_, _, polls) = model(&base);
                                // The signal at every poll it can get, or never; dropped after
                                // every number of polls short of the end, or never.
                                for signal in std::iter::once(None).chain((0..polls).map(Some)) {
                                    for drop_after in
                                        std::iter::once(None).chain((0..polls).map(Some))
                                    {
                                        cases.push(Case {
                                            signal,
                                            drop_after,
                                            ..base
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

/// Log rules that do not need the model.
fn invariants(case: &Case, log: &[Ev]) {
    let count = |ev: &Ev| log.iter().filter(|e| *e == ev).count();
    let started = log.contains(&Ev::Setup);
    assert_eq!(
        count(&Ev::LocalDrop),
        usize::from(started),
        "{case:?}: {log:?}"
    );
    let lent = log.contains(&Ev::Offer);
    // Never dropped twice; always dropped once it was lent.
    assert!(count(&Ev::ResDrop) <= 1, "{case:?}: {log:?}");
    if lent {
        assert_eq!(count(&Ev::ResDrop), 1, "{case:?}: {log:?}");
    }
    if let Some(start) = log.iter().position(|e| *e == Ev::BodyStart) {
        let guard = log
            .iter()
            .position(|e| *e == Ev::BodyDrop)
            .expect("body dropped");
        // Nothing of the closure while the body runs.
        assert!(
            log[start + 1..guard]
                .iter()
                .all(|e| matches!(e, Ev::BodyEnd | Ev::SignalFired)),
            "{case:?}: {log:?}"
        );
        if let Some(res) = log.iter().position(|e| *e == Ev::ResDrop) {
            assert!(guard < res, "{case:?}: {log:?}");
        }
    }
}

#[test]
fn sweep() {
    let cases = cases();
    // The fixtures' panics are expected and caught: keep them quiet.
    std::panic::set_hook(Box::new(|_| {}));
    // Under Miri, every 3rd case (a fixed stride through the whole grid, so every setup, end,
    // signal index and drop point still occurs).
    let stride = if cfg!(miri) { 3 } else { 1 };
    let mut ran = 0;
    for case in cases.iter().step_by(stride) {
        let expected = model(case);
        let got = execute(*case);
        if got != expected {
            let _ = std::panic::take_hook();
            panic!("{case:?}\n  got: {got:?}\n want: {expected:?}");
        }
        if let Err(payload) = catch_unwind(|| invariants(case, &got.0)) {
            let _ = std::panic::take_hook();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("invariant: {message:?}");
        }
        ran += 1;
    }
    eprintln!("{ran} cases");
    assert!(ran > 100, "{ran} cases");
}
