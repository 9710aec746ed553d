//! The exit stack's lock-free push, model-checked (issue 20, item 2): loom runs every
//! interleaving of two threads pushing onto one shared `SendExitStack` (a compare-and-swap
//! loop on the list's head, arena.rs invariant 4), and after they joined, closing it runs each
//! entry exactly once, each thread's entries newest first.
//!
//! Only in the model checker's build, where the arena's atomics are loom's:
//! `cd loom && RUSTFLAGS="--cfg loom" cargo test --release --locked` (`.ci/run` runs it).
#![cfg(loom)]

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_with::SendExitStack;

const THREADS: u32 = 2;
const PER_THREAD: u32 = 2;

#[test]
fn concurrent_pushes_are_each_closed_once_newest_first_per_thread() {
    loom::model(|| {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let mut stack = Arc::new(SendExitStack::<()>::new());
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (stack, closed) = (Arc::clone(&stack), Arc::clone(&closed));
                loom::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let (closed, id) = (Arc::clone(&closed), thread * PER_THREAD + i);
                        stack.defer(async move || {
                            closed.lock().unwrap().push(id);
                            Ok::<_, ()>(())
                        });
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stack = Arc::get_mut(&mut stack).expect("every thread has joined");
        assert_eq!(stack.len(), (THREADS * PER_THREAD) as usize);
        // Every entry is ready at once: the close finishes in one poll.
        let close = pin!(stack.close());
        let Poll::Ready(result) = close.poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("the close waited for nothing")
        };
        assert_eq!(result, Ok(()));
        let closed = closed.lock().unwrap();
        let mut sorted = closed.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..THREADS * PER_THREAD).collect::<Vec<_>>(),
            "each once"
        );
        for thread in 0..THREADS {
            let mine: Vec<u32> = closed
                .iter()
                .copied()
                .filter(|id| id / PER_THREAD == thread)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] > w[1]),
                "thread {thread}: {mine:?}"
            );
        }
    });
}
