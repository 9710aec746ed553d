// S10: once the future has completed, exit has taken the resource, so nothing may still
// point into it: a body that hands out a view of the resource (here `&str` into a `String`)
// to be used after the `.await` is rejected.
use async_with::{null_context, with};

fn main() {
    futures_executor::block_on(async {
        let name = with(null_context(String::from("sensor")), async |s| {
            Ok::<_, ()>(s.as_str())
        })
        .await;
        // Exit has dropped the `String` by now.
        assert_eq!(name, Ok("sensor"));
    });
}
