//! async-with on a Cortex-M3: an embassy-executor task powers a simulated sensor up, reads it
//! and powers it down with `with`; then a read that fails (the sensor is still powered down);
//! then a read cancelled by `embassy_futures::select` against a shorter future (the body future
//! is dropped, then the manager's synchronous `cancel` hook cuts the power).
//!
//! Every step is printed through semihosting; the firmware ends QEMU with exit status 0 when
//! every check passed, 1 otherwise (a failed check or a panic).
//!
//! The sensor is simulated, but its driver is written as an embedded HAL's would be: named,
//! poll-based futures that wait on a status "register" (here: a count of polls until the
//! hardware is done), and a manager implemented by hand, with no allocation anywhere.

#![no_std]
#![no_main]

use core::future::Future;
use core::mem::size_of_val;
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll};

use async_with::{AsyncEnter, AsyncExit, Error, Outcome, with};
use cortex_m_semihosting::{debug, hprintln};
use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};

/// Errors of the sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SensorError {
    /// The sensor did not acknowledge a conversion.
    NoAck,
}

/// The simulated peripheral: its "registers", and how it behaves.
struct Sensor {
    /// The power-enable bit.
    powered: bool,
    /// Fault injection: the next conversion is not acknowledged.
    fault: bool,
    /// How many polls a conversion takes (the time the hardware needs).
    conversion_polls: u32,
}

impl Sensor {
    /// Starts a conversion; the future completes when the (simulated) hardware is done.
    fn read(&mut self) -> Wait<Result<u16, SensorError>> {
        if !self.powered {
            fail("read while the sensor is powered down");
        }
        let result = if self.fault {
            Err(SensorError::NoAck)
        } else {
            Ok(2150)
        };
        Wait::new(self.conversion_polls, result)
    }
}

/// A poll-based future that waits `polls` polls for the hardware, then yields its value (a
/// HAL's future would check a status register and be woken by an interrupt).
struct Wait<T> {
    polls: u32,
    value: Option<T>,
}

impl<T> Wait<T> {
    fn new(polls: u32, value: T) -> Self {
        Wait {
            polls,
            value: Some(value),
        }
    }
}

impl<T> Unpin for Wait<T> {}

impl<T> Future for Wait<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if self.polls > 0 {
            self.polls -= 1;
            // The "interrupt": ask the executor to poll again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.value.take().expect("`Wait` polled after completion"))
    }
}

/// The manager: the sensor, powered for the duration of a body.
struct Powered<'d>(&'d mut Sensor);

/// Enter future: sets the power bit, waits until the sensor is ready.
struct PowerUp<'d> {
    settle: Wait<()>,
    sensor: Option<&'d mut Sensor>,
}

impl<'d> AsyncEnter for Powered<'d> {
    type Resource = &'d mut Sensor;
    type Error = SensorError;
    type Exit = PowerDown;
    type Enter = PowerUp<'d>;

    fn enter(self) -> PowerUp<'d> {
        hprintln!("enter: power up");
        self.0.powered = true;
        PowerUp {
            settle: Wait::new(2, ()),
            sensor: Some(self.0),
        }
    }
}

impl<'d> Future for PowerUp<'d> {
    type Output = Result<(&'d mut Sensor, PowerDown), SensorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.settle).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                hprintln!("enter: sensor ready");
                let sensor = self
                    .sensor
                    .take()
                    .expect("`PowerUp` polled after completion");
                Poll::Ready(Ok((sensor, PowerDown)))
            }
        }
    }
}

/// Exit handle: powers the sensor down, asynchronously after a body, synchronously on
/// cancellation.
struct PowerDown;

/// How many times the cancellation hook ran.
static CANCELS: AtomicU32 = AtomicU32::new(0);

impl<'d> AsyncExit<&'d mut Sensor> for PowerDown {
    type Error = SensorError;
    type Future = PowerOff<'d>;

    fn exit(self, sensor: &'d mut Sensor, outcome: Outcome<'_>) -> PowerOff<'d> {
        hprintln!("exit: power down after {:?}", outcome);
        PowerOff {
            drain: Wait::new(2, ()),
            sensor: Some(sensor),
        }
    }

    fn cancel(self, sensor: &'d mut Sensor) {
        // Synchronous: `Drop` cannot await, so cut the power at once.
        sensor.powered = false;
        CANCELS.fetch_add(1, Ordering::Relaxed);
        hprintln!("cancel: power cut synchronously");
    }
}

/// Exit future: waits for the sensor to drain, then clears the power bit.
struct PowerOff<'d> {
    drain: Wait<()>,
    sensor: Option<&'d mut Sensor>,
}

impl Future for PowerOff<'_> {
    type Output = Result<(), SensorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.drain).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                let sensor = self
                    .sensor
                    .take()
                    .expect("`PowerOff` polled after completion");
                sensor.powered = false;
                hprintln!("exit: sensor off");
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Prints when dropped: shows that the body's future is dropped before `cancel` runs.
struct DropGuard;

impl Drop for DropGuard {
    fn drop(&mut self) {
        hprintln!("body: future dropped");
    }
}

/// A shorter future to race the body against (a timer would stand here).
async fn deadline(polls: u32) {
    Wait::new(polls, ()).await;
}

/// Prints `FAILED: {what}` and ends QEMU with failure.
fn fail(what: &str) -> ! {
    hprintln!("FAILED: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

fn check(ok: bool, what: &str) {
    if !ok {
        fail(what);
    }
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    hprintln!("async-with on a Cortex-M3 (embassy-executor, QEMU lm3s6965evb)");
    let mut sensor = Sensor {
        powered: false,
        fault: false,
        conversion_polls: 3,
    };

    hprintln!("-- 1. read");
    let read = with(Powered(&mut sensor), async |sensor| {
        let value = sensor.read().await?;
        hprintln!("body: read {}", value);
        Ok::<_, SensorError>(value)
    });
    let with_size = size_of_val(&read);
    let result = read.await;
    hprintln!("result: {:?}", result);
    check(result == Ok(2150), "the read returns 2150");
    check(!sensor.powered, "the sensor is powered down after the read");

    hprintln!("-- 2. failing read");
    sensor.fault = true;
    let result = with(Powered(&mut sensor), async |sensor| {
        let value = sensor.read().await;
        hprintln!("body: read {:?}", value);
        value
    })
    .await;
    hprintln!("result: {:?}", result);
    check(
        result == Err(Error::Body(SensorError::NoAck)),
        "the body's error reaches the caller",
    );
    check(
        !sensor.powered,
        "the sensor is powered down after a failed read",
    );
    sensor.fault = false;

    hprintln!("-- 3. read cancelled by select");
    sensor.conversion_polls = 1_000;
    let read = with(Powered(&mut sensor), async |sensor| {
        let _guard = DropGuard;
        hprintln!("body: slow read started");
        let value = sensor.read().await?;
        hprintln!("body: read {}", value);
        Ok::<_, SensorError>(value)
    });
    match select(read, deadline(10)).await {
        Either::First(result) => {
            hprintln!("result: {:?}", result);
            fail("the deadline should have won");
        }
        Either::Second(()) => hprintln!("select: deadline first, read cancelled"),
    }
    let cancels = CANCELS.load(Ordering::Relaxed);
    hprintln!("cancel hook ran {} time(s)", cancels);
    check(cancels == 1, "the cancel hook runs exactly once");
    check(
        !sensor.powered,
        "the sensor is powered down after cancellation",
    );

    hprintln!("size_of WithFuture (read task) = {} bytes", with_size);
    hprintln!("all checks passed");
    debug::exit(debug::EXIT_SUCCESS);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    fail("panicked");
}
