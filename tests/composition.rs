//! Several managers in one `with` (S13): tuples and arrays of managers. Order, what each exit
//! sees, every failure combination kept in the `GroupError`, flattening, `Display`/`source`,
//! cancellation at every poll, and sizes against the nested form.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::cell::RefCell;
use std::rc::Rc;

use async_with::{
    AsyncEnter, AsyncExit, Error, Fault, GroupError, Outcome, Value, null_context, with,
};

// ---------------------------------------------------------------------------------------------
// A labelled manager: logs what it does, as "A enter", "B exit Failure(..)", "C cancel", ..
// ---------------------------------------------------------------------------------------------

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::default()
}

fn events(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

/// Returns `Pending` `pending` times (waking first), then its value. Logs its drop if it is
/// dropped before it finished.
struct Step<T> {
    log: Log,
    label: String,
    pending: usize,
    value: Option<T>,
}

impl<T> Step<T> {
    fn new(log: &Log, label: String, pending: usize, value: T) -> Self {
        Step {
            log: log.clone(),
            label,
            pending,
            value: Some(value),
        }
    }
}

impl<T> Unpin for Step<T> {}

impl<T> Future for Step<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if self.pending > 0 {
            self.pending -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.value.take().expect("polled after completion"))
    }
}

impl<T> Drop for Step<T> {
    fn drop(&mut self) {
        if self.value.is_some() {
            self.log
                .borrow_mut()
                .push(format!("{} dropped", self.label));
        }
    }
}

/// The resource: its manager's name and a counter the body changes.
#[derive(Debug)]
struct Res {
    name: char,
    n: u32,
}

/// A manager named `name` with the error type `X`.
struct Labelled<X> {
    log: Log,
    name: char,
    pending: usize,
    enter_error: Option<X>,
    exit_error: Option<X>,
    /// Panics inside `enter()` / `exit()` themselves, before returning a future.
    enter_panics: bool,
    exit_panics: bool,
}

fn manager<X>(log: &Log, name: char) -> Labelled<X> {
    Labelled {
        log: log.clone(),
        name,
        pending: 1,
        enter_error: None,
        exit_error: None,
        enter_panics: false,
        exit_panics: false,
    }
}

impl<X> Labelled<X> {
    fn enter_fails(mut self, error: X) -> Self {
        self.enter_error = Some(error);
        self
    }

    fn exit_fails(mut self, error: X) -> Self {
        self.exit_error = Some(error);
        self
    }

    fn enter_panics(mut self) -> Self {
        self.enter_panics = true;
        self
    }

    fn exit_panics(mut self) -> Self {
        self.exit_panics = true;
        self
    }

    fn pending(mut self, n: usize) -> Self {
        self.pending = n;
        self
    }
}

struct LabelledExit<X> {
    log: Log,
    pending: usize,
    error: Option<X>,
    panics: bool,
}

impl<X> AsyncEnter for Labelled<X> {
    type Resource = Res;
    type Error = X;
    type Exit = LabelledExit<X>;
    type Enter = Step<Result<(Res, LabelledExit<X>), X>>;

    fn enter(self) -> Self::Enter {
        self.log.borrow_mut().push(format!("{} enter", self.name));
        if self.enter_panics {
            std::panic::panic_any(MethodPanic(self.name));
        }
        let value = match self.enter_error {
            Some(error) => Err(error),
            None => Ok((
                Res {
                    name: self.name,
                    n: 0,
                },
                LabelledExit {
                    log: self.log.clone(),
                    pending: self.pending,
                    error: self.exit_error,
                    panics: self.exit_panics,
                },
            )),
        };
        Step::new(
            &self.log,
            format!("{} enter", self.name),
            self.pending,
            value,
        )
    }
}

impl<X> AsyncExit<Res> for LabelledExit<X> {
    type Error = X;
    type Future<'o> = Step<Result<(), X>>;

    fn exit<'o>(self, resource: Res, outcome: Outcome<'o>) -> Self::Future<'o> {
        self.log
            .borrow_mut()
            .push(format!("{} exit {outcome:?}", resource.name));
        if self.panics {
            std::panic::panic_any(MethodPanic(resource.name));
        }
        let value = match self.error {
            Some(error) => Err(error),
            None => Ok(()),
        };
        Step::new(
            &self.log,
            format!("{} exit", resource.name),
            self.pending,
            value,
        )
    }

    fn cancel(self, resource: Res) {
        self.log
            .borrow_mut()
            .push(format!("{} cancel", resource.name));
    }
}

/// A third error type, beside `&'static str` and `u16`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Nak {
    Busy,
}

impl fmt::Display for Nak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("device busy")
    }
}

impl std::error::Error for Nak {}

#[derive(Debug, PartialEq, Eq)]
struct BodyError(u8);

/// The payload of a panic inside a manager's `enter()` or `exit()` method.
#[derive(Debug, PartialEq, Eq)]
struct MethodPanic(char);

/// A group's result with its `GroupError` opened into the per-position faults, to compare.
fn opened<T, S, E>(result: Result<T, Error<GroupError<S>, E>>) -> Result<T, Error<S, E>> {
    result.map_err(|error| error.map_manager(GroupError::into_faults))
}

// ---------------------------------------------------------------------------------------------
// Order and what each exit sees
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pair_enters_left_to_right_and_exits_right_to_left() {
    let log = log();
    let result = futures_executor::block_on(with(
        (manager::<&str>(&log, 'A'), manager::<u16>(&log, 'B')),
        async |(a, b)| {
            a.n += 1;
            b.n += 2;
            Value(a.n + b.n)
        },
    ));
    assert_eq!(result, Ok(3));
    assert_eq!(
        events(&log),
        ["A enter", "B enter", "B exit Success", "A exit Success"]
    );
}

#[test]
fn each_phase_is_awaited_before_the_next_starts() {
    // Every enter and exit is `Pending` three times: the next manager's enter/exit is only
    // called after the previous future finished (logged by `Step`'s absence of drops).
    let log = log();
    let body_log = log.clone();
    let result = futures_executor::block_on(with(
        (
            manager::<&str>(&log, 'A').pending(3),
            manager::<u16>(&log, 'B').pending(3),
            manager::<Nak>(&log, 'C').pending(3),
        ),
        async move |(a, b, c)| {
            body_log.borrow_mut().push("body".into());
            Ok::<_, BodyError>([a.name, b.name, c.name])
        },
    ));
    assert_eq!(result, Ok(['A', 'B', 'C']));
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "body",
            "C exit Success",
            "B exit Success",
            "A exit Success"
        ]
    );
}

#[test]
fn exits_see_the_body_failure() {
    let log = log();
    let result = futures_executor::block_on(with(
        (manager::<&str>(&log, 'A'), manager::<u16>(&log, 'B')),
        async |_| Err::<(), _>(BodyError(9)),
    ));
    assert_eq!(result, Err(Error::Body(BodyError(9))));
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "B exit Failure(BodyError(9))",
            "A exit Failure(BodyError(9))"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Enter fails at each position
// ---------------------------------------------------------------------------------------------

type Triple = (Labelled<&'static str>, Labelled<u16>, Labelled<Nak>);
type TripleFaults = (
    Option<Fault<&'static str>>,
    Option<Fault<u16>>,
    Option<Fault<Nak>>,
);

fn triple(log: &Log) -> Triple {
    (manager(log, 'A'), manager(log, 'B'), manager(log, 'C'))
}

fn run_triple(m: Triple) -> Result<u32, Error<GroupError<TripleFaults>, BodyError>> {
    futures_executor::block_on(with(m, async |(a, b, c)| Ok(a.n + b.n + c.n)))
}

#[test]
fn the_first_enter_fails() {
    let log = log();
    let (a, b, c) = triple(&log);
    let result = run_triple((a.enter_fails("no lock"), b, c));
    assert_eq!(
        opened(result),
        Err(Error::Enter((Some(Fault::Enter("no lock")), None, None)))
    );
    assert_eq!(events(&log), ["A enter"]);
}

#[test]
fn the_middle_enter_fails_and_the_first_exits_seeing_it() {
    let log = log();
    let (a, b, c) = triple(&log);
    let result = run_triple((a, b.enter_fails(503), c));
    assert_eq!(
        opened(result),
        Err(Error::Enter((None, Some(Fault::Enter(503)), None)))
    );
    assert_eq!(events(&log), ["A enter", "B enter", "A exit Failure(503)"]);
}

#[test]
fn the_last_enter_fails_and_the_others_exit_right_to_left() {
    let log = log();
    let (a, b, c) = triple(&log);
    let result = run_triple((a, b, c.enter_fails(Nak::Busy)));
    assert_eq!(
        opened(result),
        Err(Error::Enter((None, None, Some(Fault::Enter(Nak::Busy)))))
    );
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "B exit Failure(Busy)",
            "A exit Failure(Busy)"
        ]
    );
}

#[test]
fn an_enter_failure_then_exit_failures_are_all_kept() {
    // C's enter fails; B's exit fails (A sees B's failure, the newest); A's exit fails too.
    let log = log();
    let (a, b, c) = triple(&log);
    let result = run_triple((
        a.exit_fails("unlock failed"),
        b.exit_fails(500),
        c.enter_fails(Nak::Busy),
    ));
    assert_eq!(
        opened(result),
        Err(Error::Enter((
            Some(Fault::Exit("unlock failed")),
            Some(Fault::Exit(500)),
            Some(Fault::Enter(Nak::Busy))
        )))
    );
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "B exit Failure(Busy)",
            "A exit Failure(500)"
        ]
    );
}

#[test]
fn a_pair_enter_failure_then_exit_failure() {
    // B's enter fails, then A's exit fails.
    let log = log();
    let result = futures_executor::block_on(with(
        (
            manager::<&str>(&log, 'A').exit_fails("close failed"),
            manager::<u16>(&log, 'B').enter_fails(404),
        ),
        async |_| (),
    ));
    let Err(Error::Enter(group)) = result else {
        panic!("expected an enter failure, got {result:?}")
    };
    assert_eq!(
        group.into_faults(),
        (Some(Fault::Exit("close failed")), Some(Fault::Enter(404)))
    );
    assert_eq!(events(&log), ["A enter", "B enter", "A exit Failure(404)"]);
}

// ---------------------------------------------------------------------------------------------
// Exits fail
// ---------------------------------------------------------------------------------------------

#[test]
fn each_exit_fails_alone() {
    for position in 0..3 {
        let log = log();
        let (mut a, mut b, mut c) = triple(&log);
        match position {
            0 => a = a.exit_fails("a"),
            1 => b = b.exit_fails(2),
            _ => c = c.exit_fails(Nak::Busy),
        }
        let result = run_triple((a, b, c));
        let expected: TripleFaults = match position {
            0 => (Some(Fault::Exit("a")), None, None),
            1 => (None, Some(Fault::Exit(2)), None),
            _ => (None, None, Some(Fault::Exit(Nak::Busy))),
        };
        assert_eq!(
            opened(result),
            Err(Error::Exit(expected)),
            "exit {position} fails"
        );
        // The exits to the left of the failing one see its error; those to its right saw the
        // body's success.
        let seen: Vec<String> = events(&log).into_iter().skip(3).collect();
        let expected_seen: Vec<&str> = match position {
            0 => vec!["C exit Success", "B exit Success", "A exit Success"],
            1 => vec!["C exit Success", "B exit Success", "A exit Failure(2)"],
            _ => vec![
                "C exit Success",
                "B exit Failure(Busy)",
                "A exit Failure(Busy)",
            ],
        };
        assert_eq!(seen, expected_seen, "exit {position} fails");
    }
}

#[test]
fn every_exit_fails_and_each_sees_the_newest_failure() {
    let log = log();
    let (a, b, c) = triple(&log);
    let result = run_triple((a.exit_fails("a"), b.exit_fails(2), c.exit_fails(Nak::Busy)));
    assert_eq!(
        opened(result),
        Err(Error::Exit((
            Some(Fault::Exit("a")),
            Some(Fault::Exit(2)),
            Some(Fault::Exit(Nak::Busy))
        )))
    );
    assert_eq!(
        events(&log)[3..],
        [
            "C exit Success",
            "B exit Failure(Busy)",
            "A exit Failure(2)"
        ]
    );
}

#[test]
fn the_body_fails_then_two_exits_fail() {
    let log = log();
    let (a, b, c) = triple(&log);
    let result = futures_executor::block_on(with(
        (a.exit_fails("a"), b, c.exit_fails(Nak::Busy)),
        async |_| Err::<(), _>(BodyError(1)),
    ));
    assert_eq!(
        opened(result),
        Err(Error::BodyAndExit {
            body: BodyError(1),
            exit: (Some(Fault::Exit("a")), None, Some(Fault::Exit(Nak::Busy)))
        })
    );
    assert_eq!(
        events(&log)[3..],
        [
            "C exit Failure(BodyError(1))",
            "B exit Failure(Busy)",
            "A exit Failure(Busy)"
        ]
    );
}

/// An exit written by hand that downcasts what it sees (the lock sees the socket's error).
struct Inspect {
    seen: Rc<RefCell<Option<u16>>>,
}

impl AsyncEnter for Inspect {
    type Resource = ();
    type Error = core::convert::Infallible;
    type Exit = Self;
    type Enter = core::future::Ready<Result<((), Self), Self::Error>>;

    fn enter(self) -> Self::Enter {
        core::future::ready(Ok(((), self)))
    }
}

impl AsyncExit<()> for Inspect {
    type Error = core::convert::Infallible;
    type Future<'o> = core::future::Ready<Result<(), Self::Error>>;

    fn exit<'o>(self, (): (), outcome: Outcome<'o>) -> Self::Future<'o> {
        *self.seen.borrow_mut() = outcome
            .failure()
            .and_then(|failure| failure.downcast_ref::<u16>().copied());
        core::future::ready(Ok(()))
    }
}

#[test]
fn an_outer_exit_downcasts_the_inner_failure() {
    let log = log();
    let seen = Rc::new(RefCell::new(None));
    let result = futures_executor::block_on(with(
        (
            Inspect { seen: seen.clone() },
            manager::<u16>(&log, 'B').exit_fails(451),
        ),
        async |_| (),
    ));
    assert_eq!(
        result
            .map_err(Error::into_manager)
            .map_err(GroupError::into_faults),
        Err((None, Some(Fault::Exit(451))))
    );
    assert_eq!(*seen.borrow(), Some(451));
}

// ---------------------------------------------------------------------------------------------
// Flattening, Display, source
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum AppError {
    Lock(&'static str),
    Io(u16),
    Device(Nak),
    Body(u8),
}

impl From<&'static str> for AppError {
    fn from(e: &'static str) -> Self {
        AppError::Lock(e)
    }
}
impl From<u16> for AppError {
    fn from(e: u16) -> Self {
        AppError::Io(e)
    }
}
impl From<Nak> for AppError {
    fn from(e: Nak) -> Self {
        AppError::Device(e)
    }
}
impl From<BodyError> for AppError {
    fn from(e: BodyError) -> Self {
        AppError::Body(e.0)
    }
}

async fn app(m: Triple, body_fails: bool) -> Result<u32, AppError> {
    let n = with(m, async |(a, _, _)| {
        if body_fails {
            Err(BodyError(7))
        } else {
            Ok(a.n + 1)
        }
    })
    .await
    .map_err(Error::collapse_group::<AppError>)?;
    Ok(n)
}

#[test]
fn flatten_keeps_the_first_failure_in_the_callers_type() {
    futures_executor::block_on(async {
        let log = log();
        let (a, b, c) = triple(&log);
        assert_eq!(app((a, b, c), false).await, Ok(1));

        // Enter of C failed first; B's exit failure came after it.
        let (a, b, c) = triple(&log);
        let result = app((a, b.exit_fails(3), c.enter_fails(Nak::Busy)), false).await;
        assert_eq!(result, Err(AppError::Device(Nak::Busy)));

        // Exits fail right to left: C's is the first failure.
        let (a, b, c) = triple(&log);
        let result = app((a.exit_fails("x"), b.exit_fails(3), c), false).await;
        assert_eq!(result, Err(AppError::Io(3)));

        // The body's error comes first when it failed.
        let (a, b, c) = triple(&log);
        let result = app((a.exit_fails("x"), b, c), true).await;
        assert_eq!(result, Err(AppError::Body(7)));
    });
}

#[test]
fn iter_walks_the_failures_in_the_order_they_happened() {
    let log = log();
    let (a, b, c) = triple(&log);
    let result = run_triple((a.exit_fails("a"), b.exit_fails(2), c.enter_fails(Nak::Busy)));
    let Err(Error::Enter(group)) = result else {
        panic!("{result:?}")
    };
    let walked: Vec<(usize, bool, String)> = group
        .iter()
        .map(|(i, fault)| (i, fault.is_enter(), format!("{:?}", fault.inner())))
        .collect();
    assert_eq!(
        walked,
        [
            (2, true, "Busy".to_string()),
            (1, false, "2".to_string()),
            (0, false, "\"a\"".to_string())
        ]
    );
    let (i, first) = group.first().unwrap();
    assert_eq!(i, 2);
    assert_eq!(first.inner().downcast_ref::<Nak>(), Some(&Nak::Busy));
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct IoError(u16);

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i/o error {}", self.0)
    }
}

impl std::error::Error for IoError {}

#[test]
fn display_and_source_print_each_message_once() {
    type Faults2 = (Option<Fault<IoError>>, Option<Fault<Nak>>);
    let log = log();
    let result = futures_executor::block_on(with(
        (
            manager::<IoError>(&log, 'A').exit_fails(IoError(5)),
            manager::<Nak>(&log, 'B').enter_fails(Nak::Busy),
        ),
        async |_| (),
    ));
    let Err(Error::Enter(group)) = result else {
        panic!("expected an enter failure, got {result:?}")
    };
    let _: &GroupError<Faults2> = &group;
    assert_eq!(
        group.to_string(),
        "manager 2 of 2 failed to enter, then manager 1 failed to exit: i/o error 5"
    );
    let source = std::error::Error::source(&group).expect("the first failure");
    assert_eq!(source.to_string(), "device busy");

    let error: Error<_, IoError> = Error::Enter(group);
    let chain: Vec<String> =
        std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
    assert_eq!(
        chain,
        [
            "entering the resource failed",
            "manager 2 of 2 failed to enter, then manager 1 failed to exit: i/o error 5",
            "device busy"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Arrays
// ---------------------------------------------------------------------------------------------

fn sensors(log: &Log) -> [Labelled<u16>; 3] {
    [manager(log, 'A'), manager(log, 'B'), manager(log, 'C')]
}

#[test]
fn an_array_enters_left_to_right_and_exits_right_to_left() {
    let log = log();
    let result = futures_executor::block_on(with(sensors(&log), async |sensors| {
        for (i, sensor) in sensors.iter_mut().enumerate() {
            sensor.n = i as u32;
        }
        Value(sensors.iter().map(|s| s.name).collect::<String>())
    }));
    assert_eq!(result, Ok("ABC".to_string()));
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "C exit Success",
            "B exit Success",
            "A exit Success"
        ]
    );
}

#[test]
fn an_array_enter_failure_unwinds_and_keeps_every_fault() {
    let log = log();
    let [a, b, c] = sensors(&log);
    let result =
        futures_executor::block_on(with([a.exit_fails(1), b, c.enter_fails(3)], async |_| ()));
    assert_eq!(
        opened(result),
        Err(Error::Enter([
            Some(Fault::Exit(1)),
            None,
            Some(Fault::Enter(3))
        ]))
    );
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "B exit Failure(3)",
            "A exit Failure(3)"
        ]
    );
}

#[test]
fn array_exit_failures_are_seen_by_the_exits_to_the_left() {
    let log = log();
    let [a, b, c] = sensors(&log);
    let result =
        futures_executor::block_on(with([a, b.exit_fails(2), c.exit_fails(3)], async |_| {
            Err::<(), _>(BodyError(0))
        }));
    assert_eq!(
        opened(result),
        Err(Error::BodyAndExit {
            body: BodyError(0),
            exit: [None, Some(Fault::Exit(2)), Some(Fault::Exit(3))]
        })
    );
    assert_eq!(
        events(&log)[3..],
        [
            "C exit Failure(BodyError(0))",
            "B exit Failure(3)",
            "A exit Failure(2)"
        ]
    );
}

#[test]
fn an_empty_array_runs_the_body_alone() {
    let none: [Labelled<u16>; 0] = [];
    let result = futures_executor::block_on(with(none, async |r| Value(r.len())));
    assert_eq!(result, Ok(0));
}

// ---------------------------------------------------------------------------------------------
// Cancellation at every poll
// ---------------------------------------------------------------------------------------------

/// Polls `future` `polls` times (or until it is ready), then drops it.
fn poll_then_drop<F: Future>(future: F, polls: usize) -> bool {
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if future.as_mut().poll(&mut cx).is_ready() {
            return true;
        }
    }
    false
}

/// Checks a log after a drop: every manager that entered got exactly one of exit or cancel
/// (exit only if its exit started), cancels ran right to left, and after the drop nothing
/// but drops and cancels happened.
fn check_cancellation(log: &[String], names: &[char]) {
    let mut cancels = Vec::new();
    for name in names {
        let entered = log.contains(&format!("{name} enter"));
        let exits = log
            .iter()
            .filter(|e| e.starts_with(&format!("{name} exit ")) && !e.ends_with("dropped"))
            .count();
        let cancelled = log
            .iter()
            .filter(|e| **e == format!("{name} cancel"))
            .count();
        assert!(exits + cancelled <= 1, "{name}: {log:?}");
        if cancelled == 1 {
            assert!(entered, "{name} cancelled without entering: {log:?}");
            cancels.push(*name);
        }
    }
    let order: Vec<char> = log
        .iter()
        .filter_map(|e| e.strip_suffix(" cancel"))
        .map(|name| name.chars().next().unwrap())
        .collect();
    let mut right_to_left = cancels.clone();
    right_to_left.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, right_to_left, "cancels right to left: {log:?}");
}

#[test]
fn a_tuple_dropped_at_every_poll_cancels_what_it_entered() {
    // Every phase is `Pending` twice: 3 enters, the body, 3 exits = 7 phases, 3 polls each.
    for polls in 0..=22 {
        for failing_enter in [None, Some(1), Some(2)] {
            let log = log();
            let (a, b, c) = (
                manager::<&str>(&log, 'A').pending(2),
                manager::<u16>(&log, 'B').pending(2),
                manager::<Nak>(&log, 'C').pending(2),
            );
            let (b, c) = match failing_enter {
                Some(1) => (b.enter_fails(1), c),
                Some(2) => (b, c.enter_fails(Nak::Busy)),
                _ => (b, c),
            };
            let body_log = log.clone();
            let finished = poll_then_drop(
                with((a, b, c), async move |_| {
                    body_log.borrow_mut().push("body".into());
                    Step::new(&body_log, "body".into(), 2, ()).await;
                    Ok::<_, BodyError>(())
                }),
                polls,
            );
            let log = events(&log);
            check_cancellation(&log, &['A', 'B', 'C']);
            if finished {
                assert!(!log.iter().any(|e| e.ends_with("cancel")), "{log:?}");
            }
            // Whatever was entered and not exited was cancelled, and the running future of
            // the phase was dropped before the first cancel.
            if let Some(first_cancel) = log.iter().position(|e| e.ends_with("cancel")) {
                let dropped = log.iter().position(|e| e.ends_with("dropped"));
                assert!(
                    dropped.is_some_and(|d| d < first_cancel),
                    "the running future is dropped first: {log:?}"
                );
            }
        }
    }
}

#[test]
fn a_tuple_dropped_mid_body_cancels_every_manager_right_to_left() {
    let log = log();
    let body_log = log.clone();
    let finished = poll_then_drop(
        with(
            (
                manager::<&str>(&log, 'A').pending(0),
                manager::<u16>(&log, 'B').pending(0),
                manager::<Nak>(&log, 'C').pending(0),
            ),
            async move |_| {
                Step::new(&body_log, "body".into(), 5, ()).await;
                Value(())
            },
        ),
        1,
    );
    assert!(!finished);
    assert_eq!(
        events(&log),
        [
            "A enter",
            "B enter",
            "C enter",
            "body dropped",
            "C cancel",
            "B cancel",
            "A cancel"
        ]
    );
}

#[test]
fn a_tuple_dropped_mid_exit_cancels_the_managers_to_the_left() {
    // Polls: 1 runs enters and body and starts C's exit (Pending); 2 finishes C's exit and
    // starts B's (Pending). Dropped then: B's exit future is dropped, A is cancelled.
    let log = log();
    let finished = poll_then_drop(
        with(
            (
                manager::<&str>(&log, 'A').pending(0),
                manager::<u16>(&log, 'B').pending(1),
                manager::<Nak>(&log, 'C').pending(0),
            ),
            async |_| (),
        ),
        2,
    );
    assert!(!finished);
    let log = events(&log);
    assert_eq!(
        log[log.len() - 3..],
        ["B exit Success", "B exit dropped", "A cancel"],
        "{log:?}"
    );
}

#[test]
fn an_array_dropped_at_every_poll_cancels_what_it_entered() {
    for polls in 0..=22 {
        for failing_enter in [None, Some(1), Some(2)] {
            let log = log();
            let [a, b, c] = sensors(&log).map(|m| m.pending(2));
            let (b, c) = match failing_enter {
                Some(1) => (b.enter_fails(1), c),
                Some(2) => (b, c.enter_fails(2)),
                _ => (b, c),
            };
            let body_log = log.clone();
            let finished = poll_then_drop(
                with([a, b, c], async move |_| {
                    Step::new(&body_log, "body".into(), 2, ()).await;
                    Value(())
                }),
                polls,
            );
            let log = events(&log);
            check_cancellation(&log, &['A', 'B', 'C']);
            if finished {
                assert!(!log.iter().any(|e| e.ends_with("cancel")), "{log:?}");
            }
        }
    }
}

#[test]
fn an_array_dropped_mid_exit_cancels_the_managers_to_the_left() {
    let log = log();
    let [a, b, c] = sensors(&log);
    let finished = poll_then_drop(
        with([a.pending(0), b.pending(1), c.pending(0)], async |_| ()),
        2,
    );
    assert!(!finished);
    let log = events(&log);
    assert_eq!(
        log[log.len() - 3..],
        ["B exit Success", "B exit dropped", "A cancel"],
        "{log:?}"
    );
}

/// Polls `future` to the end inside `catch_unwind`, then drops it; returns the panic's
/// payload (the test fails if there was none) and the log as it was before the drop.
fn panics_then_drop<F: Future>(future: F, log: &Log) -> (MethodPanic, Vec<String>) {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    let caught = catch_unwind(AssertUnwindSafe(|| {
        while future.as_mut().poll(&mut cx).is_pending() {}
    }));
    let payload = caught.expect_err("a member's method panics");
    let before_drop = events(log);
    drop(future);
    (
        *payload
            .downcast::<MethodPanic>()
            .expect("the member's payload"),
        before_drop,
    )
}

/// A panic inside a member's `enter()` method (not its future): the members already entered
/// get `cancel`, right to left, exactly once — a tuple as an array.
#[test]
fn a_panic_in_enter_cancels_the_members_already_entered() {
    let log = log();
    let group = (
        manager::<u16>(&log, 'A'),
        manager::<u16>(&log, 'B'),
        manager::<u16>(&log, 'C').enter_panics(),
    );
    let (payload, _) = panics_then_drop(with(group, async |_| ()), &log);
    assert_eq!(payload, MethodPanic('C'));
    let seen = events(&log);
    check_cancellation(&seen, &['A', 'B', 'C']);
    assert_eq!(
        seen,
        ["A enter", "B enter", "C enter", "B cancel", "A cancel"],
        "tuple"
    );

    let log = self::log();
    let [a, b, c] = sensors(&log);
    let (payload, _) = panics_then_drop(with([a, b, c.enter_panics()], async |_| ()), &log);
    assert_eq!(payload, MethodPanic('C'));
    assert_eq!(
        events(&log),
        ["A enter", "B enter", "C enter", "B cancel", "A cancel"],
        "array"
    );

    // The middle one: only the first was entered.
    let log = self::log();
    let group = (
        manager::<u16>(&log, 'A'),
        manager::<u16>(&log, 'B').enter_panics(),
        manager::<u16>(&log, 'C'),
    );
    let (payload, _) = panics_then_drop(with(group, async |_| ()), &log);
    assert_eq!(payload, MethodPanic('B'));
    assert_eq!(events(&log), ["A enter", "B enter", "A cancel"], "tuple");
}

/// A panic inside a member's `exit()` method: its resource went into `exit()`, so it gets
/// neither exit nor cancel; the members to its left, not exited, get `cancel`, right to left,
/// exactly once — a tuple as an array, whichever member panics.
#[test]
fn a_panic_in_exit_cancels_the_members_not_exited() {
    for panicking in ['A', 'B', 'C'] {
        let tuple_log = log();
        let member = |name| {
            let m = manager::<u16>(&tuple_log, name).pending(0);
            if name == panicking {
                m.exit_panics()
            } else {
                m
            }
        };
        let group = (member('A'), member('B'), member('C'));
        let (payload, _) = panics_then_drop(with(group, async |_| ()), &tuple_log);
        assert_eq!(payload, MethodPanic(panicking));

        let array_log = log();
        let [a, b, c] = sensors(&array_log).map(|m| {
            let m = m.pending(0);
            if m.name == panicking {
                m.exit_panics()
            } else {
                m
            }
        });
        let (payload, _) = panics_then_drop(with([a, b, c], async |_| ()), &array_log);
        assert_eq!(payload, MethodPanic(panicking));

        let tuple_events = events(&tuple_log);
        assert_eq!(tuple_events, events(&array_log), "a tuple as an array");
        check_cancellation(&tuple_events, &['A', 'B', 'C']);
        let exited: String = ['C', 'B', 'A']
            .into_iter()
            .take_while(|&name| name != panicking)
            .map(|name| format!("{name} exit Success, "))
            .collect();
        let cancelled: String = ['C', 'B', 'A']
            .into_iter()
            .skip_while(|&name| name != panicking)
            .skip(1)
            .map(|name| format!("{name} cancel, "))
            .collect();
        assert_eq!(
            tuple_events[3..].join(", ") + ", ",
            format!("{exited}{panicking} exit Success, {cancelled}"),
            "{panicking} panics in exit()"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Nesting groups, arity 8, dependent managers, sizes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_tuple_of_eight_and_a_tuple_inside_a_tuple() {
    let log = log();
    let m = |name| manager::<u16>(&log, name).pending(0);
    let result = futures_executor::block_on(with(
        (
            m('A'),
            m('B'),
            m('C'),
            m('D'),
            m('E'),
            m('F'),
            m('G'),
            m('H').exit_fails(8),
        ),
        async |(a, _, _, _, _, _, _, h)| Value(a.name as u32 + h.name as u32),
    ));
    let Err(Error::Exit(group)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(group.faults().7, Some(Fault::Exit(8)));
    assert_eq!(
        events(&log)[8..],
        [
            "H exit Success",
            "G exit Failure(8)",
            "F exit Failure(8)",
            "E exit Failure(8)",
            "D exit Failure(8)",
            "C exit Failure(8)",
            "B exit Failure(8)",
            "A exit Failure(8)"
        ]
    );

    // A group is a manager, so it can be a member of another group.
    let log2 = self::log();
    let result = futures_executor::block_on(with(
        (
            manager::<&str>(&log2, 'A'),
            (
                manager::<u16>(&log2, 'B'),
                manager::<u16>(&log2, 'C').exit_fails(3),
            ),
        ),
        async |(a, (b, c))| Value([a.name, b.name, c.name]),
    ));
    assert!(matches!(result, Err(Error::Exit(_))));
    assert_eq!(
        events(&log2)[3..],
        [
            "C exit Success",
            "B exit Failure(3)",
            // The inner group failed: A sees its `GroupError`, as an outer `with` would see
            // the inner one's `Error` in the nested form.
            "A exit Failure(GroupError { faults: (None, Some(Exit(3))) })"
        ]
    );
}

#[test]
fn an_infallible_member_beside_fallible_ones() {
    let log = log();
    let result = futures_executor::block_on(with(
        (null_context(7_u8), manager::<u16>(&log, 'B').exit_fails(1)),
        async |(seven, b)| Value(*seven as u32 + b.n),
    ));
    let Err(Error::Exit(group)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(group.faults().1, Some(Fault::Exit(1)));
    assert!(group.faults().0.is_none());
}

#[test]
fn a_tuple_of_three_is_no_larger_than_three_nested_withs() {
    let log = log();
    let (a, b, c) = triple(&log);
    let tuple = with((a, b, c), async |(a, b, c)| {
        Ok::<_, BodyError>(a.n + b.n + c.n)
    });
    let (a, b, c) = triple(&log);
    let nested = with(a, async |a| {
        with(b, async |b| {
            with(c, async |c| Ok::<_, BodyError>(a.n + b.n + c.n)).await
        })
        .await
    });
    let (tuple_size, nested_size) = (size_of_val(&tuple), size_of_val(&nested));
    assert!(
        tuple_size <= nested_size,
        "tuple {tuple_size} B, nested {nested_size} B"
    );
    drop((tuple, nested));
}

#[test]
fn a_plainly_polled_group_exit_shows_every_member_the_error() {
    // `exit` called by hand and its future polled as any future: the outcome is borrowed for
    // the future's whole run, so the left member sees the body's error itself, not a
    // stand-in. (Dropping `error` before the future is a compile error, E0597.)
    let log = log();
    let (a, b) = (
        manager::<u16>(&log, 'A').pending(0),
        manager::<u16>(&log, 'B').pending(0),
    );
    let entered = futures_executor::block_on(AsyncEnter::enter((a, b)));
    let Ok((resources, exit)) = entered else {
        panic!("entered")
    };
    let error = BodyError(4);
    let future = exit.exit(
        resources,
        Outcome::Failure(async_with::Failure::new(&error)),
    );
    assert_eq!(futures_executor::block_on(future), Ok(()));
    let log = events(&log);
    assert_eq!(log[2], "B exit Failure(BodyError(4))");
    assert_eq!(log[3], "A exit Failure(BodyError(4))", "{log:?}");
}
