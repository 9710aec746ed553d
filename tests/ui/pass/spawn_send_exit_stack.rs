// Issue 20: a `with` over a `SendExitStack` can be awaited inside any spawned future — an
// `async move` block, an `async fn` doing other work around it, a stack made before the spawn —
// with a closure or an `async fn` as the body.
use std::io;

use async_with::{SendExitStack, SendManager, from_fns, with};

fn conn(peer: u16) -> impl SendManager<Resource = u16, Error = io::Error> + use<> {
    from_fns(async move || Ok(peer), async |_peer: u16, _| Ok(()))
}

async fn open_two(stack: &mut SendExitStack<io::Error>) -> Result<u16, io::Error> {
    let a = *stack.enter_context(conn(1)).await?;
    let b = *stack.enter_context(conn(2)).await?;
    Ok(a + b)
}

/// A connection handler: work before and after the stack, all in one spawned future.
async fn handler(greeting: String) -> usize {
    let before = greeting.len();
    let opened = with(SendExitStack::<io::Error>::new(), async |stack| {
        stack.enter_context(conn(7)).await?;
        Ok::<_, io::Error>(stack.len())
    })
    .await
    .unwrap_or(0);
    tokio::task::yield_now().await;
    before + opened
}

#[tokio::main]
async fn main() {
    // An `async move` block, a closure body.
    let block = tokio::spawn(async move {
        with(SendExitStack::<io::Error>::new(), async |stack| {
            let n = *stack.enter_context(conn(5)).await?;
            Ok::<_, io::Error>(n)
        })
        .await
    });
    // An `async move` block, an `async fn` body.
    let fn_body = tokio::spawn(async move { with(SendExitStack::new(), open_two).await });
    // An `async fn` that holds the stack among other work, spawned.
    let spawned_fn = tokio::spawn(handler(String::from("hi")));
    // A stack made before the spawn, moved in; an `async move` closure body.
    let stack = SendExitStack::<io::Error>::new();
    let label = String::from("made before");
    let moved_in = tokio::spawn(async move {
        with(stack, async move |stack| {
            stack.enter_context(conn(9)).await?;
            Ok::<_, io::Error>(label.len() + stack.len())
        })
        .await
    });

    assert_eq!(block.await.unwrap().ok(), Some(5));
    assert_eq!(fn_body.await.unwrap().ok(), Some(3));
    assert_eq!(spawned_fn.await.unwrap(), 3);
    assert_eq!(moved_in.await.unwrap().ok(), Some(12));
}
