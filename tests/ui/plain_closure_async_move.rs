// S10 / section 4: a plain closure returning `async move { .. }` is not a body; users must
// write `async |r| ..`. This records the message they see.
use async_with::{null_context, with};

fn main() {
    let fut = with(null_context(5_u32), |r: &mut u32| async move {
        *r += 1;
        Ok::<_, ()>(*r)
    });
    let _ = futures_executor::block_on(fut);
}
