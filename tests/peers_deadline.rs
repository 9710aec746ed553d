//! Graceful against abortive cancellation over real TCP sockets (issue 18, item 4).
//!
//! `N` peers are connected to a local listener (127.0.0.1, port 0) and entered on one
//! `ExitStack`; each says `HELLO i`, and the body then waits for replies that never come.
//! Each peer's exit, seeing `Outcome::Cancelled`, sends `QUIT i`, then flushes and shuts down
//! its write side, awaiting both. The listener reads every connection to EOF, one thread per
//! connection, and hands back what it read when joined.
//!
//! - A deadline given to `cancel_on` stops the body; the `with` resolves to
//!   `Err(CancelError::Body { exit: None })`, the exits ran newest first, and every
//!   connection read its `QUIT` before EOF.
//! - The same `with` under `tokio::time::timeout` is dropped at the deadline: no exit runs,
//!   the sockets are closed by drop, and every connection sees EOF right after its `HELLO`.
//!
//! The deadline is armed only once all `N` peers are open (the body says so on a channel),
//! so a slow machine cannot fire it while peers are still connecting; otherwise nothing is
//! timed, and the listener's results are awaited by joining its threads. Tokio has neither
//! `net` nor `io-util` among the dev-dependency's features, so the peers' sockets are smol's
//! (async-io runs its own reactor thread, so they work on a tokio runtime) and the listener
//! is `std::net` on plain threads; tokio provides the runtime, `sleep` and `timeout`.
//! Miri cannot open sockets.

#![cfg(all(feature = "alloc", not(miri)))]

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use async_with::{AsyncEnter, CancelError, ExitStack, Outcome, from_fns, with};
use smol::channel::{Receiver, Sender, bounded};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

/// How many peers.
const N: usize = 8;

/// How long the body may wait once every peer is open.
const DEADLINE: Duration = Duration::from_millis(50);

/// Binds the listener and accepts `n` connections on a thread; joining it gives what each
/// connection read until EOF, sorted.
fn listen(n: usize) -> (SocketAddr, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let accepting = thread::spawn(move || {
        let readers: Vec<JoinHandle<String>> = (0..n)
            .map(|_| {
                let (mut socket, _) = listener.accept().expect("accept");
                thread::spawn(move || {
                    let mut read = String::new();
                    // Returns at EOF: whatever came before the socket closed.
                    socket.read_to_string(&mut read).expect("read to EOF");
                    read
                })
            })
            .collect();
        let mut transcripts: Vec<String> = readers
            .into_iter()
            .map(|reader| reader.join().expect("reader thread"))
            .collect();
        transcripts.sort();
        transcripts
    });
    (addr, accepting)
}

/// Peer `id`: connects and says hello; its exit records `id` and, if the body was
/// cancelled, says `QUIT` before it flushes and shuts down the socket.
fn peer(
    addr: SocketAddr,
    id: usize,
    exits: &RefCell<Vec<usize>>,
) -> impl AsyncEnter<Resource = TcpStream, Error = io::Error> + '_ {
    from_fns(
        async move || {
            let mut socket = TcpStream::connect(addr).await?;
            socket.write_all(format!("HELLO {id}\n").as_bytes()).await?;
            Ok(socket)
        },
        async move |mut socket: TcpStream, outcome: Outcome<'_>| {
            exits.borrow_mut().push(id);
            if outcome.is_cancelled() {
                socket.write_all(format!("QUIT {id}\n").as_bytes()).await?;
            }
            // Flushes, then shuts the write side down: the listener reads EOF after this.
            socket.close().await
        },
    )
}

/// The body: opens every peer on the stack, says so on `opened`, then waits for a reply
/// from each, which never comes (the listener only reads).
async fn open_and_wait<'a>(
    stack: &ExitStack<'a, io::Error>,
    addr: SocketAddr,
    exits: &'a RefCell<Vec<usize>>,
    opened: &Sender<()>,
) -> io::Result<()> {
    let mut sockets = Vec::new();
    for id in 0..N {
        sockets.push(stack.enter_context(peer(addr, id, exits)).await?);
    }
    opened.send(()).await.expect("the test is listening");
    let mut reply = [0; 1];
    for socket in &mut sockets {
        socket.read(&mut reply).await?;
    }
    Ok(())
}

/// What the listener must have read from every peer, sorted as `listen` sorts it.
fn transcripts(line: impl Fn(usize) -> String) -> Vec<String> {
    let mut all: Vec<String> = (0..N).map(line).collect();
    all.sort();
    all
}

/// The deadline, armed when the body reports every peer open.
async fn deadline(opened: Receiver<()>) {
    opened.recv().await.expect("every peer opened");
    tokio::time::sleep(DEADLINE).await;
}

#[tokio::test]
async fn a_deadline_stops_the_body_and_every_peer_says_quit_before_eof() {
    let (addr, listener) = listen(N);
    let exits = RefCell::new(Vec::new());
    let (opened, armed) = bounded(1);
    let out = with(ExitStack::<io::Error>::new(), async |stack| {
        open_and_wait(stack, addr, &exits, &opened).await
    })
    .cancel_on(deadline(armed))
    .await;
    assert!(
        matches!(out, Err(CancelError::Body { exit: None })),
        "{out:?}"
    );
    let newest_first: Vec<usize> = (0..N).rev().collect();
    assert_eq!(*exits.borrow(), newest_first);
    let read = listener.join().expect("listener thread");
    assert_eq!(read, transcripts(|id| format!("HELLO {id}\nQUIT {id}\n")));
}

#[tokio::test]
async fn dropped_by_timeout_no_exit_runs_and_every_peer_sees_eof_without_quit() {
    let (addr, listener) = listen(N);
    let exits = RefCell::new(Vec::new());
    let (opened, armed) = bounded(1);
    let mut run = Box::pin(with(ExitStack::<io::Error>::new(), async |stack| {
        open_and_wait(stack, addr, &exits, &opened).await
    }));
    // Run it until every peer is open, then give it `DEADLINE` more under `timeout`.
    tokio::select! {
        out = &mut run => panic!("ended before the deadline: {out:?}"),
        ready = armed.recv() => ready.expect("every peer opened"),
    }
    let out = tokio::time::timeout(DEADLINE, run).await;
    assert!(out.is_err(), "the timeout elapsed: {out:?}");
    assert!(
        exits.borrow().is_empty(),
        "no exit ran: {:?}",
        exits.borrow()
    );
    let read = listener.join().expect("listener thread");
    assert_eq!(read, transcripts(|id| format!("HELLO {id}\n")));
}
