//! Auto traits and other trait impls of `WithFuture` (S8, S11): `Send` when its parts are,
//! never `Sync`-dependent, `!Unpin`, `FusedFuture`, a `Debug` that shows the phase; and a
//! `with` spawned on a multi-thread tokio runtime.

use core::cell::Cell;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use std::rc::Rc;

use async_with::{Error, Outcome, closing, from_fns, null_context, with};
use futures_core::FusedFuture;

/// Compiles only if the type of `value` is `Send`.
fn assert_send<T: Send>(_: &T) {}

/// Moves `fut` to another thread and runs it to completion there.
fn run_on_other_thread<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || futures_executor::block_on(fut))
        .join()
        .expect("the future panicked")
}

/// Compiles only if the type of `$value` does NOT implement `$trait` (the trick of
/// `static_assertions::assert_not_impl_any!`): if it did, both impls below would apply to it,
/// the method call would be ambiguous, and compilation would fail with E0283. (Checked: the
/// macro rejects a `Send` future and an `Unpin` value.)
macro_rules! assert_not_impl {
    ($value:expr, $trait:path) => {{
        trait AmbiguousIfImpl<A> {
            fn some_item(&self) {}
        }
        impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
        #[allow(dead_code)]
        struct Invalid;
        impl<T: ?Sized + $trait> AmbiguousIfImpl<Invalid> for T {}
        AmbiguousIfImpl::some_item(&$value);
    }};
}

/// A future that returns `Pending` once (waking its task) and then `Ready(())`.
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn yield_once() -> YieldOnce {
    YieldOnce::default()
}

#[test]
fn send_with_nullcontext() {
    let fut = with(null_context(vec![1_u8, 2]), async |v| {
        yield_once().await;
        v.push(3);
        Ok::<_, String>(v.len())
    });
    assert_send(&fut);
    assert_eq!(run_on_other_thread(fut), Ok(3));
}

#[test]
fn send_with_from_fns_and_closing() {
    let fut = with(
        from_fns(
            async || {
                yield_once().await;
                Ok::<_, &'static str>(String::from("conn"))
            },
            async |conn: String, status: Outcome<'_>| {
                yield_once().await;
                drop((conn, status));
                Ok(())
            },
        ),
        async |conn| {
            yield_once().await;
            conn.push('!');
            Ok::<_, ()>(conn.len())
        },
    );
    assert_send(&fut);
    assert_eq!(run_on_other_thread(fut), Ok(5));

    let fut = with(
        closing(vec![0_u8], async |v: Vec<u8>| {
            yield_once().await;
            drop(v);
            Ok::<_, ()>(())
        }),
        async |v| {
            yield_once().await;
            Ok::<_, u8>(v.len())
        },
    );
    assert_send(&fut);
    assert_eq!(run_on_other_thread(fut), Ok(1));
}

#[test]
fn not_send_with_rc_resource() {
    let fut = with(null_context(Rc::new(5_u32)), async |r| Ok::<_, ()>(**r));
    assert_not_impl!(fut, Send);

    // An `Rc` that lives only in the manager's exit handle also makes it `!Send`.
    let rc = Rc::new(());
    let fut = with(
        from_fns(
            async || Ok::<_, ()>(1_u32),
            async move |_n: u32, _s: Outcome<'_>| {
                drop(rc);
                Ok(())
            },
        ),
        async |n| Ok::<_, ()>(*n),
    );
    assert_not_impl!(fut, Send);
}

#[test]
fn not_unpin() {
    let fut = with(null_context(5_u32), async |r| Ok::<_, ()>(*r));
    assert_not_impl!(fut, Unpin);

    // Even when every part is `Unpin` (a `Ready` body future, a `u32` resource), the
    // self-borrow makes it `!Unpin`.
    fn body(r: &mut u32) -> core::future::Ready<Result<u32, ()>> {
        core::future::ready(Ok(*r))
    }
    let fut = with(null_context(5_u32), body);
    assert_not_impl!(fut, Unpin);
}

#[test]
fn send_without_sync() {
    // `Cell<u32>` is `Send` but not `Sync`: as resource and output. (Not as the body's error:
    // exit may hold it lent across awaits, so it must be `Sync` for the future to be `Send`.)
    let fut = with(null_context(Cell::new(1_u32)), async |c| {
        yield_once().await;
        c.set(c.get() + 1);
        if c.get() > 10 {
            Err(0_u8)
        } else {
            Ok(Cell::new(c.get()))
        }
    });
    assert_send(&fut);
    assert_not_impl!(fut, Sync);
    let out = run_on_other_thread(fut).map(Cell::into_inner);
    assert_eq!(out, Ok(2));

    // A manager whose closures, exit handle and futures hold `!Sync` values across awaits.
    let exits = Cell::new(0_u32);
    let fut = with(
        from_fns(
            async || {
                yield_once().await;
                Ok::<_, ()>(Cell::new(7_u32))
            },
            async move |c: Cell<u32>, _s: Outcome<'_>| {
                yield_once().await;
                exits.set(exits.get() + 1);
                assert_eq!((c.get(), exits.get()), (8, 1));
                Ok(())
            },
        ),
        async |c| {
            yield_once().await;
            c.set(c.get() + 1);
            Ok::<_, ()>(c.get())
        },
    );
    assert_send(&fut);
    assert_not_impl!(fut, Sync);
    assert_eq!(run_on_other_thread(fut), Ok(8));
}

/// Hand-polls `fut` with a no-op waker, recording `Debug` and `is_terminated` before each
/// poll and after the last.
fn trace_phases<F>(fut: Pin<&mut F>) -> (Vec<String>, F::Output)
where
    F: Future + FusedFuture + core::fmt::Debug,
{
    let mut fut = fut;
    let mut cx = Context::from_waker(Waker::noop());
    let mut seen = Vec::new();
    loop {
        assert!(!fut.is_terminated());
        seen.push(format!("{:?}", &*fut));
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            assert!(fut.is_terminated());
            seen.push(format!("{:?}", &*fut));
            return (seen, out);
        }
        assert!(seen.len() < 10, "the future did not finish");
    }
}

#[test]
fn fused_and_debug_show_the_phase() {
    let fut = pin!(with(
        from_fns(
            async || {
                yield_once().await;
                Ok::<_, ()>(1_u32)
            },
            async |_: u32, _: Outcome<'_>| {
                yield_once().await;
                Ok(())
            },
        ),
        async |n| {
            yield_once().await;
            Ok::<_, ()>(*n + 1)
        },
    ));
    let (seen, out) = trace_phases(fut);
    assert_eq!(out, Ok(2));
    assert_eq!(
        seen,
        [
            r#"WithFuture { phase: "Start" }"#,
            r#"WithFuture { phase: "Enter" }"#,
            r#"WithFuture { phase: "Body" }"#,
            r#"WithFuture { phase: "Exit" }"#,
            r#"WithFuture { phase: "Done" }"#,
        ]
    );
}

#[test]
fn fused_after_enter_failure() {
    let fut = pin!(with(
        from_fns(
            async || Err::<u32, _>("no device"),
            async |_: u32, _: Outcome<'_>| Ok(())
        ),
        async |n| Ok::<_, ()>(*n),
    ));
    let (seen, out) = trace_phases(fut);
    assert_eq!(out, Err(Error::Enter("no device")));
    assert_eq!(
        seen,
        [
            r#"WithFuture { phase: "Start" }"#,
            r#"WithFuture { phase: "Done" }"#,
        ]
    );
}

#[test]
#[should_panic(expected = "`WithFuture` polled after completion")]
fn poll_after_completion_panics() {
    let mut fut = pin!(with(null_context(1_u32), async |n| Ok::<_, ()>(*n)));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    assert!(fut.is_terminated());
    let _ = fut.as_mut().poll(&mut cx);
}

#[cfg(not(miri))]
#[test]
fn spawn_on_multi_thread_tokio() {
    use std::sync::{Arc, Mutex};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let results = rt.block_on(async {
        let handles: Vec<_> = (0..8)
            .map(|id| {
                let (enter_log, exit_log, body_log) = (log.clone(), log.clone(), log.clone());
                // A `'static` manager whose phases each yield to the tokio scheduler.
                let manager = from_fns(
                    async move || {
                        tokio::task::yield_now().await;
                        enter_log.lock().unwrap().push((id, "enter"));
                        Ok(vec![id])
                    },
                    async move |v: Vec<usize>, status: Outcome<'_>| {
                        tokio::task::yield_now().await;
                        assert_eq!(v, [id, id]);
                        let entry = if status.is_success() {
                            "exit:ok"
                        } else {
                            "exit:err"
                        };
                        exit_log.lock().unwrap().push((id, entry));
                        if id == 5 {
                            Err(format!("exit {id} failed"))
                        } else {
                            Ok(())
                        }
                    },
                );
                tokio::spawn(with(manager, async move |v: &mut Vec<usize>| {
                    tokio::task::yield_now().await;
                    body_log.lock().unwrap().push((id, "body"));
                    v.push(id);
                    tokio::task::yield_now().await;
                    if id % 2 == 1 { Err(id) } else { Ok(id * 10) }
                }))
            })
            .collect();
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.expect("task panicked"));
        }
        results
    });

    for (id, result) in results.into_iter().enumerate() {
        let expected = match id {
            5 => Err(Error::BodyAndExit {
                body: 5,
                exit: "exit 5 failed".to_string(),
            }),
            id if id % 2 == 1 => Err(Error::Body(id)),
            id => Ok(id * 10),
        };
        assert_eq!(result, expected, "task {id}");
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 24);
    for id in 0..8 {
        let mine: Vec<_> = log
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, e)| *e)
            .collect();
        let exit = if id % 2 == 1 { "exit:err" } else { "exit:ok" };
        assert_eq!(mine, ["enter", "body", exit], "task {id}");
    }
}

/// `WithFuture` is never `Sync`, even when every part is, with or without `std`: the auto
/// trait does not depend on features.
#[test]
fn never_sync() {
    let fut = async_with::with(async_with::null_context(1_u32), async |n| Ok::<_, ()>(*n));
    assert_not_impl!(fut, Sync);
    assert_eq!(futures_executor::block_on(fut), Ok(1));
}

#[test]
fn cancel_on_is_send_when_its_signals_are() {
    let fut = with(null_context(3_u32), async |n| Ok::<_, ()>(*n))
        .cancel_on(yield_once())
        .abandon_exit_on(yield_once());
    assert_send(&fut);
    assert_not_impl!(fut, Unpin);
    assert_not_impl!(fut, Sync);
    assert_eq!(run_on_other_thread(fut), Ok(3));
}

#[test]
fn cancel_on_is_not_send_with_a_signal_that_is_not() {
    /// A signal holding an `Rc`: `!Send`.
    struct RcSignal(#[allow(dead_code)] Rc<()>);
    impl Future for RcSignal {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    let fut = with(null_context(3_u32), async |n| Ok::<_, ()>(*n)).cancel_on(RcSignal(Rc::new(())));
    assert_not_impl!(fut, Send);

    let fut = with(null_context(3_u32), async |n| Ok::<_, ()>(*n))
        .cancel_on(yield_once())
        .abandon_exit_on(RcSignal(Rc::new(())));
    assert_not_impl!(fut, Send);
}

#[cfg(not(miri))]
#[test]
fn cancel_on_spawns_on_tokio_and_a_deadline_stops_the_body() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = exited.clone();
    let task = runtime.spawn(async move {
        let conn = from_fns(
            async || Ok::<_, ()>(0_u32),
            async move |_n: u32, outcome: Outcome<'_>| {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                seen.store(outcome.is_cancelled(), std::sync::atomic::Ordering::SeqCst);
                Ok(())
            },
        );
        with(conn, async |_n| {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Ok::<_, ()>(())
        })
        .cancel_on(tokio::time::sleep(std::time::Duration::from_millis(10)))
        .await
    });
    let result = runtime.block_on(task).expect("the task panicked");
    assert_eq!(result, Err(async_with::CancelError::Body { exit: None }));
    assert!(exited.load(std::sync::atomic::Ordering::SeqCst));
}
