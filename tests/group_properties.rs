//! Property tests for groups of managers (S13): a tuple `(A, B, ..)` or an array
//! `[M; N]` in one `with` must behave exactly as the nested form
//! `with(a, async |a| with(b, async |b| body).await).await`.
//!
//! # What runs
//!
//! A [`Script`] gives every manager an enter and an exit phase, and the body a phase: each
//! returns `Pending` 0–3 times (waking its waker first), then succeeds or fails; the body's
//! future may also (feature `std`) panic, and so may (feature `std`) a manager's `enter()` or
//! `exit()` *method* itself, before it returns its future ([`End::MethodPanic`]). The outer
//! future is polled by hand (each poll inside `catch_unwind`) and dropped after a given
//! number of polls, after a panic escaped a poll, or at the end. [`check`] runs one script
//! three times:
//!
//! 1. **the group**: `with((a, b, ..), body)` or `with([a, b, ..], body)`;
//! 2. **the nested form**: `with(a, async |a| with(b, async |b| .. body ..).await)`, with
//!    managers of the same types and plans (fresh values);
//! 3. **the model** ([`Model`]): the nested form's rules, executed directly, producing the
//!    event log they imply.
//!
//! The managers of a tuple have distinct error types (`MErr<0>` .. `MErr<3>`), those of an
//! array one type. Every fixture — hand-written managers with named, poll-based enter and exit
//! futures, and a hand-written body future — writes to one event log ([`Ev`]): each enter and
//! exit started (with the outcome the exit saw), each `Pending`, each end, each cancel, and
//! each drop of an enter future, exit handle, exit future, body future and resource.
//!
//! # What is checked, and how
//!
//! - **Same events, same order**: the group's log equals the nested form's log, and both
//!   equal the model's. What an exit saw is recorded as the `{:?}` of the *leaf* error: in the
//!   group an outer exit's [`Failure`] must *be* the leaf error (the body's error, or the
//!   enter/exit error of a manager to its right; checked by `Failure::downcast_ref` to those
//!   types); in the nested form it must be the inner `with`'s `Error<..>` wrapper of exactly
//!   the expected type, whose newest failure is the leaf ([`Newest`]). Any other type is a
//!   violation event, which no expected log contains.
//! - **The rules, read from the log alone** ([`invariants`]), for both forms: enter left to
//!   right, each after the previous one succeeded and its future was dropped; exactly one of
//!   exit and cancel for every manager that entered, neither for the others; exits right to
//!   left; cancels right to left, only when the future was dropped early, and only after the
//!   running phase's future was dropped (no future is dropped, no exit starts, nothing is
//!   polled after the first cancel); the body future dropped before any exit or cancel; each
//!   resource dropped exactly once, after its exit or cancel started; each exit sees the newest
//!   failure so far (the body's outcome if none), and `Panicked` after a panicking body (as in
//!   the nested form, where the inner `with` resumes the panic and drops its exit error).
//! - **Every value dropped exactly once**: every manager, enter future, resource, exit
//!   handle, exit future, body future, body value, body error and manager error counts its
//!   drops ([`Tracked`]).
//! - **Equivalent outputs**: both forms' outputs are mapped to one description ([`Out`]):
//!   which managers failed in which phase, in the order the failures happened, and whether the
//!   body failed — from a `GroupError` via [`GroupError::iter`] (each fault's value must carry
//!   its position and phase), from the nested `Error<Xa, Error<Xb, E>>` by walking it
//!   ([`Describe`]). The group's top-level variant must agree (`Enter` exactly when a manager
//!   failed to enter, `Exit` when only exits failed, ..), [`GroupError::first`] must be the
//!   first failure, and [`Error::collapse_group`] (and, for two levels, [`Error::collapse_nested`])
//!   must pick the body's error, else the first failure. A body panic must escape with its
//!   payload after every exit ran; the number of polls must be the same.
//! - Every `Pending` must have woken the waker of its poll.
//!
//! # A panic inside a member's `enter()` or `exit()` method
//!
//! The rule tuples and arrays obey alike (not the nested form's: there the inner `with` runs
//! inside the outer body, whose panic the outer `with` catches and exits with `Panicked`; so
//! these scripts are checked against the model and the rules only):
//!
//! - The panic unwinds out of `poll`: it is not caught, also with `std` (only the body is).
//! - When the group's future is dropped after the panic (the harness drops it right after
//!   catching the panic around its poll), every *other* member that entered and has not
//!   exited gets its synchronous `AsyncExit::cancel`, exactly once, right to left.
//! - The panicking member itself: a panic in `enter()` entered nothing, so nothing of it
//!   runs; a panic in `exit()` took its resource into `exit()` (the fixture drops it, then
//!   the exit handle, then panics), so neither its exit completes nor its cancel runs.
//! - No member's exit or cancel runs twice, nothing else runs after the panic (no enter,
//!   exit, poll or drop of a phase future), and the payload that escapes is the one the
//!   method threw ([`MethodBoom`], naming the member and the method) — also after a body
//!   panic, whose payload the group drops with the future.
//!
//! # Cases
//!
//! Six properties (tuples and arrays of 2, 3 and 4 managers), [`CASES`] cases each by default;
//! under Miri [`MIRI_CASES`]. `PROPTEST_CASES` overrides both (Miri sees it only when forwarded:
//! `MIRIFLAGS=-Zmiri-env-forward=PROPTEST_CASES`). The drop point is drawn over the script's
//! whole length: a generated number modulo (polls to the end + 1). [`sweep`] runs a fixed,
//! exhaustive set for pairs and triples — no failure, enter failing (or its method
//! panicking) at each position, every combination of exits succeeding, failing or panicking
//! in their method, the body failing or panicking together with them — dropped after every
//! poll (one `Pending` per phase) and run to the end (with and without `Pending`s), as
//! tuples and as arrays, so that Miri covers every path whatever proptest draws: 216
//! distinct scripts (102 without `std`), each as a tuple and as an array. Under Miri both
//! the sweep and the properties check the group against the model only
//! ([`Depth::GroupOnly`]): Miri is there for undefined behaviour in the group's code; the
//! comparison with the nested form is deterministic, and the native run makes it on the
//! same sweep and on 2,000 cases per property. Under Miri the sweep also leaves out its
//! runs to the end with `Pending`s (130 of the 216 scripts are checked), which take no path
//! the others do not (see [`sweep`]).
//!
//! Under Miri this file runs with all features under Stacked Borrows only (`.ci/run` says
//! why); natively in every feature set.

use core::any::{Any, type_name};
use core::fmt::{self, Debug};
use core::future::Future;
use core::marker::PhantomData;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker, ready};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;

use async_with::group::{FaultList, Faults};
use async_with::{AsyncEnter, AsyncExit, Error, Failure, GroupError, Outcome, with};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

/// How a phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum End {
    Ok,
    Err,
    /// The body's future panics. Only the body, only with feature `std`.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    Panic,
    /// The manager's `enter()` or `exit()` *method* panics (with a [`MethodBoom`]) before it
    /// returns its future, so the plan's `Pending`s never happen. Only managers, only with
    /// feature `std`.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    MethodPanic,
}

/// One phase: `Pending` `pendings` times, then `end`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Plan {
    pendings: u8,
    end: End,
}

impl Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×Pending, {:?}", self.pendings, self.end)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MgrPlan {
    enter: Plan,
    exit: Plan,
}

#[derive(Clone, Debug)]
struct Script {
    /// One per manager, left to right.
    managers: Vec<MgrPlan>,
    body: Plan,
    /// Drop the outer future after this many polls; `None`: run it to the end.
    drop_after: Option<u32>,
}

/// The shape of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// `(A, B, ..)`, each manager with its own error type `MErr<position>`.
    Tuple,
    /// `[M; N]`, one manager type, one error type `MErr<0>`.
    Array,
}

impl Kind {
    /// Whether each position has its own error type.
    fn distinct(self) -> bool {
        self == Kind::Tuple
    }
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

/// A manager (by position) or the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    M(u8),
    Body,
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
}

impl Thing {
    /// Whether its drop is an event of the ordered log. The others are only counted: when an
    /// unentered manager, the body's value or an error value is dropped is not part of the
    /// contract, and differs between the forms (the nested form drops a value or an exit error
    /// inside the inner `with`, the group at the end).
    fn ordered(self) -> bool {
        matches!(
            self,
            Thing::EnterFuture
                | Thing::Resource
                | Thing::ExitHandle
                | Thing::BodyFuture
                | Thing::ExitFuture
        )
    }
}

/// What an exit saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seen {
    Success,
    /// The `{:?}` of the leaf error (see the module docs).
    Failure(String),
    Panicked,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Ev {
    /// `AsyncEnter::enter` was called.
    EnterStart(u8),
    /// A phase future returned `Pending` (after waking).
    Pending(Who, Phase),
    /// The enter future returned `Ready`: succeeded or not.
    EnterEnd(u8, bool),
    /// The body future was created.
    BodyStart,
    /// The body future ended (returned, or is about to panic).
    BodyEnd(End),
    /// `AsyncExit::exit` was called, with what it saw and how often the body had touched the
    /// resource.
    ExitStart(u8, Seen, u32),
    /// The exit future returned `Ready`: succeeded or not.
    ExitEnd(u8, bool),
    /// `AsyncExit::cancel` was called, with how often the body had touched the resource.
    Cancel(u8, u32),
    /// The manager's `enter()` (`Phase::Enter`) or `exit()` (`Phase::Exit`, after its
    /// `ExitStart`) method is about to panic with a [`MethodBoom`]. Its `exit()` drops the
    /// resource and the exit handle first (logged), then panics.
    MethodPanic(u8, Phase),
    Dropped(Who, Thing),
    /// A fixture saw something that must not happen.
    Violation(String),
}

struct Shared {
    log: Mutex<Vec<Ev>>,
    /// Per tracked value: who, what, how often dropped.
    drops: Mutex<Vec<(Who, Thing, u32)>>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            log: Mutex::new(Vec::with_capacity(128)),
            drops: Mutex::new(Vec::with_capacity(64)),
        })
    }

    fn push(&self, ev: Ev) {
        self.log.lock().unwrap().push(ev);
    }

    fn violation(&self, what: String) {
        self.push(Ev::Violation(what));
    }
}

/// A drop-counted member of every fixture value.
struct Tracked {
    shared: Arc<Shared>,
    who: Who,
    thing: Thing,
    id: usize,
}

impl Tracked {
    fn new(shared: &Arc<Shared>, who: Who, thing: Thing) -> Self {
        let mut drops = shared.drops.lock().unwrap();
        drops.push((who, thing, 0));
        Tracked {
            shared: shared.clone(),
            who,
            thing,
            id: drops.len() - 1,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.shared.drops.lock().unwrap()[self.id].2 += 1;
        if self.thing.ordered() {
            self.shared.push(Ev::Dropped(self.who, self.thing));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values: errors, the body's value, the panic payload
// ---------------------------------------------------------------------------------------------

/// A manager's error. `K` makes the error types of a tuple's positions distinct; `who` and
/// `phase` say where it came from.
struct MErr<const K: usize> {
    who: u8,
    phase: Phase,
    tracked: Tracked,
}

impl<const K: usize> Debug for MErr<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{K}.{}.{:?}", self.who, self.phase)
    }
}

/// The `{:?}` of the error manager `who` returns in `phase`.
fn leaf_name(distinct: bool, who: u8, phase: Phase) -> String {
    let k = if distinct { who } else { 0 };
    format!("E{k}.{who}.{phase:?}")
}

const BODY_ERR: &str = "BodyErr";

/// The body's error.
struct BodyErr(Tracked);

impl Debug for BodyErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(BODY_ERR)
    }
}

/// The body's value.
#[derive(Debug)]
struct Val(Tracked);

impl Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{:?}", self.thing, self.who)
    }
}

/// The payload of the body's panic.
#[derive(Debug)]
struct Boom;

/// The payload of a panic inside a manager's `enter()` or `exit()` method.
#[derive(Debug, PartialEq, Eq)]
struct MethodBoom {
    who: u8,
    phase: Phase,
}

// ---------------------------------------------------------------------------------------------
// What an exit sees: the leaf error, found by downcasting
// ---------------------------------------------------------------------------------------------

/// An error that ends in a leaf error: the leaf itself, or the nested form's `Error<X, Y>`,
/// whose newest failure is its manager's error if that failed, else the inner level's.
trait Newest: Any + Debug {
    fn newest(&self) -> &dyn Debug;
}

impl Newest for BodyErr {
    fn newest(&self) -> &dyn Debug {
        self
    }
}

impl<const K: usize> Newest for MErr<K> {
    fn newest(&self) -> &dyn Debug {
        self
    }
}

impl<X: Newest, Y: Newest> Newest for Error<X, Y> {
    fn newest(&self) -> &dyn Debug {
        match self {
            Error::Enter(x) | Error::Exit(x) | Error::BodyAndExit { exit: x, .. } => x.newest(),
            Error::Body(y) => y.newest(),
        }
    }
}

/// What type a manager's exit expects its `Failure` to be, and how it finds the leaf in it.
trait Sees: 'static {
    fn leaf(failure: Failure<'_>) -> Result<String, String>;
}

/// In a group, and for the innermost `with` of the nested form: the failure *is* the leaf —
/// the body's error or one of the managers' errors, never a wrapper.
struct Direct;

impl Sees for Direct {
    fn leaf(failure: Failure<'_>) -> Result<String, String> {
        fn as_leaf<E: Debug + 'static>(failure: &Failure<'_>) -> Option<String> {
            failure.downcast_ref::<E>().map(|e| format!("{e:?}"))
        }
        as_leaf::<BodyErr>(&failure)
            .or_else(|| as_leaf::<MErr<0>>(&failure))
            .or_else(|| as_leaf::<MErr<1>>(&failure))
            .or_else(|| as_leaf::<MErr<2>>(&failure))
            .or_else(|| as_leaf::<MErr<3>>(&failure))
            .ok_or_else(|| format!("exit saw a failure that is not a leaf error: {failure:?}"))
    }
}

/// In the nested form, the managers outside the innermost one see the inner `with`'s error.
impl<X: Newest, Y: Newest> Sees for Error<X, Y> {
    fn leaf(failure: Failure<'_>) -> Result<String, String> {
        failure
            .downcast_ref::<Self>()
            .map(|e| format!("{:?}", e.newest()))
            .ok_or_else(|| format!("exit expected a `{}`, saw {failure:?}", type_name::<Self>()))
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a manager with named, poll-based futures, and a body future
// ---------------------------------------------------------------------------------------------

/// Drives one phase through its plan.
struct Step {
    shared: Arc<Shared>,
    who: Who,
    phase: Phase,
    plan: Plan,
    left: u8,
    finished: bool,
}

impl Step {
    fn new(shared: &Arc<Shared>, who: Who, phase: Phase, plan: Plan) -> Self {
        Step {
            shared: shared.clone(),
            who,
            phase,
            plan,
            left: plan.pendings,
            finished: false,
        }
    }

    /// `Pending` (after waking) while planned `Pending`s are left, then `Ready`.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished {
            self.shared.violation(format!(
                "{:?} {:?}: polled after it finished",
                self.who, self.phase
            ));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.left > 0 {
            self.left -= 1;
            self.shared.push(Ev::Pending(self.who, self.phase));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.finished = true;
        Poll::Ready(())
    }
}

/// The manager at position `who`; `K` picks its error type, `S` what its exit expects to see.
struct Mgr<const K: usize, S> {
    shared: Arc<Shared>,
    who: u8,
    plan: MgrPlan,
    _tracked: Tracked,
    _sees: PhantomData<fn() -> S>,
}

fn mgr<const K: usize, S>(shared: &Arc<Shared>, script: &Script, who: usize) -> Mgr<K, S> {
    let who = u8::try_from(who).expect("few managers");
    Mgr {
        shared: shared.clone(),
        who,
        plan: script.managers[usize::from(who)],
        _tracked: Tracked::new(shared, Who::M(who), Thing::Manager),
        _sees: PhantomData,
    }
}

impl<const K: usize, S: Sees> AsyncEnter for Mgr<K, S> {
    type Resource = Res;
    type Error = MErr<K>;
    type Exit = MgrExit<K, S>;
    type Enter = EnterFut<K, S>;

    fn enter(self) -> EnterFut<K, S> {
        self.shared.push(Ev::EnterStart(self.who));
        if self.plan.enter.end == End::MethodPanic {
            self.shared.push(Ev::MethodPanic(self.who, Phase::Enter));
            // `self` (the manager) is dropped as the panic unwinds.
            std::panic::panic_any(MethodBoom {
                who: self.who,
                phase: Phase::Enter,
            });
        }
        EnterFut {
            _tracked: Tracked::new(&self.shared, Who::M(self.who), Thing::EnterFuture),
            step: Step::new(
                &self.shared,
                Who::M(self.who),
                Phase::Enter,
                self.plan.enter,
            ),
            who: self.who,
            exit: self.plan.exit,
            _sees: PhantomData,
        }
    }
}

struct EnterFut<const K: usize, S> {
    _tracked: Tracked,
    step: Step,
    who: u8,
    exit: Plan,
    _sees: PhantomData<fn() -> S>,
}

impl<const K: usize, S: Sees> Future for EnterFut<K, S> {
    type Output = Result<(Res, MgrExit<K, S>), MErr<K>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.step.poll(cx));
        let ok = this.step.plan.end == End::Ok;
        let shared = &this.step.shared;
        shared.push(Ev::EnterEnd(this.who, ok));
        let who = Who::M(this.who);
        Poll::Ready(if ok {
            Ok((
                Res {
                    who: this.who,
                    touched: 0,
                    _tracked: Tracked::new(shared, who, Thing::Resource),
                },
                MgrExit {
                    shared: shared.clone(),
                    who: this.who,
                    plan: this.exit,
                    _tracked: Tracked::new(shared, who, Thing::ExitHandle),
                    _sees: PhantomData,
                },
            ))
        } else {
            Err(MErr {
                who: this.who,
                phase: Phase::Enter,
                tracked: Tracked::new(shared, who, Thing::MgrError),
            })
        })
    }
}

/// The resource: knows its position, counts the body's polls.
struct Res {
    who: u8,
    touched: u32,
    _tracked: Tracked,
}

struct MgrExit<const K: usize, S> {
    shared: Arc<Shared>,
    who: u8,
    plan: Plan,
    _tracked: Tracked,
    _sees: PhantomData<fn() -> S>,
}

impl<const K: usize, S: Sees> AsyncExit<Res> for MgrExit<K, S> {
    type Error = MErr<K>;
    type Future<'o> = ExitFut<K>;

    fn exit(self, resource: Res, outcome: Outcome<'_>) -> ExitFut<K> {
        let seen = match outcome {
            Outcome::Success => Seen::Success,
            Outcome::Panicked => Seen::Panicked,
            Outcome::Cancelled => Seen::Cancelled,
            Outcome::Failure(failure) => match S::leaf(failure) {
                Ok(leaf) => Seen::Failure(leaf),
                Err(problem) => {
                    self.shared
                        .violation(format!("manager {}: {problem}", self.who));
                    Seen::Failure(format!("{failure:?}"))
                }
            },
            other => {
                self.shared
                    .violation(format!("manager {}: unknown outcome {other:?}", self.who));
                Seen::Success
            }
        };
        if resource.who != self.who {
            self.shared.violation(format!(
                "exit of manager {} got the resource of {}",
                self.who, resource.who
            ));
        }
        self.shared
            .push(Ev::ExitStart(self.who, seen, resource.touched));
        if self.plan.end == End::MethodPanic {
            let (shared, who) = (self.shared.clone(), self.who);
            shared.push(Ev::MethodPanic(who, Phase::Exit));
            // What was moved in goes with the panic: dropped here, in a fixed order.
            drop(resource);
            drop(self);
            std::panic::panic_any(MethodBoom {
                who,
                phase: Phase::Exit,
            });
        }
        ExitFut {
            _tracked: Tracked::new(&self.shared, Who::M(self.who), Thing::ExitFuture),
            step: Step::new(&self.shared, Who::M(self.who), Phase::Exit, self.plan),
            who: self.who,
            resource: Some(resource),
        }
    }

    fn cancel(self, resource: Res) {
        if resource.who != self.who {
            self.shared.violation(format!(
                "cancel of manager {} got the resource of {}",
                self.who, resource.who
            ));
        }
        self.shared.push(Ev::Cancel(self.who, resource.touched));
        drop(resource);
    }
}

/// The exit future: owns the resource until it finishes. Dropped early, it logs its own drop,
/// then the resource's.
struct ExitFut<const K: usize> {
    _tracked: Tracked,
    step: Step,
    who: u8,
    resource: Option<Res>,
}

impl<const K: usize> Future for ExitFut<K> {
    type Output = Result<(), MErr<K>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.step.poll(cx));
        this.resource = None;
        let ok = this.step.plan.end == End::Ok;
        let shared = &this.step.shared;
        shared.push(Ev::ExitEnd(this.who, ok));
        Poll::Ready(if ok {
            Ok(())
        } else {
            Err(MErr {
                who: this.who,
                phase: Phase::Exit,
                tracked: Tracked::new(shared, Who::M(this.who), Thing::MgrError),
            })
        })
    }
}

/// The body future, written by hand: borrows every resource (left to right), touches each on
/// every poll and reads each in its `Drop` (so a dangling borrow is undefined behaviour that
/// Miri reports).
struct BodyFut<'r> {
    resources: Vec<&'r mut Res>,
    step: Step,
    _tracked: Tracked,
}

fn body<'r>(shared: &Arc<Shared>, plan: Plan, resources: Vec<&'r mut Res>) -> BodyFut<'r> {
    shared.push(Ev::BodyStart);
    BodyFut {
        resources,
        step: Step::new(shared, Who::Body, Phase::Body, plan),
        _tracked: Tracked::new(shared, Who::Body, Thing::BodyFuture),
    }
}

impl Future for BodyFut<'_> {
    type Output = Result<Val, BodyErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for resource in &mut this.resources {
            resource.touched += 1;
        }
        ready!(this.step.poll(cx));
        let end = this.step.plan.end;
        let shared = &this.step.shared;
        shared.push(Ev::BodyEnd(end));
        Poll::Ready(match end {
            End::Ok => Ok(Val(Tracked::new(shared, Who::Body, Thing::Value))),
            End::Err => Err(BodyErr(Tracked::new(shared, Who::Body, Thing::BodyError))),
            End::Panic => std::panic::panic_any(Boom),
            End::MethodPanic => unreachable!("a body has no method to panic in"),
        })
    }
}

impl Drop for BodyFut<'_> {
    fn drop(&mut self) {
        for (i, resource) in self.resources.iter().enumerate() {
            if usize::from(resource.who) != i {
                self.step.shared.violation(format!(
                    "the body's resource {i} belongs to manager {}",
                    resource.who
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs, described alike for both forms
// ---------------------------------------------------------------------------------------------

/// An output, described: the failures in the order they happened (position, phase), whether
/// the body failed. `Bad` if the error value is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Out {
    Value,
    Failed {
        faults: Vec<(u8, Phase)>,
        body: bool,
    },
    Bad(String),
}

fn describe_value(value: &Val) -> Out {
    if value.0.thing == Thing::Value {
        Out::Value
    } else {
        Out::Bad(format!("the value is {:?}", value.0))
    }
}

/// One error for everything, to check `flatten`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flat {
    Body,
    Mgr(u8, Phase),
}

impl<const K: usize> From<MErr<K>> for Flat {
    fn from(e: MErr<K>) -> Self {
        Flat::Mgr(e.who, e.phase)
    }
}

impl From<BodyErr> for Flat {
    fn from(_: BodyErr) -> Self {
        Flat::Body
    }
}

/// What `flatten` must return: the body's error if it failed, else the first failure.
fn expected_flat(faults: &[(u8, Phase)], body: bool) -> Option<Flat> {
    if body {
        return Some(Flat::Body);
    }
    faults.first().map(|&(who, phase)| Flat::Mgr(who, phase))
}

fn check_merr<const K: usize>(x: &MErr<K>, who: u8, phase: Phase) -> Result<(), String> {
    if x.who == who && x.phase == phase && x.tracked.thing == Thing::MgrError {
        Ok(())
    } else {
        Err(format!(
            "expected manager {who}'s {phase:?} error, got {x:?}"
        ))
    }
}

/// `(position, phase)` of a group fault's error.
fn merr_of(failure: Failure<'_>) -> Option<(u8, Phase)> {
    fn get<const K: usize>(failure: &Failure<'_>) -> Option<(u8, Phase)> {
        failure.downcast_ref::<MErr<K>>().map(|x| (x.who, x.phase))
    }
    get::<0>(&failure)
        .or_else(|| get::<1>(&failure))
        .or_else(|| get::<2>(&failure))
        .or_else(|| get::<3>(&failure))
}

type GroupOutput<S> = Result<Val, Error<GroupError<S>, BodyErr>>;

/// Describes a group's output, checking that its parts agree.
fn summarize_group<S: FaultList + Faults<Flat>>(output: GroupOutput<S>) -> Out {
    let error = match output {
        Ok(value) => return describe_value(&value),
        Err(error) => error,
    };
    let (group, body, variant) = match &error {
        Error::Enter(group) => (Some(group), false, "Enter"),
        Error::Exit(group) => (Some(group), false, "Exit"),
        Error::Body(_) => (None, true, "Body"),
        Error::BodyAndExit { exit, .. } => (Some(exit), true, "BodyAndExit"),
    };
    if let Some(e) = error.body() {
        if e.0.thing != Thing::BodyError {
            return Out::Bad(format!("the body's error is {:?}", e.0));
        }
    }
    let mut faults = Vec::new();
    if let Some(group) = group {
        for (i, fault) in group.iter() {
            let phase = if fault.is_enter() {
                Phase::Enter
            } else {
                Phase::Exit
            };
            match merr_of(*fault.inner()) {
                Some((who, p)) if usize::from(who) == i && p == phase => {}
                other => {
                    return Out::Bad(format!(
                        "position {i} holds a {phase:?} fault with the error {other:?}"
                    ));
                }
            }
            faults.push((u8::try_from(i).expect("few managers"), phase));
        }
        let first = group.first().map(|(i, f)| (i, f.is_enter()));
        let expected = faults
            .first()
            .map(|&(i, p)| (usize::from(i), p == Phase::Enter));
        if first != expected {
            return Out::Bad(format!("`first` is {first:?}, `iter` starts {expected:?}"));
        }
        if faults.is_empty() {
            return Out::Bad(format!("`{variant}` with an empty `GroupError`"));
        }
        let enters = faults.iter().filter(|(_, p)| *p == Phase::Enter).count();
        let enter_first = faults[0].1 == Phase::Enter;
        if enters > 1 || (enters == 1 && !enter_first) {
            return Out::Bad(format!("enter faults not alone and rightmost: {faults:?}"));
        }
        if (variant == "Enter") != (enters == 1) {
            return Out::Bad(format!("`{variant}` with the faults {faults:?}"));
        }
    }
    let flat = expected_flat(&faults, body);
    let flattened = error.collapse_group::<Flat>();
    if Some(flattened) != flat {
        return Out::Bad(format!("`flatten` gave {flattened:?}, expected {flat:?}"));
    }
    Out::Failed { faults, body }
}

/// Walks the nested form's error, innermost level first.
trait Describe {
    fn describe(
        &self,
        depth: u8,
        faults: &mut Vec<(u8, Phase)>,
        body: &mut bool,
    ) -> Result<(), String>;
}

impl Describe for BodyErr {
    fn describe(&self, _: u8, _: &mut Vec<(u8, Phase)>, body: &mut bool) -> Result<(), String> {
        if self.0.thing != Thing::BodyError {
            return Err(format!("the body's error is {:?}", self.0));
        }
        *body = true;
        Ok(())
    }
}

impl<const K: usize, Y: Describe> Describe for Error<MErr<K>, Y> {
    fn describe(
        &self,
        depth: u8,
        faults: &mut Vec<(u8, Phase)>,
        body: &mut bool,
    ) -> Result<(), String> {
        match self {
            Error::Enter(x) => {
                check_merr(x, depth, Phase::Enter)?;
                faults.push((depth, Phase::Enter));
            }
            Error::Exit(x) => {
                check_merr(x, depth, Phase::Exit)?;
                faults.push((depth, Phase::Exit));
            }
            Error::Body(inner) => inner.describe(depth + 1, faults, body)?,
            Error::BodyAndExit { body: inner, exit } => {
                inner.describe(depth + 1, faults, body)?;
                check_merr(exit, depth, Phase::Exit)?;
                faults.push((depth, Phase::Exit));
            }
        }
        Ok(())
    }
}

fn summarize_nested<E: Describe>(output: Result<Val, E>) -> Out {
    match output {
        Ok(value) => describe_value(&value),
        Err(error) => {
            let (mut faults, mut body) = (Vec::new(), false);
            match error.describe(0, &mut faults, &mut body) {
                Ok(()) => Out::Failed { faults, body },
                Err(problem) => Out::Bad(problem),
            }
        }
    }
}

/// For two levels, also checks `Error::collapse_nested`.
fn summarize_nested2<const K0: usize, const K1: usize>(
    output: Result<Val, Error<MErr<K0>, Error<MErr<K1>, BodyErr>>>,
) -> Out {
    let error = match output {
        Ok(value) => return describe_value(&value),
        Err(error) => error,
    };
    let (mut faults, mut body) = (Vec::new(), false);
    if let Err(problem) = error.describe(0, &mut faults, &mut body) {
        return Out::Bad(problem);
    }
    let flat = expected_flat(&faults, body);
    let flattened = error.collapse_nested::<Flat>();
    if Some(flattened) != flat {
        return Out::Bad(format!(
            "`collapse_nested` gave {flattened:?}, expected {flat:?}"
        ));
    }
    Out::Failed { faults, body }
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Top {
    Ready(Out),
    /// The body's panic escaped.
    Panicked,
    /// The panic of this manager's `enter()` or `exit()` method escaped (its payload).
    MethodPanicked(u8, Phase),
    /// Dropped by the harness before it finished.
    Dropped,
}

#[derive(Debug)]
struct Driven {
    top: Top,
    polls: u32,
    problems: Vec<String>,
}

const MAX_POLLS: u32 = 200;

/// Polls `future` (a fresh counting waker per poll) until it is `Ready`, the body's panic
/// escapes, or `drop_after` polls were made; then drops it.
fn drive<F: Future>(
    future: F,
    drop_after: Option<u32>,
    summarize: impl FnOnce(F::Output) -> Out,
) -> Driven {
    let mut slot = pin!(Some(future));
    let mut summarize = Some(summarize);
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
        let future = slot.as_mut().as_pin_mut().expect("still there");
        let counter = Arc::new(WakeCounter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx)));
        driven.polls += 1;
        match polled {
            Ok(Poll::Ready(output)) => {
                let summarize = summarize.take().expect("once");
                driven.top = Top::Ready(summarize(output));
                break;
            }
            Ok(Poll::Pending) => {
                if counter.0.load(Ordering::SeqCst) == 0 {
                    driven
                        .problems
                        .push(format!("poll {}: Pending without a wake-up", driven.polls));
                    break;
                }
            }
            Err(payload) if payload.is::<Boom>() => {
                driven.top = Top::Panicked;
                break;
            }
            Err(payload) => match payload.downcast::<MethodBoom>() {
                // The future is dropped below, after the caught panic.
                Ok(boom) => {
                    driven.top = Top::MethodPanicked(boom.who, boom.phase);
                    break;
                }
                Err(payload) => resume_unwind(payload),
            },
        }
    }
    slot.set(None);
    driven
}

/// Silences the default panic hook for the planned panics (once per process).
fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Boom>() && !info.payload().is::<MethodBoom>() {
                default(info);
            }
        }));
    });
}

/// One form, run with a fresh log.
struct Run {
    log: Vec<Ev>,
    driven: Driven,
    /// Tracked values not dropped exactly once.
    bad_drops: Vec<(Who, Thing, u32)>,
}

fn run_form(form: impl FnOnce(&Arc<Shared>) -> Driven) -> Run {
    let shared = Shared::new();
    let driven = form(&shared);
    let log = shared.log.lock().unwrap().clone();
    let bad_drops = shared
        .drops
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, n)| *n != 1)
        .copied()
        .collect();
    Run {
        log,
        driven,
        bad_drops,
    }
}

// ---------------------------------------------------------------------------------------------
// The forms
// ---------------------------------------------------------------------------------------------

/// What the exits of the nested form see, from the outside in.
type W<X, Y> = Error<X, Y>;

fn tuple2(sh: &Arc<Shared>, s: &Script) -> Driven {
    let managers = (mgr::<0, Direct>(sh, s, 0), mgr::<1, Direct>(sh, s, 1));
    let plan = s.body;
    let future = with(managers, async |(r0, r1)| {
        body(sh, plan, vec![r0, r1]).await
    });
    drive(future, s.drop_after, summarize_group)
}

fn tuple3(sh: &Arc<Shared>, s: &Script) -> Driven {
    let managers = (
        mgr::<0, Direct>(sh, s, 0),
        mgr::<1, Direct>(sh, s, 1),
        mgr::<2, Direct>(sh, s, 2),
    );
    let plan = s.body;
    let future = with(managers, async |(r0, r1, r2)| {
        body(sh, plan, vec![r0, r1, r2]).await
    });
    drive(future, s.drop_after, summarize_group)
}

fn tuple4(sh: &Arc<Shared>, s: &Script) -> Driven {
    let managers = (
        mgr::<0, Direct>(sh, s, 0),
        mgr::<1, Direct>(sh, s, 1),
        mgr::<2, Direct>(sh, s, 2),
        mgr::<3, Direct>(sh, s, 3),
    );
    let plan = s.body;
    let future = with(managers, async |(r0, r1, r2, r3)| {
        body(sh, plan, vec![r0, r1, r2, r3]).await
    });
    drive(future, s.drop_after, summarize_group)
}

fn array<const N: usize>(sh: &Arc<Shared>, s: &Script) -> Driven {
    let managers: [Mgr<0, Direct>; N] = core::array::from_fn(|i| mgr(sh, s, i));
    let plan = s.body;
    let future = with(managers, async |resources: &mut [Res; N]| {
        body(sh, plan, resources.iter_mut().collect()).await
    });
    drive(future, s.drop_after, summarize_group)
}

fn nested2<const K0: usize, const K1: usize>(
    sh: &Arc<Shared>,
    s: &Script,
    m0: Mgr<K0, W<MErr<K1>, BodyErr>>,
    m1: Mgr<K1, Direct>,
) -> Driven {
    let plan = s.body;
    let future = with(m0, async |r0: &mut Res| {
        with(m1, async |r1: &mut Res| {
            body(sh, plan, vec![&mut *r0, r1]).await
        })
        .await
    });
    drive(future, s.drop_after, summarize_nested2)
}

fn nested3<const K0: usize, const K1: usize, const K2: usize>(
    sh: &Arc<Shared>,
    s: &Script,
    m0: Mgr<K0, W<MErr<K1>, W<MErr<K2>, BodyErr>>>,
    m1: Mgr<K1, W<MErr<K2>, BodyErr>>,
    m2: Mgr<K2, Direct>,
) -> Driven {
    let plan = s.body;
    let future = with(m0, async |r0: &mut Res| {
        with(m1, async |r1: &mut Res| {
            with(m2, async |r2: &mut Res| {
                body(sh, plan, vec![&mut *r0, &mut *r1, r2]).await
            })
            .await
        })
        .await
    });
    drive(future, s.drop_after, summarize_nested)
}

type Seen4<const K1: usize, const K2: usize, const K3: usize> =
    W<MErr<K1>, W<MErr<K2>, W<MErr<K3>, BodyErr>>>;

fn nested4<const K0: usize, const K1: usize, const K2: usize, const K3: usize>(
    sh: &Arc<Shared>,
    s: &Script,
    m0: Mgr<K0, Seen4<K1, K2, K3>>,
    m1: Mgr<K1, W<MErr<K2>, W<MErr<K3>, BodyErr>>>,
    m2: Mgr<K2, W<MErr<K3>, BodyErr>>,
    m3: Mgr<K3, Direct>,
) -> Driven {
    let plan = s.body;
    let future = with(m0, async |r0: &mut Res| {
        with(m1, async |r1: &mut Res| {
            with(m2, async |r2: &mut Res| {
                with(m3, async |r3: &mut Res| {
                    body(sh, plan, vec![&mut *r0, &mut *r1, &mut *r2, r3]).await
                })
                .await
            })
            .await
        })
        .await
    });
    drive(future, s.drop_after, summarize_nested)
}

/// Runs the script as the group.
fn run_group(kind: Kind, s: &Script) -> Run {
    match (kind, s.managers.len()) {
        (Kind::Tuple, 2) => run_form(|sh| tuple2(sh, s)),
        (Kind::Tuple, 3) => run_form(|sh| tuple3(sh, s)),
        (Kind::Tuple, 4) => run_form(|sh| tuple4(sh, s)),
        (Kind::Array, 2) => run_form(|sh| array::<2>(sh, s)),
        (Kind::Array, 3) => run_form(|sh| array::<3>(sh, s)),
        (Kind::Array, 4) => run_form(|sh| array::<4>(sh, s)),
        (_, n) => unreachable!("no group of {n} managers"),
    }
}

/// Runs the script as the nested form, with managers of the same types as the group's.
fn run_nested(kind: Kind, s: &Script) -> Run {
    run_form(|sh| {
        macro_rules! m {
            ($i:literal) => {
                mgr(sh, s, $i)
            };
        }
        match (kind, s.managers.len()) {
            (Kind::Tuple, 2) => nested2::<0, 1>(sh, s, m!(0), m!(1)),
            (Kind::Tuple, 3) => nested3::<0, 1, 2>(sh, s, m!(0), m!(1), m!(2)),
            (Kind::Tuple, 4) => nested4::<0, 1, 2, 3>(sh, s, m!(0), m!(1), m!(2), m!(3)),
            (Kind::Array, 2) => nested2::<0, 0>(sh, s, m!(0), m!(1)),
            (Kind::Array, 3) => nested3::<0, 0, 0>(sh, s, m!(0), m!(1), m!(2)),
            (Kind::Array, 4) => nested4::<0, 0, 0, 0>(sh, s, m!(0), m!(1), m!(2), m!(3)),
            (_, n) => unreachable!("no nesting of {n} managers"),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Model: the nested form's rules, executed directly
// ---------------------------------------------------------------------------------------------

/// How a level ended, as the level outside it sees it.
enum Flow {
    Ok,
    /// The newest failure, as the `{:?}` of its leaf error.
    Fail(String),
    /// The body panicked. The panic resumes after the last exit, and every exit sees it,
    /// whatever the exits inside returned: in the nested form the inner `with` resumes the
    /// panic after its exit, dropping that exit's error, and the outer `with` catches a panic
    /// from its body. (An exit that, say, poisons a lock when the body panicked learns of the
    /// panic whatever the exits inside it returned.)
    Panic,
}

/// Where the model stops before the end.
enum Stop {
    /// The harness drops the outer future here.
    Dropped,
    /// This manager's `enter()` or `exit()` method panics: the panic escapes the poll, then
    /// the harness drops the outer future, which cancels the others as a drop would.
    Panic(u8, Phase),
}

struct Model<'s> {
    script: &'s Script,
    distinct: bool,
    log: Vec<Ev>,
    /// The number of the current poll of the outer future.
    tick: u32,
    /// How often the body was polled.
    touched: u32,
    /// The failures, in the order they happened.
    faults: Vec<(u8, Phase)>,
    body_failed: bool,
}

impl Model<'_> {
    /// The expected log, outcome and number of polls.
    fn run(script: &Script, distinct: bool) -> (Vec<Ev>, Top, u32) {
        let mut model = Model {
            script,
            distinct,
            log: Vec::new(),
            tick: 1,
            touched: 0,
            faults: Vec::new(),
            body_failed: false,
        };
        if script.drop_after == Some(0) {
            return (model.log, Top::Dropped, 0);
        }
        let top = match model.level(0) {
            Err(Stop::Dropped) => Top::Dropped,
            Err(Stop::Panic(who, phase)) => Top::MethodPanicked(who, phase),
            Ok(Flow::Panic) => Top::Panicked,
            Ok(Flow::Ok) => Top::Ready(Out::Value),
            Ok(Flow::Fail(_)) => Top::Ready(Out::Failed {
                faults: model.faults.clone(),
                body: model.body_failed,
            }),
        };
        let polls = match top {
            Top::Dropped => script.drop_after.expect("dropped early"),
            _ => model.tick,
        };
        (model.log, top, polls)
    }

    fn push(&mut self, ev: Ev) {
        self.log.push(ev);
    }

    /// `n` `Pending`s, each ending a poll of the outer future, which may be the last.
    fn pend(&mut self, who: Who, phase: Phase, n: u8) -> Result<(), Stop> {
        for _ in 0..n {
            if phase == Phase::Body {
                self.touched += 1;
            }
            self.push(Ev::Pending(who, phase));
            if Some(self.tick) == self.script.drop_after {
                return Err(Stop::Dropped);
            }
            self.tick += 1;
        }
        Ok(())
    }

    /// Manager `i`, with everything inside it.
    fn level(&mut self, i: usize) -> Result<Flow, Stop> {
        let plan = self.script.managers[i];
        let who = u8::try_from(i).expect("few managers");
        let m = Who::M(who);

        self.push(Ev::EnterStart(who));
        if plan.enter.end == End::MethodPanic {
            // Nothing was entered: nothing of this manager runs after its panic.
            self.push(Ev::MethodPanic(who, Phase::Enter));
            return Err(Stop::Panic(who, Phase::Enter));
        }
        if let Err(stop) = self.pend(m, Phase::Enter, plan.enter.pendings) {
            self.push(Ev::Dropped(m, Thing::EnterFuture));
            return Err(stop);
        }
        let entered = plan.enter.end == End::Ok;
        self.push(Ev::EnterEnd(who, entered));
        self.push(Ev::Dropped(m, Thing::EnterFuture));
        if !entered {
            self.faults.push((who, Phase::Enter));
            return Ok(Flow::Fail(leaf_name(self.distinct, who, Phase::Enter)));
        }

        let inside = if i + 1 < self.script.managers.len() {
            self.level(i + 1)
        } else {
            self.body()
        };
        let flow = match inside {
            Ok(flow) => flow,
            Err(stop) => {
                // Everything inside is gone (its running future dropped, its managers
                // cancelled; or it panicked in `enter()`/`exit()` and was dropped after the
                // panic): this manager is cancelled now.
                self.push(Ev::Cancel(who, self.touched));
                self.push(Ev::Dropped(m, Thing::Resource));
                self.push(Ev::Dropped(m, Thing::ExitHandle));
                return Err(stop);
            }
        };

        let seen = match &flow {
            Flow::Ok => Seen::Success,
            Flow::Fail(leaf) => Seen::Failure(leaf.clone()),
            Flow::Panic => Seen::Panicked,
        };
        self.push(Ev::ExitStart(who, seen, self.touched));
        if plan.exit.end == End::MethodPanic {
            // The resource went into `exit()`: neither its exit completes nor its cancel runs.
            self.push(Ev::MethodPanic(who, Phase::Exit));
            self.push(Ev::Dropped(m, Thing::Resource));
            self.push(Ev::Dropped(m, Thing::ExitHandle));
            return Err(Stop::Panic(who, Phase::Exit));
        }
        self.push(Ev::Dropped(m, Thing::ExitHandle));
        if let Err(stop) = self.pend(m, Phase::Exit, plan.exit.pendings) {
            self.push(Ev::Dropped(m, Thing::ExitFuture));
            self.push(Ev::Dropped(m, Thing::Resource));
            return Err(stop);
        }
        let exited = plan.exit.end == End::Ok;
        self.push(Ev::Dropped(m, Thing::Resource));
        self.push(Ev::ExitEnd(who, exited));
        self.push(Ev::Dropped(m, Thing::ExitFuture));
        if !exited {
            self.faults.push((who, Phase::Exit));
        }
        Ok(match flow {
            Flow::Panic => Flow::Panic,
            _ if !exited => Flow::Fail(leaf_name(self.distinct, who, Phase::Exit)),
            flow => flow,
        })
    }

    fn body(&mut self) -> Result<Flow, Stop> {
        let plan = self.script.body;
        self.push(Ev::BodyStart);
        if let Err(stop) = self.pend(Who::Body, Phase::Body, plan.pendings) {
            self.push(Ev::Dropped(Who::Body, Thing::BodyFuture));
            return Err(stop);
        }
        self.touched += 1;
        self.push(Ev::BodyEnd(plan.end));
        self.push(Ev::Dropped(Who::Body, Thing::BodyFuture));
        Ok(match plan.end {
            End::Ok => Flow::Ok,
            End::Err => {
                self.body_failed = true;
                Flow::Fail(BODY_ERR.into())
            }
            End::Panic => Flow::Panic,
            End::MethodPanic => unreachable!("a body has no method to panic in"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// What one manager did, as [`invariants`] reads it from the log.
#[derive(Clone, Copy, Default)]
struct Life {
    entered: bool,
    enter_dropped: bool,
    exits: usize,
    cancels: usize,
    resource_drops: usize,
}

/// The rules, read from one log alone (independently of the model), in one pass.
fn invariants(log: &[Ev], n: usize, top: &Top, distinct: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut lives = [Life::default(); 4];
    let mut starts = 0;
    let mut body_started = false;
    let mut body_dropped = false;
    let mut last_exit: Option<u8> = None;
    let mut last_cancel: Option<u8> = None;
    // What the next exit must see.
    let mut newest: Option<String> = None;
    let mut panicked = false;
    // The manager whose `enter()` or `exit()` method panicked, and in which.
    let mut method_panic: Option<(u8, Phase)> = None;

    for (at, ev) in log.iter().enumerate() {
        // After the first cancel, or after a method's panic (which escapes the poll; then
        // the harness drops the future), only cancels and the drops of what they release.
        if (last_cancel.is_some() || method_panic.is_some())
            && !matches!(
                ev,
                Ev::Cancel(..) | Ev::Dropped(_, Thing::Resource | Thing::ExitHandle)
            )
        {
            problems.push(format!(
                "{ev:?} (event {at}) after the first cancel or a method's panic"
            ));
        }
        match ev {
            // Enter: left to right, once each, each after the previous one entered and its
            // future was dropped.
            Ev::EnterStart(i) => {
                let i = usize::from(*i);
                if i != starts {
                    problems.push(format!("enter of manager {i} started as number {starts}"));
                } else if i > 0 && !(lives[i - 1].entered && lives[i - 1].enter_dropped) {
                    problems.push(format!(
                        "manager {i} entered before manager {} had entered",
                        i - 1
                    ));
                }
                starts += 1;
            }
            Ev::EnterEnd(i, ok) => {
                lives[usize::from(*i)].entered = *ok;
                if !ok {
                    newest = Some(leaf_name(distinct, *i, Phase::Enter));
                }
            }
            Ev::Dropped(Who::M(i), Thing::EnterFuture) => {
                lives[usize::from(*i)].enter_dropped = true;
            }
            // The body: after every enter; its future dropped before any exit or cancel.
            Ev::BodyStart => {
                body_started = true;
                if lives[..n]
                    .iter()
                    .any(|life| !(life.entered && life.enter_dropped))
                {
                    problems.push("the body started before every manager entered".into());
                }
            }
            Ev::BodyEnd(End::Err) => newest = Some(BODY_ERR.into()),
            Ev::BodyEnd(End::Panic) => panicked = true,
            Ev::Dropped(Who::Body, Thing::BodyFuture) => body_dropped = true,
            // Exits right to left, each seeing the newest failure, else the body's outcome;
            // after a panic, `Panicked` (the nested form resumes the panic over any exit
            // error: see `Flow::Panic`).
            Ev::ExitStart(i, seen, _) => {
                if last_exit.is_some_and(|last| *i >= last) {
                    problems.push(format!("exit of {i} after the exit of {last_exit:?}"));
                }
                last_exit = Some(*i);
                if body_started && !body_dropped {
                    problems.push(format!("exit of {i} before the body future was dropped"));
                }
                let life = &mut lives[usize::from(*i)];
                if !life.entered {
                    problems.push(format!("exit of {i}, which did not enter"));
                }
                life.exits += 1;
                let expected = match (&newest, panicked) {
                    (_, true) => Seen::Panicked,
                    (Some(leaf), false) => Seen::Failure(leaf.clone()),
                    (None, false) => Seen::Success,
                };
                if *seen != expected {
                    problems.push(format!(
                        "manager {i}'s exit saw {seen:?}, expected {expected:?}"
                    ));
                }
            }
            Ev::ExitEnd(i, false) => newest = Some(leaf_name(distinct, *i, Phase::Exit)),
            // Cancels right to left, after the running phase's future was dropped (nothing
            // but cancels after the first one: checked above).
            Ev::Cancel(i, _) => {
                if last_cancel.is_some_and(|last| *i >= last) {
                    problems.push(format!("cancel of {i} after the cancel of {last_cancel:?}"));
                }
                last_cancel = Some(*i);
                if body_started && !body_dropped {
                    problems.push(format!("cancel of {i} before the body future was dropped"));
                }
                let life = &mut lives[usize::from(*i)];
                if !life.entered {
                    problems.push(format!("cancel of {i}, which did not enter"));
                }
                life.cancels += 1;
            }
            Ev::Dropped(Who::M(i), Thing::Resource) => {
                let life = &mut lives[usize::from(*i)];
                if life.exits + life.cancels == 0 {
                    problems.push(format!("resource of {i} dropped before its exit or cancel"));
                }
                life.resource_drops += 1;
            }
            Ev::MethodPanic(i, phase) => {
                if method_panic.is_some() {
                    problems.push(format!("a second method panic: {ev:?}"));
                }
                method_panic = Some((*i, *phase));
                let life = &lives[usize::from(*i)];
                let started = match phase {
                    // In `enter()`: nothing of it was entered.
                    Phase::Enter => usize::from(*i) + 1 == starts && !life.entered,
                    // In `exit()`: right after its `ExitStart`.
                    Phase::Exit | Phase::Body => {
                        let previous = at.checked_sub(1).and_then(|k| log.get(k));
                        life.exits == 1 && matches!(previous, Some(Ev::ExitStart(j, ..)) if j == i)
                    }
                };
                if !started {
                    problems.push(format!("{ev:?} (event {at}) outside its method"));
                }
            }
            Ev::Violation(what) => problems.push(what.clone()),
            _ => {}
        }
        // The panicking member itself: neither cancelled nor ended afterwards.
        if let (Some((p, _)), Ev::Cancel(i, _) | Ev::EnterEnd(i, _) | Ev::ExitEnd(i, _)) =
            (method_panic, ev)
        {
            if *i == p {
                problems.push(format!(
                    "{ev:?} (event {at}) after manager {p}'s method panicked"
                ));
            }
        }
    }
    // The payload that escaped is the one thrown, by the manager that panicked.
    match (method_panic, top) {
        (Some((i, phase)), Top::MethodPanicked(j, q)) if (i, phase) == (*j, *q) => {}
        (None, Top::MethodPanicked(..)) | (Some(_), _) => problems.push(format!(
            "method panic {method_panic:?} in the log, but the outcome is {top:?}"
        )),
        (None, _) => {}
    }
    // After a method's panic the future is dropped: as far as cancels go, that is an early drop.
    let dropped = matches!(top, Top::Dropped | Top::MethodPanicked(..));

    // Exactly one of exit and cancel per manager that entered, each resource dropped once;
    // cancel only when dropped early.
    for (i, life) in lives[..n].iter().enumerate() {
        let entered = usize::from(life.entered);
        if life.exits + life.cancels != entered || life.resource_drops != entered {
            problems.push(format!(
                "manager {i}: entered {}, exit ran {} times, cancel {} times, resource dropped {} times",
                life.entered, life.exits, life.cancels, life.resource_drops
            ));
        }
        if life.entered && !dropped && life.exits != 1 {
            problems.push(format!("manager {i}: ran to the end without its exit"));
        }
    }
    if last_cancel.is_some() && !dropped {
        problems.push("cancel ran although the future was not dropped early".into());
    }
    problems
}

/// A log, one event a line.
fn lines(log: &[Ev]) -> String {
    log.iter().map(|ev| format!("\n    {ev:?}")).collect()
}

/// Where two logs part.
fn diff(a: &[Ev], b: &[Ev]) -> String {
    let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    format!(
        "first difference at event {at}: {:?} vs {:?}",
        a.get(at),
        b.get(at)
    )
}

/// How much [`check`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Depth {
    /// The group, the nested form, the model and the invariants.
    Full,
    /// The group against the model (same events, output and polls; drops; wake-ups) only.
    /// Under Miri: Miri is there to find undefined behaviour in the group's code, and
    /// everything else is deterministic, so the native run checks it (the nested form, the
    /// invariants) on the very same sweep and on many more generated cases.
    GroupOnly,
}

/// [`Depth::GroupOnly`] under Miri, else [`Depth::Full`].
fn miri_depth() -> Depth {
    if cfg!(miri) {
        Depth::GroupOnly
    } else {
        Depth::Full
    }
}

/// Runs `script` as the group of `kind` and as the nested form, and checks both against each
/// other, the model and the rules.
fn check(kind: Kind, script: &Script, depth: Depth) -> Result<(), String> {
    quiet_planned_panics();
    let n = script.managers.len();
    let (model_log, model_top, model_polls) = Model::run(script, kind.distinct());
    let group = run_group(kind, script);
    // A panic inside a member's `enter()`/`exit()` method has no nested equivalent: there the
    // inner `with` runs inside the outer body, whose panic the outer `with` catches (exiting
    // with `Panicked`), while the group lets it escape and cancels on drop (module docs).
    let nested = match depth {
        Depth::Full if !matches!(model_top, Top::MethodPanicked(..)) => {
            Some(run_nested(kind, script))
        }
        Depth::Full | Depth::GroupOnly => None,
    };
    let context = || {
        let nested = nested.as_ref().map_or(String::new(), |nested| {
            format!("\nnested: {:?}{}", nested.driven, lines(&nested.log))
        });
        format!(
            "\n{kind:?} of {n}, {script:#?}\ngroup: {:?}{}{nested}\nmodel: {model_top:?} after {model_polls} polls{}",
            group.driven,
            lines(&group.log),
            lines(&model_log),
        )
    };
    let runs = [
        Some(("group", &group)),
        nested.as_ref().map(|run| ("nested", run)),
    ];
    let mut problems = Vec::new();
    for (name, run) in runs.into_iter().flatten() {
        for problem in &run.driven.problems {
            problems.push(format!("{name}: harness: {problem}"));
        }
        if !run.bad_drops.is_empty() {
            problems.push(format!(
                "{name}: values not dropped exactly once (who, what, drops): {:?}",
                run.bad_drops
            ));
        }
        if depth == Depth::Full {
            for problem in invariants(&run.log, n, &run.driven.top, kind.distinct()) {
                problems.push(format!("{name}: {problem}"));
            }
        }
    }
    if let Some(nested) = &nested {
        if group.log != nested.log {
            problems.push(format!(
                "the group's events differ from the nested form's: {}",
                diff(&group.log, &nested.log)
            ));
        }
        if group.driven.top != nested.driven.top {
            problems.push(format!(
                "outputs differ: group {:?}, nested {:?}",
                group.driven.top, nested.driven.top
            ));
        }
    }
    for (name, run) in runs.into_iter().flatten() {
        if run.log != model_log {
            problems.push(format!(
                "{name}: events differ from the model: {}",
                diff(&run.log, &model_log)
            ));
        }
        if run.driven.top != model_top {
            problems.push(format!(
                "{name}: output {:?}, the model's {model_top:?}",
                run.driven.top
            ));
        }
        if run.driven.polls != model_polls {
            problems.push(format!(
                "{name}: {} polls, the model's {model_polls}",
                run.driven.polls
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{problems:#?}{}", context()))
    }
}

// ---------------------------------------------------------------------------------------------
// Generators and properties
// ---------------------------------------------------------------------------------------------

/// Cases per property by default.
const CASES: u32 = 2_000;
/// Cases per property under Miri (the sweep covers every path of pairs and triples; these
/// add `Pending` counts up to 3 and groups of 4).
const MIRI_CASES: u32 = 3;

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

/// A manager's phase: succeeds `ok` times out of `ok + 2` and fails twice (with `std`: fails
/// once, and its method panics once).
fn mgr_phase(ok: u32) -> impl Strategy<Value = Plan> {
    (0..=3_u8, mgr_end(ok)).prop_map(|(pendings, end)| Plan { pendings, end })
}

#[cfg(feature = "std")]
fn mgr_end(ok: u32) -> impl Strategy<Value = End> {
    prop_oneof![ok => Just(End::Ok), 1 => Just(End::Err), 1 => Just(End::MethodPanic)]
}

#[cfg(not(feature = "std"))]
fn mgr_end(ok: u32) -> impl Strategy<Value = End> {
    prop_oneof![ok => Just(End::Ok), 2 => Just(End::Err)]
}

#[cfg(feature = "std")]
fn body_end() -> impl Strategy<Value = End> {
    prop_oneof![3 => Just(End::Ok), 2 => Just(End::Err), 1 => Just(End::Panic)]
}

#[cfg(not(feature = "std"))]
fn body_end() -> impl Strategy<Value = End> {
    prop_oneof![3 => Just(End::Ok), 2 => Just(End::Err)]
}

/// `n` managers (enter mostly succeeds, so that later phases are reached often), the body,
/// and where to drop: `None` (run to the end) a quarter of the time, otherwise a number
/// reduced modulo the script's length in polls.
fn script(n: usize) -> impl Strategy<Value = (Vec<MgrPlan>, Plan, Option<u32>)> {
    let manager = (mgr_phase(7), mgr_phase(3)).prop_map(|(enter, exit)| MgrPlan { enter, exit });
    (
        prop::collection::vec(manager, n),
        (0..=3_u8, body_end()).prop_map(|(pendings, end)| Plan { pendings, end }),
        prop_oneof![1 => Just(None), 3 => any::<u32>().prop_map(Some)],
    )
}

fn property(
    kind: Kind,
    (managers, body, drop): (Vec<MgrPlan>, Plan, Option<u32>),
) -> Result<(), TestCaseError> {
    let mut script = Script {
        managers,
        body,
        drop_after: None,
    };
    if let Some(at) = drop {
        let (_, _, polls) = Model::run(&script, kind.distinct());
        script.drop_after = Some(at % (polls + 1));
    }
    check(kind, &script, miri_depth()).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tuple_of_2(s in script(2)) { property(Kind::Tuple, s)?; }

    #[test]
    fn tuple_of_3(s in script(3)) { property(Kind::Tuple, s)?; }

    #[test]
    fn tuple_of_4(s in script(4)) { property(Kind::Tuple, s)?; }

    #[test]
    fn array_of_2(s in script(2)) { property(Kind::Array, s)?; }

    #[test]
    fn array_of_3(s in script(3)) { property(Kind::Array, s)?; }

    #[test]
    fn array_of_4(s in script(4)) { property(Kind::Array, s)?; }
}

/// The phases a script runs, in order, with how each ends: the enters up to the first that
/// fails, the body if all entered, the exits of those that entered, right to left — up to
/// the first method panic, after which nothing but cancels runs.
fn phases(script: &Script) -> Vec<(Who, Phase, End)> {
    let mut phases = Vec::new();
    let mut entered = 0;
    for (i, plan) in script.managers.iter().enumerate() {
        let who = Who::M(u8::try_from(i).expect("few managers"));
        phases.push((who, Phase::Enter, plan.enter.end));
        match plan.enter.end {
            End::Ok => entered += 1,
            End::MethodPanic => return phases,
            _ => break,
        }
    }
    if entered == script.managers.len() {
        phases.push((Who::Body, Phase::Body, script.body.end));
    }
    for (i, plan) in script.managers[..entered].iter().enumerate().rev() {
        let who = Who::M(u8::try_from(i).expect("few managers"));
        phases.push((who, Phase::Exit, plan.exit.end));
        if plan.exit.end == End::MethodPanic {
            break;
        }
    }
    phases
}

/// Every way a pair and a triple can go — no failure; enter failing (with `std`: or its
/// method panicking) at each position; every combination of the entered managers' exits
/// succeeding, failing (with `std`: or their method panicking); and (when all entered) the
/// body succeeding, failing or panicking with each of those — as a tuple and as an array:
/// with one `Pending` per phase, dropped after every poll and run to the end; without
/// `Pending`s, run to the end. Deterministic, so that Miri covers every path.
///
/// With one `Pending` per phase, poll `k` ends phase `k - 1` and leaves phase `k` pending, so
/// a script dropped after `d` polls runs alike for every combination whose first `d - 1`
/// phases end alike: each such run is checked once. A method panic is always the last phase
/// (nothing but cancels follows it) and returns no future to pend: it ends the run in the
/// poll that calls it, so an earlier drop never reaches it, and the runs to the end are
/// checked once each as well (the ends planned after a method panic never run).
#[test]
fn sweep() {
    let std = cfg!(feature = "std");
    let body_ends: &[End] = if std {
        &[End::Ok, End::Err, End::Panic]
    } else {
        &[End::Ok, End::Err]
    };
    let mgr_ends: &[End] = if std {
        &[End::Ok, End::Err, End::MethodPanic]
    } else {
        &[End::Ok, End::Err]
    };
    let mut scripts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in [2, 3] {
        // All enter, or manager `i` is the first whose enter does not succeed.
        let enter_stops = (0..n).flat_map(|i| mgr_ends[1..].iter().map(move |&end| Some((i, end))));
        for enter_stop in [None].into_iter().chain(enter_stops) {
            let entered = enter_stop.map_or(n, |(i, _)| i);
            let bodies = if enter_stop.is_none() {
                body_ends
            } else {
                &[End::Ok]
            };
            // Every combination of the entered managers' exit ends, as a number in base
            // `mgr_ends.len()`, one digit per manager.
            let base = mgr_ends.len();
            for exits in 0..base.pow(entered as u32) {
                let exit_end = |i: usize| mgr_ends[exits / base.pow(i as u32) % base];
                for &body in bodies {
                    for pendings in [1, 0] {
                        let plan = |end: End| Plan { pendings, end };
                        let mut script = Script {
                            managers: (0..n)
                                .map(|i| MgrPlan {
                                    enter: plan(match enter_stop {
                                        Some((at, end)) if at == i => end,
                                        _ => End::Ok,
                                    }),
                                    exit: plan(if i < entered { exit_end(i) } else { End::Ok }),
                                })
                                .collect(),
                            body: Plan {
                                pendings,
                                end: body,
                            },
                            drop_after: None,
                        };
                        let phases = phases(&script);
                        if pendings == 0 {
                            if seen.insert((n, pendings, None, phases.clone())) {
                                scripts.push(script);
                            }
                            continue;
                        }
                        // A method that panics returns no future to pend: the run ends in
                        // the poll that calls it.
                        let method_panics = phases.last().is_some_and(|p| p.2 == End::MethodPanic);
                        let polls = phases.len() + 1 - usize::from(method_panics);
                        for drop_after in (0..polls).map(Some).chain([None]) {
                            let ended = drop_after.map_or(phases.len(), |d| d.saturating_sub(1));
                            let key = (n, pendings, drop_after, phases[..ended].to_vec());
                            if seen.insert(key) {
                                script.drop_after = drop_after.map(|d| d as u32);
                                scripts.push(script.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    let depth = miri_depth();
    for script in &scripts {
        // Under Miri, a run to the end with `Pending`s takes no path that the others do not:
        // every phase's `Pending`-then-`Ready` is in the runs dropped after it (the last
        // one poll short of the end), and every end — the output, each method panic — in
        // the run to the end without `Pending`s. The native run checks it.
        if cfg!(miri) && script.body.pendings > 0 && script.drop_after.is_none() {
            continue;
        }
        for kind in [Kind::Tuple, Kind::Array] {
            if let Err(problem) = check(kind, script, depth) {
                panic!("{problem}");
            }
        }
    }
    // Guards against a sweep that silently shrinks.
    let expected = if std { 216 } else { 102 };
    assert_eq!(scripts.len(), expected, "distinct scripts in the sweep");
}
