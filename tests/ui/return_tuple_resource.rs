// S10 for groups: the body of a tuple `with` cannot return one of the borrowed resources.
use async_with::{null_context, with};

fn main() {
    let _ = with((null_context(1_u8), null_context(2_u8)), async |(a, _b)| Ok::<_, ()>(a));
}
