//! The SPI manager against embedded-hal-mock's async SPI bus and digital pin mocks.
//!
//! Every test declares, up front, every bus operation and every chip-select change it expects,
//! in order; `done()` fails the test if one is missing, and the mocks panic on one that is extra
//! or out of order. The mock bus cannot fail or stall, so `Faulty` wraps it for the tests that
//! need a failing or never-finishing `flush` (or a failing read): it still passes every call to
//! the mock first, so those calls are checked against the same list.

use core::cell::Cell;
use core::future::{Future, pending};
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::io;

use async_with::{Error, with};
use embedded_hal::spi::{ErrorKind, ErrorType};
use embedded_hal_async::spi::SpiBus;
use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as Spi};
use futures_executor::block_on;
use spi_device::{SpiError, transaction};

const READ_ID: u8 = 0x9f;
const READ_STATUS: u8 = 0x05;
const READ_DATA: u8 = 0x03;
const BUSY: u8 = 0x01;
const ID: [u8; 3] = [0xef, 0x40, 0x18];

/// What the body of these tests can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flash {
    /// A transfer failed.
    Bus(ErrorKind),
    /// The device is not the expected one.
    WrongId([u8; 3]),
}

fn cs_low() -> Pin {
    Pin::set(State::Low)
}

fn cs_high() -> Pin {
    Pin::set(State::High)
}

fn pin_fault() -> MockError {
    MockError::Io(io::ErrorKind::BrokenPipe)
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future>(future: core::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// The mock bus, with the faults the mock cannot produce.
struct Faulty {
    mock: SpiMock<u8>,
    flushes: usize,
    /// This flush (0: enter's) reaches the mock, then fails.
    fail_flush: Option<usize>,
    /// This flush never completes (and never reaches the mock).
    stall_flush: Option<usize>,
    /// Every read reaches the mock, then fails.
    fail_reads: bool,
}

impl Faulty {
    fn new(expected: &[Spi<u8>]) -> Self {
        Faulty {
            mock: SpiMock::new(expected),
            flushes: 0,
            fail_flush: None,
            stall_flush: None,
            fail_reads: false,
        }
    }

    fn done(&mut self) {
        self.mock.done();
    }
}

impl ErrorType for Faulty {
    type Error = ErrorKind;
}

impl SpiBus for Faulty {
    async fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.mock.read(words).await?;
        if self.fail_reads {
            return Err(ErrorKind::Overrun);
        }
        Ok(())
    }

    async fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        self.mock.write(words).await
    }

    async fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        self.mock.transfer(read, write).await
    }

    async fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.mock.transfer_in_place(words).await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        let n = self.flushes;
        self.flushes += 1;
        if self.stall_flush == Some(n) {
            pending::<()>().await;
        }
        self.mock.flush().await?;
        if self.fail_flush == Some(n) {
            return Err(ErrorKind::Other);
        }
        Ok(())
    }
}

/// The usual body: reads the JEDEC ID and checks it.
async fn read_id<B: SpiBus<Error = ErrorKind>>(bus: &mut B) -> Result<[u8; 3], Flash> {
    bus.write(&[READ_ID]).await.map_err(Flash::Bus)?;
    let mut id = [0; 3];
    bus.read(&mut id).await.map_err(Flash::Bus)?;
    if id != ID {
        return Err(Flash::WrongId(id));
    }
    Ok(id)
}

#[test]
fn success_flushes_selects_transfers_flushes_deselects() {
    let mut bus = SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(),
    ]);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));

    assert_eq!(result, Ok(ID));
    bus.done();
    cs.done();
}

#[test]
fn the_body_branches_on_what_it_read() {
    // Poll the status register until the device is no longer busy, then read: how many
    // operations there are is decided by what the device answers, which an operation list
    // fixed before the transaction cannot express.
    let mut bus = SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_STATUS]),
        Spi::read_vec(vec![BUSY]),
        Spi::write_vec(vec![READ_STATUS]),
        Spi::read_vec(vec![BUSY]),
        Spi::write_vec(vec![READ_STATUS]),
        Spi::read_vec(vec![0x00]),
        Spi::write_vec(vec![READ_DATA, 0x00, 0x10, 0x00]),
        Spi::transfer_in_place(vec![0; 4], vec![0xde, 0xad, 0xbe, 0xef]),
        Spi::flush(),
    ]);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        let mut polls = 0;
        loop {
            spi.write(&[READ_STATUS]).await.map_err(Flash::Bus)?;
            let mut status = [0];
            spi.read(&mut status).await.map_err(Flash::Bus)?;
            polls += 1;
            if status[0] & BUSY == 0 {
                break;
            }
        }
        spi.write(&[READ_DATA, 0x00, 0x10, 0x00])
            .await
            .map_err(Flash::Bus)?;
        let mut data = [0; 4];
        spi.transfer_in_place(&mut data).await.map_err(Flash::Bus)?;
        Ok::<_, Flash>((polls, data))
    }));

    assert_eq!(result, Ok((3, [0xde, 0xad, 0xbe, 0xef])));
    bus.done();
    cs.done();
}

#[test]
fn two_transactions_in_a_row_select_the_device_twice() {
    let mut bus = SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(),
        Spi::flush(),
        Spi::write_vec(vec![READ_STATUS]),
        Spi::read_vec(vec![0x00]),
        Spi::flush(),
    ]);
    let mut cs = PinMock::new(&[cs_low(), cs_high(), cs_low(), cs_high()]);

    let id = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));
    let status = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        spi.write(&[READ_STATUS]).await?;
        let mut status = [0xff];
        spi.read(&mut status).await?;
        Ok::<_, ErrorKind>(status[0])
    }));

    assert_eq!(id, Ok(ID));
    assert_eq!(status, Ok(0x00));
    bus.done();
    cs.done();
}

#[test]
fn a_failing_body_still_flushes_and_deselects() {
    let wrong = [0xc2, 0x20, 0x16];
    let mut bus = SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(wrong.to_vec()),
        Spi::flush(),
    ]);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));

    assert_eq!(result, Err(Error::Body(Flash::WrongId(wrong))));
    bus.done();
    cs.done();
}

#[test]
fn a_bus_error_in_the_body_returns_early_and_still_deselects() {
    // The read fails: `?` leaves the body at once (the rest of it never reaches the bus), and
    // exit still flushes and deasserts chip select.
    let mut bus = Faulty::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(),
    ]);
    bus.fail_reads = true;
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);
    let after_read = Cell::new(false);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        let id = read_id(spi.bus()).await?;
        after_read.set(true);
        spi.write(&[READ_DATA]).await.map_err(Flash::Bus)?;
        Ok(id)
    }));

    assert_eq!(result, Err(Error::Body(Flash::Bus(ErrorKind::Overrun))));
    assert!(!after_read.get());
    bus.done();
    cs.done();
}

#[test]
fn a_failing_flush_in_exit_is_reported_and_chip_select_is_still_deasserted() {
    let mut bus = Faulty::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(), // fails
    ]);
    bus.fail_flush = Some(1);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));

    // The body's value is dropped: the transaction did not complete.
    assert_eq!(result, Err(Error::Exit(SpiError::Bus(ErrorKind::Other))));
    bus.done();
    cs.done();
}

#[test]
fn a_failing_deselect_in_exit_is_reported() {
    let mut bus = SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(),
    ]);
    let mut cs = PinMock::new(&[cs_low(), cs_high().with_error(pin_fault())]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));

    assert_eq!(result, Err(Error::Exit(SpiError::Pin(pin_fault()))));
    bus.done();
    cs.done();
}

#[test]
fn when_flush_and_deselect_both_fail_the_bus_error_wins() {
    let mut bus = Faulty::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(),
    ]);
    bus.fail_flush = Some(1);
    let mut cs = PinMock::new(&[cs_low(), cs_high().with_error(pin_fault())]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));

    assert_eq!(result, Err(Error::Exit(SpiError::Bus(ErrorKind::Other))));
    bus.done();
    cs.done();
}

#[test]
fn a_failing_body_and_a_failing_exit_are_both_kept() {
    let wrong = [0x00, 0x00, 0x00];
    let mut bus = Faulty::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(wrong.to_vec()),
        Spi::flush(),
    ]);
    bus.fail_flush = Some(1);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        read_id(spi.bus()).await
    }));

    assert_eq!(
        result,
        Err(Error::BodyAndExit {
            body: Flash::WrongId(wrong),
            exit: SpiError::Bus(ErrorKind::Other),
        })
    );
    bus.done();
    cs.done();
}

#[test]
fn a_failing_flush_in_enter_selects_nothing_and_runs_no_body() {
    let mut bus = Faulty::new(&[Spi::flush()]);
    bus.fail_flush = Some(0);
    let mut cs = PinMock::new(&[]);
    let ran = Cell::new(false);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        ran.set(true);
        read_id(spi.bus()).await
    }));

    assert_eq!(result, Err(Error::Enter(SpiError::Bus(ErrorKind::Other))));
    assert!(!ran.get());
    bus.done();
    cs.done();
}

#[test]
fn a_failing_select_in_enter_runs_no_body_and_no_exit() {
    let mut bus = SpiMock::new(&[Spi::flush()]);
    let mut cs = PinMock::new(&[cs_low().with_error(pin_fault())]);
    let ran = Cell::new(false);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        ran.set(true);
        read_id(spi.bus()).await
    }));

    assert_eq!(result, Err(Error::Enter(SpiError::Pin(pin_fault()))));
    assert!(!ran.get());
    bus.done();
    cs.done();
}

#[test]
fn cancelled_mid_body_the_cancel_hook_deselects_without_a_flush() {
    // Enter's flush, the body's first write, then the body waits forever and the `with` is
    // dropped: chip select goes high once (the cancel hook), and exit's flush never happens.
    let mut bus = SpiMock::new(&[Spi::flush(), Spi::write_vec(vec![READ_DATA, 0, 0, 0])]);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);
    let body_dropped = Cell::new(false);

    {
        struct Guard<'a>(&'a Cell<bool>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }

        let mut future = pin!(with(transaction(&mut bus, &mut cs), async |spi| {
            let _guard = Guard(&body_dropped);
            spi.write(&[READ_DATA, 0, 0, 0]).await?;
            pending::<()>().await; // a transfer that never completes
            Ok::<_, ErrorKind>(())
        }));
        assert!(poll_once(future.as_mut()).is_pending());
        assert!(!body_dropped.get());
    } // dropped here, mid-body

    assert!(body_dropped.get());
    bus.done();
    cs.done();
}

#[test]
fn cancelled_mid_body_a_pin_error_in_the_cancel_hook_is_ignored() {
    let mut bus = SpiMock::new(&[Spi::flush()]);
    let mut cs = PinMock::new(&[cs_low(), cs_high().with_error(pin_fault())]);

    {
        let mut future = pin!(with(transaction(&mut bus, &mut cs), async |_spi| {
            pending::<()>().await;
        }));
        assert!(poll_once(future.as_mut()).is_pending());
    }

    bus.done();
    cs.done();
}

#[test]
fn cancelled_during_enter_chip_select_is_never_touched() {
    // Enter's flush never completes: the device was not selected yet, so nothing is undone.
    let mut bus = Faulty::new(&[]);
    bus.stall_flush = Some(0);
    let mut cs = PinMock::new(&[]);
    let ran = Cell::new(false);

    {
        let mut future = pin!(with(transaction(&mut bus, &mut cs), async |_spi| {
            ran.set(true);
        }));
        assert!(poll_once(future.as_mut()).is_pending());
    }

    assert!(!ran.get());
    bus.done();
    cs.done();
}

#[test]
fn cancelled_during_exit_the_resource_deselects_when_dropped() {
    // Exit's flush never completes and the `with` is dropped: the exit future owns the
    // selected device, whose `Drop` deasserts chip select, once.
    let mut bus = Faulty::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
    ]);
    bus.stall_flush = Some(1);
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    {
        let mut future = pin!(with(transaction(&mut bus, &mut cs), async |spi| {
            read_id(spi.bus()).await
        }));
        assert!(poll_once(future.as_mut()).is_pending());
    }

    bus.done();
    cs.done();
}

#[test]
fn errors_collapse_into_one_spi_error() {
    // A body that uses `SpiError` as its own error: `collapse` then needs no `From` impls.
    let mut bus = Faulty::new(&[Spi::flush(), Spi::read_vec(vec![0]), Spi::flush()]);
    bus.fail_reads = true;
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(with(transaction(&mut bus, &mut cs), async |spi| {
        let mut status = [0];
        spi.read(&mut status).await.map_err(SpiError::Bus)?;
        Ok::<_, SpiError<_, MockError>>(status[0])
    }))
    .map_err(Error::collapse::<SpiError<ErrorKind, MockError>>);

    assert_eq!(result, Err(SpiError::Bus(ErrorKind::Overrun)));
    assert_eq!(
        embedded_hal::spi::Error::kind(&SpiError::<ErrorKind, MockError>::Pin(pin_fault())),
        ErrorKind::ChipSelectFault
    );
    assert_eq!(
        SpiError::<ErrorKind, MockError>::Bus(ErrorKind::Overrun).to_string(),
        "SPI bus error: Overrun"
    );
    bus.done();
    cs.done();
}

/// The comparison the README makes: a hand-written assert/deassert pair, with a `?` between
/// them. On the error path the deassert is skipped; the pin mock, told that chip select goes
/// high again, catches it.
#[test]
#[should_panic(expected = "Not all expectations consumed")]
fn a_hand_written_pair_leaves_chip_select_low_on_an_early_return() {
    use embedded_hal::digital::OutputPin;

    async fn read_id_by_hand(bus: &mut Faulty, cs: &mut PinMock) -> Result<[u8; 3], Flash> {
        bus.flush().await.map_err(Flash::Bus)?;
        cs.set_low().expect("chip select");
        let id = read_id(bus).await?; // the early return skips the two lines below
        bus.flush().await.map_err(Flash::Bus)?;
        cs.set_high().expect("chip select");
        Ok(id)
    }

    let mut bus = Faulty::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
    ]);
    bus.fail_reads = true;
    let mut cs = PinMock::new(&[cs_low(), cs_high()]);

    let result = block_on(read_id_by_hand(&mut bus, &mut cs));

    assert_eq!(result, Err(Flash::Bus(ErrorKind::Overrun)));
    bus.done();
    cs.done(); // panics: chip select was never deasserted
}
