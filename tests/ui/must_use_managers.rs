// Issue 16: dropping a manager or the stack `pop_all` returns silently does something (nothing
// is entered; every entry taken is cancelled), so each is reported.
#![deny(unused_must_use)]

use async_with::{ExitStack, Outcome, closing, from_fns, null_context};

async fn close(_: u8) -> Result<(), ()> {
    Ok(())
}

fn main() {
    from_fns(async || Ok::<_, ()>(1_u8), async |_: u8, _: Outcome<'_>| Ok(()));
    closing(1_u8, close);
    null_context(1_u8);
    let mut stack = ExitStack::<()>::new();
    stack.pop_all();
}
