//! Marionette's money kernel.
//!
//! It knows accounts (owner, asset, purpose), transfers between them applied
//! all or nothing, holds that are captured in part for many receivers and
//! released for the rest, pro-rata allocation in minor units, idempotency
//! keys, and the invariants over all of them. It knows no product: the
//! wallet, the spot exchange and the products after them (in the `products`
//! crate) declare their purposes, transfer codes, hold and record kinds, and
//! move money only through these operations.
//!
//! Pure: no I/O, no clock (the shell stamps each command), no floats.

#![deny(clippy::float_arithmetic)]

pub mod account;
pub mod allocation;
pub mod idempotency;
pub mod kernel;

pub use account::{AccountId, Owner, Purpose, PurposeError, PurposeSpec, Purposes, PURPOSES_MAX};
pub use allocation::{pro_rata, AllocationError};
pub use idempotency::{fingerprint, key_digest, Digest, IdempotencyEntry, IdempotencyTable, Recorded};
pub use kernel::*;

/// The names of the kernel's storage tables; the ledger daemon's
/// `schema/kernel.rs` says what they hold.
pub mod tables {
    pub const ASSETS: &str = "kernel.assets";
    pub const ACCOUNTS: &str = "kernel.accounts";
    pub const TRANSFERS: &str = "kernel.transfers";
    pub const HOLDS: &str = "kernel.holds";
    pub const IDEMPOTENCY: &str = "kernel.idempotency";
}
