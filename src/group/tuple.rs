//! Tuples of managers as managers (the arities are listed once, in `for_each_tuple!`): run as
//! pairs nested to the left, with the resources and faults laid out flat.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::error::{Fault, GroupError};
use super::pair::{Leaf, Pair};
use crate::manager::{AsyncEnter, AsyncExit};
use crate::outcome::Outcome;

mod sealed {
    pub trait Sealed {}
}

/// A tuple of managers, seen as the pairs it runs as. Sealed; implemented for tuples of 2 to
/// 8 managers whose errors are `Debug + 'static`.
pub trait Shape: sealed::Sealed {
    /// The pairs, nested to the left: `Pair<Pair<Leaf<A>, B>, C>` for `(A, B, C)`.
    type Nested: AsyncEnter;
    /// The tuple of resources.
    type Resource;
    /// The tuple of per-manager faults.
    type Faults;

    /// The managers as pairs.
    fn nest(self) -> Self::Nested;
    /// Nested resources laid out flat.
    fn flatten(resource: <Self::Nested as AsyncEnter>::Resource) -> Self::Resource;
    /// Flat resources nested again, for exit.
    fn unflatten(resource: Self::Resource) -> <Self::Nested as AsyncEnter>::Resource;
    /// Nested faults laid out flat.
    fn flatten_faults(faults: <Self::Nested as AsyncEnter>::Error) -> Self::Faults;
}

type Nested<T> = <T as Shape>::Nested;
type NestedExit<T> = <Nested<T> as AsyncEnter>::Exit;
type NestedResource<T> = <Nested<T> as AsyncEnter>::Resource;
type NestedExitFuture<'o, T> = <NestedExit<T> as AsyncExit<NestedResource<T>>>::Future<'o>;

pin_project! {
    /// Enter future of a tuple of managers: enters them left to right.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TupleEnter<T>
    where
        T: Shape,
    {
        #[pin]
        inner: <Nested<T> as AsyncEnter>::Enter,
    }
}

impl<T: Shape> Future for TupleEnter<T> {
    type Output = Result<(T::Resource, TupleExit<T>), GroupError<T::Faults>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().inner.poll(cx)) {
            Ok((resource, exit)) => Ok((T::flatten(resource), TupleExit { inner: exit })),
            Err(faults) => Err(GroupError::new(T::flatten_faults(faults))),
        })
    }
}

impl<T: Shape> fmt::Debug for TupleEnter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TupleEnter").finish_non_exhaustive()
    }
}

/// Exit handle of a tuple of managers: exits them right to left.
pub struct TupleExit<T: Shape> {
    inner: NestedExit<T>,
}

impl<T: Shape> fmt::Debug for TupleExit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TupleExit").finish_non_exhaustive()
    }
}

impl<T: Shape> AsyncExit<T::Resource> for TupleExit<T> {
    type Error = GroupError<T::Faults>;
    type Future<'o> = TupleExitFuture<'o, T>;

    #[inline]
    fn exit<'o>(self, resource: T::Resource, outcome: Outcome<'o>) -> Self::Future<'o> {
        TupleExitFuture {
            inner: self.inner.exit(T::unflatten(resource), outcome),
        }
    }

    #[inline]
    fn cancel(self, resource: T::Resource) {
        self.inner.cancel(T::unflatten(resource));
    }
}

pin_project! {
    /// Exit future of a tuple of managers. Dropped mid-way, it drops the running exit future
    /// and cancels the managers to its left. It borrows the outcome it was given (`'o`) and
    /// shows each member what [the rule](crate::group#what-each-exit-sees) says.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TupleExitFuture<'o, T>
    where
        T: Shape,
    {
        #[pin]
        inner: NestedExitFuture<'o, T>,
    }
}

impl<T: Shape> Future for TupleExitFuture<'_, T> {
    type Output = Result<(), GroupError<T::Faults>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let exited = ready!(self.project().inner.poll(cx));
        Poll::Ready(exited.map_err(|faults| GroupError::new(T::flatten_faults(faults))))
    }
}

impl<T: Shape> fmt::Debug for TupleExitFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TupleExitFuture").finish_non_exhaustive()
    }
}

/// `Pair<Pair<Leaf<A>, B>, C>` for `A B C`.
macro_rules! nested_type {
    (@acc $acc:ty;) => { $acc };
    (@acc $acc:ty; $next:ident $($rest:ident)*) => { nested_type!(@acc Pair<$acc, $next>; $($rest)*) };
    ($first:ident $($rest:ident)*) => { nested_type!(@acc Leaf<$first>; $($rest)*) };
}

/// `Pair::new(Pair::new(Leaf(a), b), c)` for `a b c`.
macro_rules! nested_managers {
    (@acc $acc:expr;) => { $acc };
    (@acc $acc:expr; $next:ident $($rest:ident)*) => {
        nested_managers!(@acc Pair::new($acc, $next); $($rest)*)
    };
    ($first:ident $($rest:ident)*) => { nested_managers!(@acc Leaf($first); $($rest)*) };
}

/// `((a, b), c)` for `a b c`: a pattern or an expression.
macro_rules! nested_pattern {
    (@acc $acc:tt;) => { $acc };
    (@acc $acc:tt; $next:ident $($rest:ident)*) => { nested_pattern!(@acc ($acc, $next); $($rest)*) };
    ($first:ident $($rest:ident)*) => { nested_pattern!(@acc $first; $($rest)*) };
}

/// `AsyncEnter` for one tuple arity (called by `for_each_tuple!`).
macro_rules! tuple_manager {
    ($len:literal: $(($i:tt $M:ident $m:ident $X:ident))+) => {
        impl<$($M),+> sealed::Sealed for ($($M,)+)
        where
            $($M: AsyncEnter<Error: fmt::Debug + Sync + 'static>),+
        {
        }

        impl<$($M),+> Shape for ($($M,)+)
        where
            $($M: AsyncEnter<Error: fmt::Debug + Sync + 'static>),+
        {
            type Nested = nested_type!($($M)+);
            type Resource = ($($M::Resource,)+);
            type Faults = ($(Option<Fault<$M::Error>>,)+);

            #[inline]
            fn nest(self) -> Self::Nested {
                let ($($m,)+) = self;
                nested_managers!($($m)+)
            }

            #[inline]
            fn flatten(resource: <Self::Nested as AsyncEnter>::Resource) -> Self::Resource {
                let nested_pattern!($($m)+) = resource;
                ($($m,)+)
            }

            #[inline]
            fn unflatten(resource: Self::Resource) -> <Self::Nested as AsyncEnter>::Resource {
                let ($($m,)+) = resource;
                nested_pattern!($($m)+)
            }

            #[inline]
            fn flatten_faults(faults: <Self::Nested as AsyncEnter>::Error) -> Self::Faults {
                let nested_pattern!($($m)+) = faults;
                ($($m,)+)
            }
        }

        /// A tuple of managers is a manager: see the [module docs](crate::group).
        impl<$($M),+> AsyncEnter for ($($M,)+)
        where
            $($M: AsyncEnter<Error: fmt::Debug + Sync + 'static>),+
        {
            type Resource = ($($M::Resource,)+);
            type Error = GroupError<($(Option<Fault<$M::Error>>,)+)>;
            type Exit = TupleExit<Self>;
            type Enter = TupleEnter<Self>;

            #[inline]
            fn enter(self) -> Self::Enter {
                TupleEnter {
                    inner: Shape::nest(self).enter(),
                }
            }
        }
    };
}

for_each_tuple!(tuple_manager);
