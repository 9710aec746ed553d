// S10: the body cannot store the borrowed resource in a variable that outlives it.
use async_with::{null_context, with};

fn main() {
    let mut slot = None;
    let fut = with(null_context(5_u32), async |r| {
        slot = Some(r);
        Ok::<_, ()>(())
    });
    let _ = futures_executor::block_on(fut);
    if let Some(r) = slot {
        *r += 1;
    }
}
