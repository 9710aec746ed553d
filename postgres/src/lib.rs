//! A PostgreSQL transaction as an [`async_with`] manager, on [`tokio_postgres`].
//!
//! ```no_run
//! use async_with::{Error, with};
//! use async_with_postgres::transaction;
//!
//! # async fn run(client: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
//! // BEGIN; the body; then COMMIT if it returned Ok, ROLLBACK if it returned Err or panicked.
//! let moved = with(transaction(client), async |tx| -> Result<u64, tokio_postgres::Error> {
//!     tx.execute("UPDATE account SET balance = balance - 10 WHERE id = 1", &[]).await?;
//!     tx.execute("UPDATE account SET balance = balance + 10 WHERE id = 2", &[]).await
//! })
//! .await
//! .map_err(Error::collapse)?; // one error type on both sides: keep the first failure
//! # let _ = moved;
//! # Ok(())
//! # }
//! ```
//!
//! [`audited`] is the same transaction, recording the body's error in an audit row after it
//! undid the body's writes.
//!
//! | the body | exit | `with` resolves to |
//! |---|---|---|
//! | returns `Ok(v)` | `COMMIT` succeeds | `Ok(v)` |
//! | returns `Ok(v)` | `COMMIT` fails (a deferred constraint, a serialization failure, a lost connection); the server has rolled back | `Err(Error::Exit(e))` |
//! | returns `Err(b)` | `ROLLBACK` succeeds | `Err(Error::Body(b))`, `b` unchanged |
//! | returns `Err(b)` | `ROLLBACK` fails (the connection is gone) | `Err(Error::BodyAndExit { body: b, exit: e })` |
//! | panics | `ROLLBACK`, then the panic resumes | the panic |
//! | is dropped (a timeout, `select!`, an aborted task) | see below | nothing: the future is gone |
//!
//! # Cancellation
//!
//! A dropped future cannot await, so the asynchronous exit does not run when the `with` is
//! dropped mid-body. The body's future is dropped first (with any query future it was
//! awaiting), then the [`Transaction`] is dropped, and tokio-postgres's own `Drop` for it queues
//! a `ROLLBACK` on the connection without waiting for the answer. The connection stays usable;
//! requests on it run in order, so the next query of the same client runs after that `ROLLBACK`.
//!
//! - If the body was waiting for something other than the database, the `ROLLBACK` runs at
//!   once (a round trip): the transaction's writes are discarded and its locks released.
//! - If the body was waiting for a query, that query keeps running on the server, since
//!   dropping its future sends nothing to the server. The `ROLLBACK` runs after it, and the
//!   transaction keeps its locks until then. To release them sooner, cancel that query:
//!   `client.cancel_token()` (taken before the `with`) and
//!   `token.cancel_query(NoTls).await` after the timeout, or bound the statement on the server
//!   with `SET LOCAL statement_timeout`.
//! - If the connection is gone, the `ROLLBACK` is not sent and the server discards the
//!   transaction when it loses the connection.
//!
//! The manager's cancellation hook is the default one, dropping the `Transaction`: the
//! `ROLLBACK` that tokio-postgres queues is the one synchronous step that can be taken.

use async_with::{Outcome, SendManager, Status, from_fns, scoped};
use tokio_postgres::{Client, Error, NoTls, Transaction, TransactionBuilder};

/// A transaction on `client`: `BEGIN` on enter; on exit `COMMIT` if the body returned `Ok`, and
/// `ROLLBACK` if it returned `Err` or panicked.
///
/// The body borrows the [`Transaction`] (`&mut`), so it can also open savepoints
/// ([`savepoint`]). Its `commit` and `rollback` take it by value and cannot be called from the
/// body: the outcome of the body decides. If the body was dropped mid-way, tokio-postgres
/// queues a `ROLLBACK` (see the crate's `# Cancellation`).
///
/// `SendManager`: the whole `with` may be spawned on a multi-threaded runtime when the body is
/// `Send` too; inside `tokio::spawn`, write a closure body as `spawnable(async |tx| ..)`
/// ([`spawnable`] says why), or use an `async fn`.
///
/// It is written as one function ([`scoped`]): `BEGIN`, lend the transaction to the body, then
/// `COMMIT` or `ROLLBACK` by how the body ended. Used as a manager (`with`, a tuple, an exit
/// stack), the closure's future lives in one heap cell per transaction, beside the round trips.
pub fn transaction(
    client: &mut Client,
) -> impl SendManager<Resource = Transaction<'_>, Error = Error> + use<'_> {
    scoped(async move |scope| {
        let tx = client.transaction().await?;
        let (tx, outcome) = scope.lend(tx).await;
        finish(tx, outcome).await
    })
}

/// A transaction with the settings of `builder` (isolation level, read only, deferrable):
/// [`transaction`] for `client.build_transaction()`.
///
/// ```no_run
/// use async_with::with;
/// use async_with_postgres::begin;
/// use tokio_postgres::IsolationLevel;
///
/// # async fn run(client: &mut tokio_postgres::Client) {
/// let serializable = client.build_transaction().isolation_level(IsolationLevel::Serializable);
/// let result = with(begin(serializable), async |tx| {
///     tx.execute("UPDATE counter SET n = n + 1", &[]).await
/// })
/// .await;
/// # let _ = result;
/// # }
/// ```
pub fn begin(
    builder: TransactionBuilder<'_>,
) -> impl SendManager<Resource = Transaction<'_>, Error = Error> + use<'_> {
    from_fns(async move || builder.start().await, finish)
}

/// A savepoint in an open transaction (a nested transaction): `SAVEPOINT` on enter; on exit
/// `RELEASE` if the body returned `Ok`, `ROLLBACK TO` it if the body returned `Err` or panicked,
/// so that only the body's own writes are undone and the outer transaction goes on.
///
/// ```no_run
/// use async_with::with;
/// use async_with_postgres::{savepoint, transaction};
///
/// # async fn run(client: &mut tokio_postgres::Client) {
/// let signed_up = with(transaction(client), async |tx| -> Result<(), tokio_postgres::Error> {
///     tx.execute("INSERT INTO account (email) VALUES ('ada@example.com')", &[]).await?;
///     // The name may be taken (a unique violation): then only this INSERT is undone.
///     let claimed = with(savepoint(tx), async |sp| {
///         sp.execute("INSERT INTO handle (name) VALUES ('ada')", &[]).await
///     })
///     .await;
///     if claimed.is_err() {
///         tx.execute("INSERT INTO handle (name) VALUES ('ada-2')", &[]).await?;
///     }
///     Ok(())
/// })
/// .await;
/// # let _ = signed_up;
/// # }
/// ```
pub fn savepoint<'t, 'c>(
    tx: &'t mut Transaction<'c>,
) -> impl SendManager<Resource = Transaction<'t>, Error = Error> + use<'t, 'c> {
    from_fns(async move || tx.transaction().await, finish)
}

/// A transaction that records why it failed: [`transaction`], except that when the body fails
/// or panics, exit undoes the body's writes, then runs `insert` with the body's error as its
/// one text parameter (`$1`, the error's `{:?}`; `"panicked"` after a panic), and commits that
/// row alone. The error is the body's own, lent to exit while it awaits these round trips on
/// the same connection, and the caller receives it afterwards unchanged.
///
/// Enter runs `BEGIN` and then `SAVEPOINT`; on failure exit runs `ROLLBACK TO SAVEPOINT` (which
/// also ends an aborted transaction, after a failed statement), the `INSERT` and `COMMIT`. So the
/// audit row and the body's writes are never both committed. If one of these statements fails,
/// nothing is committed and the `with` resolves to `Error::BodyAndExit`. Cancellation is that of
/// [`transaction`]: a dropped body writes no audit row, and tokio-postgres queues a `ROLLBACK`.
///
/// `insert` is SQL run as given: a constant of the program, never built from input.
///
/// ```no_run
/// use async_with::{Error, with};
/// use async_with_postgres::audited;
///
/// # async fn run(client: &mut tokio_postgres::Client) {
/// let audit = "INSERT INTO audit (reason) VALUES ($1)";
/// let result = with(audited(client, audit), async |tx| {
///     tx.execute("UPDATE stock SET n = n - 1 WHERE item = 42", &[]).await?;
///     tx.execute("INSERT INTO shipment (item) VALUES (42)", &[]).await
/// })
/// .await;
/// if let Err(Error::Body(e)) = &result {
///     // The UPDATE is undone, and `audit` holds one row with `e`'s text.
///     # let _ = e;
/// }
/// # }
/// ```
pub fn audited<'c>(
    client: &'c mut Client,
    insert: &'static str,
) -> impl SendManager<Resource = Transaction<'c>, Error = Error> + use<'c> {
    // One function: the savepoint's name is a local that setup and teardown share.
    scoped(async move |scope| {
        let savepoint = "async_with_audit";
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SAVEPOINT {savepoint}")).await?;
        let (tx, outcome) = scope.lend(tx).await;
        if outcome.status() == Status::Success {
            return tx.commit().await;
        }
        tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {savepoint}"))
            .await?;
        // Still lent after that round trip: the body's error itself, not a copy.
        let reason = match outcome.failure() {
            Some(error) => format!("{error:?}"),
            None => String::from("panicked"),
        };
        tx.execute(insert, &[&reason]).await?;
        tx.commit().await
    })
}

/// Passes a body closure through unchanged, so that a `with` on a [`Transaction`] can be
/// spawned: `tokio::spawn(async move { with(transaction(&mut client), spawnable(async |tx| ..)).await })`.
///
/// Without it, `tokio::spawn` (or any `+ Send` bound on a future that holds the `with`) refuses
/// a closure body with "implementation of `FnOnce` is not general enough": `with` infers the
/// closure as taking `&mut Transaction<'c>` for the one lifetime `'c` of that call, and the
/// compiler proves `Send` for the spawned future with every lifetime erased, asking the closure
/// to accept any `'c`. This function makes the closure accept any `'c`. An `async fn` taking
/// `&mut Transaction<'_>` does already, and needs no wrapper.
///
/// ```no_run
/// use async_with::with;
/// use async_with_postgres::{spawnable, transaction};
///
/// # async fn run(mut client: tokio_postgres::Client) {
/// let task = tokio::spawn(async move {
///     with(transaction(&mut client), spawnable(async |tx| {
///         tx.execute("INSERT INTO log VALUES ('from a task')", &[]).await
///     }))
///     .await
/// });
/// # let _ = task.await;
/// # }
/// ```
pub fn spawnable<F, O>(body: F) -> F
where
    F: for<'t, 'c> AsyncFnOnce(&'t mut Transaction<'c>) -> O,
{
    body
}

/// The exit of all three managers: `COMMIT` (`RELEASE`) on success, `ROLLBACK` (`ROLLBACK TO`)
/// otherwise. Stopped by a signal ([`Status::Cancelled`]), the body's future was dropped, maybe
/// in the middle of a statement that goes on running on the server and would hold the
/// `ROLLBACK` (and the locks) until it ends: exit first asks the server to cancel it.
async fn finish(tx: Transaction<'_>, outcome: Outcome<'_>) -> Result<(), Error> {
    match outcome.status() {
        Status::Success => tx.commit().await,
        Status::Cancelled => {
            // The server acts on a cancel request asynchronously, without answering, and ignores
            // it when no statement runs. Should the statement end just before the request
            // arrives, it cancels whatever runs next: a `SELECT 1` goes first to take it (its
            // error only marks the transaction aborted, which the `ROLLBACK` then ends), so
            // the `ROLLBACK` is not hit unless the request arrives later than that round trip.
            tx.cancel_token().cancel_query(NoTls).await?;
            let _ = tx.batch_execute("SELECT 1").await;
            tx.rollback().await
        }
        // Failed, panicked, or a way of ending this version does not know: nothing is committed.
        _ => tx.rollback().await,
    }
}
