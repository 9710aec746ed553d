// S14: a value lent by `adopt` lives in the stack's entry; the stack cannot be moved (to a
// struct, a task, another owner) while the value is still borrowed.
use async_with::ExitStack;

struct Owner {
    stack: ExitStack<'static, ()>,
}

fn main() {
    let stack = ExitStack::<()>::new();
    let buffer = stack.adopt(Vec::<u8>::new(), async |_: Vec<u8>| Ok::<_, ()>(()));
    let owner = Owner { stack };
    buffer.push(1);
    drop(owner);
}
