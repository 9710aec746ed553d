// Issue 17: exit may hold the body's error lent across its awaits, and the exit future must
// stay `Send` when its parts are, so the body's error must be `Sync`. A `Cell` error is
// refused where `with` is called, naming the missing `Sync`.
use std::cell::Cell;

use async_with::{null_context, with};

fn main() {
    let _ = with(null_context(1_u8), async |_| Err::<(), _>(Cell::new(1_u8)));
}
