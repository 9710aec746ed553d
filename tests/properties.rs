//! Property tests (issue 3): generated scenarios, checked against a simple model.
//!
//! # Scenarios
//!
//! Each level of a scenario is a hand-written manager ([`Manager`]) with named, poll-based
//! futures ([`EnterFut`], [`BodyFut`], [`ExitFut`]), all driven by a [`PhasePlan`]: the phase
//! returns `Pending` 0–5 times, each time after a wake-up of the waker it was given (at once by
//! reference, at once through a clone, or later through a clone that the harness wakes after the
//! outer poll returned, as an interrupt or reactor would), then it succeeds, fails, or (only with
//! feature `std`) panics with a [`Boom`] payload. The outer future is dropped after a generated
//! number of polls (0 included), or run to the end. [`single_level`] runs one `with`;
//! [`nested`] runs a second `with` inside the first one's body (an async closure whose future
//! awaits the inner `with` between the body's own `Pending`s and its end), with the same
//! generator for both levels. [`sweep`] runs a fixed, exhaustive set of small scenarios through
//! the same checks (every combination of phase ends, dropped at every poll, single and nested),
//! so that Miri, with its few proptest cases, still covers every path.
//!
//! # Invariants, and how each is checked
//!
//! Every fixture writes to one allocation-free event log ([`Ev`]) and registers itself in a
//! drop table. After every case:
//!
//! - **The model.** [`Model`] replays the scenario as the contract (SPEC S1–S9) says it must go:
//!   which phases start, how often each is polled, how each ends, whether exit (and with which
//!   [`Status`]) or the cancellation hook runs, each level's output, the payload of an escaping
//!   panic, the number of polls. The [`Trace`] read back from the log must be equal, per level.
//! - **Enter starts at most once; the body runs only after enter succeeded**: counts of
//!   `EnterCalled` / `BodyCalled` ≤ 1; `BodyCalled` only after `Finished(Enter, Ok)` and after
//!   the enter future was dropped.
//! - **Exit exactly once when enter succeeded and the future was polled to completion**; more
//!   generally exactly one of exit and cancel for every successful enter, neither otherwise.
//! - **Cancel exactly once when dropped during the body, never together with exit**, and only
//!   when the harness dropped the outer future (not after a `Ready` or an escaping panic).
//! - **Drops**: every fixture value (manager, enter future, resource, exit handle, body future,
//!   exit future, body value, body error, enter and exit errors) has a drop counter; each must
//!   be exactly 1 at the end (no leak, no double drop). The body future is dropped before the
//!   resource, before exit or cancel starts; exit and cancel get a live resource; an inner level
//!   lives entirely inside the outer body. The body future also reads the resource in its `Drop`,
//!   so a dangling borrow is undefined behaviour that Miri reports.
//! - **Output** equals the model's (value, body error, exit error, both), with each error value
//!   coming from the right phase and level; with `std`, a body panic escapes with its original
//!   payload after exit ran with [`Outcome::Panicked`]. Exit also checks that
//!   [`Outcome::failure`] downcasts to this level's body error, and that the resource it gets
//!   is the one enter produced, touched by every body poll.
//! - **No finished phase is polled again**: each phase future records a violation if polled
//!   after its `Ready` (or its panic).
//! - **No lost wake-ups**: each poll of the outer future gets a fresh counting waker; after a
//!   `Pending` (and after the harness fired the deferred wakers) that waker must have been woken,
//!   otherwise the harness stops and reports it. `is_terminated` is false before and true after
//!   `Ready`.
//! - **No allocation while polling**: a counting global allocator counts this thread's
//!   allocations during every `poll` of the outer future and during its drop; the total must be
//!   0. Panic cases: the std panic machinery allocates (the payload box, the unwinding exception),
//!   so counting is paused from the moment a fixture panics until exit starts (the crate has
//!   caught the panic by then), and again from the moment an exit that saw
//!   `Outcome::Panicked` returns `Ready` (the crate resumes the panic right after) until the next
//!   exit starts or the harness has caught the panic. Everything else, exit included, is
//!   counted.
//!
//! # Case count
//!
//! 2,000 cases per property by default ([`CASES`]); the `PROPTEST_CASES` environment variable
//! overrides it (read here, and proptest's macro applies it too). Under Miri the default is
//! [`MIRI_CASES`] and failure persistence is off (Miri isolation forbids file IO); Miri only
//! sees `PROPTEST_CASES` when it is forwarded (`MIRIFLAGS=-Zmiri-env-forward=PROPTEST_CASES`).
//! Miri's random numbers come from `-Zmiri-seed` (default 0), so its proptest cases are the same
//! on every run unless the seed changes. Under Miri [`sweep`] checks each distinct run once
//! (59 of its 264 scenarios with `std`, 32 of 120 without); natively it checks all of them.
//! `.ci/run` runs this file under Miri with all features and Stacked Borrows only (it says
//! why); natively in every feature set.

use core::fmt;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker, ready};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, Status, WithFuture, with};
use futures_core::FusedFuture;
use pin_project_lite::pin_project;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

mod counting_alloc;

use counting_alloc::{allocations, pause_counting};

// ---------------------------------------------------------------------------------------------
// Plans (what the generator produces)
// ---------------------------------------------------------------------------------------------

/// How a phase finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Ok,
    Err,
    /// Only generated with feature `std`.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    Panic,
}

/// How a phase wakes its waker before returning `Pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeKind {
    /// `cx.waker().wake_by_ref()` at once.
    ByRef,
    /// `cx.waker().clone().wake()` at once.
    Clone,
    /// A clone is kept and woken by the harness after the outer poll returned.
    Later,
}

const MAX_PENDINGS: usize = 5;

/// One phase: `Pending` once per entry of `wakes`, then `end`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PhasePlan {
    wakes: [WakeKind; MAX_PENDINGS],
    pendings: usize,
    end: End,
}

impl PhasePlan {
    fn new(wakes: &[WakeKind], end: End) -> Self {
        let mut plan = PhasePlan {
            wakes: [WakeKind::ByRef; MAX_PENDINGS],
            pendings: wakes.len(),
            end,
        };
        plan.wakes[..wakes.len()].copy_from_slice(wakes);
        plan
    }
}

impl fmt::Debug for PhasePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} then {:?}", &self.wakes[..self.pendings], self.end)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LevelPlan {
    enter: PhasePlan,
    body: PhasePlan,
    exit: PhasePlan,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    outer: LevelPlan,
    /// A `with` inside the outer body.
    inner: Option<LevelPlan>,
    /// Drop the outer future after this many polls; `None`: run it to the end.
    drop_after: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Event log, drop table, deferred wakers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Enter,
    Body,
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Thing {
    Manager,
    EnterFuture,
    Resource,
    ExitHandle,
    BodyFuture,
    ExitFuture,
    Value,
    BodyError,
    EnterError,
    ExitError,
}

/// What happened; the `u8` is the level (0 outer, 1 inner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    EnterCalled(u8),
    Poll(u8, Phase),
    Finished(u8, Phase, End),
    BodyCalled(u8),
    /// Exit started, with the status it saw and how often the body had touched the resource.
    ExitCalled(u8, Status, u32),
    /// The cancellation hook ran, with how often the body had touched the resource.
    Cancel(u8, u32),
    Dropped(u8, Thing),
    /// The level's `WithFuture` returned `Ready` (its output is already dropped).
    Returned(u8),
    Violation(u8, &'static str),
}

impl Ev {
    fn level(&self) -> u8 {
        match *self {
            Ev::EnterCalled(l)
            | Ev::Poll(l, _)
            | Ev::Finished(l, _, _)
            | Ev::BodyCalled(l)
            | Ev::ExitCalled(l, _, _)
            | Ev::Cancel(l, _)
            | Ev::Dropped(l, _)
            | Ev::Returned(l)
            | Ev::Violation(l, _) => l,
        }
    }
}

/// Room reserved up front, so that fixtures never allocate while the future is polled.
const LOG_CAPACITY: usize = 512;
const TABLE_CAPACITY: usize = 64;

/// What one scenario shares between its fixtures and the harness.
struct Shared {
    log: Mutex<Vec<Ev>>,
    /// Drop count per tracked value, indexed by [`Tracked::id`].
    drops: Mutex<Vec<(u8, Thing, u32)>>,
    /// Clones of wakers to wake after the outer poll returned.
    deferred: Mutex<Vec<Waker>>,
    /// The inner level's output, summarised (the values themselves are dropped at once).
    inner_output: Mutex<Option<Out>>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            log: Mutex::new(Vec::with_capacity(LOG_CAPACITY)),
            drops: Mutex::new(Vec::with_capacity(TABLE_CAPACITY)),
            deferred: Mutex::new(Vec::with_capacity(TABLE_CAPACITY)),
            inner_output: Mutex::new(None),
        })
    }

    fn push(&self, ev: Ev) {
        let mut log = self.log.lock().unwrap();
        assert!(log.len() < log.capacity(), "fixture: event log full");
        log.push(ev);
    }

    fn defer(&self, waker: Waker) {
        let mut deferred = self.deferred.lock().unwrap();
        assert!(
            deferred.len() < deferred.capacity(),
            "fixture: too many deferred wakers"
        );
        deferred.push(waker);
    }

    fn events(&self) -> Vec<Ev> {
        self.log.lock().unwrap().clone()
    }
}

/// A drop-counted member of every fixture value.
struct Tracked {
    shared: Arc<Shared>,
    level: u8,
    thing: Thing,
    id: usize,
}

impl Tracked {
    fn new(shared: &Arc<Shared>, level: u8, thing: Thing) -> Self {
        let mut drops = shared.drops.lock().unwrap();
        assert!(drops.len() < drops.capacity(), "fixture: drop table full");
        drops.push((level, thing, 0));
        Tracked {
            shared: shared.clone(),
            level,
            thing,
            id: drops.len() - 1,
        }
    }

    fn is(&self, level: u8, thing: Thing) -> bool {
        self.level == level && self.thing == thing
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.shared.drops.lock().unwrap()[self.id].2 += 1;
        self.shared.push(Ev::Dropped(self.level, self.thing));
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.thing, self.level)
    }
}

/// The body's value.
#[derive(Debug)]
struct Value(Tracked);

/// The body's error.
#[derive(Debug)]
struct BodyErr(Tracked);

/// The manager's error (enter or exit).
#[derive(Debug)]
struct MgrErr(Tracked);

/// The payload of a generated panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Boom {
    level: u8,
    phase: Phase,
}

type Output = Result<Value, Error<MgrErr, BodyErr>>;

/// An output, summarised; `Mismatch` if a value came from the wrong phase or level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Value,
    Enter,
    Body,
    Exit,
    BodyAndExit,
    Mismatch,
}

fn summarize(level: u8, output: &Output) -> Out {
    match output {
        Ok(Value(v)) if v.is(level, Thing::Value) => Out::Value,
        Err(Error::Enter(MgrErr(x))) if x.is(level, Thing::EnterError) => Out::Enter,
        Err(Error::Body(BodyErr(e))) if e.is(level, Thing::BodyError) => Out::Body,
        Err(Error::Exit(MgrErr(x))) if x.is(level, Thing::ExitError) => Out::Exit,
        Err(Error::BodyAndExit {
            body: BodyErr(e),
            exit: MgrErr(x),
        }) if e.is(level, Thing::BodyError) && x.is(level, Thing::ExitError) => Out::BodyAndExit,
        _ => Out::Mismatch,
    }
}

// ---------------------------------------------------------------------------------------------
// The instrumented manager
// ---------------------------------------------------------------------------------------------

/// Drives one phase through its plan: logs every poll, wakes before every `Pending`, then
/// finishes (or panics) once.
struct Script {
    shared: Arc<Shared>,
    level: u8,
    phase: Phase,
    plan: PhasePlan,
    pendings: usize,
    finished: bool,
}

impl Script {
    fn new(shared: &Arc<Shared>, level: u8, phase: Phase, plan: PhasePlan) -> Self {
        Script {
            shared: shared.clone(),
            level,
            phase,
            plan,
            pendings: 0,
            finished: false,
        }
    }

    /// `Ready` once every planned `Pending` was returned.
    fn poll_pendings(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished {
            self.shared.push(Ev::Violation(
                self.level,
                "a finished phase was polled again",
            ));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.shared.push(Ev::Poll(self.level, self.phase));
        if self.pendings < self.plan.pendings {
            match self.plan.wakes[self.pendings] {
                WakeKind::ByRef => cx.waker().wake_by_ref(),
                // On purpose: wakes through a clone, as a driver handing it on would.
                #[allow(clippy::waker_clone_wake)]
                WakeKind::Clone => cx.waker().clone().wake(),
                WakeKind::Later => self.shared.defer(cx.waker().clone()),
            }
            self.pendings += 1;
            return Poll::Pending;
        }
        Poll::Ready(())
    }

    /// `true` for success, `false` for failure; panics with a [`Boom`] if so planned.
    fn finish(&mut self) -> bool {
        self.finished = true;
        self.shared
            .push(Ev::Finished(self.level, self.phase, self.plan.end));
        match self.plan.end {
            End::Ok => true,
            End::Err => false,
            End::Panic => {
                // The std panic machinery allocates from here on (see the module docs).
                pause_counting(true);
                std::panic::panic_any(Boom {
                    level: self.level,
                    phase: self.phase,
                })
            }
        }
    }
}

/// The hand-written manager.
struct Manager {
    shared: Arc<Shared>,
    level: u8,
    plan: LevelPlan,
    _tracked: Tracked,
}

impl Manager {
    fn new(shared: &Arc<Shared>, level: u8, plan: LevelPlan) -> Self {
        Manager {
            shared: shared.clone(),
            level,
            plan,
            _tracked: Tracked::new(shared, level, Thing::Manager),
        }
    }
}

impl AsyncEnter for Manager {
    type Resource = Res;
    type Error = MgrErr;
    type Exit = ExitHandle;
    type Enter = EnterFut;

    fn enter(self) -> EnterFut {
        self.shared.push(Ev::EnterCalled(self.level));
        EnterFut {
            script: Script::new(&self.shared, self.level, Phase::Enter, self.plan.enter),
            plan: self.plan,
            _tracked: Tracked::new(&self.shared, self.level, Thing::EnterFuture),
        }
    }
}

/// A named, poll-based enter future.
struct EnterFut {
    script: Script,
    plan: LevelPlan,
    _tracked: Tracked,
}

impl Future for EnterFut {
    type Output = Result<(Res, ExitHandle), MgrErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.script.poll_pendings(cx));
        let ok = this.script.finish();
        let (shared, level) = (&this.script.shared, this.script.level);
        Poll::Ready(if ok {
            Ok((
                Res {
                    shared: shared.clone(),
                    level,
                    body_plan: this.plan.body,
                    touched: 0,
                    _tracked: Tracked::new(shared, level, Thing::Resource),
                },
                ExitHandle {
                    shared: shared.clone(),
                    level,
                    plan: this.plan.exit,
                    _tracked: Tracked::new(shared, level, Thing::ExitHandle),
                },
            ))
        } else {
            Err(MgrErr(Tracked::new(shared, level, Thing::EnterError)))
        })
    }
}

/// The resource: knows its level and counts the body's polls.
struct Res {
    shared: Arc<Shared>,
    level: u8,
    body_plan: PhasePlan,
    touched: u32,
    _tracked: Tracked,
}

/// The exit handle.
struct ExitHandle {
    shared: Arc<Shared>,
    level: u8,
    plan: PhasePlan,
    _tracked: Tracked,
}

impl AsyncExit<Res> for ExitHandle {
    type Error = MgrErr;
    type Future<'o> = ExitFut;

    fn exit(self, resource: Res, outcome: Outcome<'_>) -> ExitFut {
        // Any panic of the body has been caught by now.
        pause_counting(false);
        let status = outcome.status();
        if let Some(failure) = outcome.failure() {
            match failure.downcast_ref::<BodyErr>() {
                Some(BodyErr(e)) if e.is(self.level, Thing::BodyError) => {}
                _ => self.shared.push(Ev::Violation(
                    self.level,
                    "exit's failure is not this level's body error",
                )),
            }
        }
        if resource.level != self.level {
            self.shared.push(Ev::Violation(
                self.level,
                "exit got another level's resource",
            ));
        }
        self.shared
            .push(Ev::ExitCalled(self.level, status, resource.touched));
        ExitFut {
            script: Script::new(&self.shared, self.level, Phase::Exit, self.plan),
            resource: Some(resource),
            resumes_panic: status == Status::Panicked,
            _tracked: Tracked::new(&self.shared, self.level, Thing::ExitFuture),
        }
    }

    fn cancel(self, resource: Res) {
        if resource.level != self.level {
            self.shared.push(Ev::Violation(
                self.level,
                "cancel got another level's resource",
            ));
        }
        self.shared.push(Ev::Cancel(self.level, resource.touched));
        drop(resource);
    }
}

/// A named, poll-based exit future; owns the resource until it finishes.
struct ExitFut {
    script: Script,
    resource: Option<Res>,
    /// The body panicked: the crate resumes the panic as soon as this returns `Ready`.
    resumes_panic: bool,
    _tracked: Tracked,
}

impl Future for ExitFut {
    type Output = Result<(), MgrErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.script.poll_pendings(cx));
        let ok = this.script.finish();
        this.resource = None;
        let output = if ok {
            Ok(())
        } else {
            Err(MgrErr(Tracked::new(
                &this.script.shared,
                this.script.level,
                Thing::ExitError,
            )))
        };
        if this.resumes_panic {
            pause_counting(true);
        }
        Poll::Ready(output)
    }
}

/// No inner `with`.
enum NoInner {}

impl Future for NoInner {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match *self.get_mut() {}
    }
}

pin_project! {
    /// A named, poll-based body future: its `Pending`s, then the inner `with` if any, then its
    /// end. Touches the resource on every poll and in its `Drop`.
    struct BodyFut<'r, I> {
        // Dropped before `_tracked` logs the body future's drop.
        #[pin]
        inner: Option<I>,
        res: &'r mut Res,
        script: Script,
        _tracked: Tracked,
    }

    impl<'r, I> PinnedDrop for BodyFut<'r, I> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Reads the borrowed resource: if it were gone already, Miri would report it.
            if this.res.level != this.script.level {
                this.script
                    .shared
                    .push(Ev::Violation(this.script.level, "body's resource changed"));
            }
        }
    }
}

impl<'r, I> BodyFut<'r, I> {
    fn new(res: &'r mut Res, inner: Option<I>) -> Self {
        let shared = res.shared.clone();
        let level = res.level;
        shared.push(Ev::BodyCalled(level));
        let script = Script::new(&shared, level, Phase::Body, res.body_plan);
        BodyFut {
            inner,
            res,
            script,
            _tracked: Tracked::new(&shared, level, Thing::BodyFuture),
        }
    }
}

impl<I: Future<Output = ()>> Future for BodyFut<'_, I> {
    type Output = Result<Value, BodyErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        this.res.touched += 1;
        ready!(this.script.poll_pendings(cx));
        if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            ready!(inner.poll(cx));
            this.inner.set(None);
        }
        let ok = this.script.finish();
        let (shared, level) = (&this.script.shared, this.script.level);
        Poll::Ready(if ok {
            Ok(Value(Tracked::new(shared, level, Thing::Value)))
        } else {
            Err(BodyErr(Tracked::new(shared, level, Thing::BodyError)))
        })
    }
}

/// The body of a level without an inner `with`.
type LeafFn = for<'r> fn(&'r mut Res) -> BodyFut<'r, NoInner>;

fn leaf_body(res: &mut Res) -> BodyFut<'_, NoInner> {
    BodyFut::new(res, None)
}

pin_project! {
    /// The inner `with`, as the outer body awaits it: records its output (summarised; the
    /// values are dropped at once).
    struct Inner {
        #[pin]
        future: WithFuture<'static, Manager, LeafFn>,
        shared: Arc<Shared>,
    }
}

impl Inner {
    fn new(manager: Manager) -> Self {
        let shared = manager.shared.clone();
        Inner {
            future: with(manager, leaf_body as LeafFn),
            shared,
        }
    }
}

impl Future for Inner {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if this.future.is_terminated() {
            this.shared
                .push(Ev::Violation(1, "terminated before it returned Ready"));
        }
        let output = ready!(this.future.as_mut().poll(cx));
        if !this.future.is_terminated() {
            this.shared
                .push(Ev::Violation(1, "not terminated after Ready"));
        }
        let out = summarize(1, &output);
        drop(output);
        *this.shared.inner_output.lock().unwrap() = Some(out);
        this.shared.push(Ev::Returned(1));
        Poll::Ready(())
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct WakeCounter(AtomicUsize);

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// How the outer future ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    Ready(Out),
    Panicked(Boom),
    /// Dropped by the harness before it finished.
    Dropped,
}

#[derive(Debug)]
struct Run {
    top: Top,
    polls: u32,
    allocations: usize,
    problems: Vec<String>,
}

/// Silences the default panic hook for generated panics (once per process).
fn quiet_generated_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Boom>().is_none() {
                default(info);
            }
        }));
    });
}

/// Polls `future` with a fresh counting waker per poll until it is `Ready`, panics, or
/// `drop_after` polls were made; then drops it. Counts allocations in polls and the drop.
fn drive<F>(shared: &Shared, future: F, drop_after: Option<u32>) -> Run
where
    F: FusedFuture<Output = Output>,
{
    let mut slot = pin!(Some(future));
    let mut run = Run {
        top: Top::Dropped,
        polls: 0,
        allocations: 0,
        problems: Vec::new(),
    };
    while drop_after != Some(run.polls) {
        let mut future = slot.as_mut().as_pin_mut().expect("still there");
        if future.is_terminated() {
            run.problems.push("terminated before Ready".into());
        }
        let counter = Arc::new(WakeCounter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);

        let before = allocations();
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        run.allocations += allocations() - before;
        pause_counting(false);
        run.polls += 1;

        match polled {
            Ok(Poll::Ready(output)) => {
                if !future.is_terminated() {
                    run.problems.push("not terminated after Ready".into());
                }
                run.top = Top::Ready(summarize(0, &output));
                drop(output);
                shared.push(Ev::Returned(0));
                break;
            }
            Ok(Poll::Pending) => {
                // The "reactor": wake what was kept for later.
                loop {
                    let next = shared.deferred.lock().unwrap().pop();
                    match next {
                        Some(waker) => waker.wake(),
                        None => break,
                    }
                }
                if counter.0.load(Ordering::SeqCst) == 0 {
                    run.problems.push(format!(
                        "poll {}: Pending, and its waker was never woken (lost wake-up)",
                        run.polls
                    ));
                    break;
                }
            }
            Err(payload) => match payload.downcast::<Boom>() {
                Ok(boom) => {
                    run.top = Top::Panicked(*boom);
                    break;
                }
                Err(other) => resume_unwind(other),
            },
        }
    }
    let before = allocations();
    slot.set(None);
    run.allocations += allocations() - before;
    shared.deferred.lock().unwrap().clear();
    run
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// What one level did, as the model predicts it and as the log shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Trace {
    enter_calls: usize,
    enter_polls: usize,
    enter_end: Option<End>,
    body_calls: usize,
    body_polls: usize,
    /// How the body's own script ended (`None` if an inner panic ended it first).
    body_end: Option<End>,
    exit_calls: usize,
    exit_status: Option<Status>,
    exit_polls: usize,
    exit_end: Option<End>,
    cancels: usize,
    output: Option<Out>,
}

enum Abort {
    /// The harness drops the outer future here.
    Stop,
    Panic(Boom),
}

/// The contract, executed directly. `tick` is the number of the current outer poll; every
/// `Pending` anywhere ends it.
struct Model {
    limit: Option<u32>,
    tick: u32,
    traces: [Trace; 2],
}

impl Model {
    fn run(scenario: &Scenario) -> ([Trace; 2], Top, u32) {
        let mut model = Model {
            limit: scenario.drop_after,
            tick: 0,
            traces: Default::default(),
        };
        if scenario.drop_after == Some(0) {
            return (model.traces, Top::Dropped, 0);
        }
        model.tick = 1;
        let top = match model.level(0, &scenario.outer, scenario.inner.as_ref()) {
            Ok(out) => {
                model.traces[0].output = Some(out);
                Top::Ready(out)
            }
            Err(Abort::Stop) => Top::Dropped,
            Err(Abort::Panic(boom)) => Top::Panicked(boom),
        };
        (model.traces, top, model.tick)
    }

    fn pend(&mut self, n: usize) -> Result<(), Abort> {
        for _ in 0..n {
            if Some(self.tick) == self.limit {
                return Err(Abort::Stop);
            }
            self.tick += 1;
        }
        Ok(())
    }

    fn finish(level: usize, phase: Phase, end: End) -> Result<bool, Abort> {
        match end {
            End::Ok => Ok(true),
            End::Err => Ok(false),
            End::Panic => Err(Abort::Panic(Boom {
                level: level as u8,
                phase,
            })),
        }
    }

    /// A phase that only waits, then ends: returns its polls and its result.
    fn phase(
        &mut self,
        level: usize,
        phase: Phase,
        plan: &PhasePlan,
    ) -> (usize, Result<bool, Abort>) {
        let start = self.tick;
        let waited = self.pend(plan.pendings);
        let polls = (self.tick - start + 1) as usize;
        (
            polls,
            waited.and_then(|()| Self::finish(level, phase, plan.end)),
        )
    }

    fn level(
        &mut self,
        l: usize,
        plan: &LevelPlan,
        inner: Option<&LevelPlan>,
    ) -> Result<Out, Abort> {
        self.traces[l].enter_calls = 1;
        let (polls, entered) = self.phase(l, Phase::Enter, &plan.enter);
        self.traces[l].enter_polls = polls;
        if !matches!(entered, Err(Abort::Stop)) {
            self.traces[l].enter_end = Some(plan.enter.end);
        }
        if !entered? {
            return Ok(Out::Enter);
        }

        self.traces[l].body_calls = 1;
        let start = self.tick;
        let body = self.body(l, plan, inner);
        self.traces[l].body_polls = (self.tick - start + 1) as usize;
        let status = match body {
            Err(Abort::Stop) => {
                self.traces[l].cancels = 1;
                return Err(Abort::Stop);
            }
            Ok(true) => Status::Success,
            Ok(false) => Status::Failure,
            Err(Abort::Panic(_)) => Status::Panicked,
        };

        self.traces[l].exit_calls = 1;
        self.traces[l].exit_status = Some(status);
        let (polls, exited) = self.phase(l, Phase::Exit, &plan.exit);
        self.traces[l].exit_polls = polls;
        if !matches!(exited, Err(Abort::Stop)) {
            self.traces[l].exit_end = Some(plan.exit.end);
        }
        let exit_ok = exited?;
        match body {
            Err(abort) => Err(abort),
            Ok(true) if exit_ok => Ok(Out::Value),
            Ok(true) => Ok(Out::Exit),
            Ok(false) if exit_ok => Ok(Out::Body),
            Ok(false) => Ok(Out::BodyAndExit),
        }
    }

    fn body(
        &mut self,
        l: usize,
        plan: &LevelPlan,
        inner: Option<&LevelPlan>,
    ) -> Result<bool, Abort> {
        self.pend(plan.body.pendings)?;
        if let Some(inner) = inner {
            let out = self.level(l + 1, inner, None)?;
            self.traces[l + 1].output = Some(out);
        }
        self.traces[l].body_end = Some(plan.body.end);
        Self::finish(l, Phase::Body, plan.body.end)
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// The trace of `level` as the log shows it.
fn observed(log: &[Ev], level: u8, output: Option<Out>) -> Trace {
    let mut t = Trace {
        output,
        ..Trace::default()
    };
    for ev in log.iter().filter(|ev| ev.level() == level) {
        match *ev {
            Ev::EnterCalled(_) => t.enter_calls += 1,
            Ev::Poll(_, Phase::Enter) => t.enter_polls += 1,
            Ev::Poll(_, Phase::Body) => t.body_polls += 1,
            Ev::Poll(_, Phase::Exit) => t.exit_polls += 1,
            Ev::Finished(_, Phase::Enter, end) => t.enter_end = Some(end),
            Ev::Finished(_, Phase::Body, end) => t.body_end = Some(end),
            Ev::Finished(_, Phase::Exit, end) => t.exit_end = Some(end),
            Ev::BodyCalled(_) => t.body_calls += 1,
            Ev::ExitCalled(_, status, _) => {
                t.exit_calls += 1;
                t.exit_status = Some(status);
            }
            Ev::Cancel(..) => t.cancels += 1,
            Ev::Dropped(..) | Ev::Returned(_) | Ev::Violation(..) => {}
        }
    }
    t
}

/// The contract's invariants, read from the log alone (independently of the model).
fn invariant_problems(log: &[Ev], level: u8, trace: &Trace, top: Top, nested: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let find = |pred: &dyn Fn(&Ev) -> bool| log.iter().position(pred);
    let count = |pred: &dyn Fn(&Ev) -> bool| log.iter().filter(|ev| pred(ev)).count();
    let l = level;
    let mut before = |a: Option<usize>, b: Option<usize>, what: &str| match (a, b) {
        (Some(a), Some(b)) if a < b => {}
        _ => problems.push(format!("level {l}: expected {what} ({a:?} < {b:?})")),
    };

    let entered = trace.enter_end == Some(End::Ok);
    let enter_ok = find(&|ev| *ev == Ev::Finished(l, Phase::Enter, End::Ok));
    let enter_dropped = find(&|ev| *ev == Ev::Dropped(l, Thing::EnterFuture));
    let body_called = find(&|ev| *ev == Ev::BodyCalled(l));
    let body_dropped = find(&|ev| *ev == Ev::Dropped(l, Thing::BodyFuture));
    let exit_called = find(&|ev| matches!(ev, Ev::ExitCalled(x, ..) if *x == l));
    let exit_dropped = find(&|ev| *ev == Ev::Dropped(l, Thing::ExitFuture));
    let cancel = find(&|ev| matches!(ev, Ev::Cancel(x, _) if *x == l));
    let resource_dropped = find(&|ev| *ev == Ev::Dropped(l, Thing::Resource));
    let returned = find(&|ev| *ev == Ev::Returned(l));

    if body_called.is_some() {
        before(
            enter_ok,
            enter_dropped,
            "enter succeeded, then its future was dropped",
        );
        before(
            enter_dropped,
            body_called,
            "the enter future dropped before the body starts",
        );
        before(
            body_dropped,
            resource_dropped,
            "the body future dropped before the resource",
        );
    }
    if exit_called.is_some() {
        before(
            body_dropped,
            exit_called,
            "the body future dropped before exit starts",
        );
        before(
            exit_called,
            resource_dropped,
            "the resource alive when exit starts",
        );
    }
    if cancel.is_some() {
        before(
            body_dropped,
            cancel,
            "the body future dropped before cancel",
        );
        before(
            cancel,
            resource_dropped,
            "the resource alive when cancel starts",
        );
    }
    if returned.is_some() && exit_called.is_some() {
        before(
            exit_dropped,
            returned,
            "the exit future dropped before the output",
        );
    }
    for phase in [Phase::Enter, Phase::Body, Phase::Exit] {
        let last_poll = log.iter().rposition(|ev| *ev == Ev::Poll(l, phase));
        let finished = find(&|ev| matches!(ev, Ev::Finished(x, p, _) if *x == l && *p == phase));
        if finished.is_some() {
            before(last_poll, finished, "no poll of a phase after it finished");
        }
    }

    if trace.enter_calls > 1 {
        problems.push(format!(
            "level {l}: enter started {} times",
            trace.enter_calls
        ));
    }
    if trace.body_calls > usize::from(entered) {
        problems.push(format!(
            "level {l}: the body ran without a successful enter"
        ));
    }
    if trace.exit_calls + trace.cancels != usize::from(entered) {
        problems.push(format!(
            "level {l}: enter succeeded: {entered}, but exit ran {} times and cancel {} times",
            trace.exit_calls, trace.cancels
        ));
    }
    if level == 0 && trace.cancels > 0 && top != Top::Dropped {
        problems.push("cancel ran although the future was not dropped early".into());
    }
    if level == 0 && entered && matches!(top, Top::Ready(_)) && trace.exit_calls != 1 {
        problems.push(
            "polled to completion after a successful enter, but exit did not run once".into(),
        );
    }
    let resources = count(&|ev| *ev == Ev::Dropped(l, Thing::Resource));
    if resources != usize::from(entered) {
        problems.push(format!(
            "level {l}: the resource was dropped {resources} times"
        ));
    }
    for ev in log.iter().filter(|ev| ev.level() == l) {
        match *ev {
            Ev::ExitCalled(_, _, touched) | Ev::Cancel(_, touched)
                if touched as usize != trace.body_polls =>
            {
                problems.push(format!(
                    "level {l}: the resource handed back was touched {touched} times, the body was polled {} times",
                    trace.body_polls
                ));
            }
            Ev::Violation(_, what) => problems.push(format!("level {l}: {what}")),
            _ => {}
        }
    }

    if nested && level == 1 {
        let outer_body = find(&|ev| *ev == Ev::BodyCalled(0));
        let outer_body_dropped = find(&|ev| *ev == Ev::Dropped(0, Thing::BodyFuture));
        for (i, ev) in log.iter().enumerate().filter(|(_, ev)| ev.level() == 1) {
            let inside = match (outer_body, outer_body_dropped) {
                (Some(start), Some(end)) => start < i && i < end,
                _ => *ev == Ev::Dropped(1, Thing::Manager),
            };
            if !inside {
                problems.push(format!("inner {ev:?} at {i} is outside the outer body"));
            }
        }
    }
    problems
}

fn check(scenario: &Scenario) -> Result<(), TestCaseError> {
    quiet_generated_panics();
    let shared = Shared::new();
    let outer = Manager::new(&shared, 0, scenario.outer);
    let run = match scenario.inner {
        None => drive(
            &shared,
            with(outer, leaf_body as LeafFn),
            scenario.drop_after,
        ),
        Some(plan) => {
            let inner = Manager::new(&shared, 1, plan);
            let future = with(outer, async move |res: &mut Res| {
                BodyFut::new(res, Some(Inner::new(inner))).await
            });
            drive(&shared, future, scenario.drop_after)
        }
    };
    let log = shared.events();
    let (expected, expected_top, expected_polls) = Model::run(scenario);

    let outer_output = match run.top {
        Top::Ready(out) => Some(out),
        _ => None,
    };
    let actual = [
        observed(&log, 0, outer_output),
        observed(&log, 1, *shared.inner_output.lock().unwrap()),
    ];
    let context = || format!("\nrun: {run:?}\nlog: {log:#?}");

    prop_assert!(
        run.problems.is_empty(),
        "harness: {:?}{}",
        run.problems,
        context()
    );
    prop_assert_eq!(run.top, expected_top, "top-level result{}", context());
    prop_assert_eq!(actual[0], expected[0], "outer level{}", context());
    prop_assert_eq!(actual[1], expected[1], "inner level{}", context());
    prop_assert_eq!(run.polls, expected_polls, "number of polls{}", context());

    let mut problems = invariant_problems(&log, 0, &actual[0], run.top, scenario.inner.is_some());
    if scenario.inner.is_some() {
        problems.extend(invariant_problems(&log, 1, &actual[1], run.top, true));
    }
    prop_assert!(problems.is_empty(), "{:#?}{}", problems, context());

    let drops = shared.drops.lock().unwrap().clone();
    let wrong: Vec<_> = drops.iter().filter(|(_, _, n)| *n != 1).collect();
    prop_assert!(
        wrong.is_empty(),
        "drop counts (level, thing, drops) not 1: {:?}{}",
        wrong,
        context()
    );

    prop_assert_eq!(run.allocations, 0, "allocations while polling{}", context());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators and properties
// ---------------------------------------------------------------------------------------------

/// Cases per property by default.
const CASES: u32 = 2_000;
/// Cases per property under Miri (the sweep covers every path; these add `Pending` counts
/// and wake kinds the sweep does not use).
const MIRI_CASES: u32 = 4;

fn config() -> ProptestConfig {
    let default = if cfg!(miri) { MIRI_CASES } else { CASES };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let mut config = ProptestConfig::with_cases(cases);
    if cfg!(miri) {
        // Miri's isolation forbids the file IO of failure persistence.
        config.failure_persistence = None;
    }
    config
}

fn wake_kind() -> impl Strategy<Value = WakeKind> {
    prop_oneof![
        Just(WakeKind::ByRef),
        Just(WakeKind::Clone),
        Just(WakeKind::Later)
    ]
}

#[cfg(feature = "std")]
fn end(ok: u32) -> impl Strategy<Value = End> {
    prop_oneof![ok => Just(End::Ok), 2 => Just(End::Err), 1 => Just(End::Panic)]
}

#[cfg(not(feature = "std"))]
fn end(ok: u32) -> impl Strategy<Value = End> {
    prop_oneof![ok => Just(End::Ok), 2 => Just(End::Err)]
}

fn phase(ok: u32) -> impl Strategy<Value = PhasePlan> {
    (
        prop::collection::vec(wake_kind(), 0..=MAX_PENDINGS),
        end(ok),
    )
        .prop_map(|(wakes, end)| PhasePlan::new(&wakes, end))
}

fn level() -> impl Strategy<Value = LevelPlan> {
    // Enter mostly succeeds, so that the later phases are reached often.
    (phase(9), phase(4), phase(4)).prop_map(|(enter, body, exit)| LevelPlan { enter, body, exit })
}

/// `None` (run to the end) a third of the time; otherwise a number of polls up to `max`.
fn drop_after(max: u32) -> impl Strategy<Value = Option<u32>> {
    prop_oneof![1 => Just(None), 2 => (0..=max).prop_map(Some)]
}

proptest! {
    #![proptest_config(config())]

    /// One `with`.
    #[test]
    fn single_level(outer in level(), drop_after in drop_after(3 * MAX_PENDINGS as u32 + 2)) {
        check(&Scenario { outer, inner: None, drop_after })?;
    }

    /// A `with` inside the body of another.
    #[test]
    fn nested(
        outer in level(),
        inner in level(),
        drop_after in drop_after(6 * MAX_PENDINGS as u32 + 2),
    ) {
        check(&Scenario { outer, inner: Some(inner), drop_after })?;
    }
}

/// Every combination of phase ends (one `Pending` per phase, each wake kind used), with the
/// outer future dropped at every poll, for one level and for each level of a nested pair: a
/// deterministic sweep, so that Miri covers every path whatever proptest draws.
///
/// Many of these scenarios run alike: a phase's planned end is only read once the phase is
/// reached, so scenarios that differ only after the drop point (or after the end) make the
/// same calls. Under Miri each distinct run is checked once — runs whose model (traces,
/// outcome, polls, nested or not) is the same as an earlier one's are skipped; the native
/// run checks every scenario (and counts the distinct runs, as a guard).
#[test]
fn sweep() {
    let ends: &[End] = if cfg!(feature = "std") {
        &[End::Ok, End::Err, End::Panic]
    } else {
        &[End::Ok, End::Err]
    };
    let plan = |wake, end| PhasePlan::new(&[wake], end);
    let level = |enter, body, exit| LevelPlan {
        enter: plan(WakeKind::ByRef, enter),
        body: plan(WakeKind::Clone, body),
        exit: plan(WakeKind::Later, exit),
    };
    let ok = level(End::Ok, End::Ok, End::Ok);
    let mut distinct = Vec::new();
    let mut run = |scenario: Scenario| {
        let key = (scenario.inner.is_some(), Model::run(&scenario));
        let new = !distinct.contains(&key);
        if new {
            distinct.push(key);
        }
        if !new && cfg!(miri) {
            return;
        }
        if let Err(error) = check(&scenario) {
            panic!("{scenario:#?}\n{error}");
        }
    };
    for &enter in ends {
        for &body in ends {
            for &exit in ends {
                if enter != End::Ok && (body, exit) != (End::Ok, End::Ok) {
                    continue; // neither body nor exit runs: one combination is enough
                }
                let this = level(enter, body, exit);
                for drop_after in (0..=4).map(Some).chain([None]) {
                    run(Scenario {
                        outer: this,
                        inner: None,
                        drop_after,
                    });
                }
                for drop_after in (0..=7).map(Some).chain([None]) {
                    run(Scenario {
                        outer: ok,
                        inner: Some(this),
                        drop_after,
                    });
                    run(Scenario {
                        outer: this,
                        inner: Some(ok),
                        drop_after,
                    });
                }
            }
        }
    }
    // Guards against a sweep that silently shrinks.
    let expected = if cfg!(feature = "std") { 59 } else { 32 };
    assert_eq!(distinct.len(), expected, "distinct runs in the sweep");
}
