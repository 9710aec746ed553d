//! The default build: each scenario's scope is an `async_with::with`.
//!
//! [`powered`], [`powered_until`] and [`transaction`] only put the manager in front of the
//! body (and, for [`powered_until`], the stop signal after it); the code that enters, runs the
//! body, stops it, exits and cancels is the crate's. [`sampled`] is a one-function manager
//! (`scoped`): setup, the lend, teardown. `by_hand.rs` (feature `hand-written`) has the same
//! four functions with that logic written out, for comparing sizes.

use core::fmt::Debug;
use core::future::Future;

use async_with::{Body, CancelError, Error, scoped, with};
use embedded_hal::digital::OutputPin;
use embedded_hal_async::spi::SpiBus;
use spi_device::Selected;

use crate::{Powered, Sensor, SensorError, Transaction, sample_setup, sample_teardown};

/// `with(Powered(sensor), body)`: the sensor powered up for `body`, powered down after it, its
/// power cut by the manager's `cancel` hook if the future is dropped mid-body.
pub(crate) fn powered<'d, B, T, E>(
    sensor: &'d mut Sensor,
    body: B,
) -> impl Future<Output = Result<T, Error<SensorError, E>>>
where
    B: AsyncFnOnce(&mut &'d mut Sensor) -> Result<T, E>,
    B: for<'r> Body<'r, &'d mut Sensor, Ok = T, Err = E>,
    E: Debug + Sync + 'static,
{
    with(Powered(sensor), body)
}

/// `with(Powered(sensor), body).cancel_on(signal)`: as [`powered`], but when `signal` is ready
/// during the body, the body's future is dropped and exit still runs and is awaited, seeing
/// `Outcome::Cancelled` (the `cancel` hook does not run); ready during enter, the enter future
/// is dropped.
pub(crate) fn powered_until<'d, S, B, T, E>(
    sensor: &'d mut Sensor,
    signal: S,
    body: B,
) -> impl Future<Output = Result<T, CancelError<SensorError, E>>>
where
    S: Future,
    B: AsyncFnOnce(&mut &'d mut Sensor) -> Result<T, E>,
    B: for<'r> Body<'r, &'d mut Sensor, Ok = T, Err = E>,
    E: Debug + Sync + 'static,
{
    with(Powered(sensor), body).cancel_on(signal)
}

/// `with(spi_device::transaction(bus, cs), body)`: one SPI transaction with the device behind
/// `cs`, through `../spi-device`'s manager.
pub(crate) fn transaction<'d, Bus, Cs, B, T, E>(
    bus: &'d mut Bus,
    cs: &'d mut Cs,
    body: B,
) -> impl Future<Output = Transaction<Bus, Cs, T, E>>
where
    Bus: SpiBus,
    Cs: OutputPin,
    B: AsyncFnOnce(&mut Selected<'d, Bus, Cs>) -> Result<T, E>,
    B: for<'r> Body<'r, Selected<'d, Bus, Cs>, Ok = T, Err = E>,
    E: Debug + Sync + 'static,
{
    with(spi_device::transaction(bus, cs), body)
}

/// `scoped(async |scope| { setup; scope.lend(sensor).await; teardown }).with(body)`: the sensor
/// powered up by setup, lent to `body`, powered down by teardown, which reports a local of
/// setup and the body's outcome. No allocation: the closure's future lives in the
/// `ScopedWith`.
pub(crate) fn sampled<'d, B, T, E>(
    sensor: &'d mut Sensor,
    body: B,
) -> impl Future<Output = Result<T, Error<SensorError, E>>>
where
    B: AsyncFnOnce(&mut &'d mut Sensor) -> Result<T, E>,
    B: for<'r> Body<'r, &'d mut Sensor, Ok = T, Err = E>,
    E: Debug + Sync + 'static,
{
    scoped(async move |scope| {
        let settled = sample_setup(sensor).await;
        let (sensor, outcome) = scope.lend(sensor).await;
        sample_teardown(sensor, outcome, settled).await
    })
    .with(body)
}
