// S14: `ExitStack<'a, ..>` is invariant in `'a`. Entries are registered through `&self`, so a
// `&ExitStack<'long>` seen as `&ExitStack<'short>` would accept entries borrowing `'short`
// data and run them after it is gone.
use async_with::ExitStack;

fn shorten<'s, 'l: 's>(stack: &'s ExitStack<'l, ()>) -> &'s ExitStack<'s, ()> {
    stack
}

fn main() {
    let stack = ExitStack::<()>::new();
    let _ = shorten(&stack);
}
