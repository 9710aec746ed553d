//! Connections to a list of peers known only at run time, on an [`ExitStack`]: opened in a
//! loop, used together in one body, closed in reverse order — also when a peer cannot be
//! reached partway through.
//!
//! The network is simulated: every connect, request and close takes one round trip (the
//! future is `Pending` once), like a socket that is not ready on the first poll. Everything
//! runs on `futures_executor::block_on`; any executor would do the same.
//!
//! 1. Ask every peer for its chain height, then tell the ones behind to sync from the best.
//! 2. The same with an unreachable peer in the list: nothing is registered for it, and the
//!    peers already open are closed, each seeing the connect failure.
//! 3. A constructor that opens several peers and hands them over only if all of them opened
//!    (`pop_all`, the pattern of Python's `AsyncExitStack`).
//! 4. A cluster dropped without `close`: each connection gets its synchronous cancel (a
//!    reset), newest first.
//!
//! Run it with `cargo run --example peers`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_with::{AsyncExit, CloseErrors, Error, ExitStack, Outcome, with};

/// What can go wrong on the simulated network.
#[derive(Debug, Clone, PartialEq)]
enum NetError {
    /// Nobody answered at this address.
    Unreachable(String),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Unreachable(peer) => write!(f, "{peer} unreachable"),
        }
    }
}

impl std::error::Error for NetError {}

/// The simulated network: which peers answer (and their chain heights), which connections
/// are open, and the trace of everything that happened.
struct Network {
    heights: RefCell<BTreeMap<String, u64>>,
    open: RefCell<Vec<String>>,
    trace: RefCell<Vec<String>>,
}

impl Network {
    /// Prints a line of the trace and keeps it for the checks at the end.
    fn say(&self, line: String) {
        println!("  {line}");
        self.trace.borrow_mut().push(line);
    }

    /// The trace since the last call, emptied.
    fn take_trace(&self) -> Vec<String> {
        std::mem::take(&mut *self.trace.borrow_mut())
    }
}

/// An open connection to one peer: a handle (a peer name over a shared network, like a
/// socket descriptor), cheap to clone. The stack entry that opened it closes it.
#[derive(Clone)]
struct Conn<'n> {
    net: &'n Network,
    peer: String,
}

impl Conn<'_> {
    async fn height(&self) -> u64 {
        RoundTrip::new(()).await;
        let height = self.net.heights.borrow()[&self.peer];
        self.net
            .say(format!("body:  {} is at height {height}", self.peer));
        height
    }

    async fn sync_from(&mut self, best: &str, height: u64) {
        RoundTrip::new(()).await;
        self.net
            .heights
            .borrow_mut()
            .insert(self.peer.clone(), height);
        self.net.say(format!(
            "body:  {} synced from {best} to {height}",
            self.peer
        ));
    }
}

/// The manager: `Connect { net, peer }` opens a connection; its exit closes it gracefully,
/// seeing how the scope ended; its cancel hook resets it.
struct Connect<'n> {
    net: &'n Network,
    peer: String,
}

fn connect<'n>(net: &'n Network, peer: &str) -> Connect<'n> {
    Connect {
        net,
        peer: peer.to_owned(),
    }
}

/// The exit handle of [`Connect`].
struct Hangup;

impl<'n> async_with::AsyncEnter for Connect<'n> {
    type Resource = Conn<'n>;
    type Error = NetError;
    type Exit = Hangup;
    type Enter = Dial<'n>;

    fn enter(self) -> Dial<'n> {
        Dial {
            net: self.net,
            peer: Some(self.peer),
            sent: false,
        }
    }
}

impl<'n> AsyncExit<Conn<'n>> for Hangup {
    type Error = NetError;
    type Future<'o> = Closing<'n>;

    fn exit(self, conn: Conn<'n>, outcome: Outcome<'_>) -> Closing<'n> {
        // A hand-written exit sees the error itself, not only that there was one.
        let seen = match outcome.failure() {
            None => format!("{:?}", outcome.status()),
            Some(failure) => match failure.downcast_ref::<NetError>() {
                Some(error) => format!("failure: {error}"),
                None => format!("failure: {failure:?}"),
            },
        };
        conn.net
            .say(format!("exit:  close {} (scope ended: {seen})", conn.peer));
        Closing { conn, sent: false }
    }

    fn cancel(self, conn: Conn<'n>) {
        conn.net.open.borrow_mut().retain(|p| *p != conn.peer);
        conn.net
            .say(format!("cancel: reset {} (no async close)", conn.peer));
    }
}

/// Enter future of [`Connect`]: sends a connect, answers after one round trip.
struct Dial<'n> {
    net: &'n Network,
    peer: Option<String>,
    sent: bool,
}

impl<'n> Future for Dial<'n> {
    type Output = Result<(Conn<'n>, Hangup), NetError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.sent {
            self.sent = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let net = self.net;
        let peer = self.peer.take().expect("polled after completion");
        if !net.heights.borrow().contains_key(&peer) {
            net.say(format!("enter: {peer} unreachable"));
            return Poll::Ready(Err(NetError::Unreachable(peer)));
        }
        net.open.borrow_mut().push(peer.clone());
        net.say(format!("enter: {peer} connected"));
        Poll::Ready(Ok((Conn { net, peer }, Hangup)))
    }
}

/// Exit future of [`Connect`]: sends a close, done after one round trip.
struct Closing<'n> {
    conn: Conn<'n>,
    sent: bool,
}

impl Future for Closing<'_> {
    type Output = Result<(), NetError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.sent {
            self.sent = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Conn { net, peer } = &self.conn;
        net.open.borrow_mut().retain(|p| p != peer);
        Poll::Ready(Ok(()))
    }
}

/// One body over every peer: asks each for its height, then brings the ones behind up to
/// the best. The peers are opened in a loop, each lent by the stack (`&mut Conn`), and used
/// together; the stack closes them, newest first, after the body.
async fn sync_all(
    net: &Network,
    peers: &[String],
) -> Result<u64, Error<CloseErrors<NetError>, NetError>> {
    with(
        ExitStack::<NetError>::new(),
        async |stack| -> Result<u64, NetError> {
            // Registered first, so it runs last: one LIFO order across every kind of entry.
            // It sees the body's error itself, lent for as long as it runs.
            stack.push_exit(async |outcome: Outcome<'_>| {
                net.say(format!("exit:  session log written ({outcome:?})"));
                Ok::<_, NetError>(())
            });
            let mut conns = Vec::new();
            for peer in peers {
                match stack.enter_context(connect(net, peer)).await {
                    Ok(conn) => conns.push(conn),
                    Err(error) => {
                        net.say(format!(
                            "body:  connect failed ({error}); {} entries registered",
                            stack.len()
                        ));
                        return Err(error);
                    }
                }
            }
            let mut best = (0, String::new());
            for conn in &conns {
                let height = conn.height().await;
                if height > best.0 {
                    best = (height, conn.peer.clone());
                }
            }
            for conn in &mut conns {
                if conn.peer != best.1 && conn.net.heights.borrow()[&conn.peer] < best.0 {
                    conn.sync_from(&best.1, best.0).await;
                }
            }
            Ok(best.0)
        },
    )
    .await
}

/// Connections to several peers, handed over together or not at all.
struct Cluster<'n> {
    conns: Vec<Conn<'n>>,
    stack: ExitStack<'n, NetError>,
}

impl<'n> Cluster<'n> {
    /// Opens every peer; if one fails, those already open are closed (seeing the failure)
    /// and the error is returned. Only if all opened are they moved to the new cluster.
    async fn connect(
        net: &'n Network,
        peers: &[String],
    ) -> Result<Self, Error<CloseErrors<NetError>, NetError>> {
        let mut conns = Vec::new();
        let stack = with(
            ExitStack::<NetError>::new(),
            async |stack| -> Result<_, NetError> {
                for peer in peers {
                    // The stack lends `&mut Conn` only while it is borrowed here; the cluster
                    // keeps handles.
                    conns.push(stack.enter_context(connect(net, peer)).await?.clone());
                }
                net.say(format!(
                    "body:  all {} open, moving them to the cluster",
                    stack.len()
                ));
                // Everything moves to a new owner; the stack `with` closes is left empty.
                Ok(stack.pop_all())
            },
        )
        .await?;
        Ok(Cluster { conns, stack })
    }

    async fn close(mut self) -> Result<(), CloseErrors<NetError>> {
        self.conns.clear();
        self.stack.close().await
    }
}

fn main() {
    // The peer list comes from configuration, read at run time.
    let config = "peers = alpha, beta, gamma, delta";
    let all: Vec<String> = config
        .split_once('=')
        .expect("a `peers = ..` line")
        .1
        .split(',')
        .map(|peer| peer.trim().to_owned())
        .collect();
    let net = Network {
        // `gamma` does not answer.
        heights: RefCell::new(BTreeMap::from([
            ("alpha".into(), 100),
            ("beta".into(), 97),
            ("delta".into(), 102),
        ])),
        open: RefCell::new(Vec::new()),
        trace: RefCell::new(Vec::new()),
    };
    let reachable: Vec<String> = all.iter().filter(|p| *p != "gamma").cloned().collect();

    println!("1. sync {reachable:?} (opened in a loop, used together, closed newest first):");
    let best = futures_executor::block_on(sync_all(&net, &reachable));
    println!("  => {best:?}");
    assert_eq!(best, Ok(102));
    assert!(net.open.borrow().is_empty());
    assert_eq!(
        net.take_trace(),
        [
            "enter: alpha connected",
            "enter: beta connected",
            "enter: delta connected",
            "body:  alpha is at height 100",
            "body:  beta is at height 97",
            "body:  delta is at height 102",
            "body:  alpha synced from delta to 102",
            "body:  beta synced from delta to 102",
            "exit:  close delta (scope ended: Success)",
            "exit:  close beta (scope ended: Success)",
            "exit:  close alpha (scope ended: Success)",
            "exit:  session log written (Success)",
        ]
    );

    println!("2. sync {all:?} (gamma does not answer):");
    let failed = futures_executor::block_on(sync_all(&net, &all));
    println!("  => {failed:?}");
    assert_eq!(
        failed,
        Err(Error::Body(NetError::Unreachable("gamma".into())))
    );
    assert!(net.open.borrow().is_empty());
    assert_eq!(
        net.take_trace(),
        [
            "enter: alpha connected",
            "enter: beta connected",
            "enter: gamma unreachable",
            // The session log and two connections: nothing for gamma, and delta never tried.
            "body:  connect failed (gamma unreachable); 3 entries registered",
            "exit:  close beta (scope ended: failure: gamma unreachable)",
            "exit:  close alpha (scope ended: failure: gamma unreachable)",
            "exit:  session log written (Failure(Unreachable(\"gamma\")))",
        ]
    );

    println!("3. a cluster of {all:?}, handed over only if all open:");
    let refused = futures_executor::block_on(Cluster::connect(&net, &all));
    println!("  => {:?}", refused.as_ref().map(|c| c.conns.len()));
    assert!(matches!(
        refused,
        Err(Error::Body(NetError::Unreachable(ref p))) if p == "gamma"
    ));
    assert!(net.open.borrow().is_empty());
    println!("   a cluster of {reachable:?}:");
    let cluster = futures_executor::block_on(Cluster::connect(&net, &reachable))
        .unwrap_or_else(|e| panic!("all reachable peers open: {e:?}"));
    let heights: Vec<u64> = futures_executor::block_on(async {
        let mut heights = Vec::new();
        for conn in &cluster.conns {
            heights.push(conn.height().await);
        }
        heights
    });
    assert_eq!(*net.open.borrow(), ["alpha", "beta", "delta"]);
    let closed = futures_executor::block_on(cluster.close());
    println!("  => heights {heights:?}, closed: {closed:?}");
    assert_eq!(closed, Ok(()));
    assert!(net.open.borrow().is_empty());
    assert_eq!(
        net.take_trace(),
        [
            "enter: alpha connected",
            "enter: beta connected",
            "enter: gamma unreachable",
            "exit:  close beta (scope ended: failure: gamma unreachable)",
            "exit:  close alpha (scope ended: failure: gamma unreachable)",
            "enter: alpha connected",
            "enter: beta connected",
            "enter: delta connected",
            "body:  all 3 open, moving them to the cluster",
            // The cluster's own body, then its close: the moved entries, newest first.
            "body:  alpha is at height 102",
            "body:  beta is at height 102",
            "body:  delta is at height 102",
            "exit:  close delta (scope ended: Success)",
            "exit:  close beta (scope ended: Success)",
            "exit:  close alpha (scope ended: Success)",
        ]
    );

    println!("4. a cluster dropped without close (cancellation):");
    let cluster = futures_executor::block_on(Cluster::connect(&net, &reachable))
        .unwrap_or_else(|e| panic!("all reachable peers open: {e:?}"));
    drop(cluster);
    assert!(net.open.borrow().is_empty());
    assert_eq!(
        net.take_trace(),
        [
            "enter: alpha connected",
            "enter: beta connected",
            "enter: delta connected",
            "body:  all 3 open, moving them to the cluster",
            "cancel: reset delta (no async close)",
            "cancel: reset beta (no async close)",
            "cancel: reset alpha (no async close)",
        ]
    );
}

/// A named future that answers after one round trip: `Pending` once, then `Ready`.
struct RoundTrip<T> {
    value: Option<T>,
    waited: bool,
}

impl<T> RoundTrip<T> {
    fn new(value: T) -> Self {
        RoundTrip {
            value: Some(value),
            waited: false,
        }
    }
}

impl<T: Unpin> Future for RoundTrip<T> {
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
