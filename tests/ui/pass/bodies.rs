// Control for the compile-fail cases: the same code written the supported way compiles and
// runs, so those cases fail only because of the borrow they try to leak.
use core::future::Future;
use core::task::{Context, Poll, Waker};

use async_with::{null_context, with};

fn main() {
    // Return a value computed from the resource, not the borrow (return_resource.rs).
    let copied = futures_executor::block_on(with(null_context(5_u32), async |r| Ok::<_, ()>(*r)));
    assert_eq!(copied, Ok(5));

    // Stash a copy, not the borrow (stash_resource.rs).
    let mut slot = None;
    let fut = with(null_context(5_u32), async |r| {
        slot = Some(*r);
        Ok::<_, ()>(())
    });
    assert_eq!(futures_executor::block_on(fut), Ok(()));
    assert_eq!(slot, Some(5));

    // Return an owned view (use_after_completion.rs).
    let name = futures_executor::block_on(with(null_context(String::from("sensor")), async |s| {
        Ok::<_, ()>(s.clone())
    }));
    assert_eq!(name.as_deref(), Ok("sensor"));

    // `async |r|` instead of `|r| async move` (plain_closure_async_move.rs).
    let fut = with(null_context(5_u32), async |r: &mut u32| {
        *r += 1;
        Ok::<_, ()>(*r)
    });
    assert_eq!(futures_executor::block_on(fut), Ok(6));

    // Pinned before polling (`WithFuture` is `!Unpin`).
    let mut fut = core::pin::pin!(with(null_context(5_u32), async |r| Ok::<_, ()>(*r)));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));

    // A tuple's body returns a value computed from the resources (return_tuple_resource.rs).
    let sum = futures_executor::block_on(with(
        (null_context(1_u8), null_context(2_u8)),
        async |(a, b)| Ok::<_, ()>(*a + *b),
    ));
    assert_eq!(sum, Ok(3));

    // Awaited (must_use.rs).
    let _awaited = futures_executor::block_on(with(null_context(5_u32), async |r| Ok::<_, ()>(*r)));
}
