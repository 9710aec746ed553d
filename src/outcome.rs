//! How the body ended, as exit sees it: [`Outcome`], [`Failure`] and [`Status`].

use core::any::Any;
use core::fmt;

/// How the body ended, passed to [`AsyncExit::exit`](crate::AsyncExit::exit).
///
/// The error is lent by reference, so exit can log or classify it without allocation, and the
/// caller still receives it afterwards.
///
/// # Examples
///
/// ```
/// use async_with::{Failure, Outcome, Status};
///
/// #[derive(Debug)]
/// struct Timeout;
///
/// let error = Timeout;
/// let outcome = Outcome::Failure(Failure::new(&error));
/// assert_eq!(outcome.status(), Status::Failure);
/// assert!(outcome.failure().unwrap().is::<Timeout>());
/// assert_eq!(format!("{outcome:?}"), "Failure(Timeout)");
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The body returned `Ok`.
    Success,
    /// The body returned `Err`; the error is lent here.
    Failure(Failure<'a>),
    /// The body panicked (only with the `std` feature; the panic resumes after exit).
    Panicked,
}

impl<'a> Outcome<'a> {
    /// The outcome without the error, for exits that only need to choose (commit or roll back).
    pub fn status(&self) -> Status {
        match self {
            Outcome::Success => Status::Success,
            Outcome::Failure(_) => Status::Failure,
            Outcome::Panicked => Status::Panicked,
        }
    }

    /// `true` if the body returned `Ok`.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The body's error, if it returned `Err`.
    pub fn failure(&self) -> Option<Failure<'a>> {
        match self {
            Outcome::Failure(failure) => Some(*failure),
            _ => None,
        }
    }
}

/// How the body ended, without the error: what an exit closure given to
/// [`from_fns`](crate::from_fns) receives.
///
/// It has no lifetime, so `async |resource, status| { .. }` can hold it across awaits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The body returned `Ok`.
    Success,
    /// The body returned `Err`.
    Failure,
    /// The body panicked (only with the `std` feature).
    Panicked,
}

impl Status {
    /// `true` if the body returned `Ok`.
    pub fn is_success(self) -> bool {
        self == Status::Success
    }
}

/// The body's error, lent to exit: printable with `{:?}` and downcastable to its type.
#[derive(Clone, Copy)]
pub struct Failure<'a> {
    error: &'a dyn Reveal,
}

/// `Debug` plus a way to `Any` (trait upcasting needs Rust 1.86; the MSRV is 1.85).
trait Reveal: fmt::Debug + Any {
    fn as_any(&self) -> &dyn Any;
}

impl<E: fmt::Debug + Any> Reveal for E {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<'a> Failure<'a> {
    /// Lends `error`. Used by the crate, and by combinators that pass a failure on.
    pub fn new<E: fmt::Debug + Any>(error: &'a E) -> Self {
        Failure { error }
    }

    /// The error as `E`, if that is its type.
    ///
    /// ```
    /// use async_with::Failure;
    ///
    /// let error = "disk full";
    /// let failure = Failure::new(&error);
    /// assert_eq!(failure.downcast_ref::<&str>(), Some(&"disk full"));
    /// assert_eq!(failure.downcast_ref::<u32>(), None);
    /// ```
    pub fn downcast_ref<E: Any>(&self) -> Option<&'a E> {
        self.error.as_any().downcast_ref()
    }

    /// `true` if the error is an `E`.
    pub fn is<E: Any>(&self) -> bool {
        self.error.as_any().is::<E>()
    }
}

impl fmt::Debug for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.error, f)
    }
}
