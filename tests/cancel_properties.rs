//! Property tests for graceful cancellation (issue 18): a stop signal fires at every poll of
//! every phase, and each run is checked against a model of the documented semantics.
//!
//! # What is generated
//!
//! A [`Case`] is a shape, the plans of its managers and bodies, a stop signal, an optional exit
//! bound and an optional drop point:
//!
//! - **Shapes** ([`Shape`]): one manager; a nested `with` (a plain `with` awaited inside the
//!   body of the outer one, which alone is given the signal: the inner one is stopped
//!   abortively, by dropping); a tuple of 2 or 3 managers; an array of 2 or 3; and (feature
//!   `alloc`) an [`ExitStack`] whose body enters 1 to 3 managers with `enter_context`, then
//!   runs its own part.
//! - **Fixtures**, all written by hand and poll-based: a manager ([`Mgr`]) whose enter future
//!   and exit future return `Pending` 0–3 times (waking the waker each time), then succeed or
//!   fail; a body future ([`BodyFut`]) that does the same, touching every resource it borrows
//!   on each poll; and the signal and the bound ([`Trigger`]), each `Ready` at its `k`-th poll
//!   (after `k` `Pending`s) or never.
//! - **Where they fire**: the generator draws raw numbers, reduced against the model so that
//!   they cover the whole run: the signal's `k` modulo (the number of times the signal is
//!   polled when it never fires + 1), the bound's modulo (its polls in that run + 1), and the
//!   drop point modulo (the polls to the end + 1). So the signal fires at every poll index of
//!   enter (including a group's unwinding after a member failed to enter) and of the body,
//!   or never; the bound at every poll index of exit; the harness drops the future after any
//!   number of polls. Without a bound, `abandon_exit_on` is not called at all.
//!
//! # What is checked
//!
//! Every fixture writes to one event log ([`Ev`]) and counts its drops ([`Tracked`]). The
//! [`Model`] executes the documented semantics directly and produces the log they imply, the
//! output and the number of polls; the run must match it exactly. That covers which phases
//! run and how often each is polled; that the signal is polled once per poll, after the
//! `with`, only while enter or the body runs, and is dropped when exit begins (before exit's
//! future is polled again); that the bound is polled only during exit, after the `with`; what
//! each exit sees (`Success`, `Cancelled`, the body's error or the newest failure of an exit
//! before it, identified by downcasting the [`Failure`]); the order of exits (right to left,
//! newest entry first); where `cancel` runs (members entered when a group's enter is stopped
//! or dropped; every member when dropped mid-body; the members left of an exit that is
//! abandoned or dropped; a nested `with` stopped from outside); and the exact output variant,
//! with every error value traced to its manager and phase ([`Out`]).
//!
//! Independently of the model, [`invariants`] reads the rules from the log alone: the signal
//! never polled once exit has begun and dropped in that poll; the bound never polled before
//! it; nothing polled between a trigger firing and its drop; exactly one of exit and cancel for
//! each manager that entered; every body future dropped before the resources it borrows are
//! dropped and before their exit or cancel starts (its `Drop` also reads them, so that Miri
//! sees a dangling borrow); cancel of the outer managers only when the future was dropped,
//! stopped while entering or abandoned. Every fixture value — manager, enter future, resource,
//! exit handle, body future, exit future, value, errors, signal, bound — must be dropped
//! exactly once; every `Pending` must have woken the waker of its poll; `is_terminated` must
//! be `false` before `Ready` and `true` after.
//!
//! # Cases
//!
//! [`CASES`] per property natively, [`MIRI_CASES`] under Miri (where failure persistence is
//! off); `PROPTEST_CASES` overrides both (Miri sees it only when forwarded:
//! `MIRIFLAGS=-Zmiri-env-forward=PROPTEST_CASES`). [`sweep`] runs a fixed grid
//! ([`sweep_cases`]) — every shape, one `Pending` per phase, with and without the last enter
//! failing, the bodies failing and every exit failing; the signal at every poll it gets, with
//! no bound and with the bound at every exit poll; dropped after every poll — so that Miri,
//! with few proptest cases, still takes every path. Natively it checks all 1,334 cases (858
//! without `alloc`). Under Miri it leaves out the array and the stack of 3 and checks each
//! distinct run once (same shape, expected log, output and polls): 319 runs (246 without
//! `alloc`). The whole file takes about 2 s natively (debug) and 2½ minutes under Miri
//! (`cargo +nightly miri test --all-features --test cancel_properties`, strict provenance),
//! build excluded. Panics are not generated (tests/properties.rs covers them).
//!
//! # A group's unwinding counts as enter
//!
//! After a group member's enter fails, the members entered before it exit inside the group's
//! enter future, so a signal ready then drops that future: the exit under way is dropped
//! unfinished and the output is `Entering`, as the crate docs' `# Cancellation` says. The model
//! expects exactly that.

use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker, ready};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

use async_with::group::FaultList;
use async_with::{
    AsyncEnter, AsyncExit, Body, CancelError, Error, FusedFuture, GroupError, Outcome, WithFuture,
    with,
};
#[cfg(feature = "alloc")]
use async_with::{CloseErrors, ExitStack};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// How a phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum End {
    Ok,
    Err,
}

/// One phase: `Pending` `pendings` times, then `end`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Plan {
    pendings: u8,
    end: End,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×Pending, {:?}", self.pendings, self.end)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct MgrPlan {
    enter: Plan,
    exit: Plan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Shape {
    /// `with(m0, body)`.
    Single,
    /// `with(m0, async |r0| { .. with(m1, body1).await .. })`: body 0 waits, then awaits the
    /// inner `with`, then ends.
    Nested,
    /// `with((m0, .., mN-1), body)`.
    Tuple(usize),
    /// `with([m0, .., mN-1], body)`.
    Array(usize),
    /// `with(ExitStack::new(), async |stack| { enter m0..mN-1; body })` (feature `alloc`).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Stack(usize),
}

impl Shape {
    /// Whether the manager's `exit()` starts the first member's exit at once (a single
    /// manager; a tuple, whose exit handle calls the rightmost member's `exit()`), rather than
    /// on the exit future's first poll (an array, an exit stack). Both are within the poll in
    /// which exit begins, so both keep the documented rule (the signal is dropped when exit
    /// begins, before exit's future is polled); only where the signal's drop falls relative
    /// to that first `ExitStart` differs, and the model follows each form.
    fn exit_starts_in_call(self) -> bool {
        matches!(self, Shape::Single | Shape::Nested | Shape::Tuple(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Case {
    shape: Shape,
    /// Per manager (for `Nested`: outer, inner; for `Stack`: the entries, oldest first).
    managers: Vec<MgrPlan>,
    /// Per body level (two for `Nested`, else one).
    bodies: Vec<Plan>,
    /// The stop signal: `Pending` this many times, then `Ready`; `None`: never ready.
    signal: Option<u32>,
    /// `None`: no `abandon_exit_on`; `Some(b)`: a bound, `Pending` `b` times then `Ready`
    /// (`Some(None)`: never ready).
    bound: Option<Option<u32>>,
    /// Drop the future after this many polls; `None`: poll it to the end.
    drop_after: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Event log and drop table
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Enter,
    Body,
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    /// A manager, by position (nested: 0 outer, 1 inner; stack: entry index).
    M(u8),
    /// A body, by level (nested: 0 outer, 1 inner).
    Body(u8),
    Signal,
    Bound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Thing {
    Manager,
    EnterFuture,
    Resource,
    ExitHandle,
    BodyFuture,
    ExitFuture,
    Value,
    BodyError,
    MgrError,
    Signal,
    Bound,
}

impl Thing {
    /// Whether its drop is an event of the ordered log; the others are only counted (when an
    /// unentered manager, a used exit handle, a value or an error is dropped is no part of the
    /// contract).
    fn ordered(self) -> bool {
        matches!(
            self,
            Thing::EnterFuture
                | Thing::Resource
                | Thing::BodyFuture
                | Thing::ExitFuture
                | Thing::Signal
                | Thing::Bound
        )
    }
}

/// A leaf error: a body's error (by level) or a manager's (position, phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Leaf {
    Body(u8),
    M(u8, Phase),
}

/// What an exit saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seen {
    Success,
    Failure(Leaf),
    Cancelled,
    /// Anything else (a failure of an unknown type, another outcome): never expected.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Ev {
    /// The harness starts its n-th poll (from 1).
    Poll(u32),
    /// `AsyncEnter::enter` was called.
    EnterStart(u8),
    /// A phase future returned `Pending`, after waking its waker.
    Pending(Who, Phase),
    /// An enter future returned `Ready`: succeeded or not.
    EnterEnd(u8, bool),
    /// A body future was created.
    BodyStart(u8),
    /// A body future returned `Ready`: succeeded or not.
    BodyEnd(u8, bool),
    /// `AsyncExit::exit` was called: what it saw, how often the body had touched the resource.
    ExitStart(u8, Seen, u32),
    /// An exit future returned `Ready`: succeeded or not (it dropped the resource just before).
    ExitEnd(u8, bool),
    /// `AsyncExit::cancel` was called, with how often the body had touched the resource.
    Cancel(u8, u32),
    /// The signal or the bound was polled and returned `Pending`.
    Waiting(Who),
    /// The signal or the bound was polled and returned `Ready`.
    Fired(Who),
    /// The nested form's inner `with` returned `Ready` with this output.
    InnerReady(Out),
    Dropped(Who, Thing),
    /// The future under test returned `Ready` (its output described already).
    Ready,
    /// A fixture saw something that must not happen.
    Violation(String),
}

#[derive(Default)]
struct Book {
    log: Vec<Ev>,
    /// Per tracked value: who, what, how often dropped.
    drops: Vec<(Who, Thing, u32)>,
}

thread_local! {
    /// One book per test thread; proptest runs the cases of a property one after the other.
    static BOOK: RefCell<Book> = RefCell::new(Book::default());
}

fn push(ev: Ev) {
    BOOK.with(|book| book.borrow_mut().log.push(ev));
}

fn violation(what: String) {
    push(Ev::Violation(what));
}

/// A drop-counted member of every fixture value. Plain data: the errors holding it stay
/// `Send + Sync + 'static`, as a `Failure` needs.
struct Tracked {
    who: Who,
    thing: Thing,
    id: usize,
}

impl Tracked {
    fn new(who: Who, thing: Thing) -> Self {
        BOOK.with(|book| {
            let mut book = book.borrow_mut();
            book.drops.push((who, thing, 0));
            Tracked {
                who,
                thing,
                id: book.drops.len() - 1,
            }
        })
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        BOOK.with(|book| {
            let mut book = book.borrow_mut();
            book.drops[self.id].2 += 1;
            if self.thing.ordered() {
                book.log.push(Ev::Dropped(self.who, self.thing));
            }
        });
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{:?}", self.thing, self.who)
    }
}

// ---------------------------------------------------------------------------------------------
// Values and errors
// ---------------------------------------------------------------------------------------------

/// A manager's error: where it came from.
#[derive(Debug)]
struct MErr {
    who: u8,
    phase: Phase,
    _tracked: Tracked,
}

/// A body's error.
#[derive(Debug)]
struct BodyErr {
    level: u8,
    _tracked: Tracked,
}

impl BodyErr {
    fn new(level: u8) -> Self {
        BodyErr {
            level,
            _tracked: Tracked::new(Who::Body(level), Thing::BodyError),
        }
    }
}

/// A body's value.
#[derive(Debug)]
struct Val {
    level: u8,
    _tracked: Tracked,
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Drives one phase: `Pending` (after waking) while planned `Pending`s are left, then `Ready`
/// once; polled again after that, it records a violation.
struct Step {
    who: Who,
    phase: Phase,
    left: u8,
    finished: bool,
}

impl Step {
    fn new(who: Who, phase: Phase, pendings: u8) -> Self {
        Step {
            who,
            phase,
            left: pendings,
            finished: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished {
            violation(format!(
                "{:?} {:?}: polled after Ready",
                self.who, self.phase
            ));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.left > 0 {
            self.left -= 1;
            push(Ev::Pending(self.who, self.phase));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.finished = true;
        Poll::Ready(())
    }
}

/// The manager at position `who`.
struct Mgr {
    who: u8,
    plan: MgrPlan,
    _tracked: Tracked,
}

fn mgr(who: usize, plan: MgrPlan) -> Mgr {
    let who = u8::try_from(who).expect("few managers");
    Mgr {
        who,
        plan,
        _tracked: Tracked::new(Who::M(who), Thing::Manager),
    }
}

impl AsyncEnter for Mgr {
    type Resource = Res;
    type Error = MErr;
    type Exit = MgrExit;
    type Enter = EnterFut;

    fn enter(self) -> EnterFut {
        push(Ev::EnterStart(self.who));
        EnterFut {
            _tracked: Tracked::new(Who::M(self.who), Thing::EnterFuture),
            step: Step::new(Who::M(self.who), Phase::Enter, self.plan.enter.pendings),
            who: self.who,
            plan: self.plan,
        }
    }
}

struct EnterFut {
    _tracked: Tracked,
    step: Step,
    who: u8,
    plan: MgrPlan,
}

impl Future for EnterFut {
    type Output = Result<(Res, MgrExit), MErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.step.poll(cx));
        let ok = this.plan.enter.end == End::Ok;
        push(Ev::EnterEnd(this.who, ok));
        let who = Who::M(this.who);
        Poll::Ready(if ok {
            Ok((
                Res {
                    who: this.who,
                    touched: 0,
                    _tracked: Tracked::new(who, Thing::Resource),
                },
                MgrExit {
                    who: this.who,
                    plan: this.plan.exit,
                    _tracked: Tracked::new(who, Thing::ExitHandle),
                },
            ))
        } else {
            Err(MErr {
                who: this.who,
                phase: Phase::Enter,
                _tracked: Tracked::new(who, Thing::MgrError),
            })
        })
    }
}

/// The resource: knows its manager, counts the body's polls.
struct Res {
    who: u8,
    touched: u32,
    _tracked: Tracked,
}

struct MgrExit {
    who: u8,
    plan: Plan,
    _tracked: Tracked,
}

/// What an exit sees, the failure identified by downcasting it to a leaf error.
fn seen(outcome: Outcome<'_>) -> Seen {
    match outcome {
        Outcome::Success => Seen::Success,
        Outcome::Cancelled => Seen::Cancelled,
        Outcome::Failure(failure) => {
            if let Some(e) = failure.downcast_ref::<BodyErr>() {
                Seen::Failure(Leaf::Body(e.level))
            } else if let Some(x) = failure.downcast_ref::<MErr>() {
                Seen::Failure(Leaf::M(x.who, x.phase))
            } else {
                Seen::Other(format!("{failure:?}"))
            }
        }
        other => Seen::Other(format!("{other:?}")),
    }
}

impl AsyncExit<Res> for MgrExit {
    type Error = MErr;
    type Future<'o> = ExitFut;

    fn exit(self, resource: Res, outcome: Outcome<'_>) -> ExitFut {
        if resource.who != self.who {
            violation(format!(
                "exit of {} got the resource of {}",
                self.who, resource.who
            ));
        }
        push(Ev::ExitStart(self.who, seen(outcome), resource.touched));
        ExitFut {
            _tracked: Tracked::new(Who::M(self.who), Thing::ExitFuture),
            step: Step::new(Who::M(self.who), Phase::Exit, self.plan.pendings),
            who: self.who,
            end: self.plan.end,
            resource: Some(resource),
        }
    }

    fn cancel(self, resource: Res) {
        if resource.who != self.who {
            violation(format!(
                "cancel of {} got the resource of {}",
                self.who, resource.who
            ));
        }
        push(Ev::Cancel(self.who, resource.touched));
        drop(resource);
    }
}

/// The exit future: owns the resource until it finishes. Dropped early, it logs its own drop,
/// then the resource's (field order).
struct ExitFut {
    _tracked: Tracked,
    step: Step,
    who: u8,
    end: End,
    resource: Option<Res>,
}

impl Future for ExitFut {
    type Output = Result<(), MErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.step.poll(cx));
        this.resource = None;
        let ok = this.end == End::Ok;
        push(Ev::ExitEnd(this.who, ok));
        Poll::Ready(if ok {
            Ok(())
        } else {
            Err(MErr {
                who: this.who,
                phase: Phase::Exit,
                _tracked: Tracked::new(Who::M(this.who), Thing::MgrError),
            })
        })
    }
}

/// The inner `with` of the nested form, as the outer body awaits it.
type InnerFut<'r> = Pin<Box<dyn Future<Output = ()> + 'r>>;

/// A body future, written by hand: its `Pending`s, then the inner `with` if any, then its end.
/// Touches every resource it borrows on each poll, and reads them in its `Drop`.
struct BodyFut<'r> {
    /// Declared first: dropped before `_tracked` logs the body future's drop.
    inner: Option<InnerFut<'r>>,
    resources: Vec<&'r mut Res>,
    /// The position of the first resource (the others follow it).
    first: u8,
    step: Step,
    waited: bool,
    level: u8,
    end: End,
    /// `None` in the exit stack's body, where the async closure around it holds the tracker.
    _tracked: Option<Tracked>,
}

fn body_fut<'r>(
    level: u8,
    plan: Plan,
    resources: Vec<&'r mut Res>,
    inner: Option<InnerFut<'r>>,
    own_tracker: bool,
) -> BodyFut<'r> {
    let who = Who::Body(level);
    if own_tracker {
        push(Ev::BodyStart(level));
    }
    BodyFut {
        inner,
        first: resources.first().map_or(0, |r| r.who),
        resources,
        step: Step::new(who, Phase::Body, plan.pendings),
        waited: false,
        level,
        end: plan.end,
        _tracked: own_tracker.then(|| Tracked::new(who, Thing::BodyFuture)),
    }
}

impl Future for BodyFut<'_> {
    type Output = Result<Val, BodyErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for resource in &mut this.resources {
            resource.touched += 1;
        }
        if !this.waited {
            ready!(this.step.poll(cx));
            this.waited = true;
        }
        if let Some(inner) = this.inner.as_mut() {
            ready!(inner.as_mut().poll(cx));
            this.inner = None;
        }
        let ok = this.end == End::Ok;
        push(Ev::BodyEnd(this.level, ok));
        Poll::Ready(if ok {
            Ok(Val {
                level: this.level,
                _tracked: Tracked::new(Who::Body(this.level), Thing::Value),
            })
        } else {
            Err(BodyErr::new(this.level))
        })
    }
}

impl Drop for BodyFut<'_> {
    fn drop(&mut self) {
        // Reads the borrowed resources: if one were gone already, Miri would report it.
        for (i, resource) in self.resources.iter().enumerate() {
            if usize::from(resource.who) != usize::from(self.first) + i {
                violation(format!(
                    "body {}: resource {i} belongs to {}",
                    self.level, resource.who
                ));
            }
        }
    }
}

/// The stop signal or the exit bound: `Pending` `left` times, then `Ready` (`None`: never).
/// It does not wake: it is only polled after the `with` returned `Pending`, whose fixture has
/// woken the waker already.
struct Trigger {
    who: Who,
    left: Option<u32>,
    fired: bool,
    _tracked: Tracked,
}

fn trigger(who: Who, left: Option<u32>) -> Trigger {
    let thing = if who == Who::Signal {
        Thing::Signal
    } else {
        Thing::Bound
    };
    Trigger {
        who,
        left,
        fired: false,
        _tracked: Tracked::new(who, thing),
    }
}

impl Future for Trigger {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.fired {
            violation(format!("{:?} polled after Ready", this.who));
            return Poll::Pending;
        }
        match this.left {
            Some(0) => {
                this.fired = true;
                push(Ev::Fired(this.who));
                Poll::Ready(())
            }
            Some(k) => {
                this.left = Some(k - 1);
                push(Ev::Waiting(this.who));
                Poll::Pending
            }
            None => {
                push(Ev::Waiting(this.who));
                Poll::Pending
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// Failures of the managers, in the order they happened: (position, phase).
type Faults = Vec<(u8, Phase)>;

/// An output, described. `Bad` if a value is inconsistent (from the wrong level, position or
/// phase; an unknown variant; `is_cancelled`/`is_abandoned` disagreeing with the variant).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Out {
    Value,
    /// `Failed(Error::Enter)` (or the inner `with`'s `Error::Enter`).
    Enter(Faults),
    Body,
    Exit(Faults),
    BodyAndExit(Faults),
    /// `CancelError::Entering`.
    Entering,
    /// `CancelError::Body { exit }`.
    Stopped(Option<Faults>),
    /// `CancelError::ExitAbandoned`: whether it kept a body error; `cancelled`.
    Abandoned {
        body: bool,
        cancelled: bool,
    },
    Bad(String),
}

/// A manager error of any shape, as the failures it holds.
trait Describe {
    fn faults(&self) -> Result<Faults, String>;
}

impl Describe for MErr {
    fn faults(&self) -> Result<Faults, String> {
        Ok(vec![(self.who, self.phase)])
    }
}

impl<S: FaultList> Describe for GroupError<S> {
    fn faults(&self) -> Result<Faults, String> {
        self.iter()
            .map(|(i, fault)| {
                let phase = if fault.is_enter() {
                    Phase::Enter
                } else {
                    Phase::Exit
                };
                match fault.inner().downcast_ref::<MErr>() {
                    Some(x) if usize::from(x.who) == i && x.phase == phase => Ok((x.who, phase)),
                    _ => Err(format!("group fault at {i}: {fault:?}")),
                }
            })
            .collect()
    }
}

#[cfg(feature = "alloc")]
impl Describe for CloseErrors<MErr> {
    fn faults(&self) -> Result<Faults, String> {
        self.iter()
            .map(|x| match x.phase {
                Phase::Exit => Ok((x.who, x.phase)),
                _ => Err(format!("a stack's close error from {x:?}")),
            })
            .collect()
    }
}

fn faults_out(x: &impl Describe, out: impl FnOnce(Faults) -> Out) -> Out {
    x.faults().map_or_else(Out::Bad, out)
}

fn value_out(level: u8, value: &Val) -> Out {
    if value.level == level {
        Out::Value
    } else {
        Out::Bad(format!("the value of body {}", value.level))
    }
}

fn error_out<X: Describe>(level: u8, error: Error<X, BodyErr>) -> Out {
    match error {
        Error::Enter(x) => faults_out(&x, Out::Enter),
        Error::Body(e) if e.level == level => Out::Body,
        Error::Exit(x) => faults_out(&x, Out::Exit),
        Error::BodyAndExit { body, exit } if body.level == level => {
            faults_out(&exit, Out::BodyAndExit)
        }
        _ => Out::Bad("a body error from another level".into()),
    }
}

/// The output of a plain `with` (the nested form's inner one).
fn plain_out<X: Describe>(level: u8, output: Result<Val, Error<X, BodyErr>>) -> Out {
    match output {
        Ok(value) => value_out(level, &value),
        Err(error) => error_out(level, error),
    }
}

/// The output of a `CancelOn`.
fn cancel_out<X: Describe>(level: u8, output: Result<Val, CancelError<X, BodyErr>>) -> Out {
    let flags = output
        .as_ref()
        .err()
        .map(|e| (e.is_cancelled(), e.is_abandoned()));
    let out = match output {
        Ok(value) => value_out(level, &value),
        Err(CancelError::Failed(error)) => error_out(level, error),
        Err(CancelError::Entering) => Out::Entering,
        Err(CancelError::Body { exit: None }) => Out::Stopped(None),
        Err(CancelError::Body { exit: Some(x) }) => faults_out(&x, |f| Out::Stopped(Some(f))),
        Err(CancelError::ExitAbandoned { body, cancelled }) => match body {
            Some(e) if e.level != level => Out::Bad(format!("abandoned with {e:?}")),
            body => Out::Abandoned {
                body: body.is_some(),
                cancelled,
            },
        },
        Err(_) => Out::Bad("an unknown `CancelError` variant".into()),
    };
    let expected = match &out {
        Out::Value => None,
        Out::Entering | Out::Stopped(_) => Some((true, false)),
        Out::Abandoned { cancelled, .. } => Some((*cancelled, true)),
        Out::Bad(_) => return out,
        _ => Some((false, false)),
    };
    if flags == expected {
        out
    } else {
        Out::Bad(format!("{out:?}: (is_cancelled, is_abandoned) = {flags:?}"))
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

/// How the future under test ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Top {
    Ready(Out),
    /// Dropped by the harness before it finished.
    Dropped,
}

#[derive(Debug)]
struct Driven {
    top: Top,
    polls: u32,
    problems: Vec<String>,
}

const MAX_POLLS: u32 = 100;

/// Polls `future` (a fresh counting waker per poll) until it is `Ready` or `drop_after` polls
/// were made; then drops it.
fn drive<F, X>(future: F, drop_after: Option<u32>) -> Driven
where
    F: FusedFuture<Output = Result<Val, CancelError<X, BodyErr>>>,
    X: Describe,
{
    let mut slot = pin!(Some(future));
    let mut driven = Driven {
        top: Top::Dropped,
        polls: 0,
        problems: Vec::new(),
    };
    while drop_after != Some(driven.polls) {
        if driven.polls == MAX_POLLS {
            driven.problems.push("not ready after MAX_POLLS".into());
            break;
        }
        let mut future = slot.as_mut().as_pin_mut().expect("still there");
        if future.is_terminated() {
            driven.problems.push("terminated before Ready".into());
        }
        let counter = Arc::new(WakeCounter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        driven.polls += 1;
        push(Ev::Poll(driven.polls));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => {
                if !future.is_terminated() {
                    driven.problems.push("not terminated after Ready".into());
                }
                driven.top = Top::Ready(cancel_out(0, output));
                push(Ev::Ready);
                break;
            }
            Poll::Pending => {
                if counter.0.load(Ordering::SeqCst) == 0 {
                    driven
                        .problems
                        .push(format!("poll {}: Pending without a wake-up", driven.polls));
                    break;
                }
            }
        }
    }
    slot.set(None);
    driven
}

/// Gives `future` the case's signal (and bound, if any), then drives it.
fn finish<'a, M, B, X>(case: &Case, future: WithFuture<'a, M, B>) -> Driven
where
    M: AsyncEnter<Error = X>,
    M::Resource: 'a,
    B: Body<'a, M::Resource, Ok = Val, Err = BodyErr>,
    X: Describe,
{
    let signal = trigger(Who::Signal, case.signal);
    match case.bound {
        None => drive(future.cancel_on(signal), case.drop_after),
        Some(bound) => drive(
            future
                .cancel_on(signal)
                .abandon_exit_on(trigger(Who::Bound, bound)),
            case.drop_after,
        ),
    }
}

fn single(case: &Case) -> Driven {
    let plan = case.bodies[0];
    let m0 = mgr(0, case.managers[0]);
    finish(
        case,
        with(m0, async move |r: &mut Res| {
            body_fut(0, plan, vec![r], None, true).await
        }),
    )
}

fn nested(case: &Case) -> Driven {
    let (p0, p1) = (case.bodies[0], case.bodies[1]);
    let (m0, m1) = (mgr(0, case.managers[0]), mgr(1, case.managers[1]));
    finish(
        case,
        with(m0, async move |r0: &mut Res| {
            let inner = with(m1, async move |r1: &mut Res| {
                body_fut(1, p1, vec![r1], None, true).await
            });
            let report: InnerFut<'_> = Box::pin(async move {
                let out = plain_out(1, inner.await);
                push(Ev::InnerReady(out));
            });
            body_fut(0, p0, vec![r0], Some(report), true).await
        }),
    )
}

fn tuple2(case: &Case) -> Driven {
    let plan = case.bodies[0];
    let managers = (mgr(0, case.managers[0]), mgr(1, case.managers[1]));
    finish(
        case,
        with(managers, async move |(r0, r1)| {
            body_fut(0, plan, vec![r0, r1], None, true).await
        }),
    )
}

fn tuple3(case: &Case) -> Driven {
    let plan = case.bodies[0];
    let managers = (
        mgr(0, case.managers[0]),
        mgr(1, case.managers[1]),
        mgr(2, case.managers[2]),
    );
    finish(
        case,
        with(managers, async move |(r0, r1, r2)| {
            body_fut(0, plan, vec![r0, r1, r2], None, true).await
        }),
    )
}

fn array<const N: usize>(case: &Case) -> Driven {
    let plan = case.bodies[0];
    let managers: [Mgr; N] = core::array::from_fn(|i| mgr(i, case.managers[i]));
    finish(
        case,
        with(managers, async move |resources: &mut [Res; N]| {
            body_fut(0, plan, resources.iter_mut().collect(), None, true).await
        }),
    )
}

#[cfg(feature = "alloc")]
fn stack(case: &Case) -> Driven {
    let plan = case.bodies[0];
    let managers: Vec<Mgr> = (0..case.managers.len())
        .map(|i| mgr(i, case.managers[i]))
        .collect();
    finish(
        case,
        with(
            ExitStack::<MErr>::new(),
            async move |stack| -> Result<Val, BodyErr> {
                push(Ev::BodyStart(0));
                // The first local: dropped last, after an `enter_context` under way.
                let _tracked = Tracked::new(Who::Body(0), Thing::BodyFuture);
                let mut resources = Vec::new();
                for manager in managers {
                    match stack.enter_context(manager).await {
                        Ok(resource) => resources.push(resource),
                        Err(error) => {
                            drop(error);
                            push(Ev::BodyEnd(0, false));
                            return Err(BodyErr::new(0));
                        }
                    }
                }
                body_fut(0, plan, resources, None, false).await
            },
        ),
    )
}

fn run(case: &Case) -> Driven {
    match case.shape {
        Shape::Single => single(case),
        Shape::Nested => nested(case),
        Shape::Tuple(2) => tuple2(case),
        Shape::Tuple(3) => tuple3(case),
        Shape::Array(2) => array::<2>(case),
        Shape::Array(3) => array::<3>(case),
        #[cfg(feature = "alloc")]
        Shape::Stack(_) => stack(case),
        shape => unreachable!("no runner for {shape:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Model: the documented semantics, executed directly
// ---------------------------------------------------------------------------------------------

/// Why a run stops short: the harness drops the future, the signal fires (during enter or the
/// body), the bound fires (during exit).
#[derive(Debug)]
enum Stop {
    Dropped,
    Signal,
    Bound,
}

/// What the model predicts.
#[derive(Debug)]
struct Expected {
    log: Vec<Ev>,
    top: Top,
    polls: u32,
    /// How often the signal is polled, and the bound.
    signal_polls: u32,
    bound_polls: u32,
}

struct Model<'c> {
    case: &'c Case,
    log: Vec<Ev>,
    /// The number of the current poll.
    tick: u32,
    /// Whether the outer `with`'s exit has begun (the signal's work is over).
    exiting: bool,
    /// `Pending`s left before the signal fires.
    signal: Option<u32>,
    signal_alive: bool,
    bound: Option<Option<u32>>,
    signal_polls: u32,
    bound_polls: u32,
    /// Polls of each body level's future.
    touched: [u32; 2],
    /// The body levels whose future is running (each poll of a fixture below touches them).
    active: Vec<usize>,
    /// The exit stack's entries registered so far.
    stack_entered: Vec<u8>,
}

impl<'c> Model<'c> {
    fn run(case: &'c Case) -> Expected {
        let mut model = Model {
            case,
            log: Vec::new(),
            tick: 1,
            exiting: false,
            signal: case.signal,
            signal_alive: true,
            bound: case.bound,
            signal_polls: 0,
            bound_polls: 0,
            touched: [0; 2],
            active: Vec::new(),
            stack_entered: Vec::new(),
        };
        let top = if case.drop_after == Some(0) {
            // Never polled: the manager and body go first (not logged), then the signals.
            model.drop_triggers();
            Top::Dropped
        } else {
            model.push(Ev::Poll(1));
            model.top()
        };
        let polls = match top {
            Top::Dropped => case.drop_after.expect("dropped early"),
            Top::Ready(_) => model.tick,
        };
        Expected {
            log: model.log,
            top,
            polls,
            signal_polls: model.signal_polls,
            bound_polls: model.bound_polls,
        }
    }

    fn push(&mut self, ev: Ev) {
        self.log.push(ev);
    }

    fn drop_signal(&mut self) {
        if self.signal_alive {
            self.signal_alive = false;
            self.push(Ev::Dropped(Who::Signal, Thing::Signal));
        }
    }

    /// The signal if still held, then the bound: dropped as the `CancelOn` finishes or is
    /// dropped, after everything of the `with`.
    fn drop_triggers(&mut self) {
        self.drop_signal();
        if self.bound.is_some() {
            self.push(Ev::Dropped(Who::Bound, Thing::Bound));
        }
    }

    fn ready(&mut self, out: Out) -> Top {
        self.drop_triggers();
        self.push(Ev::Ready);
        Top::Ready(out)
    }

    /// The end of a poll in which a fixture returned `Pending`: the `with` is `Pending`, so the
    /// signal is polled (enter, body) or the bound (exit); then the harness may drop.
    fn end_of_poll(&mut self) -> Result<(), Stop> {
        if !self.exiting {
            self.signal_polls += 1;
            match self.signal {
                Some(0) => {
                    self.push(Ev::Fired(Who::Signal));
                    return Err(Stop::Signal);
                }
                Some(k) => {
                    self.signal = Some(k - 1);
                    self.push(Ev::Waiting(Who::Signal));
                }
                None => self.push(Ev::Waiting(Who::Signal)),
            }
        } else {
            // Exit began in this poll on its own (the body ended): the signal is dropped
            // unpolled, before the bound's first poll.
            self.drop_signal();
            if let Some(bound) = self.bound {
                self.bound_polls += 1;
                match bound {
                    Some(0) => {
                        self.push(Ev::Fired(Who::Bound));
                        return Err(Stop::Bound);
                    }
                    Some(j) => {
                        self.bound = Some(Some(j - 1));
                        self.push(Ev::Waiting(Who::Bound));
                    }
                    None => self.push(Ev::Waiting(Who::Bound)),
                }
            }
        }
        if Some(self.tick) == self.case.drop_after {
            return Err(Stop::Dropped);
        }
        self.tick += 1;
        self.push(Ev::Poll(self.tick));
        Ok(())
    }

    /// `n` `Pending`s of a fixture, each ending a poll.
    fn pend(&mut self, who: Who, phase: Phase, n: u8) -> Result<(), Stop> {
        for _ in 0..n {
            self.push(Ev::Pending(who, phase));
            for &level in &self.active {
                self.touched[level] += 1;
            }
            self.end_of_poll()?;
        }
        Ok(())
    }

    fn touched_of(&self, who: u8) -> u32 {
        match self.case.shape {
            Shape::Nested => self.touched[usize::from(who)],
            _ => self.touched[0],
        }
    }

    /// The outer `CancelOn`.
    fn top(&mut self) -> Top {
        let shape = self.case.shape;
        let entered: Vec<u8> = match shape {
            Shape::Single | Shape::Nested => match self.enter(0) {
                Ok(true) => vec![0],
                Ok(false) => return self.ready(Out::Enter(vec![(0, Phase::Enter)])),
                Err(stop) => return self.stopped_entering(stop),
            },
            Shape::Tuple(n) | Shape::Array(n) => match self.enter_group(n) {
                Ok(Ok(())) => (0..n).map(|i| i as u8).collect(),
                Ok(Err(faults)) => return self.ready(Out::Enter(faults)),
                Err(stop) => return self.stopped_entering(stop),
            },
            // The stack's enter is ready at once; its entries are entered by the body.
            Shape::Stack(_) => Vec::new(),
        };
        let body = match shape {
            Shape::Stack(n) => self.stack_body(n),
            _ => self.body(0, shape == Shape::Nested),
        };
        let mut members = match shape {
            Shape::Stack(_) => self.stack_entered.clone(),
            _ => entered,
        };
        members.reverse();
        let (outer, stopped, body_failed) = match body {
            Ok(true) => (Seen::Success, false, false),
            Ok(false) => (Seen::Failure(Leaf::Body(0)), false, true),
            Err(Stop::Signal) => (Seen::Cancelled, true, false),
            Err(Stop::Dropped) => {
                // Abortive: the body future is gone; every member gets `cancel`.
                self.cancel(&members);
                self.drop_triggers();
                return Top::Dropped;
            }
            Err(Stop::Bound) => unreachable!("the bound is polled only during exit"),
        };
        self.exiting = true;
        let signal_at = stopped.then_some(shape.exit_starts_in_call());
        match self.exit(&members, outer, signal_at) {
            Ok(faults) => {
                let failed = (!faults.is_empty()).then_some(faults);
                let out = match (stopped, body_failed, failed) {
                    (true, _, failed) => Out::Stopped(failed),
                    (false, false, None) => Out::Value,
                    (false, false, Some(f)) => Out::Exit(f),
                    (false, true, None) => Out::Body,
                    (false, true, Some(f)) => Out::BodyAndExit(f),
                };
                self.ready(out)
            }
            Err(Stop::Bound) => self.ready(Out::Abandoned {
                body: body_failed,
                cancelled: stopped,
            }),
            Err(Stop::Dropped) => {
                self.drop_triggers();
                Top::Dropped
            }
            Err(Stop::Signal) => unreachable!("the signal is dropped when exit begins"),
        }
    }

    /// Stopped (signal) or dropped (harness) while entering: everything of enter is undone
    /// already; the signal and the bound go.
    fn stopped_entering(&mut self, stop: Stop) -> Top {
        match stop {
            Stop::Signal => self.ready(Out::Entering),
            Stop::Dropped => {
                self.drop_triggers();
                Top::Dropped
            }
            Stop::Bound => unreachable!("the bound is polled only during exit"),
        }
    }

    /// Manager `i`'s enter: `Ok(entered)`; stopped, its enter future is dropped.
    fn enter(&mut self, i: u8) -> Result<bool, Stop> {
        let plan = self.case.managers[usize::from(i)].enter;
        self.push(Ev::EnterStart(i));
        if let Err(stop) = self.pend(Who::M(i), Phase::Enter, plan.pendings) {
            self.push(Ev::Dropped(Who::M(i), Thing::EnterFuture));
            return Err(stop);
        }
        let ok = plan.end == End::Ok;
        self.push(Ev::EnterEnd(i, ok));
        self.push(Ev::Dropped(Who::M(i), Thing::EnterFuture));
        Ok(ok)
    }

    /// A group's enter: left to right; after a failure, the entered members exit right to
    /// left (still the group's enter: the signal is polled and can stop them); stopped, the
    /// member entering or exiting has its future dropped and the others entered get `cancel`.
    fn enter_group(&mut self, n: usize) -> Result<Result<(), Faults>, Stop> {
        for i in 0..n as u8 {
            match self.enter(i) {
                Ok(true) => {}
                Ok(false) => {
                    let entered: Vec<u8> = (0..i).rev().collect();
                    let mut faults = vec![(i, Phase::Enter)];
                    faults.extend(self.exit(
                        &entered,
                        Seen::Failure(Leaf::M(i, Phase::Enter)),
                        None,
                    )?);
                    return Ok(Err(faults));
                }
                Err(stop) => {
                    let entered: Vec<u8> = (0..i).rev().collect();
                    self.cancel(&entered);
                    return Err(stop);
                }
            }
        }
        Ok(Ok(()))
    }

    /// Body `level` (with the inner `with` after its own `Pending`s if `nested`).
    fn body(&mut self, level: usize, nested: bool) -> Result<bool, Stop> {
        let plan = self.case.bodies[level];
        let l = level as u8;
        self.push(Ev::BodyStart(l));
        self.active.push(level);
        let ran = self
            .pend(Who::Body(l), Phase::Body, plan.pendings)
            .and_then(|()| {
                if nested {
                    let out = self.inner_with()?;
                    self.push(Ev::InnerReady(out));
                }
                Ok(plan.end == End::Ok)
            });
        self.active.pop();
        match ran {
            Ok(ok) => {
                self.touched[level] += 1;
                self.push(Ev::BodyEnd(l, ok));
                self.push(Ev::Dropped(Who::Body(l), Thing::BodyFuture));
                Ok(ok)
            }
            Err(stop) => {
                // The inner `with` (a field before the tracker) went first, inside `ran`.
                self.push(Ev::Dropped(Who::Body(l), Thing::BodyFuture));
                Err(stop)
            }
        }
    }

    /// The nested form's inner `with`, without a signal: stopped from outside, it is dropped.
    fn inner_with(&mut self) -> Result<Out, Stop> {
        if !self.enter(1)? {
            return Ok(Out::Enter(vec![(1, Phase::Enter)]));
        }
        let body = match self.body(1, false) {
            Ok(ok) => ok,
            Err(stop) => {
                self.cancel(&[1]);
                return Err(stop);
            }
        };
        let outer = if body {
            Seen::Success
        } else {
            Seen::Failure(Leaf::Body(1))
        };
        let faults = self.exit(&[1], outer, None)?;
        let failed = (!faults.is_empty()).then_some(faults);
        Ok(match (body, failed) {
            (true, None) => Out::Value,
            (true, Some(f)) => Out::Exit(f),
            (false, None) => Out::Body,
            (false, Some(f)) => Out::BodyAndExit(f),
        })
    }

    /// The exit stack's body: enters each entry (a failure ends the body with its error),
    /// then runs its own part.
    fn stack_body(&mut self, n: usize) -> Result<bool, Stop> {
        self.push(Ev::BodyStart(0));
        let ran = self.stack_body_inner(n);
        match ran {
            Ok(ok) => {
                self.push(Ev::BodyEnd(0, ok));
                self.push(Ev::Dropped(Who::Body(0), Thing::BodyFuture));
                Ok(ok)
            }
            Err(stop) => {
                self.push(Ev::Dropped(Who::Body(0), Thing::BodyFuture));
                Err(stop)
            }
        }
    }

    fn stack_body_inner(&mut self, n: usize) -> Result<bool, Stop> {
        for i in 0..n as u8 {
            if !self.enter(i)? {
                return Ok(false);
            }
            self.stack_entered.push(i);
        }
        let plan = self.case.bodies[0];
        self.active.push(0);
        let waited = self.pend(Who::Body(0), Phase::Body, plan.pendings);
        self.active.pop();
        waited?;
        self.touched[0] += 1;
        Ok(plan.end == End::Ok)
    }

    /// Exits `members` in that order (right to left), each seeing the newest failure of an
    /// exit before it, else `outer`. `signal_at`: exit begins after a stop in the body, and
    /// the signal is dropped now: after the first `ExitStart` (`true`) or before it.
    /// Stopped, the running exit future is dropped (with its resource) and the members left
    /// get `cancel`.
    fn exit(
        &mut self,
        members: &[u8],
        outer: Seen,
        signal_at: Option<bool>,
    ) -> Result<Faults, Stop> {
        if members.is_empty() && signal_at.is_some() {
            self.drop_signal();
        }
        let mut faults = Vec::new();
        let mut newest: Option<Leaf> = None;
        for (k, &i) in members.iter().enumerate() {
            let seen = newest.map_or_else(|| outer.clone(), Seen::Failure);
            if k == 0 && signal_at == Some(false) {
                self.drop_signal();
            }
            self.push(Ev::ExitStart(i, seen, self.touched_of(i)));
            if k == 0 && signal_at == Some(true) {
                self.drop_signal();
            }
            let plan = self.case.managers[usize::from(i)].exit;
            if let Err(stop) = self.pend(Who::M(i), Phase::Exit, plan.pendings) {
                self.push(Ev::Dropped(Who::M(i), Thing::ExitFuture));
                self.push(Ev::Dropped(Who::M(i), Thing::Resource));
                self.cancel(&members[k + 1..]);
                return Err(stop);
            }
            let ok = plan.end == End::Ok;
            self.push(Ev::Dropped(Who::M(i), Thing::Resource));
            self.push(Ev::ExitEnd(i, ok));
            self.push(Ev::Dropped(Who::M(i), Thing::ExitFuture));
            if !ok {
                faults.push((i, Phase::Exit));
                newest = Some(Leaf::M(i, Phase::Exit));
            }
        }
        Ok(faults)
    }

    /// `cancel` for `members`, in that order.
    fn cancel(&mut self, members: &[u8]) {
        for &i in members {
            self.push(Ev::Cancel(i, self.touched_of(i)));
            self.push(Ev::Dropped(Who::M(i), Thing::Resource));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// What the log shows of one manager, for [`invariants`].
#[derive(Clone, Copy, Default)]
struct Facts {
    /// Where its enter succeeded.
    entered: Option<usize>,
    exits: usize,
    cancels: usize,
    /// The first of its `ExitStart`, `Cancel` and resource drop.
    released: Option<usize>,
    resource_drops: usize,
}

/// The rules, read from the log alone (independently of the model), in two passes.
fn invariants(log: &[Ev], case: &Case, top: &Top) -> Vec<String> {
    let mut problems = Vec::new();
    let nested = case.shape == Shape::Nested;
    // Exit begins when the outer body future is dropped (ended, or stopped).
    let exit_began = log
        .iter()
        .position(|ev| *ev == Ev::Dropped(Who::Body(0), Thing::BodyFuture));
    let mut facts = [Facts::default(); 3];
    let mut body_start = [None; 2];
    let mut body_dropped = [None; 2];
    // Per trigger (signal, bound): polls in the current poll, where it fired, where dropped.
    let mut polled = [0_u32; 2];
    let mut fired = [None; 2];
    let mut dropped = [None; 2];
    let mut last_poll = 0;
    let mut order = Vec::new();
    let mut first_seen = None;
    let mut outer_cancelled = false;
    let outer = |who: u8| !nested || who == 0;
    let trigger = |who: &Who| usize::from(*who == Who::Bound);
    for (at, ev) in log.iter().enumerate() {
        match ev {
            Ev::Poll(_) => {
                polled = [0; 2];
                last_poll = at;
            }
            Ev::Violation(what) => problems.push(format!("{at}: {what}")),
            Ev::Waiting(who) | Ev::Fired(who) => {
                let t = trigger(who);
                polled[t] += 1;
                if polled[t] > 1 {
                    problems.push(format!("{at}: {who:?} polled twice in one poll"));
                }
                let after_exit_began = exit_began.is_some_and(|b| at > b);
                if *who == Who::Signal && after_exit_began {
                    problems.push(format!("{at}: the signal was polled after exit began"));
                }
                if *who == Who::Bound && !after_exit_began {
                    problems.push(format!("{at}: the bound was polled before exit began"));
                }
                if matches!(ev, Ev::Fired(_)) {
                    fired[t] = Some(at);
                }
            }
            Ev::Dropped(who @ (Who::Signal | Who::Bound), _) => {
                let t = trigger(who);
                dropped[t] = Some(at);
                if *who == Who::Signal && exit_began.is_some_and(|b| at < b || last_poll > b) {
                    problems.push("the signal was not dropped in the poll exit began in".into());
                }
            }
            Ev::BodyStart(l) => body_start[usize::from(*l)] = Some(at),
            Ev::Dropped(Who::Body(l), Thing::BodyFuture) => {
                body_dropped[usize::from(*l)] = Some(at);
            }
            Ev::EnterEnd(i, true) => facts[usize::from(*i)].entered = Some(at),
            Ev::ExitStart(i, seen, _) => {
                let f = &mut facts[usize::from(*i)];
                f.exits += 1;
                f.released.get_or_insert(at);
                if outer(*i) {
                    order.push(*i);
                    first_seen.get_or_insert(seen);
                }
            }
            Ev::Cancel(i, _) => {
                let f = &mut facts[usize::from(*i)];
                f.cancels += 1;
                f.released.get_or_insert(at);
                outer_cancelled |= outer(*i);
            }
            Ev::Dropped(Who::M(i), Thing::Resource) => {
                let f = &mut facts[usize::from(*i)];
                f.resource_drops += 1;
                f.released.get_or_insert(at);
            }
            _ => {}
        }
    }
    // Nothing of the `with` runs between a trigger firing and its drop.
    for t in 0..2 {
        if let (Some(f), Some(d)) = (fired[t], dropped[t]) {
            let ran = log[f..d].iter().any(|ev| {
                matches!(
                    ev,
                    Ev::Poll(_) | Ev::Pending(..) | Ev::ExitEnd(..) | Ev::EnterEnd(..)
                )
            });
            if d < f || ran {
                problems.push(format!(
                    "trigger {t}: something ran between its firing and its drop"
                ));
            }
        }
    }
    // Per manager: exactly one of exit and cancel, and one resource drop, if it entered; the
    // body future that borrowed its resource dropped before any of them.
    for (i, f) in facts.iter().enumerate().take(case.managers.len()) {
        let entered = usize::from(f.entered.is_some());
        if f.exits + f.cancels != entered || f.resource_drops != entered {
            problems.push(format!(
                "manager {i}: entered {entered}, {} exits, {} cancels, {} resource drops",
                f.exits, f.cancels, f.resource_drops
            ));
        }
        let level = if nested { i } else { 0 };
        let borrowed = matches!((f.entered, body_start[level]), (Some(e), Some(b)) if e < b);
        if let (true, Some(released)) = (borrowed, f.released) {
            if body_dropped[level].is_none_or(|d| d > released) {
                problems.push(format!(
                    "manager {i}: exit, cancel or the resource's drop before body {level}'s future was dropped"
                ));
            }
        }
        if let (Some(e), Some(r)) = (f.entered, f.released) {
            if r < e {
                problems.push(format!("manager {i}: released before it entered"));
            }
        }
    }
    // The outer managers exit right to left, and get `cancel` only when the future was
    // dropped, stopped while entering, or had its exit abandoned.
    if order.windows(2).any(|w| w[0] < w[1]) {
        problems.push(format!("exits not right to left: {order:?}"));
    }
    let may_cancel = matches!(
        top,
        Top::Dropped | Top::Ready(Out::Entering) | Top::Ready(Out::Abandoned { .. })
    );
    if outer_cancelled && !may_cancel {
        problems.push(format!("cancel ran, and the future ended {top:?}"));
    }
    // Stopped in the body: the first exit of the outer managers sees `Cancelled`.
    if let (Some(f), Some(b)) = (fired[0], exit_began) {
        if f < b && first_seen.is_some_and(|seen| *seen != Seen::Cancelled) {
            problems.push(format!(
                "stopped in the body, the first exit saw {first_seen:?}"
            ));
        }
    }
    problems
}

fn lines(log: &[Ev]) -> String {
    log.iter()
        .enumerate()
        .map(|(i, ev)| format!("  {i:3} {ev:?}\n"))
        .collect()
}

fn diff(actual: &[Ev], expected: &[Ev]) -> String {
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    format!(
        "logs differ from event {at}\nactual:\n{}expected:\n{}",
        lines(actual),
        lines(expected)
    )
}

/// Runs `case` and checks it against the model and the invariants.
fn check(case: &Case) -> Result<(), String> {
    check_against(case, &Model::run(case))
}

/// [`check`], with the model's prediction made already.
fn check_against(case: &Case, expected: &Expected) -> Result<(), String> {
    BOOK.with(|book| *book.borrow_mut() = Book::default());
    let driven = run(case);
    let book = BOOK.with(|book| core::mem::take(&mut *book.borrow_mut()));
    let mut problems = driven.problems.clone();
    if driven.top != expected.top {
        problems.push(format!(
            "ended {:?}, expected {:?}",
            driven.top, expected.top
        ));
    }
    if driven.polls != expected.polls {
        problems.push(format!(
            "{} polls, expected {}",
            driven.polls, expected.polls
        ));
    }
    problems.extend(invariants(&book.log, case, &driven.top));
    let bad_drops: Vec<_> = book.drops.iter().filter(|(_, _, n)| *n != 1).collect();
    if !bad_drops.is_empty() {
        problems.push(format!("dropped other than once: {bad_drops:?}"));
    }
    let same_log = book.log == expected.log;
    if problems.is_empty() && same_log {
        return Ok(());
    }
    let log = if same_log {
        format!("log:\n{}", lines(&book.log))
    } else {
        diff(&book.log, &expected.log)
    };
    Err(format!("{case:#?}\nproblems: {problems:#?}\n{log}"))
}

// ---------------------------------------------------------------------------------------------
// Generators and properties
// ---------------------------------------------------------------------------------------------

/// Cases per property by default.
const CASES: u32 = 5_000;
/// Cases per property under Miri ([`sweep`] covers every path; these add other `Pending`
/// counts and mixes of ends).
const MIRI_CASES: u32 = 8;

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
        // Each shrinking step is a run under Miri: keep a failure's report within minutes.
        config.max_shrink_iters = 64;
    }
    config
}

/// A phase: 0–3 `Pending`s, then success `ok` times in `ok + 1`.
fn plan(ok: u32) -> impl Strategy<Value = Plan> {
    (
        0..=3_u8,
        prop_oneof![ok => Just(End::Ok), 1 => Just(End::Err)],
    )
        .prop_map(|(pendings, end)| Plan { pendings, end })
}

fn mgr_plan() -> impl Strategy<Value = MgrPlan> {
    // Enter mostly succeeds, so that the later phases are reached often.
    (plan(5), plan(2)).prop_map(|(enter, exit)| MgrPlan { enter, exit })
}

/// Raw numbers for the signal, the bound and the drop point, reduced by [`resolve`].
#[derive(Clone, Copy, Debug)]
struct Raw {
    signal: Option<u32>,
    bound: Option<Option<u32>>,
    drop_after: Option<u32>,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        prop_oneof![1 => Just(None), 5 => any::<u32>().prop_map(Some)],
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(None)),
            3 => any::<u32>().prop_map(|j| Some(Some(j))),
        ],
        prop_oneof![2 => Just(None), 1 => any::<u32>().prop_map(Some)],
    )
        .prop_map(|(signal, bound, drop_after)| Raw {
            signal,
            bound,
            drop_after,
        })
}

/// The case, with the raw numbers reduced over the run: the signal over its polls when it
/// never fires (+ 1: never within the run), the bound over its polls in the run with that
/// signal, the drop point over that run's polls.
fn resolve(shape: Shape, managers: Vec<MgrPlan>, bodies: Vec<Plan>, raw: Raw) -> Case {
    let mut case = Case {
        shape,
        managers,
        bodies,
        signal: None,
        bound: None,
        drop_after: None,
    };
    if let Some(k) = raw.signal {
        case.signal = Some(k % (Model::run(&case).signal_polls + 1));
    }
    if let Some(bound) = raw.bound {
        case.bound = Some(None);
        if let Some(j) = bound {
            case.bound = Some(Some(j % (Model::run(&case).bound_polls + 1)));
        }
    }
    if let Some(d) = raw.drop_after {
        case.drop_after = Some(d % (Model::run(&case).polls + 1));
    }
    case
}

fn property(
    shape: Shape,
    (managers, bodies, raw): (Vec<MgrPlan>, Vec<Plan>, Raw),
) -> Result<(), TestCaseError> {
    check(&resolve(shape, managers, bodies, raw)).map_err(TestCaseError::fail)
}

fn parts(
    managers: impl Into<prop::collection::SizeRange>,
    bodies: usize,
) -> impl Strategy<Value = (Vec<MgrPlan>, Vec<Plan>, Raw)> {
    (
        prop::collection::vec(mgr_plan(), managers),
        prop::collection::vec(plan(2), bodies),
        raw(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn single_manager(p in parts(1, 1)) { property(Shape::Single, p)?; }

    #[test]
    fn nested_with(p in parts(2, 2)) { property(Shape::Nested, p)?; }

    #[test]
    fn tuple_of_2(p in parts(2, 1)) { property(Shape::Tuple(2), p)?; }

    #[test]
    fn tuple_of_3(p in parts(3, 1)) { property(Shape::Tuple(3), p)?; }

    #[test]
    fn array_of_2(p in parts(2, 1)) { property(Shape::Array(2), p)?; }

    #[test]
    fn array_of_3(p in parts(3, 1)) { property(Shape::Array(3), p)?; }
}

#[cfg(feature = "alloc")]
proptest! {
    #![proptest_config(config())]

    #[test]
    fn exit_stack(p in parts(1..=3, 1)) {
        let n = p.0.len();
        property(Shape::Stack(n), p)?;
    }
}

/// The sweep's grid: every shape; one `Pending` per phase (so each phase spans two polls: the
/// one it pends in and the one it ends in); with and without the last manager's enter
/// failing, the bodies failing, every exit failing; then the signal at every poll it gets,
/// each with no bound and with the bound at every exit poll; and, with the signal never
/// firing or firing at its last poll, dropped after every poll.
fn sweep_cases(full: bool) -> Vec<Case> {
    let mut shapes = vec![
        Shape::Single,
        Shape::Nested,
        Shape::Tuple(2),
        Shape::Tuple(3),
    ];
    shapes.push(Shape::Array(2));
    if full {
        shapes.push(Shape::Array(3));
    }
    if cfg!(feature = "alloc") {
        shapes.extend([Shape::Stack(1), Shape::Stack(2)]);
        if full {
            shapes.push(Shape::Stack(3));
        }
    }
    let one = |end| Plan { pendings: 1, end };
    let end = |fails: bool| if fails { End::Err } else { End::Ok };
    let mut cases = Vec::new();
    for shape in shapes {
        let n = match shape {
            Shape::Single => 1,
            Shape::Nested => 2,
            Shape::Tuple(n) | Shape::Array(n) | Shape::Stack(n) => n,
        };
        let levels = if shape == Shape::Nested { 2 } else { 1 };
        for enter_fails in [false, true] {
            for body_fails in [false, true] {
                // A failed enter of a single manager or a group runs no body.
                let body_runs = matches!(shape, Shape::Nested | Shape::Stack(_));
                if enter_fails && body_fails && !body_runs {
                    continue;
                }
                for exits_fail in [false, true] {
                    let base = Case {
                        shape,
                        managers: (0..n)
                            .map(|i| MgrPlan {
                                enter: one(end(enter_fails && i == n - 1)),
                                exit: one(end(exits_fail)),
                            })
                            .collect(),
                        bodies: vec![one(end(body_fails)); levels],
                        signal: None,
                        bound: None,
                        drop_after: None,
                    };
                    let signal_polls = Model::run(&base).signal_polls;
                    for k in 0..=signal_polls {
                        let signalled = Case {
                            signal: Some(k),
                            ..base.clone()
                        };
                        let bounded = Case {
                            bound: Some(None),
                            ..signalled.clone()
                        };
                        for j in 0..=Model::run(&bounded).bound_polls {
                            cases.push(Case {
                                bound: Some(Some(j)),
                                ..signalled.clone()
                            });
                        }
                        cases.push(signalled);
                    }
                    let last = signal_polls.checked_sub(1);
                    for signal in [None, last] {
                        let signalled = Case {
                            signal,
                            ..base.clone()
                        };
                        for d in 0..Model::run(&signalled).polls {
                            cases.push(Case {
                                drop_after: Some(d),
                                ..signalled.clone()
                            });
                        }
                    }
                }
            }
        }
    }
    cases
}

/// A cheap hasher for the sweep's set of distinct runs: `std`'s SipHash over whole logs is
/// most of the sweep's time under Miri.
#[derive(Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, x: u8) {
        self.add(u64::from(x));
    }

    fn write_u32(&mut self, x: u32) {
        self.add(u64::from(x));
    }

    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }

    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }

    fn write_isize(&mut self, x: isize) {
        self.add(x as u64);
    }
}

/// The distinct runs of `cases`: the first case of each (same shape, same expected log,
/// output and polls), with its prediction.
fn distinct_runs(cases: &[Case]) -> Vec<(&Case, Expected)> {
    let mut seen = HashSet::with_hasher(BuildHasherDefault::<Fx>::default());
    let mut runs = Vec::new();
    for case in cases {
        let expected = Model::run(case);
        let key = (case.shape, expected.log, expected.top, expected.polls);
        if !seen.contains(&key) {
            let (_, log, top, polls) = key.clone();
            seen.insert(key);
            runs.push((
                case,
                Expected {
                    log,
                    top,
                    polls,
                    ..expected
                },
            ));
        }
    }
    runs
}

/// A fixed, exhaustive grid ([`sweep_cases`]) through the same checks, so that Miri covers
/// every path whatever proptest draws. Natively every case of the full grid is checked.
/// Under Miri the grid leaves out the array and the stack of 3 (their code is the loop the
/// ones of 2 run; the tuple of 3 stays, for a pair nested in a pair), and each distinct run
/// (same shape, same expected log, output and polls) is checked once.
#[test]
fn sweep() {
    let small = sweep_cases(false);
    let runs = distinct_runs(&small);
    if cfg!(miri) {
        for (case, expected) in &runs {
            if let Err(problem) = check_against(case, expected) {
                panic!("{problem}");
            }
        }
    }
    let full = if cfg!(miri) {
        Vec::new()
    } else {
        sweep_cases(true)
    };
    for case in &full {
        if let Err(problem) = check(case) {
            panic!("{problem}");
        }
    }
    // Guards against a grid that silently shrinks: (cases, distinct runs) of the small grid,
    // cases of the full one.
    let (cases, distinct, all) = if cfg!(feature = "alloc") {
        (932, 319, 1334)
    } else {
        (688, 246, 858)
    };
    let expected = (cases, distinct, if cfg!(miri) { 0 } else { all });
    assert_eq!(
        (small.len(), runs.len(), full.len()),
        expected,
        "cases and distinct runs in the sweep"
    );
}
