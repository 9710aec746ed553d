// Issue 20: what must keep failing. A spawned task may outlive the function that spawned it, so
// an entry of its `SendExitStack` cannot borrow that function's locals: `name` would have to
// live for `'static` (E0597).
use async_with::{SendExitStack, with};

fn spawn_with(name: String) {
    let borrowed = &name;
    let _task = tokio::spawn(async move {
        with(SendExitStack::<String>::new(), async |stack| {
            stack.defer(async move || {
                println!("closing {borrowed}");
                Ok::<_, String>(())
            });
            Ok::<_, String>(())
        })
        .await
    });
}

fn main() {
    spawn_with(String::from("peer"));
}
