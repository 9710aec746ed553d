// S10 for groups: the body of a tuple `with` cannot return one of the borrowed resources.
use async_with::{nullcontext, with};

fn main() {
    let _ = with((nullcontext(1_u8), nullcontext(2_u8)), async |(a, _b)| Ok::<_, ()>(a));
}
