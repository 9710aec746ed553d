// S10: the body's output type is the same for every borrow, so it cannot be the borrow itself.
use async_with::{null_context, with};

fn main() {
    let escaped = futures_executor::block_on(with(null_context(5_u32), async |r| Ok::<_, ()>(r)));
    let _ = escaped;
}
