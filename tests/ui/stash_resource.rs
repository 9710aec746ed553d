// S10: the body cannot store the borrowed resource in a variable that outlives it.
use async_with::{nullcontext, with};

fn main() {
    let mut slot = None;
    let fut = with(nullcontext(5_u32), async |r| {
        slot = Some(r);
        Ok::<_, ()>(())
    });
    let _ = futures_executor::block_on(fut);
    if let Some(r) = slot {
        *r += 1;
    }
}
