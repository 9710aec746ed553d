//! A `Scoped` used as a manager (feature `alloc`): in `with`, in a tuple, in an array, in an
//! `ExitStack`, returned as `impl SendManager`, and driven by hand, where its exit handle and
//! exit future can be dropped or leaked apart from any `with`.

#![cfg(feature = "alloc")]

mod support;

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

use async_with::{
    AsyncEnter, AsyncExit, Error, ExitStack, Failure, GroupError, Outcome, SendManager, Status,
    null_context, scoped, with,
};
use support::{BodyError, Event, Log, Res, Yield, poll_once, run};

use Event::{Note, ResourceDrop};

/// The log's copy of a line teardown wrote (the log holds `&'static str`s).
fn note(line: &str) -> &'static str {
    const NOTES: &[&str] = &[
        "1: Success",
        "2: Success",
        "1: BodyError(9)",
        "1: BodyError(4)",
        "2: BodyError(4)",
        "3: BodyError(1)",
        "1: \"refused\"",
    ];
    NOTES
        .iter()
        .find(|n| **n == line)
        .copied()
        .unwrap_or("unexpected")
}

/// A scoped manager that logs what teardown saw, after awaiting with it.
fn logged(
    log: &Log,
    value: u32,
) -> async_with::Scoped<Res, impl for<'s> async_with::ScopeFn<'s, Res, Error = &'static str> + '_> {
    scoped(async move |scope| {
        let _local = log.on_drop(Note("closure local dropped"));
        let (res, outcome) = scope.lend(Res::new(log, value)).await;
        Yield::new(1).await;
        let seen = match outcome.failure() {
            Some(failure) => format!("{value}: {failure:?}"),
            None => format!("{value}: {:?}", outcome.status()),
        };
        log.push(Note(note(&seen)));
        drop(res);
        Ok(())
    })
}

#[test]
fn in_with_the_free_function() {
    let log = Log::new();
    let (result, _) = run(with(logged(&log, 1), async |res: &mut Res| {
        res.value = 2;
        Err::<(), _>(BodyError(9))
    }));
    assert_eq!(result, Err(Error::Body(BodyError(9))));
    assert_eq!(
        log.events(),
        [
            Note("1: BodyError(9)"),
            ResourceDrop(2),
            Note("closure local dropped")
        ]
    );
}

#[test]
fn in_a_tuple_an_array_and_an_exit_stack() {
    let log = Log::new();
    let (result, _) = run(with(
        (logged(&log, 1), null_context(5u8)),
        async |(res, n): &mut (Res, u8)| Ok::<_, BodyError>(res.value + u32::from(*n)),
    ));
    assert!(matches!(result, Ok(6)));
    assert_eq!(log.position(&Note("1: Success")), 0);

    let log = Log::new();
    let (result, _) = run(with([logged(&log, 1), logged(&log, 2)], async |_| {
        Err::<(), _>(BodyError(4))
    }));
    assert!(matches!(result, Err(Error::Body(BodyError(4)))));
    // Right to left, each seeing the body's error.
    assert!(log.position(&Note("2: BodyError(4)")) < log.position(&Note("1: BodyError(4)")));

    let log = Log::new();
    let (result, _) = run(with(ExitStack::<&'static str>::new(), async |stack| {
        let a = stack.enter_context(logged(&log, 1)).await?;
        a.value = 10;
        let b = stack.enter_context(logged(&log, 2)).await?;
        b.value = 20;
        Ok::<_, &'static str>(())
    }));
    assert!(result.is_ok());
    let events = log.events();
    let first = events
        .iter()
        .position(|e| *e == Note("2: Success"))
        .unwrap();
    let second = events
        .iter()
        .position(|e| *e == Note("1: Success"))
        .unwrap();
    assert!(first < second, "newest entry first: {events:?}");
    assert!(events.contains(&ResourceDrop(10)) && events.contains(&ResourceDrop(20)));
}

#[test]
fn in_a_group_whose_other_member_fails_to_enter() {
    let log = Log::new();
    let failing = async_with::from_fns(
        async || Err::<u8, &'static str>("refused"),
        async |_: u8, _: Outcome<'_>| Ok(()),
    );
    let (result, _) = run(with((logged(&log, 1), failing), async |_| {
        Ok::<_, BodyError>(())
    }));
    assert!(matches!(result, Err(Error::Enter(GroupError { .. }))));
    // The scoped member entered, then exited while the group unwound, seeing the other
    // member's enter error.
    assert_eq!(log.count(|e| *e == Note("1: \"refused\"")), 1, "{log:?}");
    assert!(log.events().contains(&Note("closure local dropped")));
}

/// A library function returning it as a spawnable manager.
#[cfg_attr(miri, allow(dead_code))]
fn spawnable_counter(
    counter: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> impl SendManager<Resource = u32, Error = ()> {
    scoped(async move |scope| {
        let before = counter.load(std::sync::atomic::Ordering::SeqCst);
        let (n, outcome) = scope.lend(before).await;
        if outcome.status() == Status::Success {
            counter.store(n, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    })
}

#[cfg(not(miri))]
#[test]
fn returned_as_a_send_manager_and_spawned() {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..4 {
            let counter = std::sync::Arc::clone(&counter);
            tokio::spawn(async move {
                with(spawnable_counter(counter), async |n: &mut u32| {
                    tokio::task::yield_now().await;
                    *n += 1;
                    Ok::<_, ()>(())
                })
                .await
            })
            .await
            .unwrap()
            .unwrap();
        }
    });
    assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[test]
fn dropped_mid_body_in_with() {
    let log = Log::new();
    {
        let mut with = pin!(with(logged(&log, 1), async |_: &mut Res| {
            let _guard = log.on_drop(Event::BodyDrop);
            Yield::new(5).await;
            Ok::<_, BodyError>(())
        }));
        assert!(poll_once(with.as_mut()).is_pending());
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

/// Polls `future` to its end by hand (at most 100 polls).
fn drive<F: Future + Unpin>(future: &mut F) -> F::Output {
    for _ in 0..100 {
        if let Poll::Ready(output) = poll_once(Pin::new(&mut *future)) {
            return output;
        }
    }
    panic!("not ready after 100 polls")
}

#[test]
fn by_hand_an_exit_handle_dropped_unused_drops_the_closure() {
    let log = Log::new();
    let mut enter = logged(&log, 3).enter();
    let (res, exit) = drive(&mut enter).unwrap();
    drop(enter);
    assert!(log.is_empty());
    drop(exit);
    assert_eq!(log.events(), [Note("closure local dropped")]);
    drop(res);
    assert_eq!(
        log.events(),
        [Note("closure local dropped"), ResourceDrop(3)]
    );
}

#[test]
fn by_hand_an_exit_future_dropped_early_drops_the_closure_before_the_error_goes() {
    let log = Log::new();
    let mut enter = logged(&log, 3).enter();
    let (res, exit) = drive(&mut enter).unwrap();
    {
        // The error lives in this block only; the exit future that borrows it is dropped in it.
        let error = BodyError(1);
        let mut teardown = exit.exit(res, Outcome::Failure(Failure::new(&error)));
        assert!(poll_once(Pin::new(&mut teardown)).is_pending());
        drop(teardown);
        log.push(Note("error dropped"));
    }
    assert_eq!(
        log.events(),
        [
            ResourceDrop(3),
            Note("closure local dropped"),
            Note("error dropped")
        ]
    );
}

#[cfg_attr(miri, ignore = "leaks the exit future and its cell by design")]
#[test]
fn by_hand_a_leaked_exit_future_keeps_the_closure_and_its_cell() {
    let log = Log::new();
    let mut enter = logged(&log, 3).enter();
    let (res, exit) = drive(&mut enter).unwrap();
    let error = Box::new(BodyError(1));
    let mut teardown = exit.exit(res, Outcome::Failure(Failure::new(&*error)));
    assert!(poll_once(Pin::new(&mut teardown)).is_pending());
    std::mem::forget(teardown);
    // The closure's future is never dropped, so it never reads the error again.
    drop(error);
    assert!(log.is_empty());
}

#[test]
fn by_hand_cancel_drops_the_resource_then_the_closure() {
    let log = Log::new();
    let mut enter = logged(&log, 3).enter();
    let (res, exit) = drive(&mut enter).unwrap();
    exit.cancel(res);
    assert_eq!(
        log.events(),
        [ResourceDrop(3), Note("closure local dropped")]
    );
}

#[test]
fn by_hand_an_enter_future_dropped_mid_setup_drops_the_closure() {
    let log = Log::new();
    let manager = scoped(async |scope| {
        let _local = log.on_drop(Note("closure local dropped"));
        Yield::new(1).await;
        let _ = scope.lend(0u8).await;
        Ok::<_, ()>(())
    });
    let mut enter = AsyncEnter::enter(manager);
    assert!(poll_once(Pin::new(&mut enter)).is_pending());
    drop(enter);
    assert_eq!(log.events(), [Note("closure local dropped")]);
}
