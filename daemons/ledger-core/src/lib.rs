//! Marionette's ledger core: double-entry accounts, order holds, trade
//! settlement, deposits, transfers and two-phase withdrawals, with durable
//! idempotency. Pure: no I/O, no clock (the shell stamps each command), no
//! floats.

pub mod idempotency;
pub mod ledger;
pub mod types;

pub use ledger::*;
pub use types::*;
