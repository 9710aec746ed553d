// S14: a resource lent by `enter_context` borrows the stack, so it cannot be used after
// `close` (which takes the stack mutably and releases the resource).
use core::convert::Infallible;

use async_with::{ExitStack, null_context};

fn main() {
    futures_executor::block_on(async {
        let mut stack = ExitStack::<Infallible>::new();
        let n = stack.enter_context(null_context(1_u32)).await.unwrap();
        stack.close().await.unwrap();
        *n += 1;
    });
}
