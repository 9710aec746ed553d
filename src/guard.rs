//! [`OnUnwind`]: hands a value to a closure if a panic unwinds past it.
//!
//! The crate's promise "every manager entered and not exited gets its `cancel`" has to hold
//! while user code runs with entered managers held in locals (a group calling the next
//! member's `enter()` or `exit()` method, a future's destructor): should that code panic, the
//! locals would be dropped without `cancel`. The guard holds them across the call instead.
//! Where panics abort (the Cortex-M targets) it is the value itself, with no `Drop` and no tag:
//! an `Option` there cost the firmware 244 bytes of flash at `opt-level = "z"` (copies).

#[cfg(not(panic = "unwind"))]
use core::marker::PhantomData;

/// A value and what to do with it if the guard is dropped before [`defuse`](OnUnwind::defuse):
/// which only happens while a panic unwinds, since every user defuses it on the normal path.
#[cfg(panic = "unwind")]
pub(crate) struct OnUnwind<T, F: FnOnce(T)> {
    armed: Option<(T, F)>,
}

#[cfg(panic = "unwind")]
impl<T, F: FnOnce(T)> OnUnwind<T, F> {
    #[inline]
    pub(crate) fn new(value: T, on_unwind: F) -> Self {
        OnUnwind {
            armed: Some((value, on_unwind)),
        }
    }

    /// The guarded value, still guarded.
    #[inline]
    pub(crate) fn get(&mut self) -> &mut T {
        match &mut self.armed {
            Some((value, _)) => value,
            None => defused(),
        }
    }

    /// The value back; nothing runs.
    #[inline]
    pub(crate) fn defuse(mut self) -> T {
        match self.armed.take() {
            Some((value, _)) => value,
            None => defused(),
        }
    }
}

#[cfg(panic = "unwind")]
impl<T, F: FnOnce(T)> Drop for OnUnwind<T, F> {
    fn drop(&mut self) {
        if let Some((value, on_unwind)) = self.armed.take() {
            on_unwind(value);
        }
    }
}

#[cfg(panic = "unwind")]
#[cold]
#[inline(never)]
fn defused() -> ! {
    unreachable!("an `OnUnwind` guard is defused once, by value")
}

/// Where panics abort, nothing unwinds past the guard: it is the value alone.
#[cfg(not(panic = "unwind"))]
pub(crate) struct OnUnwind<T, F: FnOnce(T)> {
    value: T,
    _on_unwind: PhantomData<F>,
}

#[cfg(not(panic = "unwind"))]
impl<T, F: FnOnce(T)> OnUnwind<T, F> {
    #[inline(always)]
    pub(crate) fn new(value: T, _on_unwind: F) -> Self {
        OnUnwind {
            value,
            _on_unwind: PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn get(&mut self) -> &mut T {
        &mut self.value
    }

    #[inline(always)]
    pub(crate) fn defuse(self) -> T {
        self.value
    }
}
