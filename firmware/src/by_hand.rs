//! The `hand-written` build: each scenario's scope written out as a plain `async fn`, with no
//! `with`, to measure what `with` costs in flash and RAM.
//!
//! The three functions here do what `with.rs`'s do, step for step: the same manager futures and
//! bus and pin operations, the same `async_with::Error` and `async_with::CancelError` values,
//! and a drop guard that runs the same synchronous cancellation when the future is dropped
//! mid-body, and only then; the one with a stop signal races enter and the body against it
//! (`embassy_futures::select`) and, when it wins mid-body, awaits exit with
//! `Outcome::Cancelled`. Both builds print the same lines; `.ci/firmware.sh` checks both
//! against one expected list.

use core::any::Any;
use core::fmt::Debug;
use core::future::Future;
use core::pin::pin;

use async_with::{AsyncEnter, AsyncExit, CancelError, Error, Failure, Outcome};
use embassy_futures::select::{Either, select};
use embedded_hal::digital::OutputPin;
use embedded_hal_async::spi::SpiBus;
use spi_device::SpiError;

use crate::{PowerDown, Powered, Sensor, SensorError, Transaction, sample_setup, sample_teardown};

/// The sensor powered up for `body`, powered down after it, its power cut by the manager's
/// `cancel` hook if the future is dropped mid-body: what `with(Powered(sensor), body)` does.
pub(crate) async fn powered<'d, T, E>(
    sensor: &'d mut Sensor,
    body: impl AsyncFnOnce(&mut &'d mut Sensor) -> Result<T, E>,
) -> Result<T, Error<SensorError, E>>
where
    E: Debug + Any + Sync,
{
    // Enter; a drop now drops the enter future, and nothing else runs.
    let (sensor, exit) = Powered(sensor).enter().await.map_err(Error::Enter)?;
    // A drop from here until exit starts drops the body's future first (it is declared after
    // the guard and borrows from it), then the guard, which calls `cancel`.
    let mut entered = CancelOnDrop {
        entered: Some((sensor, exit)),
    };
    let Some((sensor, _)) = &mut entered.entered else {
        unreachable!()
    };
    let ended = body(sensor).await;
    let (sensor, exit) = entered.disarm();
    // The exit future borrows the body's error through the outcome across its awaits (it logs
    // it after the drain): `ended` stays here until exit ends, as it stays inside `with`.
    let outcome = match &ended {
        Ok(_) => Outcome::Success,
        Err(error) => Outcome::Failure(Failure::new(error)),
    };
    let exited = exit.exit(sensor, outcome).await;
    finish(ended, exited)
}

/// [`powered`] with a stop signal: what `with(Powered(sensor), body).cancel_on(signal)` does.
/// Enter and then the body are raced against `signal` (each polled first, the signal after it);
/// ready during enter, the enter future is dropped and nothing exits; ready during the body,
/// the body's future is dropped, then exit runs and is awaited with `Outcome::Cancelled` (the
/// `cancel` hook does not run). The signal is dropped before exit begins.
pub(crate) async fn powered_until<'d, T, E>(
    sensor: &'d mut Sensor,
    signal: impl Future,
    body: impl AsyncFnOnce(&mut &'d mut Sensor) -> Result<T, E>,
) -> Result<T, CancelError<SensorError, E>>
where
    E: Debug + Any + Sync,
{
    // Armed once enter has produced the sensor: a drop of this future mid-body drops the
    // body's future first (it borrows from the guard), then the guard, which calls `cancel`.
    let mut entered = CancelOnDrop { entered: None };
    let ended = {
        let mut signal = pin!(signal);
        let (sensor, exit) = match select(Powered(sensor).enter(), signal.as_mut()).await {
            Either::First(Ok(entered)) => entered,
            Either::First(Err(error)) => return Err(CancelError::Failed(Error::Enter(error))),
            // The enter future is dropped with the `select`.
            Either::Second(_) => return Err(CancelError::Entering),
        };
        let (sensor, _) = entered.entered.insert((sensor, exit));
        // The body's future is dropped with the `select`, at the end of this statement, and
        // the signal at the end of the block: both before exit begins.
        select(body(sensor), signal).await
    };
    let (sensor, exit) = entered.disarm();
    let ended = match ended {
        Either::First(ended) => ended,
        Either::Second(_) => {
            let exited = exit.exit(sensor, Outcome::Cancelled).await;
            return Err(CancelError::Body { exit: exited.err() });
        }
    };
    let outcome = match &ended {
        Ok(_) => Outcome::Success,
        Err(error) => Outcome::Failure(Failure::new(error)),
    };
    let exited = exit.exit(sensor, outcome).await;
    finish(ended, exited).map_err(CancelError::Failed)
}

/// Setup, the body, teardown, written out: what `scoped(..).with(body)` does in `with.rs`. A
/// drop mid-body drops the body's future and nothing else runs, as there.
pub(crate) async fn sampled<'d, T, E>(
    mut sensor: &'d mut Sensor,
    body: impl AsyncFnOnce(&mut &'d mut Sensor) -> Result<T, E>,
) -> Result<T, Error<SensorError, E>>
where
    E: Debug + Any + Sync,
{
    let settled = sample_setup(sensor).await;
    let ended = body(&mut sensor).await;
    let outcome = match &ended {
        Ok(_) => Outcome::Success,
        Err(error) => Outcome::Failure(Failure::new(error)),
    };
    let exited = sample_teardown(sensor, outcome, settled).await;
    finish(ended, exited)
}

/// The entered sensor and its exit handle while the body runs. Dropped with them still in it
/// (the future dropped mid-body), it hands the sensor to the exit handle's `cancel`.
struct CancelOnDrop<'d> {
    entered: Option<(&'d mut Sensor, PowerDown)>,
}

impl<'d> CancelOnDrop<'d> {
    /// The body ended: take the sensor and the exit handle back for exit.
    fn disarm(&mut self) -> (&'d mut Sensor, PowerDown) {
        self.entered
            .take()
            .expect("the sensor stays entered until exit")
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some((sensor, exit)) = self.entered.take() {
            exit.cancel(sensor);
        }
    }
}

/// One SPI transaction with the device behind `cs`, written against the `embedded-hal-async`
/// traits as `../spi-device`'s manager does it: enter flushes the bus, then drives chip select
/// low; exit flushes and drives it high (also when the flush failed; the flush error wins);
/// a drop mid-body, or during exit's flush, drives it high at once.
pub(crate) async fn transaction<'d, Bus, Cs, T, E>(
    bus: &'d mut Bus,
    cs: &'d mut Cs,
    body: impl AsyncFnOnce(&mut Bus) -> Result<T, E>,
) -> Transaction<Bus, Cs, T, E>
where
    Bus: SpiBus,
    Cs: OutputPin,
{
    // Enter: wait for the bus to be idle, then select the device. A drop during the flush
    // leaves chip select as it was.
    bus.flush()
        .await
        .map_err(|error| Error::Enter(SpiError::Bus(error)))?;
    cs.set_low()
        .map_err(|error| Error::Enter(SpiError::Pin(error)))?;
    let mut selected = Deselect { cs, selected: true };
    let ended = body(bus).await;
    // Exit, whatever the body returned.
    let flushed = bus.flush().await;
    let deselected = selected.cs.set_high();
    selected.selected = false;
    let exited = match (flushed, deselected) {
        (Err(error), _) => Err(SpiError::Bus(error)),
        (Ok(()), Err(error)) => Err(SpiError::Pin(error)),
        (Ok(()), Ok(())) => Ok(()),
    };
    finish(ended, exited)
}

/// Chip select while the device is selected: dropped before exit deselected it (the future
/// dropped mid-body or during exit's flush), it drives chip select high.
struct Deselect<'d, Cs: OutputPin> {
    cs: &'d mut Cs,
    selected: bool,
}

impl<Cs: OutputPin> Drop for Deselect<'_, Cs> {
    fn drop(&mut self) {
        if self.selected {
            self.selected = false;
            // Nowhere to report a pin error from `drop`.
            let _ = self.cs.set_high();
        }
    }
}

/// `with`'s result from how the body and exit ended.
fn finish<T, E, X>(ended: Result<T, E>, exited: Result<(), X>) -> Result<T, Error<X, E>> {
    match (ended, exited) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(exit)) => Err(Error::Exit(exit)),
        (Err(body), Ok(())) => Err(Error::Body(body)),
        (Err(body), Err(exit)) => Err(Error::BodyAndExit { body, exit }),
    }
}
