//! Shared fixtures for the integration tests: a counting waker and a hand poll loop, a scripted
//! manager written by hand with named poll-based futures, a `Yield` future for bodies, an event
//! log and drop-counting witnesses.
//!
//! Everything is single-threaded and allocation-light so that the tests also run under Miri.

#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use async_with::{AsyncEnter, AsyncExit, Outcome, Status};

// ---------------------------------------------------------------------------------------------
// Waker and poll loop
// ---------------------------------------------------------------------------------------------

/// A waker that counts how often it was woken.
#[derive(Debug, Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls futures by hand with a [`CountingWaker`], and checks that every `Pending` came with a
/// wake (all fixtures here wake before they return `Pending`, so a `Pending` without one means
/// a future would hang under a real executor).
pub struct Harness {
    counter: Arc<CountingWaker>,
    waker: Waker,
    /// How many times `poll` was called.
    pub polls: usize,
    /// How many of those polls returned `Pending`.
    pub pendings: usize,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// Upper bound of [`Harness::poll_to_end`], so that a hanging future fails the test.
    pub const MAX_POLLS: usize = 1_000;

    pub fn new() -> Self {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        Harness {
            counter,
            waker,
            polls: 0,
            pendings: 0,
        }
    }

    /// How many times the waker was woken so far.
    pub fn wakes(&self) -> usize {
        self.counter.wakes.load(Ordering::SeqCst)
    }

    /// Polls `future` once. Panics if it returns `Pending` without having woken the waker.
    pub fn poll_once<F: Future + ?Sized>(&mut self, future: Pin<&mut F>) -> Poll<F::Output> {
        let before = self.wakes();
        let mut cx = Context::from_waker(&self.waker);
        self.polls += 1;
        let poll = future.poll(&mut cx);
        if poll.is_pending() {
            self.pendings += 1;
            assert!(
                self.wakes() > before,
                "poll #{} returned Pending without waking the waker",
                self.polls
            );
        }
        poll
    }

    /// Polls `future` until it is ready (at most [`Harness::MAX_POLLS`] times).
    pub fn poll_to_end<F: Future + ?Sized>(&mut self, mut future: Pin<&mut F>) -> F::Output {
        for _ in 0..Self::MAX_POLLS {
            if let Poll::Ready(output) = self.poll_once(future.as_mut()) {
                return output;
            }
        }
        panic!("future not ready after {} polls", Self::MAX_POLLS);
    }

    /// Polls `future` `n` times, each of which must return `Pending`.
    pub fn poll_pending<F: Future + ?Sized>(&mut self, mut future: Pin<&mut F>, n: usize) {
        for i in 0..n {
            assert!(
                self.poll_once(future.as_mut()).is_pending(),
                "future became ready at poll {i} of {n} expected Pendings"
            );
        }
    }
}

/// Polls `future` once with a fresh [`Harness`].
pub fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    Harness::new().poll_once(future)
}

/// Polls `future` to completion with a fresh [`Harness`].
pub fn poll_to_end<F: Future + ?Sized>(future: Pin<&mut F>) -> F::Output {
    Harness::new().poll_to_end(future)
}

/// Pins `future` on the stack, polls it to completion, and returns its output together with the
/// harness (for its counters).
pub fn run<F: Future>(future: F) -> (F::Output, Harness) {
    let mut harness = Harness::new();
    let future = core::pin::pin!(future);
    let output = harness.poll_to_end(future);
    (output, harness)
}

// ---------------------------------------------------------------------------------------------
// Event log
// ---------------------------------------------------------------------------------------------

/// Something that happened, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `AsyncEnter::enter` was called.
    EnterStart,
    /// The enter future returned `Pending` (after waking).
    EnterPending,
    /// The enter future returned `Ready`.
    EnterReady,
    /// The enter future was dropped.
    EnterDrop,
    /// The body started (logged by the test's body).
    BodyStart,
    /// The body finished (logged by the test's body).
    BodyEnd,
    /// A guard inside the body was dropped (with the body's future).
    BodyDrop,
    /// A hand-written body future was dropped; it read the resource's value in its `Drop`.
    BodyFutureDrop(u32),
    /// A logged [`Yield`] returned `Pending`.
    Yielded,
    /// `AsyncExit::exit` was called with this outcome, for a resource with this value.
    ExitStart {
        status: Status,
        value: u32,
        /// `{:?}` of the body's error, if it failed.
        failure: Option<String>,
    },
    /// The exit future returned `Pending` (after waking).
    ExitPending,
    /// The exit future returned `Ready`.
    ExitReady,
    /// The exit future was dropped.
    ExitDrop,
    /// `AsyncExit::cancel` was called for a resource with this value.
    Cancel(u32),
    /// The resource with this value was dropped.
    ResourceDrop(u32),
    /// Anything else a test wants to record.
    Note(&'static str),
}

/// The shared event log.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<Event>>>);

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.borrow().fmt(f)
    }
}

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, event: Event) {
        self.0.borrow_mut().push(event);
    }

    /// A copy of everything logged so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// How many logged events satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.0.borrow().iter().filter(|e| pred(e)).count()
    }

    /// Index of the first event equal to `event`; panics if there is none.
    pub fn position(&self, event: &Event) -> usize {
        self.0
            .borrow()
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("{event:?} not in the log {self:?}"))
    }

    /// A guard that logs `event` when dropped.
    pub fn on_drop(&self, event: Event) -> OnDrop {
        OnDrop {
            log: self.clone(),
            event: Some(event),
        }
    }
}

/// Logs its event when dropped.
pub struct OnDrop {
    log: Log,
    event: Option<Event>,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.log.push(event);
        }
    }
}

/// Counts drops of its [`Witness`]es.
#[derive(Clone, Debug, Default)]
pub struct DropCount(Arc<AtomicUsize>);

impl DropCount {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new witness counted by this counter.
    pub fn witness(&self) -> Witness {
        Witness(self.0.clone())
    }

    /// How many witnesses were dropped so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Increments its [`DropCount`] when dropped. Neither `Clone` nor `Copy`.
#[derive(Debug)]
pub struct Witness(Arc<AtomicUsize>);

impl Drop for Witness {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The body error used by most tests.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyError(pub u32);

// ---------------------------------------------------------------------------------------------
// Yield
// ---------------------------------------------------------------------------------------------

/// Returns `Pending` `n` times (waking each time), then `Ready(())`.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Yield {
    remaining: usize,
    log: Option<Log>,
}

impl Yield {
    pub fn new(n: usize) -> Self {
        Yield {
            remaining: n,
            log: None,
        }
    }

    /// Like [`Yield::new`], and logs [`Event::Yielded`] at each `Pending`.
    pub fn logged(log: &Log, n: usize) -> Self {
        Yield {
            remaining: n,
            log: Some(log.clone()),
        }
    }
}

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.remaining == 0 {
            return Poll::Ready(());
        }
        self.remaining -= 1;
        if let Some(log) = &self.log {
            log.push(Event::Yielded);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted manager, written by hand (S16)
// ---------------------------------------------------------------------------------------------

/// The manager's error.
pub type Fail = &'static str;

/// The scripted manager's resource: a value the body can change, which logs its own drop.
#[derive(Debug)]
pub struct Res {
    pub value: u32,
    log: Log,
}

impl Res {
    pub fn new(log: &Log, value: u32) -> Self {
        Res {
            value,
            log: log.clone(),
        }
    }

    /// Logs through the resource (what a body or a body future can do with `&mut Res`).
    pub fn log(&self, event: Event) {
        self.log.push(event);
    }
}

impl Drop for Res {
    fn drop(&mut self) {
        self.log.push(Event::ResourceDrop(self.value));
    }
}

/// A manager whose enter and exit futures are named, hand-written, poll-based futures. Each
/// returns `Pending` a configurable number of times (waking first), then succeeds or fails as
/// configured. Everything is logged.
#[derive(Debug)]
pub struct Scripted {
    log: Log,
    initial: u32,
    enter_pending: usize,
    enter_error: Option<Fail>,
    exit_pending: usize,
    exit_error: Option<Fail>,
}

impl Scripted {
    /// Enters and exits at once, successfully, with a resource of value 0.
    pub fn new(log: &Log) -> Self {
        Scripted {
            log: log.clone(),
            initial: 0,
            enter_pending: 0,
            enter_error: None,
            exit_pending: 0,
            exit_error: None,
        }
    }

    /// The value of the resource enter produces.
    pub fn initial(mut self, value: u32) -> Self {
        self.initial = value;
        self
    }

    /// How many times the enter future returns `Pending` before it is ready.
    pub fn enter_pending(mut self, n: usize) -> Self {
        self.enter_pending = n;
        self
    }

    /// Enter fails with `error` (after its `Pending`s).
    pub fn enter_fails(mut self, error: Fail) -> Self {
        self.enter_error = Some(error);
        self
    }

    /// How many times the exit future returns `Pending` before it is ready.
    pub fn exit_pending(mut self, n: usize) -> Self {
        self.exit_pending = n;
        self
    }

    /// Exit fails with `error` (after its `Pending`s).
    pub fn exit_fails(mut self, error: Fail) -> Self {
        self.exit_error = Some(error);
        self
    }
}

impl AsyncEnter for Scripted {
    type Resource = Res;
    type Error = Fail;
    type Exit = ScriptedExit;
    type Enter = ScriptedEnterFuture;

    fn enter(self) -> ScriptedEnterFuture {
        self.log.push(Event::EnterStart);
        ScriptedEnterFuture {
            log: self.log.clone(),
            remaining: self.enter_pending,
            initial: self.initial,
            error: self.enter_error,
            exit: Some(ScriptedExit {
                log: self.log,
                pending: self.exit_pending,
                error: self.exit_error,
            }),
        }
    }
}

/// The scripted enter future.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ScriptedEnterFuture {
    log: Log,
    remaining: usize,
    initial: u32,
    error: Option<Fail>,
    /// `None` once ready.
    exit: Option<ScriptedExit>,
}

impl Future for ScriptedEnterFuture {
    type Output = Result<(Res, ScriptedExit), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        assert!(this.exit.is_some(), "enter future polled after completion");
        if this.remaining > 0 {
            this.remaining -= 1;
            this.log.push(Event::EnterPending);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.log.push(Event::EnterReady);
        let exit = this.exit.take().unwrap();
        Poll::Ready(match this.error {
            Some(error) => Err(error),
            None => Ok((Res::new(&this.log, this.initial), exit)),
        })
    }
}

impl Drop for ScriptedEnterFuture {
    fn drop(&mut self) {
        self.log.push(Event::EnterDrop);
    }
}

/// The scripted exit handle.
#[derive(Debug)]
pub struct ScriptedExit {
    log: Log,
    pending: usize,
    error: Option<Fail>,
}

impl AsyncExit<Res> for ScriptedExit {
    type Error = Fail;
    type Future<'o> = ScriptedExitFuture;

    fn exit(self, resource: Res, outcome: Outcome<'_>) -> ScriptedExitFuture {
        self.log.push(Event::ExitStart {
            status: outcome.status(),
            value: resource.value,
            failure: outcome.failure().map(|failure| format!("{failure:?}")),
        });
        ScriptedExitFuture {
            log: self.log,
            remaining: self.pending,
            error: self.error,
            resource: Some(resource),
        }
    }

    fn cancel(self, resource: Res) {
        self.log.push(Event::Cancel(resource.value));
        drop(resource);
    }
}

/// The scripted exit future: owns the resource and drops it when it is done.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ScriptedExitFuture {
    log: Log,
    remaining: usize,
    error: Option<Fail>,
    /// `None` once ready.
    resource: Option<Res>,
}

impl Future for ScriptedExitFuture {
    type Output = Result<(), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let resource = this.resource.take();
        assert!(resource.is_some(), "exit future polled after completion");
        if this.remaining > 0 {
            this.remaining -= 1;
            this.resource = resource;
            this.log.push(Event::ExitPending);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        drop(resource);
        this.log.push(Event::ExitReady);
        Poll::Ready(match this.error {
            Some(error) => Err(error),
            None => Ok(()),
        })
    }
}

impl Drop for ScriptedExitFuture {
    fn drop(&mut self) {
        self.log.push(Event::ExitDrop);
    }
}

// ---------------------------------------------------------------------------------------------
// A hand-written body future
// ---------------------------------------------------------------------------------------------

/// A body future written by hand: borrows the resource, adds 1 to its value at each poll,
/// returns `Pending` `yields` times, then `Ok(value)`. Its `Drop` reads the resource (so Miri
/// catches a body future that outlives its resource) and logs [`Event::BodyFutureDrop`].
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct TrackedBody<'r> {
    resource: &'r mut Res,
    yields: usize,
}

impl<'r> TrackedBody<'r> {
    pub fn new(resource: &'r mut Res, yields: usize) -> Self {
        resource.log(Event::BodyStart);
        TrackedBody { resource, yields }
    }
}

impl Future for TrackedBody<'_> {
    type Output = Result<u32, BodyError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.resource.value += 1;
        if this.yields > 0 {
            this.yields -= 1;
            this.resource.log(Event::Yielded);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.resource.log(Event::BodyEnd);
        Poll::Ready(Ok(this.resource.value))
    }
}

impl Drop for TrackedBody<'_> {
    fn drop(&mut self) {
        let value = self.resource.value;
        self.resource.log(Event::BodyFutureDrop(value));
    }
}

/// Returns `Pending` `n` times (waking each time), then `Ready(value)`.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct After<T> {
    wait: Yield,
    value: Option<T>,
}

impl<T> After<T> {
    pub fn new(n: usize, value: T) -> Self {
        After {
            wait: Yield::new(n),
            value: Some(value),
        }
    }
}

impl<T: Unpin> Future for After<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        std::task::ready!(Pin::new(&mut self.wait).poll(cx));
        Poll::Ready(self.value.take().expect("After polled after completion"))
    }
}
