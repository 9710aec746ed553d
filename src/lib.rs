#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core,
    clippy::undocumented_unsafe_blocks
)]
// `unsafe` lives in two modules, each allowing it for itself: `with::lend` (the body's
// borrow of the resource) and `stack::arena` (the exit stack's entries).
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod body;
mod error;
pub mod group;
mod guard;
mod manager;
mod outcome;
mod output;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod stack;
mod with;

pub use crate::body::Body;
pub use crate::error::Error;
pub use crate::group::{Fault, GroupError};
pub use crate::manager::closing::{Closing, ClosingExit, closing};
pub use crate::manager::from_fns::{
    CancelHook, FromFns, FromFnsEnter, FromFnsExit, OnCancel, from_fns,
};
pub use crate::manager::null_context::{NoExit, NullContext, null_context};
pub use crate::manager::send::SendManager;
pub use crate::manager::{AsyncEnter, AsyncExit};
pub use crate::outcome::{Failure, Outcome, Status};
pub use crate::output::{BodyOutput, Value};
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use crate::stack::{CloseErrors, ExitStack, SendExitStack};
pub use crate::with::{WithFuture, with};

/// Re-exported from `futures-core`, so that `is_terminated` can be called without adding that
/// crate: `use async_with::FusedFuture;`.
pub use futures_core::FusedFuture;
