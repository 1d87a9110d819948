//! Marionette's matching core.
//!
//! Pure and deterministic: no I/O, no async, no clock reads, no floats. The
//! daemon feeds it [`Command`]s in journal order and publishes the [`Event`]s;
//! the same commands from the same snapshot always give the same events and the
//! same [`StateHash`].

#![deny(clippy::float_arithmetic)]

pub mod book;
pub mod engine;
pub mod fast;
mod ladder;
pub mod lifecycle;
pub mod reference;
pub mod rules;
pub mod stops;
pub mod types;

pub use book::{BookStore, OrderBook};
pub use engine::{decode_snapshot, encode_snapshot, snapshot_hash, Engine, SnapshotError, StateHash};
pub use fast::FastStore;
pub use lifecycle::Book;
pub use reference::ReferenceStore;

/// The book the daemon runs: the rules over the fast store.
pub type FastBook = Book<FastStore>;
/// The book the fast one is checked against: the same rules over the reference store.
pub type ReferenceBook = Book<ReferenceStore>;
pub use types::*;

/// The engine the daemon runs.
pub type FastEngine = Engine<FastBook>;
/// The engine the fast one is checked against.
pub type ReferenceEngine = Engine<ReferenceBook>;
