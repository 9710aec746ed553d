//! The same scenario on several executors (section 5: "it runs on ..."): enter, body, exit;
//! a failing body whose failure exit sees; a body cancelled by a shorter future in a `select`,
//! whose resource goes to the synchronous `cancel` hook after the body future is dropped.
//! Every phase suspends once (returns `Pending` after waking its task) before it completes, so
//! each executor really has to reschedule the task between phases. The trace shows the order
//! of suspensions and completions.
//!
//! Executors: futures-executor, tokio (current-thread and multi-thread, `block_on` and
//! spawned), smol (`block_on` and spawned), embassy-executor on the host (`platform-std`), and
//! a hand-written poll loop.

use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::sync::{Arc, Mutex};

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, with};
use futures_util::future::{Either, select};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

/// A named, poll-based future: logs `"{label}:pending"` and returns `Pending` once (after
/// waking its task), then logs `label` and returns its value.
struct Step<T> {
    log: Log,
    label: String,
    yielded: bool,
    value: Option<T>,
}

impl<T> Step<T> {
    fn new(log: &Log, label: impl Into<String>, value: T) -> Self {
        Step {
            log: log.clone(),
            label: label.into(),
            yielded: false,
            value: Some(value),
        }
    }
}

impl<T> Unpin for Step<T> {}

impl<T> Future for Step<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.yielded {
            self.yielded = true;
            push(&self.log, format!("{}:pending", self.label));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        push(&self.log, self.label.clone());
        Poll::Ready(self.value.take().expect("`Step` polled after completion"))
    }
}

/// A hand-written manager: a device that is opened and closed.
struct Device {
    log: Log,
}

struct Close {
    log: Log,
}

impl AsyncEnter for Device {
    type Resource = u32;
    type Error = String;
    type Exit = Close;
    type Enter = Step<Result<(u32, Close), String>>;

    fn enter(self) -> Self::Enter {
        let close = Close {
            log: self.log.clone(),
        };
        Step::new(&self.log, "enter", Ok((20, close)))
    }
}

impl AsyncExit<u32> for Close {
    type Error = String;
    type Future<'o> = Step<Result<(), String>>;

    fn exit<'o>(self, value: u32, outcome: Outcome<'o>) -> Self::Future<'o> {
        // Exit sees how the body ended, including the error value.
        Step::new(&self.log, format!("exit {value} {outcome:?}"), Ok(()))
    }

    fn cancel(self, _value: u32) {
        push(&self.log, "cancel");
    }
}

/// `with` a device whose body adds one and then either returns `value * 2` or fails with
/// `"sensor timeout"`.
fn scenario(
    log: &Log,
    fail: bool,
) -> impl Future<Output = Result<u32, Error<String, &'static str>>> + Send + 'static {
    let body_log = log.clone();
    with(Device { log: log.clone() }, async move |value: &mut u32| {
        push(&body_log, "body:start");
        *value += 1;
        Step::new(&body_log, "body", ()).await;
        if fail {
            Err("sensor timeout")
        } else {
            Ok(*value * 2)
        }
    })
}

const SUCCESS_TRACE: [&str; 7] = [
    "enter:pending",
    "enter",
    "body:start",
    "body:pending",
    "body",
    "exit 21 Success:pending",
    "exit 21 Success",
];

const FAILURE_TRACE: [&str; 7] = [
    "enter:pending",
    "enter",
    "body:start",
    "body:pending",
    "body",
    "exit 21 Failure(\"sensor timeout\"):pending",
    "exit 21 Failure(\"sensor timeout\")",
];

/// Logs `"body:dropped"` when dropped: shows when the body's future is dropped.
struct DropGuard(Log);

impl Drop for DropGuard {
    fn drop(&mut self) {
        push(&self.0, "body:dropped");
    }
}

/// A shorter future: returns `Pending` (after waking its task) `polls` times, then logs
/// `"timeout"` and completes. Stands in for a timer.
struct Timeout {
    log: Log,
    polls: u32,
}

impl Future for Timeout {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.polls == 0 {
            push(&self.log, "timeout");
            return Poll::Ready(());
        }
        self.polls -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// `with` a device whose body never finishes, raced in a `select` against a [`Timeout`] that
/// completes on the third poll, once the body is suspended: the `WithFuture` is dropped
/// mid-body. Resolves to `true` if the timeout won.
fn cancelled_scenario(log: &Log) -> impl Future<Output = bool> + Send + 'static {
    let body_log = log.clone();
    let with = with(Device { log: log.clone() }, async move |value: &mut u32| {
        let _guard = DropGuard(body_log.clone());
        push(&body_log, "body:start");
        *value += 1;
        Step::new(&body_log, "body", ()).await;
        // A read that never completes: only cancellation ends this body.
        core::future::pending::<()>().await;
        Ok::<_, &'static str>(*value)
    });
    let timeout = Timeout {
        log: log.clone(),
        polls: 2,
    };
    async move {
        match select(Box::pin(with), timeout).await {
            Either::Left(_) => false,
            Either::Right(((), with)) => {
                drop(with); // cancels: the body future is dropped, then `cancel` runs
                true
            }
        }
    }
}

const CANCEL_TRACE: [&str; 8] = [
    "enter:pending",
    "enter",
    "body:start",
    "body:pending",
    "body",
    "timeout",
    "body:dropped",
    "cancel",
];

/// Runs the succeeding, the failing and the cancelled scenario, one after the other, with
/// `block_on`; checks outputs and trace.
fn check(block_on: impl Fn(Pin<&mut (dyn Future<Output = ()> + Send)>)) {
    let log = Log::default();
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let (ok, err, cancelled) = (
        scenario(&log, false),
        scenario(&log, true),
        cancelled_scenario(&log),
    );
    let sink = outputs.clone();
    let all = pin!(async move {
        let ok = ok.await;
        let err = err.await;
        let cancelled = cancelled.await;
        sink.lock().unwrap().push((ok, err, cancelled));
    });
    block_on(all);
    assert_eq!(
        *outputs.lock().unwrap(),
        [(Ok(42), Err(Error::Body("sensor timeout")), true)]
    );
    check_trace(&log);
}

/// The log of the three scenarios run in order.
fn check_trace(log: &Log) {
    let log = log.lock().unwrap();
    assert_eq!(log[..7], SUCCESS_TRACE);
    assert_eq!(log[7..14], FAILURE_TRACE);
    assert_eq!(log[14..], CANCEL_TRACE);
}

#[test]
fn futures_executor_block_on() {
    check(|fut| futures_executor::block_on(fut));
}

#[test]
fn tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    check(|fut| rt.block_on(fut));
}

/// The scenario with each run spawned as its own task on `rt`.
fn check_spawned(rt: &tokio::runtime::Runtime) {
    let log = Log::default();
    let (ok, err, cancelled) = rt.block_on(async {
        let ok = tokio::spawn(scenario(&log, false)).await.unwrap();
        let err = tokio::spawn(scenario(&log, true)).await.unwrap();
        let cancelled = tokio::spawn(cancelled_scenario(&log)).await.unwrap();
        (ok, err, cancelled)
    });
    assert_eq!(ok, Ok(42));
    assert_eq!(err, Err(Error::Body("sensor timeout")));
    assert!(cancelled);
    check_trace(&log);
}

#[test]
fn tokio_current_thread_spawned() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    check_spawned(&rt);
}

#[cfg(not(miri))]
#[test]
fn tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    check(|fut| rt.block_on(fut));
}

#[cfg(not(miri))]
#[test]
fn tokio_multi_thread_spawned() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    check_spawned(&rt);
}

// smol's reactor (epoll) is outside what Miri runs.
#[cfg(not(miri))]
#[test]
fn smol_block_on() {
    check(|fut| smol::block_on(fut));
}

#[cfg(not(miri))]
#[test]
fn smol_spawned() {
    let executor = smol::Executor::new();
    let log = Log::default();
    let (ok, err, cancelled) = smol::block_on(executor.run(async {
        let ok = executor.spawn(scenario(&log, false)).await;
        let err = executor.spawn(scenario(&log, true)).await;
        let cancelled = executor.spawn(cancelled_scenario(&log)).await;
        (ok, err, cancelled)
    }));
    assert_eq!(ok, Ok(42));
    assert_eq!(err, Err(Error::Body("sensor timeout")));
    assert!(cancelled);
    check_trace(&log);
}

/// The three scenarios as one embassy task (a `#[embassy_executor::task]` is a `static` pool
/// of one, so the test spawns it once); sends the outputs back over `done`.
#[embassy_executor::task]
async fn embassy_scenarios(log: Log, done: std::sync::mpsc::Sender<EmbassyOutputs>) {
    let ok = scenario(&log, false).await;
    let err = scenario(&log, true).await;
    let cancelled = cancelled_scenario(&log).await;
    done.send((ok, err, cancelled)).unwrap();
}

type EmbassyOutputs = (
    Result<u32, Error<String, &'static str>>,
    Result<u32, Error<String, &'static str>>,
    bool,
);

/// embassy-executor's std platform (`platform-std`, `executor-thread`): the executor wants
/// `&'static mut self`, so it is leaked; `run_until` returns once the task has sent its outputs.
#[test]
fn embassy_executor_std() {
    let log = Log::default();
    let (done, outputs) = std::sync::mpsc::channel();
    let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
    let mut received = None;
    executor.run_until(
        |spawner| spawner.spawn(embassy_scenarios(log.clone(), done).unwrap()),
        || {
            received = outputs.try_recv().ok();
            received.is_some()
        },
    );
    let (ok, err, cancelled) = received.unwrap();
    assert_eq!(ok, Ok(42));
    assert_eq!(err, Err(Error::Body("sensor timeout")));
    assert!(cancelled);
    check_trace(&log);
}

/// A no_std-style waker: counts wake-ups in the `AtomicUsize` its data points to.
fn counting_waker(wakes: &AtomicUsize) -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);
    unsafe fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &VTABLE)
    }
    unsafe fn wake(data: *const ()) {
        // SAFETY: `data` points to the `AtomicUsize` given to `counting_waker`, which outlives
        // every waker made from it (see below).
        unsafe { &*data.cast::<AtomicUsize>() }.fetch_add(1, Ordering::SeqCst);
    }
    unsafe fn drop(_: *const ()) {}
    // SAFETY: the vtable functions follow the `RawWaker` contract; the callers below keep
    // `wakes` alive for as long as the waker and its clones (none of the futures here keeps a
    // waker beyond the `poll` call it was given in).
    unsafe { Waker::from_raw(RawWaker::new(core::ptr::from_ref(wakes).cast(), &VTABLE)) }
}

/// A minimal executor loop: polls until `Ready`; every `Pending` must have woken the task
/// first (so a real executor would poll again). Returns the output and the number of polls.
fn poll_loop<F: Future>(fut: F) -> (F::Output, usize) {
    let wakes = AtomicUsize::new(0);
    let waker = counting_waker(&wakes);
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut polls = 0;
    loop {
        polls += 1;
        let before = wakes.load(Ordering::SeqCst);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return (out, polls),
            Poll::Pending => assert_eq!(
                wakes.load(Ordering::SeqCst),
                before + 1,
                "poll {polls} returned `Pending` without waking the task exactly once"
            ),
        }
        assert!(polls < 100, "the future did not finish");
    }
}

#[test]
fn hand_poll_loop() {
    let log = Log::default();

    let (out, polls) = poll_loop(scenario(&log, false));
    assert_eq!(out, Ok(42));
    // Enter, body and exit each suspend once; the future moves on to the next phase within
    // the same poll as soon as one completes.
    assert_eq!(polls, 4);
    assert_eq!(*log.lock().unwrap(), SUCCESS_TRACE);

    log.lock().unwrap().clear();
    let (out, polls) = poll_loop(scenario(&log, true));
    assert_eq!(out, Err(Error::Body("sensor timeout")));
    assert_eq!(polls, 4);
    assert_eq!(*log.lock().unwrap(), FAILURE_TRACE);
}

#[test]
fn hand_poll_loop_cancel_in_body() {
    let log = Log::default();
    let wakes = AtomicUsize::new(0);
    let waker = counting_waker(&wakes);
    let mut cx = Context::from_waker(&waker);
    {
        let mut fut = pin!(scenario(&log, false));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(wakes.load(Ordering::SeqCst), 2);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "enter:pending",
            "enter",
            "body:start",
            "body:pending",
            "cancel"
        ]
    );
}
