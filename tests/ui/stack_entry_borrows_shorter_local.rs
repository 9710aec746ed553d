// S14: an entry may borrow only what outlives the stack: a deferred closure that borrows a
// local dropped before the stack closes is rejected.
use async_with::ExitStack;

fn main() {
    futures_executor::block_on(async {
        let mut stack = ExitStack::<()>::new();
        {
            let name = String::from("temporary");
            stack.defer(async || {
                println!("{name}");
                Ok::<_, ()>(())
            });
        }
        stack.close().await.unwrap();
    });
}
