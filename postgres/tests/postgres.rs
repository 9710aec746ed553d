//! `transaction`, `begin` and `savepoint` against a real PostgreSQL server.
//!
//! Every outcome is checked from a second connection: what it can see, which locks it can
//! take, and what `pg_stat_activity` says about the first connection. Each test has tables of
//! its own, so the tests run in parallel.
//!
//! Needs a server: `DATABASE_URL` holds its connection string (`host=.. port=.. user=..`).
//! `bash .ci/postgres.sh` starts a throwaway one and runs these tests against it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_with::{Error, with};
use async_with_postgres::{audited, begin, savepoint, spawnable, transaction};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Transaction};

type PgError = tokio_postgres::Error;

/// Connects as `app` (its `application_name`); the connection runs in a task whose result
/// tells how the connection ended.
async fn connect(app: &str) -> (Client, JoinHandle<Result<(), PgError>>) {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run these tests with `bash .ci/postgres.sh`");
    let mut config: Config = url.parse().expect("DATABASE_URL is a connection string");
    config.application_name(app);
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    (client, tokio::spawn(connection))
}

/// A second connection that watches the first one.
async fn observer(app: &str) -> Client {
    connect(&format!("{app}-observer")).await.0
}

async fn setup(observer: &Client, sql: &str) {
    observer.batch_execute(sql).await.expect("setup");
}

async fn count(client: &Client, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    client.query_one(&sql, &[]).await.expect("count").get(0)
}

async fn pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

/// The state of backend `pid` in `pg_stat_activity` (`idle`, `active`,
/// `idle in transaction`, ..), `None` once it is gone.
async fn state(observer: &Client, pid: i32) -> Option<String> {
    observer
        .query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .expect("pg_stat_activity")
        .map(|row| row.get(0))
}

/// The first connection is back to `idle`, outside any transaction, as seen from the second.
async fn assert_idle(observer: &Client, pid: i32) {
    assert_eq!(state(observer, pid).await.as_deref(), Some("idle"));
}

/// The client works and is outside any transaction (no transaction id is assigned in a fresh
/// autocommit statement, while one would be inside the old, writing transaction).
async fn assert_usable(client: &Client) {
    assert!(!client.is_closed());
    let xid: Option<String> = client
        .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
        .await
        .expect("the connection is usable")
        .get(0);
    assert_eq!(xid, None, "the connection is still inside a transaction");
}

/// Tries to lock row `id` of `table` without waiting: `Ok` if it is free, the error if a
/// transaction still holds it.
async fn try_lock(observer: &Client, table: &str, id: i32) -> Result<(), PgError> {
    let sql = format!("SELECT id FROM {table} WHERE id = $1 FOR UPDATE NOWAIT");
    observer.batch_execute("BEGIN").await?;
    let locked = observer.query_one(&sql, &[&id]).await.map(drop);
    observer.batch_execute("ROLLBACK").await?;
    locked
}

/// Waits (at most `limit`) until row `id` can be locked; returns how long that took.
async fn wait_for_lock(observer: &Client, table: &str, id: i32, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match try_lock(observer, table, id).await {
            Ok(()) => return start.elapsed(),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                assert!(start.elapsed() < limit, "row still locked after {limit:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

/// Waits (at most 10 s) until backend `pid` is running a statement that contains `text`.
async fn wait_until_running(observer: &Client, pid: i32, text: &str) {
    let start = Instant::now();
    loop {
        let row = observer
            .query_opt(
                "SELECT 1 FROM pg_stat_activity \
                 WHERE pid = $1 AND state = 'active' AND strpos(query, $2) > 0",
                &[&pid, &text],
            )
            .await
            .expect("pg_stat_activity");
        if row.is_some() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{text} never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the bodies of these tests fail with: the database's error, or a decision of their own.
#[derive(Debug)]
enum BodyError {
    #[allow(dead_code)] // read through `Debug` only
    Db(PgError),
    Rejected {
        id: i32,
    },
}

impl From<PgError> for BodyError {
    fn from(e: PgError) -> Self {
        BodyError::Db(e)
    }
}

#[tokio::test]
async fn body_ok_commits_and_the_row_is_visible() {
    let observer = observer("commit").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_commit; CREATE TABLE t_commit (id int PRIMARY KEY, note text)",
    )
    .await;
    let (mut client, _conn) = connect("commit").await;
    let pid = pid(&client).await;

    let inserted = with(
        transaction(&mut client),
        async |tx| -> Result<u64, PgError> {
            let n = tx
                .execute("INSERT INTO t_commit VALUES (1, 'committed')", &[])
                .await?;
            // Not committed yet: the second connection does not see it, and sees the first one
            // inside its transaction.
            assert_eq!(count(&observer, "t_commit").await, 0);
            assert_eq!(
                state(&observer, pid).await.as_deref(),
                Some("idle in transaction")
            );
            Ok(n)
        },
    )
    .await;

    assert_eq!(inserted.expect("committed"), 1);
    assert_idle(&observer, pid).await; // COMMIT was awaited before `with` returned
    let note: String = observer
        .query_one("SELECT note FROM t_commit WHERE id = 1", &[])
        .await
        .expect("the row is visible")
        .get(0);
    assert_eq!(note, "committed");
    assert_usable(&client).await;
}

#[tokio::test]
async fn body_error_rolls_back_and_reaches_the_caller_unchanged() {
    let observer = observer("rollback").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_rollback; CREATE TABLE t_rollback (id int PRIMARY KEY)",
    )
    .await;
    let (mut client, _conn) = connect("rollback").await;
    let pid = pid(&client).await;

    let result = with(
        transaction(&mut client),
        async |tx| -> Result<(), BodyError> {
            tx.execute("INSERT INTO t_rollback VALUES (7)", &[]).await?;
            Err(BodyError::Rejected { id: 7 })
        },
    )
    .await;

    match result {
        Err(Error::Body(BodyError::Rejected { id: 7 })) => {}
        other => panic!("expected Error::Body(Rejected {{ id: 7 }}), got {other:?}"),
    }
    assert_idle(&observer, pid).await; // ROLLBACK was awaited before `with` returned
    assert_eq!(count(&observer, "t_rollback").await, 0);
    assert_usable(&client).await;
}

#[tokio::test]
async fn failed_statement_in_the_body_rolls_back_and_keeps_the_db_error() {
    let observer = observer("stmt").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_stmt; CREATE TABLE t_stmt (id int PRIMARY KEY)",
    )
    .await;
    let (mut client, _conn) = connect("stmt").await;
    let pid = pid(&client).await;

    // The second INSERT fails: the transaction is aborted on the server, `?` returns the
    // error, and exit's ROLLBACK ends the aborted transaction (successfully).
    let result = with(
        transaction(&mut client),
        async |tx| -> Result<(), PgError> {
            tx.execute("INSERT INTO t_stmt VALUES (1)", &[]).await?;
            tx.execute("INSERT INTO t_stmt VALUES (1)", &[]).await?;
            Ok(())
        },
    )
    .await;

    match result {
        Err(Error::Body(e)) => assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION)),
        other => panic!("expected Error::Body(unique violation), got {other:?}"),
    }
    assert_idle(&observer, pid).await;
    assert_eq!(count(&observer, "t_stmt").await, 0);
    assert_usable(&client).await;
}

/// The audit rows, oldest first, read from `observer`.
async fn audit_rows(observer: &Client, table: &str) -> Vec<String> {
    let sql = format!("SELECT reason FROM {table} ORDER BY n");
    let rows = observer.query(&sql, &[]).await.expect("audit rows");
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test]
async fn audited_records_the_body_error_after_undoing_its_writes() {
    let observer = observer("audited").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_audited, t_audited_log;
         CREATE TABLE t_audited (id int PRIMARY KEY);
         CREATE TABLE t_audited_log (n serial PRIMARY KEY, reason text NOT NULL)",
    )
    .await;
    let (mut client, _conn) = connect("audited").await;
    let pid = pid(&client).await;
    let insert = "INSERT INTO t_audited_log (reason) VALUES ($1)";

    // A body error of the program's own type: its `{:?}` is the audit row.
    let result = with(
        audited(&mut client, insert),
        async |tx| -> Result<(), BodyError> {
            tx.execute("INSERT INTO t_audited VALUES (7)", &[]).await?;
            Err(BodyError::Rejected { id: 7 })
        },
    )
    .await;
    match result {
        Err(Error::Body(BodyError::Rejected { id: 7 })) => {}
        other => panic!("expected Error::Body(Rejected {{ id: 7 }}), got {other:?}"),
    }
    assert_idle(&observer, pid).await;
    assert_eq!(
        count(&observer, "t_audited").await,
        0,
        "the body's write is undone"
    );
    let rejected = format!("{:?}", BodyError::Rejected { id: 7 });
    assert_eq!(audit_rows(&observer, "t_audited_log").await, [rejected]);

    // A failed statement: the transaction is aborted on the server until the ROLLBACK TO.
    let result = with(
        audited(&mut client, insert),
        async |tx| -> Result<(), PgError> {
            tx.execute("INSERT INTO t_audited VALUES (1)", &[]).await?;
            tx.execute("INSERT INTO t_audited VALUES (1)", &[]).await?;
            Ok(())
        },
    )
    .await;
    match result {
        Err(Error::Body(e)) => assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION)),
        other => panic!("expected Error::Body(unique violation), got {other:?}"),
    }
    assert_eq!(count(&observer, "t_audited").await, 0);
    let rows = audit_rows(&observer, "t_audited_log").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].contains("duplicate key"), "{rows:?}");

    // Success: the body's write is committed, and no audit row is written.
    let result = with(audited(&mut client, insert), async |tx| {
        tx.execute("INSERT INTO t_audited VALUES (2)", &[]).await
    })
    .await;
    assert_eq!(result.ok(), Some(1));
    assert_eq!(count(&observer, "t_audited").await, 1);
    assert_eq!(audit_rows(&observer, "t_audited_log").await.len(), 2);
    assert_idle(&observer, pid).await;
    assert_usable(&client).await;
}

#[tokio::test]
async fn body_panic_rolls_back_then_the_panic_resumes() {
    let observer = observer("panic").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_panic; CREATE TABLE t_panic (id int PRIMARY KEY)",
    )
    .await;
    let (client, _conn) = connect("panic").await;
    let pid = pid(&client).await;
    // The client outlives the panicking task, so that it can be checked afterwards.
    let shared = Arc::new(tokio::sync::Mutex::new(client));

    let task = tokio::spawn({
        let shared = Arc::clone(&shared);
        async move {
            let mut client = shared.lock().await;
            with(
                transaction(&mut client),
                spawnable(async |tx| -> Result<(), PgError> {
                    tx.execute("INSERT INTO t_panic VALUES (1)", &[]).await?;
                    panic!("boom");
                }),
            )
            .await
        }
    });

    let panic = task.await.expect_err("the body panicked").into_panic();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    // Exit's ROLLBACK was awaited before the panic resumed: idle already.
    assert_idle(&observer, pid).await;
    assert_eq!(count(&observer, "t_panic").await, 0);
    assert_usable(&*shared.lock().await).await;
}

#[tokio::test]
async fn failing_commit_is_an_exit_error_and_nothing_is_committed() {
    let observer = observer("commitfail").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_commitfail;
         CREATE TABLE t_commitfail (
             id int PRIMARY KEY,
             k int,
             CONSTRAINT t_commitfail_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED
         )",
    )
    .await;
    let (mut client, _conn) = connect("commitfail").await;
    let pid = pid(&client).await;

    // Both INSERTs succeed: the constraint is checked at COMMIT.
    let result = with(
        transaction(&mut client),
        async |tx| -> Result<u64, PgError> {
            let a = tx
                .execute("INSERT INTO t_commitfail VALUES (1, 42)", &[])
                .await?;
            let b = tx
                .execute("INSERT INTO t_commitfail VALUES (2, 42)", &[])
                .await?;
            Ok(a + b)
        },
    )
    .await;

    match result {
        Err(Error::Exit(e)) => {
            assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION));
            let db = e.as_db_error().expect("a database error");
            assert_eq!(db.constraint(), Some("t_commitfail_k"));
        }
        other => panic!("expected Error::Exit(unique violation), got {other:?}"),
    }
    // A failed COMMIT ends the transaction (rolled back by the server).
    assert_idle(&observer, pid).await;
    assert_eq!(count(&observer, "t_commitfail").await, 0);
    assert_usable(&client).await;
}

#[tokio::test]
async fn body_fails_and_rollback_fails_too_when_the_connection_is_killed() {
    let observer = observer("killed").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_killed; CREATE TABLE t_killed (id int PRIMARY KEY)",
    )
    .await;
    let (mut client, conn) = connect("killed").await;
    let pid = pid(&client).await;

    // The body's second statement is running when the second connection terminates the
    // first one's backend: the statement fails, and so does the ROLLBACK after it.
    let result = with(
        transaction(&mut client),
        async |tx| -> Result<(), PgError> {
            tx.execute("INSERT INTO t_killed VALUES (1)", &[]).await?;
            let (slept, killed) = tokio::join!(tx.batch_execute("SELECT pg_sleep(10)"), async {
                wait_until_running(&observer, pid, "pg_sleep").await;
                observer
                    .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                    .await
            });
            assert!(killed.expect("terminate").get::<_, bool>(0));
            slept
        },
    )
    .await;

    match result {
        Err(Error::BodyAndExit { body, exit }) => {
            let server_said = body.as_db_error().map(ToString::to_string);
            eprintln!("killed: body error: {server_said:?}; exit error: {exit}");
            // The body's error: the server's own, sent to the running statement.
            assert_eq!(body.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{body}");
            // Exit's: the ROLLBACK could not be sent, the connection being closed.
            assert!(exit.is_closed(), "{exit}");
        }
        other => panic!("expected Error::BodyAndExit, got {other:?}"),
    }
    assert_eq!(count(&observer, "t_killed").await, 0);
    // The first connection is reported broken, and the next `with` fails at enter.
    assert!(client.is_closed());
    assert!(conn.await.expect("the connection task").is_err());
    let again = with(
        transaction(&mut client),
        async |_tx| -> Result<(), PgError> { unreachable!("no body after a failed enter") },
    )
    .await;
    match again {
        Err(Error::Enter(e)) => assert!(e.is_closed(), "{e}"),
        other => panic!("expected Error::Enter(closed), got {other:?}"),
    }
}

#[tokio::test]
async fn cancelled_while_the_body_awaits_something_else_rolls_back_at_once() {
    let observer = observer("cancel").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_cancel;
         CREATE TABLE t_cancel (id int PRIMARY KEY, n int);
         INSERT INTO t_cancel VALUES (1, 0)",
    )
    .await;
    let (mut client, _conn) = connect("cancel").await;
    let pid = pid(&client).await;

    // The body updates (and so locks) the row, then waits for something that never comes.
    let timed_out = tokio::time::timeout(
        Duration::from_millis(300),
        with(
            transaction(&mut client),
            async |tx| -> Result<(), PgError> {
                tx.execute("UPDATE t_cancel SET n = 1 WHERE id = 1", &[])
                    .await?;
                std::future::pending::<()>().await;
                Ok(())
            },
        ),
    )
    .await;
    assert!(timed_out.is_err(), "the body never finishes");

    // Dropping the `Transaction` queued a ROLLBACK; nothing awaited it, but it runs at once
    // on the still-running connection: the row is free within a round trip or two.
    let waited = wait_for_lock(&observer, "t_cancel", 1, Duration::from_secs(2)).await;
    eprintln!("cancel (idle body): row lock released after {waited:?}");
    let n: i32 = observer
        .query_one("SELECT n FROM t_cancel WHERE id = 1", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(n, 0, "nothing committed");
    // The connection is usable again, outside the cancelled transaction.
    assert_idle(&observer, pid).await;
    assert_usable(&client).await;
    let Ok(n) = with(transaction(&mut client), async |tx| {
        tx.execute("UPDATE t_cancel SET n = 2 WHERE id = 1", &[])
            .await
    })
    .await
    else {
        panic!("a new transaction on the same client")
    };
    assert_eq!(n, 1);
}

#[tokio::test]
async fn cancelled_during_a_query_rolls_back_after_that_query_ends() {
    let observer = observer("cancelq").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_cancelq;
         CREATE TABLE t_cancelq (id int PRIMARY KEY, n int);
         INSERT INTO t_cancelq VALUES (1, 0)",
    )
    .await;
    let (mut client, _conn) = connect("cancelq").await;
    let pid = pid(&client).await;

    let started = Instant::now();
    let timed_out = tokio::time::timeout(
        Duration::from_millis(300),
        with(
            transaction(&mut client),
            async |tx| -> Result<(), PgError> {
                tx.execute("UPDATE t_cancelq SET n = 1 WHERE id = 1", &[])
                    .await?;
                tx.batch_execute("SELECT pg_sleep(3)").await
            },
        ),
    )
    .await;
    assert!(timed_out.is_err());

    // Dropping the query's future did not stop it on the server: the sleep goes on, the
    // queued ROLLBACK waits behind it, and the row stays locked meanwhile.
    assert_eq!(
        state(&observer, pid).await.as_deref(),
        Some("active"),
        "pg_sleep still running"
    );
    let locked = try_lock(&observer, "t_cancelq", 1).await;
    assert_eq!(
        locked.expect_err("still locked").code(),
        Some(&SqlState::LOCK_NOT_AVAILABLE)
    );
    // The next statement on the client runs after the sleep and the ROLLBACK: the connection
    // is usable, once the statement it was cancelled in has ended.
    assert_usable(&client).await;
    let elapsed = started.elapsed();
    eprintln!("cancel (mid-query): the client's next statement returned after {elapsed:?}");
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    assert_idle(&observer, pid).await;
    try_lock(&observer, "t_cancelq", 1).await.expect("free now");
    let n: i32 = observer
        .query_one("SELECT n FROM t_cancelq WHERE id = 1", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(n, 0, "nothing committed");
}

#[tokio::test]
async fn cancelled_during_a_query_with_a_cancel_request_releases_the_lock_at_once() {
    let observer = observer("cancelreq").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_cancelreq;
         CREATE TABLE t_cancelreq (id int PRIMARY KEY, n int);
         INSERT INTO t_cancelreq VALUES (1, 0)",
    )
    .await;
    let (mut client, _conn) = connect("cancelreq").await;
    let pid = pid(&client).await;
    // Taken before the `with`, which borrows the client.
    let token = client.cancel_token();

    let timed_out = tokio::time::timeout(
        Duration::from_millis(300),
        with(
            transaction(&mut client),
            async |tx| -> Result<(), PgError> {
                tx.execute("UPDATE t_cancelreq SET n = 1 WHERE id = 1", &[])
                    .await?;
                tx.batch_execute("SELECT pg_sleep(10)").await
            },
        ),
    )
    .await;
    assert!(timed_out.is_err());

    // What the server is told after the timeout: cancel the running statement. The aborted
    // transaction then meets the queued ROLLBACK.
    token.cancel_query(NoTls).await.expect("cancel request");
    let waited = wait_for_lock(&observer, "t_cancelreq", 1, Duration::from_secs(5)).await;
    eprintln!("cancel (mid-query, cancel request): row lock released after {waited:?}");
    assert_usable(&client).await;
    assert_idle(&observer, pid).await;
    let n: i32 = observer
        .query_one("SELECT n FROM t_cancelreq WHERE id = 1", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(n, 0, "nothing committed");
}

#[tokio::test]
async fn savepoint_undoes_only_the_inner_writes() {
    let observer = observer("savepoint").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_savepoint; CREATE TABLE t_savepoint (note text)",
    )
    .await;
    let (mut client, _conn) = connect("savepoint").await;

    let result = with(
        transaction(&mut client),
        async |tx| -> Result<(), PgError> {
            tx.execute("INSERT INTO t_savepoint VALUES ('outer')", &[])
                .await?;
            let undone = with(savepoint(tx), async |sp| -> Result<(), BodyError> {
                sp.execute("INSERT INTO t_savepoint VALUES ('undone')", &[])
                    .await?;
                Err(BodyError::Rejected { id: 1 })
            })
            .await;
            assert!(matches!(
                undone,
                Err(Error::Body(BodyError::Rejected { id: 1 }))
            ));
            let kept = with(savepoint(tx), async |sp| {
                sp.execute("INSERT INTO t_savepoint VALUES ('released')", &[])
                    .await
            })
            .await;
            assert_eq!(kept.ok(), Some(1));
            // Inside the transaction: the outer row and the released savepoint's row.
            assert_eq!(count(tx.client(), "t_savepoint").await, 2);
            assert_eq!(count(&observer, "t_savepoint").await, 0);
            Ok(())
        },
    )
    .await;

    result.expect("committed");
    let rows: Vec<String> = observer
        .query("SELECT note FROM t_savepoint ORDER BY note", &[])
        .await
        .expect("rows")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, ["outer", "released"]);
}

/// The body of the load test: an `async fn`, which `tokio::spawn` accepts as it is (a closure
/// needs `spawnable`, as in the panic test).
async fn increment(tx: &mut Transaction<'_>) -> Result<(), PgError> {
    let n: i32 = tx
        .query_one("SELECT n FROM t_load WHERE id = 1", &[])
        .await?
        .get(0);
    tx.execute("UPDATE t_load SET n = $1 WHERE id = 1", &[&(n + 1)])
        .await?;
    Ok(())
}

/// 50 tasks on a multi-threaded runtime, a connection each, increment one counter in
/// SERIALIZABLE transactions, retrying on serialization failures (in the body or at COMMIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_50_serializable_increments_are_exact() {
    const TASKS: usize = 50;
    const APP: &str = "async-with-load";
    let observer = observer("load").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_load;
         CREATE TABLE t_load (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO t_load VALUES (1, 0)",
    )
    .await;

    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let (mut client, _conn) = connect(APP).await;
                barrier.wait().await; // all connected: start together
                let mut attempts = 0_u32;
                loop {
                    attempts += 1;
                    assert!(attempts <= 1000, "no progress after 1000 attempts");
                    let serializable = client
                        .build_transaction()
                        .isolation_level(IsolationLevel::Serializable);
                    let result = with(begin(serializable), increment).await;
                    let retry = match &result {
                        Ok(()) => break,
                        // In the body (a concurrent update), or at COMMIT (a dangerous
                        // structure found by serializable snapshot isolation).
                        Err(Error::Body(e) | Error::Exit(e)) => {
                            e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                        }
                        Err(_) => false,
                    };
                    assert!(retry, "unexpected failure: {result:?}");
                }
                (client, attempts)
            })
        })
        .collect();

    let mut clients = Vec::with_capacity(TASKS);
    let mut attempts = 0;
    for task in tasks {
        let (client, tries) = task.await.expect("task");
        attempts += tries;
        clients.push(client);
    }
    eprintln!("load: {TASKS} increments took {attempts} attempts");

    let n: i32 = observer
        .query_one("SELECT n FROM t_load WHERE id = 1", &[])
        .await
        .expect("counter")
        .get(0);
    assert_eq!(n, TASKS as i32);
    // All 50 connections are still open, and none is left inside a transaction.
    let states: Vec<(String, Option<String>)> = observer
        .query(
            "SELECT state, backend_xid::text FROM pg_stat_activity WHERE application_name = $1",
            &[&APP],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(states.len(), TASKS);
    assert!(
        states
            .iter()
            .all(|(state, xid)| state == "idle" && xid.is_none()),
        "{states:?}"
    );
    for client in &clients {
        assert_usable(client).await;
    }
}

/// Graceful cancellation (issue 18): a 200 ms signal stops a body blocked in `pg_sleep`; exit
/// sees `Cancelled`, sends a cancel request for the statement and awaits the `ROLLBACK`. By the
/// time the `with` returns, the row lock is free, the connection is idle and usable. Side by
/// side, the same `with` under `tokio::time::timeout` (abortive): it returns while the lock is
/// still held, and the `ROLLBACK` runs only after the statement ends on its own.
#[tokio::test]
async fn a_signal_stops_a_blocked_statement_and_the_rollback_is_awaited() {
    use async_with::CancelError;

    let observer = observer("graceful").await;
    setup(
        &observer,
        "DROP TABLE IF EXISTS t_graceful;
         CREATE TABLE t_graceful (id int PRIMARY KEY, n int);
         INSERT INTO t_graceful VALUES (1, 0)",
    )
    .await;
    let (mut client, _conn) = connect("graceful").await;
    let pid = pid(&client).await;
    let signal = Duration::from_millis(200);

    // Graceful: the signal stops the body, exit is awaited.
    let started = Instant::now();
    let stopped = with(
        transaction(&mut client),
        async |tx| -> Result<(), PgError> {
            tx.execute("UPDATE t_graceful SET n = 1 WHERE id = 1", &[])
                .await?;
            tx.batch_execute("SELECT pg_sleep(3)").await
        },
    )
    .cancel_on(tokio::time::sleep(signal))
    .await;
    let returned = started.elapsed();
    assert!(
        matches!(stopped, Err(CancelError::Body { exit: None })),
        "{stopped:?}"
    );
    // Checked right away, without waiting: the ROLLBACK has already run.
    try_lock(&observer, "t_graceful", 1)
        .await
        .expect("the row lock is free when the `with` returns");
    assert_idle(&observer, pid).await;
    assert_usable(&client).await;
    eprintln!(
        "graceful (cancel_on {signal:?}): the `with` returned, lock released, after {returned:?}"
    );
    assert!(
        returned < Duration::from_secs(3),
        "{returned:?}: pg_sleep was not cancelled"
    );

    // Abortive: the same `with` dropped by an outer timeout.
    let started = Instant::now();
    let timed_out = tokio::time::timeout(
        signal,
        with(
            transaction(&mut client),
            async |tx| -> Result<(), PgError> {
                tx.execute("UPDATE t_graceful SET n = 1 WHERE id = 1", &[])
                    .await?;
                tx.batch_execute("SELECT pg_sleep(3)").await
            },
        ),
    )
    .await;
    let returned = started.elapsed();
    assert!(timed_out.is_err());
    // The `with` is gone, and the row is still locked: the ROLLBACK waits behind pg_sleep.
    let locked = try_lock(&observer, "t_graceful", 1).await;
    assert_eq!(
        locked.expect_err("still locked").code(),
        Some(&SqlState::LOCK_NOT_AVAILABLE)
    );
    let waited = wait_for_lock(&observer, "t_graceful", 1, Duration::from_secs(10)).await;
    eprintln!(
        "abortive (timeout {signal:?}): the `with` returned after {returned:?}, the lock was \
         released {waited:?} later ({:?} in all)",
        returned + waited
    );
    assert_usable(&client).await;
    let n: i32 = observer
        .query_one("SELECT n FROM t_graceful WHERE id = 1", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(n, 0, "nothing committed");
}
