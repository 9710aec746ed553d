//! async-with on a Cortex-M3: an embassy-executor task powers a simulated sensor up, reads it
//! and powers it down with `with`; then a read that fails (the sensor is still powered down,
//! and exit logs the body's error, still lent to it after its drain);
//! then a read cancelled by `embassy_futures::select` against a shorter future (the body future
//! is dropped, then the manager's synchronous `cancel` hook cuts the power).
//!
//! Then the same three stories on the real `embedded-hal-async` traits: an SPI flash chip behind
//! a simulated `SpiBus` and chip-select `OutputPin`, used through `spi_device::transaction` (the
//! manager of `../spi-device`): a transaction whose body polls the status register until the
//! chip is ready and then reads its ID, one that fails with a bus error, and one cancelled by
//! `select`; chip select ends high after each.
//!
//! Last, the sensor's read stopped gracefully by a signal (`cancel_on`): the body's future is
//! dropped, and exit still runs and is awaited, seeing `Cancelled`; the `cancel` hook does not
//! run.
//!
//! Every step is printed through semihosting, then the size of each scenario's future; the
//! firmware ends QEMU with exit status 0 when every check passed, 1 otherwise (a failed check or
//! a panic).
//!
//! The sensor is simulated, but its driver is written as an embedded HAL's would be: named,
//! poll-based futures that wait on a status "register" (here: a count of polls until the
//! hardware is done), and a manager implemented by hand, with no allocation anywhere.
//!
//! Two builds of the same scenarios: by default each scope is a `with` (`with.rs`); with the
//! feature `hand-written`, the same enter / body / exit / cancel logic written out by hand
//! (`by_hand.rs`). Everything else is shared, so their size difference is what `with` costs.

#![no_std]
#![no_main]

use core::cell::Cell;
use core::convert::Infallible;
use core::future::Future;
use core::mem::size_of_val;
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll};

use async_with::{AsyncEnter, AsyncExit, CancelError, Error, Outcome};
use cortex_m_semihosting::{debug, hprintln};
use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorKind, ErrorType as SpiErrorType};
use embedded_hal_async::spi::SpiBus;

// Where the two builds differ: how a scenario runs its body inside a manager.
#[cfg(not(feature = "hand-written"))]
#[path = "with.rs"]
mod scope;
#[cfg(feature = "hand-written")]
#[path = "by_hand.rs"]
mod scope;

use scope::{powered, powered_until, sampled, transaction};

/// What an SPI scenario's scope resolves to: the body's value, or `with`'s error, whose manager
/// side is `spi_device::SpiError` (the bus's or the chip-select pin's).
type Transaction<Bus, Cs, T, E> = Result<
    T,
    Error<spi_device::SpiError<<Bus as SpiErrorType>::Error, <Cs as PinErrorType>::Error>, E>,
>;

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
/// cancellation; after a failed body, logs the body's error once the sensor is off.
struct PowerDown;

/// How many times the cancellation hook ran.
static CANCELS: AtomicU32 = AtomicU32::new(0);

impl<'d> AsyncExit<&'d mut Sensor> for PowerDown {
    type Error = SensorError;
    type Future<'o> = PowerOff<'d, 'o>;

    fn exit<'o>(self, sensor: &'d mut Sensor, outcome: Outcome<'o>) -> PowerOff<'d, 'o> {
        hprintln!("exit: power down after {:?}", outcome.status());
        PowerOff {
            drain: Wait::new(2, ()),
            sensor: Some(sensor),
            outcome,
        }
    }

    fn cancel(self, sensor: &'d mut Sensor) {
        // Synchronous: `Drop` cannot await, so cut the power at once.
        sensor.powered = false;
        CANCELS.fetch_add(1, Ordering::Relaxed);
        hprintln!("cancel: power cut synchronously");
    }
}

/// Exit future: waits for the sensor to drain, then clears the power bit, then logs the body's
/// error, which the outcome still lends after the drain's `Pending`s (no copy, no allocation).
struct PowerOff<'d, 'o> {
    drain: Wait<()>,
    sensor: Option<&'d mut Sensor>,
    outcome: Outcome<'o>,
}

impl Future for PowerOff<'_, '_> {
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
                if let Some(failure) = self.outcome.failure() {
                    hprintln!("exit: body failed: {:?}", failure);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

// The simulated SPI NOR flash chip: its commands, its status register's busy bit, its ID.
const READ_ID: u8 = 0x9f;
const READ_STATUS: u8 = 0x05;
const READ_DATA: u8 = 0x03;
const BUSY: u8 = 0x01;
const FLASH_ID: [u8; 3] = [0xef, 0x40, 0x18];

/// The chip-select line, shared by the pin (which drives it) and the simulated chip (which
/// answers only while it is low).
struct Line {
    low: Cell<bool>,
}

/// A chip-select pin on the real `embedded_hal::digital::OutputPin` trait.
struct CsPin<'l> {
    line: &'l Line,
}

impl PinErrorType for CsPin<'_> {
    type Error = Infallible;
}

impl OutputPin for CsPin<'_> {
    fn set_low(&mut self) -> Result<(), Infallible> {
        hprintln!("cs: low");
        self.line.low.set(true);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        hprintln!("cs: high");
        self.line.low.set(false);
        Ok(())
    }
}

/// An SPI bus on the real `embedded_hal_async::spi::SpiBus` trait, with a flash chip behind it.
///
/// Every transfer takes one poll (it returns `Pending` once, as a DMA transfer waits for its
/// interrupt), a read of data takes `data_polls`; a transfer with chip select high, or a
/// transfer still in flight when `flush` is called, ends the run with `FAILED`.
struct SimSpi<'l> {
    cs: &'l Line,
    /// The command the chip received last.
    command: u8,
    /// How many more status reads report busy.
    busy_reads: u32,
    /// Polls a data read takes.
    data_polls: u32,
    /// Fault injection: the next read fails with this error.
    fault: Option<ErrorKind>,
    /// A transfer has started and not completed (a DMA channel would be running).
    in_flight: Cell<bool>,
    flushes: u32,
}

/// Marks a transfer in flight; if its future is dropped before it completes, prints it.
struct InFlight<'a> {
    flag: &'a Cell<bool>,
}

impl<'a> InFlight<'a> {
    fn start(flag: &'a Cell<bool>) -> Self {
        flag.set(true);
        InFlight { flag }
    }

    fn complete(self) {
        self.flag.set(false);
        core::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // A HAL stops its DMA channel here.
        hprintln!("spi: read aborted (future dropped)");
        self.flag.set(false);
    }
}

impl SimSpi<'_> {
    fn check_selected(&self) {
        if !self.cs.low.get() {
            fail("SPI transfer with chip select high");
        }
    }
}

impl SpiErrorType for SimSpi<'_> {
    type Error = ErrorKind;
}

impl SpiBus for SimSpi<'_> {
    async fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.check_selected();
        let polls = if self.command == READ_DATA {
            self.data_polls
        } else {
            1
        };
        let in_flight = InFlight::start(&self.in_flight);
        Wait::new(polls, ()).await;
        in_flight.complete();
        if let Some(error) = self.fault.take() {
            hprintln!("spi: read failed: {:?}", error);
            return Err(error);
        }
        match self.command {
            READ_ID => {
                for (word, id) in words.iter_mut().zip(FLASH_ID.iter().cycle()) {
                    *word = *id;
                }
            }
            READ_STATUS => {
                let status = if self.busy_reads > 0 {
                    self.busy_reads -= 1;
                    BUSY
                } else {
                    0
                };
                words.fill(status);
            }
            _ => words.fill(0xff),
        }
        hprintln!("spi: read {:02x?}", words);
        Ok(())
    }

    async fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        self.check_selected();
        Wait::new(1, ()).await;
        if let Some(&command) = words.first() {
            self.command = command;
        }
        hprintln!("spi: write {:02x?}", words);
        Ok(())
    }

    async fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        self.write(write).await?;
        self.read(read).await
    }

    async fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.write(words).await?;
        self.read(words).await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        if self.in_flight.get() {
            fail("flush with a transfer in flight");
        }
        Wait::new(1, ()).await;
        self.flushes += 1;
        hprintln!("spi: flush");
        Ok(())
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

/// Checks and prints that chip select is high (the device released).
fn check_deselected(line: &Line) {
    check(!line.low.get(), "chip select is high after the transaction");
    hprintln!("check: chip select high");
}

/// Returns `future` as it is, after writing its size to `size`. Measured by value before it is
/// awaited, so measuring keeps no copy of it in the future that awaits it.
fn measured<F: Future>(future: F, size: &mut usize) -> F {
    *size = size_of_val(&future);
    future
}

/// The scenarios, by the names their sizes are printed with.
const SCENARIOS: [&str; 8] = [
    "1. read",
    "2. failing read",
    "3. read cancelled by select",
    "4. SPI transaction",
    "5. failing SPI transaction",
    "6. SPI transaction cancelled by select",
    "7. read stopped by a signal",
    "8. read in a one-function manager",
];

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    hprintln!("async-with on a Cortex-M3 (embassy-executor, QEMU lm3s6965evb)");
    let mut run_size = 0;
    let sizes = measured(run(), &mut run_size).await;
    for (scenario, size) in SCENARIOS.iter().zip(sizes) {
        hprintln!("size_of future, {} = {} bytes", scenario, size);
    }
    hprintln!(
        "size_of future, all eight (the task's) = {} bytes",
        run_size
    );
    hprintln!("all checks passed");
    debug::exit(debug::EXIT_SUCCESS);
}

/// Runs the eight scenarios, checking each; returns the size of each one's future (a
/// `WithFuture`, a `CancelOn` for the seventh, a `ScopedWith` for the last, or in the
/// `hand-written` build the future of the `async fn` that replaces it).
async fn run() -> [usize; 8] {
    let mut sizes = [0; 8];
    let mut sensor = Sensor {
        powered: false,
        fault: false,
        conversion_polls: 3,
    };

    hprintln!("-- 1. read");
    let read = powered(&mut sensor, async |sensor| {
        let value = sensor.read().await?;
        hprintln!("body: read {}", value);
        Ok::<_, SensorError>(value)
    });
    let result = measured(read, &mut sizes[0]).await;
    hprintln!("result: {:?}", result);
    check(result == Ok(2150), "the read returns 2150");
    check(!sensor.powered, "the sensor is powered down after the read");

    hprintln!("-- 2. failing read");
    sensor.fault = true;
    let read = powered(&mut sensor, async |sensor| {
        let value = sensor.read().await;
        hprintln!("body: read {:?}", value);
        value
    });
    let result = measured(read, &mut sizes[1]).await;
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
    let read = powered(&mut sensor, async |sensor| {
        let _guard = DropGuard;
        hprintln!("body: slow read started");
        let value = sensor.read().await?;
        hprintln!("body: read {}", value);
        Ok::<_, SensorError>(value)
    });
    match select(measured(read, &mut sizes[2]), deadline(10)).await {
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

    let line = Line {
        low: Cell::new(false),
    };
    let mut cs = CsPin { line: &line };
    let mut spi = SimSpi {
        cs: &line,
        command: 0,
        busy_reads: 1,
        data_polls: 1,
        fault: None,
        in_flight: Cell::new(false),
        flushes: 0,
    };

    hprintln!("-- 4. SPI transaction (embedded-hal-async SpiBus, OutputPin chip select)");
    let read_id = transaction(&mut spi, &mut cs, async |spi| {
        // How many operations run depends on what the chip answers: poll the status register
        // until it is not busy, then read the ID.
        loop {
            spi.write(&[READ_STATUS]).await?;
            let mut status = [0];
            spi.read(&mut status).await?;
            if status[0] & BUSY == 0 {
                break;
            }
            hprintln!("body: busy, read the status again");
        }
        spi.write(&[READ_ID]).await?;
        let mut id = [0; 3];
        spi.read(&mut id).await?;
        Ok::<_, ErrorKind>(id)
    });
    let result = measured(read_id, &mut sizes[3]).await;
    hprintln!("result: {:02x?}", result);
    check(result == Ok(FLASH_ID), "the transaction reads the flash ID");
    check(spi.flushes == 2, "enter and exit each flush the bus once");
    check_deselected(&line);

    hprintln!("-- 5. failing SPI transaction");
    spi.fault = Some(ErrorKind::Overrun);
    let read_id = transaction(&mut spi, &mut cs, async |spi| {
        spi.write(&[READ_ID]).await?;
        let mut id = [0; 3];
        spi.read(&mut id).await?;
        hprintln!("body: read {:02x?}", id);
        Ok::<_, ErrorKind>(id)
    });
    let result = measured(read_id, &mut sizes[4]).await;
    hprintln!("result: {:?}", result);
    check(
        result == Err(Error::Body(ErrorKind::Overrun)),
        "the bus error reaches the caller",
    );
    check(spi.flushes == 4, "exit flushes after a failed body");
    check_deselected(&line);

    hprintln!("-- 6. SPI transaction cancelled by select");
    spi.data_polls = 1_000;
    let read_data = transaction(&mut spi, &mut cs, async |spi| {
        spi.write(&[READ_DATA, 0x00, 0x10, 0x00]).await?;
        hprintln!("body: slow read started");
        let mut data = [0; 16];
        spi.read(&mut data).await?;
        Ok::<_, ErrorKind>(data[0])
    });
    match select(measured(read_data, &mut sizes[5]), deadline(10)).await {
        Either::First(result) => {
            hprintln!("result: {:?}", result);
            fail("the deadline should have won");
        }
        Either::Second(()) => hprintln!("select: deadline first, transaction cancelled"),
    }
    check(
        spi.flushes == 5,
        "only enter flushed: the cancel hook cannot await",
    );
    check_deselected(&line);

    hprintln!("-- 7. read stopped by a signal (cancel_on)");
    // The conversion still takes 1,000 polls (scenario 3): the sample does not come before the
    // stop signal, a poll-based future ready after 10 polls (a timer, a button's interrupt or a
    // shutdown request would stand here).
    let read = powered_until(&mut sensor, Wait::new(10, ()), async |sensor| {
        let _guard = DropGuard;
        hprintln!("body: waiting for a sample");
        let value = sensor.read().await?;
        hprintln!("body: read {}", value);
        Ok::<_, SensorError>(value)
    });
    let result = measured(read, &mut sizes[6]).await;
    hprintln!("result: {:?}", result);
    check(
        result == Err(CancelError::Body { exit: None }),
        "the signal stops the body, and exit succeeds",
    );
    check(
        !sensor.powered,
        "the awaited exit powers the sensor down after the signal",
    );
    check(
        CANCELS.load(Ordering::Relaxed) == 1,
        "the cancel hook does not run when a signal stops the body",
    );
    hprintln!("check: sensor off, by the awaited exit (cancel hook not run)");

    hprintln!("-- 8. read in a one-function manager (scoped)");
    // Setup and teardown in one async closure (`with.rs`), sharing a local: the settle time
    // setup measured, which teardown reports.
    sensor.conversion_polls = 3;
    let read = sampled(&mut sensor, async |sensor| {
        let value = sensor.read().await?;
        hprintln!("body: read {}", value);
        Ok::<_, SensorError>(value)
    });
    let result = measured(read, &mut sizes[7]).await;
    hprintln!("result: {:?}", result);
    check(result == Ok(2150), "the body's value, after teardown");
    check(!sensor.powered, "teardown powers the sensor down");
    sizes
}

/// Scenario 8's setup, shared by both builds: powers the sensor up and waits until it is ready;
/// returns how many polls that took.
async fn sample_setup(sensor: &mut Sensor) -> u32 {
    hprintln!("setup: power up");
    sensor.powered = true;
    let settle = 2;
    Wait::new(settle, ()).await;
    hprintln!("setup: sensor ready");
    settle
}

/// Scenario 8's teardown, shared by both builds: waits for the sensor to drain, powers it down,
/// and reports how the body ended, with the body's error lent across the drain.
async fn sample_teardown(
    sensor: &mut Sensor,
    outcome: Outcome<'_>,
    settled: u32,
) -> Result<(), SensorError> {
    hprintln!("teardown: power down after {:?}", outcome.status());
    Wait::new(2, ()).await;
    sensor.powered = false;
    hprintln!("teardown: sensor off (it had settled in {} polls)", settled);
    if let Some(failure) = outcome.failure() {
        hprintln!("teardown: body failed: {:?}", failure);
    }
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    fail("panicked");
}
