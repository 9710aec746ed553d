// `SendManager` is checked where the library function is defined: a manager whose resource
// is not `Send` (an `Rc`) cannot be returned as one.
use std::rc::Rc;

use async_with::{Outcome, SendManager, from_fns};

fn shared() -> impl SendManager<Resource = Rc<u8>, Error = ()> {
    from_fns(async || Ok(Rc::new(1)), async |_r: Rc<u8>, _s: Outcome<'_>| Ok(()))
}

fn main() {
    let _ = shared();
}
