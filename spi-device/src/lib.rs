//! An SPI device as an `async-with` manager, on the real `embedded-hal-async` traits.
//!
//! [`transaction`] takes an [`SpiBus`] and a chip-select [`OutputPin`] and returns a manager
//! for [`async_with::with`]:
//!
//! - **enter** awaits the bus being idle (`flush().await`), then asserts chip select (low);
//! - the **body** gets `&mut` [`Selected`]: the bus, to read, write and transfer as it likes,
//!   branching on what it has read; it cannot reach the chip-select pin;
//! - **exit** flushes the bus and deasserts chip select (high), whatever the body returned;
//!   then, with [`logged_transaction`], hands the body's error to a log while it is still lent;
//! - **cancellation** (the `with` future dropped mid-body) deasserts chip select synchronously.
//!
//! ```
//! # futures_executor::block_on(async {
//! use async_with::{Error, with};
//! use embedded_hal_async::spi::SpiBus; // `write`, `read` on the bus
//! use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as Set};
//! use embedded_hal_mock::eh1::spi::{Mock as Bus, Transaction as Spi};
//! use spi_device::{SpiError, transaction};
//!
//! // What the bus and the pin must see, in order: nothing more, nothing less.
//! let mut bus = Bus::new(&[
//!     Spi::flush(),                  // enter: the bus is idle
//!     Spi::write_vec(vec![0x9f]),    // body: JEDEC "read ID"
//!     Spi::read_vec(vec![0xef, 0x40, 0x18]),
//!     Spi::flush(),                  // exit
//! ]);
//! let mut cs = Pin::new(&[Set::set(State::Low), Set::set(State::High)]);
//!
//! let id = with(transaction(&mut bus, &mut cs), async |spi| {
//!     spi.write(&[0x9f]).await.map_err(SpiError::Bus)?;
//!     let mut id = [0; 3];
//!     spi.read(&mut id).await.map_err(SpiError::Bus)?;
//!     Ok::<_, SpiError<_, _>>(id)
//! })
//! .await
//! .map_err(Error::collapse::<SpiError<_, _>>);
//!
//! assert_eq!(id, Ok([0xef, 0x40, 0x18]));
//! bus.done();
//! cs.done();
//! # });
//! ```
//!
//! # Why `from_fns`, not a hand-written `AsyncEnter`/`AsyncExit`
//!
//! An embedded HAL writes its managers by hand, with named, poll-based futures, and this crate
//! would too if it could. It cannot, on stable Rust (1.85 and later), for one reason: the
//! methods of `embedded_hal_async::spi::SpiBus` are `async fn`s in a trait, so the future of
//! `bus.flush()` is anonymous. A hand-written `AsyncExit` must write its future as an
//! associated type (`type Future<'o> = ..`), and nothing can name that future: return-type
//! notation (`B::flush(..)`) is unstable (rust-lang/rust#109417), so is `impl Trait` in
//! associated types, and the usual escape, `Pin<Box<dyn Future>>`, needs an allocator that a
//! `no_std` firmware does not have. Enter alone could be written by hand (set chip select
//! synchronously and return a ready future), but only by giving up the `flush` that waits for
//! the bus, and exit cannot do without its `flush`.
//!
//! [`async_with::from_fns`] can: it is generic over `FnOnce() -> EnterFut` and
//! `FnOnce(R, Outcome<'o>) -> ExitFut`, so the compiler infers the closures' futures and the
//! manager's `Enter` and `Exit` types name them through those `FnOnce` projections. Nothing is
//! boxed; the futures live inline in the `WithFuture`. The exit closure receives the body's
//! [`Outcome`], as a hand-written exit would, and its future may keep it across its
//! `flush().await`: that is how [`logged_transaction`] logs the body's error after releasing
//! the device.
//!
//! The one cost: [`transaction`] and [`logged_transaction`] return `impl AsyncEnter<..>`, whose
//! type has no name, so neither has the `WithFuture` (it cannot be written in a `static` by name). Any future that
//! awaits an `embedded-hal-async` method is unnameable in the same way, so this costs nothing a
//! caller had.
//!
//! # Cancellation
//!
//! **Graceful** (`with(transaction(bus, cs), body).cancel_on(signal)`): when the signal is
//! ready during the body, the body's future is dropped (with the transfer it was awaiting) and
//! exit runs as after any other ending, seeing `Cancelled`: it awaits the bus's `flush`, then
//! deasserts chip select, so a half-written frame is clocked out before the device is
//! released. A [`logged_transaction`]'s log is not called: `Cancelled` is not a failure.
//!
//! **Abortive**: Rust cancels a future by dropping it. What this manager does, by the phase the
//! `with` future is in when that happens:
//!
//! - **enter**, awaiting the first `flush`: chip select has not been asserted yet (that is why
//!   enter flushes first and asserts after), so there is nothing to undo.
//! - **body**: the body's future is dropped first (with it the transfer future it was
//!   awaiting; a HAL's transfer future stops its DMA in `Drop`); then the cancel hook
//!   deasserts chip select, synchronously. There is no `flush` (it could not be awaited); the
//!   next transaction's enter flushes before it selects a device.
//! - **exit**, awaiting the last `flush`: the exit future is dropped, and with it the
//!   [`Selected`] it owns, whose `Drop` deasserts chip select. A [`logged_transaction`]'s log
//!   is not called (it comes after the flush).
//!
//! Cancelled in the body or in enter, there is no outcome, so the log is not called either. A
//! pin error in the cancel hook or in `Drop` has nowhere to go and is ignored (an `OutputPin`
//! on a microcontroller is usually infallible).

#![no_std]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use core::fmt;
use core::ops::{Deref, DerefMut};

use async_with::{AsyncEnter, ExitFn, Failure, Outcome, from_fns};
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::ErrorKind;
use embedded_hal_async::spi::SpiBus;

/// A manager for one SPI transaction with the device behind `cs`: bus idle and chip select
/// asserted on enter, bus flushed and chip select deasserted on exit or on cancellation.
///
/// Use it with [`async_with::with`]; the body gets `&mut` [`Selected`], which dereferences to
/// the bus. Bring [`SpiBus`] into scope to call its methods. See the [crate
/// docs](crate) for an example, for what happens when the `with` future is dropped, and for
/// why this is built with [`from_fns`].
///
/// | phase | what it does | on an error |
/// |---|---|---|
/// | enter | `bus.flush().await`, then `cs.set_low()` | [`Error::Enter`](async_with::Error::Enter); no body, no exit (chip select is not asserted after a failed flush; after a failed `set_low` its level is the pin's) |
/// | body | whatever it likes on the bus | its own error, in [`Error::Body`](async_with::Error::Body) |
/// | exit | `bus.flush().await`, then `cs.set_high()` — also when the flush failed | [`Error::Exit`](async_with::Error::Exit) (or `BodyAndExit`); a flush error takes priority over a pin error, as `SpiDevice::transaction` requires |
/// | cancel | `cs.set_high()`, synchronously | ignored |
///
/// The body's outcome does not change what exit does: the chip is released on every path.
/// To see the body's error in exit as well, use [`logged_transaction`].
pub fn transaction<'d, B, P>(
    bus: &'d mut B,
    cs: &'d mut P,
) -> impl AsyncEnter<Resource = Selected<'d, B, P>, Error = SpiError<B::Error, P::Error>>
where
    B: SpiBus,
    P: OutputPin,
{
    // Its own exit closure, not `logged_transaction`'s with a no-op log: an async closure's
    // future keeps a parameter used after an await twice (rust-lang/rust#62958), and this one
    // does not use the outcome at all (12 bytes less in the firmware's `WithFuture`).
    selecting(
        bus,
        cs,
        async |mut device: Selected<'d, B, P>, _outcome: Outcome<'_>| device.release().await,
    )
}

/// A [`transaction`] whose exit, once the device is released, hands the body's error to
/// `log`: exit flushes the bus and deasserts chip select, then, if the body returned `Err`,
/// calls `log` with the error lent as a [`Failure`] (it prints with `{:?}` and downcasts to
/// the body's error type). The error is not cloned, and the caller still receives it in
/// [`Error::Body`](async_with::Error::Body) (or `BodyAndExit`).
///
/// The device is released first, so a slow log (a UART, semihosting) does not hold chip
/// select low; the error stays lent across exit's `flush().await`. `log` is not called when
/// the body succeeded, when it panicked (with `async-with`'s `std` feature: a panic is not an
/// error value), or when the `with` future is dropped before exit's flush completes (see
/// [Cancellation](crate#cancellation)). It is a plain closure: no allocation, no logging
/// framework; pass `&mut log` to reuse an `FnMut` across transactions. It sees what exit is
/// shown: under a plain `with`, the body's error; inside a group or an exit stack, the newest
/// failure, which may be an earlier exit's error ([`async_with::group`]).
///
/// ```
/// # futures_executor::block_on(async {
/// use core::cell::Cell;
/// use async_with::{Error, with};
/// use embedded_hal_async::spi::SpiBus;
/// use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as Set};
/// use embedded_hal_mock::eh1::spi::{Mock as Bus, Transaction as Spi};
/// use spi_device::logged_transaction;
///
/// #[derive(Debug, PartialEq)]
/// struct WrongId([u8; 1]);
///
/// let mut bus = Bus::new(&[Spi::flush(), Spi::read_vec(vec![0x00]), Spi::flush()]);
/// let mut cs = Pin::new(&[Set::set(State::Low), Set::set(State::High)]);
/// let logged = Cell::new(None);
///
/// let manager = logged_transaction(&mut bus, &mut cs, |failure| {
///     // The body's error, lent: here copied out by type (a firmware would print `{failure:?}`).
///     logged.set(failure.downcast_ref::<WrongId>().map(|WrongId(id)| *id));
/// });
/// let id = with(manager, async |spi| {
///     let mut id = [0];
///     spi.read(&mut id).await.expect("the mock bus");
///     if id != [0xef] {
///         return Err(WrongId(id));
///     }
///     Ok(id)
/// })
/// .await;
///
/// assert_eq!(id, Err(Error::Body(WrongId([0x00])))); // the caller still gets the error
/// assert_eq!(logged.get(), Some([0x00])); // and exit logged it
/// bus.done();
/// cs.done();
/// # });
/// ```
pub fn logged_transaction<'d, B, P, L>(
    bus: &'d mut B,
    cs: &'d mut P,
    log: L,
) -> impl AsyncEnter<Resource = Selected<'d, B, P>, Error = SpiError<B::Error, P::Error>>
where
    B: SpiBus,
    P: OutputPin,
    L: FnOnce(Failure<'_>),
{
    selecting(
        bus,
        cs,
        async move |mut device: Selected<'d, B, P>, outcome: Outcome<'_>| {
            let released = device.release().await;
            // After the await: the body's error is lent to exit until exit ends.
            if let Some(failure) = outcome.failure() {
                log(failure);
            }
            released
        },
    )
}

/// The manager of both [`transaction`]s, given its exit closure: enter flushes the bus, then
/// selects the device; cancellation deselects it at once.
fn selecting<'d, B, P, Exit>(
    bus: &'d mut B,
    cs: &'d mut P,
    exit: Exit,
) -> impl AsyncEnter<Resource = Selected<'d, B, P>, Error = SpiError<B::Error, P::Error>>
where
    B: SpiBus,
    P: OutputPin,
    Exit: AsyncFnOnce(Selected<'d, B, P>, Outcome<'_>) -> Result<(), SpiError<B::Error, P::Error>>,
    Exit: for<'o> ExitFn<'o, Selected<'d, B, P>, Error = SpiError<B::Error, P::Error>>,
{
    from_fns(
        async move || {
            // Wait for the bus to be idle before selecting the device: whatever an earlier,
            // possibly cancelled, transaction left on the wire is not clocked into this one.
            bus.flush().await.map_err(SpiError::Bus)?;
            cs.set_low().map_err(SpiError::Pin)?;
            Ok(Selected {
                bus,
                cs,
                selected: true,
            })
        },
        exit,
    )
    .on_cancel(|mut device| device.deselect_now())
}

/// The resource of a [`transaction`]: the bus, with the device selected.
///
/// It dereferences to the bus (`B`), so the body calls [`SpiBus`]'s methods on it directly;
/// [`bus`](Selected::bus) gives the `&mut B` to hand to code that takes a bus. The chip-select
/// pin stays private: only the manager asserts and deasserts it.
///
/// If it is dropped while the device is still selected (the `with` future dropped during
/// exit's `flush`), its `Drop` deasserts chip select.
pub struct Selected<'d, B, P: OutputPin> {
    bus: &'d mut B,
    cs: &'d mut P,
    /// Chip select is asserted and not yet deasserted.
    selected: bool,
}

impl<B, P: OutputPin> Selected<'_, B, P> {
    /// The bus, for code that takes `&mut B` (a driver generic over [`SpiBus`]).
    pub fn bus(&mut self) -> &mut B {
        self.bus
    }

    /// Exit: flush, then deassert chip select even if the flush failed. The flush error wins
    /// if both fail (the bus error is the cause, as `SpiDevice::transaction` reports it).
    async fn release(&mut self) -> Result<(), SpiError<B::Error, P::Error>>
    where
        B: SpiBus,
    {
        let flushed = self.bus.flush().await;
        let deselected = self.cs.set_high();
        self.selected = false;
        flushed.map_err(SpiError::Bus)?;
        deselected.map_err(SpiError::Pin)
    }

    /// Cancellation: deassert chip select now, without awaiting anything.
    fn deselect_now(&mut self) {
        if self.selected {
            self.selected = false;
            // Nowhere to report a pin error from a synchronous hook.
            let _ = self.cs.set_high();
        }
    }
}

impl<B, P: OutputPin> Deref for Selected<'_, B, P> {
    type Target = B;

    fn deref(&self) -> &B {
        self.bus
    }
}

impl<B, P: OutputPin> DerefMut for Selected<'_, B, P> {
    fn deref_mut(&mut self) -> &mut B {
        self.bus
    }
}

impl<B, P: OutputPin> Drop for Selected<'_, B, P> {
    fn drop(&mut self) {
        self.deselect_now();
    }
}

impl<B, P: OutputPin> fmt::Debug for Selected<'_, B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selected")
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

/// The error of entering or exiting a [`transaction`]: the bus's or the chip-select pin's.
///
/// It is also an [`embedded_hal::spi::Error`] (a pin failure is
/// [`ErrorKind::ChipSelectFault`]), so a body can use it as its own error type and
/// [`Error::collapse`](async_with::Error::collapse) folds everything into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpiError<B, P> {
    /// The bus failed (a transfer or a flush).
    Bus(B),
    /// The chip-select pin could not be set.
    Pin(P),
}

impl<B: fmt::Debug, P: fmt::Debug> fmt::Display for SpiError<B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpiError::Bus(e) => write!(f, "SPI bus error: {e:?}"),
            SpiError::Pin(e) => write!(f, "chip-select pin error: {e:?}"),
        }
    }
}

impl<B: fmt::Debug, P: fmt::Debug> core::error::Error for SpiError<B, P> {}

impl<B: embedded_hal::spi::Error, P: fmt::Debug> embedded_hal::spi::Error for SpiError<B, P> {
    fn kind(&self) -> ErrorKind {
        match self {
            SpiError::Bus(e) => e.kind(),
            SpiError::Pin(_) => ErrorKind::ChipSelectFault,
        }
    }
}
