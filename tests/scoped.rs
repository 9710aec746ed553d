//! One-function managers (`scoped`): what runs, in which order, what the closure sees, and
//! every misuse the docs list (no lend, a dropped or leaked lend future, failures and panics
//! before and after the lend, the future dropped in each phase).

mod support;

use std::future::Future;
use std::mem;
use std::pin::{Pin, pin};
use std::task::Poll;

use async_with::{CancelError, Error, Status, scoped};
use support::{BodyError, Event, Log, Res, Yield, poll_once, poll_to_end, run};

use Event::{Note, ResourceDrop};

/// A local of the closure that logs its drop.
fn local(log: &Log) -> support::OnDrop {
    log.on_drop(Note("closure local dropped"))
}

#[test]
fn setup_body_teardown_in_order_sharing_a_local() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let started = 40; // used in teardown
        log.push(Note("setup"));
        Yield::new(1).await;
        let (res, outcome) = scope.lend(Res::new(&log, 1)).await;
        assert!(outcome.is_success());
        Yield::new(1).await;
        log.push(Note("teardown"));
        assert_eq!(started + res.value, 42);
        Ok::<_, &str>(())
    })
    .with(async |res: &mut Res| {
        log.push(Note("body"));
        Yield::new(1).await;
        res.value = 2;
        Ok::<_, BodyError>(res.value * 10)
    }));
    assert_eq!(result, Ok(20));
    assert_eq!(
        log.events(),
        [
            Note("setup"),
            Note("body"),
            Note("teardown"),
            ResourceDrop(2)
        ]
    );
}

#[test]
fn teardown_holds_the_typed_error_across_awaits() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let (_, outcome) = scope.lend(0u32).await;
        let failure = outcome.failure().expect("the body failed");
        Yield::new(2).await;
        // Still lent after two `Pending`s: the typed look and the mismatched one.
        assert_eq!(outcome.error::<BodyError>(), Some(&BodyError(7)));
        assert_eq!(outcome.error::<String>(), None);
        assert_eq!(format!("{failure:?}"), "BodyError(7)");
        log.push(Note("audited"));
        Ok::<_, &str>(())
    })
    .with(async |_| Err::<(), _>(BodyError(7))));
    assert_eq!(result, Err(Error::Body(BodyError(7))));
    assert_eq!(log.events(), [Note("audited")]);
}

#[test]
fn an_error_before_the_lend_is_the_enter_error_and_the_body_does_not_run() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let _local = local(&log);
        let res = Res::new(&log, 1);
        Yield::new(1).await;
        if res.value == 1 {
            return Err("no connection");
        }
        let _ = scope.lend(res).await;
        Ok(())
    })
    .with(async |_: &mut Res| {
        log.push(Note("body"));
        Ok::<_, BodyError>(())
    }));
    assert_eq!(result, Err(Error::Enter("no connection")));
    assert_eq!(
        log.events(),
        [ResourceDrop(1), Note("closure local dropped")]
    );
}

#[test]
fn an_error_after_the_lend_is_the_exit_error() {
    let (result, _) = run(scoped(async |scope| {
        let _ = scope.lend(1u8).await;
        Yield::new(1).await;
        Err::<(), _>("commit failed")
    })
    .with(async |n| Ok::<_, BodyError>(*n)));
    assert_eq!(result, Err(Error::Exit("commit failed")));

    let (result, _) = run(scoped(async |scope| {
        let (_, outcome) = scope.lend(1u8).await;
        assert_eq!(outcome.status(), Status::Failure);
        Err::<(), _>("rollback failed")
    })
    .with(async |_| Err::<(), _>(BodyError(3))));
    assert_eq!(
        result,
        Err(Error::BodyAndExit {
            body: BodyError(3),
            exit: "rollback failed"
        })
    );
}

#[test]
#[should_panic(expected = "the closure of `scoped` returned `Ok` without lending a resource")]
fn returning_ok_without_lending_panics() {
    let _ = run(
        scoped(async |_scope: async_with::Scope<'_, u8>| Ok::<_, ()>(()))
            .with(async |n| Ok::<_, ()>(*n)),
    );
}

#[test]
fn a_lend_that_lost_a_race_drops_the_resource_and_the_body_never_runs() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let mut lend = scope.lend(Res::new(&log, 5));
        // Poll the lend once (it offers the resource), then give up on it in the same poll.
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut lend).poll(cx))).await;
        assert!(first.is_pending());
        drop(lend);
        log.push(Note("gave up"));
        Err("timed out waiting")
    })
    .with(async |_: &mut Res| {
        log.push(Note("body"));
        Ok::<_, BodyError>(())
    }));
    assert_eq!(result, Err(Error::Enter("timed out waiting")));
    assert_eq!(log.events(), [ResourceDrop(5), Note("gave up")]);
}

#[test]
fn a_leaked_lend_still_lends_and_the_resource_is_dropped_once_with_the_closure() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let mut lend = scope.lend(Res::new(&log, 5));
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut lend).poll(cx))).await;
        assert!(first.is_pending());
        // `Lending` is `Unpin`: forgetting it after a poll is allowed, and its `Drop` never runs.
        mem::forget(lend);
        Yield::new(1).await; // the body runs here, with the resource the lend offered
        log.push(Note("teardown without the resource"));
        Ok::<_, &str>(())
    })
    .with(async |res: &mut Res| {
        log.push(Note("body"));
        res.value = 6;
        Ok::<_, BodyError>(())
    }));
    assert_eq!(result, Ok(()));
    assert_eq!(
        log.events(),
        [
            Note("body"),
            Note("teardown without the resource"),
            ResourceDrop(6)
        ]
    );
}

#[test]
fn a_leaked_boxed_lend_is_sound_too() {
    // The issue's form: `mem::forget` of a boxed, polled lend future (the box is leaked, which
    // Miri reports unless leaks are ignored, so the pointer is freed by hand here instead).
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let mut lend = Box::pin(scope.lend(Res::new(&log, 5)));
        let first = std::future::poll_fn(|cx| Poll::Ready(lend.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        let raw = Box::into_raw(Pin::into_inner(lend));
        Yield::new(1).await;
        // Free the box's memory without running `Lending`'s destructor: a leak, then cleaned.
        // SAFETY: `raw` came from `Box::into_raw` just above; `Lending` is `Unpin`, and it is
        // wrapped so that its `Drop` does not run.
        drop(unsafe { Box::from_raw(raw as *mut mem::ManuallyDrop<async_with::Lending<'_, Res>>) });
        Ok::<_, &str>(())
    })
    .with(async |_: &mut Res| Ok::<_, BodyError>(())));
    assert_eq!(result, Ok(()));
    assert_eq!(log.events(), [ResourceDrop(5)]);
}

#[test]
fn the_closure_is_not_polled_while_the_body_runs() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        // Something awaited beside the lend waits for the body.
        let beside = async {
            log.push(Note("beside starts"));
            Yield::new(1).await;
            log.push(Note("beside ends"));
        };
        let ((n, _), ()) = futures_util::future::join(scope.lend(1u8), beside).await;
        assert_eq!(n, 2);
        Ok::<_, &str>(())
    })
    .with(async |n| {
        log.push(Note("body starts"));
        Yield::new(3).await;
        *n = 2;
        log.push(Note("body ends"));
        Ok::<_, BodyError>(())
    }));
    assert_eq!(result, Ok(()));
    assert_eq!(
        log.events(),
        [
            Note("beside starts"),
            Note("body starts"),
            Note("body ends"),
            Note("beside ends")
        ]
    );
}

#[test]
fn dropped_mid_body_the_body_goes_first_then_the_resource_then_the_closure() {
    let log = Log::new();
    {
        let mut with = pin!(
            scoped(async |scope| {
                let _local = local(&log);
                let _ = scope.lend(Res::new(&log, 1)).await;
                log.push(Note("teardown ran"));
                Ok::<_, &str>(())
            })
            .with(async |_: &mut Res| {
                let _guard = log.on_drop(Event::BodyDrop);
                Yield::new(10).await;
                Ok::<_, BodyError>(())
            })
        );
        assert!(poll_once(with.as_mut()).is_pending());
        assert!(log.is_empty());
    }
    assert_eq!(
        log.events(),
        [
            Event::BodyDrop,
            ResourceDrop(1),
            Note("closure local dropped")
        ]
    );
}

#[test]
fn dropped_during_setup_or_teardown_the_closure_future_is_dropped() {
    let log = Log::new();
    {
        let mut with = pin!(
            scoped(async |scope| {
                let _local = local(&log);
                Yield::new(1).await;
                let _ = scope.lend(0u8).await;
                Ok::<_, &str>(())
            })
            .with(async |n| Ok::<_, BodyError>(*n))
        );
        assert!(poll_once(with.as_mut()).is_pending());
    }
    assert_eq!(log.events(), [Note("closure local dropped")]);

    let log = Log::new();
    {
        let mut with = pin!(
            scoped(async |scope| {
                let _local = local(&log);
                let (res, _) = scope.lend(Res::new(&log, 3)).await;
                Yield::new(5).await;
                drop(res);
                Ok::<_, &str>(())
            })
            .with(async |_: &mut Res| Ok::<_, BodyError>(()))
        );
        assert!(poll_once(with.as_mut()).is_pending());
        assert!(log.is_empty());
    }
    // The resource came back and is a local of the suspended teardown.
    assert_eq!(
        log.events(),
        [ResourceDrop(3), Note("closure local dropped")]
    );
}

#[test]
fn a_signal_mid_body_lets_teardown_see_cancelled_and_it_is_awaited() {
    let log = Log::new();
    let mut signal_after = 2;
    let signal = std::future::poll_fn(|cx| {
        signal_after -= 1;
        if signal_after == 0 {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    });
    let (result, _) = run(scoped(async |scope| {
        let (res, outcome) = scope.lend(Res::new(&log, 1)).await;
        assert_eq!(outcome.status(), Status::Cancelled);
        Yield::new(2).await; // shielded: the signal is not polled again
        log.push(Note("rolled back"));
        drop(res);
        Ok::<_, &str>(())
    })
    .with(async |_: &mut Res| {
        let _guard = log.on_drop(Event::BodyDrop);
        std::future::pending::<Result<(), BodyError>>().await
    })
    .cancel_on(signal));
    assert_eq!(result, Err(CancelError::Body { exit: None }));
    assert_eq!(
        log.events(),
        [Event::BodyDrop, Note("rolled back"), ResourceDrop(1)]
    );
}

#[test]
fn a_signal_during_setup_drops_the_closure_future() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let _local = local(&log);
        std::future::pending::<()>().await;
        let _ = scope.lend(0u8).await;
        Ok::<_, &str>(())
    })
    .with(async |n| Ok::<_, BodyError>(*n))
    .cancel_on(async {}));
    assert_eq!(result, Err(CancelError::Entering));
    assert_eq!(log.events(), [Note("closure local dropped")]);
}

#[test]
fn a_bound_on_teardown_drops_the_closure_future() {
    let log = Log::new();
    let (result, _) = run(scoped(async |scope| {
        let _local = local(&log);
        let _ = scope.lend(0u8).await;
        std::future::pending::<()>().await;
        Ok::<_, &str>(())
    })
    .with(async |_| std::future::pending::<Result<(), BodyError>>().await)
    .cancel_on(async {})
    .abandon_exit_on(async {}));
    assert_eq!(
        result,
        Err(CancelError::ExitAbandoned {
            body: None,
            cancelled: true
        })
    );
    assert_eq!(log.events(), [Note("closure local dropped")]);
}

#[cfg(feature = "std")]
#[test]
fn a_body_panic_is_seen_by_teardown_then_resumes() {
    let log = Log::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(scoped(async |scope| {
            let (_, outcome) = scope.lend(0u8).await;
            assert!(matches!(outcome, async_with::Outcome::Panicked));
            Yield::new(1).await;
            log.push(Note("teardown after panic"));
            Ok::<_, &str>(())
        })
        .with(async |_| -> Result<(), BodyError> { panic!("body panicked") }))
    }));
    assert!(caught.is_err());
    assert_eq!(log.events(), [Note("teardown after panic")]);
}

#[cfg(feature = "std")]
#[test]
fn a_closure_panic_before_or_after_the_lend_propagates_and_drops_everything_once() {
    for after in [false, true] {
        let log = Log::new();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut with = pin!(
                scoped(async |scope| {
                    let _local = local(&log);
                    if !after {
                        panic!("setup panicked");
                    }
                    let (res, _) = scope.lend(Res::new(&log, 1)).await;
                    let _res = res;
                    panic!("teardown panicked");
                    #[allow(unreachable_code)]
                    Ok::<_, &str>(())
                })
                .with(async |_: &mut Res| {
                    log.push(Note("body"));
                    Ok::<_, BodyError>(())
                })
            );
            poll_to_end(with.as_mut())
        }));
        assert!(caught.is_err());
        if after {
            assert_eq!(
                log.events(),
                [Note("body"), ResourceDrop(1), Note("closure local dropped")]
            );
        } else {
            assert_eq!(log.events(), [Note("closure local dropped")]);
        }
    }
}

#[test]
fn a_resource_with_a_lifetime_and_a_body_that_borrows_the_caller() {
    let mut buffer = Vec::new();
    let mut seen = 0;
    let (result, _) = run(scoped(async |scope| {
        let (buffer, _) = scope.lend(&mut buffer).await;
        buffer.push(3);
        Ok::<_, ()>(())
    })
    .with(async |buffer: &mut &mut Vec<u8>| {
        buffer.push(1);
        seen = buffer.len();
        Ok::<_, ()>(())
    }));
    assert_eq!(result, Ok(()));
    assert_eq!((buffer, seen), (vec![1, 3], 1));
}

#[test]
fn debug_shows_the_phases() {
    let mut with = pin!(
        scoped(async |scope| {
            let _ = scope.lend(0u8).await;
            Ok::<_, ()>(())
        })
        .with(async |_| {
            Yield::new(1).await;
            Ok::<_, ()>(())
        })
    );
    assert_eq!(
        format!("{with:?}"),
        r#"ScopedWith { with: WithFuture { phase: "Start" }, closure_running: false }"#
    );
    assert!(poll_once(with.as_mut()).is_pending());
    assert_eq!(
        format!("{with:?}"),
        r#"ScopedWith { with: WithFuture { phase: "Body" }, closure_running: true }"#
    );
    assert_eq!(poll_to_end(with.as_mut()), Ok(()));
    assert!(futures_util::future::FusedFuture::is_terminated(&*with));
}

/// A library's manager, the way a crate would return one: a ledger entry that is kept only if
/// the body succeeds, with the body's error written beside it otherwise.
fn ledger_entry(
    ledger: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> async_with::Scoped<
    Vec<u32>,
    impl for<'s> async_with::ScopeFn<'s, Vec<u32>, Error = &'static str, Future: Send> + Send,
> {
    scoped(async move |scope| {
        let opened = ledger.lock().unwrap().len(); // a local of setup, used in teardown
        let (entry, outcome) = scope.lend(Vec::new()).await;
        // The outcome is held across an await that may resume on another thread.
        yield_once().await;
        let line = match outcome.error::<BodyError>() {
            Some(error) => format!("#{opened} rolled back: {error:?}"),
            None => format!("#{opened} kept {entry:?}"),
        };
        ledger.lock().unwrap().push(line);
        Ok(())
    })
}

/// `Pending` once (waking), then ready: a `Send` [`Yield`].
fn yield_once() -> impl Future<Output = ()> + Send {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

#[test]
fn a_library_returns_one_and_its_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let ledger = std::sync::Arc::default();
    let with = ledger_entry(std::sync::Arc::clone(&ledger)).with(async |entry| {
        entry.push(1);
        Ok::<_, BodyError>(())
    });
    assert_send(&with);
    assert_eq!(run(with).0, Ok(()));
    assert_eq!(*ledger.lock().unwrap(), ["#0 kept [1]"]);
}

#[cfg(not(miri))]
#[test]
fn spawned_on_a_multi_thread_tokio_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let ledger = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let ledger = std::sync::Arc::clone(&ledger);
            tasks.push(tokio::spawn(async move {
                ledger_entry(ledger)
                    .with(async move |entry| {
                        tokio::task::yield_now().await;
                        entry.push(i);
                        if i % 2 == 0 { Ok(i) } else { Err(BodyError(i)) }
                    })
                    .await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            let i = i as u32;
            if i % 2 == 0 {
                assert_eq!(result, Ok(i));
            } else {
                assert_eq!(result, Err(Error::Body(BodyError(i))));
            }
        }
    });
    let ledger = ledger.lock().unwrap();
    assert_eq!(ledger.len(), 8);
    assert_eq!(
        ledger
            .iter()
            .filter(|l| l.contains("rolled back: BodyError("))
            .count(),
        4
    );
    assert_eq!(ledger.iter().filter(|l| l.contains("kept [")).count(), 4);
}
