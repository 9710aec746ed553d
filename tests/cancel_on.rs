//! Graceful cancellation (issue 18): a stop signal ends the body, and exit is still awaited,
//! seeing `Cancelled`; phase by phase, for one manager, a tuple, an array and an exit stack.

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use async_with::{CancelError, Error, FusedFuture, Status, Value, with};
use support::{BodyError, Event, Log, OnDrop, Scripted, Yield};

mod support;

/// A stop signal: ready after `n` `Pending`s; logs `Note(name)` when dropped.
struct Signal {
    delay: Yield,
    _dropped: OnDrop,
}

fn signal(log: &Log, n: usize, name: &'static str) -> Signal {
    Signal {
        delay: Yield::new(n),
        _dropped: log.on_drop(Event::Note(name)),
    }
}

impl Future for Signal {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.delay).poll(cx)
    }
}

/// A body that never finishes; logs `BodyStart`.
async fn endless(res: &mut support::Res) -> Result<(), BodyError> {
    res.log(Event::BodyStart);
    core::future::pending::<()>().await;
    Ok(())
}

/// The body was stopped and exit succeeded; the members 3, 2, 1 exited in that order, each
/// seeing `Cancelled`.
fn assert_stopped_newest_first<T: core::fmt::Debug, X: core::fmt::Debug, E: core::fmt::Debug>(
    out: &Result<T, CancelError<X, E>>,
    log: &Log,
) {
    assert!(
        matches!(out, Err(CancelError::Body { exit: None })),
        "{out:?}"
    );
    let order: Vec<_> = [3, 2, 1]
        .map(|v| log.position(&exit_start(Status::Cancelled, v)))
        .into();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

fn exit_start(status: Status, value: u32) -> Event {
    Event::ExitStart {
        status,
        value,
        failure: None,
    }
}

#[test]
fn a_signal_during_enter_drops_the_enter_future_and_nothing_exits() {
    let log = Log::new();
    let manager = Scripted::new(&log).enter_pending(5);
    let (out, _) = support::run(with(manager, async |_res| Value(1)).cancel_on(signal(
        &log,
        2,
        "signal dropped",
    )));
    assert_eq!(out, Err(CancelError::Entering));
    let events = log.events();
    assert!(events.contains(&Event::EnterDrop), "{events:?}");
    assert_eq!(log.count(|e| matches!(e, Event::ExitStart { .. })), 0);
    assert_eq!(log.count(|e| matches!(e, Event::Cancel(_))), 0);
    assert!(log.position(&Event::EnterDrop) < log.position(&Event::Note("signal dropped")));
}

#[test]
fn a_signal_during_the_body_drops_its_future_then_awaits_exit_seeing_cancelled() {
    let log = Log::new();
    let manager = Scripted::new(&log).initial(4).exit_pending(3);
    let body_log = log.clone();
    let (out, _) = support::run(
        with(manager, async move |res| -> Result<(), BodyError> {
            res.value += 1;
            let _dropped = body_log.on_drop(Event::BodyDrop);
            core::future::pending::<()>().await;
            Ok(())
        })
        .cancel_on(signal(&log, 2, "signal dropped")),
    );
    assert_eq!(out, Err(CancelError::Body { exit: None }));
    let body_drop = log.position(&Event::BodyDrop);
    let exit = log.position(&exit_start(Status::Cancelled, 5));
    let signal_drop = log.position(&Event::Note("signal dropped"));
    let first_exit_pending = log.position(&Event::ExitPending);
    let exit_ready = log.position(&Event::ExitReady);
    // The body's future first, the resource intact (exit sees the body's write), then exit,
    // awaited to its end; the signal is gone before exit's future is first polled.
    assert!(body_drop < exit && exit < first_exit_pending && first_exit_pending < exit_ready);
    assert!(signal_drop < first_exit_pending);
    assert_eq!(log.count(|e| *e == Event::ExitPending), 3);
    assert_eq!(log.count(|e| matches!(e, Event::Cancel(_))), 0);
    assert_eq!(
        log.count(|e| matches!(e, Event::ResourceDrop(5))),
        1,
        "exit had the resource"
    );
}

#[test]
fn a_failing_exit_after_a_cancelled_body_is_kept() {
    let log = Log::new();
    let manager = Scripted::new(&log).exit_pending(1).exit_fails("no goodbye");
    let (out, _) =
        support::run(with(manager, endless).cancel_on(signal(&log, 0, "signal dropped")));
    assert_eq!(
        out,
        Err(CancelError::Body {
            exit: Some("no goodbye")
        })
    );
    let err = out.unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.manager(), Some(&"no goodbye"));
    assert_eq!(
        err.to_string(),
        "the body was cancelled, and then exiting the resource failed: no goodbye"
    );
}

#[test]
fn a_body_ready_in_the_same_poll_as_the_signal_is_not_cancelled() {
    let log = Log::new();
    let manager = Scripted::new(&log).exit_pending(2);
    // The body is ready on the second poll, and so is the signal.
    let (out, _) = support::run(
        with(manager, async |res| -> Result<u32, BodyError> {
            Yield::new(1).await;
            Ok(res.value + 9)
        })
        .cancel_on(signal(&log, 1, "signal dropped")),
    );
    assert_eq!(out, Ok(9));
    assert!(log.events().contains(&exit_start(Status::Success, 0)));
    // Exit began in that poll: the signal was dropped then, before exit was polled again.
    assert!(log.position(&Event::Note("signal dropped")) < log.position(&Event::ExitReady));
}

#[test]
fn a_signal_that_never_fires_changes_nothing_and_is_dropped_when_exit_begins() {
    let log = Log::new();
    let manager = Scripted::new(&log).exit_pending(2);
    let (out, _) = support::run(
        with(manager, async |_res| Err::<(), _>(BodyError(3))).cancel_on(signal(
            &log,
            usize::MAX,
            "signal dropped",
        )),
    );
    assert_eq!(out, Err(CancelError::Failed(Error::Body(BodyError(3)))));
    assert!(log.position(&Event::Note("signal dropped")) < log.position(&Event::ExitReady));
    assert_eq!(out.unwrap_err().error(), Some(&Error::Body(BodyError(3))));
}

#[test]
fn an_enter_error_is_reported_as_without_a_signal() {
    let log = Log::new();
    let manager = Scripted::new(&log).enter_fails("refused");
    let (out, _) = support::run(with(manager, async |_res| Value(())).cancel_on(signal(
        &log,
        5,
        "signal dropped",
    )));
    assert_eq!(out, Err(CancelError::Failed(Error::Enter("refused"))));
    assert!(!out.unwrap_err().is_cancelled());
}

#[test]
fn an_exit_bound_abandons_an_exit_that_runs_too_long() {
    let log = Log::new();
    let manager = Scripted::new(&log).exit_pending(100);
    let (out, _) = support::run(
        with(manager, endless)
            .cancel_on(signal(&log, 0, "signal dropped"))
            .abandon_exit_on(signal(&log, 3, "bound dropped")),
    );
    assert_eq!(
        out,
        Err(CancelError::ExitAbandoned {
            body: None,
            cancelled: true
        })
    );
    // The bound is polled only during exit: three `Pending`s of its own, then the exit future
    // is dropped unfinished; `cancel` does not run (exit had the resource).
    assert_eq!(log.count(|e| *e == Event::ExitPending), 4);
    assert!(log.position(&Event::ExitDrop) < log.position(&Event::Note("bound dropped")));
    assert_eq!(log.count(|e| *e == Event::ExitReady), 0);
    assert_eq!(log.count(|e| matches!(e, Event::Cancel(_))), 0);
    assert!(out.unwrap_err().is_abandoned());
}

#[test]
fn an_exit_bound_after_a_failed_body_keeps_the_body_error() {
    let log = Log::new();
    let manager = Scripted::new(&log).exit_pending(100);
    let (out, _) = support::run(
        with(manager, async |_res| Err::<(), _>(BodyError(8)))
            .cancel_on(core::future::pending::<()>())
            .abandon_exit_on(signal(&log, 1, "bound dropped")),
    );
    assert_eq!(
        out,
        Err(CancelError::ExitAbandoned {
            body: Some(BodyError(8)),
            cancelled: false
        })
    );
}

#[test]
fn an_exit_that_finishes_within_its_bound_is_not_abandoned() {
    let log = Log::new();
    let manager = Scripted::new(&log).exit_pending(2);
    let (out, _) = support::run(
        with(manager, endless)
            .cancel_on(signal(&log, 1, "signal dropped"))
            .abandon_exit_on(signal(&log, 5, "bound dropped")),
    );
    assert_eq!(out, Err(CancelError::Body { exit: None }));
    assert!(log.position(&Event::ExitReady) < log.position(&Event::Note("bound dropped")));
}

#[test]
fn dropped_mid_body_with_a_signal_is_abortive_as_without_one() {
    let log = Log::new();
    {
        let mut future = pin!(
            with(Scripted::new(&log).initial(6), endless).cancel_on(signal(
                &log,
                10,
                "signal dropped"
            ))
        );
        assert!(support::poll_once(future.as_mut()).is_pending());
        assert!(!future.is_terminated());
    }
    assert_eq!(log.count(|e| *e == Event::Cancel(6)), 1);
    assert_eq!(log.count(|e| matches!(e, Event::ExitStart { .. })), 0);
}

#[test]
fn dropped_mid_exit_after_a_signal_drops_the_exit_future() {
    let log = Log::new();
    {
        let mut future = pin!(
            with(Scripted::new(&log).exit_pending(10), endless).cancel_on(signal(
                &log,
                0,
                "signal dropped"
            ))
        );
        assert!(support::poll_once(future.as_mut()).is_pending());
        assert_eq!(
            format!("{future:?}"),
            r#"CancelOn { phase: "Exit", guarding: "exit bound" }"#
        );
    }
    assert_eq!(log.count(|e| *e == Event::ExitDrop), 1);
    assert_eq!(log.count(|e| matches!(e, Event::Cancel(_))), 0);
}

#[test]
fn it_is_fused() {
    let log = Log::new();
    let mut future =
        pin!(with(Scripted::new(&log), async |_res| Value(2)).cancel_on(signal(&log, 9, "s")));
    assert!(!future.is_terminated());
    assert_eq!(support::poll_to_end(future.as_mut()), Ok(2));
    assert!(future.is_terminated());
}

#[test]
fn every_member_of_a_tuple_exits_right_to_left_seeing_cancelled() {
    let log = Log::new();
    let pair = (
        Scripted::new(&log).initial(1).exit_pending(1),
        Scripted::new(&log).initial(2).exit_pending(1),
    );
    let (out, _) = support::run(
        with(pair, async |_pair| {
            core::future::pending::<Value<()>>().await
        })
        .cancel_on(signal(&log, 1, "signal dropped")),
    );
    assert!(
        matches!(out, Err(CancelError::Body { exit: None })),
        "{out:?}"
    );
    let second = log.position(&exit_start(Status::Cancelled, 2));
    let first = log.position(&exit_start(Status::Cancelled, 1));
    assert!(second < first);
}

#[test]
fn a_failing_member_exit_shows_later_members_its_failure_after_a_cancel() {
    let log = Log::new();
    let pair = (
        Scripted::new(&log).initial(1),
        Scripted::new(&log).initial(2).exit_fails("second"),
    );
    let (out, _) = support::run(
        with(pair, async |_pair| {
            core::future::pending::<Value<()>>().await
        })
        .cancel_on(signal(&log, 0, "signal dropped")),
    );
    let Err(CancelError::Body { exit: Some(_) }) = out else {
        panic!("{out:?}")
    };
    assert!(log.events().contains(&exit_start(Status::Cancelled, 2)));
    assert!(log.events().contains(&Event::ExitStart {
        status: Status::Failure,
        value: 1,
        failure: Some("\"second\"".into()),
    }));
}

#[test]
fn every_member_of_an_array_exits_seeing_cancelled() {
    let log = Log::new();
    let members = [1, 2, 3].map(|v| Scripted::new(&log).initial(v).exit_pending(1));
    let (out, _) = support::run(
        with(members, async |_all| {
            core::future::pending::<Value<()>>().await
        })
        .cancel_on(signal(&log, 2, "signal dropped")),
    );
    assert_stopped_newest_first(&out, &log);
}

#[cfg(feature = "alloc")]
#[test]
fn every_entry_of_an_exit_stack_exits_seeing_cancelled() {
    use async_with::ExitStack;
    let log = Log::new();
    let (out, _) = support::run(
        with(ExitStack::<&'static str>::new(), async |stack| {
            for v in [1, 2, 3] {
                if stack
                    .enter_context(Scripted::new(&log).initial(v).exit_pending(1))
                    .await
                    .is_err()
                {
                    return Err(BodyError(0));
                }
            }
            core::future::pending::<()>().await;
            Ok(())
        })
        .cancel_on(signal(&log, 3, "signal dropped")),
    );
    assert_stopped_newest_first(&out, &log);
}
