//! One rule for what each exit sees (issue 17): the newest failure before it, or else the
//! outcome its runner was given, whoever runs it — a tuple, an array, an exit stack — and
//! through a pass-through wrapper written the obvious way (forward `exit` to the inner
//! handle). Every exit here records what it sees only after an await, so the outcome must stay
//! lent across it.

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, from_fns, with};
use futures_executor::block_on;
use pin_project_lite::pin_project;
use support::Yield;

mod support;

type Log = RefCell<Vec<String>>;

#[derive(Debug, PartialEq)]
struct BodyError(u32);

#[derive(Debug, PartialEq, Clone, Copy)]
struct Fail(char);

/// A member that records what its exit sees, after an await, and fails if told to.
fn member(log: &Log, name: char, fails: bool) -> impl AsyncEnter<Resource = char, Error = Fail> {
    from_fns(
        async move || Ok(name),
        async move |name: char, outcome: Outcome<'_>| {
            Yield::new(1).await;
            log.borrow_mut().push(format!("{name} sees {outcome:?}"));
            if fails { Err(Fail(name)) } else { Ok(()) }
        },
    )
}

/// A third-party wrapper, written the obvious way: enter and exit forwarded to the inner
/// manager (here it only counts the exits it forwards).
struct Wrapped<'l, M>(M, &'l Log);

struct WrappedExit<'l, H>(H, &'l Log);

pin_project! {
    struct WrappedEnter<'l, F> {
        #[pin]
        inner: F,
        log: &'l Log,
    }
}

impl<'l, F, R, H, X> Future for WrappedEnter<'l, F>
where
    F: Future<Output = Result<(R, H), X>>,
{
    type Output = Result<(R, WrappedExit<'l, H>), X>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let log = *this.log;
        this.inner
            .poll(cx)
            .map(|entered| entered.map(|(resource, exit)| (resource, WrappedExit(exit, log))))
    }
}

impl<'l, M: AsyncEnter> AsyncEnter for Wrapped<'l, M> {
    type Resource = M::Resource;
    type Error = M::Error;
    type Exit = WrappedExit<'l, M::Exit>;
    type Enter = WrappedEnter<'l, M::Enter>;

    fn enter(self) -> Self::Enter {
        WrappedEnter {
            inner: self.0.enter(),
            log: self.1,
        }
    }
}

impl<R, H: AsyncExit<R>> AsyncExit<R> for WrappedExit<'_, H> {
    type Error = H::Error;
    type Future<'o> = H::Future<'o>;

    fn exit<'o>(self, resource: R, outcome: Outcome<'o>) -> Self::Future<'o> {
        self.1.borrow_mut().push("wrapper forwards".to_owned());
        self.0.exit(resource, outcome)
    }

    fn cancel(self, resource: R) {
        self.0.cancel(resource);
    }
}

fn wrapped<'l>(
    log: &'l Log,
    name: char,
    fails: bool,
) -> Wrapped<'l, impl AsyncEnter<Resource = char, Error = Fail> + 'l> {
    Wrapped(member(log, name, fails), log)
}

/// What the three exits see, right to left, when `B` (wrapped) sits between `A` and `C` and
/// `failing` names the one member whose exit fails; the body fails with `BodyError(7)`.
fn expected(failing: char) -> Vec<String> {
    let body = "Failure(BodyError(7))".to_owned();
    let newest = |before: &[char]| match before.iter().find(|&&c| c == failing) {
        Some(c) => format!("Failure(Fail({c:?}))"),
        None => body.clone(),
    };
    vec![
        format!("C sees {}", newest(&[])),
        "wrapper forwards".to_owned(),
        format!("B sees {}", newest(&['C'])),
        format!("A sees {}", newest(&['C', 'B'])),
    ]
}

async fn failing_body<R>(_: &mut R) -> Result<(), BodyError> {
    Yield::new(1).await;
    Err(BodyError(7))
}

#[test]
fn a_tuple_shows_a_wrapped_member_the_newest_failure_and_its_inner_exit_failing() {
    for failing in ['B', 'C'] {
        let log = Log::default();
        let managers = (
            member(&log, 'A', false),
            wrapped(&log, 'B', failing == 'B'),
            member(&log, 'C', failing == 'C'),
        );
        let result = block_on(with(managers, failing_body));
        let Err(Error::BodyAndExit { body, exit }) = result else {
            panic!("{result:?}")
        };
        assert_eq!(body, BodyError(7));
        let faults = exit.into_faults();
        assert_eq!(faults.1.is_some(), failing == 'B');
        assert_eq!(faults.2.is_some(), failing == 'C');
        assert_eq!(*log.borrow(), expected(failing), "failing: {failing}");
    }
}

#[test]
fn an_array_shows_a_wrapped_member_the_newest_failure_and_its_inner_exit_failing() {
    for failing in ['B', 'C'] {
        let log = Log::default();
        let managers = [
            wrapped(&log, 'A', false),
            wrapped(&log, 'B', failing == 'B'),
            wrapped(&log, 'C', failing == 'C'),
        ];
        let result = block_on(with(managers, failing_body));
        let Err(Error::BodyAndExit { body, exit }) = result else {
            panic!("{result:?}")
        };
        assert_eq!(body, BodyError(7));
        let faults = exit.into_faults();
        assert_eq!(faults.iter().flatten().count(), 1);
        // Every member is wrapped here: each forwards once.
        let mut want = expected(failing);
        want.insert(0, "wrapper forwards".to_owned());
        want.insert(4, "wrapper forwards".to_owned());
        assert_eq!(*log.borrow(), want, "failing: {failing}");
    }
}

#[cfg(feature = "alloc")]
#[test]
fn a_stack_shows_a_wrapped_entry_the_newest_failure_and_its_inner_exit_failing() {
    use async_with::ExitStack;

    for failing in ['B', 'C'] {
        let log = Log::default();
        let result = block_on(with(
            ExitStack::<Fail>::new(),
            async |stack| -> Result<(), BodyError> {
                stack.enter_context(member(&log, 'A', false)).await.unwrap();
                stack
                    .enter_context(wrapped(&log, 'B', failing == 'B'))
                    .await
                    .unwrap();
                stack
                    .enter_context(member(&log, 'C', failing == 'C'))
                    .await
                    .unwrap();
                failing_body(stack).await
            },
        ));
        let Err(Error::BodyAndExit { body, exit }) = result else {
            panic!("{result:?}")
        };
        assert_eq!(body, BodyError(7));
        assert_eq!(exit.into_vec(), [Fail(failing)]);
        assert_eq!(*log.borrow(), expected(failing), "failing: {failing}");
    }
}

#[cfg(feature = "alloc")]
#[test]
fn a_stack_closed_by_hand_with_an_outcome_shows_it_across_awaits() {
    use async_with::{ExitStack, Failure};

    let log = Log::default();
    let error = BodyError(7);
    let mut stack = ExitStack::<Fail>::new();
    block_on(async {
        stack.enter_context(member(&log, 'A', false)).await.unwrap();
        stack.enter_context(wrapped(&log, 'B', true)).await.unwrap();
        stack.enter_context(member(&log, 'C', false)).await.unwrap();
        let closed = stack
            .close_with(Outcome::Failure(Failure::new(&error)))
            .await;
        assert_eq!(closed.unwrap_err().into_vec(), [Fail('B')]);
    });
    assert_eq!(*log.borrow(), expected('B'));
}

/// Reads the outcome it holds when dropped, so that a dangling borrow would be undefined
/// behaviour (Miri) and a drop that should not happen is counted.
#[cfg(feature = "alloc")]
struct ReadsOnDrop<'o, 'c>(Outcome<'o>, &'c core::cell::Cell<usize>);

#[cfg(feature = "alloc")]
impl Drop for ReadsOnDrop<'_, '_> {
    fn drop(&mut self) {
        assert!(!format!("{:?}", self.0).is_empty());
        self.1.set(self.1.get() + 1);
    }
}

/// Where a leaked future is kept, so that Miri's leak check sees it as reachable.
#[cfg(feature = "alloc")]
static LEAKED: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

#[cfg(feature = "alloc")]
#[test]
fn a_close_leaked_mid_way_takes_its_entries_with_it() {
    use async_with::{ExitStack, Failure};
    use core::task::Waker;

    let drops = core::cell::Cell::new(0);
    let mut stack = ExitStack::<Fail>::new();
    block_on(async {
        let entry = from_fns(
            async || Ok::<_, Fail>(()),
            async |(), outcome: Outcome<'_>| {
                let _reads = ReadsOnDrop(outcome, &drops);
                Yield::new(1).await;
                Ok(())
            },
        );
        stack.enter_context(entry).await.unwrap();
    });
    {
        let error = BodyError(3);
        let mut close = Box::pin(stack.close_with(Outcome::Failure(Failure::new(&error))));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            close.as_mut().poll(&mut cx).is_pending(),
            "the entry's exit is under way"
        );
        // Leaked: its entry's exit future, which borrows `error`, is never dropped. (The
        // address is kept where Miri's leak check can reach it.)
        let leaked = Box::into_raw(Box::new(close));
        LEAKED.store(leaked.cast(), std::sync::atomic::Ordering::Relaxed);
    } // `error` is gone here.
    // The entries left with the close: the stack has none to cancel, so dropping it does not
    // drop the exit future that borrowed `error`.
    assert!(stack.is_closed());
    assert_eq!(stack.len(), 0);
    drop(stack);
    assert_eq!(drops.get(), 0);
}
