// S14: a resource lent by `enter_context` cannot outlive the stack: dropping the stack (which
// cancels every entry) ends the borrow.
use core::convert::Infallible;

use async_with::{ExitStack, null_context};

fn main() {
    futures_executor::block_on(async {
        let stack = ExitStack::<Infallible>::new();
        let n = stack.enter_context(null_context(1_u32)).await.unwrap();
        drop(stack);
        *n += 1;
    });
}
