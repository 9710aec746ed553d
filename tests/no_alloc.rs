//! S12: no heap allocation per enter-body-exit cycle.
//!
//! A counting global allocator counts the allocations made by the current thread; each test
//! counts only around the construction, polling and dropping of one `WithFuture` (polled by
//! hand with `Waker::noop()`), never around the test harness. Runs under Miri too.

use core::cell::Cell;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, closing, from_fns, null_context, with};

mod counting_alloc;

use counting_alloc::{allocations_in, poll_to_end};

/// A fixed-capacity, allocation-free trace of what ran.
struct Trace {
    entries: [Cell<&'static str>; 16],
    len: Cell<usize>,
}

impl Trace {
    fn new() -> Self {
        Trace {
            entries: Default::default(),
            len: Cell::new(0),
        }
    }

    fn push(&self, entry: &'static str) {
        let len = self.len.get();
        self.entries[len].set(entry);
        self.len.set(len + 1);
    }

    /// Allocates: call only outside the counted region.
    fn to_vec(&self) -> Vec<&'static str> {
        self.entries[..self.len.get()]
            .iter()
            .map(Cell::get)
            .collect()
    }
}

/// A hand-written future: returns `Pending` once (waking its task), then records `label` and
/// returns its value.
struct Step<'t, T> {
    trace: &'t Trace,
    label: &'static str,
    yielded: bool,
    value: Option<T>,
}

impl<'t, T> Step<'t, T> {
    fn new(trace: &'t Trace, label: &'static str, value: T) -> Self {
        Step {
            trace,
            label,
            yielded: false,
            value: Some(value),
        }
    }
}

impl<T> Unpin for Step<'_, T> {}

impl<T> Future for Step<'_, T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.trace.push(self.label);
        Poll::Ready(self.value.take().expect("`Step` polled after completion"))
    }
}

/// A hand-written manager (S16) with named, poll-based futures in every phase.
struct Sensor<'t> {
    trace: &'t Trace,
    exit_fails: bool,
}

struct PowerDown<'t> {
    trace: &'t Trace,
    exit_fails: bool,
}

impl<'t> AsyncEnter for Sensor<'t> {
    type Resource = u32;
    type Error = &'static str;
    type Exit = PowerDown<'t>;
    type Enter = Step<'t, Result<(u32, PowerDown<'t>), &'static str>>;

    fn enter(self) -> Self::Enter {
        let exit = PowerDown {
            trace: self.trace,
            exit_fails: self.exit_fails,
        };
        Step::new(self.trace, "enter", Ok((40, exit)))
    }
}

impl<'t> AsyncExit<u32> for PowerDown<'t> {
    type Error = &'static str;
    type Future<'o> = Step<'t, Result<(), &'static str>>;

    fn exit<'o>(self, reading: u32, outcome: Outcome<'o>) -> Self::Future<'o> {
        let label = match outcome.failure() {
            None => "exit:ok",
            Some(failure) if failure.downcast_ref::<&str>() == Some(&"bad reading") => {
                "exit:bad reading"
            }
            Some(_) => "exit:other error",
        };
        assert_eq!(reading, 41);
        let result = if self.exit_fails {
            Err("power down failed")
        } else {
            Ok(())
        };
        Step::new(self.trace, label, result)
    }

    fn cancel(self, reading: u32) {
        // 40 when a group is dropped before its body ran, 41 after.
        assert!(reading == 40 || reading == 41, "{reading}");
        self.trace.push("cancel");
    }
}

/// A future that returns `Pending` once (waking its task), then `Ready(())`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_once() -> YieldOnce {
    YieldOnce(false)
}

#[test]
fn the_counter_sees_allocations() {
    // Control: the measurement itself can fail.
    let (boxed, n) = allocations_in(|| std::hint::black_box(Box::new(7_u8)));
    assert_eq!((*boxed, n), (7, 1));

    let trace = Trace::new();
    let (out, n) = allocations_in(|| {
        poll_to_end(with(
            Sensor {
                trace: &trace,
                exit_fails: false,
            },
            async |r| {
                *r += 1;
                let boxed = std::hint::black_box(Box::new(*r));
                Ok::<_, &str>(*boxed)
            },
        ))
    });
    assert_eq!(out, (Ok(41), 3));
    assert_eq!(n, 1, "the body's own `Box` is counted");
}

type SensorOutput = Result<u32, Error<&'static str, &'static str>>;

/// One cycle of the hand-written manager whose phases each return `Pending` once; the body
/// fails when `fail`. Returns the output, the polls, and the allocations made.
fn sensor_cycle(trace: &Trace, fail: bool) -> ((SensorOutput, usize), usize) {
    allocations_in(|| {
        poll_to_end(with(
            Sensor {
                trace,
                exit_fails: false,
            },
            async |r| {
                yield_once().await;
                *r += 1;
                trace.push("body");
                if fail { Err("bad reading") } else { Ok(*r * 2) }
            },
        ))
    })
}

#[test]
fn hand_written_manager_body_succeeds() {
    let trace = Trace::new();
    let ((out, polls), n) = sensor_cycle(&trace, false);
    assert_eq!(n, 0, "allocations per cycle");
    assert_eq!(out, Ok(82));
    // One `Pending` per phase, then `Ready`.
    assert_eq!(polls, 4);
    assert_eq!(trace.to_vec(), ["enter", "body", "exit:ok"]);
}

#[test]
fn hand_written_manager_body_fails() {
    let trace = Trace::new();
    let ((out, polls), n) = sensor_cycle(&trace, true);
    assert_eq!(n, 0, "allocations per cycle");
    assert_eq!(out, Err(Error::Body("bad reading")));
    assert_eq!(polls, 4);
    assert_eq!(trace.to_vec(), ["enter", "body", "exit:bad reading"]);
}

#[test]
fn hand_written_manager_body_and_exit_fail() {
    let trace = Trace::new();
    let ((out, _), n) = allocations_in(|| {
        poll_to_end(with(
            Sensor {
                trace: &trace,
                exit_fails: true,
            },
            async |r| {
                *r += 1;
                Err::<u32, _>("bad reading")
            },
        ))
    });
    assert_eq!(n, 0, "allocations per cycle");
    assert_eq!(
        out,
        Err(Error::BodyAndExit {
            body: "bad reading",
            exit: "power down failed"
        })
    );
    assert_eq!(trace.to_vec(), ["enter", "exit:bad reading"]);
}

#[test]
fn many_cycles_allocate_nothing() {
    let trace = Trace::new();
    let (total, n) = allocations_in(|| {
        let mut total = 0;
        for i in 0..100_u32 {
            trace.len.set(0);
            let (out, _) = poll_to_end(with(
                Sensor {
                    trace: &trace,
                    exit_fails: false,
                },
                async |r| {
                    *r += 1;
                    if i % 3 == 0 {
                        Err("bad reading")
                    } else {
                        Ok(*r + i)
                    }
                },
            ));
            total += out.unwrap_or(0);
        }
        total
    });
    assert_eq!(n, 0);
    // 66 successes (i % 3 != 0), each 41 + i.
    let expected: u32 = (0..100).filter(|i| i % 3 != 0).map(|i| 41 + i).sum();
    assert_eq!(total, expected);
}

#[test]
fn from_fns_manager() {
    let trace = Trace::new();
    let run = |fail: bool| {
        allocations_in(|| {
            poll_to_end(with(
                from_fns(
                    async || {
                        yield_once().await;
                        trace.push("enter");
                        Ok::<_, &str>(40_u32)
                    },
                    async |reading: u32, status: Outcome<'_>| {
                        yield_once().await;
                        assert_eq!(reading, 41);
                        trace.push(if status.is_success() {
                            "exit:ok"
                        } else {
                            "exit:err"
                        });
                        Ok(())
                    },
                ),
                async |r| {
                    yield_once().await;
                    *r += 1;
                    trace.push("body");
                    if fail { Err(7_u8) } else { Ok(*r) }
                },
            ))
        })
    };

    let ((out, polls), n) = run(false);
    assert_eq!((out, polls, n), (Ok(41), 4, 0));
    assert_eq!(trace.to_vec(), ["enter", "body", "exit:ok"]);

    trace.len.set(0);
    let ((out, polls), n) = run(true);
    assert_eq!((out, polls, n), (Err(Error::Body(7)), 4, 0));
    assert_eq!(trace.to_vec(), ["enter", "body", "exit:err"]);
}

#[test]
fn closing_manager() {
    struct Port<'t> {
        trace: &'t Trace,
        sent: u32,
    }
    impl Port<'_> {
        async fn close(self) -> Result<(), &'static str> {
            yield_once().await;
            self.trace.push(if self.sent > 0 {
                "flush+close"
            } else {
                "close"
            });
            Ok(())
        }
    }

    let trace = Trace::new();
    for fail in [false, true] {
        trace.len.set(0);
        let ((out, polls), n) = allocations_in(|| {
            poll_to_end(with(
                closing(
                    Port {
                        trace: &trace,
                        sent: 0,
                    },
                    Port::close,
                ),
                async |port| {
                    yield_once().await;
                    port.sent += 3;
                    trace.push("body");
                    if fail { Err(()) } else { Ok(port.sent) }
                },
            ))
        });
        assert_eq!(n, 0, "allocations per cycle (fail = {fail})");
        // `closing` enters without suspending: body and exit each suspend once.
        assert_eq!(polls, 3);
        let expected = if fail { Err(Error::Body(())) } else { Ok(3) };
        assert_eq!(out, expected);
        assert_eq!(trace.to_vec(), ["body", "flush+close"]);
    }
}

#[test]
fn nullcontext_manager() {
    for fail in [false, true] {
        let ((out, polls), n) = allocations_in(|| {
            poll_to_end(with(null_context([1_u8; 64]), async |buf| {
                yield_once().await;
                buf[0] = 9;
                if fail {
                    Err(buf[1])
                } else {
                    Ok(buf.iter().map(|&b| u32::from(b)).sum::<u32>())
                }
            }))
        });
        assert_eq!(n, 0, "allocations per cycle (fail = {fail})");
        assert_eq!(polls, 2);
        let expected = if fail {
            Err(Error::Body(1))
        } else {
            Ok(9 + 63)
        };
        assert_eq!(out, expected);
    }
}

/// Polls `polls` times (each must be `Pending`), then drops the future; counts allocations
/// over the whole of it.
fn cancel_after(polls: usize, trace: &Trace) -> usize {
    let ((), n) = allocations_in(|| {
        let mut fut = pin!(with(
            Sensor {
                trace,
                exit_fails: false,
            },
            async |r| {
                *r += 1;
                trace.push("body:start");
                yield_once().await;
                yield_once().await;
                trace.push("body:end");
                Ok::<_, &str>(*r)
            },
        ));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..polls {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
    });
    n
}

#[test]
fn cancel_paths_allocate_nothing() {
    let trace = Trace::new();

    // Dropped before the first poll: nothing ran.
    assert_eq!(cancel_after(0, &trace), 0);
    assert_eq!(trace.to_vec(), [] as [&str; 0]);

    // Dropped during enter: no exit, no cancel.
    assert_eq!(cancel_after(1, &trace), 0);
    assert_eq!(trace.to_vec(), [] as [&str; 0]);

    // Dropped during the body: the body future goes, then `cancel` gets the resource.
    assert_eq!(cancel_after(2, &trace), 0);
    assert_eq!(trace.to_vec(), ["enter", "body:start", "cancel"]);

    // Dropped during exit: the exit future is dropped; `cancel` does not run.
    trace.len.set(0);
    assert_eq!(cancel_after(4, &trace), 0);
    assert_eq!(trace.to_vec(), ["enter", "body:start", "body:end"]);
}

fn sensor(trace: &Trace) -> Sensor<'_> {
    Sensor {
        trace,
        exit_fails: false,
    }
}

#[test]
fn a_tuple_of_managers_allocates_nothing() {
    let trace = Trace::new();
    let ((out, polls), n) = allocations_in(|| {
        poll_to_end(with(
            (sensor(&trace), sensor(&trace), null_context(1_u32)),
            async |(a, b, one)| {
                yield_once().await;
                *a += *one;
                *b += *one;
                Ok::<_, &str>(*a + *b)
            },
        ))
    });
    assert_eq!(n, 0, "allocations per cycle");
    assert_eq!(out.map_err(|_| ()), Ok(82));
    assert_eq!(polls, 6);
    assert_eq!(trace.to_vec(), ["enter", "enter", "exit:ok", "exit:ok"]);
}

#[test]
fn an_array_of_managers_allocates_nothing() {
    let trace = Trace::new();
    let ((out, _), n) = allocations_in(|| {
        poll_to_end(with(
            [sensor(&trace), sensor(&trace), sensor(&trace)],
            async |readings| {
                for r in readings.iter_mut() {
                    *r += 1;
                }
                Err::<(), _>("bad reading")
            },
        ))
    });
    assert_eq!(n, 0, "allocations per cycle");
    assert!(matches!(out, Err(Error::Body("bad reading"))));
    assert_eq!(
        trace.to_vec(),
        [
            "enter",
            "enter",
            "enter",
            "exit:bad reading",
            "exit:bad reading",
            "exit:bad reading"
        ]
    );
}

#[test]
fn a_group_dropped_at_every_poll_allocates_nothing() {
    for polls in 0..8 {
        let trace = Trace::new();
        let ((), n) = allocations_in(|| {
            let mut fut = pin!(with(
                (sensor(&trace), [sensor(&trace), sensor(&trace)]),
                async |(a, [b, c])| {
                    *a += 1;
                    *b += 1;
                    *c += 1;
                    yield_once().await;
                    Ok::<_, &str>(())
                },
            ));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                let _ = fut.as_mut().poll(&mut cx);
            }
        });
        assert_eq!(n, 0, "dropped after {polls} polls");
    }
}
