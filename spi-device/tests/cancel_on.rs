//! Graceful cancellation of an SPI transaction: a stop signal ends the body mid-transfer, and
//! exit still flushes the bus and then deasserts chip select, in that order. Dropping the
//! `with` instead keeps the abortive path (chip select high, no flush).
//!
//! The mocks check each device's own sequence; both wrappers below also record into one shared
//! list, so the tests check the order across the bus and the pin.

use core::cell::RefCell;
use core::future::{Future, pending};
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use async_with::{CancelError, with};
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorKind, ErrorType};
use embedded_hal_async::spi::SpiBus;
use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as Spi};
use futures_executor::block_on;
use spi_device::{logged_transaction, transaction};

const READ_DATA: u8 = 0x03;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Write,
    Flush,
    CsLow,
    CsHigh,
    Logged(String),
}

struct Bus<'e> {
    mock: SpiMock<u8>,
    events: &'e RefCell<Vec<Event>>,
}

impl ErrorType for Bus<'_> {
    type Error = ErrorKind;
}

impl SpiBus for Bus<'_> {
    async fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.mock.read(words).await
    }
    async fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        self.events.borrow_mut().push(Event::Write);
        self.mock.write(words).await
    }
    async fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        self.mock.transfer(read, write).await
    }
    async fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.mock.transfer_in_place(words).await
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.events.borrow_mut().push(Event::Flush);
        self.mock.flush().await
    }
}

struct Cs<'e> {
    pin: PinMock,
    events: &'e RefCell<Vec<Event>>,
}

impl PinErrorType for Cs<'_> {
    type Error = MockError;
}

impl OutputPin for Cs<'_> {
    fn set_low(&mut self) -> Result<(), MockError> {
        self.events.borrow_mut().push(Event::CsLow);
        self.pin.set_low()
    }
    fn set_high(&mut self) -> Result<(), MockError> {
        self.events.borrow_mut().push(Event::CsHigh);
        self.pin.set_high()
    }
}

fn devices<'e>(events: &'e RefCell<Vec<Event>>, bus: &[Spi<u8>]) -> (Bus<'e>, Cs<'e>) {
    (
        Bus {
            mock: SpiMock::new(bus),
            events,
        },
        Cs {
            pin: PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]),
            events,
        },
    )
}

/// A signal that is `Pending` once, then ready: it fires while the body waits.
struct Second(bool);

impl Future for Second {
    type Output = ();
    fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn stopped_mid_body_exit_flushes_then_deasserts_chip_select() {
    let events = RefCell::new(Vec::new());
    let (mut bus, mut cs) = devices(
        &events,
        &[
            Spi::flush(),
            Spi::write_vec(vec![READ_DATA, 0, 0, 0]),
            Spi::flush(),
        ],
    );
    let result = block_on(
        with(transaction(&mut bus, &mut cs), async |spi| {
            spi.write(&[READ_DATA, 0, 0, 0]).await?;
            pending::<()>().await; // a transfer that never completes
            Ok::<_, ErrorKind>(())
        })
        .cancel_on(Second(false)),
    );
    assert!(
        matches!(result, Err(CancelError::Body { exit: None })),
        "{result:?}"
    );
    assert_eq!(
        *events.borrow(),
        [
            Event::Flush,
            Event::CsLow,
            Event::Write,
            Event::Flush,
            Event::CsHigh
        ]
    );
    bus.mock.done();
    cs.pin.done();
}

#[test]
fn stopped_mid_body_a_logged_transaction_logs_nothing() {
    // No body error to hand on: the log is called only for a failure, and `Cancelled` is not
    // one. The release runs as for any other ending.
    let events = RefCell::new(Vec::new());
    let (mut bus, mut cs) = devices(&events, &[Spi::flush(), Spi::flush()]);
    let log = |failure: async_with::Failure<'_>| {
        events
            .borrow_mut()
            .push(Event::Logged(format!("{failure:?}")))
    };
    let result = block_on(
        with(logged_transaction(&mut bus, &mut cs, log), async |_spi| {
            pending::<()>().await;
            Ok::<_, ErrorKind>(())
        })
        .cancel_on(Second(false)),
    );
    assert!(
        matches!(result, Err(CancelError::Body { exit: None })),
        "{result:?}"
    );
    assert_eq!(
        *events.borrow(),
        [Event::Flush, Event::CsLow, Event::Flush, Event::CsHigh]
    );
    bus.mock.done();
    cs.pin.done();
}

#[test]
fn dropped_mid_body_with_a_signal_deselects_without_a_flush() {
    let events = RefCell::new(Vec::new());
    let (mut bus, mut cs) = devices(&events, &[Spi::flush()]);
    {
        let mut future = pin!(
            with(transaction(&mut bus, &mut cs), async |_spi| {
                pending::<()>().await;
                Ok::<_, ErrorKind>(())
            })
            .cancel_on(pending::<()>())
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
    } // dropped here, mid-body: abortive, as without a signal
    assert_eq!(
        *events.borrow(),
        [Event::Flush, Event::CsLow, Event::CsHigh]
    );
    bus.mock.done();
    cs.pin.done();
}
