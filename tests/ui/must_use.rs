// S11: `WithFuture` is `#[must_use]`: a `with` that is never awaited is reported.
#![deny(unused_must_use)]

use async_with::{null_context, with};

fn main() {
    with(null_context(5_u32), async |r| Ok::<_, ()>(*r));
}
