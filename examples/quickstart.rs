//! Quickstart: power a sensor up, read it, power it down — also when the read fails.
//!
//! The sensor is simulated: each operation takes a few polls, like a peripheral whose status
//! register reads "busy" for a while. A ten-line executor at the bottom of this file
//! (`block_on`) runs everything, so the example needs no runtime and prints every step; any
//! executor (tokio, smol, futures-executor, Embassy) would do the same.
//!
//! Run it with `cargo run --example quickstart`.

use core::convert::Infallible;
use core::future::Future;
use core::mem::size_of_val;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

use async_with::{AsyncEnter, Error, Outcome, from_fns, with};

/// Errors of the simulated sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SensorError {
    /// The sensor did not answer in time.
    Timeout,
}

/// A simulated temperature sensor on a bus.
struct Sensor {
    powered: bool,
    /// Bits per reading.
    resolution: u8,
    /// Readings in centidegrees, served one per read; `None` simulates a timeout.
    readings: [Option<i16>; 3],
    next: usize,
}

impl Sensor {
    async fn power_up(&mut self) -> Result<(), SensorError> {
        println!("  enter: power up (waiting for the regulator to settle)");
        busy(2).await;
        self.powered = true;
        Ok(())
    }

    async fn read(&mut self) -> Result<i16, SensorError> {
        assert!(self.powered, "read from an unpowered sensor");
        busy(1).await;
        let reading = self.readings[self.next];
        self.next += 1;
        reading.ok_or(SensorError::Timeout)
    }

    async fn power_down(&mut self) -> Result<(), SensorError> {
        busy(1).await;
        self.powered = false;
        Ok(())
    }
}

/// The sensor, powered for the duration of a body: what a driver crate would export.
///
/// Enter powers it up and lends it out; exit powers it down whatever the body did.
fn powered(sensor: &mut Sensor) -> impl AsyncEnter<Resource = &mut Sensor, Error = SensorError> {
    from_fns(
        async move || {
            sensor.power_up().await?;
            Ok(sensor)
        },
        async |sensor: &mut Sensor, outcome: Outcome<'_>| {
            println!("  exit:  power down (body ended: {outcome:?})");
            sensor.power_down().await?;
            // The body's error is still lent after the await: no clone, no allocation.
            if let Some(error) = outcome.error::<SensorError>() {
                println!("  exit:  powered down after {error:?}");
            }
            Ok(())
        },
    )
}

/// Sets the resolution inside one power cycle. The body cannot fail: it returns `()`, so the
/// body's error type is `Infallible` and only the manager's error can come back.
async fn configure(sensor: &mut Sensor, bits: u8) -> Result<(), Error<SensorError, Infallible>> {
    with(powered(sensor), async |sensor| {
        sensor.resolution = bits;
        println!("  body:  resolution set to {bits} bits");
    })
    .await
}

/// Reads the sensor `n` times and averages, inside one power cycle.
async fn average(sensor: &mut Sensor, n: i32) -> Result<i16, Error<SensorError, SensorError>> {
    // `?` in the body: the return type after `|sensor|` tells it which error to convert into.
    with(
        powered(sensor),
        async |sensor| -> Result<i16, SensorError> {
            let mut sum = 0_i32;
            for _ in 0..n {
                let reading = sensor.read().await?;
                println!("  body:  read {}.{:02} °C", reading / 100, reading % 100);
                sum += i32::from(reading);
            }
            Ok((sum / n) as i16)
        },
    )
    .await
}

fn main() {
    println!(
        "executor: `block_on` in examples/quickstart.rs, a poll loop with a no-op waker (no runtime)"
    );

    println!("1. configure (a body that cannot fail):");
    let mut sensor = Sensor {
        powered: false,
        resolution: 10,
        readings: [Some(2150), Some(2170), None],
        next: 0,
    };
    let (result, polls) = block_on(configure(&mut sensor, 12));
    println!(
        "  => {:?} after {polls} polls; powered afterwards: {}",
        result.map_err(Error::into_manager),
        sensor.powered
    );
    assert_eq!(sensor.resolution, 12);
    assert!(!sensor.powered);

    println!("2. two good readings:");
    let (result, polls) = block_on(average(&mut sensor, 2));
    println!(
        "  => {result:?} after {polls} polls; powered afterwards: {}",
        sensor.powered
    );
    assert_eq!(result, Ok(2160));
    assert!(!sensor.powered);

    println!("3. the second reading times out:");
    let mut sensor = Sensor {
        powered: false,
        resolution: 12,
        readings: [Some(2150), None, None],
        next: 0,
    };
    let (result, polls) = block_on(average(&mut sensor, 2));
    println!(
        "  => {result:?} after {polls} polls; powered afterwards: {}",
        sensor.powered
    );
    assert_eq!(result, Err(Error::Body(SensorError::Timeout)));
    assert!(
        !sensor.powered,
        "exit powered the sensor down on the error path too"
    );

    println!("4. what it costs:");
    let mut sensor = Sensor {
        powered: false,
        resolution: 12,
        readings: [Some(2150), Some(2170), None],
        next: 0,
    };
    let with_future = with(powered(&mut sensor), async |s| s.read().await);
    println!(
        "  size_of WithFuture (enter + body + exit): {} bytes",
        size_of_val(&with_future)
    );
    drop(with_future);
    let hand_written = async {
        sensor.power_up().await?;
        let reading = sensor.read().await;
        sensor.power_down().await?;
        reading
    };
    println!(
        "  size_of the same as one async block:      {} bytes",
        size_of_val(&hand_written)
    );
}

/// A future that is `Pending` `n` times (waking at once each time), like a busy peripheral.
fn busy(n: u32) -> impl Future<Output = ()> {
    let mut left = n;
    core::future::poll_fn(move |cx| {
        if left == 0 {
            return Poll::Ready(());
        }
        left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// The smallest executor: poll until ready, counting polls. Every pending future here wakes
/// itself at once, so a no-op waker and a busy loop are enough.
fn block_on<F: Future>(future: F) -> (F::Output, u32) {
    let mut future: Pin<&mut F> = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
    }
}
