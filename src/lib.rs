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
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
mod arena;
mod body;
mod closing;
mod error;
mod from_fns;
pub mod group;
mod lend;
mod manager;
mod nullcontext;
mod outcome;
mod output;
mod send_manager;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod stack;
mod with;

pub use crate::body::Body;
pub use crate::closing::{Close, Closing, closing};
pub use crate::error::Error;
pub use crate::from_fns::{CancelHook, EnterFn, ExitFn, FromFns, OnCancel, from_fns};
pub use crate::group::{Fault, GroupError};
pub use crate::manager::{AsyncEnter, AsyncExit};
pub use crate::nullcontext::{NoExit, NullContext, nullcontext};
pub use crate::outcome::{Failure, Outcome, Status};
pub use crate::output::{BodyOutput, Value};
pub use crate::send_manager::SendManager;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use crate::stack::{CloseErrors, ExitStack, SendExitStack};
pub use crate::with::{WithFuture, with};

/// Re-exported from `futures-core`, so that `is_terminated` can be called without adding that
/// crate: `use async_with::FusedFuture;`.
pub use futures_core::FusedFuture;
