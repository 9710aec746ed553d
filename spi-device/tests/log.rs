//! `logged_transaction`: exit hands the body's error to the log, lent, after releasing the
//! device; the caller still gets the error.
//!
//! The bus and the pin are embedded-hal-mock's, with every operation declared up front as in
//! `mock.rs`. The pin is wrapped so that its changes go into the same event list as the log's
//! calls: the tests check the order (chip select high, then the log), not only the contents.

use core::cell::RefCell;
use core::future::{Future, pending};
use core::pin::pin;
use core::task::{Context, Waker};
use std::io;

use async_with::{Error, with};
use embedded_hal::digital::{ErrorType, OutputPin};
use embedded_hal_async::spi::SpiBus;
use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as Spi};
use futures_executor::block_on;
use spi_device::{SpiError, logged_transaction};

const READ_ID: u8 = 0x9f;
const ID: [u8; 3] = [0xef, 0x40, 0x18];
const WRONG: [u8; 3] = [0xc2, 0x20, 0x16];

/// What the body of these tests fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flash {
    /// The device is not the expected one.
    WrongId([u8; 3]),
}

/// What happened, in order: chip select changes and the log's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    CsLow,
    CsHigh,
    /// The log was called: the error as its type, and as it prints.
    Logged(Flash, String),
}

/// The pin mock, recording its changes in the shared event list.
struct Recorded<'e> {
    pin: PinMock,
    events: &'e RefCell<Vec<Event>>,
}

impl ErrorType for Recorded<'_> {
    type Error = MockError;
}

impl OutputPin for Recorded<'_> {
    fn set_low(&mut self) -> Result<(), MockError> {
        self.events.borrow_mut().push(Event::CsLow);
        self.pin.set_low()
    }

    fn set_high(&mut self) -> Result<(), MockError> {
        self.events.borrow_mut().push(Event::CsHigh);
        self.pin.set_high()
    }
}

/// The bus the ID read needs: enter's flush, the command, the answer, exit's flush.
fn id_read(answer: [u8; 3]) -> SpiMock<u8> {
    SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(answer.to_vec()),
        Spi::flush(),
    ])
}

/// A log that records the error in the event list: copied out by its type (the test knows
/// it), and printed.
fn log_into(events: &RefCell<Vec<Event>>) -> impl FnMut(async_with::Failure<'_>) + '_ {
    |failure| {
        let error = *failure
            .downcast_ref::<Flash>()
            .expect("the body's error is a `Flash`");
        events
            .borrow_mut()
            .push(Event::Logged(error, format!("{failure:?}")));
    }
}

/// The usual body: reads the JEDEC ID and checks it.
async fn read_id<B: SpiBus>(bus: &mut B) -> Result<[u8; 3], Flash> {
    bus.write(&[READ_ID]).await.expect("the mock bus");
    let mut id = [0; 3];
    bus.read(&mut id).await.expect("the mock bus");
    if id != ID {
        return Err(Flash::WrongId(id));
    }
    Ok(id)
}

#[test]
fn a_failing_body_is_logged_after_the_release_and_still_returned() {
    let events = RefCell::new(Vec::new());
    let mut bus = id_read(WRONG);
    let mut cs = Recorded {
        pin: PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]),
        events: &events,
    };

    let result = block_on(with(
        logged_transaction(&mut bus, &mut cs, log_into(&events)),
        async |spi| read_id(spi.bus()).await,
    ));

    assert_eq!(result, Err(Error::Body(Flash::WrongId(WRONG))));
    assert_eq!(
        *events.borrow(),
        [
            Event::CsLow,
            Event::CsHigh, // released first (after exit's flush) ...
            // ... then the log, with the very error the caller got.
            Event::Logged(Flash::WrongId(WRONG), "WrongId([194, 32, 22])".to_string()),
        ]
    );
    bus.done();
    cs.pin.done();
}

#[test]
fn a_successful_body_logs_nothing() {
    let events = RefCell::new(Vec::new());
    let mut bus = id_read(ID);
    let mut cs = Recorded {
        pin: PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]),
        events: &events,
    };

    let result = block_on(with(
        logged_transaction(&mut bus, &mut cs, log_into(&events)),
        async |spi| read_id(spi.bus()).await,
    ));

    assert_eq!(result, Ok(ID));
    assert_eq!(*events.borrow(), [Event::CsLow, Event::CsHigh]);
    bus.done();
    cs.pin.done();
}

#[test]
fn one_log_serves_two_transactions_and_records_only_the_failure() {
    // `&mut log` is an `FnOnce` too: a firmware keeps one log for all its transactions.
    let events = RefCell::new(Vec::new());
    let mut log = log_into(&events);
    let mut bus = SpiMock::new(&[
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(WRONG.to_vec()),
        Spi::flush(),
        Spi::flush(),
        Spi::write_vec(vec![READ_ID]),
        Spi::read_vec(ID.to_vec()),
        Spi::flush(),
    ]);
    let mut cs = Recorded {
        pin: PinMock::new(&[
            Pin::set(State::Low),
            Pin::set(State::High),
            Pin::set(State::Low),
            Pin::set(State::High),
        ]),
        events: &events,
    };

    let first = block_on(with(
        logged_transaction(&mut bus, &mut cs, &mut log),
        async |spi| read_id(spi.bus()).await,
    ));
    let second = block_on(with(
        logged_transaction(&mut bus, &mut cs, &mut log),
        async |spi| read_id(spi.bus()).await,
    ));

    assert_eq!(first, Err(Error::Body(Flash::WrongId(WRONG))));
    assert_eq!(second, Ok(ID));
    assert_eq!(
        *events.borrow(),
        [
            Event::CsLow,
            Event::CsHigh,
            Event::Logged(Flash::WrongId(WRONG), "WrongId([194, 32, 22])".to_string()),
            Event::CsLow,
            Event::CsHigh,
        ]
    );
    bus.done();
    cs.pin.done();
}

#[test]
fn a_failing_release_still_logs_the_body_error_and_both_are_kept() {
    let fault = MockError::Io(io::ErrorKind::BrokenPipe);
    let events = RefCell::new(Vec::new());
    let mut bus = id_read(WRONG);
    let mut cs = Recorded {
        pin: PinMock::new(&[
            Pin::set(State::Low),
            Pin::set(State::High).with_error(fault.clone()),
        ]),
        events: &events,
    };

    let result = block_on(with(
        logged_transaction(&mut bus, &mut cs, log_into(&events)),
        async |spi| read_id(spi.bus()).await,
    ));

    assert_eq!(
        result,
        Err(Error::BodyAndExit {
            body: Flash::WrongId(WRONG),
            exit: SpiError::Pin(fault),
        })
    );
    assert_eq!(
        *events.borrow(),
        [
            Event::CsLow,
            Event::CsHigh,
            Event::Logged(Flash::WrongId(WRONG), "WrongId([194, 32, 22])".to_string()),
        ]
    );
    bus.done();
    cs.pin.done();
}

#[test]
fn cancelled_mid_body_nothing_is_logged() {
    // No outcome, so no log: the cancel hook deasserts chip select, and that is all.
    let events = RefCell::new(Vec::new());
    let mut bus = SpiMock::new(&[Spi::flush()]);
    let mut cs = Recorded {
        pin: PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]),
        events: &events,
    };

    {
        let mut future = pin!(with(
            logged_transaction(&mut bus, &mut cs, log_into(&events)),
            async |_spi| {
                pending::<()>().await;
                Err::<(), _>(Flash::WrongId(WRONG))
            },
        ));
        let polled = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending());
    } // dropped here, mid-body

    assert_eq!(*events.borrow(), [Event::CsLow, Event::CsHigh]);
    bus.done();
    cs.pin.done();
}
