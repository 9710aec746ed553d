// Section 4: the same mistake without a type annotation on the closure's argument, the way
// it is usually written.
use async_with::{null_context, with};

fn main() {
    let fut = with(null_context(5_u32), |r| async move {
        *r += 1;
        Ok::<_, ()>(*r)
    });
    let _ = futures_executor::block_on(fut);
}
