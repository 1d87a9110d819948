//! `marionette-matching`: the pure matching core on one pinned thread, with an
//! io_uring journal, snapshots, and the wire protocol on a Unix or TCP socket.

pub mod config;
pub mod metrics;
pub mod server;
pub mod service;
pub mod snapshot;

/// The client the ledger, the tests and the benchmark use to reach matching.
pub mod client {
    pub use link::{Client as MatchingClient, Welcome};
}
