//! How the body ended, as exit sees it: [`Outcome`], [`Failure`] and [`Status`].

use core::any::Any;
use core::fmt;

use crate::lend::Shows;

/// How the body ended, passed to [`AsyncExit::exit`](crate::AsyncExit::exit) and to the exit
/// closure of [`from_fns`](crate::from_fns) — Python's `__aexit__(exc_type, exc, tb)`.
///
/// The error is lent by reference, for the whole exit: exit can log or classify it, await, and
/// look at it again, without allocation or clone, and the caller still receives it afterwards.
/// It is `Copy`, and `Send` and `Sync` (the body's error is `Sync`), so an exit future holding it
/// can be spawned.
///
/// # Outcome, Failure, Status
///
/// Three types say how the body ended, each for a different question. `Outcome` is what every
/// exit receives: success, failure, panic or cancellation, with the error lent. [`Failure`] is that lent
/// error: it prints with `{:?}` and downcasts to its type ([`Outcome::error`] and
/// [`Failure::downcast`] when the exit knows the type). [`Status`] is the outcome without the
/// error (`outcome.status()`): a plain value to match on, store or compare. Choose commit or
/// roll back on `Status`; look at `Failure` when the error itself matters.
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
///
/// # New variants
///
/// `Outcome` is `#[non_exhaustive]`: a `match` on it ends with a `_` arm, which decides what an
/// exit does for a way of ending it was not written for. Roll back there, as for a failure:
/// only [`Outcome::Success`] means the body's work is complete.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The body returned `Ok`.
    Success,
    /// The body returned `Err`; the error is lent here.
    Failure(Failure<'a>),
    /// The body panicked (only with the `std` feature; the panic resumes after exit).
    Panicked,
    /// A stop signal ended the body before it finished
    /// ([`WithFuture::cancel_on`](crate::WithFuture::cancel_on)): its future was dropped, the
    /// resource is intact, and exit runs and is awaited. The body's work is incomplete: roll it
    /// back, flush what must not be lost, say goodbye to the peer.
    Cancelled,
}

impl<'a> Outcome<'a> {
    /// The outcome without the error, for exits that only need to choose (commit or roll back).
    pub fn status(&self) -> Status {
        match self {
            Outcome::Success => Status::Success,
            Outcome::Failure(_) => Status::Failure,
            Outcome::Panicked => Status::Panicked,
            Outcome::Cancelled => Status::Cancelled,
        }
    }

    /// `true` if the body returned `Ok`.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// `true` if a stop signal ended the body ([`Outcome::Cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Outcome::Cancelled)
    }

    /// The body's error, if it returned `Err`.
    pub fn failure(&self) -> Option<Failure<'a>> {
        match self {
            Outcome::Failure(failure) => Some(*failure),
            _ => None,
        }
    }

    /// The body's error as `E`: the typed look for an exit that knows the body's error type.
    ///
    /// `None` when the body did not fail **and** when it failed with an error of another
    /// type; to tell the two apart, match on [`failure`](Outcome::failure) and use
    /// [`Failure::downcast`], which hands the failure back on a mismatch. Inside a group or an
    /// exit stack, a later exit sees the newest failure, which may be an earlier exit's error
    /// rather than the body's (see [`group`](crate::group#what-each-exit-sees)).
    ///
    /// ```
    /// use async_with::{Failure, Outcome};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum DbError { Conflict, Io }
    ///
    /// let error = DbError::Conflict;
    /// let outcome = Outcome::Failure(Failure::new(&error));
    /// assert_eq!(outcome.error::<DbError>(), Some(&DbError::Conflict));
    /// assert_eq!(outcome.error::<&str>(), None); // another type: explicitly `None`
    /// assert_eq!(Outcome::Success.error::<DbError>(), None);
    /// ```
    pub fn error<E: Any>(&self) -> Option<&'a E> {
        self.failure()?.downcast().ok()
    }
}

/// How the body ended, without the error: [`Outcome::status`], for an exit that only
/// chooses (commit or roll back) or keeps a record with no lifetime.
///
/// # Examples
///
/// A transaction that commits when the body succeeded and rolls back otherwise:
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Outcome, Status, from_fns, with};
///
/// async fn transfer(ledger: &mut Vec<&'static str>, funds: u32) -> Result<(), &'static str> {
///     let tx = from_fns(
///         async || Ok::<_, &str>(Vec::new()), // the pending writes
///         async |writes: Vec<&'static str>, outcome: Outcome<'_>| {
///             if outcome.status() == Status::Success {
///                 ledger.extend(writes); // an async commit would be awaited here
///             } // otherwise the writes are dropped: rolled back
///             Ok(())
///         },
///     );
///     with(tx, async |writes| -> Result<(), &'static str> {
///         writes.push("debit");
///         if funds < 10 {
///             return Err("insufficient funds");
///         }
///         writes.push("credit");
///         Ok(())
///     })
///     .await
///     .map_err(|e| e.collapse())
/// }
///
/// let mut ledger = Vec::new();
/// assert_eq!(transfer(&mut ledger, 50).await, Ok(()));
/// assert_eq!(transfer(&mut ledger, 5).await, Err("insufficient funds"));
/// assert_eq!(ledger, ["debit", "credit"]);
/// # });
/// ```
///
/// Like [`Outcome`], `Status` is `#[non_exhaustive]`: end a `match` on it with a `_` arm that
/// rolls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// The body returned `Ok`.
    Success,
    /// The body returned `Err`.
    Failure,
    /// The body panicked (only with the `std` feature).
    Panicked,
    /// A stop signal ended the body before it finished ([`Outcome::Cancelled`]).
    Cancelled,
}

impl Status {
    /// `true` if the body returned `Ok`.
    pub fn is_success(self) -> bool {
        self == Status::Success
    }

    /// `true` if a stop signal ended the body ([`Status::Cancelled`]).
    pub fn is_cancelled(self) -> bool {
        self == Status::Cancelled
    }
}

/// The body's error, lent to exit: printable with `{:?}` and downcastable to its type.
#[derive(Clone, Copy)]
pub struct Failure<'a> {
    // `Sync`, so that a lent failure is `Send`: an exit future holding it across an await can
    // move between threads.
    error: &'a (dyn Reveal + Sync),
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
    ///
    /// The error must be `Sync` so that the failure is `Send`: an exit future that holds
    /// it across an await can then move between threads with the rest of the future.
    pub fn new<E: fmt::Debug + Any + Sync>(error: &'a E) -> Self {
        Failure { error }
    }

    /// The error as `E` if that is its type; otherwise the failure back, unchanged, so a
    /// mismatch is an explicit `Err` rather than a silent `None`.
    ///
    /// ```
    /// use async_with::Failure;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Timeout(u32);
    ///
    /// let error = Timeout(30);
    /// let failure = Failure::new(&error);
    /// assert_eq!(failure.downcast::<Timeout>().ok(), Some(&Timeout(30)));
    /// // Another type: the failure comes back, to try the next type or to print.
    /// let other = failure.downcast::<std::io::Error>().unwrap_err();
    /// assert_eq!(format!("{other:?}"), "Timeout(30)");
    /// ```
    pub fn downcast<E: Any>(self) -> Result<&'a E, Failure<'a>> {
        self.error.as_any().downcast_ref().ok_or(self)
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

/// What an exit sees when other exits ran before it (a group's members, an exit stack's
/// entries): the newest failure if there is one, the scope's `outcome` otherwise — but a panic
/// under way stays `Panicked` (as in nested `with`s, where the inner one resumes the panic
/// after its exit and drops that exit's error).
pub(crate) fn newest<'a, X: fmt::Debug + Any + Sync>(
    fault: Option<&'a X>,
    outcome: Outcome<'a>,
) -> Outcome<'a> {
    match (fault, outcome) {
        (_, Outcome::Panicked) => Outcome::Panicked,
        (Some(error), _) => Outcome::Failure(Failure::new(error)),
        (None, outcome) => outcome,
    }
}

/// A group, or a `with` whose body failed, keeps the newest failure before an exit in an
/// `Option` lent to that exit.
impl<E: fmt::Debug + Any + Sync> Shows for Option<E> {
    #[inline]
    fn shows<'v>(&'v self, outer: Outcome<'v>) -> Outcome<'v> {
        newest(self.as_ref(), outer)
    }
}
