// S14: an entry cannot borrow a resource lent by the same stack (the stack would hold a borrow
// of itself; cancelling or moving it would leave the entry dangling).
use async_with::ExitStack;

fn main() {
    let stack = ExitStack::<()>::new();
    let counter = stack.adopt(0_u32, async |_: u32| Ok::<_, ()>(()));
    stack.defer(async || {
        *counter += 1;
        Ok::<_, ()>(())
    });
}
