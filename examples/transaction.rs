//! A transaction that commits when the body returns `Ok` and rolls back when it returns `Err`,
//! on a simulated asynchronous key-value store — without boxing the body.
//!
//! The transaction manager is written by hand (`AsyncEnter` + `AsyncExit`, with named futures,
//! as a library would); its exit looks at the body's error and logs it before rolling back.
//! The audit manager is built from two closures (`from_fns`); its exit awaits a round trip and
//! then writes the body's error, still lent, into the audit line.
//!
//! Run it with `cargo run --example transaction`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::convert::Infallible;

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, from_fns, with};

/// A store shared by reference; every call takes one round trip (one `Pending`).
struct Store {
    data: RefCell<BTreeMap<&'static str, i64>>,
    log: RefCell<Vec<String>>,
    fail_commit: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum DbError {
    CommitFailed,
}

#[derive(Debug, Clone, PartialEq)]
enum TransferError {
    InsufficientFunds { balance: i64, wanted: i64 },
}

/// A transaction: reads see the store plus the pending writes; writes are kept until commit.
struct Tx<'s> {
    store: &'s Store,
    writes: BTreeMap<&'static str, i64>,
}

impl Tx<'_> {
    async fn get(&self, key: &'static str) -> i64 {
        Then::new(()).await; // a round trip to the store
        match self.writes.get(key) {
            Some(value) => *value,
            None => self.store.data.borrow().get(key).copied().unwrap_or(0),
        }
    }

    async fn set(&mut self, key: &'static str, value: i64) {
        Then::new(()).await; // a round trip to the store
        self.writes.insert(key, value);
    }
}

/// The manager: `begin(&store)`.
struct Begin<'s>(&'s Store);

/// The exit handle: commits or rolls back.
struct Finish;

impl<'s> AsyncEnter for Begin<'s> {
    type Resource = Tx<'s>;
    type Error = DbError;
    type Exit = Finish;
    type Enter = Then<Result<(Tx<'s>, Finish), DbError>>;

    fn enter(self) -> Self::Enter {
        self.0.log.borrow_mut().push("BEGIN".into());
        let tx = Tx {
            store: self.0,
            writes: BTreeMap::new(),
        };
        Then::new(Ok((tx, Finish)))
    }
}

impl<'s> AsyncExit<Tx<'s>> for Finish {
    type Error = DbError;
    type Future<'o> = Then<Result<(), DbError>>;

    fn exit<'o>(self, tx: Tx<'s>, outcome: Outcome<'o>) -> Self::Future<'o> {
        let mut log = tx.store.log.borrow_mut();
        if outcome.is_success() {
            if tx.store.fail_commit {
                log.push("COMMIT failed".into());
                return Then::new(Err(DbError::CommitFailed));
            }
            log.push(format!("COMMIT {:?}", tx.writes));
            tx.store.data.borrow_mut().extend(tx.writes);
        } else {
            // Exit sees the body's error by reference: log it, then roll back.
            let why = match outcome
                .failure()
                .and_then(|f| f.downcast_ref::<TransferError>())
            {
                Some(TransferError::InsufficientFunds { balance, wanted }) => {
                    format!("insufficient funds ({balance} < {wanted})")
                }
                None => format!("{outcome:?}"),
            };
            log.push(format!("ROLLBACK because {why}"));
        }
        Then::new(Ok(()))
    }

    fn cancel(self, tx: Tx<'s>) {
        // Dropped mid-body: nothing was written to the store, so dropping is a rollback.
        tx.store
            .log
            .borrow_mut()
            .push("ROLLBACK (cancelled)".into());
    }
}

async fn transfer(
    store: &Store,
    from: &'static str,
    to: &'static str,
    amount: i64,
) -> Result<i64, Error<DbError, TransferError>> {
    with(Begin(store), async |tx| {
        let balance = tx.get(from).await;
        if balance < amount {
            return Err(TransferError::InsufficientFunds {
                balance,
                wanted: amount,
            });
        }
        tx.set(from, balance - amount).await;
        let other = tx.get(to).await;
        tx.set(to, other + amount).await;
        Ok(balance - amount)
    })
    .await
}

/// An audit entry around a transaction: written when the transaction starts and when it has
/// ended, with how it ended. It cannot fail.
fn audit<'s>(
    store: &'s Store,
    what: &'static str,
) -> impl AsyncEnter<Resource = &'static str, Error = Infallible> + 's {
    from_fns(
        async move || {
            store.log.borrow_mut().push(format!("AUDIT start: {what}"));
            Ok(what)
        },
        async move |what: &'static str, outcome: Outcome<'_>| {
            Then::new(()).await; // the audit write is a round trip too
            // The body's error is still lent after the await: the audit line names it.
            let line = format!("AUDIT end: {what} ({outcome:?})");
            store.log.borrow_mut().push(line);
            Ok(())
        },
    )
}

/// The application's error: every failure of the audited transfer, flattened into one type.
#[derive(Debug, PartialEq)]
enum AppError {
    Db(DbError),
    Transfer(TransferError),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::Db(e)
    }
}

impl From<TransferError> for AppError {
    fn from(e: TransferError) -> Self {
        AppError::Transfer(e)
    }
}

impl From<Infallible> for AppError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// Two managers in one `with`, as Python's `async with audit(..), begin(..) as tx:` — the
/// audit entry is entered first and exited last, after the transaction has committed or
/// rolled back.
async fn audited_transfer(
    store: &Store,
    from: &'static str,
    to: &'static str,
    amount: i64,
) -> Result<i64, AppError> {
    with(
        (audit(store, "transfer"), Begin(store)),
        async |(_audit, tx)| -> Result<i64, AppError> {
            let balance = tx.get(from).await;
            if balance < amount {
                return Err(TransferError::InsufficientFunds {
                    balance,
                    wanted: amount,
                })?;
            }
            tx.set(from, balance - amount).await;
            let other = tx.get(to).await;
            tx.set(to, other + amount).await;
            Ok(balance - amount)
        },
    )
    .await
    .map_err(Error::collapse_group)
}

fn main() {
    let store = Store {
        data: RefCell::new(BTreeMap::from([("alice", 100), ("bob", 20)])),
        log: RefCell::new(Vec::new()),
        fail_commit: false,
    };

    let ok = futures_executor::block_on(transfer(&store, "alice", "bob", 30));
    println!("transfer 30 alice -> bob: {ok:?}");
    let too_much = futures_executor::block_on(transfer(&store, "bob", "alice", 500));
    println!("transfer 500 bob -> alice: {too_much:?}");
    for line in store.log.borrow().iter() {
        println!("  store: {line}");
    }
    println!("balances: {:?}", store.data.borrow());
    assert_eq!(ok, Ok(70));
    assert!(matches!(
        too_much,
        Err(Error::Body(TransferError::InsufficientFunds { .. }))
    ));
    assert_eq!(
        *store.data.borrow(),
        BTreeMap::from([("alice", 70), ("bob", 50)])
    );

    // Body fails and commit is never tried; body succeeds but commit fails: both reach the
    // caller as distinct errors.
    let flaky = Store {
        fail_commit: true,
        ..store
    };
    let lost = futures_executor::block_on(transfer(&flaky, "alice", "bob", 10));
    println!("transfer with a failing commit: {lost:?}");
    assert_eq!(lost, Err(Error::Exit(DbError::CommitFailed)));
    assert_eq!(flaky.data.borrow()["alice"], 70, "nothing was written");

    // A tuple of managers: the audit entry around the transaction.
    let store = Store {
        fail_commit: false,
        ..flaky
    };
    store.log.borrow_mut().clear();
    let audited = futures_executor::block_on(audited_transfer(&store, "alice", "bob", 5));
    let refused = futures_executor::block_on(audited_transfer(&store, "alice", "bob", 1000));
    println!("audited transfer 5 alice -> bob: {audited:?}");
    println!("audited transfer 1000 alice -> bob: {refused:?}");
    for line in store.log.borrow().iter() {
        println!("  store: {line}");
    }
    assert_eq!(audited, Ok(65));
    assert!(matches!(
        refused,
        Err(AppError::Transfer(TransferError::InsufficientFunds { .. }))
    ));
    assert_eq!(
        store.log.borrow().as_slice(),
        [
            "AUDIT start: transfer",
            "BEGIN",
            r#"COMMIT {"alice": 65, "bob": 55}"#,
            "AUDIT end: transfer (Success)",
            "AUDIT start: transfer",
            "BEGIN",
            "ROLLBACK because Failure(Transfer(InsufficientFunds { balance: 65, wanted: 1000 }))",
            "AUDIT end: transfer (Failure(Transfer(InsufficientFunds { balance: 65, wanted: 1000 })))",
        ]
    );
}

/// A named future (as a hand-written driver would have) that answers after one round trip:
/// `Pending` once, then `Ready` with its value.
struct Then<T> {
    value: Option<T>,
    waited: bool,
}

impl<T> Then<T> {
    fn new(value: T) -> Self {
        Then {
            value: Some(value),
            waited: false,
        }
    }
}

impl<T: Unpin> Future for Then<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.value.take().expect("polled after completion"))
    }
}
