// S11: `WithFuture` is `!Unpin`; it must be pinned before it is polled.
use core::future::Future;
use core::task::{Context, Waker};

use async_with::{nullcontext, with};

fn main() {
    let mut fut = with(nullcontext(5_u32), async |r| Ok::<_, ()>(*r));
    let mut cx = Context::from_waker(Waker::noop());
    let _ = core::pin::Pin::new(&mut fut).poll(&mut cx);
}
