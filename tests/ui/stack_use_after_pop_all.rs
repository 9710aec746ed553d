// S14: a value lent by `adopt` cannot be used after `pop_all` moved its entry to a new owner
// (which may close it, or be dropped and cancel it).
use async_with::ExitStack;

fn main() {
    futures_executor::block_on(async {
        let mut stack = ExitStack::<()>::new();
        let buffer = stack.adopt(Vec::<u8>::new(), async |_: Vec<u8>| Ok::<_, ()>(()));
        let mut owner = stack.pop_all();
        buffer.push(1);
        owner.close().await.unwrap();
    });
}
