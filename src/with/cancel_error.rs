//! [`CancelError`]: how a `with` given a stop signal ended, when it did not succeed.

use core::fmt;

use crate::error::Error;

/// The error of a [`CancelOn`](crate::CancelOn): the `with` failed on its own
/// ([`CancelError::Failed`]), or a signal ended it, in one of three places.
///
/// `X` is the manager's error, `E` the body's, as in [`Error`]. It is `#[non_exhaustive]`: end
/// a `match` on it with a `_` arm.
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{CancelError, Outcome, from_fns, with};
///
/// let conn = from_fns(
///     async || Ok::<_, &str>(0_u32),
///     async |_: u32, outcome: Outcome<'_>| {
///         assert!(outcome.is_cancelled());
///         Err("goodbye not sent")
///     },
/// );
/// let stopped = with(conn, async |_| core::future::pending::<()>().await)
///     .cancel_on(core::future::ready(()))
///     .await;
/// assert_eq!(stopped, Err(CancelError::Body { exit: Some("goodbye not sent") }));
/// assert!(stopped.unwrap_err().is_cancelled());
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelError<X, E> {
    /// No signal ended it: enter, the body or exit failed, as without a signal.
    Failed(Error<X, E>),
    /// The signal was ready during enter. The enter future was dropped (its own `Drop` undoes
    /// what it had started); no resource was produced. For a group, enter includes the
    /// members entered before one that failed: they get `cancel`, or, if their exit had begun,
    /// lose its future (see the crate docs' [Cancellation](crate#cancellation)).
    Entering,
    /// The signal was ready during the body. The body's future was dropped, then exit ran with
    /// [`Outcome::Cancelled`](crate::Outcome::Cancelled) and was awaited to its end.
    Body {
        /// Exit's error, if exit failed too.
        exit: Option<X>,
    },
    /// The exit bound ([`CancelOn::abandon_exit_on`](crate::CancelOn::abandon_exit_on)) was
    /// ready while exit ran: the exit future was dropped before it finished. What that leaves
    /// is whatever the exit future's `Drop` does; `cancel` does not run for a resource whose
    /// exit had begun (a group's exit future cancels the members whose exits had not). A value
    /// the body had returned is dropped.
    ExitAbandoned {
        /// The body's error, if the body failed before exit began.
        body: Option<E>,
        /// `true` if the stop signal had ended the body first.
        cancelled: bool,
    },
}

impl<X, E> CancelError<X, E> {
    /// `true` if a signal ended the `with` (in any phase), `false` if it failed on its own.
    pub fn is_cancelled(&self) -> bool {
        match self {
            CancelError::Failed(_) => false,
            CancelError::Entering | CancelError::Body { .. } => true,
            CancelError::ExitAbandoned { cancelled, .. } => *cancelled,
        }
    }

    /// `true` if exit was abandoned by its bound.
    pub fn is_abandoned(&self) -> bool {
        matches!(self, CancelError::ExitAbandoned { .. })
    }

    /// The `with`'s own error, if no signal ended it.
    pub fn error(&self) -> Option<&Error<X, E>> {
        match self {
            CancelError::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// The manager's error (enter or exit), if it failed, whether or not a signal fired.
    pub fn manager(&self) -> Option<&X> {
        match self {
            CancelError::Failed(error) => error.manager(),
            CancelError::Body { exit } => exit.as_ref(),
            CancelError::Entering | CancelError::ExitAbandoned { .. } => None,
        }
    }
}

impl<X, E> From<Error<X, E>> for CancelError<X, E> {
    fn from(error: Error<X, E>) -> Self {
        CancelError::Failed(error)
    }
}

/// Says what the signal ended, as [`Error`]'s `Display` says which phase failed; the failure
/// itself is [`source`](core::error::Error::source).
impl<X: fmt::Display, E> fmt::Display for CancelError<X, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelError::Failed(error) => fmt::Display::fmt(error, f),
            CancelError::Entering => f.write_str("cancelled while entering the resource"),
            CancelError::Body { exit: None } => f.write_str("the body was cancelled"),
            CancelError::Body { exit: Some(exit) } => write!(
                f,
                "the body was cancelled, and then exiting the resource failed: {exit}"
            ),
            CancelError::ExitAbandoned {
                cancelled: true, ..
            } => f.write_str("the body was cancelled, and then exit was abandoned"),
            CancelError::ExitAbandoned { body: Some(_), .. } => {
                f.write_str("the body failed, and then exit was abandoned")
            }
            CancelError::ExitAbandoned { .. } => f.write_str("exit was abandoned"),
        }
    }
}

impl<X, E> core::error::Error for CancelError<X, E>
where
    X: core::error::Error + 'static,
    E: core::error::Error + 'static,
{
    /// The failure: [`Error`]'s source when no signal ended it, the body's error when exit
    /// was abandoned after it failed; `None` otherwise (an exit error after a cancelled body
    /// is printed by `Display`).
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            CancelError::Failed(error) => core::error::Error::source(error),
            CancelError::ExitAbandoned { body: Some(e), .. } => Some(e),
            _ => None,
        }
    }
}
