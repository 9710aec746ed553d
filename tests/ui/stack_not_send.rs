// S14: a plain `ExitStack` accepts entries that are not `Send`, so it is not `Send` itself
// (use `SendExitStack` to move one to another thread).
use async_with::ExitStack;

fn main() {
    let stack = ExitStack::<()>::new();
    std::thread::spawn(move || drop(stack));
}
