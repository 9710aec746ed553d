// S11: `WithFuture` is `#[must_use]`: a `with` that is never awaited is reported.
#![deny(unused_must_use)]

use async_with::{nullcontext, with};

fn main() {
    with(nullcontext(5_u32), async |r| Ok::<_, ()>(*r));
}
