use async_with::*;
use core::future::{Ready, ready};
use std::cell::RefCell;

struct Bus {
    log: Vec<&'static str>,
}
struct Driver<'b> {
    bus: &'b mut Bus,
    reads: u32,
}
struct Release;
impl<'b> AsyncExit<Driver<'b>> for Release {
    type Error = &'static str;
    type Future = Ready<Result<(), &'static str>>;
    fn exit(self, d: Driver<'b>, outcome: Outcome<'_>) -> Self::Future {
        d.bus.log.push(if outcome.is_success() {
            "release-ok"
        } else {
            "release-err"
        });
        ready(Ok(()))
    }
}
struct Take<'b>(&'b mut Bus);
impl<'b> AsyncEnter for Take<'b> {
    type Resource = Driver<'b>;
    type Error = &'static str;
    type Exit = Release;
    type Enter = Ready<Result<(Driver<'b>, Release), &'static str>>;
    fn enter(self) -> Self::Enter {
        self.0.log.push("take");
        ready(Ok((
            Driver {
                bus: self.0,
                reads: 0,
            },
            Release,
        )))
    }
}

#[test]
fn non_static_resource_and_captures() {
    let mut bus = Bus { log: vec![] };
    let local = RefCell::new(0);
    let out = futures_executor::block_on(with(Take(&mut bus), async |d| {
        d.reads += 1;
        *local.borrow_mut() += 1;
        d.bus.log.push("body");
        Ok::<_, String>(d.reads)
    }));
    assert_eq!(out, Ok(1));
    assert_eq!(bus.log, ["take", "body", "release-ok"]);
    let out = futures_executor::block_on(Take(&mut bus).with(async |d| {
        d.bus.log.push("body");
        Err::<(), _>(5u8)
    }));
    assert_eq!(out, Err(Error::Body(5)));
}

async fn body_fn(d: &mut Driver<'_>) -> Result<u32, ()> {
    d.reads += 10;
    Ok(d.reads)
}

#[test]
fn async_fn_item() {
    let mut bus = Bus { log: vec![] };
    let out = futures_executor::block_on(with(Take(&mut bus), body_fn));
    assert_eq!(out, Ok(10));
}
