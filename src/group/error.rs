//! [`GroupError`]: every failure of a group of managers, by position and phase.

use core::fmt;

use crate::error::Error;
use crate::outcome::Failure;

/// How one manager of a group failed: while entering or while exiting.
///
/// A manager fails at most once: if its enter fails, it never exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault<X> {
    /// Its enter failed; the managers after it were not entered.
    Enter(X),
    /// Its exit failed.
    Exit(X),
}

impl<X> Fault<X> {
    /// The error, whichever the phase.
    pub fn into_inner(self) -> X {
        match self {
            Fault::Enter(x) | Fault::Exit(x) => x,
        }
    }

    /// The error by reference, whichever the phase.
    pub fn inner(&self) -> &X {
        match self {
            Fault::Enter(x) | Fault::Exit(x) => x,
        }
    }

    /// `true` if it failed while entering.
    pub fn is_enter(&self) -> bool {
        matches!(self, Fault::Enter(_))
    }

    /// Applies `f` to the error, keeping the phase.
    pub fn map<Y>(self, f: impl FnOnce(X) -> Y) -> Fault<Y> {
        match self {
            Fault::Enter(x) => Fault::Enter(f(x)),
            Fault::Exit(x) => Fault::Exit(f(x)),
        }
    }

    fn phase(&self) -> &'static str {
        match self {
            Fault::Enter(_) => "enter",
            Fault::Exit(_) => "exit",
        }
    }
}

/// The error of a group of managers (a tuple or an array): for every position, the
/// [`Fault`] of that manager, if it failed. At least one position holds one.
///
/// [`faults`](GroupError::faults) (or [`into_faults`](GroupError::into_faults)) is
/// `(Option<Fault<Xa>>, Option<Fault<Xb>>, ..)` for a tuple `(A, B, ..)` and
/// `[Option<Fault<X>>; N]` for an array `[M; N]`, so a `match` names each manager's fate:
///
/// ```
/// # futures_executor::block_on(async {
/// use async_with::{Error, Fault, GroupError, Outcome, Status, Value, from_fns, with};
///
/// let a = from_fns(async || Ok::<_, &str>(1), async |_: i32, _: Outcome<'_>| Err("a: close failed"));
/// let b = from_fns(async || Err::<i32, _>(404_u16), async |_: i32, _: Outcome<'_>| Ok(()));
///
/// let result = with((a, b), async |(a, b)| Value(*a + *b)).await;
/// let Err(Error::Enter(group)) = result else { panic!("B's enter fails") };
/// match group.into_faults() {
///     (Some(Fault::Exit(a)), Some(Fault::Enter(b))) => {
///         assert_eq!((a, b), ("a: close failed", 404));
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// # });
/// ```
///
/// The failures happened in order of position, from the right: an enter failure first (it
/// is the rightmost fault), then the exits that failed while unwinding, right to left.
/// [`iter`](GroupError::iter) walks them in that order; [`collapse`](GroupError::collapse)
/// keeps the first one (the cause).
///
/// # `Display` and `Error`
///
/// A `GroupError` is `Display` when every manager's error is `Display`, and an
/// [`Error`](core::error::Error) when every manager's error is an `Error + 'static` (its
/// `faults` are then `Debug` too). `Display` says which manager failed in which phase, and
/// also prints the later failures; [`source`](core::error::Error::source) is the first failure
/// itself, so an error reporter prints each message once. (The bounds are written on sealed
/// helper traits of the fault lists, one impl per arity; this paragraph is what they say.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupError<S> {
    faults: S,
}

mod sealed {
    pub trait Sealed {}
}

/// A list of per-manager faults: a tuple `(Option<Fault<Xa>>, ..)` or an array
/// `[Option<Fault<X>>; N]`. Sealed; implemented by the crate.
pub trait FaultList: sealed::Sealed {
    /// How many managers the group has.
    fn len(&self) -> usize;

    /// `true` for a group of no managers.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fault of the manager at `index`, lent as a [`Failure`] (`{:?}`, downcast).
    fn get(&self, index: usize) -> Option<Fault<Failure<'_>>>;
}

/// The conversions of a [`FaultList`] that need more of its error types: into one type `T`,
/// and to `Display` and `core::error::Error`. Sealed; implemented by the crate.
pub trait Faults<T>: FaultList {
    /// The first failure (the rightmost fault), converted with `Into`.
    fn collapse(self) -> Option<T>;
}

/// `Display` of the fault at `index`, for [`GroupError`]'s `Display`.
pub(crate) trait DisplayFaults: FaultList {
    fn display(&self, index: usize) -> Option<Fault<&dyn fmt::Display>>;
}

/// The fault at `index` as an error, for [`GroupError`]'s `source`.
pub(crate) trait ErrorFaults: FaultList {
    fn error(&self, index: usize) -> Option<&(dyn core::error::Error + 'static)>;
}

impl<S> GroupError<S> {
    /// At least one position of `faults` holds a fault (the crate's groups make them).
    pub(crate) fn new(faults: S) -> Self {
        GroupError { faults }
    }

    /// Per position, the manager's fault if it had one: `(Option<Fault<Xa>>, ..)` for a
    /// tuple, `[Option<Fault<X>>; N]` for an array.
    pub fn faults(&self) -> &S {
        &self.faults
    }

    /// The faults by value, to `match` on each manager's fate (see the example above).
    pub fn into_faults(self) -> S {
        self.faults
    }
}

impl<S: FaultList> GroupError<S> {
    /// The failures in the order they happened (the rightmost position first), each with
    /// its position.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{Error, Outcome, Status, from_fns, null_context, with};
    ///
    /// let a = from_fns(async || Ok::<_, &str>(()), async |_: (), _: Outcome<'_>| Err("a"));
    /// let c = from_fns(async || Err::<(), _>(7_u8), async |_: (), _: Outcome<'_>| Ok(()));
    /// let Err(Error::Enter(error)) = with((a, null_context(()), c), async |_| ()).await else {
    ///     panic!("c's enter fails")
    /// };
    /// let seen: Vec<String> = error
    ///     .iter()
    ///     .map(|(i, fault)| format!("{i}: {} {:?}", if fault.is_enter() { "enter" } else { "exit" }, fault.inner()))
    ///     .collect();
    /// assert_eq!(seen, ["2: enter 7", "0: exit \"a\""]);
    /// # });
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (usize, Fault<Failure<'_>>)> + '_ {
        (0..self.faults.len())
            .rev()
            .filter_map(|i| self.faults.get(i).map(|fault| (i, fault)))
    }

    /// The first failure (the cause): the enter failure if a manager failed to enter,
    /// otherwise the exit failure furthest to the right.
    pub fn first(&self) -> Option<(usize, Fault<Failure<'_>>)> {
        self.iter().next()
    }

    /// The first failure, converted into `T` through `From`; the others are dropped.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{Error, Outcome, Status, from_fns, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum AppError { Lock(&'static str), Io(u16) }
    /// impl From<&'static str> for AppError { fn from(e: &'static str) -> Self { AppError::Lock(e) } }
    /// impl From<u16> for AppError { fn from(e: u16) -> Self { AppError::Io(e) } }
    ///
    /// let lock = from_fns(async || Ok::<_, &str>(()), async |_: (), _: Outcome<'_>| Err("poisoned"));
    /// let port = from_fns(async || Err::<(), _>(5_u16), async |_: (), _: Outcome<'_>| Ok(()));
    /// let Err(Error::Enter(error)) = with((lock, port), async |_| ()).await else {
    ///     panic!("the port's enter fails")
    /// };
    /// // The port failed first; the lock's exit failure afterwards is dropped.
    /// assert_eq!(error.collapse::<AppError>(), AppError::Io(5));
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// If no position holds a fault (a `GroupError` the crate returns always has one).
    pub fn collapse<T>(self) -> T
    where
        S: Faults<T>,
    {
        self.faults
            .collapse()
            .expect("a `GroupError` holds at least one fault")
    }
}

/// When every manager's error is `Display` (see [`GroupError`]).
impl<S: DisplayFaults> fmt::Display for GroupError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.faults.len();
        let mut first = true;
        for i in (0..len).rev() {
            let Some(fault) = self.faults.display(i) else {
                continue;
            };
            if first {
                // The first failure is `source`: name it here, print it there.
                write!(f, "manager {} of {len} failed to {}", i + 1, fault.phase())?;
                first = false;
            } else {
                let message = fault.inner();
                write!(
                    f,
                    ", then manager {} failed to {}: {message}",
                    i + 1,
                    fault.phase()
                )?;
            }
        }
        if first {
            f.write_str("no manager failed")?;
        }
        Ok(())
    }
}

/// When every manager's error is an `Error + 'static` (see [`GroupError`]).
impl<S> core::error::Error for GroupError<S>
where
    S: DisplayFaults + ErrorFaults + fmt::Debug,
{
    /// The first failure.
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        (0..self.faults.len())
            .rev()
            .find_map(|i| self.faults.error(i))
    }
}

impl<S, E> Error<GroupError<S>, E> {
    /// One error of type `T` for a group of managers (a tuple or an array): the body's error
    /// if the body failed, otherwise the group's first failure ([`GroupError::collapse`]).
    /// The other failures are dropped.
    ///
    /// This is the call for `with((a, b, ..), ..)`; [`collapse`](Error::collapse) is the one
    /// for a single manager. `?` converts through `From` and cannot tell the compiler which
    /// `T` is meant, so name it there (`Error::collapse_group::<AppError>`), or return the result
    /// directly, where the function's return type names it.
    ///
    /// A body that cannot fail has the error type [`Infallible`](core::convert::Infallible), which converts into no
    /// other type: take the group's error with [`into_manager`](Error::into_manager) and
    /// then [`GroupError::collapse`].
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{Error, Outcome, Status, from_fns, null_context, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum AppError { Io(u16), Parse }
    /// impl From<u16> for AppError { fn from(code: u16) -> Self { AppError::Io(code) } }
    /// // `null_context` cannot fail: its error type is `Infallible`, which needs this line (as
    /// // for `?` on a `Result<_, Infallible>`); `anyhow::Error` and `Box<dyn Error>` have it.
    /// impl From<core::convert::Infallible> for AppError { fn from(n: core::convert::Infallible) -> Self { match n {} } }
    ///
    /// async fn read() -> Result<u8, AppError> {
    ///     let port = from_fns(async || Err::<u8, _>(503_u16), async |_: u8, _: Outcome<'_>| Ok(()));
    ///     let value = with((null_context(()), port), async |(_, port)| -> Result<u8, AppError> {
    ///         if *port > 9 { return Err(AppError::Parse) }
    ///         Ok(*port)
    ///     })
    ///     .await
    ///     .map_err(Error::collapse_group::<AppError>)?;
    ///     Ok(value)
    /// }
    /// assert_eq!(read().await, Err(AppError::Io(503)));
    /// # });
    /// ```
    pub fn collapse_group<T>(self) -> T
    where
        S: Faults<T>,
        E: Into<T>,
    {
        match self {
            Error::Enter(group) | Error::Exit(group) => group.collapse(),
            Error::Body(body) | Error::BodyAndExit { body, .. } => body.into(),
        }
    }
}

impl<S, X, E> Error<GroupError<S>, Error<X, E>> {
    /// One error of type `T` for a group of managers whose body runs a nested `with` (a tuple
    /// or an array outside, one manager inside — the shape for a resource made from the
    /// group's): the body's error if it failed, else the inner manager's, else the group's
    /// first failure. The others are dropped. [`Error::collapse_group`] is the same for a
    /// group without a nested `with`, [`Error::collapse_nested`] for two single managers.
    ///
    /// ```
    /// # futures_executor::block_on(async {
    /// use async_with::{Error, Outcome, from_fns, null_context, with};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum AppError { Pool(u8), Tx(&'static str), Body(char) }
    /// impl From<u8> for AppError { fn from(e: u8) -> Self { AppError::Pool(e) } }
    /// impl From<&'static str> for AppError { fn from(e: &'static str) -> Self { AppError::Tx(e) } }
    /// impl From<char> for AppError { fn from(e: char) -> Self { AppError::Body(e) } }
    /// impl From<core::convert::Infallible> for AppError {
    ///     fn from(n: core::convert::Infallible) -> Self { match n {} }
    /// }
    ///
    /// let pool = from_fns(async || Ok::<_, u8>(2_u32), async |_: u32, _: Outcome<'_>| Ok(()));
    /// let result = with((null_context(()), pool), async |(_, conns)| {
    ///     // A transaction made from the group's resource: a nested `with`.
    ///     let tx = from_fns(async || Ok::<_, &str>(*conns), async |_: u32, _| Err("rollback failed"));
    ///     with(tx, async |_tx| Err::<(), _>('x')).await
    /// })
    /// .await;
    /// let error = result.map_err(Error::collapse_group_nested::<AppError>).unwrap_err();
    /// assert_eq!(error, AppError::Body('x')); // the first failure: the body's
    /// # });
    /// ```
    pub fn collapse_group_nested<T>(self) -> T
    where
        S: Faults<T>,
        X: Into<T>,
        E: Into<T>,
    {
        match self {
            Error::Enter(group) | Error::Exit(group) => group.collapse(),
            Error::Body(inner) | Error::BodyAndExit { body: inner, .. } => inner.collapse(),
        }
    }
}

/// Implements the fault-list traits for an array.
impl<X: fmt::Debug + Sync + 'static, const N: usize> sealed::Sealed for [Option<Fault<X>>; N] {}

impl<X: fmt::Debug + Sync + 'static, const N: usize> FaultList for [Option<Fault<X>>; N] {
    fn len(&self) -> usize {
        N
    }

    fn get(&self, index: usize) -> Option<Fault<Failure<'_>>> {
        let fault = self.as_slice().get(index)?.as_ref()?;
        Some(lend(fault))
    }
}

impl<T, X: fmt::Debug + Sync + 'static + Into<T>, const N: usize> Faults<T>
    for [Option<Fault<X>>; N]
{
    fn collapse(self) -> Option<T> {
        self.into_iter()
            .rev()
            .flatten()
            .next()
            .map(|fault| fault.into_inner().into())
    }
}

impl<X: fmt::Debug + fmt::Display + Sync + 'static, const N: usize> DisplayFaults
    for [Option<Fault<X>>; N]
{
    fn display(&self, index: usize) -> Option<Fault<&dyn fmt::Display>> {
        let fault = self.as_slice().get(index)?.as_ref()?;
        Some(as_display(fault))
    }
}

impl<X: core::error::Error + Sync + 'static, const N: usize> ErrorFaults for [Option<Fault<X>>; N] {
    fn error(&self, index: usize) -> Option<&(dyn core::error::Error + 'static)> {
        let fault = self.as_slice().get(index)?.as_ref()?;
        Some(fault.inner())
    }
}

/// A fault's error lent as a [`Failure`].
pub(crate) fn lend<X: fmt::Debug + Sync + 'static>(fault: &Fault<X>) -> Fault<Failure<'_>> {
    match fault {
        Fault::Enter(x) => Fault::Enter(Failure::new(x)),
        Fault::Exit(x) => Fault::Exit(Failure::new(x)),
    }
}

/// A fault's error as `&dyn Display`.
pub(crate) fn as_display<X: fmt::Display>(fault: &Fault<X>) -> Fault<&dyn fmt::Display> {
    match fault {
        Fault::Enter(x) => Fault::Enter(x),
        Fault::Exit(x) => Fault::Exit(x),
    }
}

/// The first fault from the right of a tuple of faults, converted: `$i` lists the positions
/// from the left, and the rightmost is tried first.
macro_rules! first_from_right {
    ($faults:ident;) => { None };
    ($faults:ident; $i:tt $($rest:tt)*) => {
        first_from_right!($faults; $($rest)*)
            .or_else(|| $faults.$i.map(|fault| fault.into_inner().into()))
    };
}

/// Implements the fault-list traits for the tuple `(Option<Fault<X0>>, ..)` of one arity
/// (called by `for_each_tuple!`).
macro_rules! tuple_faults {
    ($len:literal: $(($i:tt $M:ident $m:ident $X:ident))+) => {
        impl<$($X: fmt::Debug + Sync + 'static),+> sealed::Sealed for ($(Option<Fault<$X>>,)+) {}

        impl<$($X: fmt::Debug + Sync + 'static),+> FaultList for ($(Option<Fault<$X>>,)+) {
            fn len(&self) -> usize {
                $len
            }

            fn get(&self, index: usize) -> Option<Fault<Failure<'_>>> {
                match index {
                    $($i => self.$i.as_ref().map(lend),)+
                    _ => None,
                }
            }
        }

        impl<T, $($X: fmt::Debug + Sync + 'static + Into<T>),+> Faults<T> for ($(Option<Fault<$X>>,)+) {
            fn collapse(self) -> Option<T> {
                let faults = self;
                first_from_right!(faults; $($i)+)
            }
        }

        impl<$($X: fmt::Debug + fmt::Display + Sync + 'static),+> DisplayFaults
            for ($(Option<Fault<$X>>,)+)
        {
            fn display(&self, index: usize) -> Option<Fault<&dyn fmt::Display>> {
                match index {
                    $($i => self.$i.as_ref().map(as_display),)+
                    _ => None,
                }
            }
        }

        impl<$($X: core::error::Error + Sync + 'static),+> ErrorFaults for ($(Option<Fault<$X>>,)+) {
            fn error(&self, index: usize) -> Option<&(dyn core::error::Error + 'static)> {
                match index {
                    $($i => self.$i.as_ref().map(|f| f.inner() as &(dyn core::error::Error + 'static)),)+
                    _ => None,
                }
            }
        }
    };
}

for_each_tuple!(tuple_faults);
