//! The dynamic exit stack (SPEC S14, issue 9): `ExitStack` and `SendExitStack`.
//!
//! - **Order**: one LIFO order across the four kinds of entry (`enter_context`, `adopt`, `defer`,
//!   `push_exit`); what each exit sees (explicit close: `Success`, then the newest failure;
//!   `close_with`: the given outcome; as a manager: the body's outcome — a hand-written exit
//!   downcasts the body's error — then the newest failure, also through a stack entered into
//!   a stack); resources of several entries used together, enters polled together.
//! - **Close early, close once, move**: a second close and the end of the scope run nothing;
//!   `is_closed`; `pop_all` runs nothing and the new owner closes everything (the constructor
//!   pattern, whose early return cancels what was opened).
//! - **Enter failure / enter dropped**: nothing registered, earlier entries untouched.
//! - **Nothing lost**: every close failure, in order, beside the body's error; `Display` and
//!   `source`.
//! - **Cancellation**: dropped unclosed, dropped mid-body, dropped mid-close at every poll:
//!   the exit under way has its future dropped, every other entry gets its cancel, newest
//!   first, exactly once, never together with its exit.
//! - **Scale**: 10,000 entries closed, cancelled and cancelled mid-close on a thread with a
//!   256 KiB stack; linear work checked by counting exits, cancels and polls.
//! - **Allocations** per entry (a counting global allocator), printed with `--nocapture`.
//! - **Threads**: `SendExitStack` in a task spawned on a multi-thread tokio runtime; a plain
//!   `ExitStack` with `Rc` entries locally.
//! - **Property test**: random sequences of register / fail / close / `pop_all` / drop / drop
//!   mid-close against a model; a deterministic sweep of the drop points for Miri.
//!
//! The compile-fail side (a lent resource cannot outlive `close`, `pop_all`, a move or a drop
//! of the stack; entries cannot borrow shorter-lived locals; `Send` rules) is in
//! `tests/ui/stack_*.rs`, run by `tests/compile_fail.rs`.
//!
//! Fixtures log lines such as `"A exit Failure(body 7) uses=1"`, `"B cancel uses=0"`,
//! `"F close written=2"`, `"D deferred"`, `"P on_exit Success"`, `"D discarded"`; each entry is
//! named by a `char`.

#![cfg(feature = "alloc")]

use core::cell::{Cell, RefCell};
use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use std::rc::Rc;

// `AsyncEnter` is in scope on purpose: its `enter(self)` must not take the stack's method calls.
use async_with::stack::ScopedSendExitStack;
use async_with::{
    AsyncEnter, AsyncExit, CloseErrors, Error, ExitStack, Outcome, SendExitStack, Status, Value,
    from_fns, null_context, with,
};

mod counting_alloc;

use counting_alloc::{allocations_in, poll_to_end as run};

// ---------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------

fn block_on<F: Future>(fut: F) -> F::Output {
    run(fut).0
}

/// Polls `fut` `n` times; each must return `Pending`.
fn poll_pending<F: Future + ?Sized>(mut fut: Pin<&mut F>, n: usize) {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..n {
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "ready at poll {i} of {n} expected Pendings"
        );
    }
}

/// Returns `Pending` `n` times (waking first), then `Ready(())`.
struct Yield(usize);

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------------------------
// Logged fixtures: one of each kind of entry
// ---------------------------------------------------------------------------------------------

type Log = Rc<RefCell<Vec<String>>>;

fn new_log() -> Log {
    Rc::default()
}

fn note(log: &Log, line: String) {
    log.borrow_mut().push(line);
}

/// Everything logged so far; the log is emptied.
fn take(log: &Log) -> Vec<String> {
    core::mem::take(&mut *log.borrow_mut())
}

/// The error of an entry (enter or exit): which entry failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fail(char);

/// For managers that cannot fail (`null_context`).
impl From<Infallible> for Fail {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.0)
    }
}

impl core::error::Error for Fail {}

/// The error of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BodyError(u32);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body error {}", self.0)
    }
}

impl core::error::Error for BodyError {}

/// How an exit plays out: `pending` times `Pending` (waking first), then `Ok` or `Err`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Plan {
    pending: usize,
    fails: bool,
}

const OK: Plan = Plan {
    pending: 0,
    fails: false,
};

const FAILS: Plan = Plan {
    pending: 0,
    fails: true,
};

const fn pending(n: usize) -> Plan {
    Plan {
        pending: n,
        fails: false,
    }
}

thread_local! {
    /// Resources and adopted values alive right now, on this thread: a leak leaves it above
    /// zero, a double drop below.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn born() {
    LIVE.with(|n| n.set(n.get() + 1));
}

fn died() {
    LIVE.with(|n| n.set(n.get() - 1));
}

/// What an exit saw, as logged: `Success`, `Failure(B)` (entry B's exit failed before),
/// `Failure(body 7)` (the body's error, downcast), `Panicked`, `Cancelled`.
fn describe(outcome: Outcome<'_>) -> String {
    match outcome {
        Outcome::Success => "Success".into(),
        Outcome::Failure(failure) => {
            if let Some(Fail(name)) = failure.downcast_ref::<Fail>() {
                format!("Failure({name})")
            } else if let Some(BodyError(code)) = failure.downcast_ref::<BodyError>() {
                format!("Failure(body {code})")
            } else {
                format!("Failure(? {failure:?})")
            }
        }
        Outcome::Panicked => "Panicked".into(),
        other => format!("{other:?}"),
    }
}

/// An exit future written by hand: `Pending` as planned (logging `"X exit pending"`), then its
/// result. Dropped before it finished, it logs `"X exit dropped"`.
struct Step {
    name: char,
    log: Log,
    plan: Plan,
    done: bool,
}

impl Step {
    fn new(name: char, log: &Log, plan: Plan) -> Self {
        Step {
            name,
            log: log.clone(),
            plan,
            done: false,
        }
    }
}

impl Future for Step {
    type Output = Result<(), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "{} exit polled after Ready", self.name);
        if self.plan.pending > 0 {
            self.plan.pending -= 1;
            note(&self.log, format!("{} exit pending", self.name));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.done = true;
        Poll::Ready(if self.plan.fails {
            Err(Fail(self.name))
        } else {
            Ok(())
        })
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.done {
            note(&self.log, format!("{} exit dropped", self.name));
        }
    }
}

/// A manager written by hand (named, poll-based enter and exit futures): a connection.
struct Conn {
    name: char,
    log: Log,
    enter_pending: usize,
    enter_fails: bool,
    exit: Plan,
}

fn conn(log: &Log, name: char) -> Conn {
    Conn {
        name,
        log: log.clone(),
        enter_pending: 0,
        enter_fails: false,
        exit: OK,
    }
}

impl Conn {
    fn enter_pending(mut self, n: usize) -> Self {
        self.enter_pending = n;
        self
    }

    fn enter_fails(mut self) -> Self {
        self.enter_fails = true;
        self
    }

    fn exit(mut self, plan: Plan) -> Self {
        self.exit = plan;
        self
    }
}

/// The connection's resource; the body counts its uses.
#[derive(Debug)]
struct Handle {
    name: char,
    uses: u32,
}

impl Handle {
    fn new(name: char) -> Self {
        born();
        Handle { name, uses: 0 }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        died();
    }
}

struct ConnEnter {
    name: char,
    log: Log,
    remaining: usize,
    fails: bool,
    /// `None` once ready.
    exit: Option<ConnExit>,
}

impl AsyncEnter for Conn {
    type Resource = Handle;
    type Error = Fail;
    type Exit = ConnExit;
    type Enter = ConnEnter;

    fn enter(self) -> ConnEnter {
        ConnEnter {
            name: self.name,
            log: self.log.clone(),
            remaining: self.enter_pending,
            fails: self.enter_fails,
            exit: Some(ConnExit {
                name: self.name,
                log: self.log,
                plan: self.exit,
            }),
        }
    }
}

impl Future for ConnEnter {
    type Output = Result<(Handle, ConnExit), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.remaining > 0 {
            self.remaining -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let exit = self.exit.take().expect("enter polled after Ready");
        Poll::Ready(if self.fails {
            note(&self.log, format!("{} enter failed", self.name));
            Err(Fail(self.name))
        } else {
            note(&self.log, format!("{} enter", self.name));
            Ok((Handle::new(self.name), exit))
        })
    }
}

impl Drop for ConnEnter {
    fn drop(&mut self) {
        if self.exit.is_some() {
            note(&self.log, format!("{} enter dropped", self.name));
        }
    }
}

/// The connection's exit handle: logs what it saw (downcasting the failure), or its cancel.
struct ConnExit {
    name: char,
    log: Log,
    plan: Plan,
}

impl AsyncExit<Handle> for ConnExit {
    type Error = Fail;
    type Future<'o> = Step;

    fn exit(self, handle: Handle, outcome: Outcome<'_>) -> Step {
        assert_eq!(handle.name, self.name, "exit got another entry's resource");
        note(
            &self.log,
            format!(
                "{} exit {} uses={}",
                self.name,
                describe(outcome),
                handle.uses
            ),
        );
        Step::new(self.name, &self.log, self.plan)
    }

    fn cancel(self, handle: Handle) {
        assert_eq!(
            handle.name, self.name,
            "cancel got another entry's resource"
        );
        note(
            &self.log,
            format!("{} cancel uses={}", self.name, handle.uses),
        );
    }
}

/// A value adopted with an async close: a file that counts what was written.
struct File {
    name: char,
    log: Log,
    written: u32,
    plan: Plan,
    closed: bool,
}

fn file(log: &Log, name: char, plan: Plan) -> File {
    born();
    File {
        name,
        log: log.clone(),
        written: 0,
        plan,
        closed: false,
    }
}

impl File {
    /// The async close given to `adopt`.
    async fn close(mut self) -> Result<(), Fail> {
        self.closed = true;
        note(
            &self.log,
            format!("{} close written={}", self.name, self.written),
        );
        Step::new(self.name, &self.log, self.plan).await
    }
}

impl Drop for File {
    fn drop(&mut self) {
        died();
        if !self.closed {
            note(
                &self.log,
                format!("{} dropped unclosed written={}", self.name, self.written),
            );
        }
    }
}

/// Captured by a deferred closure or an exit handler: logs `"X discarded"` if the closure is
/// dropped without having run.
struct Token {
    name: char,
    log: Log,
    armed: bool,
}

impl Token {
    fn new(log: &Log, name: char) -> Self {
        Token {
            name,
            log: log.clone(),
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.armed {
            note(&self.log, format!("{} discarded", self.name));
        }
    }
}

/// `stack.defer(async || ..)` that logs `"X deferred"`, then exits as planned.
fn defer(stack: &ExitStack<'_, Fail>, log: &Log, name: char, plan: Plan) {
    let token = Token::new(log, name);
    let log = log.clone();
    stack.defer(async move || {
        token.disarm();
        note(&log, format!("{name} deferred"));
        Step::new(name, &log, plan).await
    });
}

/// `stack.push_exit(async |status| ..)` that logs `"X on_exit <status>"`, then exits as planned.
fn push_exit(stack: &ExitStack<'_, Fail>, log: &Log, name: char, plan: Plan) {
    let token = Token::new(log, name);
    let log = log.clone();
    stack.push_exit(async move |outcome: Outcome<'_>| {
        token.disarm();
        note(&log, format!("{name} on_exit {:?}", outcome.status()));
        Step::new(name, &log, plan).await
    });
}

// ---------------------------------------------------------------------------------------------
// A small model of what closing or cancelling logs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Enter,
    Adopt,
    Defer,
    PushExit,
}

const KINDS: [Kind; 4] = [Kind::Enter, Kind::Adopt, Kind::Defer, Kind::PushExit];

/// One registered entry. Every test that uses the model touches each resource once
/// (`uses=1`, `written=1`).
#[derive(Clone, Copy, Debug)]
struct Spec {
    kind: Kind,
    name: char,
    plan: Plan,
}

/// What the first exit of a close sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Success,
    Body(u32),
    Entry(char),
}

impl Seen {
    fn describe(self) -> String {
        match self {
            Seen::Success => "Success".into(),
            Seen::Body(code) => format!("Failure(body {code})"),
            Seen::Entry(name) => format!("Failure({name})"),
        }
    }

    fn status(self) -> Status {
        match self {
            Seen::Success => Status::Success,
            Seen::Body(_) | Seen::Entry(_) => Status::Failure,
        }
    }
}

fn start_line(spec: &Spec, seen: Seen) -> String {
    let name = spec.name;
    match spec.kind {
        Kind::Enter => format!("{name} exit {} uses=1", seen.describe()),
        Kind::Adopt => format!("{name} close written=1"),
        Kind::Defer => format!("{name} deferred"),
        Kind::PushExit => format!("{name} on_exit {:?}", seen.status()),
    }
}

fn cancel_line(spec: &Spec) -> String {
    let name = spec.name;
    match spec.kind {
        Kind::Enter => format!("{name} cancel uses=1"),
        Kind::Adopt => format!("{name} dropped unclosed written=1"),
        Kind::Defer | Kind::PushExit => format!("{name} discarded"),
    }
}

/// Cancelling `entries` (registration order): newest first.
fn model_cancel(entries: &[Spec]) -> Vec<String> {
    entries.iter().rev().map(cancel_line).collect()
}

/// Closing `entries` (registration order), the first exit seeing `first`, the close future
/// dropped after `polls` polls (`None`: polled to the end). Returns the log, and the failures
/// (entry names, in order) if the close finished.
fn model_close(
    entries: &[Spec],
    first: Seen,
    polls: Option<usize>,
) -> (Vec<String>, Option<Vec<char>>) {
    if polls == Some(0) {
        return (model_cancel(entries), None);
    }
    let mut lines = Vec::new();
    let mut failures: Vec<char> = Vec::new();
    let mut used = 1;
    for (i, spec) in entries.iter().enumerate().rev() {
        let seen = failures.last().map_or(first, |&name| Seen::Entry(name));
        lines.push(start_line(spec, seen));
        for _ in 0..spec.plan.pending {
            lines.push(format!("{} exit pending", spec.name));
            if Some(used) == polls {
                lines.push(format!("{} exit dropped", spec.name));
                lines.extend(model_cancel(&entries[..i]));
                return (lines, None);
            }
            used += 1;
        }
        if spec.plan.fails {
            failures.push(spec.name);
        }
    }
    (lines, Some(failures))
}

/// How many polls closing `entries` takes.
fn close_polls(entries: &[Spec]) -> usize {
    1 + entries.iter().map(|s| s.plan.pending).sum::<usize>()
}

/// Registers `spec` on `stack` and touches its resource once.
async fn register(stack: &ExitStack<'_, Fail>, log: &Log, spec: Spec) {
    match spec.kind {
        Kind::Enter => {
            let handle = stack
                .enter_context(conn(log, spec.name).exit(spec.plan))
                .await
                .unwrap();
            handle.uses += 1;
        }
        Kind::Adopt => {
            stack
                .adopt(file(log, spec.name, spec.plan), File::close)
                .written += 1
        }
        Kind::Defer => defer(stack, log, spec.name, spec.plan),
        Kind::PushExit => push_exit(stack, log, spec.name, spec.plan),
    }
}

/// Every entry named in `names` was released exactly once: its exit started, or it was
/// cancelled — never both, never twice.
fn assert_released_once(lines: &[String], names: impl IntoIterator<Item = char>) {
    for name in names {
        let released = lines
            .iter()
            .filter(|line| {
                let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) else {
                    return false;
                };
                [
                    "exit S",
                    "exit F",
                    "exit P",
                    "close ",
                    "deferred",
                    "on_exit ",
                    "cancel ",
                    "dropped unclosed",
                    "discarded",
                ]
                .iter()
                .any(|start| rest.starts_with(start))
            })
            .count();
        assert_eq!(
            released, 1,
            "{name} released {released} times in {lines:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Order and what each exit sees
// ---------------------------------------------------------------------------------------------

#[test]
fn close_runs_all_four_kinds_newest_first() {
    let log = new_log();
    let live_before = live();
    let result = block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        let a = stack.enter_context(conn(&log, 'A')).await.unwrap();
        let f = stack.adopt(file(&log, 'F', OK), File::close);
        defer(&stack, &log, 'D', OK);
        push_exit(&stack, &log, 'P', OK);
        let b = stack.enter_context(conn(&log, 'B')).await.unwrap();
        // Every lent resource is usable after later registrations.
        a.uses += 1;
        f.written += 2;
        b.uses += 3;
        assert_eq!(
            (stack.len(), stack.is_empty(), stack.is_closed()),
            (5, false, false)
        );
        assert_eq!(
            format!("{stack:?}"),
            "ExitStack { entries: 5, closed: false }"
        );
        let result = stack.close().await;
        assert_eq!((stack.len(), stack.is_closed()), (0, true));
        result
    });
    assert_eq!(result, Ok(()));
    assert_eq!(
        take(&log),
        [
            "A enter",
            "B enter",
            "B exit Success uses=3",
            "P on_exit Success",
            "D deferred",
            "F close written=2",
            "A exit Success uses=1",
        ]
    );
    assert_eq!(live(), live_before, "every resource dropped once");
}

#[test]
fn explicit_close_shows_success_then_the_newest_failure() {
    let log = new_log();
    let result = block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        stack.enter_context(conn(&log, 'A')).await.unwrap();
        stack
            .enter_context(conn(&log, 'B').exit(FAILS))
            .await
            .unwrap();
        push_exit(&stack, &log, 'P', OK);
        stack.adopt(file(&log, 'F', FAILS), File::close);
        stack.enter_context(conn(&log, 'C')).await.unwrap();
        push_exit(&stack, &log, 'Q', OK);
        take(&log);
        stack.close().await
    });
    assert_eq!(result.unwrap_err().into_vec(), [Fail('F'), Fail('B')]);
    assert_eq!(
        take(&log),
        [
            "Q on_exit Success",
            "C exit Success uses=0",
            "F close written=0",
            "P on_exit Failure",
            "B exit Failure(F) uses=0",
            "A exit Failure(B) uses=0",
        ]
    );
}

#[test]
fn close_with_shows_the_given_outcome_then_the_newest_failure() {
    let log = new_log();
    let scope_error = BodyError(5);
    let result = block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        stack.enter_context(conn(&log, 'A')).await.unwrap();
        push_exit(&stack, &log, 'P', FAILS);
        stack
            .enter_context(conn(&log, 'B').exit(pending(1)))
            .await
            .unwrap();
        take(&log);
        stack
            .close_with(Outcome::Failure(async_with::Failure::new(&scope_error)))
            .await
    });
    assert_eq!(result.unwrap_err().into_vec(), [Fail('P')]);
    assert_eq!(
        take(&log),
        [
            "B exit Failure(body 5) uses=0",
            "B exit pending",
            "P on_exit Failure",
            "A exit Failure(P) uses=0",
        ]
    );
}

#[test]
fn as_a_manager_exits_see_the_body_error_then_the_newest_failure() {
    let log = new_log();
    let result = block_on(with(
        ExitStack::<Fail>::new(),
        async |stack| -> Result<u32, BodyError> {
            stack.enter_context(conn(&log, 'A')).await.unwrap();
            push_exit(stack, &log, 'P', OK);
            let c = stack
                .enter_context(conn(&log, 'B').exit(FAILS))
                .await
                .unwrap();
            c.uses += 1;
            stack
                .enter_context(conn(&log, 'C').exit(pending(2)))
                .await
                .unwrap();
            push_exit(stack, &log, 'Q', OK);
            Err(BodyError(7))
        },
    ));
    let Err(Error::BodyAndExit { body, exit }) = result else {
        panic!("expected the body's error and the close failure: {result:?}")
    };
    assert_eq!(body, BodyError(7));
    assert_eq!(exit.into_vec(), [Fail('B')]);
    assert_eq!(
        take(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "Q on_exit Failure",
            // The hand-written exit downcasts the body's error, also after suspending.
            "C exit Failure(body 7) uses=0",
            "C exit pending",
            "C exit pending",
            "B exit Failure(body 7) uses=1",
            "P on_exit Failure",
            "A exit Failure(B) uses=0",
        ]
    );
}

#[test]
fn as_a_manager_a_successful_body_shows_success_and_keeps_its_value_unless_an_exit_fails() {
    let log = new_log();
    let result = block_on(with(
        ExitStack::<Fail>::new(),
        async |stack| -> Result<u32, BodyError> {
            stack
                .enter_context(conn(&log, 'A').exit(pending(1)))
                .await
                .unwrap();
            defer(stack, &log, 'D', OK);
            Ok(5)
        },
    ));
    assert_eq!(result, Ok(5));
    assert_eq!(
        take(&log),
        [
            "A enter",
            "D deferred",
            "A exit Success uses=0",
            "A exit pending"
        ]
    );

    let result = block_on(with(ExitStack::<Fail>::new(), async |stack| {
        stack.enter_context(conn(&log, 'A')).await.unwrap();
        defer(stack, &log, 'D', FAILS);
        Value(5)
    }));
    let Err(Error::Exit(errors)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(errors.into_vec(), [Fail('D')]);
    assert_eq!(
        take(&log),
        ["A enter", "D deferred", "A exit Failure(D) uses=0"]
    );
}

#[test]
fn resources_opened_in_a_loop_are_used_together() {
    let log = new_log();
    let result = block_on(with(
        ExitStack::<Fail>::new(),
        async |stack| -> Result<u32, BodyError> {
            let mut conns = Vec::new();
            for name in ['A', 'B', 'C'] {
                conns.push(
                    stack
                        .enter_context(conn(&log, name).enter_pending(1))
                        .await
                        .unwrap(),
                );
            }
            let out = stack.adopt(file(&log, 'F', OK), File::close);
            // All four borrowed at once, used in turn, twice.
            for round in 1..=2 {
                for (i, c) in conns.iter_mut().enumerate() {
                    c.uses += round * (i as u32 + 1);
                    out.written += 1;
                }
            }
            Ok(conns.iter().map(|c| c.uses).sum::<u32>() + out.written)
        },
    ));
    assert_eq!(result, Ok(3 + 6 + 9 + 6));
    assert_eq!(
        take(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "F close written=6",
            "C exit Success uses=9",
            "B exit Success uses=6",
            "A exit Success uses=3",
        ]
    );
}

#[test]
fn a_stack_entered_into_a_stack_shows_the_outer_outcome_to_every_inner_entry() {
    #[derive(Debug, PartialEq)]
    enum AppError {
        Entry(Fail),
        Inner(CloseErrors<Fail>),
    }
    impl From<Fail> for AppError {
        fn from(e: Fail) -> Self {
            AppError::Entry(e)
        }
    }
    impl From<CloseErrors<Fail>> for AppError {
        fn from(e: CloseErrors<Fail>) -> Self {
            AppError::Inner(e)
        }
    }

    let log = new_log();
    let result = block_on(with(
        ExitStack::<AppError>::new(),
        async |outer| -> Result<(), BodyError> {
            outer.enter_context(conn(&log, 'O')).await.unwrap();
            let inner = outer.enter_context(ExitStack::<Fail>::new()).await.unwrap();
            inner
                .enter_context(conn(&log, 'A').exit(FAILS))
                .await
                .unwrap();
            // B suspends: A's exit is created on a later poll and must still see the body's
            // error, which the close has kept lent since the stack's exit began.
            inner
                .enter_context(conn(&log, 'B').exit(pending(1)))
                .await
                .unwrap();
            Err(BodyError(3))
        },
    ));
    let Err(Error::BodyAndExit { body, exit }) = result else {
        panic!("{result:?}")
    };
    assert_eq!(body, BodyError(3));
    let exit = exit.into_vec();
    assert_eq!(exit.len(), 1);
    let AppError::Inner(inner) = &exit[0] else {
        panic!("{exit:?}")
    };
    assert_eq!(inner.iter().collect::<Vec<_>>(), [&Fail('A')]);
    assert_eq!(
        take(&log),
        [
            "O enter",
            "A enter",
            "B enter",
            "B exit Failure(body 3) uses=0",
            "B exit pending",
            "A exit Failure(body 3) uses=0",
            // The outer entry sees the inner stack's failure, an `AppError`: not a `Fail`.
            "O exit Failure(? Inner(CloseErrors { errors: [Fail('A')] })) uses=0",
        ]
    );
}

#[test]
fn entries_with_different_error_types_convert_into_the_stack_error() {
    #[derive(Debug, PartialEq)]
    enum AppError {
        Conn(Fail),
        Text(&'static str),
        Code(u16),
    }
    impl From<Fail> for AppError {
        fn from(e: Fail) -> Self {
            AppError::Conn(e)
        }
    }
    impl From<&'static str> for AppError {
        fn from(e: &'static str) -> Self {
            AppError::Text(e)
        }
    }
    impl From<u16> for AppError {
        fn from(e: u16) -> Self {
            AppError::Code(e)
        }
    }

    let log = new_log();
    let errors = block_on(async {
        let mut stack = ExitStack::<AppError>::new();
        stack
            .enter_context(conn(&log, 'A').exit(FAILS))
            .await
            .unwrap();
        stack.adopt(7_u8, async |n: u8| Err::<(), u16>(u16::from(n) * 100));
        stack.defer(async || Err::<(), _>("flush failed"));
        stack.push_exit(async |_: Outcome<'_>| Err::<(), _>(AppError::Code(1)));
        stack.close().await.unwrap_err()
    });
    assert_eq!(
        errors.into_vec(),
        [
            AppError::Code(1),
            AppError::Text("flush failed"),
            AppError::Code(700),
            AppError::Conn(Fail('A')),
        ]
    );
}

#[cfg(feature = "std")]
#[test]
fn as_a_manager_a_panicking_body_is_shown_to_every_exit_then_resumes() {
    let log = new_log();
    let caught = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        block_on(with(ExitStack::<Fail>::new(), async |stack| {
            stack.enter_context(conn(&log, 'A')).await.unwrap();
            stack
                .enter_context(conn(&log, 'B').exit(FAILS))
                .await
                .unwrap();
            push_exit(stack, &log, 'P', OK);
            if stack.len() == 3 {
                std::panic::panic_any(41_u32);
            }
        }))
    }));
    assert_eq!(caught.unwrap_err().downcast_ref::<u32>(), Some(&41));
    assert_eq!(
        take(&log),
        [
            "A enter",
            "B enter",
            "P on_exit Panicked",
            "B exit Panicked uses=0",
            // B's exit failed, but a panic is under way: A still sees `Panicked` (as in nested
            // `with`s, where the inner one resumes the panic and drops its exit's error).
            "A exit Panicked uses=0",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Close early, close once, move
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_close_and_the_end_of_the_scope_run_nothing() {
    let log = new_log();
    block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        stack.enter_context(conn(&log, 'A')).await.unwrap();
        defer(&stack, &log, 'D', FAILS);
        assert!(!stack.is_closed());
        assert_eq!(stack.close().await.unwrap_err().into_vec(), [Fail('D')]);
        assert!(stack.is_closed() && stack.is_empty());
        assert_eq!(
            take(&log),
            ["A enter", "D deferred", "A exit Failure(D) uses=0"]
        );

        assert_eq!(stack.close().await, Ok(()), "the second close");
        assert!(stack.is_closed());
        // `pop_all` on a closed stack moves nothing and leaves it closed.
        let moved = stack.pop_all();
        assert!(moved.is_empty() && !moved.is_closed() && stack.is_closed());
        drop(moved);
        drop(stack);
        assert_eq!(take(&log), [] as [&str; 0]);
    });
}

#[test]
fn as_a_manager_a_stack_closed_early_in_the_body_is_not_closed_again() {
    let log = new_log();
    let result = block_on(with(
        ExitStack::<Fail>::new(),
        async |stack| -> Result<&'static str, BodyError> {
            stack.enter_context(conn(&log, 'A')).await.unwrap();
            assert_eq!(stack.close().await, Ok(()));
            note(&log, "body after close".into());
            Err(BodyError(1))
        },
    ));
    assert_eq!(result, Err(Error::Body(BodyError(1))));
    assert_eq!(
        take(&log),
        ["A enter", "A exit Success uses=0", "body after close"]
    );
}

#[test]
#[should_panic(expected = "registered an entry on a closed `ExitStack`")]
fn registering_on_a_closed_stack_panics() {
    let mut stack = ExitStack::<Fail>::new();
    block_on(stack.close()).unwrap();
    stack.defer(async || Ok::<(), Fail>(()));
}

#[test]
fn pop_all_moves_everything_without_running_it_and_the_new_owner_closes_it() {
    let log = new_log();
    let live_before = live();
    block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        let a = stack.enter_context(conn(&log, 'A')).await.unwrap();
        a.uses = 1;
        let f = stack.adopt(file(&log, 'F', OK), File::close);
        f.written = 1;
        defer(&stack, &log, 'D', OK);
        push_exit(&stack, &log, 'P', OK);
        take(&log);

        let mut owner = stack.pop_all();
        assert_eq!(take(&log), [] as [&str; 0], "pop_all runs nothing");
        assert_eq!((stack.len(), owner.len()), (0, 4));
        assert!(!stack.is_closed() && !owner.is_closed());

        // The old stack stays open and usable; closing and dropping it touch nothing moved.
        defer(&stack, &log, 'E', OK);
        assert_eq!(stack.close().await, Ok(()));
        drop(stack);
        assert_eq!(take(&log), ["E deferred"]);

        assert_eq!(owner.close().await, Ok(()));
    });
    assert_eq!(
        take(&log),
        [
            "P on_exit Success",
            "D deferred",
            "F close written=1",
            "A exit Success uses=1",
        ]
    );
    assert_eq!(live(), live_before);
}

/// Opens one connection per peer and hands them over only if all opened — the `pop_all`
/// pattern. An early return drops the local stack, which cancels what was opened.
struct Peers {
    conns: ExitStack<'static, Fail>,
}

async fn open_peers(log: &Log, peers: &[(char, bool)]) -> Result<Peers, Fail> {
    let local = ExitStack::<Fail>::new();
    for &(name, fails) in peers {
        let c = if fails {
            conn(log, name).enter_fails()
        } else {
            conn(log, name)
        };
        local.enter_context(c.enter_pending(1)).await?.uses += 1;
    }
    let mut local = local;
    Ok(Peers {
        conns: local.pop_all(),
    })
}

#[test]
fn a_constructor_hands_over_its_resources_only_if_all_opened() {
    let log = new_log();
    let mut peers = block_on(open_peers(
        &log,
        &[('A', false), ('B', false), ('C', false)],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(take(&log), ["A enter", "B enter", "C enter"]);
    assert_eq!(peers.conns.len(), 3);
    assert_eq!(block_on(peers.conns.close()), Ok(()));
    assert_eq!(
        take(&log),
        [
            "C exit Success uses=1",
            "B exit Success uses=1",
            "A exit Success uses=1",
        ]
    );

    let failed = block_on(open_peers(
        &log,
        &[('A', false), ('B', false), ('X', true), ('Y', false)],
    ));
    assert_eq!(failed.err().map(|e| e.to_string()), Some("X failed".into()));
    assert_eq!(
        take(&log),
        [
            "A enter",
            "B enter",
            "X enter failed",
            "B cancel uses=1",
            "A cancel uses=1"
        ]
    );
}

/// The constructor pattern under `with` (as `pop_all`'s documentation shows it): all opened,
/// everything is handed over; one failed, what was opened is closed asynchronously, each exit
/// seeing the failure.
async fn open_under_with(
    log: &Log,
    peers: &[(char, bool)],
) -> Result<ExitStack<'static, Fail>, Error<CloseErrors<Fail>, Fail>> {
    with(
        ExitStack::<Fail>::new(),
        async |stack| -> Result<ExitStack<'static, Fail>, Fail> {
            for &(name, fails) in peers {
                let c = if fails {
                    conn(log, name).enter_fails()
                } else {
                    conn(log, name)
                };
                stack.enter_context(c).await?.uses += 1;
            }
            defer(stack, log, 'D', OK);
            Ok(stack.pop_all())
        },
    )
    .await
}

#[test]
fn as_a_manager_the_body_can_hand_everything_over_with_pop_all() {
    let log = new_log();
    let mut kept = block_on(open_under_with(&log, &[('A', false), ('B', false)])).unwrap();
    assert_eq!(
        take(&log),
        ["A enter", "B enter"],
        "the with's exit closed an empty stack"
    );
    assert_eq!(kept.len(), 3);
    assert_eq!(block_on(kept.close()), Ok(()));
    assert_eq!(
        take(&log),
        [
            "D deferred",
            "B exit Success uses=1",
            "A exit Success uses=1"
        ]
    );

    let failed = block_on(open_under_with(
        &log,
        &[('A', false), ('B', false), ('X', true)],
    ));
    assert_eq!(failed.err(), Some(Error::Body(Fail('X'))));
    assert_eq!(
        take(&log),
        [
            "A enter",
            "B enter",
            "X enter failed",
            // The body's error is a `Fail` too: the exits downcast it.
            "B exit Failure(X) uses=1",
            "A exit Failure(X) uses=1",
        ]
    );
}

#[test]
fn enters_polled_together_register_in_the_order_they_finish() {
    use futures_util::future::{Either, join, select};

    let log = new_log();
    let result = block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        let file = stack.adopt(file(&log, 'F', OK), File::close);
        // Two enters in flight on one `&stack`, each suspending; B finishes first.
        let (a, b) = join(
            stack.enter_context(conn(&log, 'A').enter_pending(2)),
            stack.enter_context(conn(&log, 'B').enter_pending(1)),
        )
        .await;
        let (a, b) = (a.unwrap(), b.unwrap());
        // A race: C wins, D's enter future is dropped mid-way and registers nothing.
        let c = {
            let c = pin!(stack.enter_context(conn(&log, 'C').enter_pending(1)));
            let d = pin!(stack.enter_context(conn(&log, 'D').enter_pending(3)));
            let Either::Left((c, _)) = select(c, d).await else {
                panic!("D won the race")
            };
            c.unwrap()
        };
        assert_eq!(stack.len(), 4);
        file.written += 1;
        a.uses += 1;
        b.uses += 2;
        c.uses += 3;
        stack.close().await
    });
    assert_eq!(result, Ok(()));
    assert_eq!(
        take(&log),
        [
            "B enter",
            "A enter",
            "C enter",
            "D enter dropped",
            "C exit Success uses=3",
            "A exit Success uses=1",
            "B exit Success uses=2",
            "F close written=1",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Enter failures
// ---------------------------------------------------------------------------------------------

#[test]
fn a_failed_enter_registers_nothing_and_earlier_entries_still_close() {
    let log = new_log();
    let result = block_on(async {
        let mut stack = ExitStack::<Fail>::new();
        let a = stack.enter_context(conn(&log, 'A')).await.unwrap();
        let f = stack.adopt(file(&log, 'F', OK), File::close);
        let failed = stack
            .enter_context(conn(&log, 'B').enter_pending(2).enter_fails())
            .await;
        assert_eq!(failed.err(), Some(Fail('B')));
        assert_eq!(stack.len(), 2);
        // The earlier resources are untouched and still lent.
        a.uses += 1;
        f.written += 1;
        stack.enter_context(conn(&log, 'C')).await.unwrap();
        stack.close().await
    });
    assert_eq!(result, Ok(()));
    let lines = take(&log);
    assert_eq!(
        lines,
        [
            "A enter",
            "B enter failed",
            "C enter",
            "C exit Success uses=0",
            "F close written=1",
            "A exit Success uses=1",
        ]
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("B ") && l != "B enter failed")
    );
}

#[test]
fn an_enter_dropped_midway_registers_nothing() {
    let log = new_log();
    let mut stack = ExitStack::<Fail>::new();
    block_on(stack.enter_context(conn(&log, 'A'))).unwrap();

    // Dropped before its first poll: the manager was never entered.
    drop(stack.enter_context(conn(&log, 'X').enter_pending(1)));
    // Dropped while its enter future is pending.
    {
        let mut entering = pin!(stack.enter_context(conn(&log, 'B').enter_pending(3)));
        poll_pending(entering.as_mut(), 2);
    }
    assert_eq!(stack.len(), 1);
    assert_eq!(take(&log), ["A enter", "B enter dropped"]);

    assert_eq!(block_on(stack.close()), Ok(()));
    assert_eq!(take(&log), ["A exit Success uses=0"]);
}

// ---------------------------------------------------------------------------------------------
// 4. Nothing lost
// ---------------------------------------------------------------------------------------------

#[test]
fn every_close_failure_is_kept_in_order_with_the_body_error() {
    let log = new_log();
    let result = block_on(with(
        ExitStack::<Fail>::new(),
        async |stack| -> Result<(), BodyError> {
            stack
                .enter_context(conn(&log, 'A').exit(FAILS))
                .await
                .unwrap();
            stack.adopt(
                file(
                    &log,
                    'F',
                    Plan {
                        pending: 1,
                        fails: true,
                    },
                ),
                File::close,
            );
            defer(stack, &log, 'D', OK);
            push_exit(stack, &log, 'P', FAILS);
            Err(BodyError(9))
        },
    ));
    let error = result.unwrap_err();
    let Error::BodyAndExit { body, exit } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*body, BodyError(9));
    assert_eq!(exit.len(), 3);
    assert!(!exit.is_empty());
    assert_eq!(exit.first(), &Fail('P'));
    assert_eq!(
        exit.iter().copied().collect::<Vec<_>>(),
        [Fail('P'), Fail('F'), Fail('A')]
    );
    assert_eq!(
        exit.into_iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["P failed", "F failed", "A failed"]
    );

    // Display: how many, and the newest; `source`: the first.
    assert_eq!(
        exit.to_string(),
        "3 exits failed while closing the stack; the last one: A failed"
    );
    let source = core::error::Error::source(exit).expect("the first failure");
    assert_eq!(source.to_string(), "P failed");
    assert_eq!(source.downcast_ref::<Fail>(), Some(&Fail('P')));

    // The whole error: the body first, the close failures after it.
    assert_eq!(
        error.to_string(),
        "the body failed, and then exiting the resource failed: \
         3 exits failed while closing the stack; the last one: A failed"
    );
    let source = core::error::Error::source(&error).expect("the body's error");
    assert_eq!(source.downcast_ref::<BodyError>(), Some(&BodyError(9)));

    assert_eq!(
        take(&log),
        [
            "A enter",
            "P on_exit Failure",
            "D deferred",
            "F close written=0",
            "F exit pending",
            "A exit Failure(F) uses=0",
        ]
    );

    let Error::BodyAndExit { exit, .. } = error else {
        unreachable!()
    };
    assert_eq!(exit.clone().collapse::<Fail>(), Fail('P'));
    assert_eq!(exit.into_vec(), [Fail('P'), Fail('F'), Fail('A')]);
}

#[test]
fn a_single_close_failure_displays_without_repeating_itself() {
    let mut stack = ExitStack::<Fail>::new();
    stack.defer(async || Err::<(), _>(Fail('D')));
    stack.defer(async || Ok::<(), Fail>(()));
    let errors = block_on(stack.close()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.to_string(), "an exit failed while closing the stack");
    assert_eq!(
        core::error::Error::source(&errors).map(ToString::to_string),
        Some("D failed".into())
    );
    assert_eq!(errors.collapse::<Fail>(), Fail('D'));
}

// ---------------------------------------------------------------------------------------------
// 5. Cancellation
// ---------------------------------------------------------------------------------------------

fn mixed_specs(plan_of: impl Fn(usize) -> Plan) -> Vec<Spec> {
    ['A', 'F', 'D', 'P', 'B', 'G', 'E', 'Q']
        .into_iter()
        .enumerate()
        .map(|(i, name)| Spec {
            kind: KINDS[i % 4],
            name,
            plan: plan_of(i),
        })
        .collect()
}

#[test]
fn dropped_unclosed_cancels_every_entry_newest_first() {
    let log = new_log();
    let live_before = live();
    let specs = mixed_specs(|_| OK);
    let stack = ExitStack::<Fail>::new();
    for spec in &specs {
        block_on(register(&stack, &log, *spec));
    }
    take(&log);
    drop(stack);
    let lines = take(&log);
    assert_eq!(
        lines,
        [
            "Q discarded",
            "E discarded",
            "G dropped unclosed written=1",
            "B cancel uses=1",
            "P discarded",
            "D discarded",
            "F dropped unclosed written=1",
            "A cancel uses=1",
        ]
    );
    assert_eq!(lines, model_cancel(&specs));
    assert_released_once(&lines, specs.iter().map(|s| s.name));
    assert_eq!(live(), live_before);
}

#[test]
fn a_close_dropped_at_every_poll_cancels_the_rest_exactly_once() {
    // Mixed kinds, each exit suspending 0..=2 times, some failing.
    let specs = mixed_specs(|i| Plan {
        pending: i % 3,
        fails: i % 3 == 1,
    });
    let total = close_polls(&specs);
    for polls in 0..=total {
        let log = new_log();
        let live_before = live();
        let mut stack = ExitStack::<Fail>::new();
        for spec in &specs {
            block_on(register(&stack, &log, *spec));
        }
        take(&log);
        let finished = {
            let mut close = pin!(stack.close());
            if polls < total {
                poll_pending(close.as_mut(), polls);
                None
            } else {
                let (result, n) = run(close);
                assert_eq!(n, total);
                Some(result)
            }
        };
        assert!(stack.is_closed() && stack.is_empty(), "after {polls} polls");
        let lines = take(&log);
        let (expected, failures) =
            model_close(&specs, Seen::Success, (polls < total).then_some(polls));
        assert_eq!(lines, expected, "close dropped after {polls} polls");
        assert_released_once(&lines, specs.iter().map(|s| s.name));
        if let Some(result) = finished {
            let failures: Vec<Fail> = failures.unwrap().into_iter().map(Fail).collect();
            assert_eq!(result.unwrap_err().into_vec(), failures);
        }
        // Closed by the cancellation: closing again or dropping runs nothing.
        assert_eq!(block_on(stack.close()), Ok(()));
        drop(stack);
        assert_eq!(take(&log), [] as [&str; 0]);
        assert_eq!(live(), live_before, "after {polls} polls");
    }

    // One case spelled out: dropped after 3 polls, in E's exit.
    let (lines, _) = model_close(&specs, Seen::Success, Some(3));
    assert_eq!(
        lines,
        [
            "Q on_exit Success",
            "Q exit pending",
            "E deferred",
            "G close written=1",
            "G exit pending",
            "G exit pending",
            "G exit dropped",
            "B cancel uses=1",
            "P discarded",
            "D discarded",
            "F dropped unclosed written=1",
            "A cancel uses=1",
        ]
    );
}

#[test]
fn as_a_manager_dropped_at_every_poll_mid_body_or_mid_close() {
    let specs = mixed_specs(|i| Plan {
        pending: (i + 1) % 3,
        fails: i % 4 == 2,
    });
    // Poll 1: the body registers everything and suspends; poll 2: the body ends and the close
    // begins; the close takes `close_polls` polls.
    let total = 1 + close_polls(&specs);
    for polls in 0..=total {
        let log = new_log();
        let live_before = live();
        {
            let mut fut = pin!(with(
                ExitStack::<Fail>::new(),
                async |stack| -> Result<(), BodyError> {
                    let _guard = Token::new(&log, '~');
                    for spec in &specs {
                        register(stack, &log, *spec).await;
                    }
                    Yield(1).await;
                    note(&log, "body end".into());
                    Err(BodyError(4))
                },
            ));
            if polls < total {
                poll_pending(fut.as_mut(), polls);
            } else {
                let (result, n) = run(fut);
                assert_eq!(n, total);
                let Err(Error::BodyAndExit { body, exit }) = result else {
                    panic!("{result:?}")
                };
                assert_eq!(body, BodyError(4));
                let (_, failures) = model_close(&specs, Seen::Body(4), None);
                let failures: Vec<Fail> = failures.unwrap().into_iter().map(Fail).collect();
                assert_eq!(exit.into_vec(), failures);
            }
        }
        let lines = take(&log);
        let entered = specs
            .iter()
            .filter(|s| s.kind == Kind::Enter)
            .map(|s| format!("{} enter", s.name));
        let expected: Vec<String> = match polls {
            // Never polled: the stack was never entered.
            0 => Vec::new(),
            // Mid-body: the body's future (and its guard) go first, then every entry.
            1 => entered
                .chain(["~ discarded".to_string()])
                .chain(model_cancel(&specs))
                .collect(),
            _ => entered
                .chain(["body end".to_string(), "~ discarded".to_string()])
                .chain(model_close(&specs, Seen::Body(4), (polls < total).then_some(polls - 1)).0)
                .collect(),
        };
        assert_eq!(lines, expected, "with dropped after {polls} polls");
        if polls > 0 {
            assert_released_once(&lines, specs.iter().map(|s| s.name));
        }
        assert_eq!(live(), live_before, "after {polls} polls");
    }
}

/// An exit future that panics unwinds out of `close`; the `CloseFuture`, dropped on the way,
/// drops the panicked exit future and cancels the rest, as for any cancellation.
#[cfg(feature = "std")]
#[test]
fn an_exit_panicking_mid_close_cancels_the_rest() {
    let log = new_log();
    let live_before = live();
    let mut stack = ExitStack::<Fail>::new();
    block_on(stack.enter_context(conn(&log, 'A'))).unwrap();
    stack.adopt(file(&log, 'F', OK), File::close);
    let token = Token::new(&log, 'P');
    stack.push_exit(async move |_: Outcome<'_>| -> Result<(), Fail> {
        token.disarm();
        Yield(1).await;
        std::panic::panic_any("exit panicked")
    });
    block_on(stack.enter_context(conn(&log, 'B'))).unwrap();
    take(&log);
    let caught =
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| block_on(stack.close())));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<&str>(),
        Some(&"exit panicked")
    );
    assert!(stack.is_closed() && stack.is_empty());
    assert_eq!(
        take(&log),
        [
            "B exit Success uses=0",
            "F dropped unclosed written=0",
            "A cancel uses=0"
        ]
    );
    drop(stack);
    assert_eq!(take(&log), [] as [&str; 0]);
    assert_eq!(live(), live_before);
}

// ---------------------------------------------------------------------------------------------
// 6. Scale: 10,000 entries, no recursion, linear work
// ---------------------------------------------------------------------------------------------

/// Under Miri, enough entries for every kind (four) several times over and for a close dropped
/// half-way: Miri checks the loops for undefined behaviour, not the depth (it has no native
/// stack to overflow).
const MANY: usize = if cfg!(miri) { 64 } else { 10_000 };

/// Runs `f` on a thread with a 256 KiB stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread panicked (stack overflow aborts instead)")
}

/// Counters shared by the lean fixtures: no logging, no allocation.
#[derive(Default)]
struct Tally {
    /// Exits started (all kinds).
    exits: Cell<usize>,
    /// Polls of exit futures.
    exit_polls: Cell<usize>,
    /// Cancels (all kinds).
    cancels: Cell<usize>,
    /// Exit futures dropped before they finished.
    dropped: Cell<usize>,
    /// The index the next exit or cancel must have (entries are released newest first).
    next: Cell<usize>,
}

impl Tally {
    fn release(&self, index: usize) {
        assert_eq!(index + 1, self.next.get(), "released out of order");
        self.next.set(index);
    }

    fn exit(&self, index: usize) {
        self.release(index);
        self.exits.set(self.exits.get() + 1);
    }

    fn cancel(&self, index: usize) {
        self.release(index);
        self.cancels.set(self.cancels.get() + 1);
    }
}

/// An exit future that suspends `pending` times and fails if `fails`.
struct LeanStep {
    tally: Rc<Tally>,
    pending: usize,
    fails: bool,
    done: bool,
}

impl Future for LeanStep {
    type Output = Result<(), Fail>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let tally = &self.tally;
        tally.exit_polls.set(tally.exit_polls.get() + 1);
        if self.pending > 0 {
            self.pending -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.done = true;
        Poll::Ready(if self.fails { Err(Fail('x')) } else { Ok(()) })
    }
}

impl Drop for LeanStep {
    fn drop(&mut self) {
        if !self.done {
            self.tally.dropped.set(self.tally.dropped.get() + 1);
        }
    }
}

/// A lean manager: resource `usize` (its index), ready enter, `LeanStep` exit.
struct Lean {
    tally: Rc<Tally>,
    index: usize,
    pending: usize,
    fails: bool,
}

struct LeanExit(Lean);

impl AsyncEnter for Lean {
    type Resource = usize;
    type Error = Fail;
    type Exit = LeanExit;
    type Enter = core::future::Ready<Result<(usize, LeanExit), Fail>>;

    fn enter(self) -> Self::Enter {
        core::future::ready(Ok((self.index, LeanExit(self))))
    }
}

impl AsyncExit<usize> for LeanExit {
    type Error = Fail;
    type Future<'o> = LeanStep;

    fn exit(self, index: usize, _: Outcome<'_>) -> LeanStep {
        self.0.tally.exit(index);
        LeanStep {
            tally: self.0.tally,
            pending: self.0.pending,
            fails: self.0.fails,
            done: false,
        }
    }

    fn cancel(self, index: usize) {
        self.0.tally.cancel(index);
    }
}

/// An adopted value that reports its cancel (dropped without close) to the tally.
struct LeanValue {
    tally: Rc<Tally>,
    index: usize,
    closed: bool,
}

impl Drop for LeanValue {
    fn drop(&mut self) {
        if !self.closed {
            self.tally.cancel(self.index);
        }
    }
}

/// Captured by lean deferred closures: reports the closure's drop without running.
struct LeanToken(Option<(Rc<Tally>, usize)>);

impl LeanToken {
    fn run(mut self) -> (Rc<Tally>, usize) {
        self.0.take().unwrap()
    }
}

impl Drop for LeanToken {
    fn drop(&mut self) {
        if let Some((tally, index)) = self.0.take() {
            tally.cancel(index);
        }
    }
}

/// Registers entry `index` of kind `kind` (no allocation besides the stack's own).
fn register_lean(
    stack: &ExitStack<'_, Fail>,
    tally: &Rc<Tally>,
    kind: Kind,
    index: usize,
    pending: usize,
    fails: bool,
) {
    match kind {
        Kind::Enter => {
            let manager = Lean {
                tally: tally.clone(),
                index,
                pending,
                fails,
            };
            let (resource, _) = run(stack.enter_context(manager));
            assert_eq!(*resource.unwrap(), index);
        }
        Kind::Adopt => {
            let value = LeanValue {
                tally: tally.clone(),
                index,
                closed: false,
            };
            let value = stack.adopt(value, move |mut value: LeanValue| {
                value.closed = true;
                value.tally.exit(value.index);
                LeanStep {
                    tally: value.tally.clone(),
                    pending,
                    fails,
                    done: false,
                }
            });
            assert_eq!(value.index, index);
        }
        Kind::Defer => {
            let token = LeanToken(Some((tally.clone(), index)));
            stack.defer(move || {
                let (tally, index) = token.run();
                tally.exit(index);
                LeanStep {
                    tally,
                    pending,
                    fails,
                    done: false,
                }
            });
        }
        Kind::PushExit => {
            let token = LeanToken(Some((tally.clone(), index)));
            stack.push_exit(move |_status: Outcome<'_>| {
                let (tally, index) = token.run();
                tally.exit(index);
                LeanStep {
                    tally,
                    pending,
                    fails,
                    done: false,
                }
            });
        }
    }
}

/// A stack of `n` lean entries, kinds in turn, each exit suspending once.
fn many(n: usize, tally: &Rc<Tally>) -> ExitStack<'static, Fail> {
    let stack = ExitStack::new();
    for index in 0..n {
        register_lean(&stack, tally, KINDS[index % 4], index, 1, false);
    }
    tally.next.set(n);
    stack
}

#[test]
fn ten_thousand_entries_close_without_recursion_in_linear_work() {
    on_small_stack(|| {
        let tally = Rc::new(Tally::default());
        let mut stack = many(MANY, &tally);
        assert_eq!(stack.len(), MANY);
        let ((result, polls), allocations) = allocations_in(|| run(stack.close()));
        assert_eq!(result, Ok(()));
        // Each exit suspends once: one poll per entry, plus the last.
        assert_eq!(polls, MANY + 1, "polls of the close future");
        assert_eq!(tally.exit_polls.get(), 2 * MANY, "polls of exit futures");
        assert_eq!(
            (tally.exits.get(), tally.cancels.get(), tally.dropped.get()),
            (MANY, 0, 0)
        );
        assert_eq!(tally.next.get(), 0, "every entry released, newest first");
        assert_eq!(allocations, 0, "closing without failures allocates nothing");
        assert!(stack.is_closed());
    });
}

#[test]
fn ten_thousand_entries_dropped_unclosed_are_cancelled_without_recursion() {
    on_small_stack(|| {
        let tally = Rc::new(Tally::default());
        let stack = many(MANY, &tally);
        let ((), allocations) = allocations_in(|| drop(stack));
        assert_eq!((tally.exits.get(), tally.cancels.get()), (0, MANY));
        assert_eq!(tally.next.get(), 0);
        assert_eq!(allocations, 0);
    });
}

#[test]
fn ten_thousand_entries_cancelled_mid_close_without_recursion() {
    on_small_stack(|| {
        let tally = Rc::new(Tally::default());
        let mut stack = many(MANY, &tally);
        let polls = MANY / 2;
        {
            let mut close = pin!(stack.close());
            poll_pending(close.as_mut(), polls);
        }
        // Poll k starts the k-th newest exit (the one before it finished): `polls` started,
        // the last of them dropped mid-way, the rest cancelled.
        assert_eq!(tally.exits.get(), polls);
        assert_eq!(tally.dropped.get(), 1);
        assert_eq!(tally.cancels.get(), MANY - polls);
        assert_eq!(tally.exit_polls.get(), 2 * polls - 1);
        assert_eq!(tally.next.get(), 0);
        assert!(stack.is_closed() && stack.is_empty());
    });
}

#[test]
fn ten_thousand_entries_as_a_manager_with_a_failing_body() {
    on_small_stack(|| {
        let tally = Rc::new(Tally::default());
        let (result, polls) = run(with(
            ExitStack::<Fail>::new(),
            async |stack| -> Result<(), BodyError> {
                for index in 0..MANY {
                    register_lean(stack, &tally, KINDS[index % 4], index, 1, index % 1000 == 0);
                }
                tally.next.set(MANY);
                Err(BodyError(1))
            },
        ));
        let Err(Error::BodyAndExit { exit, .. }) = result else {
            panic!("{result:?}")
        };
        assert_eq!(exit.len(), MANY.div_ceil(1000));
        assert_eq!(polls, MANY + 1);
        assert_eq!((tally.exits.get(), tally.cancels.get()), (MANY, 0));
        assert_eq!(tally.next.get(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// 7. Allocations per entry
// ---------------------------------------------------------------------------------------------

/// How many allocations a `Vec` of 16-byte elements (the stack keeps one fat pointer per
/// entry) makes while `n` elements are pushed one at a time.
fn vec_growth<T: Default>(n: usize) -> usize {
    allocations_in(|| {
        let mut v: Vec<T> = Vec::new();
        for _ in 0..n {
            v.push(T::default());
        }
        v
    })
    .1
}

#[test]
fn allocations_per_entry() {
    const N: usize = if cfg!(miri) { 32 } else { 1_000 };
    println!("allocations (N = {N} entries):");
    for kind in KINDS {
        for fails in [false, true] {
            let tally = Rc::new(Tally::default());
            let (mut stack, register) = allocations_in(|| {
                let stack = ExitStack::<Fail>::new();
                for index in 0..N {
                    register_lean(&stack, &tally, kind, index, 0, fails);
                }
                stack
            });
            tally.next.set(N);
            let ((result, _), close) = allocations_in(|| run(stack.close()));
            assert_eq!(
                result.map_err(|e| e.len()),
                if fails { Err(N) } else { Ok(()) }
            );
            assert_eq!(tally.exits.get(), N);

            // Exactly one box per entry: the list runs through the boxes, it never grows.
            assert_eq!(register, N, "{kind:?}: allocations to register {N}");
            let failures_growth = if fails { vec_growth::<Fail>(N) } else { 0 };
            // Closing allocates only the list of failures.
            assert_eq!(close, failures_growth, "{kind:?}: allocations to close {N}");
            println!(
                "  {:<8} register: {register} ({:.3} per entry); close{}: {close} ({:.3} per entry)",
                format!("{kind:?}"),
                register as f64 / N as f64,
                if fails { " (every exit failing)" } else { "" },
                close as f64 / N as f64,
            );
        }
    }

    // Cancelling, pop_all and a second close allocate nothing.
    let tally = Rc::new(Tally::default());
    let mut stack = many(N, &tally);
    let (mut moved, n) = allocations_in(|| stack.pop_all());
    assert_eq!((n, moved.len()), (0, N));
    let ((), n) = allocations_in(|| drop(moved.pop_all()));
    assert_eq!((n, tally.cancels.get()), (0, N));
    let ((result, _), n) = allocations_in(|| run(moved.close()));
    assert_eq!((result, n), (Ok(()), 0));
    let ((result, _), n) = allocations_in(|| run(moved.close()));
    assert_eq!((result, n), (Ok(()), 0));
    println!("  pop_all: 0, drop unclosed (cancel {N}): 0, close an empty or closed stack: 0");

    // The stack as a manager adds nothing per cycle beyond its entries.
    let tally = Rc::new(Tally::default());
    let ((result, _), n) = allocations_in(|| {
        run(with(ExitStack::<Fail>::new(), async |stack| {
            for index in 0..N {
                register_lean(stack, &tally, KINDS[index % 4], index, 1, false);
            }
            tally.next.set(N);
        }))
    });
    assert_eq!(result, Ok(()));
    assert_eq!(n, N, "with(ExitStack, ..) of {N} mixed entries");
    println!("  with(stack, body registering {N} mixed entries), whole cycle: {n}");
}

// ---------------------------------------------------------------------------------------------
// 8. Threads
// ---------------------------------------------------------------------------------------------

fn assert_send<T: Send>(_: &T) {}
fn assert_sync<T: Sync>(_: &T) {}

/// Whether the argument's type is `Send`, as a `bool`, without failing to compile when it is
/// not: an inherent method (only for `Send` types) takes precedence over a trait's default.
macro_rules! is_send {
    ($value:expr) => {{
        struct Probe<T>(core::marker::PhantomData<T>);
        #[allow(dead_code)]
        trait NotSend {
            fn is_send(&self) -> bool {
                false
            }
        }
        impl<T> NotSend for Probe<T> {}
        #[allow(dead_code)]
        impl<T: Send> Probe<T> {
            fn is_send(&self) -> bool {
                true
            }
        }
        fn probe<T>(_: &T) -> Probe<T> {
            Probe(core::marker::PhantomData)
        }
        probe(&$value).is_send()
    }};
}

#[test]
fn send_exit_stack_and_its_futures_are_send() {
    // The probe itself can fail.
    assert!(is_send!(1_u8) && !is_send!(Rc::new(1_u8)));

    let stack = SendExitStack::<Fail>::new();
    assert_send(&stack);
    assert_sync(&stack);
    let entering = stack.enter_context(null_context(1_u8));
    assert_send(&entering);
    drop(entering);
    let managed = with(SendExitStack::<Fail>::new(), async |stack| {
        *stack.enter_context(null_context(1_u8)).await.unwrap() += 1;
    });
    assert_send(&managed);

    // A plain `ExitStack` is neither (it takes `Rc` entries).
    let plain = ExitStack::<Fail>::new();
    assert!(!is_send!(plain));
}

/// A task that holds a `SendExitStack` closes it with `stack.close().await`: the `CloseFuture`
/// must be `Send` when the stack is.
#[test]
fn the_close_future_of_a_send_exit_stack_is_send() {
    let mut stack = SendExitStack::<Fail>::new();
    let closing = stack.close();
    assert!(is_send!(closing), "SendExitStack::close() is not Send");
}

#[cfg(not(miri))]
#[test]
fn send_exit_stack_moves_into_a_task_on_a_multi_thread_runtime() {
    use std::sync::{Arc, Mutex};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();

    let handles: Vec<_> = (0..4_u32)
        .map(|task| {
            let log = log.clone();
            // Registered here, closed in the task.
            let stack = SendExitStack::<String>::new();
            let deferred = log.clone();
            stack.defer(async move || {
                tokio::task::yield_now().await;
                deferred.lock().unwrap().push(format!("{task}: deferred"));
                Ok::<_, String>(())
            });
            // The stack is the task's manager: closed (in the task) after the body.
            rt.spawn(with(
                stack,
                async move |stack: &mut SendExitStack<String>| -> Result<(), String> {
                    let mut conns = Vec::new();
                    for peer in 0..3 {
                        let (enter_log, exit_log) = (log.clone(), log.clone());
                        let manager = from_fns(
                            async move || {
                                tokio::task::yield_now().await;
                                enter_log
                                    .lock()
                                    .unwrap()
                                    .push(format!("{task}: open {peer}"));
                                Ok::<_, String>(vec![peer])
                            },
                            async move |v: Vec<u32>, status: Outcome<'_>| {
                                tokio::task::yield_now().await;
                                exit_log
                                    .lock()
                                    .unwrap()
                                    .push(format!("{task}: close {v:?} {status:?}"));
                                Ok::<_, String>(())
                            },
                        );
                        // `enter_context` awaited in the task, on the shared `&stack`.
                        conns.push(stack.enter_context(manager).await?);
                    }
                    // The lent resources are held across an await (maybe moving workers).
                    tokio::task::yield_now().await;
                    for c in &mut conns {
                        c.push(task);
                    }
                    log.lock().unwrap().push(format!("{task}: body"));
                    Ok(())
                },
            ))
        })
        .collect();
    for handle in handles {
        assert_eq!(rt.block_on(handle).unwrap(), Ok(()));
    }
    let lines = log.lock().unwrap().clone();
    for task in 0..4 {
        let mine: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{task}: ")))
            .collect();
        assert_eq!(
            mine,
            [
                "open 0",
                "open 1",
                "open 2",
                "body",
                &format!("close [2, {task}] Success"),
                &format!("close [1, {task}] Success"),
                &format!("close [0, {task}] Success"),
                "deferred",
            ]
        );
    }
}

#[test]
fn a_plain_exit_stack_takes_rc_entries_locally() {
    let shared = Rc::new(RefCell::new(Vec::<&str>::new()));
    let result = futures_executor::block_on(async {
        let mut stack = ExitStack::<&str>::new();
        let rc = stack.adopt(shared.clone(), async |rc: Rc<RefCell<Vec<&str>>>| {
            rc.borrow_mut().push("adopted rc closed");
            Ok::<_, &str>(())
        });
        rc.borrow_mut().push("used");
        let s = shared.clone();
        stack.defer(async move || {
            s.borrow_mut().push("deferred");
            Ok::<_, &str>(())
        });
        let counter = stack
            .enter_context(from_fns(
                async || Ok::<_, &str>(Rc::new(Cell::new(0))),
                async |c: Rc<Cell<i32>>, _: Outcome<'_>| {
                    assert_eq!(c.get(), 3);
                    Ok(())
                },
            ))
            .await
            .unwrap();
        counter.set(3);
        stack.close().await
    });
    assert_eq!(result, Ok(()));
    assert_eq!(*shared.borrow(), ["used", "deferred", "adopted rc closed"]);
    assert_eq!(Rc::strong_count(&shared), 1, "every captured Rc dropped");
}

/// `SendExitStack` is `Sync`, so scoped threads can register on one `&stack` at the same time:
/// two threads registering at once on a shared `SendExitStack` both succeed, and `len` reads
/// race with the pushes harmlessly (arena.rs, invariant 4).
#[cfg(not(miri))]
#[test]
fn a_shared_send_exit_stack_takes_entries_from_two_threads() {
    const PER_THREAD: usize = 100_000;
    let stack = SendExitStack::<Fail>::new();
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                start.wait();
                for _ in 0..PER_THREAD {
                    stack.defer(async || Ok::<(), Fail>(()));
                    let _ = stack.len();
                }
            });
        }
    });
    assert_eq!(stack.len(), 2 * PER_THREAD);
}

/// Pushes from `&self` are lock-free (arena.rs): several threads push onto one shared
/// `SendExitStack` at once, and closing it runs every entry exactly once, each thread's
/// entries newest first. Under Miri too (its scheduler and weak memory emulation explore the
/// compare-and-swap loop), with fewer entries.
#[test]
fn threads_push_onto_one_stack_and_every_entry_closes_exactly_once() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU8, Ordering};

    const THREADS: usize = 4;
    const PER_THREAD: usize = if cfg!(miri) { 20 } else { 20_000 };
    let closed: Vec<AtomicU8> = (0..THREADS * PER_THREAD)
        .map(|_| AtomicU8::new(0))
        .collect();
    let order = Mutex::new(Vec::new());
    let mut stack = ScopedSendExitStack::<Fail>::new();
    std::thread::scope(|s| {
        let (stack, closed, order) = (&stack, &closed, &order);
        for thread in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let id = thread * PER_THREAD + i;
                    stack.defer(async move || {
                        closed[id].fetch_add(1, Ordering::Relaxed);
                        order.lock().unwrap().push(id);
                        Ok::<(), Fail>(())
                    });
                }
            });
        }
    });
    assert_eq!(stack.len(), THREADS * PER_THREAD);
    assert_eq!(run(stack.close()).0, Ok(()));
    assert!(stack.is_empty());
    for (id, count) in closed.iter().enumerate() {
        assert_eq!(count.load(Ordering::Relaxed), 1, "entry {id}");
    }
    drop(stack); // its entries borrowed `order`
    // Last in, first out per thread: each thread's entries close in reverse push order.
    let order = order.into_inner().unwrap();
    for thread in 0..THREADS {
        let mine: Vec<usize> = order
            .iter()
            .copied()
            .filter(|id| id / PER_THREAD == thread)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] > w[1]), "thread {thread}");
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Property test: random sequences against the model
// ---------------------------------------------------------------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug)]
    pub(super) enum Op {
        /// Register an entry of this kind (a manager's enter suspends `enter_pending` times).
        Register {
            kind: Kind,
            plan: Plan,
            enter_pending: usize,
        },
        /// `enter` a manager whose enter fails.
        EnterFails { enter_pending: usize },
        /// `enter` a manager, and drop the `enter` future after `polls` polls (< its pendings).
        EnterDropped { enter_pending: usize, polls: usize },
        /// Close; drop the close future after `drop_after` polls (if it is not ready by then).
        Close { drop_after: Option<usize> },
        /// Move everything to a new stack, which replaces this one.
        PopAll,
        /// Drop the stack (unclosed, or closed) and start a new one.
        Drop,
    }

    /// The model: the entries (registration order), whether the stack is closed, the log.
    #[derive(Default)]
    struct Model {
        entries: Vec<Spec>,
        closed: bool,
        lines: Vec<String>,
    }

    /// Runs `ops` on a real stack and on the model, comparing after every step.
    pub(super) fn check(ops: &[Op]) -> Result<(), TestCaseError> {
        let log = new_log();
        let live_before = live();
        let mut model = Model::default();
        let mut stack = ExitStack::<Fail>::new();
        let mut names = (0..).map(|i| char::from_u32('A' as u32 + i).unwrap());
        let mut registered = Vec::new();
        let mut i = 0;
        while i < ops.len() {
            // A run of registrations shares one borrow of the stack: every lent resource is
            // kept and touched once at the end of the run.
            if !matches!(ops[i], Op::Close { .. } | Op::PopAll | Op::Drop) {
                if stack.is_closed() {
                    prop_assert!(model.closed);
                    stack = ExitStack::new(); // drops a closed, empty stack: nothing runs
                    model.closed = false;
                }
                let mut handles: Vec<&mut Handle> = Vec::new();
                let mut files: Vec<&mut File> = Vec::new();
                while i < ops.len() && !matches!(ops[i], Op::Close { .. } | Op::PopAll | Op::Drop) {
                    let name = names.next().unwrap();
                    match ops[i] {
                        Op::Register {
                            kind,
                            plan,
                            enter_pending,
                        } => {
                            let spec = Spec { kind, name, plan };
                            match kind {
                                Kind::Enter => {
                                    let c =
                                        conn(&log, name).exit(plan).enter_pending(enter_pending);
                                    handles.push(block_on(stack.enter_context(c)).unwrap());
                                    model.lines.push(format!("{name} enter"));
                                }
                                Kind::Adopt => {
                                    files.push(stack.adopt(file(&log, name, plan), File::close))
                                }
                                Kind::Defer => defer(&stack, &log, name, plan),
                                Kind::PushExit => push_exit(&stack, &log, name, plan),
                            }
                            model.entries.push(spec);
                            registered.push(name);
                        }
                        Op::EnterFails { enter_pending } => {
                            let c = conn(&log, name).enter_fails().enter_pending(enter_pending);
                            prop_assert_eq!(
                                block_on(stack.enter_context(c)).err(),
                                Some(Fail(name))
                            );
                            model.lines.push(format!("{name} enter failed"));
                        }
                        Op::EnterDropped {
                            enter_pending,
                            polls,
                        } => {
                            let mut entering = pin!(
                                stack.enter_context(conn(&log, name).enter_pending(enter_pending))
                            );
                            poll_pending(entering.as_mut(), polls);
                            if polls > 0 {
                                model.lines.push(format!("{name} enter dropped"));
                            }
                        }
                        Op::Close { .. } | Op::PopAll | Op::Drop => unreachable!(),
                    }
                    prop_assert_eq!(stack.len(), model.entries.len());
                    i += 1;
                }
                for h in handles {
                    h.uses += 1;
                }
                for f in files {
                    f.written += 1;
                }
            } else {
                match ops[i] {
                    Op::Close { drop_after } => {
                        let entries = if model.closed {
                            &[][..]
                        } else {
                            &model.entries[..]
                        };
                        let total = close_polls(entries);
                        let dropped = drop_after.filter(|&polls| polls < total);
                        let result = {
                            let mut close = pin!(stack.close());
                            match dropped {
                                Some(polls) => {
                                    poll_pending(close.as_mut(), polls);
                                    None
                                }
                                None => {
                                    let (result, polls) = run(close);
                                    prop_assert_eq!(polls, total);
                                    Some(result)
                                }
                            }
                        };
                        let (lines, failures) = model_close(entries, Seen::Success, dropped);
                        model.lines.extend(lines);
                        if let Some(result) = result {
                            let failures: Vec<Fail> =
                                failures.unwrap().into_iter().map(Fail).collect();
                            prop_assert_eq!(
                                result.map_err(CloseErrors::into_vec),
                                if failures.is_empty() {
                                    Ok(())
                                } else {
                                    Err(failures)
                                }
                            );
                        }
                        model.entries.clear();
                        model.closed = true;
                    }
                    Op::PopAll => {
                        let moved = stack.pop_all();
                        prop_assert_eq!((stack.len(), moved.len()), (0, model.entries.len()));
                        prop_assert!(!moved.is_closed());
                        stack = moved; // drops the old, empty stack: nothing runs
                        model.closed = false;
                    }
                    Op::Drop => {
                        stack = ExitStack::new();
                        model.lines.extend(model_cancel(&model.entries));
                        model.entries.clear();
                        model.closed = false;
                    }
                    Op::Register { .. } | Op::EnterFails { .. } | Op::EnterDropped { .. } => {
                        unreachable!()
                    }
                }
                i += 1;
            }
            prop_assert_eq!(stack.len(), model.entries.len());
            prop_assert_eq!(stack.is_closed(), model.closed);
            let lines = log.borrow().clone();
            prop_assert_eq!(&lines, &model.lines, "after op {} of {:?}", i, ops);
        }
        drop(stack);
        model.lines.extend(model_cancel(&model.entries));
        let lines = take(&log);
        prop_assert_eq!(&lines, &model.lines);
        assert_released_once(&lines, registered);
        prop_assert_eq!(
            live(),
            live_before,
            "a resource or value leaked or dropped twice"
        );
        Ok(())
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (0..=2_usize, prop::bool::weighted(0.3))
            .prop_map(|(pending, fails)| Plan { pending, fails })
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop::sample::select(KINDS.to_vec())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (kind(), plan(), 0..=2_usize).prop_map(|(kind, plan, enter_pending)| {
                Op::Register { kind, plan, enter_pending }
            }),
            1 => (0..=2_usize).prop_map(|enter_pending| Op::EnterFails { enter_pending }),
            1 => (1..=2_usize)
                .prop_flat_map(|enter_pending| (Just(enter_pending), 0..=enter_pending))
                .prop_map(|(enter_pending, polls)| Op::EnterDropped { enter_pending, polls }),
            2 => prop::option::weighted(0.6, 0..=12_usize)
                .prop_map(|drop_after| Op::Close { drop_after }),
            1 => Just(Op::PopAll),
            1 => Just(Op::Drop),
        ]
    }

    fn config() -> ProptestConfig {
        // Under Miri few cases: `a_fixed_sequence_matches_the_model` goes through every
        // operation whatever proptest draws.
        let default = if cfg!(miri) { 3 } else { 1_000 };
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

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 0..24)) {
            check(&ops)?;
        }
    }
}

/// A fixed sequence through every operation, so that Miri covers each path whatever proptest
/// draws.
#[test]
fn a_fixed_sequence_matches_the_model() {
    use model::Op;
    let reg = |kind, pending, fails| Op::Register {
        kind,
        plan: Plan { pending, fails },
        enter_pending: 1,
    };
    let ops = [
        reg(Kind::Enter, 1, false),
        reg(Kind::Adopt, 2, true),
        Op::EnterFails { enter_pending: 1 },
        reg(Kind::Defer, 0, true),
        Op::EnterDropped {
            enter_pending: 2,
            polls: 1,
        },
        reg(Kind::PushExit, 1, false),
        Op::Close { drop_after: None },
        Op::Close { drop_after: None },
        reg(Kind::Enter, 2, false),
        reg(Kind::Adopt, 0, false),
        Op::PopAll,
        reg(Kind::Defer, 1, false),
        Op::Close {
            drop_after: Some(2),
        },
        reg(Kind::PushExit, 0, false),
        reg(Kind::Enter, 0, true),
        Op::Drop,
        reg(Kind::Adopt, 1, false),
        Op::Close {
            drop_after: Some(0),
        },
        reg(Kind::Defer, 0, false),
    ];
    model::check(&ops).unwrap();
}

/// Issue 20: a manager that cannot fail joins a stack of any error type with
/// `enter_infallible`: its exit sees the outcome like any entry's, and its cancel hook runs
/// when the stack is dropped unclosed.
#[test]
fn an_infallible_manager_enters_a_stack_of_any_error_type() {
    let seen = RefCell::new(Vec::new());
    let cancelled = Cell::new(0);
    let result = block_on(with(
        ExitStack::<std::io::Error>::new(),
        async |stack| -> Result<u32, BodyError> {
            let limit = stack.enter_infallible(null_context(3_u32)).await;
            *limit += 1;
            let lock = stack
                .enter_infallible(from_fns(
                    async || Ok::<_, Infallible>(7_u32),
                    async |n: u32, outcome: Outcome<'_>| {
                        seen.borrow_mut().push(format!("{n} {outcome:?}"));
                        Ok(())
                    },
                ))
                .await;
            Err(BodyError(*lock + *limit))
        },
    ));
    let Err(Error::Body(BodyError(11))) = result else {
        panic!("{result:?}")
    };
    assert_eq!(*seen.borrow(), ["7 Failure(BodyError(11))"]);

    let stack = ExitStack::<std::io::Error>::new();
    block_on(
        stack.enter_infallible(
            from_fns(async || Ok::<_, Infallible>(1_u8), async |_: u8, _| Ok(()))
                .on_cancel(|_: u8| cancelled.set(cancelled.get() + 1)),
        ),
    );
    drop(stack);
    assert_eq!(cancelled.get(), 1);
}
