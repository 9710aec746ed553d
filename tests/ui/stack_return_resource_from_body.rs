// S10 + S14: the body of `with(stack, ..)` cannot hand out a resource lent by the stack: the
// stack closes it after the body.
use core::convert::Infallible;

use async_with::{ExitStack, null_context, with};

fn main() {
    let leaked = futures_executor::block_on(with(ExitStack::<Infallible>::new(), async |stack| {
        let n = stack.enter_context(null_context(1_u32)).await.unwrap();
        Ok::<_, ()>(n)
    }));
    let _ = leaked;
}
