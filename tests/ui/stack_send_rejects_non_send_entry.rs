// S14: a `SendExitStack` takes only `Send` entries: a deferred closure holding an `Rc` is
// rejected.
use std::rc::Rc;

use async_with::SendExitStack;

fn main() {
    let stack = SendExitStack::<()>::new();
    let shared = Rc::new(1_u8);
    stack.defer(async move || {
        drop(shared);
        Ok::<_, ()>(())
    });
}
