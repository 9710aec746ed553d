//! [`OnUnwind`]: hands a value to a closure if a panic unwinds past it.
//!
//! The crate's promise "every manager entered and not exited gets its `cancel`" has to hold
//! while user code runs with entered managers held in locals (a group calling the next
//! member's `enter()` or `exit()` method): should that code panic, the locals would be dropped
//! without `cancel`. The guard holds them across the call instead. Where panics abort (the
//! Cortex-M targets), it has no `Drop` and compiles to the value itself.

/// A value and what to do with it if the guard is dropped before [`defuse`](OnUnwind::defuse):
/// which only happens while a panic unwinds, since every user defuses it on the normal path.
pub(crate) struct OnUnwind<T, F: FnOnce(T)> {
    armed: Option<(T, F)>,
}

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

#[cold]
#[inline(never)]
fn defused() -> ! {
    unreachable!("an `OnUnwind` guard is defused once, by value")
}
