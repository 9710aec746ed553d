//! The same scenario on several executors (section 5: "it runs on ..."): enter, body, exit;
//! a failing body whose failure exit sees. Every phase suspends once (returns `Pending` after
//! waking its task) before it completes, so each executor really has to reschedule the task
//! between phases. The trace shows the order of suspensions and completions.

use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::sync::{Arc, Mutex};

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, with};

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
    type Future = Step<Result<(), String>>;

    fn exit(self, value: u32, outcome: Outcome<'_>) -> Self::Future {
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

/// Runs the succeeding then the failing scenario with `block_on`; checks outputs and trace.
fn check(block_on: impl Fn(Pin<&mut (dyn Future<Output = ()> + Send)>)) {
    let log = Log::default();
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let (ok, err) = (scenario(&log, false), scenario(&log, true));
    let sink = outputs.clone();
    let both = pin!(async move {
        let ok = ok.await;
        let err = err.await;
        sink.lock().unwrap().extend([ok, err]);
    });
    block_on(both);
    assert_eq!(
        *outputs.lock().unwrap(),
        [Ok(42), Err(Error::Body("sensor timeout"))]
    );
    let log = log.lock().unwrap();
    assert_eq!(log[..7], SUCCESS_TRACE);
    assert_eq!(log[7..], FAILURE_TRACE);
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

#[test]
fn tokio_current_thread_spawned() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = Log::default();
    let (ok, err) = rt.block_on(async {
        let ok = tokio::spawn(scenario(&log, false)).await.unwrap();
        let err = tokio::spawn(scenario(&log, true)).await.unwrap();
        (ok, err)
    });
    assert_eq!(ok, Ok(42));
    assert_eq!(err, Err(Error::Body("sensor timeout")));
    let log = log.lock().unwrap();
    assert_eq!(log[..7], SUCCESS_TRACE);
    assert_eq!(log[7..], FAILURE_TRACE);
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
    let log = Log::default();
    let (ok, err) = rt.block_on(async {
        let ok = tokio::spawn(scenario(&log, false)).await.unwrap();
        let err = tokio::spawn(scenario(&log, true)).await.unwrap();
        (ok, err)
    });
    assert_eq!(ok, Ok(42));
    assert_eq!(err, Err(Error::Body("sensor timeout")));
    let log = log.lock().unwrap();
    assert_eq!(log[..7], SUCCESS_TRACE);
    assert_eq!(log[7..], FAILURE_TRACE);
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
